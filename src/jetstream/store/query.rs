//! Questions consumers and the API ask of the index: the next message matching a subject
//! filter, how many match, the last message per subject, the interior gaps. Nothing here
//! reads a message: each entry carries its subject id, and per-subject state answers the
//! literal cases without a scan. Subject filters follow nats-server's rules (tokens split on
//! `.`, `*` matches one token, `>` the rest); an absent or `>` filter matches everything.

use super::index::Index;
use crate::subject::{has_wildcard, subject_matches};

/// Above this many subject slots a wildcard scan tests subjects as it meets them (remembering
/// the last answer) instead of building a table of every subject first.
const TABLE_MAX: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter<'a> {
    All,
    Literal(&'a [u8]),
    Wild(&'a [u8]),
}

impl<'a> Filter<'a> {
    pub fn parse(filter: Option<&'a [u8]>) -> Filter<'a> {
        match filter {
            None => Filter::All,
            Some(f) if f.is_empty() || f == b">" => Filter::All,
            Some(f) if has_wildcard(f) => Filter::Wild(f),
            Some(f) => Filter::Literal(f),
        }
    }
}

impl Index {
    /// `table[sid]`: whether subject `sid` (with messages) matches `pattern`.
    fn matching_table(&self, pattern: &[u8]) -> Vec<bool> {
        self.subs
            .iter()
            .map(|s| s.msgs > 0 && subject_matches(pattern, &s.name))
            .collect()
    }

    /// Ids of the subjects with messages that the filter matches.
    pub fn matching_subjects(&self, filter: Filter) -> Vec<u32> {
        let hit = |name: &[u8]| match filter {
            Filter::All => true,
            Filter::Literal(l) => name == l,
            Filter::Wild(p) => subject_matches(p, name),
        };
        if let Filter::Literal(l) = filter {
            return self
                .lookup(l)
                .filter(|&sid| self.subs[sid as usize].msgs > 0)
                .into_iter()
                .collect();
        }
        (0..self.subs.len() as u32)
            .filter(|&sid| {
                let s = &self.subs[sid as usize];
                s.msgs > 0 && hit(&s.name)
            })
            .collect()
    }

    /// The first live message at or after `from` whose subject matches.
    pub fn next_matching(&self, from: u64, filter: Option<&[u8]>) -> Option<u64> {
        let from = from.max(self.first).max(1);
        if from > self.last || self.msgs == 0 {
            return None;
        }
        match Filter::parse(filter) {
            Filter::All => self.scan(from, self.last, |_| true),
            Filter::Literal(l) => {
                let sid = self.lookup(l)?;
                let s = &self.subs[sid as usize];
                if s.msgs == 0 || from > s.last {
                    return None;
                }
                self.scan(from.max(s.first), s.last, |x| x == sid)
            }
            Filter::Wild(p) if self.subs.len() <= TABLE_MAX => {
                let table = self.matching_table(p);
                self.scan(from, self.last, |sid| table[sid as usize])
            }
            Filter::Wild(p) => {
                let mut memo = (u32::MAX, false);
                self.scan(from, self.last, |sid| {
                    if memo.0 != sid {
                        memo = (sid, subject_matches(p, self.name(sid)));
                    }
                    memo.1
                })
            }
        }
    }

    /// Live messages in `[from, to]` whose subject id passes `keep`; `all` says `keep` passes
    /// everything, so whole chunks are counted from their live counts.
    fn count(&self, from: u64, to: u64, all: bool, keep: impl Fn(u32) -> bool) -> u64 {
        let from = from.max(self.first);
        if from > to {
            return 0;
        }
        let start = self.chunks.partition_point(|c| c.end() <= from);
        let mut n = 0;
        for c in self.chunks.range(start..) {
            if c.base > to {
                break;
            }
            if c.live == 0 {
                continue;
            }
            if all && from <= c.base && c.end() - 1 <= to && self.first <= c.base {
                n += u64::from(c.live);
                continue;
            }
            let lo = (from.max(c.base) - c.base) as usize;
            let hi = (to.min(c.end() - 1) - c.base) as usize;
            n += c.ents[lo..=hi]
                .iter()
                .filter(|e| e.live_sid().is_some_and(&keep))
                .count() as u64;
        }
        n
    }

    /// How many live messages at or after `from` match the filter.
    pub fn num_matching(&self, from: u64, filter: Option<&[u8]>) -> u64 {
        let from = from.max(self.first);
        if from > self.last || self.msgs == 0 {
            return 0;
        }
        let (total, keep): (u64, Box<dyn Fn(u32) -> bool>) = match Filter::parse(filter) {
            Filter::All => (self.msgs, Box::new(|_| true)),
            Filter::Literal(l) => {
                let Some(sid) = self.lookup(l) else { return 0 };
                let s = &self.subs[sid as usize];
                if from <= s.first {
                    return s.msgs;
                }
                return self.count(from, s.last, false, |x| x == sid);
            }
            Filter::Wild(p) => {
                let table = self.matching_table(p);
                let total = (0..table.len())
                    .filter(|&i| table[i])
                    .map(|i| self.subs[i].msgs)
                    .sum();
                (total, Box::new(move |sid| table[sid as usize]))
            }
        };
        let all = matches!(Filter::parse(filter), Filter::All);
        if from <= self.first {
            return total;
        }
        // Count whichever side of `from` is shorter.
        if from - self.first < self.last - from {
            total - self.count(self.first, from - 1, all, keep)
        } else {
            self.count(from, self.last, all, keep)
        }
    }

    /// The last live message on a subject (a wildcard takes the newest over its matches).
    pub fn last_for_subject(&self, subject: &[u8]) -> Option<u64> {
        let filter = Filter::parse(Some(subject));
        if filter == Filter::All {
            return self.scan_back(self.last, self.first, |_| true);
        }
        self.matching_subjects(filter)
            .into_iter()
            .map(|sid| self.subs[sid as usize].last)
            .max()
    }

    /// The last live message of each subject the filter matches, ascending.
    pub fn last_per_subject(&self, filter: Option<&[u8]>) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .matching_subjects(Filter::parse(filter))
            .into_iter()
            .map(|sid| self.subs[sid as usize].last)
            .collect();
        v.sort_unstable();
        v
    }

    /// Subjects the filter matches, with their message counts, sorted by subject.
    pub fn subjects(&self, filter: Option<&[u8]>) -> Vec<(Vec<u8>, u64)> {
        let mut v: Vec<(Vec<u8>, u64)> = self
            .matching_subjects(Filter::parse(filter))
            .into_iter()
            .map(|sid| {
                let s = &self.subs[sid as usize];
                (s.name.to_vec(), s.msgs)
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// nats-server's `num_deleted`: the interior gaps between the first and last sequence.
    pub fn num_deleted(&self) -> u64 {
        if self.msgs == 0 {
            return 0;
        }
        (self.last - self.first + 1) - self.msgs
    }

    /// Up to `max` interior gaps, ascending.
    pub fn deleted(&self, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if self.msgs == 0 {
            return out;
        }
        let mut seq = self.first;
        while seq <= self.last && out.len() < max {
            match self.locate(seq) {
                Some((ci, pos)) => {
                    let c = &self.chunks[ci];
                    for e in &c.ents[pos..] {
                        if out.len() == max || seq > self.last {
                            break;
                        }
                        if e.live_sid().is_none() {
                            out.push(seq);
                        }
                        seq += 1;
                    }
                }
                None => {
                    // Not described by any chunk: gone. Jump to the next chunk.
                    let next = self
                        .chunks
                        .iter()
                        .map(|c| c.base)
                        .find(|&b| b > seq)
                        .unwrap_or(self.last + 1);
                    while seq < next && seq <= self.last && out.len() < max {
                        out.push(seq);
                        seq += 1;
                    }
                }
            }
        }
        out
    }
}
