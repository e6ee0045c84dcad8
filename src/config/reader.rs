//! The reader of the config-file format (`syntax.rs` says what it accepts): characters to
//! the tree, following `include`s and expanding `$variables` (enclosing maps first, then the
//! environment), within the depth, size and expansion limits of `syntax.rs`.

use super::syntax::{
    ConfError, Item, Map, Pos, Value, MAX_DEPTH, MAX_FILE_SIZE, MAX_INCLUDE_DEPTH, MAX_VAR_NODES,
};
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[derive(Default)]
pub(super) struct Ctx {
    chain: Vec<PathBuf>, // canonical paths of the files being read
    depth: usize,
    var_nodes: usize,
}

pub(super) fn load_file(path: &Path, ctx: &mut Ctx, at: Option<Pos>) -> Result<Map, ConfError> {
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

pub(super) struct Parser<'a> {
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
    pub(super) fn new(src: &'a str, file: &str, base: &'a Path, ctx: &'a mut Ctx) -> Self {
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

    pub(super) fn document(mut self) -> Result<Map, ConfError> {
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
