//! Re-indents compact JSON with two spaces, as nats-server's `json.MarshalIndent` does.
//!
//! `Pretty` is fed the compact text in pieces of any size and carries its state (depth,
//! inside a string, after a backslash, an opening bracket whose next byte decides between
//! `{}` and a new line) from one piece to the next, so a large response can be indented a
//! slice at a time and come out byte for byte as if it had been indented in one go.
//! Structural characters are ASCII, so working on bytes never splits a UTF-8 sequence.

#[derive(Default)]
pub struct Pretty {
    depth: usize,
    in_str: bool,
    escaped: bool,
    /// The closing bracket that would make the last `{`/`[` empty, until the next byte.
    open: Option<u8>,
}

fn newline(out: &mut Vec<u8>, depth: usize) {
    out.push(b'\n');
    for _ in 0..depth {
        out.extend_from_slice(b"  ");
    }
}

impl Pretty {
    pub fn new() -> Pretty {
        Pretty::default()
    }

    /// Appends the indented form of the next piece of compact JSON. The insides of strings
    /// (most of the bytes) are copied in runs up to the next quote or backslash.
    pub fn feed(&mut self, compact: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < compact.len() {
            if self.in_str {
                let rest = &compact[i..];
                if self.escaped {
                    self.escaped = false;
                    out.push(rest[0]);
                    i += 1;
                    continue;
                }
                let Some(n) = memchr::memchr2(b'"', b'\\', rest) else {
                    out.extend_from_slice(rest);
                    return;
                };
                out.extend_from_slice(&rest[..=n]);
                self.in_str = rest[n] == b'\\';
                self.escaped = self.in_str;
                i += n + 1;
                continue;
            }
            let c = compact[i];
            i += 1;
            if let Some(close) = self.open.take() {
                if c == close {
                    out.push(c);
                    continue;
                }
                self.depth += 1;
                newline(out, self.depth);
            }
            match c {
                b'"' => {
                    self.in_str = true;
                    out.push(c);
                }
                b'{' | b'[' => {
                    out.push(c);
                    self.open = Some(if c == b'{' { b'}' } else { b']' });
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    newline(out, self.depth);
                    out.push(c);
                }
                b',' => {
                    out.push(c);
                    newline(out, self.depth);
                }
                b':' => out.extend_from_slice(b": "),
                c => out.push(c),
            }
        }
    }

    /// Ends the text (only truncated JSON leaves a bracket open).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            self.depth += 1;
            newline(out, self.depth);
        }
    }
}

/// Indents a whole document.
pub fn pretty(compact: &str) -> String {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut p = Pretty::new();
    p.feed(compact.as_bytes(), &mut out);
    p.finish(&mut out);
    // Only ASCII was inserted into valid UTF-8, so this never replaces anything.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_prints_like_marshal_indent() {
        let s = pretty(r#"{"a":1,"b":[],"c":{},"d":["x,y",{"e":"\"}"}]}"#);
        assert_eq!(
            s,
            "{\n  \"a\": 1,\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    \"x,y\",\n    {\n      \"e\": \"\\\"}\"\n    }\n  ]\n}"
        );
        assert!(crate::protocol::json::parse(s.as_bytes()).is_ok());
    }

    /// Fed in two pieces split at every byte, or a byte at a time, the output is the same as
    /// in one piece: the state crosses piece boundaries.
    #[test]
    fn pieces_give_the_same_bytes() {
        let doc = r#"{"a":1,"b":[],"c":{},"d":["x,y",{"e":"\"}\\","f":[{}]}],"g":"é{[\\\"]}"}"#;
        let whole = pretty(doc).into_bytes();
        let bytes = doc.as_bytes();
        for split in 0..=bytes.len() {
            let mut out = Vec::new();
            let mut p = Pretty::new();
            p.feed(&bytes[..split], &mut out);
            p.feed(&bytes[split..], &mut out);
            p.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
        let mut out = Vec::new();
        let mut p = Pretty::new();
        for b in bytes {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        p.finish(&mut out);
        assert_eq!(out, whole);
    }
}
