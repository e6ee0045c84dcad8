//! `Index::audit`: every counter of the index recomputed from its entries, without changing
//! anything, and compared. Deliberately independent of `Index::recount`. For `Store::check`.

use super::index::{Index, SizeFn};

/// Per subject: messages, first and last sequence.
type Counts = Vec<(u64, u64, u64)>;

impl Index {
    pub fn audit(&self, size: &mut SizeFn) -> Result<(), String> {
        let mut per: Counts = vec![(0, 0, 0); self.subs.len()];
        let (msgs, bytes, first_live) = self.audit_chunks(size, &mut per)?;
        let want_first = match first_live {
            Some(f) => f,
            None if self.first == 0 && self.last == 0 => 0,
            None => self.last + 1,
        };
        let got = (self.msgs, self.bytes, self.first);
        if got != (msgs, bytes, want_first) {
            let want = (msgs, bytes, want_first);
            return Err(format!("(msgs, bytes, first) {got:?}, recomputed {want:?}"));
        }
        self.audit_subjects(&per)
    }

    /// Walks the chunks; returns messages, bytes and the first live sequence.
    fn audit_chunks(
        &self,
        size: &mut SizeFn,
        per: &mut Counts,
    ) -> Result<(u64, u64, Option<u64>), String> {
        let (mut msgs, mut bytes, mut first_live, mut prev_end) = (0u64, 0u64, None, 0u64);
        for c in &self.chunks {
            if c.base < prev_end || c.end() > self.last + 1 {
                return Err(format!(
                    "chunk [{}, {}) out of order or past last {}",
                    c.base,
                    c.end(),
                    self.last
                ));
            }
            prev_end = c.end();
            let mut live = 0;
            for (pos, e) in c.ents.iter().enumerate() {
                let seq = c.base + pos as u64;
                if e.is_msg() && e.subject() as usize >= self.subs.len() {
                    return Err(format!(
                        "seq {seq}: subject id {} out of range",
                        e.subject()
                    ));
                }
                let Some(sid) = e.live_sid().filter(|_| seq >= self.first) else {
                    continue;
                };
                if self.subs[sid as usize].name.is_empty() {
                    return Err(format!("seq {seq}: live message names freed subject {sid}"));
                }
                live += 1;
                msgs += 1;
                bytes += size(c, pos);
                first_live.get_or_insert(seq);
                let p = &mut per[sid as usize];
                if p.0 == 0 {
                    p.1 = seq;
                }
                p.0 += 1;
                p.2 = seq;
            }
            if live != c.live {
                return Err(format!(
                    "chunk at {}: live {} counted {live}",
                    c.base, c.live
                ));
            }
        }
        Ok((msgs, bytes, first_live))
    }

    fn audit_subjects(&self, per: &Counts) -> Result<(), String> {
        for (sid, s) in self.subs.iter().enumerate() {
            let (n, f, l) = per[sid];
            let bad_first = n > 0 && (s.first > f || (n == 1 && s.first != f));
            if s.msgs != n || (n > 0 && s.last != l) || bad_first {
                let kept = (s.msgs, s.first, s.last);
                return Err(format!(
                    "subject {sid}: (msgs, first, last) {kept:?}, recomputed {:?}",
                    (n, f, l)
                ));
            }
            if !s.name.is_empty() && self.names.get(&s.name) != Some(&(sid as u32)) {
                return Err(format!("subject {sid} missing from the name map"));
            }
        }
        let subjects = per.iter().filter(|p| p.0 > 0).count();
        if subjects != self.num_subjects || self.names.len() + self.free.len() != self.subs.len() {
            return Err(format!(
                "num_subjects {} counted {subjects}",
                self.num_subjects
            ));
        }
        Ok(())
    }
}
