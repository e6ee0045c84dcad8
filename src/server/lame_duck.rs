//! Lame-duck mode (SIGUSR2, `--signal ldm`) as a loop source: once the server entered it
//! (the client listener is closed and INFO says `ldm`, see `Server::enter_lame_duck`),
//! clients are told (a fresh INFO), and after the grace period they are closed one by one,
//! spread over the lame-duck duration; the server exits when none are left.

use super::source::{Cx, ServerEvent, Source};
use crate::conn::CloseReason;
use log::info;
use mio::event::Event;
use mio::Token;
use std::time::{Duration, Instant};

/// The clients still to close, and when to close the next ones.
struct Schedule {
    clients: Vec<(usize, u64)>,
    next_at: Instant,
    interval: Duration,
    /// The grace period is over and closing has begun.
    closing: bool,
}

#[derive(Default)]
pub struct LameDuck {
    schedule: Option<Schedule>,
}

impl LameDuck {
    /// Tells every client (INFO with `ldm`) and plans their closing; with no client left the
    /// server stops at once.
    fn begin(&mut self, cx: &mut Cx) {
        let b = &mut *cx.broker;
        let clients: Vec<(usize, u64)> = b
            .conns
            .iter()
            .filter(|(_, c)| c.is_client())
            .map(|(t, c)| (t, c.cid))
            .collect();
        if clients.is_empty() {
            *cx.stop = true;
            return;
        }
        for &(t, cid) in &clients {
            let c = &b.conns[t];
            if c.opts.protocol >= 1 {
                let line = b.client_info(cid, c.addr);
                b.conns.queue(t, line.as_bytes());
            }
        }
        let grace = b.cfg.lame_duck_grace;
        let spread = b
            .cfg
            .lame_duck_duration
            .saturating_sub(grace)
            .max(Duration::from_secs(1));
        let interval = (spread / clients.len() as u32).min(Duration::from_secs(1));
        self.schedule = Some(Schedule {
            clients,
            next_at: b.conns.now + grace,
            interval,
            closing: false,
        });
    }
}

impl Source for LameDuck {
    fn ready(&mut self, _cx: &mut Cx, _token: Token, _ev: &Event) {}

    fn event(&mut self, cx: &mut Cx, ev: ServerEvent) {
        if ev == ServerEvent::LameDuck && self.schedule.is_none() {
            self.begin(cx);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.schedule.as_ref().map(|s| s.next_at)
    }

    /// Closes as many clients as the elapsed time allows (at least one), like nats-server's
    /// batches, then waits half an interval plus jitter.
    fn end_of_pass(&mut self, cx: &mut Cx) {
        let b = &mut *cx.broker;
        let now = b.conns.now;
        let Some(ld) = &mut self.schedule else {
            return;
        };
        if now < ld.next_at {
            return;
        }
        if !ld.closing {
            ld.closing = true;
            info!("Closing existing clients");
        }
        let due = 1
            + (now.saturating_duration_since(ld.next_at).as_nanos() / ld.interval.as_nanos().max(1))
                as usize;
        for _ in 0..due {
            let Some((t, cid)) = ld.clients.pop() else {
                break;
            };
            if b.conns.get(t).is_some_and(|c| c.cid == cid) {
                b.conns.close(t, CloseReason::ServerShutdown);
            }
        }
        let half = ld.interval / 2;
        let jitter = Duration::from_nanos(b.rng.next_u64() % half.as_nanos().max(1) as u64);
        ld.next_at = now + half + jitter;
        if ld.clients.is_empty() {
            *cx.stop = true;
        }
    }
}
