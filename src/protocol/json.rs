//! The small JSON reader and writer that CONNECT, INFO and monitoring need.
//!
//! Reading: `parse` turns bytes into a `Value` tree (depth and size bounded, never panics).
//! Lookups follow Go's `encoding/json` rules that clients rely on when talking to nats-server:
//! keys match case-insensitively, the last duplicate wins, unknown keys are ignored, `null`
//! leaves a field at its default and a value of the wrong type is an error.
//!
//! Writing: `Obj` appends `{"key":value,...}` to a `String`, escaping as Go's `json.Marshal`
//! does (including `<`, `>` and `&`), so INFO and monitoring output look like nats-server's.

use std::fmt::Write as _;

/// Nesting deeper than this is refused; it keeps the recursive reader's stack bounded.
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written, so integers keep full precision.
    Num(String),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

/// A field had the wrong type, or the text was not JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct JsonError(pub String);

pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    let mut r = Reader { s: input, i: 0 };
    r.ws();
    let v = r.value(0)?;
    r.ws();
    if r.i != r.s.len() {
        return Err(r.err("invalid character after top-level value"));
    }
    Ok(v)
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn err(&self, what: &str) -> JsonError {
        JsonError(format!("{} at offset {}", what, self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end of JSON input")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.eat(b"true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat(b"false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat(b"null") => Ok(Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("invalid character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut fields = Vec::new();
        self.ws();
        if self.eat(b"}") {
            return Ok(Value::Obj(fields));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.err("expected object key"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return Err(self.err("expected ':'"));
            }
            self.ws();
            let v = self.value(depth + 1)?;
            fields.push((key, v));
            self.ws();
            if self.eat(b",") {
                continue;
            }
            if self.eat(b"}") {
                return Ok(Value::Obj(fields));
            }
            return Err(self.err("expected ',' or '}'"));
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b"]") {
            return Ok(Value::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat(b",") {
                continue;
            }
            if self.eat(b"]") {
                return Ok(Value::Arr(items));
            }
            return Err(self.err("expected ',' or ']'"));
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        self.eat(b"-");
        let digits = |r: &mut Reader| {
            let from = r.i;
            while let Some(b'0'..=b'9') = r.s.get(r.i) {
                r.i += 1;
            }
            r.i - from
        };
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.err("invalid number"));
        }
        if self.eat(b".") && digits(self) == 0 {
            return Err(self.err("invalid number"));
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        // The slice is ASCII by construction.
        let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        Ok(Value::Num(text))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let mut v = 0u32;
        for &c in h {
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err("bad \\u escape"))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unexpected end of string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unexpected end of string"));
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat(b"\\u") {
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(c),
            }
        }
    }
}

impl Value {
    /// The value of `key` in an object (case-insensitive, last one wins, as Go does).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(fields) => fields
                .iter()
                .rev()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A boolean field: absent or null gives `None`, another type is an error.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, JsonError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(JsonError(format!("field {key} is not a bool"))),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, JsonError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(JsonError(format!("field {key} is not a string"))),
        }
    }

    /// An integer field; a fraction or exponent is an error, as for a Go `int`.
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, JsonError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Num(n)) => n
                .parse::<i64>()
                .map(Some)
                .map_err(|_| JsonError(format!("field {key} is not an integer"))),
            Some(_) => Err(JsonError(format!("field {key} is not a number"))),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// The bytes `write_str` must look at: control characters, `"`, `\`, `<`, `>`, `&`, and
/// 0xE2, the first byte of U+2028 and U+2029.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

/// Appends `s` as a JSON string literal, escaped as Go's `json.Marshal` does. Runs of bytes
/// that need no escape are copied whole (monitoring writes megabytes of these).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if !SPECIAL[b[i] as usize] {
            i += 1;
            continue;
        }
        let (len, esc): (usize, &str) = match b[i] {
            b'"' => (1, "\\\""),
            b'\\' => (1, "\\\\"),
            b'\n' => (1, "\\n"),
            b'\r' => (1, "\\r"),
            b'\t' => (1, "\\t"),
            c if c < 0x20 || c == b'<' || c == b'>' || c == b'&' => (1, ""),
            // U+2028 and U+2029 (E2 80 A8/A9).
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => {
                (3, "")
            }
            _ => {
                i += 1;
                continue;
            }
        };
        // Escapes start at ASCII bytes or at a lead byte: `i` is a char boundary.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let c = s[i..].chars().next().unwrap_or('\0');
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(esc);
        }
        i += len;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes one JSON object field by field: `Obj::new(&mut s).str("a", "x").int("b", 1).end()`.
pub struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    pub fn new(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    /// Writes the separator and `"key":`, then hands back the buffer for the value.
    pub fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, k);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        write_str(self.key(k), v);
        self
    }

    pub fn int(&mut self, k: &str, v: i64) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    pub fn uint(&mut self, k: &str, v: u64) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    pub fn float(&mut self, k: &str, v: f64) -> &mut Self {
        let out = self.key(k);
        if v.is_finite() {
            let _ = write!(out, "{v}");
        } else {
            out.push('0');
        }
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    /// A value that is already JSON text (a nested object or array).
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k).push_str(json);
        self
    }

    /// A list of strings.
    pub fn strs(&mut self, k: &str, items: &[String]) -> &mut Self {
        let out = self.key(k);
        out.push('[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, s);
        }
        out.push(']');
        self
    }

    pub fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect() {
        let v = parse(br#" {"verbose":false,"Pedantic":true,"name":"a\"b\u00e9","protocol":1,"x":[1,{"y":null}]} "#)
            .unwrap();
        assert_eq!(v.get_bool("verbose").unwrap(), Some(false));
        assert_eq!(v.get_bool("pedantic").unwrap(), Some(true));
        assert_eq!(v.get_str("name").unwrap(), Some("a\"bé"));
        assert_eq!(v.get_int("protocol").unwrap(), Some(1));
        assert_eq!(v.get_bool("echo").unwrap(), None);
    }

    #[test]
    fn type_errors_and_last_duplicate() {
        let v = parse(br#"{"verbose":"yes","protocol":1.5,"a":1,"A":2}"#).unwrap();
        assert!(v.get_bool("verbose").is_err());
        assert!(v.get_int("protocol").is_err());
        assert_eq!(v.get_int("a").unwrap(), Some(2));
        let v = parse(br#"{"verbose":null}"#).unwrap();
        assert_eq!(v.get_bool("verbose").unwrap(), None);
    }

    #[test]
    fn rejects_bad_json() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,]",
            b"01",
            b"1.",
            b"-",
            b"\"abc",
            b"\"a\x01\"",
            b"{} x",
            b"tru",
            b"\"\\u12\"",
            b"\"\\q\"",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(100_000);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn every_prefix_and_byte_flip_is_safe() {
        let sample = br#"{"a":[1,2.5e-3,{"b":"c\n\u0041\ud83d\ude00"}],"t":true,"n":null}"#;
        assert!(parse(sample).is_ok());
        for i in 0..sample.len() {
            let _ = parse(&sample[..i]);
            for flip in [0u8, b'"', b'\\', b'{', b']', 0xff] {
                let mut m = sample.to_vec();
                m[i] = flip;
                let _ = parse(&m);
            }
        }
    }

    #[test]
    fn writes_like_go() {
        let mut s = String::new();
        Obj::new(&mut s)
            .str("server_id", "<&>\"\\\n\u{1}")
            .int("port", -1)
            .bool("headers", true)
            .strs("urls", &["a".into(), "b".into()])
            .raw("o", "{}")
            .end();
        assert_eq!(
            s,
            r#"{"server_id":"\u003c\u0026\u003e\"\\\n\u0001","port":-1,"headers":true,"urls":["a","b"],"o":{}}"#
        );
    }

    /// The run-copying escaper agrees with escaping char by char, on every ASCII char and on
    /// multi-byte ones next to escapes (U+2028 and U+2029 are escaped, as Go does).
    #[test]
    fn escapes_like_char_by_char() {
        fn reference(s: &str) -> String {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c if (c as u32) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        let mut cases: Vec<String> = (0u8..0x80).map(|b| format!("a{}é", b as char)).collect();
        cases.extend(
            [
                "",
                "plain",
                "\u{2028}\u{2029}\u{2027}\u{202a}x",
                "é<ü>€&\"\\",
                "\u{e2}\u{80}",
            ]
            .map(String::from),
        );
        for s in cases {
            let mut out = String::new();
            write_str(&mut out, &s);
            assert_eq!(out, reference(&s), "{s:?}");
        }
    }
}
