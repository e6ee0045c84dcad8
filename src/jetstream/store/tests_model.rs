//! Random operation sequences against a simple model (a BTreeMap of seq -> message that
//! applies nats-server's rules the obvious way), for both stores. After every operation the
//! store's state, some reads and some filter queries must match the model; every so often all
//! of it, plus `check()`. The file store is also reopened at random points, after a flush or
//! not (a crash: the model goes back to what the last successful flush wrote).

use super::tests::{flush_sync, TempDir};
use super::*;
use crate::subject::subject_matches;
use std::collections::{BTreeMap, BTreeSet};

/// xorshift64*: seeded, reproducible, no crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Debug, PartialEq)]
struct M {
    subj: Vec<u8>,
    hdr: Vec<u8>,
    data: Vec<u8>,
    ts: i64,
}

#[derive(Clone)]
struct Model {
    msgs: BTreeMap<u64, M>,
    last: u64,
    last_ts: i64,
    touched: bool,
    memory: bool,
    lim: StoreLimits,
}

fn lim(v: i64) -> Option<u64> {
    (v > 0).then_some(v as u64)
}

impl Model {
    fn size(&self, m: &M) -> u64 {
        let (s, h, d) = (m.subj.len() as u64, m.hdr.len() as u64, m.data.len() as u64);
        match (self.memory, h) {
            (true, _) => s + h + d + 16,
            (false, 0) => 30 + s + d,
            (false, _) => 34 + s + h + d,
        }
    }
    fn bytes(&self) -> u64 {
        self.msgs.values().map(|m| self.size(m)).sum()
    }
    fn first(&self) -> u64 {
        match self.msgs.keys().next() {
            Some(&f) => f,
            None if !self.touched && self.last == 0 => 0,
            None => self.last + 1,
        }
    }
    fn count(&self, subj: &[u8]) -> u64 {
        self.msgs.values().filter(|m| m.subj == subj).count() as u64
    }
    fn oldest(&self, subj: &[u8]) -> Option<u64> {
        self.msgs
            .iter()
            .find(|(_, m)| m.subj == subj)
            .map(|(s, _)| *s)
    }
    fn drop_seq(&mut self, seq: u64) -> bool {
        let removed = self.msgs.remove(&seq).is_some();
        self.touched |= removed;
        removed
    }

    fn check_new(&self, m: &M) -> Result<(), &'static str> {
        let l = &self.lim;
        if !l.discard_new {
            return Ok(());
        }
        let mut replaces = None;
        if let Some(max) = lim(l.max_msgs_per_subject) {
            if self.count(&m.subj) >= max {
                if l.discard_new_per_subject {
                    return Err("per-subject");
                }
                replaces = self.oldest(&m.subj);
            }
        }
        if lim(l.max_msgs).is_some_and(|max| self.msgs.len() as u64 >= max) && replaces.is_none() {
            return Err("msgs");
        }
        let payload = (m.hdr.len() + m.data.len()) as u64;
        if lim(l.max_bytes).is_some_and(|max| self.bytes() + payload >= max) {
            let Some(seq) = replaces else {
                return Err("bytes");
            };
            let freed = self.size(&self.msgs[&seq]);
            if freed < payload || (!self.memory && freed == payload) {
                return Err("bytes");
            }
        }
        Ok(())
    }

    fn append(&mut self, m: M) -> Result<u64, &'static str> {
        self.check_new(&m)?;
        let seq = self.last + 1;
        let subj = m.subj.clone();
        (self.last, self.last_ts) = (seq, m.ts);
        self.msgs.insert(seq, m);
        if let Some(max) = lim(self.lim.max_msgs_per_subject) {
            while self.count(&subj) > max {
                let o = self.oldest(&subj).unwrap();
                self.drop_seq(o);
            }
        }
        self.trim_head();
        Ok(seq)
    }

    fn trim_head(&mut self) {
        while lim(self.lim.max_msgs).is_some_and(|max| self.msgs.len() as u64 > max) {
            let f = self.first();
            self.drop_seq(f);
        }
        while lim(self.lim.max_bytes).is_some_and(|max| self.bytes() > max) {
            let f = self.first();
            self.drop_seq(f);
        }
    }

    fn enforce_all(&mut self) {
        if let Some(max) = lim(self.lim.max_msgs_per_subject) {
            let subjects: Vec<Vec<u8>> = self.msgs.values().map(|m| m.subj.clone()).collect();
            for s in subjects {
                while self.count(&s) > max {
                    let o = self.oldest(&s).unwrap();
                    self.drop_seq(o);
                }
            }
        }
        self.trim_head();
    }

    fn skip(&mut self, ts: i64) -> u64 {
        self.touched = true;
        self.last += 1;
        self.last_ts = ts;
        self.last
    }

    fn matches(filter: Option<&[u8]>, subj: &[u8]) -> bool {
        match filter {
            None => true,
            Some(f) => subject_matches(f, subj),
        }
    }

    fn purge(&mut self, filter: Option<&[u8]>, upto: u64, keep: u64) -> u64 {
        if upto > 1 && keep > 0 {
            return 0;
        }
        let filter = filter.filter(|f| *f != b">");
        let Some(f) = filter else {
            if keep == 0 && upto <= 1 {
                return self.compact(self.last + 1);
            }
            if upto > 1 {
                return self.compact(upto);
            }
            if keep >= self.msgs.len() as u64 {
                return 0;
            }
            return self.compact(self.last - keep + 1);
        };
        let matching: Vec<u64> = self
            .msgs
            .iter()
            .filter(|(_, m)| subject_matches(f, &m.subj))
            .map(|(s, _)| *s)
            .collect();
        let total = matching.len() as u64;
        if keep > 0 && keep >= total {
            return 0;
        }
        let max = if keep > 0 { total - keep } else { u64::MAX };
        let bound = if upto > 1 { upto - 1 } else { self.last };
        let mut n = 0;
        for s in matching.into_iter().filter(|&s| s <= bound) {
            if n == max {
                break;
            }
            self.drop_seq(s);
            n += 1;
        }
        n
    }

    fn compact(&mut self, seq: u64) -> u64 {
        self.touched = true;
        let before = self.msgs.len() as u64;
        self.msgs.retain(|&s, _| s >= seq);
        if seq > self.last + 1 {
            self.last = seq - 1;
        }
        before - self.msgs.len() as u64
    }

    fn expire(&mut self, now: i64) {
        let age = self.lim.max_age.as_nanos() as i64;
        if age == 0 {
            return;
        }
        while let Some((&s, m)) = self.msgs.iter().next() {
            if m.ts > now - age {
                break;
            }
            self.drop_seq(s);
        }
    }
}

const SUBJECTS: [&[u8]; 6] = [b"s.a.x", b"s.a.y", b"s.b.x", b"s.b.y", b"t.a", b"t.b.c.d"];
const FILTERS: [Option<&[u8]>; 9] = [
    None,
    Some(b">"),
    Some(b"s.a.x"),
    Some(b"s.*.x"),
    Some(b"s.>"),
    Some(b"t.>"),
    Some(b"*.a"),
    Some(b"none"),
    Some(b"s.b.*"),
];

fn random_limits(r: &mut Rng) -> StoreLimits {
    let mut l = StoreLimits::default();
    if r.chance(40) {
        l.max_msgs = 5 + r.below(60) as i64;
    }
    if r.chance(30) {
        l.max_bytes = 400 + r.below(5000) as i64;
    }
    if r.chance(30) {
        l.max_msgs_per_subject = 1 + r.below(8) as i64;
    }
    if r.chance(20) {
        l.max_age = std::time::Duration::from_nanos(50 + r.below(400));
    }
    l.discard_new = r.chance(25);
    l.discard_new_per_subject = l.discard_new && l.max_msgs_per_subject > 0 && r.chance(50);
    l
}

fn random_msg(r: &mut Rng, ts: i64) -> M {
    let subj = SUBJECTS[r.below(SUBJECTS.len() as u64) as usize].to_vec();
    let hdr = if r.chance(25) {
        format!("NATS/1.0\r\nk: {}\r\n\r\n", r.below(100)).into_bytes()
    } else {
        Vec::new()
    };
    let len = if r.chance(5) {
        r.below(3000)
    } else {
        r.below(60)
    } as usize;
    let data = (0..len).map(|_| r.next() as u8).collect();
    M {
        subj,
        hdr,
        data,
        ts,
    }
}

fn same(s: &Store, m: &Model, r: &mut Rng, full: bool, ctx: &str) {
    let subjects: BTreeSet<&Vec<u8>> = m.msgs.values().map(|x| &x.subj).collect();
    let first = m.first();
    let want = State {
        msgs: m.msgs.len() as u64,
        bytes: m.bytes(),
        first_seq: first,
        last_seq: m.last,
        last_ts: m.last_ts,
        num_subjects: subjects.len() as u64,
        num_deleted: if m.msgs.is_empty() {
            0
        } else {
            m.last - first + 1 - m.msgs.len() as u64
        },
    };
    assert_eq!(s.state(), want, "{ctx}");
    assert_eq!(
        s.first_ts(),
        m.msgs.values().next().map_or(0, |x| x.ts),
        "{ctx}"
    );
    let probes: Vec<u64> = if full {
        (0..=m.last + 1).collect()
    } else {
        (0..4).map(|_| r.below(m.last + 3)).collect()
    };
    for seq in probes {
        let got = s.load(seq).map(|x| M {
            subj: x.subject().to_vec(),
            hdr: x.hdr().to_vec(),
            data: x.data().to_vec(),
            ts: x.ts,
        });
        assert_eq!(got.as_ref(), m.msgs.get(&seq), "{ctx}: load({seq})");
    }
    for _ in 0..if full { 30 } else { 3 } {
        same_queries(s, m, r, &subjects, ctx);
    }
    if full {
        let dels: Vec<u64> = if m.msgs.is_empty() {
            vec![]
        } else {
            (first..=m.last)
                .filter(|q| !m.msgs.contains_key(q))
                .collect()
        };
        assert_eq!(s.deleted(usize::MAX), dels, "{ctx}: deleted");
        s.check().unwrap_or_else(|e| panic!("{ctx}: check: {e}"));
    }
}

/// One random filter and start: next_matching, num_matching, last_per_subject.
fn same_queries(s: &Store, m: &Model, r: &mut Rng, subjects: &BTreeSet<&Vec<u8>>, ctx: &str) {
    let f = FILTERS[r.below(FILTERS.len() as u64) as usize];
    let from = r.below(m.last + 3);
    let matching = || {
        m.msgs
            .range(from..)
            .filter(|(_, x)| Model::matches(f, &x.subj))
    };
    let next = matching().next().map(|(s, _)| *s);
    assert_eq!(
        s.next_matching(from, f),
        next,
        "{ctx}: next_matching({from}, {f:?})"
    );
    let n = matching().count() as u64;
    assert_eq!(
        s.num_matching(from, f),
        n,
        "{ctx}: num_matching({from}, {f:?})"
    );
    let mut lps: Vec<u64> = subjects
        .iter()
        .filter(|subj| Model::matches(f, subj))
        .map(|subj| {
            *m.msgs
                .iter()
                .rev()
                .find(|(_, x)| &&x.subj == subj)
                .unwrap()
                .0
        })
        .collect();
    lps.sort_unstable();
    assert_eq!(s.last_per_subject(f), lps, "{ctx}: last_per_subject({f:?})");
}

/// One run: a store, its model, and what the model was at the last successful flush.
struct Run {
    r: Rng,
    dir: TempDir,
    segment_size: u64,
    file: bool,
    s: Store,
    m: Model,
    flushed: Model,
    ts: i64,
}

impl Run {
    fn new(seed: u64, file: bool) -> Run {
        let mut r = Rng(seed | 1);
        let dir = TempDir::new("model");
        let segment_size = 150 + r.below(1500);
        let lim = random_limits(&mut r);
        let s = if file {
            Store::open_file(super::tests::cfg(&dir, segment_size), lim.clone())
                .unwrap()
                .0
        } else {
            Store::new_memory(lim.clone())
        };
        let m = Model {
            msgs: BTreeMap::new(),
            last: 0,
            last_ts: 0,
            touched: false,
            memory: !file,
            lim,
        };
        Run {
            r,
            dir,
            segment_size,
            file,
            s,
            flushed: m.clone(),
            m,
            ts: 1000,
        }
    }

    /// The checks draw from their own generator so that checking more does not change the
    /// operations (a failing seed replays the same with STORE_FULL=1).
    fn check(&self, full: bool, ctx: &str) {
        same(&self.s, &self.m, &mut Rng(self.r.0 ^ 0x5555), full, ctx);
    }

    fn step(&mut self, ctx: &str) {
        self.ts += 1 + self.r.below(20) as i64;
        let (r, s, m, ts) = (&mut self.r, &mut self.s, &mut self.m, self.ts);
        match r.below(100) {
            0..=54 => {
                let msg = random_msg(r, ts);
                let got = s.append(&msg.subj, &msg.hdr, &msg.data, ts);
                match (m.append(msg), got) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{ctx}"),
                    (Err(_), Err(_)) => {}
                    (a, b) => panic!("{ctx}: model {a:?}, store {b:?}"),
                }
            }
            55..=64 => {
                let (seq, erase) = (r.below(m.last + 3), r.chance(30));
                assert_eq!(s.remove(seq, erase), m.drop_seq(seq), "{ctx}: remove {seq}");
            }
            65..=67 => {
                let f = FILTERS[r.below(FILTERS.len() as u64) as usize];
                let (upto, keep) = match r.below(4) {
                    0 => (0, 0),
                    1 => (r.below(m.last + 5), 0),
                    2 => (0, r.below(20)),
                    _ => (r.below(m.last + 3), r.below(3)),
                };
                let n = m.purge(f, upto, keep);
                let got = s.purge(f, (upto > 0).then_some(upto), (keep > 0).then_some(keep));
                assert_eq!(got, n, "{ctx}: purge({f:?}, {upto}, {keep})");
            }
            68..=71 => assert_eq!(s.skip(ts).unwrap(), m.skip(ts), "{ctx}"),
            72..=73 => {
                s.expire(ts);
                m.expire(ts);
            }
            74..=75 => {
                let l = random_limits(r);
                s.update_limits(l.clone());
                m.lim = l;
                m.enforce_all();
            }
            76..=90 => {
                if r.chance(50) {
                    flush_sync(s);
                } else {
                    s.flush().unwrap();
                }
                self.flushed = m.clone();
            }
            91..=95 if self.file => self.reopen(ctx),
            _ => {}
        }
    }

    /// Closes and reopens the file store, after a flush or as if it had crashed (then what
    /// was not flushed never happened).
    fn reopen(&mut self, ctx: &str) {
        if self.r.chance(60) {
            self.s.flush().unwrap();
        } else {
            self.m = self.flushed.clone();
            self.m.lim = self.s.limits().clone();
        }
        let lim = self.m.lim.clone();
        self.s = Store::new_memory(StoreLimits::default());
        self.s = Store::open_file(super::tests::cfg(&self.dir, self.segment_size), lim)
            .unwrap()
            .0;
        // Opening applies the limits; those removals are written by the next flush.
        self.flushed = self.m.clone();
        self.m.enforce_all();
        self.check(true, &format!("{ctx} after reopen"));
    }
}

/// One run of `ops` random operations on a file store (reopened at times) or a memory store.
fn run(seed: u64, ops: usize, file: bool) {
    let mut run = Run::new(seed, file);
    for op in 0..ops {
        let ctx = format!("seed {seed} op {op}");
        run.step(&ctx);
        run.check(op % 97 == 0 || std::env::var("STORE_FULL").is_ok(), &ctx);
    }
    run.s.flush().unwrap();
    run.check(true, &format!("seed {seed} end"));
    if std::env::var("STORE_TRACE").is_ok() {
        eprintln!("seed {seed}: {:?}", run.s.state());
    }
}

/// How many seeds: 8 by default, `STORE_SEEDS=n` for a longer hunt.
fn seeds() -> u64 {
    std::env::var("STORE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

#[test]
fn model_file_store() {
    for seed in 1..=seeds() {
        run(seed * 0x9E37_79B9, 1500, true);
    }
}

#[test]
fn model_memory_store() {
    for seed in 1..=seeds() {
        run(seed * 0x85EB_CA6B, 1500, false);
    }
}

#[test]
#[ignore]
fn model_one_seed() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let file = std::env::var("MEM").is_err();
    run(seed, 1500, file);
}
