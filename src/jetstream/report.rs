//! What JetStream shows to monitoring (/jsz, /varz, /accountz, /metrics): its settings,
//! usage and per-consumer figures as plain data. Monitoring finds this source through
//! `Cx::others` (server/source.rs, `Source::state`) and renders the figures in nats-server's
//! formats (monitor/jsz.rs). Nothing here changes what JetStream stores or delivers; the two
//! `&mut` calls only let a consumer fill its pending-count cache, as CONSUMER.INFO does.

use super::account::JsAccount;
use super::consumer::Consumer;
use super::source::{JetStream, Slot};
use super::store::Store;
use crate::protocol::json::Obj;
use std::path::PathBuf;

/// nats-server's JetStreamConfig: the server's maxima, the store directory, the domain.
pub struct Settings<'a> {
    pub max_memory: i64,
    pub max_store: i64,
    /// `<store_dir>/jetstream`, as nats-server reports it.
    pub store_dir: PathBuf,
    pub domain: Option<&'a str>,
    /// nats-server's `compress_ok` (shown only when true).
    pub compress_ok: bool,
}

/// nats-server's JetStreamStats for the whole server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    /// JetStream-enabled accounts.
    pub accounts: usize,
    pub api_total: u64,
    pub api_errors: u64,
}

/// Totals over every stream of every account (JSInfo's `streams` to `bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// One consumer's figures (ConsumerInfo's numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerFigures {
    pub delivered_consumer_seq: u64,
    pub delivered_stream_seq: u64,
    pub ack_floor_consumer_seq: u64,
    pub ack_floor_stream_seq: u64,
    pub num_ack_pending: u64,
    pub num_redelivered: u64,
    pub num_waiting: u64,
    pub num_pending: u64,
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl JetStream {
    pub fn settings(&self) -> Settings<'_> {
        let s = &self.settings;
        Settings {
            max_memory: s.max_memory,
            max_store: s.max_store,
            store_dir: s.store_dir.join("jetstream"),
            domain: s.domain.as_deref(),
            compress_ok: s.compress_ok,
        }
    }

    /// Usage over every JetStream account (O(streams)).
    pub fn usage(&self) -> Usage {
        let srv = self.server_js();
        let mut u = Usage {
            memory: unsigned(srv.used_memory),
            storage: unsigned(srv.used_store),
            reserved_memory: unsigned(srv.reserved_memory),
            reserved_storage: unsigned(srv.reserved_store),
            ..Usage::default()
        };
        for (_, acc) in self.accounts() {
            u.accounts += 1;
            u.api_total = u.api_total.saturating_add(acc.api_total);
            u.api_errors = u.api_errors.saturating_add(acc.api_errors);
        }
        u
    }

    /// Totals over every stream (O(streams)).
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for (_, a) in self.accounts() {
            for s in a.streams.values() {
                let st = s.store.state();
                t.streams += 1;
                t.consumers += s.consumers.len() as u64;
                t.messages = t.messages.saturating_add(st.msgs);
                t.bytes = t.bytes.saturating_add(st.bytes);
            }
        }
        t
    }

    /// The JetStream account of broker account `acc`, when JetStream is on in it.
    pub fn account(&self, acc: usize) -> Option<&JsAccount> {
        match self.slots.get(acc) {
            Some(Slot::On(slot)) => Some(&slot.js),
            _ => None,
        }
    }

    /// Every JetStream account with its broker account index.
    pub fn accounts(&self) -> impl Iterator<Item = (usize, &JsAccount)> {
        (0..self.slots.len()).filter_map(|i| self.account(i).map(|a| (i, a)))
    }

    /// ConsumerInfo of `consumer` on `stream` in account `acc`, with or without its config;
    /// None when it is gone.
    pub fn consumer_info(
        &mut self,
        at: (usize, &str, &str),
        now: i64,
        with_config: bool,
    ) -> Option<String> {
        self.with_consumer(at, |c, store| {
            let mut s = String::with_capacity(700);
            let mut o = Obj::new(&mut s);
            c.info_fields_with(&mut o, store, now, with_config);
            o.end();
            s
        })
    }

    /// The figures of `consumer` on `stream` in account `acc`; None when it is gone.
    pub fn consumer_figures(
        &mut self,
        at: (usize, &str, &str),
        now: i64,
    ) -> Option<ConsumerFigures> {
        self.with_consumer(at, |c, store| figures(c, store, now))
    }

    fn with_consumer<T>(
        &mut self,
        (acc, stream, consumer): (usize, &str, &str),
        f: impl FnOnce(&mut Consumer, &Store) -> T,
    ) -> Option<T> {
        let Some(Slot::On(slot)) = self.slots.get_mut(acc) else {
            return None;
        };
        let s = slot.js.streams.get_mut(stream)?;
        let c = s.consumers.get_mut(consumer)?;
        Some(f(c, &s.store))
    }
}

/// A consumer's figures; `num_waiting` counts the pull requests not expired at `now`, as
/// ConsumerInfo does.
fn figures(c: &mut Consumer, store: &Store, now: i64) -> ConsumerFigures {
    let num_pending = c.num_pending(store);
    let waiting = (c.waiting.reqs.iter())
        .filter(|w| w.expires == 0 || w.expires >= now)
        .count();
    let s = &c.state;
    ConsumerFigures {
        delivered_consumer_seq: s.delivered_consumer(),
        delivered_stream_seq: s.delivered_stream(),
        ack_floor_consumer_seq: s.adflr,
        ack_floor_stream_seq: s.asflr,
        num_ack_pending: s.pending.len() as u64,
        num_redelivered: s.rdc.len() as u64,
        num_waiting: waiting as u64,
        num_pending,
    }
}
