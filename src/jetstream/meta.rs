//! Stream directories: `<store_dir>/jetstream/<account>/streams/<name>/meta.inf` holds the
//! stream's config and creation time as nats-server 2.9.10 writes them (its
//! `FileStreamInfo`: `{"Created":"<RFC 3339>","name":..,...}`), next to the store's own files.
//!
//! meta.inf is written whole to `meta.inf.tmp` and renamed over the old one, so a crash
//! leaves the old or the new version, never a mix. The rename happens on the loop thread (a
//! metadata operation); the fsync that makes it durable is the integration's, through the
//! returned `SyncTarget` (with `sync: always` the API reply waits for it). nats-server
//! never syncs meta.inf.
//!
//! Memory streams have no directory and do not survive a restart (as in nats-server).

use super::config::{self, StreamConfig};
use super::store::SyncTarget;
use super::stream::Stream;
use crate::protocol::json::{self, Obj, Value};
use crate::util::timefmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const META_FILE: &str = "meta.inf";
const META_TMP: &str = "meta.inf.tmp";
/// meta.inf is a config: anything larger is not one of ours.
const MAX_META: u64 = 1 << 20;

/// The JSON tern writes to meta.inf.
pub fn meta_json(cfg: &StreamConfig, created: SystemTime) -> String {
    let mut s = String::with_capacity(512);
    let mut o = Obj::new(&mut s);
    o.str("Created", &timefmt::rfc3339(created));
    cfg.write_fields(&mut o);
    o.end();
    s
}

/// Writes `dir/meta.inf` (creating `dir`), atomically replacing any previous one. Returns
/// what to fsync for it to be durable: the file and the directory.
pub fn write(dir: &Path, cfg: &StreamConfig, created: SystemTime) -> io::Result<SyncTarget> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(META_TMP);
    let path = dir.join(META_FILE);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(meta_json(cfg, created).as_bytes())?;
    }
    fs::rename(&tmp, &path)?;
    Ok(SyncTarget {
        files: vec![Arc::new(File::open(&path)?)],
        dirs: vec![Arc::new(File::open(dir)?)],
    })
}

/// What fsync makes a directory removal durable: the parent directory.
pub fn parent_sync(dir: &Path) -> Option<SyncTarget> {
    let parent = dir.parent()?;
    let d = File::open(parent).ok()?;
    Some(SyncTarget {
        files: Vec::new(),
        dirs: vec![Arc::new(d)],
    })
}

/// Reads `dir/meta.inf`: the config as it was stored and the creation time.
pub fn read(dir: &Path) -> io::Result<(StreamConfig, SystemTime)> {
    let path = dir.join(META_FILE);
    let len = fs::metadata(&path)?.len();
    if len > MAX_META {
        return Err(bad("meta.inf is too large"));
    }
    let bytes = fs::read(&path)?;
    let v = json::parse(&bytes).map_err(|e| bad(&format!("meta.inf: {}", e.0)))?;
    let cfg = config::from_value(&v).map_err(|_| bad("meta.inf: not a stream config"))?;
    let created = match v.get("created") {
        Some(Value::Str(s)) => parse_rfc3339(s).ok_or_else(|| bad("meta.inf: bad Created"))?,
        _ => UNIX_EPOCH,
    };
    Ok((cfg, created))
}

fn bad(text: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.to_string())
}

/// Brings back every file stream under `streams_dir` (an account's `streams` folder): its
/// config, creation time and store (recovered). A directory whose meta.inf is missing or
/// unreadable is skipped with a warning and left on disk; a leftover `meta.inf.tmp` is
/// removed.
pub fn open_streams(streams_dir: &Path, domain: Option<&str>) -> Vec<Stream> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(streams_dir) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let _ = fs::remove_file(dir.join(META_TMP));
        match open_one(&dir, domain) {
            Ok(s) => out.push(s),
            Err(e) => log::warn!(
                "JetStream: skipping stream directory {}: {e}",
                dir.display()
            ),
        }
    }
    out
}

fn open_one(dir: &Path, domain: Option<&str>) -> io::Result<Stream> {
    let (cfg, created) = read(dir)?;
    let expected = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if cfg.name != expected {
        return Err(bad("meta.inf names another stream"));
    }
    let (mut stream, rec) = Stream::open(cfg, Some(dir.to_path_buf()), created, domain)?;
    let now = super::account::to_ns(SystemTime::now());
    super::consumers::open_consumers(&mut stream, now);
    if !rec.lost_seqs.is_empty() || rec.truncated_bytes > 0 {
        log::warn!(
            "JetStream: stream {} recovered with {} lost message(s), {} byte(s) cut off",
            stream.config.name,
            rec.lost_seqs.len(),
            rec.truncated_bytes
        );
    }
    Ok(stream)
}

/// `2026-11-21T21:40:57.467913805Z` (UTC, optional fraction) to a time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let rest = s.get(19..)?;
    let (frac, tail) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            (&r[..n], &r[n..])
        }
        None => ("", rest),
    };
    if tail != "Z" || frac.len() > 9 {
        return None;
    }
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let secs = timefmt::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for ns in [
            0u64,
            1_795_305_629_902_115_260,
            951_782_400_000_000_000,
            1_500,
        ] {
            let t = UNIX_EPOCH + Duration::from_nanos(ns);
            assert_eq!(parse_rfc3339(&timefmt::rfc3339(t)), Some(t), "{ns}");
        }
        assert!(parse_rfc3339("2026-11-21T21:40:57Z").is_some());
        for bad in [
            "",
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "2026-11-21T21:40:57.1+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn meta_json_like_nats_server() {
        let mut cfg = config::parse(br#"{"name":"S","subjects":["s.>"]}"#).unwrap();
        cfg.storage = config::Storage::File;
        let t = UNIX_EPOCH + Duration::from_nanos(1_500_000_000);
        let j = meta_json(&cfg, t);
        assert!(
            j.starts_with(
                r#"{"Created":"1970-01-01T00:00:01.5Z","name":"S","subjects":["s.\u003e"]"#
            ),
            "{j}"
        );
        let dir = std::env::temp_dir().join(format!("tern-meta-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write(&dir, &cfg, t).unwrap();
        let (back, created) = read(&dir).unwrap();
        assert_eq!((back, created), (cfg, t));
        fs::write(dir.join(META_FILE), b"{garbage").unwrap();
        assert!(read(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
