//! JetStream settings: the `jetstream` key (`true`, `"enabled"`, or a block), the top-level
//! `store_dir`, each account's `jetstream`, and the `-js`/`-sd` flags (through `Setting`).
//! Key names and value forms are nats-server 2.9.10's (`parseJetStream`,
//! `parseJetStreamForAccount`); `sync_interval` is nats-server 2.10's, the durability dial.

use crate::config::syntax::{Item, Map, Value};
use crate::config::values::{boolean, duration, err, map, string, Result};
use std::time::Duration;

/// nats-server 2.9's fixed interval between fsyncs of the stores.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(120);

/// When stored data is fsynced, and so what a PubAck promises (see ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// Written before the PubAck (survives a crash of the process), fsynced on this interval
    /// (survives a power loss once synced). nats-server 2.9's behaviour, every 2 minutes.
    Interval(Duration),
    /// fsynced before the PubAck, one fsync per loop pass for every message of the pass.
    Always,
}

/// An account's JetStream limits (`-1`: unlimited), as nats-server's `JetStreamAccountLimits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsLimits {
    pub max_memory: i64,
    pub max_store: i64,
    pub max_streams: i64,
    pub max_consumers: i64,
    pub max_ack_pending: i64,
    pub memory_max_stream_bytes: i64,
    pub store_max_stream_bytes: i64,
    pub max_bytes_required: bool,
}

impl Default for JsLimits {
    /// nats-server's `defaultJSAccountTiers`: everything unlimited.
    fn default() -> JsLimits {
        JsLimits {
            max_memory: -1,
            max_store: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            store_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamConfig {
    pub enabled: bool,
    /// `-sd`/`store_dir`; empty: `<temp dir>/nats`. Streams live under
    /// `<store_dir>/jetstream/<account>/streams/<stream>`.
    pub store_dir: String,
    /// `max_memory_store` / `max_file_store`; None: 75% of the RAM / the disk's free space.
    pub max_memory: Option<i64>,
    pub max_store: Option<i64>,
    pub domain: String,
    pub sync: Sync,
    /// `jetstream { limits { duplicate_window } }`: the largest a stream may ask for.
    pub max_duplicate_window: Option<Duration>,
    /// Accounts configured with `jetstream`, with their limits. When none are and no accounts
    /// are configured, the global account has JetStream with no limits (nats-server).
    pub accounts: Vec<(String, JsLimits)>,
}

impl Default for JetStreamConfig {
    fn default() -> JetStreamConfig {
        JetStreamConfig {
            enabled: false,
            store_dir: String::new(),
            max_memory: None,
            max_store: None,
            domain: String::new(),
            sync: Sync::Interval(DEFAULT_SYNC_INTERVAL),
            max_duplicate_window: None,
            accounts: Vec::new(),
        }
    }
}

/// Keys nats-server has in the jetstream block that tern refuses (encryption at rest).
const UNSUPPORTED: &[&str] = &["key", "ek", "encryption_key", "cipher"];
/// Keys that only matter to a clustered JetStream: accepted, with a warning.
const IGNORED: &[&str] = &["unique_tag", "max_outstanding_catchup", "extension_hint"];

/// The top-level `jetstream` key.
pub fn parse(item: &Item, js: &mut JetStreamConfig, warnings: &mut Vec<String>) -> Result<()> {
    match &item.value {
        Value::Bool(b) => js.enabled = *b,
        Value::Str(s) => js.enabled = enabled_word(item, s)?,
        Value::Map(m) => {
            js.enabled = true;
            parse_block(m, js, warnings)?;
        }
        v => {
            return Err(err(
                item,
                format!(
                    "Expected map, bool or string to define JetStream, got {}",
                    v.type_name()
                ),
            ))
        }
    }
    Ok(())
}

fn enabled_word(item: &Item, s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "enabled" | "enable" => Ok(true),
        "disabled" | "disable" => Ok(false),
        _ => Err(err(
            item,
            format!("Expected 'enabled' or 'disabled' for string value, got '{s}'"),
        )),
    }
}

fn parse_block(m: &Map, js: &mut JetStreamConfig, warnings: &mut Vec<String>) -> Result<()> {
    for (key, v) in m.iter() {
        let k = key.to_ascii_lowercase();
        match k.as_str() {
            "store" | "store_dir" | "storedir" => {
                if !js.store_dir.is_empty() {
                    return Err(err(v, "Duplicate 'store_dir' configuration"));
                }
                js.store_dir = string(v, key)?;
            }
            "max_memory_store" | "max_mem_store" | "max_mem" => {
                js.max_memory = Some(size(v, "max_mem_store")?)
            }
            "max_file_store" | "max_file" => js.max_store = Some(size(v, "max_file_store")?),
            "domain" => js.domain = string(v, key)?,
            "enable" | "enabled" => js.enabled = boolean(v, key)?,
            "sync_interval" | "sync" => js.sync = sync(v, key, warnings)?,
            "limits" => parse_limits(v, js, warnings)?,
            _ if UNSUPPORTED.contains(&k.as_str()) => {
                return Err(err(
                    v,
                    format!("jetstream {key:?} (encryption) is not supported by tern yet"),
                ));
            }
            _ if IGNORED.contains(&k.as_str()) => {
                warnings.push(err(v, format!("jetstream {key:?} has no effect in tern")));
            }
            _ if v.used_as_var => {}
            _ => warnings.push(err(v, format!("unknown field {key:?}"))),
        }
    }
    Ok(())
}

/// `sync_interval: always` or a duration (nats-server 2.10's key).
fn sync(v: &Item, key: &str, warnings: &mut Vec<String>) -> Result<Sync> {
    if let Value::Str(s) = &v.value {
        if s.eq_ignore_ascii_case("always") {
            return Ok(Sync::Always);
        }
    }
    let d = duration(v, key, warnings)?;
    if d.is_zero() {
        return Err(err(v, format!("{key}: must be positive or \"always\"")));
    }
    Ok(Sync::Interval(d))
}

fn parse_limits(item: &Item, js: &mut JetStreamConfig, warnings: &mut Vec<String>) -> Result<()> {
    for (key, v) in map(item, "limits")?.iter() {
        match key.to_ascii_lowercase().as_str() {
            "duplicate_window" => {
                js.max_duplicate_window = Some(duration(v, key, warnings)?);
            }
            "max_ack_pending" | "max_ha_assets" | "max_request_batch" => {
                warnings.push(err(
                    v,
                    format!("jetstream limit {key:?} has no effect in tern"),
                ));
            }
            _ if v.used_as_var => {}
            _ => warnings.push(err(v, format!("unknown field {key:?}"))),
        }
    }
    Ok(())
}

/// nats-server's `getStorageSize`: an integer, or a string with a K/M/G/T suffix.
fn size(v: &Item, what: &str) -> Result<i64> {
    v.value.as_size().ok_or_else(|| {
        err(
            v,
            format!("{what} expected a size, got {}", v.value.type_name()),
        )
    })
}

/// An account's `jetstream` key: Some(limits) when it turns JetStream on for the account.
pub fn parse_account(item: &Item) -> Result<Option<JsLimits>> {
    match &item.value {
        Value::Bool(b) => Ok(b.then(JsLimits::default)),
        Value::Str(s) => Ok(enabled_word(item, s)?.then(JsLimits::default)),
        Value::Map(m) => {
            let mut l = JsLimits::default();
            for (key, v) in m.iter() {
                account_limit(&mut l, key, v)?;
            }
            Ok(Some(l))
        }
        v => Err(err(
            item,
            format!(
                "Expected map, bool or string to define JetStream, got {}",
                v.type_name()
            ),
        )),
    }
}

fn account_limit(l: &mut JsLimits, key: &str, v: &Item) -> Result<()> {
    let n = || {
        v.value.as_size().ok_or_else(|| {
            err(
                v,
                format!(
                    "Expected a parseable size for {key:?}, got {}",
                    v.value.type_name()
                ),
            )
        })
    };
    match key.to_ascii_lowercase().as_str() {
        "max_memory" | "max_mem" | "mem" | "memory" => l.max_memory = n()?,
        "max_store" | "max_file" | "max_disk" | "store" | "disk" => l.max_store = n()?,
        "max_streams" | "streams" => l.max_streams = n()?,
        "max_consumers" | "consumers" => l.max_consumers = n()?,
        "max_ack_pending" => l.max_ack_pending = n()?,
        "mem_max_stream_bytes" | "memory_max_stream_bytes" => l.memory_max_stream_bytes = n()?,
        "disk_max_stream_bytes" | "store_max_stream_bytes" => l.store_max_stream_bytes = n()?,
        "max_bytes_required" | "max_stream_bytes" | "max_bytes" => {
            l.max_bytes_required = boolean(v, key)?
        }
        _ if v.used_as_var => {}
        _ => return Err(err(v, format!("unknown field {key:?}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::load_text;
    use crate::config::Config;

    fn load(text: &str) -> std::result::Result<Config, String> {
        let mut cfg = Config::default();
        load_text(text, "test.conf", std::path::Path::new("."), &mut cfg)?;
        Ok(cfg)
    }

    #[test]
    fn forms_of_the_jetstream_key() {
        assert!(load("jetstream: true").unwrap().js.enabled);
        assert!(load("jetstream: enabled").unwrap().js.enabled);
        assert!(!load("jetstream: disabled").unwrap().js.enabled);
        let c = load(
            "jetstream { store_dir: \"/tmp/x\", max_mem: 1GB, max_file: \"2G\", domain: hub, sync_interval: always }",
        )
        .unwrap();
        assert!(c.js.enabled);
        assert_eq!(c.js.store_dir, "/tmp/x");
        assert_eq!(
            (c.js.max_memory, c.js.max_store),
            (Some(1 << 30), Some(2 << 30))
        );
        assert_eq!((c.js.domain.as_str(), c.js.sync), ("hub", Sync::Always));
        let c = load("jetstream { sync_interval: \"10s\" }").unwrap();
        assert_eq!(c.js.sync, Sync::Interval(Duration::from_secs(10)));
        assert!(load("jetstream: maybe")
            .unwrap_err()
            .contains("Expected 'enabled'"));
        assert!(load("jetstream { cipher: aes }").is_err());
        assert!(load("jetstream { sync_interval: \"0s\" }").is_err());
        let c = load("store_dir: \"/tmp/y\"\njetstream: enabled").unwrap();
        assert_eq!(c.js.store_dir, "/tmp/y");
    }

    #[test]
    fn account_jetstream() {
        let c = load(
            "jetstream: enabled\naccounts { A { jetstream: enabled }, B { jetstream { max_mem: 1MB, max_streams: 3 } }, C {} }",
        )
        .unwrap();
        let names: Vec<&str> = c.js.accounts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(c.js.accounts[0].1, JsLimits::default());
        assert_eq!(
            (
                c.js.accounts[1].1.max_memory,
                c.js.accounts[1].1.max_streams
            ),
            (1 << 20, 3)
        );
        assert!(load("accounts { A { jetstream { bogus: 1 } } }").is_err());
    }
}
