//! Typed values from the config tree (`syntax.rs`), for `keys.rs`.
//!
//! Every conversion is checked (type, sign, range) and a bad value is an error that names the
//! key and its `file:line:col`, never a panic or a silent wrap-around: a SIGHUP reload runs
//! this code inside the live server, whose release build aborts on panic. Durations are
//! capped at Go's `time.Duration` maximum (what nats-server can hold), which also keeps every
//! `Instant + duration` in the loop from overflowing.

use crate::config::syntax::{self, Item, Map, Value};
use std::time::Duration;

pub type Result<T> = std::result::Result<T, String>;

/// Go's largest `time.Duration` (2562047h47m16.854775807s).
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);
/// nats-server refuses a max_payload or max_control_line above this ("value is too big").
pub const MAX_PROTO_LIMIT: usize = i32::MAX as usize;

pub fn err(item: &Item, msg: impl std::fmt::Display) -> String {
    item.error(msg.to_string()).to_string()
}

pub fn string(item: &Item, key: &str) -> Result<String> {
    match &item.value {
        Value::Str(s) => Ok(s.clone()),
        v => Err(err(
            item,
            format!("{key}: expected a string, got {}", v.type_name()),
        )),
    }
}

pub fn int(item: &Item, key: &str) -> Result<i64> {
    item.value.as_i64().ok_or_else(|| {
        err(
            item,
            format!("{key}: expected an integer, got {}", item.value.type_name()),
        )
    })
}

pub fn positive(item: &Item, key: &str) -> Result<usize> {
    let n = int(item, key)?;
    usize::try_from(n).map_err(|_| err(item, format!("{key}: must not be negative")))
}

/// A protocol size limit (max_payload, max_control_line): at most `MAX_PROTO_LIMIT`.
pub fn proto_limit(item: &Item, key: &str) -> Result<usize> {
    let n = positive(item, key)?;
    if n > MAX_PROTO_LIMIT {
        return Err(err(item, format!("{key} value is too big")));
    }
    Ok(n)
}

/// A count kept as u32 (ping_max, connect_retries): larger values mean "never", so they are
/// clamped rather than truncated.
pub fn count(item: &Item, key: &str) -> Result<u32> {
    Ok(u32::try_from(positive(item, key)?).unwrap_or(u32::MAX))
}

pub fn boolean(item: &Item, key: &str) -> Result<bool> {
    item.value.as_bool().ok_or_else(|| {
        err(
            item,
            format!("{key}: expected a boolean, got {}", item.value.type_name()),
        )
    })
}

pub fn map<'a>(item: &'a Item, key: &str) -> Result<&'a Map> {
    item.value.as_map().ok_or_else(|| {
        err(
            item,
            format!("{key}: expected a map, got {}", item.value.type_name()),
        )
    })
}

/// A duration: a Go duration string, or (old style, with a warning) an integer of seconds.
pub fn duration(item: &Item, key: &str, warnings: &mut Vec<String>) -> Result<Duration> {
    match &item.value {
        Value::Str(s) => {
            syntax::parse_duration(s).map_err(|e| err(item, format!("error parsing {key}: {e}")))
        }
        Value::Int(n) if *n >= 0 => {
            let d = Duration::from_secs(n.unsigned_abs());
            if d > MAX_DURATION {
                return Err(err(
                    item,
                    format!("error parsing {key}: {n} seconds is out of range"),
                ));
            }
            warnings.push(err(
                item,
                format!("{key} should be converted to a duration"),
            ));
            Ok(d)
        }
        v => Err(err(
            item,
            format!(
                "error parsing {key}: expected a duration, got {}",
                v.type_name()
            ),
        )),
    }
}

/// A number of seconds (an auth `timeout`, integer or float). Zero or less keeps the
/// default (None); more than a Go duration can hold is an error.
pub fn seconds(item: &Item, key: &str) -> Result<Option<Duration>> {
    let secs = item
        .value
        .as_f64()
        .ok_or_else(|| err(item, format!("{key}: expected a number of seconds")))?;
    if secs.is_nan() || secs <= 0.0 {
        return Ok(None);
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(Some(d)),
        _ => Err(err(item, format!("{key}: {secs} seconds is out of range"))),
    }
}

/// `host:port`, `:port` or a bare port.
pub fn host_port(item: &Item, key: &str) -> Result<(Option<String>, i64)> {
    match &item.value {
        Value::Int(p) => Ok((None, *p)),
        Value::Str(s) => {
            let (h, p) = s
                .rsplit_once(':')
                .ok_or_else(|| err(item, format!("{key}: expected host:port")))?;
            let port = p
                .parse()
                .map_err(|_| err(item, format!("{key}: bad port {p:?}")))?;
            let host = h.trim_start_matches('[').trim_end_matches(']');
            Ok(((!host.is_empty()).then(|| host.to_string()), port))
        }
        v => Err(err(
            item,
            format!("{key}: expected host:port, got {}", v.type_name()),
        )),
    }
}

pub fn port(item: &Item, key: &str, n: i64) -> Result<i32> {
    if !(-1..=65535).contains(&n) {
        return Err(err(item, format!("{key}: invalid port {n}")));
    }
    Ok(n as i32)
}
