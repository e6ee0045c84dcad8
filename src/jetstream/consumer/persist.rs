//! A consumer's files, under `<stream dir>/obs/<consumer>/`:
//!
//! ```text
//! meta.inf         {"Created":"<RFC 3339>","Name":"<consumer>","Config":{..}} (tmp + rename)
//! snap.<gen>       the whole state at the start of generation <gen> (tmp + rename)
//! log.<gen>        the state's events since that snapshot, appended
//! ```
//!
//! Log record (little-endian): `len u16` (bytes of the whole record) `kind u8`, the event's
//! fields as u64/i64, `crc32c u32` of everything before it. Snapshot: `TCS1`, `gen u64`,
//! sseq, dseq, adflr, asflr, the pending entries (sseq, dseq, ts), the redelivery counts
//! (sseq, count), then the CRC-32C of everything before it.
//!
//! Every state change of a pass is an `Event` (state.rs) appended to a buffer; `flush` (at
//! the end of the pass, with the streams) writes the buffer with one pwrite at the log's
//! known end. Once written, a kill -9 cannot lose it: recovery loads the newest valid
//! snapshot and replays its generation's log through the same transitions, so a durable
//! consumer resumes exactly where its written acks left it. A torn or damaged record ends
//! the replay (the tail is cut off and reported); a missing or damaged snapshot falls back
//! to the previous generation, and with none left the consumer starts over with nothing
//! delivered: an ack that was never written is never invented.
//!
//! Compaction: when the log has grown past `COMPACT_AT` and four times the last snapshot,
//! `flush` writes the whole state as the next generation's snapshot (tmp + rename) and
//! starts that generation's empty log; the generation before the previous one is deleted.
//! A crash anywhere in between leaves a snapshot with its complete log.

use super::config::AckPolicy;
use super::state::{Event, Pending, State};
use crate::jetstream::store::crc::crc32c;
use crate::jetstream::store::{Store, SyncTarget};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const COMPACT_AT: u64 = 1 << 20;
const SNAP_MAGIC: &[u8; 4] = b"TCS1";

const K_DELIVER: u8 = 1;
const K_ACK: u8 = 2;
const K_DROP: u8 = 3;
const K_EXHAUST: u8 = 4;
const K_TOUCH: u8 = 5;
const K_PURGE: u8 = 6;

/// The open log of one consumer.
pub struct Log {
    dir: PathBuf,
    gen: u64,
    file: Arc<File>,
    /// Bytes known written.
    len: u64,
    buf: Vec<u8>,
    snap_len: u64,
    /// A file or directory was created or renamed since the last flush's target.
    dir_dirty: bool,
    /// Log size that triggers compaction (tests lower it).
    pub compact_at: u64,
}

/// What recovery found besides the state.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub gen: u64,
    pub events: usize,
    /// Bytes of a torn or damaged log tail cut off.
    pub cut: u64,
    /// The newest snapshot was unreadable (an older generation, or nothing, was used).
    pub bad_snapshot: bool,
}

pub fn encode(ev: &Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut put = |v: u64| out.extend_from_slice(&v.to_le_bytes());
    let kind = match *ev {
        Event::Deliver { sseq, dseq, dc, ts } => {
            put(sseq);
            put(dseq);
            put(dc);
            put(ts as u64);
            K_DELIVER
        }
        Event::Ack { sseq, dseq } => {
            put(sseq);
            put(dseq);
            K_ACK
        }
        Event::Drop { sseq } => {
            put(sseq);
            K_DROP
        }
        Event::Exhaust { sseq } => {
            put(sseq);
            K_EXHAUST
        }
        Event::Touch { sseq, ts } => {
            put(sseq);
            put(ts as u64);
            K_TOUCH
        }
        Event::Purge { sseq } => {
            put(sseq);
            K_PURGE
        }
    };
    out.insert(start + 2, kind);
    let len = (out.len() - start + 4) as u16;
    out[start..start + 2].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// No sequence or count is higher (the store's bound on stream sequences): a record or
/// snapshot that says otherwise is damage, so arithmetic on the state never overflows.
const MAX_SEQ: u64 = 1 << 62;

/// One record at the start of `b`: the event and its length, or None if torn or damaged.
pub fn decode(b: &[u8]) -> Option<(Event, usize)> {
    let len = usize::from(u16::from_le_bytes([*b.first()?, *b.get(1)?]));
    if len < 7 || len > b.len() {
        return None;
    }
    let (body, crc) = b[..len].split_at(len - 4);
    if crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let f: Vec<u64> = body[3..]
        .chunks(8)
        .map(|c| c.try_into().map(u64::from_le_bytes))
        .collect::<Result<_, _>>()
        .ok()?;
    // Every field but a time is a sequence or a count.
    let times = matches!(body[2], K_DELIVER | K_TOUCH) as usize;
    if f[..f.len().saturating_sub(times)]
        .iter()
        .any(|&v| v > MAX_SEQ)
    {
        return None;
    }
    let ev = match (body[2], f.as_slice()) {
        (K_DELIVER, &[sseq, dseq, dc, ts]) => Event::Deliver {
            sseq,
            dseq,
            dc,
            ts: ts as i64,
        },
        (K_ACK, &[sseq, dseq]) => Event::Ack { sseq, dseq },
        (K_DROP, &[sseq]) => Event::Drop { sseq },
        (K_EXHAUST, &[sseq]) => Event::Exhaust { sseq },
        (K_TOUCH, &[sseq, ts]) => Event::Touch {
            sseq,
            ts: ts as i64,
        },
        (K_PURGE, &[sseq]) => Event::Purge { sseq },
        _ => return None,
    };
    Some((ev, len))
}

pub fn snapshot_bytes(gen: u64, s: &State) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + s.pending.len() * 24 + s.rdc.len() * 16);
    b.extend_from_slice(SNAP_MAGIC);
    let mut rdc: Vec<(&u64, &u64)> = s.rdc.iter().collect();
    rdc.sort_unstable();
    let head = [
        gen,
        s.sseq,
        s.dseq,
        s.adflr,
        s.asflr,
        s.pending.len() as u64,
    ];
    for v in head {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for (&seq, p) in &s.pending {
        for v in [seq, p.dseq, p.ts as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b.extend_from_slice(&(rdc.len() as u64).to_le_bytes());
    for (&seq, &n) in rdc {
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
    }
    let crc = crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Reads a snapshot: its generation and state, or None if it is not a whole one.
pub fn parse_snapshot(b: &[u8]) -> Option<(u64, State)> {
    if b.len() < 4 + 8 * 7 + 4 || &b[..4] != SNAP_MAGIC {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut words = body[4..]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
    let mut next = || words.next();
    let gen = next()?;
    let mut s = State::starting(next()?);
    s.dseq = next()?;
    s.adflr = next()?;
    s.asflr = next()?;
    for _ in 0..next()? {
        let (seq, dseq, ts) = (next()?, next()?, next()? as i64);
        s.pending.insert(seq, Pending { dseq, ts });
    }
    for _ in 0..next()? {
        let (seq, n) = (next()?, next()?);
        s.rdc.insert(seq, n);
    }
    if next().is_some() {
        return None;
    }
    let seqs = [s.sseq, s.dseq, s.adflr, s.asflr].into_iter();
    let pending = s.pending.iter().flat_map(|(&k, p)| [k, p.dseq]);
    let rdc = s.rdc.iter().flat_map(|(&k, &n)| [k, n]);
    if seqs.chain(pending).chain(rdc).any(|v| v > MAX_SEQ) {
        return None;
    }
    Some((gen, s))
}

fn snap_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("snap.{gen}"))
}
fn log_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("log.{gen}"))
}

/// The generations present in `dir` (from `snap.<n>` names), newest first.
fn generations(dir: &Path) -> Vec<u64> {
    let mut g: Vec<u64> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    n.strip_prefix("snap.")?.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    g.sort_unstable_by(|a, b| b.cmp(a));
    g
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    fs::rename(&tmp, path)
}

impl Log {
    /// A new consumer's files: its starting state as generation 1.
    pub fn create(dir: &Path, state: &State) -> io::Result<Log> {
        fs::create_dir_all(dir)?;
        for g in generations(dir) {
            let _ = fs::remove_file(snap_path(dir, g));
            let _ = fs::remove_file(log_path(dir, g));
        }
        let snap = snapshot_bytes(1, state);
        write_atomic(&snap_path(dir, 1), &snap)?;
        Log::open_gen(dir, 1, 0, snap.len() as u64)
    }

    fn open_gen(dir: &Path, gen: u64, len: u64, snap_len: u64) -> io::Result<Log> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(log_path(dir, gen))?;
        file.set_len(len)?;
        Ok(Log {
            dir: dir.to_path_buf(),
            gen,
            file: Arc::new(file),
            len,
            buf: Vec::new(),
            snap_len,
            dir_dirty: true,
            compact_at: COMPACT_AT,
        })
    }

    /// Brings back the state in `dir`: the newest readable snapshot and its log.
    pub fn recover(
        dir: &Path,
        policy: AckPolicy,
        fresh: impl Fn() -> State,
    ) -> io::Result<(Log, State, Recovered)> {
        let mut rec = Recovered::default();
        for g in generations(dir) {
            let bytes = fs::read(snap_path(dir, g)).unwrap_or_default();
            let Some((gen, mut state)) = parse_snapshot(&bytes).filter(|(n, _)| *n == g) else {
                rec.bad_snapshot = true;
                continue;
            };
            let log = fs::read(log_path(dir, gen)).unwrap_or_default();
            let mut at = 0;
            while let Some((ev, n)) = decode(&log[at..]) {
                state.apply(ev, policy);
                at += n;
                rec.events += 1;
            }
            rec.cut = (log.len() - at) as u64;
            rec.gen = gen;
            let l = Log::open_gen(dir, gen, at as u64, bytes.len() as u64)?;
            return Ok((l, state, rec));
        }
        let state = fresh();
        Ok((Log::create(dir, &state)?, state, rec))
    }

    pub fn push(&mut self, ev: &Event) {
        encode(ev, &mut self.buf);
    }

    /// Writes what the pass recorded (compacting when the log is large). Returns what to
    /// fsync for it to survive a power loss; None when nothing was written.
    pub fn flush(&mut self, state: &State) -> io::Result<Option<SyncTarget>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let grown = self.len + self.buf.len() as u64;
        if grown > self.compact_at && grown > 4 * self.snap_len {
            self.compact(state)?;
        } else if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            let _ = self.file.set_len(self.len);
            self.buf.clear();
            return Err(e);
        } else {
            self.len = grown;
            self.buf.clear();
        }
        let mut t = SyncTarget {
            files: vec![self.file.clone()],
            dirs: Vec::new(),
        };
        if std::mem::take(&mut self.dir_dirty) {
            let snap = File::open(snap_path(&self.dir, self.gen))?;
            t.files.push(Arc::new(snap));
            t.dirs.push(Arc::new(File::open(&self.dir)?));
        }
        Ok(Some(t))
    }

    /// The next generation: a snapshot of `state` (which includes every buffered event).
    fn compact(&mut self, state: &State) -> io::Result<()> {
        let gen = self.gen + 1;
        let snap = snapshot_bytes(gen, state);
        write_atomic(&snap_path(&self.dir, gen), &snap)?;
        let mut next = Log::open_gen(&self.dir, gen, 0, snap.len() as u64)?;
        next.compact_at = self.compact_at;
        let old = self.gen.saturating_sub(1);
        if old > 0 {
            let _ = fs::remove_file(snap_path(&self.dir, old));
            let _ = fs::remove_file(log_path(&self.dir, old));
        }
        *self = next;
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.gen
    }
}

/// Writes `meta.inf` (creation time, name, config).
pub fn write_meta(dir: &Path, name: &str, created: i64, config_json: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut s = String::with_capacity(config_json.len() + 80);
    let mut o = crate::protocol::json::Obj::new(&mut s);
    o.str("Created", &super::info::ts(created))
        .str("Name", name)
        .raw("Config", config_json);
    o.end();
    write_atomic(&dir.join("meta.inf"), s.as_bytes())
}

/// Reads `meta.inf`: name, creation time (Unix ns) and config.
pub fn read_meta(dir: &Path) -> io::Result<(String, i64, super::config::ConsumerConfig)> {
    let bad = |t: &str| io::Error::new(io::ErrorKind::InvalidData, t.to_string());
    let path = dir.join("meta.inf");
    if fs::metadata(&path)?.len() > 1 << 20 {
        return Err(bad("meta.inf is too large"));
    }
    let v = crate::protocol::json::parse(&fs::read(&path)?).map_err(|e| bad(&e.0))?;
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("meta.inf: no name"))?
        .to_string();
    let created = match v.get("created").and_then(|c| c.as_str()) {
        Some(s) => super::config::parse_time(s).map_or(0, |t| t.ns),
        None => 0,
    };
    let cfg = v
        .get("config")
        .ok_or_else(|| bad("meta.inf: no config"))
        .and_then(|c| super::config::from_value(c).map_err(|_| bad("meta.inf: bad config")))?;
    Ok((name, created, cfg))
}

/// The consumer directories of a stream directory (`<stream dir>/obs/*`), in name order.
pub fn consumer_dirs(stream_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(stream_dir.join("obs")) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Brings back one consumer of stream `sname` (whose messages are in `store`) from `dir`.
pub fn open_consumer(
    sname: &str,
    store: &Store,
    dir: &Path,
    now: i64,
) -> io::Result<super::Consumer> {
    let (name, created, cfg) = read_meta(dir)?;
    let fresh = || super::Consumer::new(&name, sname, cfg.clone(), created, store, now).state;
    let (log, state, rec) = Log::recover(dir, cfg.ack_policy, fresh)?;
    if rec.cut > 0 || rec.bad_snapshot {
        log::warn!(
            "JetStream: consumer {sname} > {name} recovered from generation {} ({} bytes of a damaged log cut{})",
            rec.gen,
            rec.cut,
            if rec.bad_snapshot { ", a damaged snapshot skipped" } else { "" }
        );
    }
    let mut c = super::Consumer::blank(&name, sname, cfg, created, state, now);
    c.set_replay_end(store.state().last_seq);
    c.log = Some(log);
    c.dir = Some(dir.to_path_buf());
    Ok(c)
}
