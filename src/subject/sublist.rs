//! The subject index: which subscriptions a published subject reaches.
//!
//! Subjects are tokens separated by `.`; in a subscription `*` matches one token and `>` one
//! or more trailing tokens. Subscriptions live in a slab and are addressed by `SubId`.
//!
//! Two structures hold them:
//! - literal subjects (no wildcard) in a hash map from subject to its `Matches`, kept ready to
//!   hand out, so when nobody uses wildcards a publish costs exactly one hash lookup;
//! - wildcard subjects in a token trie (`Level`/`Node`), walked on a cache miss.
//!
//! When wildcard subscriptions exist, results are cached per literal subject (bounded, like
//! nats-server's sublist cache). The cache stays exact: changing a literal subscription drops
//! that subject's entry, and changing a wildcard subscription drops every cached subject it
//! matches. A cache hit is one hash lookup.
//!
//! Removal is O(1) in the size of a subject's list: each `Sub` remembers its slot.

use crate::subject::{has_wildcard, subject_matches, valid_subject};
use crate::util::hash::{new_map, FastMap};
use slab::Slab;
use std::rc::Rc;

pub type SubId = usize;

/// Cached results beyond this many subjects are evicted (about half at a time).
const CACHE_MAX: usize = 4096;

#[derive(Debug)]
pub struct Sub {
    /// Slab token of the connection (client or route) that owns it.
    pub conn: usize,
    pub sid: Box<[u8]>,
    pub subject: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries; 0 means never.
    pub max: u64,
    pub delivered: u64,
    /// For queue interest learned from a route: how many members the remote server has.
    pub weight: u32,
    /// Position in the list that holds it (plain list or its queue group's members).
    slot: u32,
}

impl Sub {
    pub fn new(conn: usize, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) -> Sub {
        Sub {
            conn,
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.map(Into::into),
            max: 0,
            delivered: 0,
            weight: 1,
            slot: 0,
        }
    }
}

/// One queue group's members that a subject reaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub name: Box<[u8]>,
    pub members: Vec<SubId>,
}

/// Everything one subject reaches: plain subscriptions, and queue groups of which one member
/// gets each message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matches {
    pub plain: Vec<SubId>,
    pub groups: Vec<Group>,
}

impl Matches {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    fn extend_from(&mut self, other: &Matches) {
        self.plain.extend_from_slice(&other.plain);
        for g in &other.groups {
            match self.groups.iter_mut().find(|mine| mine.name == g.name) {
                Some(mine) => mine.members.extend_from_slice(&g.members),
                None => self.groups.push(g.clone()),
            }
        }
    }
}

/// Adds `id` to `m`, returning the slot it took.
fn add_to(m: &mut Matches, id: SubId, queue: Option<&[u8]>) -> u32 {
    let list = match queue {
        None => &mut m.plain,
        Some(q) => match m.groups.iter().position(|g| &*g.name == q) {
            Some(i) => &mut m.groups[i].members,
            None => {
                m.groups.push(Group {
                    name: q.into(),
                    members: Vec::new(),
                });
                &mut m.groups.last_mut().expect("just pushed").members
            }
        },
    };
    list.push(id);
    (list.len() - 1) as u32
}

/// Removes the sub at `slot` from `m`; returns the sub that moved into that slot, if any.
fn remove_from(m: &mut Matches, slot: u32, queue: Option<&[u8]>) -> Option<SubId> {
    let slot = slot as usize;
    let (list, group) = match queue {
        None => (&mut m.plain, None),
        Some(q) => {
            let i = m.groups.iter().position(|g| &*g.name == q)?;
            (&mut m.groups[i].members, Some(i))
        }
    };
    if slot >= list.len() {
        return None;
    }
    list.swap_remove(slot);
    let moved = list.get(slot).copied();
    if let Some(i) = group {
        if m.groups[i].members.is_empty() {
            m.groups.swap_remove(i);
        }
    }
    moved
}

#[derive(Default)]
struct Level {
    nodes: FastMap<Box<[u8]>, Node>,
    pwc: Option<Box<Node>>,
    fwc: Option<Box<Node>>,
}

#[derive(Default)]
struct Node {
    next: Option<Box<Level>>,
    subs: Matches,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

/// Index counters, read by monitoring.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub inserts: u64,
    pub removes: u64,
    pub matches: u64,
    pub cache_hits: u64,
}

pub struct Sublist {
    subs: Slab<Sub>,
    literal: FastMap<Box<[u8]>, Rc<Matches>>,
    wild: Level,
    wild_count: usize,
    cache: FastMap<Box<[u8]>, Rc<Matches>>,
    empty: Rc<Matches>,
    /// The list `lookup_once` fills, kept for the next one.
    once: Rc<Matches>,
    pub stats: Stats,
}

#[derive(Debug, PartialEq, Eq)]
pub struct InvalidSubject;

impl Default for Sublist {
    fn default() -> Sublist {
        Sublist::new()
    }
}

impl Sublist {
    pub fn new() -> Sublist {
        Sublist {
            subs: Slab::new(),
            literal: new_map(),
            wild: Level::default(),
            wild_count: 0,
            cache: new_map(),
            empty: Rc::new(Matches::default()),
            once: Rc::default(),
            stats: Stats::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.subs.len()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Largest and summed fan-out of the cached results, and how many there are.
    pub fn cache_fanout(&self) -> (usize, usize, usize) {
        let sizes = self.cache.values().map(|m| m.plain.len() + m.groups.len());
        sizes.fold((0, 0, 0), |(max, sum, n), f| (max.max(f), sum + f, n + 1))
    }

    pub fn get(&self, id: SubId) -> Option<&Sub> {
        self.subs.get(id)
    }

    pub fn get_mut(&mut self, id: SubId) -> Option<&mut Sub> {
        self.subs.get_mut(id)
    }

    /// Every subscription, for monitoring.
    pub fn iter(&self) -> impl Iterator<Item = (SubId, &Sub)> {
        self.subs.iter()
    }

    pub fn insert(&mut self, sub: Sub) -> Result<SubId, InvalidSubject> {
        if !valid_subject(&sub.subject) {
            return Err(InvalidSubject);
        }
        let subject = sub.subject.clone();
        let queue = sub.queue.clone();
        let id = self.subs.insert(sub);
        let slot = if has_wildcard(&subject) {
            self.wild_count += 1;
            let node = node_for(&mut self.wild, &subject);
            let slot = add_to(&mut node.subs, id, queue.as_deref());
            let pattern = &subject;
            self.cache.retain(|k, _| !subject_matches(pattern, k));
            slot
        } else {
            let m = self.literal.entry(subject.clone()).or_default();
            self.cache.remove(&subject);
            add_to(Rc::make_mut(m), id, queue.as_deref())
        };
        self.subs[id].slot = slot;
        self.stats.inserts += 1;
        Ok(id)
    }

    pub fn remove(&mut self, id: SubId) -> Option<Sub> {
        let sub = self.subs.try_remove(id)?;
        let queue = sub.queue.as_deref();
        let moved = if has_wildcard(&sub.subject) {
            self.wild_count -= 1;
            let moved = remove_wild(&mut self.wild, &sub.subject, sub.slot, queue);
            let pattern = &sub.subject;
            self.cache.retain(|k, _| !subject_matches(pattern, k));
            moved
        } else {
            self.cache.remove(&sub.subject);
            let m = self.literal.get_mut(&sub.subject)?;
            let moved = remove_from(Rc::make_mut(m), sub.slot, queue);
            if m.is_empty() {
                self.literal.remove(&sub.subject);
            }
            moved
        };
        if let Some(other) = moved {
            self.subs[other].slot = sub.slot;
        }
        self.stats.removes += 1;
        Some(sub)
    }

    /// Everything `subject` reaches. Literal subjects only; an empty token matches nothing.
    pub fn matches(&mut self, subject: &[u8]) -> Rc<Matches> {
        self.lookup(subject).unwrap_or_else(|| self.empty.clone())
    }

    /// What `subject` matches, read-only (the cache is used but not filled): for questions
    /// asked outside the publish path, such as whether a subject has subscribers at all.
    pub fn peek(&self, subject: &[u8]) -> Option<Rc<Matches>> {
        if self.wild_count == 0 {
            return self.literal.get(subject).cloned();
        }
        if let Some(m) = self.cache.get(subject) {
            return (!m.is_empty()).then(|| m.clone());
        }
        self.walk(subject)
    }

    /// What `subject` matches, from the literal map and the trie (no cache).
    fn walk(&self, subject: &[u8]) -> Option<Rc<Matches>> {
        let mut result = Matches::default();
        self.walk_into(subject, &mut result);
        (!result.is_empty()).then(|| Rc::new(result))
    }

    fn walk_into(&self, subject: &[u8], out: &mut Matches) {
        with_tokens(subject, |toks| {
            if !toks.iter().any(|t| t.is_empty()) {
                match_level(&self.wild, toks, out, self.literal.get(subject).map(|m| &**m));
            }
        });
    }

    /// `lookup` for a subject published to once, such as a reply inbox (a PubAck, an API
    /// reply) or an ack: the cache is neither read (it would only miss, at the price of
    /// hashing the subject) nor filled (an insertion would evict subjects that are published
    /// to again), and the walk fills the list of the previous one-off lookup when nobody
    /// holds it any more (no allocation).
    pub fn lookup_once(&mut self, subject: &[u8]) -> Option<Rc<Matches>> {
        self.stats.matches += 1;
        if self.wild_count == 0 {
            return self.literal.get(subject).cloned();
        }
        let mut once = std::mem::take(&mut self.once);
        if Rc::get_mut(&mut once).is_none() {
            // Still held by a caller further up (a delivery that published again).
            once = Rc::default();
        }
        let m = Rc::make_mut(&mut once);
        m.plain.clear();
        m.groups.clear();
        self.walk_into(subject, m);
        let found = !m.is_empty();
        self.once = once;
        found.then(|| self.once.clone())
    }

    /// The start of every lookup: counted, then answered from the literal map when there
    /// are no wildcards, or from the cache; None when the trie must be walked.
    fn known(&mut self, subject: &[u8]) -> Option<Option<Rc<Matches>>> {
        self.stats.matches += 1;
        if self.wild_count == 0 {
            return Some(self.literal.get(subject).cloned());
        }
        let m = self.cache.get(subject)?;
        self.stats.cache_hits += 1;
        Some((!m.is_empty()).then(|| m.clone()))
    }

    /// `matches`, or `None` when nothing matches (the publish path: no reference counting
    /// for subjects nobody listens to).
    pub fn lookup(&mut self, subject: &[u8]) -> Option<Rc<Matches>> {
        if let Some(found) = self.known(subject) {
            return found;
        }
        let result = self.walk(subject).unwrap_or_else(|| self.empty.clone());
        if self.cache.len() >= CACHE_MAX {
            let mut keep = false;
            self.cache.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.cache.insert(subject.into(), result.clone());
        (!result.is_empty()).then_some(result)
    }
}

/// The trie node for a wildcard subject, created as needed.
fn node_for<'a>(root: &'a mut Level, subject: &[u8]) -> &'a mut Node {
    let mut level = root;
    let mut toks = subject.split(|&b| b == b'.').peekable();
    loop {
        let t = toks.next().unwrap_or_default();
        let node: &mut Node = match t {
            b"*" => level.pwc.get_or_insert_with(Default::default),
            b">" => level.fwc.get_or_insert_with(Default::default),
            _ => level.nodes.entry(t.into()).or_default(),
        };
        if toks.peek().is_none() {
            return node;
        }
        level = node.next.get_or_insert_with(Default::default);
    }
}

/// Removes a sub from the trie and prunes nodes left empty.
fn remove_wild(
    level: &mut Level,
    subject: &[u8],
    slot: u32,
    queue: Option<&[u8]>,
) -> Option<SubId> {
    let (t, rest) = match subject.iter().position(|&b| b == b'.') {
        Some(i) => (&subject[..i], Some(&subject[i + 1..])),
        None => (subject, None),
    };
    let node: &mut Node = match t {
        b"*" => level.pwc.as_deref_mut()?,
        b">" => level.fwc.as_deref_mut()?,
        _ => level.nodes.get_mut(t)?,
    };
    let moved = match rest {
        None => remove_from(&mut node.subs, slot, queue),
        Some(rest) => {
            let next = node.next.as_deref_mut()?;
            let moved = remove_wild(next, rest, slot, queue);
            if next.is_empty() {
                node.next = None;
            }
            moved
        }
    };
    if node.is_empty() {
        match t {
            b"*" => level.pwc = None,
            b">" => level.fwc = None,
            _ => {
                level.nodes.remove(t);
            }
        }
    }
    moved
}

/// Adds to `out` every subscription matching the tokens, in nats-server's order (which is
/// the order one connection with overlapping subscriptions receives its copies): at each
/// level `>` first, then the `*` branch, then down the literal token; at the end the literal
/// node, then the last level's `*`. `literal` (the top-level call only) is the literal map's
/// entry for the whole subject, which stands where nats-server's literal node would be.
/// Calls `f` with `subject`'s tokens: on the stack up to 32 of them (a cache miss or a
/// one-off lookup allocates nothing for them), on the heap beyond.
fn with_tokens<R>(subject: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let mut stack: [&[u8]; 32] = [&[]; 32];
    let mut n = 0;
    for t in subject.split(|&b| b == b'.') {
        if n == stack.len() {
            let all: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
            return f(&all);
        }
        stack[n] = t;
        n += 1;
    }
    f(&stack[..n])
}

fn match_level(level: &Level, toks: &[&[u8]], out: &mut Matches, literal: Option<&Matches>) {
    let mut level = Some(level);
    let mut node: Option<&Node> = None;
    let mut pwc: Option<&Node> = None;
    for (i, t) in toks.iter().enumerate() {
        let Some(l) = level else {
            // The trie ends here; only the literal subject itself lies further down.
            if let Some(lit) = literal {
                out.extend_from(lit);
            }
            return;
        };
        if let Some(f) = &l.fwc {
            out.extend_from(&f.subs);
        }
        pwc = l.pwc.as_deref();
        if let Some(next) = pwc.and_then(|p| p.next.as_deref()) {
            match_level(next, &toks[i + 1..], out, None);
        }
        // A level of wildcards only (the `*` tokens of `$JS.ACK.<stream>.*.*.*.*.*.*`) has
        // no literal token to hash.
        node = if l.nodes.is_empty() {
            None
        } else {
            l.nodes.get(*t)
        };
        level = node.and_then(|n| n.next.as_deref());
    }
    if let Some(n) = node {
        out.extend_from(&n.subs);
    }
    if let Some(lit) = literal {
        out.extend_from(lit);
    }
    if let Some(p) = pwc {
        out.extend_from(&p.subs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::valid_literal_subject;

    fn ids(m: &Matches) -> Vec<SubId> {
        let mut v: Vec<SubId> = m.plain.clone();
        for g in &m.groups {
            v.extend(&g.members);
        }
        v.sort();
        v
    }

    fn add(sl: &mut Sublist, subject: &str) -> SubId {
        sl.insert(Sub::new(0, subject.as_bytes(), None, b"1"))
            .unwrap()
    }

    #[test]
    fn validity() {
        for ok in [
            "foo", "foo.bar", "*", ">", "foo.*", "foo.>", "*.*.>", "foo*", "f>o",
        ] {
            assert!(valid_subject(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "foo..bar", "foo.>.bar", ".foo", "foo.", ">.foo", "."] {
            assert!(!valid_subject(bad.as_bytes()), "{bad}");
        }
        assert!(valid_literal_subject(b"foo.bar*"));
        assert!(!valid_literal_subject(b"foo.*"));
        assert!(!valid_literal_subject(b"foo..x"));
    }

    #[test]
    fn wildcards_match() {
        let mut sl = Sublist::new();
        let a = add(&mut sl, "foo.bar");
        let b = add(&mut sl, "foo.*");
        let c = add(&mut sl, "foo.>");
        let d = add(&mut sl, "*.bar");
        let e = add(&mut sl, ">");
        let f = add(&mut sl, "foo.*.baz");
        assert_eq!(ids(&sl.matches(b"foo.bar")), vec![a, b, c, d, e]);
        assert_eq!(ids(&sl.matches(b"foo")), vec![e]);
        assert_eq!(ids(&sl.matches(b"foo.x.baz")), vec![c, e, f]);
        assert_eq!(ids(&sl.matches(b"foo.x.y")), vec![c, e]);
        assert_eq!(ids(&sl.matches(b"foo..bar")), Vec::<SubId>::new());
        // Publishing to a wildcard subject reaches subscriptions to that very token.
        assert_eq!(ids(&sl.matches(b"foo.*")), vec![b, c, e]);
    }

    /// One connection's overlapping subscriptions get their copies in nats-server's order.
    #[test]
    fn match_order_is_nats_servers() {
        let mut sl = Sublist::new();
        let lit = add(&mut sl, "foo");
        let fwc = add(&mut sl, ">");
        let pwc = add(&mut sl, "*");
        assert_eq!(sl.matches(b"foo").plain, vec![fwc, lit, pwc]);
        let a = add(&mut sl, "a.b.c");
        let b = add(&mut sl, "a.*.c");
        let c = add(&mut sl, "a.>");
        let d = add(&mut sl, "*.b.*");
        // Traced through nats-server's matchLevel: root `>`, root `*` branch, then under `a`.
        assert_eq!(sl.matches(b"a.b.c").plain, vec![fwc, d, c, b, a]);
    }

    #[test]
    fn invalid_subjects_are_refused() {
        let mut sl = Sublist::new();
        assert_eq!(
            sl.insert(Sub::new(0, b"foo..bar", None, b"1")).unwrap_err(),
            InvalidSubject
        );
        assert_eq!(sl.count(), 0);
    }

    #[test]
    fn queue_groups() {
        let mut sl = Sublist::new();
        let q1 = sl.insert(Sub::new(1, b"foo", Some(b"q"), b"1")).unwrap();
        let q2 = sl.insert(Sub::new(2, b"foo.*", Some(b"q"), b"1")).unwrap();
        let r1 = sl.insert(Sub::new(3, b"foo", Some(b"r"), b"1")).unwrap();
        let p = add(&mut sl, "foo");
        let m = sl.matches(b"foo");
        assert_eq!(m.plain, vec![p]);
        assert_eq!(m.groups.len(), 2);
        let g = m.groups.iter().find(|g| &*g.name == b"q").unwrap();
        assert_eq!(g.members, vec![q1]);
        let m = sl.matches(b"foo.x");
        assert_eq!(
            m.groups,
            vec![Group {
                name: b"q"[..].into(),
                members: vec![q2]
            }]
        );
        sl.remove(r1);
        assert_eq!(sl.matches(b"foo").groups.len(), 1);
    }

    /// The cache, the literal map and the trie agree with a brute-force scan under random
    /// inserts and removes of literal, wildcard and queue subscriptions.
    #[test]
    fn agrees_with_brute_force() {
        let subjects = [
            "a", "b", "a.b", "a.c", "a.b.c", "*", ">", "a.*", "a.>", "*.b", "*.*", "a.*.c",
            "*.b.>", "b.>",
        ];
        let literals = ["a", "b", "a.b", "a.c", "a.b.c", "b.b", "c.b.d", "a.b.c.d"];
        let mut sl = Sublist::new();
        let mut live: Vec<SubId> = Vec::new();
        let mut seed = 0x9E3779B97F4A7C15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..20_000 {
            let r = rand();
            // Inserts and removes balance out around a few hundred live subscriptions.
            if live.len() < 8 || (r % 2 == 0 && live.len() < 300) {
                let s = subjects[(r >> 8) as usize % subjects.len()];
                let q: Option<&[u8]> = match (r >> 16) % 4 {
                    0 => Some(b"q1"),
                    1 => Some(b"q2"),
                    _ => None,
                };
                live.push(sl.insert(Sub::new(step, s.as_bytes(), q, b"1")).unwrap());
            } else {
                let i = (r >> 8) as usize % live.len();
                let id = live.swap_remove(i);
                assert!(sl.remove(id).is_some());
            }
            let lit = literals[(r >> 24) as usize % literals.len()];
            let got = ids(&sl.matches(lit.as_bytes()));
            let mut want: Vec<SubId> = live
                .iter()
                .copied()
                .filter(|&id| subject_matches(&sl.get(id).unwrap().subject, lit.as_bytes()))
                .collect();
            want.sort();
            assert_eq!(got, want, "step {step} subject {lit}");
        }
        for id in live.drain(..) {
            sl.remove(id);
        }
        assert_eq!(sl.count(), 0);
        assert!(sl.literal.is_empty());
        assert!(sl.wild.is_empty());
        assert_eq!(sl.wild_count, 0);
    }

    #[test]
    fn cache_is_bounded() {
        let mut sl = Sublist::new();
        add(&mut sl, "x.>");
        for i in 0..3 * CACHE_MAX {
            sl.matches(format!("x.{i}").as_bytes());
            assert!(sl.cache_len() <= CACHE_MAX);
        }
    }

    /// Subjects of more than 32 tokens (the tokens go to the heap) match as the short ones.
    #[test]
    fn long_subjects_match() {
        let mut sl = Sublist::new();
        add(&mut sl, "a.>");
        let long = format!("a{}", ".b".repeat(40));
        let exact = add(&mut sl, &long);
        add(&mut sl, &format!("a{}.*", ".b".repeat(39)));
        assert_eq!(sl.matches(long.as_bytes()).plain.len(), 3);
        assert_eq!(sl.lookup_once(long.as_bytes()).unwrap().plain.len(), 3);
        assert!(sl.lookup_once(format!("{long}..b").as_bytes()).is_none());
        assert!(sl.matches(long.as_bytes()).plain.contains(&exact));
    }

    /// A one-off lookup finds what `lookup` finds and leaves the cache as it was.
    #[test]
    fn lookup_once_does_not_fill_the_cache() {
        let mut sl = Sublist::new();
        add(&mut sl, "_INBOX.a.*");
        add(&mut sl, "_INBOX.a.1");
        let once = sl.lookup_once(b"_INBOX.a.1").unwrap();
        assert_eq!(sl.cache_len(), 0);
        assert!(sl.lookup_once(b"_INBOX.b.1").is_none());
        let cached = sl.lookup(b"_INBOX.a.1").unwrap();
        assert_eq!((once.plain.len(), cached.plain.len()), (2, 2));
        assert_eq!(sl.cache_len(), 1);
        assert_eq!(sl.lookup_once(b"_INBOX.a.1").unwrap().plain.len(), 2);
        assert_eq!(sl.stats.matches, 4);
    }
}
