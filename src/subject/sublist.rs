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
    nodes: Children,
    pwc: Option<Box<Node>>,
    fwc: Option<Box<Node>>,
}

/// A level's literal tokens. Most levels have a few (`$JS` has `API`, `ACK`, `FC`): up to
/// `FEW` they are found by comparing, which is cheaper than hashing the token; past that
/// they move to the keyed hash map for good, so a level with many tokens (inbox ids) stays
/// O(1) and flood-proof.
#[derive(Default)]
struct Children {
    few: Vec<(Box<[u8]>, Node)>,
    many: FastMap<Box<[u8]>, Node>,
}

const FEW: usize = 8;

impl Children {
    fn is_empty(&self) -> bool {
        self.few.is_empty() && self.many.is_empty()
    }

    fn get(&self, t: &[u8]) -> Option<&Node> {
        if self.many.is_empty() {
            return self.few.iter().find(|(k, _)| **k == *t).map(|(_, n)| n);
        }
        self.many.get(t)
    }

    fn get_mut(&mut self, t: &[u8]) -> Option<&mut Node> {
        if self.many.is_empty() {
            return self.few.iter_mut().find(|(k, _)| **k == *t).map(|(_, n)| n);
        }
        self.many.get_mut(t)
    }

    fn get_or_insert(&mut self, t: &[u8]) -> &mut Node {
        if self.many.is_empty() {
            if let Some(i) = self.few.iter().position(|(k, _)| **k == *t) {
                return &mut self.few[i].1;
            }
            if self.few.len() < FEW {
                let i = self.few.len();
                self.few.push((t.into(), Node::default()));
                return &mut self.few[i].1;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.entry(t.into()).or_default()
    }

    fn remove(&mut self, t: &[u8]) {
        if self.many.is_empty() {
            self.few.retain(|(k, _)| **k != *t);
        } else {
            self.many.remove(t);
        }
    }
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
    /// How many literal subjects there are of each length (255: that long or longer): a
    /// walk hashes the subject for the literal map only when one of its length exists (an
    /// ack subject is longer than the inboxes around it).
    literal_lens: Box<[u32; 256]>,
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
            literal_lens: Box::new([0; 256]),
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
            let m = self.literal.entry(subject.clone()).or_insert_with(|| {
                self.literal_lens[len_class(&subject)] += 1;
                Rc::default()
            });
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
                self.literal_lens[len_class(&sub.subject)] -= 1;
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
                let literal = if self.literal_lens[len_class(subject)] == 0 {
                    None
                } else {
                    self.literal.get(subject).map(|m| &**m)
                };
                match_level(&self.wild, toks, out, literal);
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

    /// `matches`, or `None` when nothing matches (the publish path: no reference counting
    /// for subjects nobody listens to).
    pub fn lookup(&mut self, subject: &[u8]) -> Option<Rc<Matches>> {
        self.stats.matches += 1;
        if self.wild_count == 0 {
            return self.literal.get(subject).cloned();
        }
        if let Some(m) = self.cache.get(subject) {
            self.stats.cache_hits += 1;
            return (!m.is_empty()).then(|| m.clone());
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

/// `Sublist::literal_lens`' index for a subject.
fn len_class(subject: &[u8]) -> usize {
    subject.len().min(255)
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
            _ => level.nodes.get_or_insert(t),
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
    let mut start = 0;
    let mut more = true;
    super::each_dot(subject, |dot| {
        if n == stack.len() - 1 {
            more = false;
            return false;
        }
        stack[n] = &subject[start..dot];
        start = dot + 1;
        n += 1;
        true
    });
    if !more {
        let all: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        return f(&all);
    }
    stack[n] = &subject[start..];
    f(&stack[..=n])
}

fn match_level(level: &Level, toks: &[&[u8]], out: &mut Matches, literal: Option<&Matches>) {
    let mut level = Some(level);
    let mut node: Option<&Node> = None;
    let mut pwc: Option<&Node> = None;
    let mut literal = literal;
    // The literal entry, once a `*`-only level was followed in place (below): it goes last,
    // where it would come after the recursive call that following replaces.
    let mut last: Option<&Matches> = None;
    for (i, t) in toks.iter().enumerate() {
        let Some(l) = level else {
            // The trie ends here; only the literal subject itself lies further down.
            for lit in [literal, last].into_iter().flatten() {
                out.extend_from(lit);
            }
            return;
        };
        if let Some(f) = &l.fwc {
            out.extend_from(&f.subs);
        }
        pwc = l.pwc.as_deref();
        let below = pwc.and_then(|p| p.next.as_deref());
        if l.nodes.is_empty() && i + 1 < toks.len() {
            // Only wildcards at this level and tokens left: the `*` branch is the only way
            // on, so it is followed here instead of recursed into and returned from (the
            // five `*` of `$JS.ACK.<stream>.<consumer>.*.*.*.*.*`, matched once per ack).
            last = last.or(literal.take());
            (level, node, pwc) = (below, None, None);
            continue;
        }
        if let Some(next) = below {
            match_level(next, &toks[i + 1..], out, None);
        }
        node = l.nodes.get(t);
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
    if let Some(lit) = last {
        out.extend_from(lit);
    }
}

#[cfg(test)]
#[path = "sublist_tests.rs"]
mod tests;
