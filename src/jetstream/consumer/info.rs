//! ConsumerInfo as nats-server 2.9.10 writes it: `stream_name`, `name`, `created`, `config`,
//! `delivered` and `ack_floor` (with `last_active` once there was activity),
//! `num_ack_pending`, `num_redelivered`, `num_waiting`, `num_pending`, and `push_bound`
//! when a push consumer's deliver subject has interest.

use super::Consumer;
use crate::jetstream::store::Store;
use crate::protocol::json::Obj;
use std::time::{Duration, UNIX_EPOCH};

/// A Unix-ns time as Go's JSON `time.Time` (UTC).
pub fn ts(ns: i64) -> String {
    crate::util::timefmt::rfc3339(UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64))
}

impl Consumer {
    /// The ConsumerInfo fields, for embedding in a reply object. `num_waiting` counts the
    /// requests that have not expired at `now`.
    pub fn info_fields(&mut self, o: &mut Obj, store: &Store, now: i64) {
        self.info_fields_with(o, store, now, true);
    }

    /// `info_fields`, without `config` unless `with_config` (/jsz leaves it out unless
    /// asked for `config=true`).
    pub fn info_fields_with(&mut self, o: &mut Obj, store: &Store, now: i64, with_config: bool) {
        let pending = self.num_pending(store);
        let s = &self.state;
        o.str("stream_name", &self.stream)
            .str("name", &self.name)
            .str("created", &ts(self.created));
        if with_config {
            o.raw("config", &self.config.to_json());
        }
        let seq = |c: u64, st: u64, last: i64| {
            let mut x = String::with_capacity(96);
            let mut so = Obj::new(&mut x);
            so.uint("consumer_seq", c).uint("stream_seq", st);
            if last != 0 {
                so.str("last_active", &ts(last));
            }
            so.end();
            x
        };
        o.raw(
            "delivered",
            &seq(
                s.delivered_consumer(),
                s.delivered_stream(),
                s.last_delivered,
            ),
        )
        .raw("ack_floor", &seq(s.adflr, s.asflr, s.last_ack))
        .uint("num_ack_pending", s.pending.len() as u64)
        .uint("num_redelivered", s.rdc.len() as u64);
        let waiting = self
            .waiting
            .reqs
            .iter()
            .filter(|w| w.expires == 0 || w.expires >= now)
            .count();
        o.uint("num_waiting", waiting as u64)
            .uint("num_pending", pending);
        if self.config.is_push() && self.active {
            o.bool("push_bound", true);
        }
    }

    /// ConsumerInfo as a standalone object (LIST entries).
    pub fn info_json(&mut self, store: &Store, now: i64) -> String {
        let mut s = String::with_capacity(700);
        let mut o = Obj::new(&mut s);
        self.info_fields(&mut o, store, now);
        o.end();
        s
    }
}
