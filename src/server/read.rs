//! Reading a NATS connection: from its socket into the shared buffer (or, for a frame a
//! read split, into the connection's own bytes), then to whoever speaks its protocol: the
//! core for a client, the source that owns it otherwise (`Conn::owner`).

use super::source::{Cx, Others, Source};
use super::Server;
use crate::config::{FLUSH_AT, READS_PER_PASS};
use crate::conn::io::{read_into, ReadOutcome};
use crate::core::broker::Broker;
use mio::Waker;
use std::sync::Arc;

impl Server {
    /// Reads connection `t` until it is drained or its budget for this pass is spent. A read
    /// that returns less than it asked for has drained the socket: epoll reports the next
    /// bytes that arrive as a new edge, so the read that would only say WouldBlock (one
    /// syscall in five on a request/reply round trip) is skipped, as tokio does. Not when
    /// the peer's FIN or an error came with the bytes (`to_the_end`): no edge would follow,
    /// so the read goes on to see the end.
    pub(super) fn read(&mut self, t: usize, to_the_end: bool) {
        // Bytes kept back by a stall may hold whole frames: act on them first.
        self.process_carried(t);
        for _ in 0..READS_PER_PASS {
            let Some(c) = self.broker.conns.get_mut(t) else {
                return;
            };
            if c.closing.is_some() || c.stalled {
                return;
            }
            let (outcome, asked) = if c.in_len == 0 {
                // The common case: parse straight out of the shared buffer, keep only a tail.
                let mut rbuf = std::mem::take(&mut self.rbuf);
                let outcome = read_into(&mut c.sock, &mut rbuf);
                if let ReadOutcome::Data(n) = outcome {
                    self.ingest(t, &rbuf[..n]);
                }
                let asked = rbuf.len();
                self.rbuf = rbuf;
                (outcome, asked)
            } else {
                // A split frame: read straight into the connection's own bytes.
                c.inbuf_room();
                let asked = c.inbuf.len() - c.in_len;
                let outcome = read_into(&mut c.sock, &mut c.inbuf[c.in_len..]);
                if let ReadOutcome::Data(n) = outcome {
                    c.in_len += n;
                    self.process_carried(t);
                }
                (outcome, asked)
            };
            let conns = &mut self.broker.conns;
            if conns.queued >= FLUSH_AT {
                conns.flush_dirty();
            }
            match outcome {
                ReadOutcome::Data(n) if n < asked && !to_the_end => return,
                ReadOutcome::Data(_) => {}
                ReadOutcome::WouldBlock => return,
                ReadOutcome::Closed(reason) => {
                    conns.close(t, reason);
                    return;
                }
            }
        }
        self.pending_reads.push(t);
    }

    /// Acts on bytes read from connection `t` and keeps any unfinished frame.
    fn ingest(&mut self, t: usize, data: &[u8]) {
        let Server {
            broker,
            sources,
            waker,
            stopping,
            ..
        } = self;
        broker.ingest(t, data, &mut |b, t, d| {
            process(b, sources, waker, stopping, t, d)
        });
    }

    /// Acts on the bytes connection `t` holds once they make a whole frame.
    fn process_carried(&mut self, t: usize) {
        let Server {
            broker,
            sources,
            waker,
            stopping,
            ..
        } = self;
        broker.process_carried(t, &mut |b, t, d| process(b, sources, waker, stopping, t, d));
    }
}

/// Hands bytes from connection `t` to whoever speaks its protocol; returns how many were
/// used.
pub fn process(
    b: &mut Broker,
    sources: &mut [Box<dyn Source>],
    waker: &Arc<Waker>,
    stop: &mut bool,
    t: usize,
    data: &[u8],
) -> usize {
    let owner = b.conns[t].owner.filter(|&id| id < sources.len());
    let Some(id) = owner else {
        return b.process(t, data);
    };
    let (before, rest) = sources.split_at_mut(id);
    let Some((source, after)) = rest.split_first_mut() else {
        return b.process(t, data);
    };
    let mut cx = Cx {
        broker: b,
        waker,
        id,
        stop,
        others: Others { before, after },
    };
    source.input(&mut cx, t, data)
}
