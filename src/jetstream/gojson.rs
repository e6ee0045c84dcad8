//! Decoding JSON into typed fields the way Go's `encoding/json` does for nats-server's
//! request structs, so tern refuses exactly what nats-server refuses (10025 "invalid JSON"):
//! - the top level must be an object, or `null` (which leaves every field at its default);
//! - keys match field names case-insensitively, unknown keys are ignored, and every
//!   occurrence of a duplicated key is decoded (one bad occurrence fails the whole request);
//! - integers must be integer literals in range (`1.0`, `1e3`, `"1"` are errors), unsigned
//!   fields refuse negatives, `null` leaves a field as it is (for slices and pointers: empty).
//!
//! Enum fields (retention, storage, discard) are decoded by the caller: Go calls their
//! `UnmarshalJSON` even for `null`, which fails.

use crate::protocol::json::{self, Value};

/// A field had the wrong type, or the input was not a JSON object.
#[derive(Debug, PartialEq, Eq)]
pub struct BadJson;

/// Parses `input` and walks its top-level object: `f(lowercase key, value)` for every pair,
/// in order. `null` calls nothing. Every pair is visited even after an error, like Go.
pub fn decode(
    input: &[u8],
    f: impl FnMut(&str, &Value) -> Result<(), BadJson>,
) -> Result<(), BadJson> {
    let v = json::parse(input).map_err(|_| BadJson)?;
    decode_value(&v, f)
}

/// Like `decode`, for an already parsed value (nested objects).
pub fn decode_value(
    v: &Value,
    mut f: impl FnMut(&str, &Value) -> Result<(), BadJson>,
) -> Result<(), BadJson> {
    match v {
        Value::Null => Ok(()),
        Value::Obj(fields) => {
            let mut result = Ok(());
            for (k, v) in fields {
                let key = k.to_ascii_lowercase();
                if let Err(e) = f(&key, v) {
                    result = Err(e);
                }
            }
            result
        }
        _ => Err(BadJson),
    }
}

/// An `int64` field: `null` keeps `cur`.
pub fn int(v: &Value, cur: i64) -> Result<i64, BadJson> {
    match v {
        Value::Null => Ok(cur),
        Value::Num(n) => n.parse::<i64>().map_err(|_| BadJson),
        _ => Err(BadJson),
    }
}

/// An `int32` field.
pub fn int32(v: &Value, cur: i64) -> Result<i64, BadJson> {
    let n = int(v, cur)?;
    if n < i64::from(i32::MIN) || n > i64::from(i32::MAX) {
        return Err(BadJson);
    }
    Ok(n)
}

/// A `uint64` field.
pub fn uint(v: &Value, cur: u64) -> Result<u64, BadJson> {
    match v {
        Value::Null => Ok(cur),
        Value::Num(n) => n.parse::<u64>().map_err(|_| BadJson),
        _ => Err(BadJson),
    }
}

pub fn boolean(v: &Value, cur: bool) -> Result<bool, BadJson> {
    match v {
        Value::Null => Ok(cur),
        Value::Bool(b) => Ok(*b),
        _ => Err(BadJson),
    }
}

pub fn string(v: &Value, cur: &str) -> Result<String, BadJson> {
    match v {
        Value::Null => Ok(cur.to_string()),
        Value::Str(s) => Ok(s.clone()),
        _ => Err(BadJson),
    }
}

/// A `[]string` field: `null` empties it.
pub fn strings(v: &Value) -> Result<Vec<String>, BadJson> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut bad = false;
            for it in items {
                match it {
                    Value::Str(s) => out.push(s.clone()),
                    Value::Null => out.push(String::new()),
                    _ => bad = true,
                }
            }
            if bad {
                Err(BadJson)
            } else {
                Ok(out)
            }
        }
        _ => Err(BadJson),
    }
}

/// An enum field decoded from an exact string (Go's custom `UnmarshalJSON`; `null` fails).
pub fn enum_str(v: &Value) -> Result<&str, BadJson> {
    match v {
        Value::Str(s) => Ok(s),
        _ => Err(BadJson),
    }
}

/// Go's `isEmptyRequest`: no bytes, `{}`, or a JSON object without keys.
pub fn is_empty_request(payload: &[u8]) -> bool {
    if payload.is_empty() || payload == b"{}" {
        return true;
    }
    matches!(json::parse(payload), Ok(Value::Obj(f)) if f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Result<i64, BadJson> {
        let mut n = 7;
        decode(input.as_bytes(), |k, v| {
            if k == "n" {
                n = int(v, n)?;
            }
            Ok(())
        })?;
        Ok(n)
    }

    #[test]
    fn go_number_rules() {
        assert_eq!(one(r#"{"n":5}"#), Ok(5));
        assert_eq!(one(r#"{"N":-3}"#), Ok(-3));
        assert_eq!(one(r#"{"n":null}"#), Ok(7));
        assert_eq!(one("null"), Ok(7));
        assert_eq!(one(r#"{"x":[1,{"y":2}]}"#), Ok(7));
        for bad in [
            r#"{"n":1.0}"#,
            r#"{"n":1e3}"#,
            r#"{"n":"1"}"#,
            "[1]",
            "5",
            "",
            "{",
        ] {
            assert_eq!(one(bad), Err(BadJson), "{bad}");
        }
        // Every occurrence of a key is decoded: one bad one fails the request.
        assert_eq!(one(r#"{"n":"a","n":1}"#), Err(BadJson));
        assert_eq!(one(r#"{"n":1,"n":"a"}"#), Err(BadJson));
        assert_eq!(one(r#"{"n":1,"n":2}"#), Ok(2));
        assert!(int32(&Value::Num("3000000000".into()), 0).is_err());
        assert!(uint(&Value::Num("-1".into()), 0).is_err());
    }

    #[test]
    fn empty_requests() {
        for e in ["", "{}", " {} ", "{ }"] {
            assert!(is_empty_request(e.as_bytes()), "{e:?}");
        }
        for ne in ["null", "[]", "x", r#"{"a":1}"#] {
            assert!(!is_empty_request(ne.as_bytes()), "{ne:?}");
        }
    }
}
