//! Subject rules JetStream applies to stream subjects and filters, as nats-server's
//! `sublist.go` words them: `IsValidSubject` (no empty token, `>` last, no whitespace),
//! `SubjectsCollide` (could two patterns both match one literal subject?) and
//! `subjectIsSubsetMatch` (is every subject matched by the first also matched by the second?);
//! and the rule for stream and consumer names (`isValidName`).
//! Tokens are split on `.`; a token `*` matches one token and `>` the rest.

/// nats-server's `IsValidSubject`: non-empty, no empty token, nothing after `>`, and no
/// whitespace in any token.
pub fn is_valid(subject: &str) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut after_fwc = false;
    for t in subject.split('.') {
        if t.is_empty() || after_fwc {
            return false;
        }
        if t.bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c'))
        {
            return false;
        }
        if t == ">" {
            after_fwc = true;
        }
    }
    true
}

/// Whether the subject has no wildcard token (`*` or `>` standing alone).
pub fn is_literal(subject: &str) -> bool {
    !subject.split('.').any(|t| t == "*" || t == ">")
}

/// A valid subject without wildcards (what may be published to).
pub fn is_valid_literal(subject: &str) -> bool {
    is_valid(subject) && is_literal(subject)
}

/// nats-server's `tokenAt`: the 1-based `index`th token, or "" when there are fewer.
pub fn token_at(subject: &str, index: usize) -> &str {
    subject.split('.').nth(index.wrapping_sub(1)).unwrap_or("")
}

/// nats-server's `SubjectsCollide`. Allocation-free: config checks call it for every pair
/// of subjects involving a wildcard.
pub fn collide(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (na, pwc_a, fwc_a) = analyze(a);
    let (nb, pwc_b, fwc_b) = analyze(b);
    let (lit_a, lit_b) = (!(pwc_a || fwc_a), !(pwc_b || fwc_b));
    if lit_a && lit_b {
        return false;
    }
    if lit_a {
        return subset_match(a, na, b, nb);
    }
    if lit_b {
        return subset_match(b, nb, a, na);
    }
    if !fwc_a && !fwc_b && na != nb {
        return false;
    }
    if na < nb && !fwc_a || nb < na && !fwc_b {
        return false;
    }
    a.split('.')
        .zip(b.split('.'))
        .all(|(x, y)| tokens_can_match(x, y))
}

/// nats-server's `subjectIsSubsetMatch(subject, test)`: `test` matches everything `subject`
/// can match.
pub fn is_subset_match(subject: &str, test: &str) -> bool {
    let (ns, _, _) = analyze(subject);
    let (nt, _, _) = analyze(test);
    subset_match(subject, ns, test, nt)
}

/// Whether the literal `subject` is matched by the filter `pattern`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// (tokens, has a `*` token, has a `>` token).
fn analyze(s: &str) -> (usize, bool, bool) {
    let (mut n, mut pwc, mut fwc) = (0, false, false);
    for t in s.split('.') {
        n += 1;
        pwc |= t == "*";
        fwc |= t == ">";
    }
    (n, pwc, fwc)
}

fn tokens_can_match(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (ca, cb) = (a.as_bytes()[0], b.as_bytes()[0]);
    if ca == b'*' || cb == b'*' || ca == b'>' || cb == b'>' {
        return true;
    }
    a == b
}

/// nats-server's `isSubsetMatchTokenized` over `tokens` (n_tokens of them) and `test`
/// (n_test), token for token, including its quirk of comparing only the first byte of a
/// wildcard-looking token.
fn subset_match(tokens: &str, n_tokens: usize, test: &str, n_test: usize) -> bool {
    let mut toks = tokens.split('.');
    for t2 in test.split('.') {
        let Some(t1) = toks.next() else {
            return false;
        };
        if t2.is_empty() {
            return false;
        }
        if t2 == ">" {
            return true;
        }
        if t1.is_empty() || t1 == ">" {
            return false;
        }
        if t1 == "*" {
            if t2 != "*" {
                return false;
            }
            continue;
        }
        if !t2.starts_with('*') && t1 != t2 {
            return false;
        }
    }
    n_tokens == n_test
}

/// nats-server's `isValidName`: not empty, no whitespace, `.`, `*` or `>`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.bytes().any(|b| {
            matches!(
                b,
                b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'.' | b'*' | b'>'
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for ok in ["a", "a.b", "a.*", "a.>", ">", "*.*", "$JS.API.>"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a.>.b", "a b", "a.\tb"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert!(is_literal("a.b*") && !is_literal("a.*") && !is_literal(">"));
        assert_eq!(token_at("$JS.API.STREAM.INFO.X", 5), "X");
        assert_eq!(token_at("$JS.API.STREAM.INFO", 5), "");
        assert_eq!(token_at("a", 0), "");
    }

    #[test]
    fn collisions_like_nats_server() {
        let cases = [
            ("orders.>", "orders.a", true),
            ("orders.>", "orders.*.z", true),
            ("orders.>", "x.y", false),
            ("x.*", "x.a", true),
            ("*.*.*", "orders.>", true),
            ("*.*.*", "q.r.s.t", false),
            ("a.*", "aa", false),
            ("foo.*", "foo.*.bar", false),
            ("foo.>", "foo", false),
            (">", "anything.at.all", true),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("Z1*", "Z11", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(collide(a, b), want, "{a} vs {b}");
            assert_eq!(collide(b, a), want, "{b} vs {a}");
        }
    }

    #[test]
    fn subsets_and_matches() {
        assert!(is_subset_match("$JS.API.FOO", "$JS.API.>"));
        assert!(!is_subset_match("$JS.>", "$JS.API.>"));
        assert!(is_subset_match("foo.*", "foo.*"));
        assert!(is_subset_match("foo.bar", "foo.*"));
        assert!(!is_subset_match("foo.*", "foo.bar"));
        assert!(matches("s.*", "s.a") && matches(">", "a.b") && !matches("s.*", "s.a.b"));
        assert!(matches("s.a", "s.a") && !matches("s.a", "s.b"));
    }
}
