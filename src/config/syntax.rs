//! Reader for nats-server's configuration-file format (behaviour checked against
//! nats-server v2.9.10: conf/lex.go, conf/parse.go, and `nats-server -t`).
//!
//! Owns: text -> tree of positioned values (`Map` of `Item`s), including
//! `include` files, `$variables` (enclosing maps, then the environment), size
//! suffixes, and Go-compatible `parse_duration`. It does not know any option
//! names; callers interpret the tree. Facts callers must mirror:
//! - Keys are stored as written; nats-server matches option names with
//!   `strings.ToLower(key)`, so callers should compare lowercased keys.
//!   (With both `port` and `PORT` present nats-server's winner is random.)
//! - Duplicate keys: the later value wins (kept at the first key's position
//!   in iteration order). Variable lookup is case-sensitive.
//! - nats-server reports unknown keys as errors unless the key was referenced
//!   as a variable (`Item::used_as_var`).
//! - Durations: a string goes through Go's `time.ParseDuration`
//!   (`parse_duration`); an integer means seconds (nats-server warns "X should
//!   be converted to a duration"); a float is an error. Beware: unquoted `2m`
//!   is the integer 2_000_000 (suffix m = 10^6), `10s`/`1h`/`500ms` are strings,
//!   and unquoted `1m30s` is a syntax error. Quote durations.
//! - A bare `$name` is always a variable reference: account names like `$G`
//!   must be quoted. A bare `$2a$...` (bcrypt hash) stays a string.
//! - Datetimes (`2023-01-02T03:04:05Z`) are validated and kept as `Str`.
//!
//! Deliberate divergences (nats-server misbehaves): `[1, 2]` is accepted
//! (nats-server rejects a list whose last number touches `]`); a key with no
//! value, an empty value (`x = ;`), an unknown size suffix (`1kbb`) and an
//! overflowing suffix are errors rather than silently dropped/wrapped; a
//! self-referencing environment variable is an error, not a stack overflow;
//! a block string may end with `)` followed by CRLF.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

const MAX_DEPTH: usize = 64; // nested maps/lists (and env-variable re-parses)
const MAX_INCLUDE_DEPTH: usize = 10;
const MAX_FILE_SIZE: u64 = 16 << 20;
const MAX_VAR_NODES: usize = 1 << 20; // values copied by `$var` expansion

/// Where a value (for map entries: its key) starts. `col` counts chars from 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Pos {
    pub file: Rc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Item>),
    Map(Map),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub value: Value,
    pub pos: Pos,
    /// Some `$name` referred to this entry (nats-server exempts such keys from
    /// "unknown field" errors).
    pub used_as_var: bool,
}

/// Map entries in definition order; keys unique (case-sensitive).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<(String, Item)>,
    index: HashMap<String, usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConfError {
    pub pos: Option<Pos>,
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.pos {
            Some(p) => write!(f, "{}: {}", p, self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for ConfError {}

impl Map {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Item)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    fn insert(&mut self, key: String, item: Item) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = item,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, item));
            }
        }
    }
}

impl Item {
    /// An error located at this item, for callers rejecting its value.
    pub fn error(&self, msg: impl Into<String>) -> ConfError {
        ConfError {
            pos: Some(self.pos.clone()),
            msg: msg.into(),
        }
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
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
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }
    /// Floats, and integers as floats (e.g. nats-server's auth `timeout`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(n) => Some(n as f64),
            Value::Float(x) => Some(x),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Item]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    /// A byte size: an integer (suffixes already applied by the reader), or a
    /// string `<n>K|M|G|T` (powers of 1024, upper case only, as nats-server's
    /// getStorageSize for JetStream limits; `""` is 0). Fields like
    /// `max_payload` accept only integers in nats-server.
    pub fn as_size(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Str(s) if s.is_empty() => Some(0),
            Value::Str(s) => {
                let shift = match s.as_bytes()[s.len() - 1] {
                    b'K' => 10,
                    b'M' => 20,
                    b'G' => 30,
                    b'T' => 40,
                    _ => return None,
                };
                s[..s.len() - 1]
                    .parse::<i64>()
                    .ok()?
                    .checked_mul(1 << shift)
            }
            _ => None,
        }
    }
}

/// Reads and parses a config file; includes resolve relative to its directory.
pub fn parse_file(path: &Path) -> Result<Map, ConfError> {
    load_file(path, &mut Ctx::default(), None)
}

/// Parses config text named `file_name` (for positions); includes resolve
/// relative to `base_dir`.
pub fn parse_str(text: &str, file_name: &str, base_dir: &Path) -> Result<Map, ConfError> {
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfError {
            pos: None,
            msg: format!("{file_name}: file too large"),
        });
    }
    Parser::new(text, file_name, base_dir, &mut Ctx::default()).document()
}

/// Go's `time.ParseDuration` (units ns, us, µs, ms, s, m, h; fractions and
/// sequences like `1m30s`), minus negative results which `Duration` can't hold.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for d in rest[..int_len].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(d - b'0')))
                .ok_or_else(invalid)?;
        }
        rest = &rest[int_len..];
        let (mut frac, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(r) = rest.strip_prefix('.') {
            frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            for d in r[..frac_len].bytes() {
                // As Go: digits beyond ~18 significant ones are ignored.
                if frac <= i64::MAX as u64 / 10 {
                    frac = frac * 10 + u64::from(d - b'0');
                    scale *= 10.0;
                }
            }
            rest = &r[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let nanos: u64 = match unit {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        let part = whole.checked_mul(nanos).ok_or_else(invalid)?;
        let part = part
            .checked_add((frac as f64 * (nanos as f64 / scale)) as u64)
            .ok_or_else(invalid)?;
        total = total
            .checked_add(part)
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or_else(invalid)?;
    }
    if neg && total > 0 {
        return Err(format!("negative duration {s:?}"));
    }
    Ok(Duration::from_nanos(total))
}

#[derive(Default)]
struct Ctx {
    chain: Vec<PathBuf>, // canonical paths of the files being read
    depth: usize,
    var_nodes: usize,
}

fn load_file(path: &Path, ctx: &mut Ctx, at: Option<Pos>) -> Result<Map, ConfError> {
    let err = |msg: String| ConfError {
        pos: at.clone(),
        msg,
    };
    let shown = path.display();
    let canon =
        std::fs::canonicalize(path).map_err(|e| err(format!("cannot read '{shown}': {e}")))?;
    if ctx.chain.contains(&canon) {
        return Err(err(format!(
            "include cycle: '{shown}' is already being read"
        )));
    }
    if ctx.chain.len() > MAX_INCLUDE_DEPTH {
        return Err(err(format!(
            "includes nested deeper than {MAX_INCLUDE_DEPTH}"
        )));
    }
    let meta = std::fs::metadata(&canon).map_err(|e| err(format!("cannot read '{shown}': {e}")))?;
    if !meta.is_file() || meta.len() > MAX_FILE_SIZE {
        return Err(err(format!(
            "cannot read '{shown}': not a regular file or larger than 16 MiB"
        )));
    }
    let bytes = std::fs::read(&canon).map_err(|e| err(format!("cannot read '{shown}': {e}")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| err(format!("'{shown}' is not valid UTF-8")))?;
    ctx.chain.push(canon);
    let base = path.parent().unwrap_or(Path::new(""));
    let result = Parser::new(&text, &shown.to_string(), base, ctx).document();
    ctx.chain.pop();
    result
}

struct Parser<'a> {
    src: &'a str,
    i: usize,
    line: u32,
    col: u32,
    file: Rc<str>,
    base: &'a Path,
    scopes: Vec<Map>, // maps being built, outermost first: variable scopes
    ctx: &'a mut Ctx,
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, file: &str, base: &'a Path, ctx: &'a mut Ctx) -> Self {
        Parser {
            src,
            i: 0,
            line: 1,
            col: 1,
            file: file.into(),
            base,
            scopes: Vec::new(),
            ctx,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.i..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos {
            file: self.file.clone(),
            line: self.line,
            col: self.col,
        }
    }

    fn fail<T>(&self, msg: impl Into<String>) -> Result<T, ConfError> {
        Err(ConfError {
            pos: Some(self.pos()),
            msg: msg.into(),
        })
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.bump();
        }
    }

    /// Consumes a `#` or `//` comment up to (not including) the line end.
    fn eat_comment(&mut self) -> bool {
        let rest = &self.src[self.i..];
        if !rest.starts_with('#') && !rest.starts_with("//") {
            return false;
        }
        while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
            self.bump();
        }
        true
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            if self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            } else if !self.eat_comment() {
                return;
            }
        }
    }

    fn enter(&mut self) -> Result<(), ConfError> {
        self.ctx.depth += 1;
        if self.ctx.depth > MAX_DEPTH {
            return self.fail(format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn document(mut self) -> Result<Map, ConfError> {
        self.body(true)
    }

    /// Entries up to end of input (top level) or the closing `}`.
    fn body(&mut self, top: bool) -> Result<Map, ConfError> {
        self.scopes.push(Map::default());
        let result = self.entries(top);
        let map = self.scopes.pop().unwrap_or_default();
        result.map(|()| map)
    }

    fn entries(&mut self, top: bool) -> Result<(), ConfError> {
        loop {
            self.skip_space_and_comments();
            match self.peek() {
                None if top => return Ok(()),
                None => return self.fail("unexpected end of file in map (missing '}')"),
                Some('}') if !top => {
                    self.bump();
                    return Ok(());
                }
                Some('{' | '}') if top => {
                    // nats-server ignores braces around the whole file.
                    self.bump();
                    continue;
                }
                Some(c @ ('=' | ':' | ',' | ';' | '[' | ']' | '{')) => {
                    return self.fail(format!("expected a key, found '{c}'"))
                }
                Some(_) => {}
            }
            let key_pos = self.pos();
            let (key, include) = self.key()?;
            if include {
                let map = self.include(&key_pos)?;
                let scope = self.scopes.last_mut().expect("scope");
                for (k, item) in map.entries {
                    scope.insert(k, item);
                }
            } else {
                while self.peek().is_some_and(char::is_whitespace) {
                    self.bump();
                }
                if self.peek().is_none() {
                    return Err(ConfError {
                        pos: Some(key_pos),
                        msg: format!("key '{key}' has no value"),
                    });
                }
                if let Some('=' | ':') = self.peek() {
                    self.bump();
                    self.skip_blanks();
                }
                let value = self.value()?;
                let item = Item {
                    value,
                    pos: key_pos,
                    used_as_var: false,
                };
                self.scopes.last_mut().expect("scope").insert(key, item);
            }
            self.skip_blanks();
            if self.eat_comment() {
                continue;
            }
            match self.peek() {
                None | Some('\n' | '\r' | ';' | ',') => {}
                Some('}') if !top => {
                    self.bump();
                    return Ok(());
                }
                Some('}') => {}
                Some(c) => {
                    let end = if top { "" } else { ", '}'" };
                    return self.fail(format!(
                        "expected a new line, ',', ';'{end} or comment after value, found '{c}'"
                    ));
                }
            }
            self.bump();
        }
    }

    /// A key, quoted or bare; the flag says it is the `include` keyword.
    fn key(&mut self) -> Result<(String, bool), ConfError> {
        if let Some(q @ ('"' | '\'')) = self.peek() {
            self.bump();
            return Ok((self.raw_until(q, "quoted key")?, false));
        }
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != '=' && c != ':')
        {
            self.bump();
        }
        let key = &self.src[start..self.i];
        let include =
            key.eq_ignore_ascii_case("include") && self.peek().is_some_and(char::is_whitespace);
        Ok((key.to_string(), include))
    }

    /// Text up to the closing quote `q`, without escapes.
    fn raw_until(&mut self, q: char, what: &str) -> Result<String, ConfError> {
        let start = self.i;
        loop {
            match self.bump() {
                None => return self.fail(format!("unterminated {what}")),
                Some(c) if c == q => return Ok(self.src[start..self.i - 1].to_string()),
                Some(_) => {}
            }
        }
    }

    fn include(&mut self, at: &Pos) -> Result<Map, ConfError> {
        self.skip_blanks();
        let path = match self.peek() {
            Some(q @ ('"' | '\'')) => {
                self.bump();
                self.raw_until(q, "include path")?
            }
            None | Some('\n' | '\r') => return self.fail("include needs a file path"),
            Some(c) if "[{(-\\".contains(c) || c.is_ascii_digit() => {
                return self.fail(format!("expected an include path, found '{c}'"))
            }
            Some(_) => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !c.is_whitespace() && c != ';' && c != '}' && c != '\'')
                {
                    self.bump();
                }
                let path = self.src[start..self.i].to_string();
                if self.peek() == Some('\'') {
                    self.bump();
                }
                path
            }
        };
        // Go's filepath.Join: even an absolute include path is taken
        // relative to the including file's directory.
        let full = self.base.join(path.trim_start_matches('/'));
        load_file(&full, self.ctx, Some(at.clone()))
    }

    fn value(&mut self) -> Result<Value, ConfError> {
        match self.peek() {
            None => self.fail("expected a value, found end of file"),
            Some('\n' | '\r') => self.fail("expected a value, found a new line"),
            Some('[') => {
                self.bump();
                self.list()
            }
            Some('{') => {
                self.bump();
                self.enter()?;
                let map = self.body(false)?;
                self.ctx.depth -= 1;
                Ok(Value::Map(map))
            }
            Some('"') => {
                self.bump();
                self.quoted()
            }
            Some('\'') => {
                self.bump();
                Ok(Value::Str(self.raw_until('\'', "string")?))
            }
            Some('(') => {
                self.bump();
                self.block()
            }
            Some('-' | '0'..='9') => self.number(),
            Some('.') => self.fail("floats must start with a digit"),
            Some(_) => self.bare(self.i, self.pos()),
        }
    }

    fn list(&mut self) -> Result<Value, ConfError> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            self.skip_space_and_comments();
            match self.peek() {
                None => return self.fail("unexpected end of file in list (missing ']')"),
                Some(']') => break,
                Some(',') => return self.fail("unexpected ',' in list"),
                Some(_) => {}
            }
            let pos = self.pos();
            let value = self.value()?;
            items.push(Item {
                value,
                pos,
                used_as_var: false,
            });
            self.skip_blanks();
            if self.eat_comment() {
                continue;
            }
            match self.peek() {
                Some(',' | '\n' | '\r') => {}
                Some(']') => break,
                None => return self.fail("unexpected end of file in list (missing ']')"),
                Some(c) => {
                    return self.fail(format!("expected ',' or ']' after list item, found '{c}'"))
                }
            }
            self.bump();
        }
        self.bump();
        self.ctx.depth -= 1;
        Ok(Value::List(items))
    }

    fn quoted(&mut self) -> Result<Value, ConfError> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return self.fail("unterminated string"),
                Some('"') => return self.utf8(out),
                Some('\\') => self.escape(&mut out)?,
                Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
    }

    fn utf8(&self, bytes: Vec<u8>) -> Result<Value, ConfError> {
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(s)),
            Err(_) => self.fail("string with \\x escapes is not valid UTF-8"),
        }
    }

    /// After a `\`: the escapes nats-server knows (in `"..."` and bare strings).
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ConfError> {
        let at = Pos {
            col: self.col - 1,
            ..self.pos()
        }; // the backslash
        let fail = |msg: String| {
            Err(ConfError {
                pos: Some(at.clone()),
                msg,
            })
        };
        let byte = match self.bump() {
            Some('t') => b'\t',
            Some('n') => b'\n',
            Some('r') => b'\r',
            Some('"') => b'"',
            Some('\\') => b'\\',
            Some('x') => {
                let hex = |c: Option<char>| c.and_then(|c| c.to_digit(16));
                match (hex(self.bump()), hex(self.bump())) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return fail("expected two hexadecimal digits after '\\x'".into()),
                }
            }
            c => {
                let c = c.map_or("end of file".into(), |c| c.escape_default().to_string());
                return fail(format!(
                    "invalid escape character '{c}' (allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\)"
                ));
            }
        };
        out.push(byte);
        Ok(())
    }

    /// `( ... )`: everything up to a `)` alone on its line.
    fn block(&mut self) -> Result<Value, ConfError> {
        let start = self.i;
        loop {
            match self.bump() {
                None => return self.fail("unterminated block string (needs ')' alone on a line)"),
                Some(')') => {
                    let before = &self.src[start..self.i - 1];
                    let after = &self.src[self.i..];
                    let line_end =
                        after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n");
                    if before.ends_with('\n') && line_end {
                        return Ok(Value::Str(before.to_string()));
                    }
                }
                Some(_) => {}
            }
        }
    }

    fn number(&mut self) -> Result<Value, ConfError> {
        let (start, pos) = (self.i, self.pos());
        let neg = self.peek() == Some('-');
        if neg {
            self.bump();
        }
        let digits = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.i == digits {
            return self.fail("expected a digit after '-'");
        }
        let ends_number = |c: Option<char>| match c {
            None => true,
            Some(c) => is_blank(c) || "\n\r;,}]".contains(c),
        };
        match self.peek() {
            Some('-') if !neg && self.i - start == 4 => return self.datetime(start),
            Some('-') if !neg => return self.fail("dates must be in full ISO8601 Zulu form"),
            Some('.') => return self.float(start),
            Some(c) if "kKmMgGtTpPeE".contains(c) => {
                self.bump();
                while self.peek().is_some_and(|c| "bBiI".contains(c)) {
                    self.bump();
                }
                if !ends_number(self.peek()) && !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return self.bare(start, pos); // e.g. `10ms`
                }
            }
            c if !neg && !ends_number(c) => return self.bare(start, pos), // e.g. `10s`
            _ => {}
        }
        let text = &self.src[start..self.i];
        let split = text
            .find(|c: char| c != '-' && !c.is_ascii_digit())
            .unwrap_or(text.len());
        let mult: i64 = match text[split..].to_ascii_lowercase().as_str() {
            "" => 1,
            "k" => 1_000,
            "kb" | "ki" | "kib" => 1 << 10,
            "m" => 1_000_000,
            "mb" | "mi" | "mib" => 1 << 20,
            "g" => 1_000_000_000,
            "gb" | "gi" | "gib" => 1 << 30,
            "t" => 1_000_000_000_000,
            "tb" | "ti" | "tib" => 1 << 40,
            "p" => 1_000_000_000_000_000,
            "pb" | "pi" | "pib" => 1 << 50,
            "e" => 1_000_000_000_000_000_000,
            "eb" | "ei" | "eib" => 1 << 60,
            _ => {
                return Err(ConfError {
                    pos: Some(pos),
                    msg: format!("invalid size suffix in '{text}'"),
                })
            }
        };
        match text[..split]
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
        {
            Some(n) => Ok(Value::Int(n)),
            None => Err(ConfError {
                pos: Some(pos),
                msg: format!("integer '{text}' is out of range"),
            }),
        }
    }

    /// After the integer part, at the `.`: a float, or an IP-like string.
    fn float(&mut self, start: usize) -> Result<Value, ConfError> {
        self.bump();
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return self.fail("floats must have a digit after the '.'");
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') {
            // 127.0.0.1:4222
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || ".:-".contains(c))
            {
                self.bump();
            }
            return Ok(Value::Str(self.src[start..self.i].to_string()));
        }
        let text = &self.src[start..self.i];
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => self.fail(format!("float '{text}' is out of range")),
        }
    }

    /// After `YYYY`, at the `-`: `YYYY-MM-DDTHH:MM:SSZ`, kept as a string.
    fn datetime(&mut self, start: usize) -> Result<Value, ConfError> {
        for want in "-00-00T00:00:00Z".chars() {
            match self.bump() {
                Some(c) if c == want || (want == '0' && c.is_ascii_digit()) => {}
                _ => return self.fail("invalid datetime, expected YYYY-MM-DDTHH:MM:SSZ"),
            }
        }
        let text = &self.src[start..self.i];
        let n = |r: std::ops::Range<usize>| text[r].parse::<u32>().unwrap_or(99);
        let (year, month, day) = (n(0..4), n(5..7), n(8..10));
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if !(1..=12).contains(&month)
            || !(1..=days).contains(&day)
            || n(11..13) > 23
            || n(14..16) > 59
            || n(17..19) > 59
        {
            return self.fail(format!("invalid datetime '{text}'"));
        }
        Ok(Value::Str(text.to_string()))
    }

    /// An unquoted string starting at byte `start` (maybe a bool or `$var`).
    fn bare(&mut self, start: usize, pos: Pos) -> Result<Value, ConfError> {
        let (mut out, mut seg, mut escaped) = (Vec::new(), start, false);
        loop {
            match self.peek() {
                None | Some('\n' | '\r' | ';' | ',' | ']' | '}' | ' ' | '\t') => break,
                Some('\'') => {
                    // nats-server ends a bare string at a quote, eating it.
                    out.extend_from_slice(&self.src.as_bytes()[seg..self.i]);
                    self.bump();
                    return self.utf8(out);
                }
                Some('\\') => {
                    out.extend_from_slice(&self.src.as_bytes()[seg..self.i]);
                    self.bump();
                    self.escape(&mut out)?;
                    seg = self.i;
                    escaped = true;
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
        out.extend_from_slice(&self.src.as_bytes()[seg..self.i]);
        if escaped {
            return self.utf8(out);
        }
        let text = &self.src[start..self.i];
        let is = |words: [&str; 3]| words.iter().any(|w| text.eq_ignore_ascii_case(w));
        if text.is_empty() {
            self.fail("expected a value")
        } else if is(["true", "yes", "on"]) {
            Ok(Value::Bool(true))
        } else if is(["false", "no", "off"]) {
            Ok(Value::Bool(false))
        } else if let Some(name) = text.strip_prefix('$') {
            self.variable(name, pos)
        } else {
            Ok(Value::Str(text.to_string()))
        }
    }

    /// `$name`: enclosing maps innermost first, then the environment (whose
    /// value is parsed as a config value).
    fn variable(&mut self, name: &str, pos: Pos) -> Result<Value, ConfError> {
        if name.starts_with("2a$") {
            return Ok(Value::Str(format!("${name}"))); // a bare bcrypt hash
        }
        let err = |msg: String| {
            Err(ConfError {
                pos: Some(pos.clone()),
                msg,
            })
        };
        let found = self
            .scopes
            .iter_mut()
            .rev()
            .find_map(|m| m.index.get(name).map(|&i| &mut m.entries[i].1));
        let value = if let Some(item) = found {
            item.used_as_var = true;
            item.value.clone()
        } else {
            let env = if name.is_empty() || name.contains(['=', '\0']) {
                None
            } else {
                std::env::var_os(name)
            };
            let Some(env) = env.map(|v| v.to_string_lossy().into_owned()) else {
                return err(format!("variable reference for '{name}' can not be found"));
            };
            if env.trim_matches([' ', '\t']).is_empty() {
                return Ok(Value::Str(String::new())); // as nats-server
            }
            self.enter()?;
            let text = format!("pk={env}");
            let parsed = Parser::new(&text, &format!("${name}"), self.base, self.ctx).document();
            self.ctx.depth -= 1;
            match parsed.map(|m| m.get("pk").map(|item| item.value.clone())) {
                Ok(Some(v)) => v,
                Ok(None) => return err(format!("variable reference for '{name}' has no value")),
                Err(e) if e.msg.starts_with("variable reference") => return err(e.msg), // nested
                Err(e) => {
                    return err(format!(
                        "variable reference for '{name}' could not be parsed: {}",
                        e.msg
                    ))
                }
            }
        };
        self.ctx.var_nodes += count_nodes(&value);
        if self.ctx.var_nodes > MAX_VAR_NODES {
            return err("variable expansion too large".to_string());
        }
        Ok(value)
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::List(l) => l.iter().map(|i| count_nodes(&i.value)).sum(),
        Value::Map(m) => m.entries.iter().map(|(_, i)| count_nodes(&i.value)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Map {
        parse_str(text, "t.conf", Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
    }
    fn error(text: &str) -> String {
        parse_str(text, "t.conf", Path::new("."))
            .expect_err(text)
            .to_string()
    }
    /// Value at a dotted path (`a.b.0.c`; numbers index lists).
    fn at<'m>(m: &'m Map, path: &str) -> &'m Value {
        let mut parts = path.split('.');
        let mut v = &m
            .get(parts.next().unwrap())
            .unwrap_or_else(|| panic!("{path}"))
            .value;
        for p in parts {
            v = match v {
                Value::List(l) => &l[p.parse::<usize>().unwrap()].value,
                Value::Map(m) => &m.get(p).unwrap_or_else(|| panic!("{path}")).value,
                _ => panic!("{path}"),
            };
        }
        v
    }
    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }
    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("conf-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn separators_comments_terminators() {
        let m =
            parse("a: 1\nb = 2\nc 3\n# c\n// c\nd: 4 # c\ne: 5 // c\nf: 6; g: 7, h: 8\n\"i\": 9\n'j' = 10\nk\n  11\n");
        for (i, k) in "abcdefghijk".chars().enumerate() {
            assert_eq!(at(&m, &k.to_string()), &Value::Int(i as i64 + 1), "{k}");
        }
        // nats-server ignores braces around the whole file.
        assert_eq!(at(&parse("{\n port: 4222\n}\n"), "port"), &Value::Int(4222));
        assert_eq!(
            at(&parse("port: 4222, debug: true }"), "debug"),
            &Value::Bool(true)
        );
    }

    #[test]
    fn maps_and_lists() {
        let m = parse("cluster {\n  port: 4248\n  inner { x: 1, y: 2, }\n}\nnext\n{\n a = 1 }\ne {}\nl = [1, 2, 3]\nn = [\n  a # c\n  b, // c\n  c,\n]\nmix [ {a: 1}, [x, y ], 'q' ]\nempty []\n");
        assert_eq!(at(&m, "cluster.port"), &Value::Int(4248));
        assert_eq!(at(&m, "cluster.inner.y"), &Value::Int(2));
        assert_eq!(at(&m, "next.a"), &Value::Int(1));
        assert!(at(&m, "e").as_map().unwrap().is_empty());
        let ints: Vec<_> = at(&m, "l")
            .as_list()
            .unwrap()
            .iter()
            .map(|i| i.value.as_i64().unwrap())
            .collect();
        assert_eq!(ints, [1, 2, 3]);
        let strs: Vec<_> = at(&m, "n")
            .as_list()
            .unwrap()
            .iter()
            .map(|i| i.value.as_str().unwrap())
            .collect();
        assert_eq!(strs, ["a", "b", "c"]);
        assert_eq!(at(&m, "mix.0.a"), &Value::Int(1));
        assert_eq!(at(&m, "mix.1.1"), &s("y"));
        assert_eq!(at(&m, "mix.2"), &s("q"));
        assert_eq!(at(&m, "empty").as_list().unwrap().len(), 0);
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["cluster", "next", "e", "l", "n", "mix", "empty"]);
    }

    #[test]
    fn strings() {
        let m = parse(concat!(
            "a: \"x\\ty\\n\\r\\\"\\\\\\x41\\xc3\\xa9\"\n",
            "b: 'raw \\q \"'\n",
            "c: 0.0.0.0\nd: 127.0.0.1:4222\ne: nats://h:4248\nf: a#b\ng: $2a$11$abc/def.\n",
            "h: a\\tb\ni: 10s\nj: 1kx\nk: \"true\"\nl: \"multi\nline\"\nm: ab'\n",
            "n: (\n  block ( ) text\n)\no: (\n)\n",
        ));
        assert_eq!(at(&m, "a"), &s("x\ty\n\r\"\\Aé"));
        assert_eq!(at(&m, "b"), &s("raw \\q \""));
        assert_eq!(at(&m, "c"), &s("0.0.0.0"));
        assert_eq!(at(&m, "d"), &s("127.0.0.1:4222"));
        assert_eq!(at(&m, "e"), &s("nats://h:4248"));
        assert_eq!(at(&m, "f"), &s("a#b"));
        assert_eq!(at(&m, "g"), &s("$2a$11$abc/def."));
        assert_eq!(at(&m, "h"), &s("a\tb"));
        assert_eq!(at(&m, "i"), &s("10s"));
        assert_eq!(at(&m, "j"), &s("1kx"));
        assert_eq!(at(&m, "k"), &s("true"));
        assert_eq!(at(&m, "l"), &s("multi\nline"));
        assert_eq!(at(&m, "m"), &s("ab")); // a quote ends a bare string (nats-server)
        assert_eq!(at(&m, "n"), &s("\n  block ( ) text\n"));
        assert_eq!(at(&m, "o"), &s("\n"));
        assert_eq!(m.get("o").unwrap().pos.line, 18);
    }

    #[test]
    fn bools() {
        for (word, b) in [
            ("true", true),
            ("YES", true),
            ("On", true),
            ("false", false),
            ("No", false),
            ("OFF", false),
        ] {
            assert_eq!(
                at(&parse(&format!("x: {word}")), "x"),
                &Value::Bool(b),
                "{word}"
            );
        }
        assert_eq!(at(&parse("x: truth"), "x"), &s("truth"));
    }

    #[test]
    fn numbers_and_size_suffixes() {
        let cases = [
            ("0", 0),
            ("-12", -12),
            ("4222", 4222),
            ("1k", 1000),
            ("1K", 1000),
            ("1kb", 1024),
            ("1KB", 1024),
            ("1Ki", 1024),
            ("1kib", 1024),
            ("2m", 2_000_000),
            ("2MB", 2 << 20),
            ("-1m", -1_000_000),
            ("1g", 1_000_000_000),
            ("1Gb", 1 << 30),
            ("1t", 1_000_000_000_000),
            ("1TiB", 1 << 40),
            ("1p", 1_000_000_000_000_000),
            ("1pb", 1 << 50),
            ("1e", 1_000_000_000_000_000_000),
            ("1EB", 1 << 60),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (text, n) in cases {
            assert_eq!(
                at(&parse(&format!("x: {text}\n")), "x"),
                &Value::Int(n),
                "{text}"
            );
            assert_eq!(
                at(&parse(&format!("x: [{text}]")), "x.0"),
                &Value::Int(n),
                "[{text}]"
            );
        }
        assert_eq!(at(&parse("x: 1.5"), "x"), &Value::Float(1.5));
        assert_eq!(at(&parse("x: -0.25;"), "x"), &Value::Float(-0.25));
        assert_eq!(at(&parse("x: 4222abc"), "x"), &s("4222abc"));
        assert_eq!(at(&parse("x: 10ms"), "x"), &s("10ms"));
    }

    #[test]
    fn datetimes() {
        assert_eq!(
            at(&parse("x: 2024-02-29T23:59:59Z"), "x"),
            &s("2024-02-29T23:59:59Z")
        );
        assert_eq!(
            error("x: 2023-02-29T00:00:00Z"),
            "t.conf:1:24: invalid datetime '2023-02-29T00:00:00Z'"
        );
        assert_eq!(
            error("x: 2023-13-01T00:00:00Z"),
            "t.conf:1:24: invalid datetime '2023-13-01T00:00:00Z'"
        );
        assert_eq!(
            error("x: 2023-01-02\n"),
            "t.conf:2:1: invalid datetime, expected YYYY-MM-DDTHH:MM:SSZ"
        );
        assert_eq!(
            error("x: 123-4"),
            "t.conf:1:7: dates must be in full ISO8601 Zulu form"
        );
    }

    #[test]
    fn keys_duplicates_positions() {
        let m = parse(
            "Port: 1\nport: 2\nx: 1\ny {\n  z: [\n    a\n    {b: 1}\n  ]\n}\nx: 3\n\"a b\": 4\n",
        );
        assert_eq!(at(&m, "Port"), &Value::Int(1)); // keys are case-sensitive here
        assert_eq!(at(&m, "port"), &Value::Int(2));
        assert_eq!(at(&m, "x"), &Value::Int(3)); // later wins ...
        let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["Port", "port", "x", "y", "a b"]); // ... at the first position
        assert_eq!(m.get("x").unwrap().pos.line, 10);
        let y = m.get("y").unwrap();
        assert_eq!((y.pos.line, y.pos.col, &*y.pos.file), (4, 1, "t.conf"));
        let z = &y.value.as_map().unwrap().get("z").unwrap();
        assert_eq!((z.pos.line, z.pos.col), (5, 3));
        let list = z.value.as_list().unwrap();
        assert_eq!(
            (list[0].pos.line, list[0].pos.col, list[1].pos.line),
            (6, 5, 7)
        );
        assert_eq!(m.get("a b").unwrap().pos.to_string(), "t.conf:11:1");
        assert_eq!(
            m.get("x").unwrap().error("bad").to_string(),
            "t.conf:10:1: bad"
        );
    }

    #[test]
    fn variables() {
        let m = parse("v = 4222\nport: $v\nc {\n  v = 1\n  a: $v\n  d { b: $v }\n  l: [$v, {q: $v}]\n}\ne: $v\n");
        assert_eq!(at(&m, "port"), &Value::Int(4222));
        assert_eq!(at(&m, "c.a"), &Value::Int(1)); // inner definition shadows
        assert_eq!(at(&m, "c.d.b"), &Value::Int(1)); // enclosing map
        assert_eq!(at(&m, "c.l.1.q"), &Value::Int(1));
        assert_eq!(at(&m, "e"), &Value::Int(4222)); // inner scope is gone
        assert!(m.get("v").unwrap().used_as_var && !m.get("port").unwrap().used_as_var);
        assert_eq!(m.get("e").unwrap().pos.line, 9);
        let m = parse("users = [{user: a}]\nauth { users: $users }\n");
        assert_eq!(at(&m, "auth.users.0.user"), &s("a"));
        // Not visible: a sibling's or a later definition.
        assert_eq!(
            error("a { x = 1 }\ny: $x\n"),
            "t.conf:2:4: variable reference for 'x' can not be found"
        );
        assert_eq!(
            error("a { y: $z, z: 1 }"),
            "t.conf:1:8: variable reference for 'z' can not be found"
        );
        assert_eq!(
            error("y: $"),
            "t.conf:1:4: variable reference for '' can not be found"
        );
        // Environment fallback; the value is parsed like a config value.
        // (std serialises set_var/var_os; the names are unique to this test.)
        std::env::set_var("CONF_TEST_INT", "4222");
        std::env::set_var("CONF_TEST_LIST", "[a, 'b c']");
        std::env::set_var("CONF_TEST_BLANK", " ");
        std::env::set_var("CONF_TEST_BAD", "a b");
        std::env::set_var("CONF_TEST_SELF", "$CONF_TEST_SELF");
        let m = parse("a: $CONF_TEST_INT\nb: $CONF_TEST_LIST\nc: $CONF_TEST_BLANK\n");
        assert_eq!(
            (at(&m, "a"), at(&m, "b.1"), at(&m, "c")),
            (&Value::Int(4222), &s("b c"), &s(""))
        );
        assert_eq!(m.get("b").unwrap().pos.line, 2);
        assert_eq!(
            error("\nx: $CONF_TEST_BAD"),
            "t.conf:2:4: variable reference for 'CONF_TEST_BAD' could not be parsed: \
             expected a new line, ',', ';' or comment after value, found 'b'"
        );
        assert_eq!(
            error("x: $CONF_TEST_SELF"),
            "t.conf:1:4: variable reference for 'CONF_TEST_SELF' could not be parsed: nesting deeper than 64"
        );
    }

    #[test]
    fn includes() {
        let d = tmpdir("inc");
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
        std::fs::write(
            d.join("main.conf"),
            "p = 1\ninclude sub/a.conf\nauth {\n  include \"sub/b.conf\"\n  x: $PASS\n}\nlast: $A_KEY\n",
        )
        .unwrap();
        std::fs::write(
            d.join("sub/a.conf"),
            "A_KEY: 'from a'\ninclude 'deeper/c.conf'; p = 2\n",
        )
        .unwrap();
        std::fs::write(d.join("sub/deeper/c.conf"), "C: 3\n").unwrap();
        std::fs::write(d.join("sub/b.conf"), "# users\nPASS: secret\n").unwrap();
        let m = parse_file(&d.join("main.conf")).unwrap();
        assert_eq!(at(&m, "A_KEY"), &s("from a"));
        assert_eq!(at(&m, "C"), &Value::Int(3)); // relative to the including file
        assert_eq!(at(&m, "p"), &Value::Int(2)); // include merges; later wins
        assert_eq!(at(&m, "auth.x"), &s("secret"));
        assert_eq!(at(&m, "last"), &s("from a"));
        let pass = at(&m, "auth").as_map().unwrap().get("PASS").unwrap();
        assert!(pass.used_as_var && pass.pos.file.ends_with("sub/b.conf") && pass.pos.line == 2);
        // parse_str resolves against base_dir; absolute paths too (as Go's filepath.Join).
        let m = parse_str("include /sub/b.conf", "s", &d).unwrap();
        assert_eq!(at(&m, "PASS"), &s("secret"));
        // An included file does not see the includer's variables.
        std::fs::write(d.join("v.conf"), "port: $p\n").unwrap();
        let e = parse_str("p = 1\ninclude v.conf", "s", &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: variable reference for 'p' can not be found",
                d.join("v.conf:1:7").display()
            )
        );
        // Errors.
        let e = parse_str("a: 1\ninclude nope.conf", "s", &d)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "s:2:1: cannot read '{}'",
                d.join("nope.conf").display()
            )),
            "{e}"
        );
        std::fs::write(d.join("loop1.conf"), "include loop2.conf\n").unwrap();
        std::fs::write(d.join("loop2.conf"), "x: 1\ninclude ./loop1.conf\n").unwrap();
        let e = parse_file(&d.join("loop1.conf")).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: include cycle: '{}' is already being read",
                d.join("loop2.conf:2:1").display(),
                d.join("./loop1.conf").display()
            )
        );
        let e = parse_str("include sub", "s", &d).unwrap_err().to_string();
        assert!(
            e.ends_with("not a regular file or larger than 16 MiB"),
            "{e}"
        );
        for i in 0..12 {
            std::fs::write(
                d.join(format!("n{i}.conf")),
                format!("include n{}.conf\n", i + 1),
            )
            .unwrap();
        }
        std::fs::write(d.join("n12.conf"), "x: 1").unwrap();
        let e = parse_file(&d.join("n0.conf")).unwrap_err().to_string();
        assert!(e.ends_with("includes nested deeper than 10"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn errors() {
        let big_float = format!("f: 1{}.0", "0".repeat(400));
        let cases = [
            ("port:\n", "t.conf:1:6: expected a value, found a new line"),
            ("port:", "t.conf:1:6: expected a value, found end of file"),
            ("port\n", "t.conf:1:1: key 'port' has no value"),
            ("a: 1 2\n", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '2'"),
            ("m { a: 1 2 }", "t.conf:1:10: expected a new line, ',', ';', '}' or comment after value, found '2'"),
            ("m {\n a: 1\n", "t.conf:3:1: unexpected end of file in map (missing '}')"),
            ("m { a: ; }", "t.conf:1:8: expected a value"),
            ("= 1", "t.conf:1:1: expected a key, found '='"),
            ("m { a: 1,, b: 2 }", "t.conf:1:10: expected a key, found ','"),
            ("l: [1, 2", "t.conf:1:9: unexpected end of file in list (missing ']')"),
            ("l: [1 2]", "t.conf:1:7: expected ',' or ']' after list item, found '2'"),
            ("l: [,]", "t.conf:1:5: unexpected ',' in list"),
            ("l: [\n1,\n", "t.conf:3:1: unexpected end of file in list (missing ']')"),
            ("s: \"abc", "t.conf:1:8: unterminated string"),
            ("s: 'abc\n", "t.conf:2:1: unterminated string"),
            ("'key: 1", "t.conf:1:8: unterminated quoted key"),
            ("s: \"a\\qb\"", "t.conf:1:6: invalid escape character 'q' (allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\)"),
            ("s: a\\\n", "t.conf:1:5: invalid escape character '\\n' (allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\)"),
            ("s: \"\\x4\"", "t.conf:1:5: expected two hexadecimal digits after '\\x'"),
            ("s: \"\\xff\"", "t.conf:1:10: string with \\x escapes is not valid UTF-8"),
            ("b: (\nabc)\n", "t.conf:3:1: unterminated block string (needs ')' alone on a line)"),
            ("n: 9223372036854775808", "t.conf:1:4: integer '9223372036854775808' is out of range"),
            ("n: 9223372036854775807k", "t.conf:1:4: integer '9223372036854775807k' is out of range"),
            ("n: 1kbb", "t.conf:1:4: invalid size suffix in '1kbb'"),
            ("n: 1k2", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '2'"),
            ("d: 1m30s", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '3'"),
            ("f: 1.", "t.conf:1:6: floats must have a digit after the '.'"),
            ("f: .5", "t.conf:1:4: floats must start with a digit"),
            ("f: -x", "t.conf:1:5: expected a digit after '-'"),
            (&big_float, &format!("t.conf:1:407: float '{}' is out of range", &big_float[3..])),
            ("include\n", "t.conf:1:8: include needs a file path"),
            ("include [x]", "t.conf:1:9: expected an include path, found '['"),
            ("include 'x", "t.conf:1:11: unterminated include path"),
            (
                "x: $NOPE_NOT_SET_ANYWHERE",
                "t.conf:1:4: variable reference for 'NOPE_NOT_SET_ANYWHERE' can not be found",
            ),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert_eq!(got, want, "{text:?}");
        }
        let e = parse_file(Path::new("/nonexistent/x.conf")).unwrap_err();
        assert!(
            e.pos.is_none() && e.msg.starts_with("cannot read '/nonexistent/x.conf'"),
            "{e}"
        );
    }

    #[test]
    fn limits() {
        let deep = "a: ".to_string() + &"[".repeat(100);
        assert_eq!(error(&deep), "t.conf:1:69: nesting deeper than 64");
        let deep = "a ".to_string() + &"{b ".repeat(100);
        assert!(error(&deep).ends_with("nesting deeper than 64"));
        assert!(parse(&format!("a: {}{}", "[".repeat(60), "]".repeat(60)))
            .get("a")
            .is_some());
        // Exponential `$var` expansion is cut off.
        let mut text = "v0 = [1,2,3,4,5,6,7,8]\n".to_string();
        for i in 1..10 {
            text += &format!(
                "v{i} = [$v{0},$v{0},$v{0},$v{0},$v{0},$v{0},$v{0},$v{0}]\n",
                i - 1
            );
        }
        assert!(error(&text).ends_with("variable expansion too large"));
        let big = "x".repeat(MAX_FILE_SIZE as usize + 1);
        assert_eq!(
            parse_str(&big, "big", Path::new("."))
                .unwrap_err()
                .to_string(),
            "big: file too large"
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("0", 0),
            ("10s", 10_000_000_000),
            ("2m", 120_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("500ms", 500_000_000),
            ("250us", 250_000),
            ("3µs", 3_000),
            ("3μs", 3_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("+2s", 2_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            ("-0s", 0),
            ("2562047h47m16.854775807s", i64::MAX as u64),
        ];
        for (text, nanos) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
        let bad = [
            ("", "time: invalid duration \"\""),
            ("60", "time: missing unit in duration \"60\""),
            ("5x", "time: unknown unit \"x\" in duration \"5x\""),
            ("s", "time: invalid duration \"s\""),
            (".s", "time: invalid duration \".s\""),
            ("1m 30s", "time: unknown unit \"m \" in duration \"1m 30s\""),
            ("-1s", "negative duration \"-1s\""),
            ("2562048h", "time: invalid duration \"2562048h\""),
            (
                "99999999999999999999s",
                "time: invalid duration \"99999999999999999999s\"",
            ),
        ];
        for (text, msg) in bad {
            assert_eq!(parse_duration(text), Err(msg.to_string()), "{text}");
        }
    }

    #[test]
    fn accessors() {
        let m = parse("i: 3\nf: 0.5\ns: \"1K\"\nt: 2G\nb: on\nl: []\nm {}\nq: 5X\n");
        assert_eq!(at(&m, "i").as_f64(), Some(3.0));
        assert_eq!(at(&m, "f").as_f64(), Some(0.5));
        assert_eq!(at(&m, "i").as_size(), Some(3));
        assert_eq!(at(&m, "s").as_size(), Some(1024)); // getStorageSize: K/M/G/T are 1024-based
        assert_eq!(at(&m, "t").as_size(), Some(2_000_000_000)); // unquoted: the reader's 1000-based g
        assert_eq!(at(&m, "q").as_size(), None);
        assert_eq!(s("").as_size(), Some(0));
        assert_eq!(at(&m, "b").as_bool(), Some(true));
        assert_eq!(at(&m, "b").as_str(), None);
        assert_eq!(at(&m, "l").type_name(), "list");
        assert!(at(&m, "m").as_map().is_some() && at(&m, "m").as_list().is_none());
    }

    const REAL: &str = r#"
# nats-server docs style config
server_name: "n1-c1"
listen: 0.0.0.0:4222
http: localhost:8222
max_payload: 1MB
max_pending: 64MB
ping_interval: "2m"
write_deadline: "10s"
debug: false, trace: off
logtime: true

tls {
  cert_file: "./configs/certs/server.pem"
  key_file:  "./configs/certs/key.pem"
  timeout: 2
}

cluster {
  name: c1
  listen: 127.0.0.1:6222
  authorization { user: ruser, password: T0pS3cr3t, timeout: 0.75 }
  routes = [
    nats-route://ruser:T0pS3cr3t@127.0.0.1:6222
    nats-route://ruser:T0pS3cr3t@127.0.0.1:6223
  ]
}

PERMS = {
  publish = { allow: ["req.>", "_INBOX.>"], deny: "secret.>" }
  subscribe = ">"
}
authorization {
  default_permissions = { publish: "SANDBOX.*" }
  users = [
    {user: alice, password: $2a$11$V1qrpBt8/SLfEBr4NJq4T.2mg8chx8.MTblUiTBOLV3MKDeAy.f7u, permissions: $PERMS}
    {user: bob, password: "pw", permissions: { subscribe: { deny: ["a", "b"] } }}
  ]
}

accounts {
  A: {
    users: [ {user: a, password: a} ]
    exports: [ {stream: "orders.>"}, {service: "help"} ]
    jetstream: { max_mem: 1G, max_file: 10GB }
  }
  B: { users: [{user: b, password: b}], imports: [ {stream: {account: A, subject: "orders.>"}, prefix: from_a} ] }
  SYS: {}
}
system_account: SYS
jetstream { store_dir: "/tmp/js", max_memory_store: 1GB, max_file_store: "10G" }
"#;

    #[test]
    fn real_world_config() {
        let m = parse(REAL);
        assert_eq!(at(&m, "listen"), &s("0.0.0.0:4222"));
        assert_eq!(at(&m, "max_payload"), &Value::Int(1 << 20));
        assert_eq!(
            parse_duration(at(&m, "ping_interval").as_str().unwrap()),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(at(&m, "trace"), &Value::Bool(false));
        assert_eq!(at(&m, "cluster.authorization.timeout"), &Value::Float(0.75));
        assert_eq!(
            at(&m, "cluster.routes.1"),
            &s("nats-route://ruser:T0pS3cr3t@127.0.0.1:6223")
        );
        assert_eq!(
            at(&m, "authorization.users.0.password")
                .as_str()
                .unwrap()
                .len(),
            60
        );
        assert_eq!(
            at(&m, "authorization.users.0.permissions.publish.allow.1"),
            &s("_INBOX.>")
        );
        assert_eq!(
            at(&m, "authorization.users.1.permissions.subscribe.deny.1"),
            &s("b")
        );
        assert!(m.get("PERMS").unwrap().used_as_var);
        assert_eq!(
            at(&m, "accounts.A.jetstream.max_mem").as_size(),
            Some(1_000_000_000)
        );
        assert_eq!(
            at(&m, "accounts.A.jetstream.max_file").as_size(),
            Some(10 << 30)
        );
        assert_eq!(at(&m, "jetstream.max_file_store").as_size(), Some(10 << 30));
        assert_eq!(at(&m, "accounts.B.imports.0.stream.account"), &s("A"));
        assert_eq!(at(&m, "jetstream.max_memory_store"), &Value::Int(1 << 30));
        let users = m
            .get("authorization")
            .unwrap()
            .value
            .as_map()
            .unwrap()
            .get("users")
            .unwrap();
        assert_eq!(users.value.as_list().unwrap()[1].pos.line, 37);
    }

    #[test]
    fn robustness_no_panics() {
        let d = tmpdir("fuzz");
        std::fs::write(d.join("inc.conf"), "x: 1\n").unwrap();
        let sample =
            format!("{REAL}\nz = (\nblock\n)\nq: \"\\x41\\t\"\ninclude inc.conf\nd: 2020-01-01T00:00:00Z\nr: $x\n");
        let mut inputs: Vec<String> = sample
            .char_indices()
            .map(|(i, _)| sample[..i].to_string())
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let specials = b"{}[]()\"'\\$#/:=,;\n \t-.0kK\xff";
        for _ in 0..3000 {
            let mut bytes = sample.clone().into_bytes();
            for _ in 0..1 + rand() % 4 {
                let i = (rand() % bytes.len() as u64) as usize;
                match rand() % 3 {
                    0 => bytes[i] = specials[(rand() % specials.len() as u64) as usize],
                    1 => bytes[i] = rand() as u8,
                    _ => bytes.truncate(i),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            inputs.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        let mut failures = 0;
        for text in &inputs {
            failures += parse_str(text, "f", &d).is_err() as usize;
        }
        assert!(failures > 0 && failures < inputs.len());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Inputs checked with `nats-server -t -c` (v2.9.10). "accepts" means it
    /// parsed (it may then report unknown fields).
    #[test]
    fn agrees_with_nats_server() {
        let accepted = [
            "port 4222",        // space separator
            "{ port: 4222 }",   // braces around the file
            "port: 4222\n}\n",  // stray '}' ends a top-level value
            "x {a:1,}",         // trailing comma in a map
            "x = [1, 2, ]",     // trailing comma in a list
            "x\n{\na=1\n}",     // map on the line after its key
            "server_name: a#b", // '#' inside a bare string
            "x = ab\"c",        // '"' inside a bare string
            "x = 1kx",          // becomes a string
            "x = 9223372036854775807",
            "x = 1.5.6", // IP-like string
            "INCLUDE_ME = 1\nx: $INCLUDE_ME",
            "cluster { x = 4248, port: $x }",
            "ping_interval: 10s",       // string "10s"
            "system_account: \"$SYS\"", // a quoted `$` is just text
            "x = [\n 1 # c\n 2 // c\n]",
            "server_name: ab'", // a quote ends a bare string
        ];
        for text in accepted {
            parse_str(text, "t", Path::new(".")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        }
        let rejected = [
            "port:\n", // Expected value but found new line
            "a b: 1",  // bare keys end at whitespace
            "x = [,]", // Unexpected array value terminator
            "x = [1 2 ]",
            "x: 1.", // Floats must have a digit after the '.'
            "x: .5",
            "x: 123-4",                // All ISO8601 dates must be in full Zulu form
            "x: 2023-13-02T03:04:05Z", // expected Zulu formatted DateTime
            "x = (hello)",             // Unexpected EOF processing block
            "x = (\n  a\n  )\n",       // ')' must start its line
            "x = 1k2",
            "x = 'ab'c",
            "x = 9223372036854775808", // out of the range
            "server_name: \"a\\qb\"",  // Invalid escape character
            "server_name: \"a\\x4\"",
            "server_name: ab\\\n",
            "ping_interval: 1m30s",     // unquoted: 1m then '3'
            "port: $nope_not_defined",  // can not be found
            "a { x = 4222 }\nport: $x", // scopes do not leak out
            "system_account: $SYS",     // a bare `$SYS` is a variable
            "x { { a: 1 } }",
        ];
        for text in rejected {
            assert!(parse_str(text, "t", Path::new(".")).is_err(), "{text:?}");
        }
        // Divergences, on purpose: nats-server rejects `[1, 2]` (number
        // touching ']'), silently drops `x = 1kbb`, `port` (no value) and
        // `x = ;`, wraps `9223372036854775807k`, and overflows its stack on
        // an environment variable whose value is `$` + its own name, and
        // never ends a block string in a CRLF file.
        for text in ["x = [1, 2]", "x = (\nblock\n)\r\n"] {
            assert!(parse_str(text, "t", Path::new(".")).is_ok(), "{text:?}");
        }
        for text in ["x = 1kbb", "port", "x = ;", "x = 9223372036854775807k"] {
            assert!(parse_str(text, "t", Path::new(".")).is_err(), "{text:?}");
        }
    }
}
