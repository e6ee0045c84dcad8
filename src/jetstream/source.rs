//! JetStream in the loop: the source that connects the pure JetStream layer (api/, stream.rs,
//! consumer/, store/) to the broker. It owns, per account, the `JsAccount` and the internal
//! subscriptions that bring it messages: `$JS.API.>` (requests), each stream's subjects
//! (publishes), each consumer's acks (`$JS.ACK.<stream>.<consumer>.*.*.*.*.*`), `$JS.FC.>`
//! (flow control).
//!
//! A pass, in `end_of_pass` (after every read of the pass, before connections are written):
//! 1. the messages the fan-out left in the broker's inbox for these subscriptions are handled
//!    in arrival order (`inbound.rs`): requests answered, publishes stored, acks applied;
//!    replies that report a change wait for step 3;
//! 2. due timers: max_age expiry, the interval fsync;
//! 3. every store that changed is flushed (`commit.rs`), before any consumer reads from it;
//! 4. consumers deliver, a bounded slice each, only to subscribers with room;
//! 5. consumers write their state; then the waiting replies go out (`sync_interval`), or wait
//!    for the fsync thread's completion (`sync_interval: always`, one fsync for the pass).
//!
//! The loop never waits on the disk beyond the page-cache writes of step 3 and 5: fsync runs
//! on the store's sync thread (`store/sync.rs`), whose completions wake the loop (`woken`).

use super::account::{to_ns, JsAccount, ServerJs};
use super::commit::Commit;
use super::consumer::{Budget, Out};
use crate::config::jetstream::{JsLimits, Sync};
use crate::config::{Config, GLOBAL_ACCOUNT, SYSTEM_ACCOUNT};
use crate::core::broker::Broker;
use crate::core::internal::InternalMsg;
use crate::server::source::{Cx, ServerEvent, Source, SourceId};
use crate::subject::sublist::SubId;
use crate::util::hash::{new_map, FastMap};
use log::{error, info, warn};
use mio::event::Event;
use mio::Token;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// What an internal subscription is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Api,
    /// Shared with every held PubAck of the stream: a publish clones no string.
    Stream(Rc<str>),
    Ack,
    FlowControl,
}

/// JetStream as one account sees it.
pub(super) enum Slot {
    /// No JetStream here (`$SYS`).
    Off,
    /// JetStream is on in the server, not in this account: requests get 10039.
    NotEnabled,
    On(Box<JsSlot>),
}

pub(super) struct JsSlot {
    pub js: JsAccount,
    /// Each stream's subscriptions to its subjects.
    pub stream_subs: FastMap<String, Vec<SubId>>,
    /// Something changed this pass: flush the account's stores and consumers.
    pub touched: bool,
    /// Consumers delivered this pass: what that changed in the stores (retention removals) is
    /// flushed next pass, after the streams' flush that consumers must not overtake.
    pub polled: bool,
    /// The subscription count when push consumers' interest was last looked at.
    pub interest_gen: u64,
    /// A push consumer's deliver subject had interest, by (stream, consumer).
    pub interest: FastMap<(String, String), bool>,
    /// Each consumer's ack subscription, by (stream, consumer).
    pub ack_subs: BTreeMap<(String, String), SubId>,
    /// Consumers or streams came or went: `sync_ack_subs` at the end of the pass.
    pub acks_dirty: bool,
}

/// Settings fixed at start.
pub(super) struct Settings {
    pub store_dir: PathBuf,
    pub domain: Option<String>,
    pub sync: Sync,
    pub max_memory: i64,
    pub max_store: i64,
    pub max_dup_window: i64,
    /// Both maxima were configured: nats-server then keeps the config it was handed, which
    /// says `compress_ok` (its dynamic one, made when a maximum is missing, does not).
    pub compress_ok: bool,
}

pub struct JetStream {
    pub(super) id: SourceId,
    pub(super) settings: Settings,
    /// By broker account index.
    pub(super) slots: Vec<Slot>,
    /// What each internal subscription is for, by (account, subscription). Looked up for
    /// every ack and publish: the keys are numbers the server assigns, so an ordered map
    /// (a few integer compares) does without SipHash-ing them.
    pub(super) subs: BTreeMap<(usize, SubId), Purpose>,
    pub(super) commit: Commit,
    /// The consumers' output of a poll, kept between passes for its capacity.
    pub(super) outs_buf: Vec<Out>,
    /// The earliest stream expiry or consumer deadline (Unix ns).
    pub(super) wake_at: Option<i64>,
    /// Consumers have more to deliver right now (run the next pass without sleeping).
    pub(super) busy: bool,
    pub(super) budget: Budget,
    /// The pass's messages from the broker's inbox (kept for its capacity).
    pub(super) inbox: Vec<InternalMsg>,
}

impl JetStream {
    /// Plugs JetStream in when the config turns it on: opens every JetStream account's
    /// streams and consumers from the store directory and subscribes for them.
    pub fn plug(cx: &mut Cx) -> io::Result<Option<Box<dyn Source>>> {
        if !cx.broker.cfg.js.enabled {
            return Ok(None);
        }
        let settings = settings(&cx.broker.cfg)?;
        log_start(&settings);
        let mut js = JetStream {
            id: cx.id,
            commit: Commit::new(cx.waker.clone(), settings.sync)?,
            settings,
            slots: Vec::new(),
            subs: BTreeMap::new(),
            outs_buf: Vec::new(),
            wake_at: None,
            busy: false,
            budget: Budget::default(),
            inbox: Vec::new(),
        };
        // Every ack subject names one delivery: caching its lookup only evicts others.
        let acks: Box<[u8]> = b"$JS.ACK."[..].into();
        if !cx.broker.one_off.contains(&acks) {
            cx.broker.one_off.push(acks);
        }
        js.open_accounts(cx.broker);
        js.arm_expiry(SystemTime::now());
        Ok(Some(Box::new(js)))
    }

    /// One slot per broker account: JetStream accounts are opened from disk.
    fn open_accounts(&mut self, b: &mut Broker) {
        let cfg = b.cfg.js.clone();
        let global_only = b.cfg.accounts.is_empty();
        let names: Vec<String> = b.accounts.iter().map(|a| a.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            let limits = cfg
                .accounts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, l)| *l);
            let limits = match limits {
                _ if name == SYSTEM_ACCOUNT => None,
                None if global_only && name == GLOBAL_ACCOUNT => Some(JsLimits::default()),
                l => l,
            };
            let slot = match limits {
                None if name == SYSTEM_ACCOUNT => Slot::Off,
                None => Slot::NotEnabled,
                Some(l) => {
                    let domain = self.settings.domain.as_deref();
                    let js = JsAccount::open(&self.settings.store_dir, name, l, domain);
                    let n = js.streams.len();
                    if n > 0 {
                        info!("  Restored {n} stream(s) for account {name:?}");
                    }
                    Slot::On(Box::new(JsSlot {
                        js,
                        stream_subs: new_map(),
                        touched: false,
                        polled: false,
                        interest_gen: u64::MAX,
                        interest: new_map(),
                        ack_subs: BTreeMap::new(),
                        acks_dirty: true,
                    }))
                }
            };
            self.slots.push(slot);
            self.subscribe_account(b, i);
        }
    }

    /// The subscriptions an account needs: the API (also under the domain), and for a
    /// JetStream account its flow control answers and every stream's subjects and acks.
    fn subscribe_account(&mut self, b: &mut Broker, acc: usize) {
        if matches!(self.slots[acc], Slot::Off) {
            return;
        }
        let mut api = vec!["$JS.API.>".to_string()];
        if let Some(d) = &self.settings.domain {
            api.push(format!("$JS.{d}.API.>"));
        }
        for s in api {
            self.sub(b, acc, &s, Purpose::Api);
        }
        let Slot::On(slot) = &self.slots[acc] else {
            return;
        };
        let streams: Vec<String> = slot.js.streams.keys().cloned().collect();
        self.sub(b, acc, "$JS.FC.>", Purpose::FlowControl);
        for s in streams {
            self.subscribe_stream(b, acc, &s);
        }
        self.sync_ack_subs(b, acc);
    }

    pub(super) fn sub(
        &mut self,
        b: &mut Broker,
        acc: usize,
        subject: &str,
        p: Purpose,
    ) -> Option<SubId> {
        match b.subscribe_internal(self.id, acc, subject.as_bytes(), None, b"js") {
            Ok(id) => {
                self.subs.insert((acc, id), p);
                Some(id)
            }
            Err(_) => {
                warn!("JetStream: cannot subscribe to {subject:?}");
                None
            }
        }
    }

    /// Subscribes to stream `name`'s subjects (again, after an update).
    pub(super) fn subscribe_stream(&mut self, b: &mut Broker, acc: usize, name: &str) {
        self.unsubscribe_stream(b, acc, name);
        let Slot::On(slot) = &self.slots[acc] else {
            return;
        };
        let Some(stream) = slot.js.streams.get(name) else {
            return;
        };
        let subjects = stream.config.subjects.clone();
        let mut ids = Vec::new();
        let shared: Rc<str> = name.into();
        for s in &subjects {
            ids.extend(self.sub(b, acc, s, Purpose::Stream(shared.clone())));
        }
        if let Slot::On(slot) = &mut self.slots[acc] {
            slot.stream_subs.insert(name.to_string(), ids);
        }
    }

    /// Subscribes each consumer's acks, in the one shape an ack reply has, as nats-server
    /// does (`$JS.ACK.<stream>.<consumer>.*.*.*.*.*`), and drops those of consumers that
    /// are gone: an ack to a stream or consumer that does not exist, or with the wrong number
    /// of tokens, matches nothing, and its requester gets no responders.
    pub(super) fn sync_ack_subs(&mut self, b: &mut Broker, acc: usize) {
        let Slot::On(slot) = &mut self.slots[acc] else {
            return;
        };
        slot.acks_dirty = false;
        let want: BTreeSet<(String, String)> = (slot.js.streams.iter())
            .flat_map(|(s, st)| st.consumers.keys().map(move |c| (s.clone(), c.clone())))
            .collect();
        let gone: Vec<(String, String)> = (slot.ack_subs.keys())
            .filter(|k| !want.contains(*k))
            .cloned()
            .collect();
        let ids: Vec<SubId> = gone
            .iter()
            .filter_map(|k| slot.ack_subs.remove(k))
            .collect();
        let new: Vec<(String, String)> = (want.into_iter())
            .filter(|k| !slot.ack_subs.contains_key(k))
            .collect();
        for id in ids {
            self.subs.remove(&(acc, id));
            b.unsubscribe_internal(acc, id);
        }
        for (s, c) in new {
            let id = self.sub(b, acc, &format!("$JS.ACK.{s}.{c}.*.*.*.*.*"), Purpose::Ack);
            if let (Some(id), Slot::On(slot)) = (id, &mut self.slots[acc]) {
                slot.ack_subs.insert((s, c), id);
            }
        }
    }

    pub(super) fn unsubscribe_stream(&mut self, b: &mut Broker, acc: usize, name: &str) {
        let Slot::On(slot) = &mut self.slots[acc] else {
            return;
        };
        for id in slot.stream_subs.remove(name).unwrap_or_default() {
            self.subs.remove(&(acc, id));
            b.unsubscribe_internal(acc, id);
        }
    }

    /// The server-wide figures the API checks limits against (all accounts).
    pub(super) fn server_js(&self) -> ServerJs {
        let accounts = self.slots.iter().filter_map(|s| match s {
            Slot::On(slot) => Some(&slot.js),
            _ => None,
        });
        let s = &self.settings;
        ServerJs::sum(accounts, s.max_memory, s.max_store, s.max_dup_window)
    }

    /// Runs max_age expiry everywhere and keeps the earliest next one.
    fn arm_expiry(&mut self, now: SystemTime) {
        let mut next: Option<i64> = None;
        for slot in &mut self.slots {
            if let Slot::On(slot) = slot {
                if let Some(t) = slot.js.expire_all(now) {
                    slot.touched = true;
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        self.wake_at = min_opt(self.wake_at, next);
    }

    /// Timers that are due: expiry (which may remove messages) and the interval fsync.
    fn run_timers(&mut self, now: SystemTime) {
        let due = self.wake_at.is_some_and(|t| t <= to_ns(now));
        if due {
            self.wake_at = None;
            self.arm_expiry(now);
        }
        if self.commit.interval_due(Instant::now()) {
            self.commit.submit_sync_all(&mut self.slots);
        }
    }
}

impl Source for JetStream {
    fn ready(&mut self, _cx: &mut Cx, _token: Token, _ev: &Event) {}

    fn woken(&mut self, cx: &mut Cx) {
        self.commit.completions(cx.broker, self.id, &mut self.slots);
    }

    fn event(&mut self, cx: &mut Cx, ev: ServerEvent) {
        if ev == ServerEvent::Shutdown {
            self.end_of_pass(cx);
            self.commit.shutdown(cx.broker, self.id, &mut self.slots);
            info!("JetStream Shutdown");
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let now_ns = to_ns(SystemTime::now());
        let timer = self
            .wake_at
            .map(|t| Instant::now() + Duration::from_nanos(t.saturating_sub(now_ns).max(0) as u64));
        min_opt(timer, self.commit.next_interval())
    }

    fn end_of_pass(&mut self, cx: &mut Cx) {
        let now = SystemTime::now();
        let mut msgs = std::mem::take(&mut self.inbox);
        cx.broker.take_inbox_into(cx.id, &mut msgs);
        if !msgs.is_empty() {
            let server = self.server_js();
            for m in msgs.drain(..) {
                self.on_message(cx.broker, m, now, server);
            }
        }
        self.inbox = msgs;
        self.run_timers(now);
        self.commit.flush_streams(&mut self.slots);
        self.poll_consumers(cx.broker, now);
        for acc in 0..self.slots.len() {
            if let Slot::On(slot) = &self.slots[acc] {
                if slot.acks_dirty || slot.js.consumer_count() != slot.ack_subs.len() {
                    self.sync_ack_subs(cx.broker, acc);
                }
            }
        }
        self.commit.finish_pass(cx.broker, self.id, &mut self.slots);
    }

    fn busy(&self) -> bool {
        self.busy
    }

    /// Monitoring reads JetStream (report.rs).
    fn state(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The store directory (`-sd`, or `<temp>/nats` as nats-server), created if missing, and
/// the server's memory and storage maxima (configured, else 75% of the RAM and the free
/// space of the store's file system).
fn settings(cfg: &Config) -> io::Result<Settings> {
    let js = &cfg.js;
    let store_dir = if js.store_dir.is_empty() {
        std::env::temp_dir().join("nats")
    } else {
        PathBuf::from(&js.store_dir)
    };
    let root = store_dir.join("jetstream");
    std::fs::create_dir_all(&root).map_err(|e| {
        error!("Could not create the JetStream store directory {root:?}: {e}");
        e
    })?;
    // As nats-server, refuse a store that cannot be written (a file made and removed there):
    // otherwise every stream in it fails to open, is skipped, and its publishers get no
    // responders instead of an error.
    let probe = root.join(format!("_test_{}", std::process::id()));
    if let Err(e) = std::fs::File::create(&probe) {
        error!("Can't start JetStream: storage directory {root:?} is not writable: {e}");
        return Err(e);
    }
    let _ = std::fs::remove_file(&probe);
    let max_memory = js.max_memory.unwrap_or_else(|| total_memory() / 4 * 3);
    let max_store = js.max_store.unwrap_or_else(|| disk_available(&root));
    let dup = js.max_duplicate_window.map_or(0, |d| d.as_nanos() as i64);
    Ok(Settings {
        store_dir,
        domain: (!js.domain.is_empty()).then(|| js.domain.clone()),
        sync: js.sync,
        max_memory,
        max_store,
        max_dup_window: dup,
        compress_ok: js.max_memory.is_some_and(|m| m > 0) && js.max_store.is_some_and(|m| m > 0),
    })
}

fn log_start(s: &Settings) {
    info!("Starting JetStream");
    info!("---------------- JETSTREAM ----------------");
    info!("  Max Memory:      {}", friendly_bytes(s.max_memory));
    info!("  Max Storage:     {}", friendly_bytes(s.max_store));
    info!("  Store Directory: {:?}", s.store_dir.join("jetstream"));
    match s.sync {
        Sync::Always => info!("  Sync:            always (acks after fsync)"),
        Sync::Interval(d) => info!("  Sync Interval:   {d:?}"),
    }
    if let Some(d) = &s.domain {
        info!("  Domain:          {d}");
    }
    info!("-------------------------------------------");
}

/// nats-server's `friendlyBytes`.
fn friendly_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 * 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{:.2} {}B", v / 1024.0, UNITS[i])
}

/// The machine's RAM (MemTotal of /proc/meminfo), or 256 MiB when it cannot be read
/// (nats-server's JetStreamMaxMemDefault).
fn total_memory() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kb.checked_mul(1024)
        })
        .unwrap_or(256 << 20)
}

/// Three quarters of the free bytes for unprivileged users on the file system holding `dir`
/// (nats-server's `diskAvailable` estimate), or 1 TB when statvfs fails (its
/// JetStreamMaxStoreDefault).
fn disk_available(dir: &std::path::Path) -> i64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 1 << 40;
    };
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 1 << 40;
    }
    ((st.f_bavail as u64).saturating_mul(st.f_frsize as u64) / 4 * 3).min(i64::MAX as u64) as i64
}
