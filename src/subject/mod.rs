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

/// Calls `f` with the index of each `.` in `s`, in order, until it returns false. Eight
/// bytes at a time: a subject of 60 bytes is 8 words, not 60 compares (every uncached
/// lookup, such as each ack's, splits its subject, and each ack is parsed).
pub fn each_dot(s: &[u8], mut f: impl FnMut(usize) -> bool) {
    const DOTS: u64 = 0x2E2E_2E2E_2E2E_2E2E;
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        // A zero byte of x is a dot of w; exactly those bytes get their high bit here.
        let x = u64::from_le_bytes(b) ^ DOTS;
        let mut zeros = !(((x & LOW7) + LOW7) | x) & HIGH;
        while zeros != 0 {
            if !f(at + zeros.trailing_zeros() as usize / 8) {
                return;
            }
            zeros &= zeros - 1;
        }
        at += 8;
    }
    for (i, &c) in words.remainder().iter().enumerate() {
        if c == b'.' && !f(at + i) {
            return;
        }
    }
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
