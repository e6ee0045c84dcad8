//! The subject index's tests: matching against a brute-force scan, nats-server's order of
//! overlapping matches, the cache and the literal map.

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
        "a", "b", "a.b", "a.c", "a.b.c", "*", ">", "a.*", "a.>", "*.b", "*.*", "a.*.c", "*.b.>",
        "b.>",
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
    assert!(sl.literal_lens.iter().all(|&n| n == 0));
    assert!(sl.wild.is_empty());
    assert_eq!(sl.wild_count, 0);
}

/// The walk as it was before `*`-only levels were followed in place: a recursive call
/// for every `*` branch. The order of the matches must not move.
fn match_level_recursive(
    level: &Level,
    toks: &[&[u8]],
    out: &mut Matches,
    literal: Option<&Matches>,
) {
    let mut level = Some(level);
    let mut node: Option<&Node> = None;
    let mut pwc: Option<&Node> = None;
    for (i, t) in toks.iter().enumerate() {
        let Some(l) = level else {
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
            match_level_recursive(next, &toks[i + 1..], out, None);
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
}

/// Same matches in the same order as the recursive walk, with chains of `*`-only
/// levels (acks), literal subscriptions and queue groups mixed in.
#[test]
fn following_star_levels_keeps_the_order() {
    let patterns = [
        "a", "a.b", "*", ">", "a.*", "a.>", "*.*", "*.*.*", "a.*.*", "a.*.*.*", "*.b.*", "a.b.*",
        "*.*.>", "a.*.>", "*.*.*.*", "a.b.c", "a.x.y.z", "*.x.*.z",
    ];
    let subjects = [
        "a", "a.b", "a.b.c", "a.x.y.z", "a.b.c.d", "b.x.c.z", "q.r", "a.x",
    ];
    let mut rng = crate::util::rng::Rng::from_seed(0x2545F4914F6CDD1Du64);
    let mut rand = move || rng.next_u64();
    for round in 0..300 {
        let mut sl = Sublist::new();
        for k in 0..(rand() % 12 + 1) {
            let p = patterns[rand() as usize % patterns.len()];
            let q: Option<&[u8]> = (rand() % 5 == 0).then_some(b"q");
            sl.insert(Sub::new(k as usize, p.as_bytes(), q, b"1"))
                .unwrap();
        }
        for subject in subjects {
            let mut want = Matches::default();
            with_tokens(subject.as_bytes(), |toks| {
                let lit = sl.literal.get(subject.as_bytes()).map(|m| &**m);
                match_level_recursive(&sl.wild, toks, &mut want, lit);
            });
            let mut got = Matches::default();
            sl.walk_into(subject.as_bytes(), &mut got);
            assert_eq!(got, want, "round {round} subject {subject}");
        }
    }
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

/// The word-at-a-time split agrees with a byte-by-byte one, past 32 tokens too.
#[test]
fn tokens_split_like_bytes() {
    let mut rng = crate::util::rng::Rng::from_seed(0x9E37_79B9_7F4A_7C15u64);
    let mut rand = move || rng.next_u64();
    let alphabet = b"..a\x2e\xaebc\x00\xff\x2f\x2d.";
    for len in 0..120 {
        for _ in 0..40 {
            let s: Vec<u8> = (0..len)
                .map(|_| alphabet[rand() as usize % alphabet.len()])
                .collect();
            let want: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
            with_tokens(&s, |got| assert_eq!(got, &want[..], "{s:?}"));
        }
    }
}
