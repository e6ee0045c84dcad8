//! The `Nats-Msg-Id` window of one stream: ids seen within `duplicate_window` map to the
//! sequence they were stored as. Entries expire lazily (checked against the clock on each
//! lookup) instead of on a timer: an id is a duplicate exactly while `now - ts < window`.
//! nats-server purges on a timer, so it can keep an id a little longer; never shorter.
//! The stream rebuilds the window from stored headers after a restart (stream.rs).

use crate::util::hash::FastMap;
use std::collections::VecDeque;
use std::sync::Arc;

/// One allocation per id, shared by the map and the expiry queue.
#[derive(Default, Debug)]
pub struct Dedupe {
    ids: FastMap<Arc<str>, Entry>,
    /// Insertion order, oldest first, for expiry. An id stored again has a newer entry here;
    /// the older one is skipped when it comes up (its timestamp no longer matches).
    order: VecDeque<(Arc<str>, i64)>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    seq: u64,
    ts: i64,
}

impl Dedupe {
    /// The sequence `id` was stored as, if it is still within the window at `now_ns`.
    pub fn check(&mut self, id: &str, now_ns: i64, window_ns: i64) -> Option<u64> {
        self.expire(now_ns, window_ns);
        self.ids.get(id).map(|e| e.seq)
    }

    /// Remembers `id` as stored at `seq` with the message's timestamp.
    pub fn store(&mut self, id: &str, seq: u64, ts: i64) {
        let id: Arc<str> = Arc::from(id);
        self.ids.insert(id.clone(), Entry { seq, ts });
        self.order.push_back((id, ts));
    }

    /// Drops every id whose age reached the window.
    pub fn expire(&mut self, now_ns: i64, window_ns: i64) {
        while let Some((id, ts)) = self.order.front() {
            if now_ns.saturating_sub(*ts) < window_ns {
                break;
            }
            if self.ids.get(&**id).is_some_and(|e| e.ts == *ts) {
                self.ids.remove(&**id);
            }
            self.order.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window() {
        let mut d = Dedupe::default();
        d.store("a", 1, 1_000);
        assert_eq!(d.check("a", 1_499, 500), Some(1));
        assert_eq!(d.check("b", 1_499, 500), None);
        assert_eq!(d.check("a", 1_500, 500), None);
        assert!(d.is_empty());
        // Stored again later: the old order entry must not evict the new one.
        d.store("a", 2, 2_000);
        d.store("a", 3, 2_400);
        assert_eq!(d.check("a", 2_600, 500), Some(3));
        assert_eq!(d.check("a", 2_900, 500), None);
        assert_eq!(d.len(), 0);
    }
}
#[cfg(test)]
mod bench {
    #[test]
    #[ignore]
    fn dedupe_cost() {
        let mut d = super::Dedupe::default();
        let ids: Vec<String> = (0..200_000).map(|i| i.to_string()).collect();
        let t = std::time::Instant::now();
        for (i, id) in ids.iter().enumerate() {
            assert!(d.check(id, i as i64, 1 << 40).is_none());
            d.store(id, i as u64, i as i64);
        }
        println!("dedupe {} ns/id", t.elapsed().as_nanos() / 200_000);
    }
}
