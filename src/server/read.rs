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
    /// Reads connection `t` until WouldBlock or its budget for this pass is spent.
    pub(super) fn read(&mut self, t: usize) {
        // Bytes kept back by a stall may hold whole frames: act on them first.
        self.process_carried(t);
        for _ in 0..READS_PER_PASS {
            let Some(c) = self.broker.conns.get_mut(t) else {
                return;
            };
            if c.closing.is_some() || c.stalled {
                return;
            }
            let outcome = if c.in_len == 0 {
                // The common case: parse straight out of the shared buffer, keep only a tail.
                let mut rbuf = std::mem::take(&mut self.rbuf);
                let outcome = read_into(&mut c.sock, &mut rbuf);
                if let ReadOutcome::Data(n) = outcome {
                    self.ingest(t, &rbuf[..n]);
                }
                self.rbuf = rbuf;
                outcome
            } else {
                // A split frame: read straight into the connection's own bytes.
                c.inbuf_room();
                let outcome = read_into(&mut c.sock, &mut c.inbuf[c.in_len..]);
                if let ReadOutcome::Data(n) = outcome {
                    c.in_len += n;
                    self.process_carried(t);
                }
                outcome
            };
            let conns = &mut self.broker.conns;
            if conns.queued >= FLUSH_AT {
                conns.flush_dirty();
            }
            match outcome {
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
