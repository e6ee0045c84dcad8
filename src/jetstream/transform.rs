//! Subject transforms for a stream's `republish` (nats-server's `newTransform`): the source
//! pattern's `*` tokens are numbered from 1 and the destination picks them with `$n` or
//! `{{wildcard(n)}}`, hashes them with `{{partition(buckets,n...)}}` (FNV-1a 32), and a
//! trailing `>` carries the rest of the subject over. nats-server's other mapping functions
//! (split, slice) are not implemented: a destination using them is refused as invalid.

use super::subject;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// Source token index (0-based position in the source pattern).
    Wildcard(usize),
    Partition(u32, Vec<usize>),
    Rest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transform {
    src: String,
    src_tokens: usize,
    /// Empty when the source has no wildcards: the destination is used as it is.
    dest: Vec<Token>,
    dest_literal: String,
}

impl Transform {
    /// Builds the transform, or `None` where nats-server's `newTransform` fails.
    pub fn new(src: &str, dest: &str) -> Option<Transform> {
        let (sv, s_pwc, s_fwc) = info(src);
        let (dv, d_pwc, d_fwc) = info(dest);
        if !sv || !dv || d_pwc > 0 || s_fwc != d_fwc {
            return None;
        }
        let mut t = Transform {
            src: src.to_string(),
            src_tokens: src.split('.').count(),
            dest: Vec::new(),
            dest_literal: dest.to_string(),
        };
        if s_pwc == 0 && !s_fwc {
            return Some(t);
        }
        // Position in the source of the n-th `*` (1-based n).
        let pwcs: Vec<usize> = src
            .split('.')
            .enumerate()
            .filter(|(_, tok)| *tok == "*")
            .map(|(i, _)| i)
            .collect();
        let mut placeholders = 0;
        for tok in dest.split('.') {
            let parsed = placeholder(tok, &pwcs)?;
            if !matches!(parsed, Token::Literal(_) | Token::Rest) {
                placeholders += 1;
            }
            t.dest.push(parsed);
        }
        if placeholders < pwcs.len() {
            return None;
        }
        Some(t)
    }

    /// The destination for a literal `subject` the source matches, else `None`.
    pub fn apply(&self, subject: &str) -> Option<String> {
        if (self.src == ">" || self.src.is_empty())
            && (self.dest_literal == ">" || self.dest_literal.is_empty())
        {
            return Some(subject.to_string());
        }
        if !subject::matches(&self.src, subject) {
            return None;
        }
        if self.dest.is_empty() {
            return Some(self.dest_literal.clone());
        }
        let toks: Vec<&str> = subject.split('.').collect();
        let mut out: Vec<String> = Vec::with_capacity(self.dest.len());
        for d in &self.dest {
            match d {
                Token::Literal(l) => out.push(l.clone()),
                Token::Wildcard(i) => out.push(toks.get(*i)?.to_string()),
                Token::Partition(n, idx) => {
                    let mut key = Vec::new();
                    for i in idx {
                        key.extend_from_slice(toks.get(*i)?.as_bytes());
                    }
                    out.push((fnv1a32(&key) % (*n).max(1)).to_string());
                }
                Token::Rest => {
                    let from = self.src_tokens.saturating_sub(1);
                    out.push(toks.get(from..)?.join("."));
                }
            }
        }
        Some(out.join("."))
    }
}

/// (valid, number of `*`, has `>`) as nats-server's `subjectInfo`.
fn info(s: &str) -> (bool, usize, bool) {
    if !subject::is_valid(s) {
        return (false, 0, false);
    }
    let pwc = s.split('.').filter(|t| *t == "*").count();
    (true, pwc, s.split('.').any(|t| t == ">"))
}

fn placeholder(tok: &str, pwcs: &[usize]) -> Option<Token> {
    let wildcard = |n: i64| -> Option<usize> {
        let n = usize::try_from(n).ok()?;
        pwcs.get(n.checked_sub(1)?).copied()
    };
    if tok == ">" {
        return Some(Token::Rest);
    }
    if tok.len() > 1 && tok.starts_with('$') {
        return match tok[1..].parse::<i64>() {
            Ok(n) => Some(Token::Wildcard(wildcard(n)?)),
            Err(_) => Some(Token::Literal(tok.to_string())),
        };
    }
    if !(tok.len() > 4 && tok.starts_with("{{") && tok.ends_with("}}")) {
        return Some(Token::Literal(tok.to_string()));
    }
    let inner = tok[2..tok.len() - 2].trim();
    let (func, args) = inner.split_once('(')?;
    let args = args.strip_suffix(')')?;
    let nums: Vec<i64> = args
        .split(',')
        .map(|a| a.trim().parse::<i64>().ok())
        .collect::<Option<Vec<_>>>()?;
    match func.trim().to_ascii_lowercase().as_str() {
        "wildcard" if nums.len() == 1 => Some(Token::Wildcard(wildcard(nums[0])?)),
        "partition" if nums.len() >= 2 => {
            let n = u32::try_from(nums[0]).ok()?;
            let idx = nums[1..]
                .iter()
                .map(|&i| wildcard(i))
                .collect::<Option<Vec<_>>>()?;
            Some(Token::Partition(n, idx))
        }
        _ => None,
    }
}

fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms() {
        let t = Transform::new(">", "rp.>").unwrap();
        assert_eq!(t.apply("full2.a.b").as_deref(), Some("rp.full2.a.b"));
        let t = Transform::new("p4.*.*", "x.$2.{{wildcard(1)}}").unwrap();
        assert_eq!(t.apply("p4.a.b").as_deref(), Some("x.b.a"));
        assert_eq!(t.apply("p5.a.b"), None);
        let t = Transform::new("P3", "x").unwrap();
        assert_eq!(t.apply("P3").as_deref(), Some("x"));
        let t = Transform::new("a.>", "b.>").unwrap();
        assert_eq!(t.apply("a.x.y").as_deref(), Some("b.x.y"));
        let t = Transform::new(">", ">").unwrap();
        assert_eq!(t.apply("q").as_deref(), Some("q"));
        let t = Transform::new("p5.*", "x.{{partition(3,1)}}").unwrap();
        let out = t.apply("p5.key").unwrap();
        assert!(["x.0", "x.1", "x.2"].contains(&out.as_str()));
    }

    #[test]
    fn invalid_transforms() {
        assert!(Transform::new(">", "foo.*").is_none());
        assert!(Transform::new("a.*", "b").is_none()); // wildcard not used
        assert!(Transform::new("a.>", "b").is_none()); // > on one side only
        assert!(Transform::new("a.*", "b.$2").is_none());
        assert!(Transform::new("a.*", "b.{{split(1,-)}}").is_none());
        assert!(Transform::new("a..b", "c").is_none());
    }

    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }
}
