//! One account's JetStream: its streams, limits and API counters (`JsAccount`), the server
//! figures the API needs from outside (`Env`, `ServerJs`), and the resource rules
//! nats-server applies when a stream is created or updated (`jsNonClusteredStreamLimitsCheck`,
//! `checkBytesLimits`) or a message is stored (`limitsExceeded`).
//!
//! Usage is not tracked separately: an account's memory or storage is the sum of its
//! streams' `bytes` (the store's nats-server formula), which is what nats-server reports.

use super::api::errors::{self as e, ApiError};
use super::config::{Storage, StreamConfig};
use super::publish::{Inbound, PubCtx, PubOutcome};
use super::stream::Stream;
use super::subject;
pub use crate::config::jetstream::JsLimits;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Server-wide JetStream figures (all accounts), which the integration computes: the
/// configured maxima, the `max_bytes` reserved by streams, and the bytes stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerJs {
    pub max_memory: i64,
    pub max_store: i64,
    pub reserved_memory: i64,
    pub reserved_store: i64,
    pub used_memory: i64,
    pub used_store: i64,
    /// `jetstream { limits { duplicate_window } }` in ns; 0: none.
    pub max_duplicate_window: i64,
}

impl ServerJs {
    /// The server-wide figures: the configured maxima, and the reservations and usage of
    /// every JetStream account (O(streams); the integration can keep it per pass).
    pub fn sum<'a>(
        accounts: impl IntoIterator<Item = &'a JsAccount>,
        max_memory: i64,
        max_store: i64,
        max_duplicate_window: i64,
    ) -> ServerJs {
        let mut s = ServerJs {
            max_memory,
            max_store,
            max_duplicate_window,
            ..ServerJs::default()
        };
        for acc in accounts {
            let (um, us) = acc.usage();
            let (rm, rs) = acc.reserved();
            s.used_memory = s.used_memory.saturating_add(um);
            s.used_store = s.used_store.saturating_add(us);
            s.reserved_memory = s.reserved_memory.saturating_add(rm);
            s.reserved_store = s.reserved_store.saturating_add(rs);
        }
        s
    }
}

/// What a handler needs from outside the account.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub now: SystemTime,
    pub server: ServerJs,
    /// The JetStream domain, when configured (PubAcks, STREAM.INFO and account INFO show it).
    pub domain: Option<&'a str>,
    /// Whether anything in the account subscribes to a subject (pull request inboxes,
    /// deliver subjects on a consumer update).
    pub interest: &'a dyn Fn(&str) -> bool,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("now", &self.now)
            .field("server", &self.server)
            .field("domain", &self.domain)
            .finish()
    }
}

/// An `Env::interest` for callers with no subscriptions to consult: everything has one.
pub fn any_interest(_: &str) -> bool {
    true
}

impl Env<'_> {
    pub fn now_ns(&self) -> i64 {
        to_ns(self.now)
    }
}

pub fn to_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct JsAccount {
    pub name: String,
    /// `<store_dir>/jetstream/<account>/streams`: one directory per file stream.
    pub dir: PathBuf,
    pub streams: BTreeMap<String, Stream>,
    pub limits: JsLimits,
    pub api_total: u64,
    pub api_errors: u64,
    /// Buffers of the deliveries published, for the next poll's.
    pub spare: super::consumer::Spare,
    /// The subscription generation `poll`'s interest answers for (`PollCtx::interest_gen`;
    /// 0: unknown).
    pub interest_gen: u64,
}

impl JsAccount {
    /// An account whose streams live under `<store_dir>/jetstream/<name>/streams`. Call
    /// `meta::open_streams(&acc.dir, ..)` to bring back the streams already there.
    pub fn new(store_dir: &Path, name: &str, limits: JsLimits) -> JsAccount {
        JsAccount {
            name: name.to_string(),
            dir: store_dir.join("jetstream").join(name).join("streams"),
            streams: BTreeMap::new(),
            limits,
            api_total: 0,
            api_errors: 0,
            spare: Default::default(),
            interest_gen: 0,
        }
    }

    /// `new`, then the streams already on disk (meta::open_streams).
    pub fn open(store_dir: &Path, name: &str, limits: JsLimits, domain: Option<&str>) -> JsAccount {
        let mut acc = JsAccount::new(store_dir, name, limits);
        for s in super::meta::open_streams(&acc.dir, domain) {
            acc.streams.insert(s.config.name.clone(), s);
        }
        acc
    }

    /// Runs max_age expiry on every stream; returns the earliest next expiry (Unix ns) for
    /// the loop's timer. Stores changed by it need a flush.
    pub fn expire_all(&mut self, now: SystemTime) -> Option<i64> {
        self.streams
            .values_mut()
            .filter_map(|s| s.expire(now))
            .min()
    }

    /// Bytes stored in (memory, file) streams.
    pub fn usage(&self) -> (i64, i64) {
        let (mut mem, mut store) = (0i64, 0i64);
        for s in self.streams.values() {
            let b = i64::try_from(s.store.state().bytes).unwrap_or(i64::MAX);
            if s.config.storage == Storage::Memory {
                mem = mem.saturating_add(b);
            } else {
                store = store.saturating_add(b);
            }
        }
        (mem, store)
    }

    /// `max_bytes` reserved by (memory, file) streams (those that set it).
    pub fn reserved(&self) -> (i64, i64) {
        let (mut mem, mut store) = (0i64, 0i64);
        for s in self.streams.values().filter(|s| s.config.max_bytes > 0) {
            let r = s.config.num_replicas.saturating_mul(s.config.max_bytes);
            if s.config.storage == Storage::Memory {
                mem = mem.saturating_add(r);
            } else {
                store = store.saturating_add(r);
            }
        }
        (mem, store)
    }

    /// `tieredReservation`: reservations of the other streams with `cfg`'s storage type.
    fn reservation_for(&self, cfg: &StreamConfig) -> i64 {
        self.streams
            .values()
            .filter(|s| s.config.max_bytes > 0)
            .filter(|s| s.config.storage == cfg.storage && s.config.name != cfg.name)
            .map(|s| s.config.num_replicas.saturating_mul(s.config.max_bytes))
            .fold(0i64, |a, b| a.saturating_add(b))
    }

    /// `jsNonClusteredStreamLimitsCheck` (STREAM.CREATE, on the config as sent and again
    /// once defaults are applied): stream count, consumers, account and server bytes.
    pub fn create_limits(&self, cfg: &StreamConfig, env: &Env) -> Result<(), ApiError> {
        let max = self.limits.max_streams;
        if max > 0 && self.streams.len() as i64 >= max {
            return Err(ApiError::new(e::MAXIMUM_STREAMS_LIMIT));
        }
        self.check_limits(cfg, env, self.reservation_for(cfg), 0)
    }

    /// The limits part of `configUpdateCheck`: only the growth of `max_bytes` is reserved.
    pub fn update_limits(
        &self,
        old: &StreamConfig,
        cfg: &StreamConfig,
        env: &Env,
    ) -> Result<(), ApiError> {
        let mut probe = cfg.clone();
        probe.max_bytes = cfg.max_bytes.saturating_sub(old.max_bytes).max(0);
        let mut offset = 0;
        if old.max_bytes > 0 && cfg.num_replicas > old.num_replicas {
            offset = old
                .max_bytes
                .saturating_mul(cfg.num_replicas.saturating_sub(old.num_replicas));
        }
        let reserved = self
            .reservation_for(cfg)
            .saturating_add(old.num_replicas.saturating_mul(old.max_bytes));
        self.check_limits(&probe, env, reserved, offset)
    }

    /// `checkLimits` + `checkBytesLimits` with the server check.
    fn check_limits(
        &self,
        cfg: &StreamConfig,
        env: &Env,
        reserved: i64,
        offset: i64,
    ) -> Result<(), ApiError> {
        let lim = &self.limits;
        if cfg.max_consumers > 0 && lim.max_consumers > 0 && cfg.max_consumers > lim.max_consumers {
            return Err(ApiError::new(e::MAXIMUM_CONSUMERS_LIMIT));
        }
        let replicas = cfg.num_replicas.max(1);
        let add = if cfg.max_bytes < 0 { 1 } else { cfg.max_bytes };
        let total = add.saturating_mul(replicas).saturating_add(offset);
        let srv = &env.server;
        let (acc_max, srv_reserved, srv_max, err) = match cfg.storage {
            Storage::Memory => (
                lim.max_memory,
                srv.reserved_memory,
                srv.max_memory,
                e::MEMORY_RESOURCES_EXCEEDED,
            ),
            Storage::File => (
                lim.max_store,
                srv.reserved_store,
                srv.max_store,
                e::STORAGE_RESOURCES_EXCEEDED,
            ),
            // Go's zero storage type matches neither case: nothing is checked.
            _ => return Ok(()),
        };
        if acc_max >= 0 && reserved.saturating_add(total) > acc_max {
            return Err(ApiError::new(err));
        }
        if srv_reserved.saturating_add(add) > srv_max {
            return Err(ApiError::new(err));
        }
        Ok(())
    }

    /// Bytes stored by the account's streams of `storage` other than `except`.
    pub fn usage_except(&self, storage: Storage, except: &str) -> i64 {
        self.streams
            .values()
            .filter(|s| s.config.storage == storage && s.config.name != except)
            .map(|s| i64::try_from(s.store.state().bytes).unwrap_or(i64::MAX))
            .fold(0i64, |a, b| a.saturating_add(b))
    }

    /// Whether a stored message must be checked against account limits at all.
    pub fn has_byte_limits(&self, storage: Storage) -> bool {
        let lim = &self.limits;
        match storage {
            Storage::Memory => lim.max_memory >= 0 || lim.memory_max_stream_bytes > 0,
            _ => lim.max_store >= 0 || lim.store_max_stream_bytes > 0,
        }
    }

    /// Whether another stream (not `except`) has a subject that could overlap `subjects`.
    /// Literal pairs are looked up in a set; only pairs with a wildcard are compared.
    pub fn overlaps(&self, subjects: &[String], except: Option<&str>) -> bool {
        let others = || {
            self.streams
                .values()
                .filter(move |s| Some(s.config.name.as_str()) != except)
                .flat_map(|s| s.config.subjects.iter())
        };
        let literals: std::collections::HashSet<&str> = others()
            .filter(|s| subject::is_literal(s))
            .map(String::as_str)
            .collect();
        let wild: Vec<&String> = others().filter(|s| !subject::is_literal(s)).collect();
        subjects.iter().any(|b| {
            if subject::is_literal(b) {
                literals.contains(b.as_str()) || wild.iter().any(|a| subject::collide(b, a))
            } else {
                others().any(|a| subject::collide(b, a))
            }
        })
    }

    /// Publishes into stream `name` (the stream whose subjects the message matched): the
    /// server limits (`env.server`) and the account limits apply. None: no such stream.
    pub fn publish(&mut self, env: &Env, name: &str, msg: &Inbound) -> Option<PubOutcome> {
        let storage = self.streams.get(name)?.config.storage;
        let srv = &env.server;
        let server_full = match storage {
            Storage::Memory => srv.used_memory > srv.max_memory,
            _ => srv.used_store > srv.max_store,
        };
        let others = self
            .has_byte_limits(storage)
            .then(|| self.usage_except(storage, name));
        let limits = self.limits;
        let ctx = PubCtx {
            now_ns: env.now_ns(),
            server_full,
        };
        let stream = self.streams.get_mut(name)?;
        Some(stream.publish(msg, &ctx, |s| {
            others.is_some_and(|o| {
                let mine = i64::try_from(s.store.state().bytes).unwrap_or(i64::MAX);
                over_limits(&limits, storage, o.saturating_add(mine))
            })
        }))
    }

    /// The stream whose subjects match the literal `subject` (streams never overlap).
    pub fn stream_for_subject(&self, subject: &str) -> Option<&str> {
        self.streams
            .values()
            .find(|s| {
                s.config
                    .subjects
                    .iter()
                    .any(|p| subject::matches(p, subject))
            })
            .map(|s| s.config.name.as_str())
    }
}

/// nats-server's `jsAccount.limitsExceeded` for an account using `used` bytes of `storage`
/// (checked after a message is stored). The account's total is compared with the
/// per-stream maximum too, as nats-server does.
pub fn over_limits(lim: &JsLimits, storage: Storage, used: i64) -> bool {
    let (per_stream, max) = if storage == Storage::Memory {
        (lim.memory_max_stream_bytes, lim.max_memory)
    } else {
        (lim.store_max_stream_bytes, lim.max_store)
    };
    (per_stream > 0 && used > per_stream) || (max >= 0 && used > max)
}
