//! The memory store: the index of `index.rs` over a slab of messages. Same interface and
//! limits as the file store; nothing survives a restart, so `flush` only tidies up (drops
//! chunks with no live message, frees unused subject ids). `bytes` follows nats-server's
//! memory formula, `len(subject) + len(hdr) + len(data) + 16`.

use super::index::{Chunk, Index, MAX_PAD};
use super::limits::{self, Purged};
use super::{State, StoreError, StoreLimits, StoredMsg};

/// Sequences per chunk: a chunk's entries are freed once none of its messages is live.
const CHUNK: usize = 4096;

struct Slot {
    ts: i64,
    subj_len: u16,
    hdr_len: u32,
    /// Headers then data.
    buf: Box<[u8]>,
}

impl Slot {
    fn size(&self) -> u64 {
        u64::from(self.subj_len) + self.buf.len() as u64 + 16
    }
}

pub struct MemStore {
    ix: Index,
    slots: Vec<Slot>,
    free: Vec<u32>,
    limits: StoreLimits,
    /// `Index::drops` at the last tidy-up (nothing to tidy until messages go).
    tidied: u64,
}

fn measure(slots: &[Slot]) -> impl Fn(&Chunk, usize) -> u64 + '_ {
    move |c: &Chunk, pos: usize| slots[c.ents[pos].loc as usize].size()
}

/// Measures a message being dropped and releases its slot.
fn release<'a>(
    slots: &'a mut [Slot],
    free: &'a mut Vec<u32>,
) -> impl FnMut(&Chunk, usize) -> u64 + 'a {
    move |c: &Chunk, pos: usize| {
        let loc = c.ents[pos].loc;
        let s = &mut slots[loc as usize];
        let n = s.size();
        s.buf = Box::default();
        free.push(loc);
        n
    }
}

impl MemStore {
    pub fn new(limits: StoreLimits) -> MemStore {
        MemStore {
            ix: Index::new(),
            slots: Vec::new(),
            free: Vec::new(),
            limits,
            tidied: 0,
        }
    }

    pub fn index(&self) -> &Index {
        &self.ix
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// The last chunk must end at `seq`: pad a short gap, else start a new chunk (also when
    /// the last one is full).
    fn ready_for(&mut self, seq: u64) {
        let Some(c) = self.ix.chunks.back_mut() else {
            return self.ix.push_chunk(seq, 0);
        };
        if c.ents.is_empty() {
            c.base = seq;
        } else if c.ents.len() >= CHUNK || seq - c.end() > MAX_PAD {
            self.ix.push_chunk(seq, 0);
        } else {
            while self.ix.chunks.back().is_some_and(|c| c.end() < seq) {
                self.ix.pad(0);
            }
        }
    }

    pub fn append(
        &mut self,
        subject: &[u8],
        hdr: &[u8],
        data: &[u8],
        ts: i64,
    ) -> Result<u64, StoreError> {
        super::check_input(subject, hdr, data)?;
        let payload = (hdr.len() + data.len()) as u64;
        let m = measure(&self.slots);
        limits::check_new(&mut self.ix, &self.limits, subject, payload, true, &mut {
            m
        })?;
        let sid = self.ix.intern(subject).ok_or(StoreError::TooManySubjects)?;
        let seq = self.ix.last + 1;
        self.ready_for(seq);
        let mut buf = Vec::with_capacity(hdr.len() + data.len());
        buf.extend_from_slice(hdr);
        buf.extend_from_slice(data);
        let slot = Slot {
            ts,
            subj_len: subject.len() as u16,
            hdr_len: hdr.len() as u32,
            buf: buf.into(),
        };
        let size = slot.size();
        let loc = match self.free.pop() {
            Some(loc) => {
                self.slots[loc as usize] = slot;
                loc
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.ix.push_msg(seq, loc, sid, size, ts);
        limits::enforce(
            &mut self.ix,
            &self.limits,
            sid,
            &mut release(&mut self.slots, &mut self.free),
        );
        Ok(seq)
    }

    pub fn skip(&mut self, ts: i64) -> u64 {
        let seq = self.ix.last + 1;
        self.ix.skip(seq, ts);
        seq
    }

    /// Nothing to write: drops dead chunks and frees unused subject ids.
    pub fn flush(&mut self) {
        self.ix.tombs.clear();
        if self.tidied == self.ix.drops {
            return;
        }
        self.tidied = self.ix.drops;
        let n = self.ix.chunks.len();
        let mut i = 0;
        self.ix.chunks.retain(|c| {
            i += 1;
            c.live > 0 || i == n
        });
        self.ix.free_zeroed(|_| false);
        if self.ix.msgs == 0 {
            self.slots.clear();
            self.free.clear();
        }
    }

    pub fn load(&self, seq: u64) -> Option<StoredMsg> {
        self.load_into(seq, Vec::new())
    }

    /// `load` into a buffer the caller had spare.
    pub fn load_into(&self, seq: u64, mut buf: Vec<u8>) -> Option<StoredMsg> {
        let (ci, pos, sid) = self.ix.live(seq)?;
        let s = &self.slots[self.ix.chunks[ci].ents[pos].loc as usize];
        let subject = self.ix.name(sid);
        buf.clear();
        buf.reserve(subject.len() + s.buf.len());
        buf.extend_from_slice(subject);
        buf.extend_from_slice(&s.buf);
        let (sl, hl) = (subject.len(), s.hdr_len as usize);
        Some(StoredMsg {
            seq,
            ts: s.ts,
            buf,
            subject: 0..sl,
            hdr: sl..sl + hl,
            data: sl + hl..sl + s.buf.len(),
        })
    }

    pub fn remove(&mut self, seq: u64, erase: bool) -> bool {
        if erase {
            if let Some((ci, pos, _)) = self.ix.live(seq) {
                let loc = self.ix.chunks[ci].ents[pos].loc as usize;
                self.slots[loc].buf.fill(0);
            }
        }
        let removed = self
            .ix
            .remove(seq, &mut release(&mut self.slots, &mut self.free));
        removed.is_some()
    }

    pub fn purge(&mut self, filter: Option<&[u8]>, upto: Option<u64>, keep: Option<u64>) -> Purged {
        let p = limits::purge(
            &mut self.ix,
            filter,
            upto,
            keep,
            &mut release(&mut self.slots, &mut self.free),
        );
        if self.ix.msgs == 0 {
            self.flush();
        }
        p
    }

    pub fn update_limits(&mut self, limits: StoreLimits) {
        self.limits = limits;
        limits::enforce_all(
            &mut self.ix,
            &self.limits,
            &mut release(&mut self.slots, &mut self.free),
        );
    }

    fn ts_at(&self, seq: u64) -> Option<i64> {
        let (ci, pos, _) = self.ix.live(seq)?;
        Some(self.slots[self.ix.chunks[ci].ents[pos].loc as usize].ts)
    }

    /// Removes messages older than `max_age`; returns when the next one expires.
    pub fn expire(&mut self, now: i64) -> Option<i64> {
        let age = i64::try_from(self.limits.max_age.as_nanos()).unwrap_or(i64::MAX);
        if age == 0 {
            return None;
        }
        while self.ix.msgs > 0 {
            let ts = self.ts_at(self.ix.first)?;
            if ts > now.saturating_sub(age) {
                return Some(ts.saturating_add(age));
            }
            self.ix
                .drop_head(&mut release(&mut self.slots, &mut self.free));
        }
        None
    }

    /// The first live message stamped at or after `ts`.
    pub fn seq_at_or_after_time(&self, ts: i64) -> Option<u64> {
        let mut seq = self.ix.first;
        while let Some(s) = self.ix.next_matching(seq, None) {
            if self.ts_at(s)? >= ts {
                return Some(s);
            }
            seq = s + 1;
        }
        None
    }

    pub fn state(&self) -> State {
        State::from_index(&self.ix)
    }

    pub fn first_ts(&self) -> i64 {
        if self.ix.msgs > 0 {
            self.ts_at(self.ix.first).unwrap_or(0)
        } else {
            0
        }
    }

    pub fn check(&self) -> Result<(), String> {
        self.ix.audit(&mut measure(&self.slots))?;
        for c in &self.ix.chunks {
            for (i, e) in c.ents.iter().enumerate() {
                if e.live_sid().is_some() && c.base + i as u64 >= self.ix.first {
                    let s = self.slots.get(e.loc as usize).ok_or("slot out of range")?;
                    if self.free.contains(&e.loc)
                        || usize::from(s.subj_len) != self.ix.name(e.sid).len()
                    {
                        return Err(format!(
                            "seq {}: slot {} is not its message",
                            c.base + i as u64,
                            e.loc
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
