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

use super::reader;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

pub(super) const MAX_DEPTH: usize = 64; // nested maps/lists (and env-variable re-parses)
pub(super) const MAX_INCLUDE_DEPTH: usize = 10;
pub(super) const MAX_FILE_SIZE: u64 = 16 << 20;
pub(super) const MAX_VAR_NODES: usize = 1 << 20; // values copied by `$var` expansion

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
    pub(super) entries: Vec<(String, Item)>,
    pub(super) index: HashMap<String, usize>,
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
    pub(super) fn insert(&mut self, key: String, item: Item) {
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
    reader::load_file(path, &mut reader::Ctx::default(), None)
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
    reader::Parser::new(text, file_name, base_dir, &mut reader::Ctx::default()).document()
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
