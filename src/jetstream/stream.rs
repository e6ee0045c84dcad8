//! A stream: its config, its store, its creation time and its publish state (the
//! `Nats-Msg-Id` window and the last message's id). Publishing is in publish.rs; the JSON
//! of StreamInfo is here because STREAM.INFO, LIST, CREATE and UPDATE all render it.
//!
//! Everything runs on the loop thread. Mutations (appends, removals, purges) are buffered
//! by the store until the integration calls `store.flush()`; replies that report a
//! mutation wait for that flush (see api::Response).

use super::account::to_ns;
use super::api::errors::{self as e, ApiError};
use super::config::{Discard, Storage, StreamConfig};
use super::consumer::Consumer;
use super::dedupe::Dedupe;
use super::headers;
use super::store::{FileConfig, Recovery, Store, StoreLimits, StoredMsg};
use super::transform::Transform;
use crate::protocol::json::{write_str, Obj};
use crate::protocol::wire::go_quote;
use crate::util::timefmt;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Go's zero `time.Time` in JSON.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub struct Stream {
    pub config: StreamConfig,
    pub created: SystemTime,
    pub store: Store,
    /// The stream's directory (file storage): meta.inf and the store's files.
    pub dir: Option<PathBuf>,
    /// Its consumers, by name (consumer/); deleting the stream deletes them.
    pub consumers: BTreeMap<String, Consumer>,
    pub(super) dedupe: Dedupe,
    /// The window is rebuilt from stored headers on first need after a restart.
    pub(super) dedupe_loaded: bool,
    /// `Nats-Msg-Id` of the last message processed ("" when it had none).
    pub(super) last_msg_id: String,
    /// `{"stream":"NAME", "seq":` (with the domain when set): the PubAck's fixed part.
    pub(super) pub_ack: String,
    pub(super) domain: Option<String>,
    pub(super) republish: Option<Transform>,
}

/// What nats-server's file store would report for a stream's limits.
pub fn store_limits(cfg: &StreamConfig) -> StoreLimits {
    StoreLimits {
        max_msgs: cfg.max_msgs,
        max_bytes: cfg.max_bytes,
        max_age: Duration::from_nanos(cfg.max_age.max(0) as u64),
        max_msgs_per_subject: cfg.max_msgs_per_subject,
        discard_new: cfg.discard == Discard::New,
        discard_new_per_subject: cfg.discard_new_per_subject,
    }
}

impl Stream {
    /// Opens (or creates) the stream's store: in `dir` for file storage, in memory otherwise.
    /// `cfg` must be a checked config (check.rs).
    pub fn open(
        cfg: StreamConfig,
        dir: Option<PathBuf>,
        created: SystemTime,
        domain: Option<&str>,
    ) -> io::Result<(Stream, Recovery)> {
        let limits = store_limits(&cfg);
        let (store, rec) = match (&dir, cfg.storage) {
            (Some(d), Storage::File) => Store::open_file(FileConfig::new(d.clone()), limits)?,
            _ => (Store::new_memory(limits), Recovery::default()),
        };
        let empty = store.state().msgs == 0;
        let s = Stream {
            pub_ack: pub_ack_prefix(&cfg.name, domain),
            republish: transform(&cfg),
            config: cfg,
            created,
            store,
            dir,
            consumers: BTreeMap::new(),
            dedupe: Dedupe::default(),
            dedupe_loaded: empty,
            last_msg_id: String::new(),
            domain: domain.map(str::to_string),
        };
        Ok((s, rec))
    }

    /// Takes a new (checked) config: limits apply at once (the store drops what they
    /// exceed, and what a new max_age makes too old), as nats-server's `UpdateConfig`.
    pub fn update(&mut self, cfg: StreamConfig, now: SystemTime) {
        self.store.update_limits(store_limits(&cfg));
        if cfg.max_age > 0 {
            self.store.expire(to_ns(now));
        }
        self.consumers_recount();
        self.republish = transform(&cfg);
        self.config = cfg;
    }

    /// Removes messages past `max_age`; returns when the next one expires (Unix ns).
    pub fn expire(&mut self, now: SystemTime) -> Option<i64> {
        let before = self.store.state().msgs;
        let next = self.store.expire(to_ns(now));
        if self.store.state().msgs != before {
            self.consumers_recount();
        }
        next
    }

    /// Whether a new message on `subject` is dropped without storing (interest retention
    /// and no consumer whose filter takes it).
    pub fn no_interest(&self, subject: &str) -> bool {
        self.no_interest_in(subject)
    }

    /// Removes the stream's files (STREAM.DELETE).
    pub fn delete_files(mut self) -> io::Result<()> {
        // Consumers go with their stream (their files are under its directory).
        for c in self.consumers.values_mut() {
            c.log = None;
        }
        self.consumers.clear();
        let dir = self.dir.clone();
        self.store.delete_all()?;
        if let Some(d) = dir {
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// STREAM.MSG.DELETE: removes `seq` or says why not, in the wording of nats-server's
    /// file store (a sequence past the last is "stream store EOF", one below the first "no
    /// message found", an interior gap 10043) or memory store (always 10043).
    pub fn delete_msg(&mut self, seq: u64, erase: bool) -> Result<(), ApiError> {
        let st = self.store.state();
        if self.config.storage == Storage::File {
            let failed = |t: &str| Err(ApiError::with(e::STREAM_MSG_DELETE_FAILED, t));
            if seq == 0 {
                return failed("no message found");
            }
            if seq > st.last_seq {
                return failed("stream store EOF");
            }
            if seq < st.first_seq {
                return failed("no message found");
            }
        }
        if self.store.remove(seq, erase) {
            self.consumers_msg_deleted(seq);
            Ok(())
        } else {
            Err(ApiError::sequence_not_found(seq))
        }
    }

    /// MSG.GET / DIRECT.GET lookups: by sequence, the next at or after `seq` matching
    /// `next_by`, or the last matching `last_by`.
    pub fn get(&self, seq: u64, last_by: &str, next_by: &str) -> Option<StoredMsg> {
        let found = if seq > 0 && next_by.is_empty() {
            Some(seq)
        } else if !next_by.is_empty() {
            self.store.next_matching(seq, Some(next_by.as_bytes()))
        } else {
            self.store.last_for_subject(last_by.as_bytes())
        };
        self.store.load(found?)
    }

    /// A DIRECT.GET reply's header block: the message's own headers, then the stream's.
    pub fn direct_headers(&self, m: &StoredMsg) -> Vec<u8> {
        let ts = ts_string(m.ts);
        let subj = String::from_utf8_lossy(m.subject());
        let mut h = headers::append(m.hdr(), headers::STREAM, &self.config.name);
        h = headers::append(&h, headers::SUBJECT, &subj);
        h = headers::append(&h, headers::SEQUENCE, &m.seq.to_string());
        headers::append(&h, headers::TIME_STAMP, &ts)
    }

    /// StreamInfo: `{"config":..,"created":..,"state":..}` plus the domain when `with_domain`
    /// (nats-server leaves it out of create responses). `opts` selects the state details.
    pub fn info_fields(&self, o: &mut Obj, opts: &StateOpts, with_domain: bool) {
        o.raw("config", &self.config.to_json());
        o.str("created", &timefmt::rfc3339(self.created));
        o.raw("state", &self.state_json(opts));
        if with_domain {
            if let Some(d) = &self.domain {
                o.str("domain", d);
            }
        }
    }

    /// The `state` object of StreamInfo.
    pub fn state_json(&self, opts: &StateOpts) -> String {
        let st = self.store.state();
        let mut s = String::with_capacity(256);
        let mut o = Obj::new(&mut s);
        o.uint("messages", st.msgs)
            .uint("bytes", st.bytes)
            .uint("first_seq", st.first_seq)
            .str("first_ts", &ts_string(self.store.first_ts()))
            .uint("last_seq", st.last_seq)
            .str("last_ts", &ts_string(st.last_ts));
        if st.num_subjects > 0 {
            o.uint("num_subjects", st.num_subjects);
        }
        if let Some(subjects) = &opts.subjects {
            if !subjects.is_empty() {
                o.raw("subjects", &subjects_json(subjects));
            }
        }
        if st.num_deleted > 0 {
            o.uint("num_deleted", st.num_deleted);
        }
        if opts.deleted_details && st.num_deleted > 0 {
            let d = self.store.deleted(usize::MAX);
            o.raw("deleted", &uints_json(&d));
        }
        if let Some(lost) = self.store.lost() {
            let mut ls = String::new();
            Obj::new(&mut ls)
                .raw("msgs", &uints_json(&lost.msgs))
                .uint("bytes", lost.bytes)
                .end();
            o.raw("lost", &ls);
        }
        o.uint("consumer_count", self.consumers.len() as u64);
        o.end();
        s
    }
}

/// Which details STREAM.INFO asked for.
#[derive(Default)]
pub struct StateOpts {
    pub deleted_details: bool,
    /// The page of `subjects_filter` matches to show (subject, messages).
    pub subjects: Option<Vec<(String, u64)>>,
}

fn pub_ack_prefix(name: &str, domain: Option<&str>) -> String {
    let name = go_quote(name.as_bytes());
    match domain {
        Some(d) => format!(
            "{{\"stream\":{name}, \"domain\":{}, \"seq\":",
            go_quote(d.as_bytes())
        ),
        None => format!("{{\"stream\":{name}, \"seq\":"),
    }
}

fn transform(cfg: &StreamConfig) -> Option<Transform> {
    let rp = cfg.republish.as_ref()?;
    Transform::new(&rp.src, &rp.dest)
}

/// A Unix-ns timestamp as Go's JSON `time.Time` (0: Go's zero time).
pub fn ts_string(ns: i64) -> String {
    if ns == 0 {
        return ZERO_TIME.to_string();
    }
    let t = if ns > 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    };
    timefmt::rfc3339(t)
}

fn uints_json(v: &[u64]) -> String {
    if v.is_empty() {
        return "null".to_string();
    }
    let items: Vec<String> = v.iter().map(u64::to_string).collect();
    format!("[{}]", items.join(","))
}

/// A Go `map[string]uint64` (keys sorted, as encoding/json writes maps).
fn subjects_json(subjects: &[(String, u64)]) -> String {
    let mut sorted: Vec<&(String, u64)> = subjects.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = String::from("{");
    for (i, (k, n)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_str(&mut s, k);
        s.push(':');
        s.push_str(&n.to_string());
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_times() {
        assert_eq!(
            pub_ack_prefix("ORDERS", None),
            r#"{"stream":"ORDERS", "seq":"#
        );
        assert_eq!(
            pub_ack_prefix("O", Some("hub")),
            r#"{"stream":"O", "domain":"hub", "seq":"#
        );
        assert_eq!(ts_string(0), ZERO_TIME);
        assert_eq!(ts_string(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            subjects_json(&[("b".into(), 2), ("a".into(), 1)]),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(uints_json(&[3, 4]), "[3,4]");
    }
}
