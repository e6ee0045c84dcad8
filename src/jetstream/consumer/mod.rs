//! JetStream consumers (issue 12): a stream's cursors with at-least-once delivery, as
//! nats-server 2.9.10 runs them. Pure code on the loop thread: no sockets, no callbacks.
//! The integration calls in with what happened and publishes what comes back.
//!
//! # The integration surface
//!
//! Consumers live in their stream (`Stream::consumers`); the integration talks to the
//! account (`JsAccount`, methods in jetstream/consumers.rs). Times are Unix ns (`now`).
//! `interest(subject)` answers whether anything in the account subscribes to `subject`
//! (read-only; also `Env::interest` for `api::handle`).
//!
//! | when | call | then |
//! |---|---|---|
//! | a request on `$JS.API.CONSUMER.>` (CREATE, DURABLE.CREATE, INFO, DELETE, NAMES, LIST, MSG.NEXT) | `api::handle` as for streams | publish `Response.reply` to the reply subject, then `Response.outs` (MSG.NEXT's 404/408/409/400 statuses, `409 Consumer Deleted` to waiting requests); fsync `Response.sync` (consumer meta.inf) with `sync: always`; `Response.change`: `ConsumerCreated`/`ConsumerUpdated`/`ConsumerDeleted` (stream, consumer) say which deliver subjects to (un)watch, `Deleted(stream)` drops all of that stream's. MSG.NEXT never gets a 503: it counts as delivered |
//! | a message stored in a stream | nothing: `JsAccount::publish` tells the stream's consumers (and drops messages nobody wants on interest streams) | |
//! | a message on `$JS.ACK.<stream>.<consumer>.>` | `acc.ack(subject, reply, payload, now, &interest)` | publish the returned `Out`s: advisories, `+NXT` statuses, and the empty ack-of-the-ack (`after_sync`) |
//! | a message on `$JS.FC.>` | `acc.flow_control(subject)` | nothing (the consumer resumes at the next poll) |
//! | the subscriptions of a push consumer's deliver subject change (for a `deliver_group`, of that queue group) | `acc.set_interest(stream, consumer, bool, now)`; `acc.deliver_subjects()` lists (stream, consumer, subject, group) | nothing |
//! | end of every pass that had any of the above, and when the deadline passes | `acc.poll(now, &budget, &interest, &room, &mut outs)` (`room(subject)`: its subscribers can take more now) | publish `outs` in order; arm one timer for the returned deadline |
//! | a delivery (`out.seq > 0`) reached no subscriber | `acc.not_delivered(stream, consumer, seq, now)` | a push consumer goes inactive; a pull delivery is queued for redelivery |
//! | end of the pass: after the streams' `store.flush()` | `acc.flush_consumers()` | with `sync: always`, fsync the returned target in the same group commit as the streams' and send `after_sync` outs only after it; with `interval`, send them now |
//!
//! Ordering rules: the streams are flushed before the consumers (a consumer's state must
//! never name a message the stream has not written); acks and polls may remove messages
//! from interest and workqueue streams, so flush those stores at the end of the pass as
//! after a publish. An `Out` is published in the consumer's account on `out.to`, with
//! `out.subject()` on the MSG line (the stored subject for deliveries, `to` for statuses
//! and advisories), `out.reply`, `out.hdr()` and `out.data()`; deliver subjects obey the
//! write-buffer limits and the slow-consumer rule like any subscription.
//!
//! `Budget` bounds each consumer's deliveries per `poll` (256 messages or 1 MiB by
//! default), so a consumer replaying a large stream takes a slice per pass and the loop
//! stays fair; `poll` looks at every consumer (a few comparisons each) and works only on
//! those with something to do. At startup `JsAccount::open` brings consumers back from
//! disk; push consumers are inactive until `set_interest`.
//!
//! # Files
//! `config` ConsumerConfig JSON · `check` defaults, validation, update rules · `state`
//! delivered/ack floor/pending/redelivery · `ack` ack subjects and payloads, applying them ·
//! `pull` pull requests, the waiting queue, status messages · `push` flow control, rate
//! limit, headers only · `engine` the delivery loop (`poll`) · `info` ConsumerInfo JSON ·
//! `persist` state on disk · `account` the surface above and retention (interest,
//! workqueue).

pub mod ack;
pub mod check;
pub mod config;
pub mod engine;
pub mod info;
pub mod persist;
pub mod pull;
pub mod push;
mod record;
pub mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bench;
#[cfg(test)]
mod tests_persist;

use crate::jetstream::store::{Store, StoredMsg};
use crate::jetstream::subject;
use config::{ConsumerConfig, DeliverPolicy};
use state::State;
use std::collections::VecDeque;
use std::rc::Rc;

/// How much one `poll` may deliver.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub msgs: usize,
    pub bytes: usize,
}

impl Default for Budget {
    /// A slice of work per consumer per pass: a batch of 256 messages or 1 MiB.
    fn default() -> Budget {
        Budget {
            msgs: 256,
            bytes: 1 << 20,
        }
    }
}

/// A message for the integration to publish.
#[derive(Debug)]
pub struct Out {
    /// The subject it is routed on: deliver subject, pull inbox, advisory or ack reply.
    /// Shared: every delivery to one target names the same subject (no copy per message).
    pub to: Rc<str>,
    /// Reply subject (`$JS.ACK...`, `$JS.FC...`) or empty.
    pub reply: String,
    /// The stream sequence of a delivery (0 for anything else).
    pub seq: u64,
    /// With `sync: always`, send only after the consumers' sync of this pass.
    pub after_sync: bool,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    /// A stored message as it is: its own subject, headers and data.
    Stored(StoredMsg),
    /// `headers_only`: the stored subject, its headers plus `Nats-Msg-Size`, no data.
    HeadersOnly { subject: Vec<u8>, hdr: Vec<u8> },
    /// A status (header block only) or advisory (data only) on `to`.
    Plain { hdr: Vec<u8>, data: Vec<u8> },
}

impl Out {
    pub fn subject(&self) -> &[u8] {
        match &self.body {
            Body::Stored(m) => m.subject(),
            Body::HeadersOnly { subject, .. } => subject,
            Body::Plain { .. } => self.to.as_bytes(),
        }
    }
    /// The header block, empty when none.
    pub fn hdr(&self) -> &[u8] {
        match &self.body {
            Body::Stored(m) => m.hdr(),
            Body::HeadersOnly { hdr, .. } | Body::Plain { hdr, .. } => hdr,
        }
    }
    pub fn data(&self) -> &[u8] {
        match &self.body {
            Body::Stored(m) => m.data(),
            Body::HeadersOnly { .. } => &[],
            Body::Plain { data, .. } => data,
        }
    }

    pub fn status(to: &str, hdr: Vec<u8>) -> Out {
        Out {
            to: Rc::from(to),
            reply: String::new(),
            seq: 0,
            after_sync: false,
            body: Body::Plain {
                hdr,
                data: Vec::new(),
            },
        }
    }
}

/// Buffers of published deliveries, kept for the next ones: a delivery's ack reply and the
/// bytes of its stored message are reused instead of allocated and freed per message.
#[derive(Debug, Default)]
pub struct Spare {
    replies: Vec<String>,
    bufs: Vec<Vec<u8>>,
}

/// Buffers kept at most (a pass delivers a few hundred at a time) and the largest buffer
/// kept (a big message's buffer is freed).
const SPARE_KEPT: usize = 512;
const SPARE_LARGEST: usize = 64 << 10;

impl Spare {
    /// An empty string, with the capacity of a previous ack reply when there is one.
    pub fn reply(&mut self) -> String {
        self.replies.pop().unwrap_or_default()
    }

    /// A buffer for `Store::load_into`.
    pub fn buf(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_default()
    }

    /// Takes back the buffers of a message that was published.
    pub fn keep(&mut self, out: Out) {
        if out.reply.capacity() > 0 && self.replies.len() < SPARE_KEPT {
            let mut r = out.reply;
            r.clear();
            self.replies.push(r);
        }
        if let Body::Stored(m) = out.body {
            let b = m.into_buf();
            if b.capacity() <= SPARE_LARGEST && self.bufs.len() < SPARE_KEPT {
                self.bufs.push(b);
            }
        }
    }
}

/// `lastSeqSkipList`: deliver last per subject walks these first, then resumes.
#[derive(Debug, Default)]
pub struct SkipList {
    pub resume: u64,
    pub seqs: VecDeque<u64>,
}

pub struct Consumer {
    pub name: String,
    pub stream: String,
    pub config: ConsumerConfig,
    /// Creation time, Unix ns.
    pub created: i64,
    pub state: State,
    /// `$JS.ACK.<stream>.<consumer>.`.
    ack_prefix: String,
    /// `config.deliver_subject` shared by the deliveries (remade when the config changes it).
    deliver_to: Rc<str>,
    filter_wild: bool,
    lss: Option<SkipList>,
    /// Matching messages at or after `state.sseq` (nats-server's `npc`); None: recount.
    npc: Option<u64>,
    /// When to look at pending acks again (`ptmr`).
    ack_timer: Option<i64>,
    pub(crate) waiting: pull::WaitQueue,
    /// Push: the deliver subject has interest (`active`).
    pub active: bool,
    fc: push::FlowControl,
    rate: Option<push::RateLimit>,
    /// Next idle heartbeat (push), Unix ns.
    hb_next: Option<i64>,
    /// Replay original: caught up (false) or pacing; the last delivered message's time and
    /// when the next may go.
    replay: bool,
    replay_last_seq: u64,
    replay_lts: i64,
    paced_until: Option<i64>,
    /// The pacing deadline passed: the message it held back may go.
    replay_due: bool,
    /// Ephemeral cleanup: when the consumer goes unless interest or requests come back.
    delete_at: Option<i64>,
    /// Something may be deliverable (`signalNewMessages`).
    pub(crate) ready: bool,
    /// The state log (file streams without mem_storage).
    pub(crate) log: Option<persist::Log>,
    /// Ack none: the pass's last delivery, logged at the flush (it says all the others do).
    last_none_delivery: Option<state::Event>,
    /// The consumer's directory (`<stream dir>/obs/<name>`), when it has files.
    pub dir: Option<std::path::PathBuf>,
}

impl Consumer {
    /// A new consumer on `store` (config checked), starting where its deliver policy says.
    pub fn new(
        name: &str,
        stream: &str,
        config: ConsumerConfig,
        created: i64,
        store: &Store,
        now: i64,
    ) -> Consumer {
        let (sseq, lss) = starting_seq(&config, store);
        let mut c = Consumer::blank(name, stream, config, created, State::starting(sseq), now);
        c.lss = lss;
        c.replay_last_seq = store.state().last_seq;
        c
    }

    /// A consumer with a given state (new, or recovered from disk).
    pub fn blank(
        name: &str,
        stream: &str,
        config: ConsumerConfig,
        created: i64,
        state: State,
        now: i64,
    ) -> Consumer {
        let filter_wild =
            !config.filter_subject.is_empty() && !subject::is_literal(&config.filter_subject);
        let mut c = Consumer {
            name: name.to_string(),
            stream: stream.to_string(),
            ack_prefix: format!("$JS.ACK.{stream}.{name}."),
            deliver_to: Rc::from(config.deliver_subject.as_str()),
            filter_wild,
            lss: None,
            npc: None,
            ack_timer: None,
            waiting: pull::WaitQueue::new(config.max_waiting),
            active: config.is_pull(),
            fc: push::FlowControl::new(config.flow_control),
            rate: None,
            hb_next: None,
            replay: config.replay_policy == config::ReplayPolicy::Original,
            replay_last_seq: 0,
            replay_lts: 0,
            paced_until: None,
            replay_due: false,
            delete_at: None,
            ready: true,
            log: None,
            last_none_delivery: None,
            dir: None,
            state,
            created,
            config,
        };
        c.waiting.last = now;
        if !c.state.pending.is_empty() {
            // nats-server looks at restored pending acks soon after a start.
            let delay = c.config.ack_wait.clamp(0, 500_000_000);
            c.ack_timer = Some(now.saturating_add(delay));
        }
        c.arm_idle(now);
        c
    }

    pub fn is_durable(&self) -> bool {
        self.config.is_durable()
    }

    /// `isFilteredMatch`.
    pub fn matches(&self, subj: &[u8]) -> bool {
        let f = &self.config.filter_subject;
        if f.is_empty() {
            return true;
        }
        if !self.filter_wild {
            return f.as_bytes() == subj;
        }
        std::str::from_utf8(subj).is_ok_and(|s| subject::matches(f, s))
    }

    fn filter(&self) -> Option<&[u8]> {
        let f = &self.config.filter_subject;
        (!f.is_empty()).then_some(f.as_bytes())
    }

    /// Number of matching messages not yet delivered (`num_pending`).
    pub fn num_pending(&mut self, store: &Store) -> u64 {
        if let Some(n) = self.npc {
            return n;
        }
        let n = if self.config.deliver_policy == DeliverPolicy::LastPerSubject {
            let sseq = self.state.sseq;
            store
                .last_per_subject(self.filter())
                .iter()
                .filter(|&&last| last >= sseq)
                .count() as u64
        } else {
            store.num_matching(self.state.sseq, self.filter())
        };
        self.npc = Some(n);
        n
    }

    /// A message was stored (`processStreamSignal`).
    pub fn on_append(&mut self, seq: u64, subj: &[u8]) {
        if !self.matches(subj) {
            return;
        }
        if let Some(n) = &mut self.npc {
            if seq >= self.state.sseq {
                *n += 1;
            }
        }
        self.ready = true;
    }

    /// Messages went away in a way the counter cannot follow (purge, limits, delete).
    pub fn recount(&mut self) {
        self.npc = None;
    }

    /// Re-arms the ephemeral cleanup and the push heartbeat after a (re)start.
    fn arm_idle(&mut self, now: i64) {
        if self.config.idle_heartbeat > 0 && self.config.is_push() {
            self.hb_next = Some(now.saturating_add(self.config.idle_heartbeat));
        }
        self.update_delete_timer(now);
    }

    /// `updateDeliveryInterest`'s delete timer, and the pull consumer's always-running one.
    fn update_delete_timer(&mut self, now: i64) {
        let t = self.config.inactive_threshold;
        if t <= 0 {
            self.delete_at = None;
            return;
        }
        if self.config.is_pull() {
            self.delete_at = Some(self.waiting.last.saturating_add(t));
        } else if self.active {
            self.delete_at = None;
        } else if self.delete_at.is_none() {
            self.delete_at = Some(now.saturating_add(t));
        }
    }

    /// The deliver subject gained or lost interest (push consumers).
    pub fn set_interest(&mut self, interest: bool, now: i64) {
        if self.config.is_pull() {
            return;
        }
        if interest && !self.active {
            self.ready = true;
        }
        self.active = interest;
        if interest {
            self.delete_at = None;
        } else {
            self.update_delete_timer(now);
        }
    }

    /// When the consumer next needs a `poll` without new input (Unix ns).
    pub fn next_deadline(&self) -> Option<i64> {
        let w = self
            .waiting
            .reqs
            .iter()
            // A request expires strictly after its time (as nats-server's `now.After`).
            .flat_map(|r| {
                [
                    if r.expires > 0 {
                        r.expires.saturating_add(1)
                    } else {
                        0
                    },
                    r.hbt,
                ]
            })
            .filter(|&t| t > 0)
            .min();
        [
            self.ack_timer,
            self.hb_next,
            self.paced_until,
            self.delete_at,
            w,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes a new (checked) config (`updateConfig`).
    pub fn update(&mut self, cfg: ConsumerConfig, now: i64) {
        let old = std::mem::replace(&mut self.config, cfg);
        let c = &self.config;
        if c.deliver_subject != old.deliver_subject {
            // A new deliver subject: everything pending goes out again at once.
            let seqs: Vec<u64> = self.state.pending.keys().copied().collect();
            for s in seqs {
                self.state.queue_redelivery(s);
            }
            self.fc.reset();
            self.active = false;
        }
        if c.max_ack_pending != old.max_ack_pending {
            self.ready = true;
        }
        if c.ack_wait != old.ack_wait && self.ack_timer.is_some() {
            self.ack_timer = Some(now.saturating_add(100_000_000));
        }
        if c.rate_limit_bps != old.rate_limit_bps {
            self.rate = None;
        }
        if c.filter_subject != old.filter_subject {
            self.filter_wild =
                !c.filter_subject.is_empty() && !subject::is_literal(&c.filter_subject);
            self.npc = None;
            self.ready = true;
        }
        if c.inactive_threshold != old.inactive_threshold {
            self.delete_at = None;
            self.update_delete_timer(now);
        }
    }

    /// Sets where replay original stops pacing (the stream's last sequence at start).
    pub fn set_replay_end(&mut self, last_seq: u64) {
        self.replay_last_seq = last_seq;
    }

    /// Whether the consumer should go away now (ephemeral inactivity).
    pub fn expired(&self, now: i64) -> bool {
        self.delete_at.is_some_and(|t| now >= t)
    }
}

/// `selectStartingSeqNo`: the first stream sequence to look at, and the skip list of
/// deliver last per subject.
fn starting_seq(cfg: &ConsumerConfig, store: &Store) -> (u64, Option<SkipList>) {
    let st = store.state();
    let filter = (!cfg.filter_subject.is_empty()).then_some(cfg.filter_subject.as_bytes());
    let mut lss = None;
    let mut sseq = if cfg.opt_start_seq > 0 {
        cfg.opt_start_seq
    } else {
        match cfg.deliver_policy {
            DeliverPolicy::All => st.first_seq,
            DeliverPolicy::Last => match filter {
                Some(f) => store.last_for_subject(f).unwrap_or(0),
                None => st.last_seq,
            },
            DeliverPolicy::LastPerSubject => {
                let seqs = store.last_per_subject(filter);
                match seqs.first() {
                    Some(&first) => {
                        lss = Some(SkipList {
                            resume: st.last_seq,
                            seqs: seqs.into(),
                        });
                        first
                    }
                    None => st.last_seq,
                }
            }
            DeliverPolicy::ByStartTime => {
                let t = cfg.opt_start_time.map_or(0, |t| t.ns);
                store
                    .seq_at_or_after_time(t)
                    .unwrap_or(st.last_seq.saturating_add(1))
            }
            _ => st.last_seq.saturating_add(1),
        }
    };
    if st.first_seq == 0 {
        sseq = 1;
    } else if sseq < st.first_seq {
        sseq = st.first_seq;
    } else if sseq > st.last_seq {
        sseq = st.last_seq + 1;
    }
    (sseq, lss)
}

/// Random tokens (ephemeral names, flow control ids, advisory ids): xorshift seeded from
/// the clock and a counter; unpredictability is not needed, uniqueness per server is.
pub fn random_token(len: usize) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0);
    const ALPHA: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ now ^ 0x2545_F491;
    let mut out = String::with_capacity(len);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(ALPHA[(x % ALPHA.len() as u64) as usize] as char);
    }
    out
}
