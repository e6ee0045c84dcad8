//! Subjects: the index that maps a published subject to its subscriptions, and the
//! permission lists that say which subjects a user may use. Here: the subject grammar
//! (tokens separated by `.`, `*` one token, `>` the rest), which config, the index, the
//! permissions and JetStream all check subjects with.

pub mod perms;
pub mod sublist;

/// A subject a client may subscribe to: no empty token, `>` only as the last token.
pub fn valid_subject(subject: &[u8]) -> bool {
    let mut toks = subject.split(|&b| b == b'.').peekable();
    while let Some(t) = toks.next() {
        if t.is_empty() || (t == b">" && toks.peek().is_some()) {
            return false;
        }
    }
    true
}

/// A subject fit to publish to in pedantic mode: no empty token and no wildcard token.
pub fn valid_literal_subject(subject: &[u8]) -> bool {
    subject
        .split(|&b| b == b'.')
        .all(|t| !t.is_empty() && t != b"*" && t != b">")
}

/// Whether the subject has a wildcard token.
pub fn has_wildcard(subject: &[u8]) -> bool {
    subject
        .split(|&b| b == b'.')
        .any(|t| t == b"*" || t == b">")
}

/// Whether a subscription `pattern` matches the literal subject `subject`.
pub fn subject_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = pattern.split(|&b| b == b'.');
    let mut s = subject.split(|&b| b == b'.');
    loop {
        match (p.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
