//! The delivery loop (nats-server's `loopAndGatherMsgs`, `getNextMsg`, `deliverMsg`,
//! `processWaiting`, `processNextMsgRequest`), run as `poll`: instead of a goroutine that
//! sleeps, each call delivers what it may now, within a budget, and leaves a deadline
//! (ack wait, heartbeat, request expiry, replay or rate pacing) for the next call.
//!
//! Order within a call: the pending-ack timer (expired deliveries go on the redelivery
//! queue), then deliveries (redeliveries first, in the order they expired, then new
//! messages from the cursor), then the waiting phase (pull requests that expired or lost
//! interest, heartbeats).

use super::config::AckPolicy;
use super::pull::{self, NextRequest, Waiting};
use super::state::Event;
use super::{push, Body, Budget, Consumer, Out, Spare};
use crate::jetstream::store::{Store, StoredMsg};
use std::rc::Rc;

/// What one `poll` (or ack, or pull request) needs from outside, and what it produced.
pub struct PollCtx<'a> {
    pub now: i64,
    pub budget: Budget,
    /// Whether anything subscribes to a subject (pull request inboxes).
    pub interest: &'a dyn Fn(&str) -> bool,
    /// Whether a subject's subscribers can take more now (their connections are under the
    /// write buffers' water mark): a consumer whose target cannot stops for this pass and
    /// keeps its place, so a slow subscriber paces its consumer instead of being cut.
    pub room: &'a dyn Fn(&str) -> bool,
    /// The stream's largest message (rate limit burst); 0: the server's max payload.
    pub max_msg_size: i64,
    /// Messages to publish, in order.
    pub outs: Vec<Out>,
    /// Stream sequences acked (explicitly, or delivered by an ack-none consumer): interest
    /// and workqueue retention look at them.
    pub acked: Vec<u64>,
    /// Ranges acked at once (ack all): the stream clamps them to what it still holds.
    pub acked_ranges: Vec<(u64, u64)>,
    /// Whether to collect `acked` and `acked_ranges`: limits retention never reads them
    /// (false there spares a vector per ack, and per delivery of an ack-none consumer).
    pub track_acked: bool,
    /// Buffers of earlier deliveries to build new ones in.
    pub spare: Spare,
    /// A number that changes whenever a subscription comes or goes (0: none known): a pull
    /// request whose inbox had interest at this number still has, without asking again.
    pub interest_gen: u64,
}

impl<'a> PollCtx<'a> {
    pub fn new(now: i64, interest: &'a dyn Fn(&str) -> bool) -> PollCtx<'a> {
        PollCtx {
            now,
            budget: Budget::default(),
            interest,
            room: &|_| true,
            max_msg_size: 0,
            outs: Vec::new(),
            acked: Vec::new(),
            acked_ranges: Vec::new(),
            track_acked: true,
            spare: Spare::default(),
            interest_gen: 0,
        }
    }

    /// Stream sequence `seq` was acked (see `acked`).
    pub fn ack_one(&mut self, seq: u64) {
        if self.track_acked {
            self.acked.push(seq);
        }
    }

    /// Stream sequences `from..=to` were acked at once (see `acked_ranges`).
    pub fn ack_range(&mut self, from: u64, to: u64) {
        if self.track_acked {
            self.acked_ranges.push((from, to));
        }
    }
}

/// Why delivery stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Empty,
    MaxAckPending,
}

/// A message picked for delivery, and how to put it back.
struct Candidate {
    msg: StoredMsg,
    dc: u64,
    /// It came from the skip list (deliver last per subject).
    from_lss: bool,
}

const MAX_DELIVER_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

impl Consumer {
    /// Delivers what may go now. See the module comment.
    pub fn poll(&mut self, store: &Store, cx: &mut PollCtx) {
        let now = cx.now;
        if self.ack_timer.is_some_and(|t| now >= t) {
            self.check_pending(store, now);
        }
        if self.paced_until.is_some_and(|t| now >= t) {
            self.paced_until = None;
            self.replay_due = true;
        }
        self.ready = false;
        let (mut msgs, mut bytes) = (0usize, 0usize);
        let mut stop = Stop::Empty;
        // The answer for the last target asked about: nothing this poll delivers is written
        // before it returns, so a target's room cannot change within it.
        let mut room: Option<(String, bool)> = None;
        loop {
            if msgs >= cx.budget.msgs || bytes >= cx.budget.bytes {
                self.ready = true;
                break;
            }
            if self.paced_until.is_some() || !self.can_deliver() {
                break;
            }
            if !self.target_has_room(cx, &mut room) {
                self.ready = true;
                break;
            }
            let cand = match self.take_next(store, cx) {
                Ok(c) => c,
                Err(s) => {
                    stop = s;
                    break;
                }
            };
            match self.deliver(cand, store, cx) {
                Some(n) => {
                    msgs += 1;
                    bytes += n;
                }
                None => break,
            }
        }
        self.wait_phase(cx, stop);
    }

    /// Whether the next delivery's target (the deliver subject, or the oldest pull request's
    /// inbox) can take more now.
    /// `memo`: the last target asked about this poll and its answer.
    fn target_has_room(&self, cx: &PollCtx, memo: &mut Option<(String, bool)>) -> bool {
        let target: &str = if self.config.is_push() {
            &self.config.deliver_subject
        } else {
            match self.waiting.reqs.front() {
                Some(w) => &w.reply,
                None => return true,
            }
        };
        if let Some((last, has)) = memo {
            if last == target {
                return *has;
            }
        }
        let has = (cx.room)(target);
        *memo = Some((target.to_string(), has));
        has
    }

    /// Push: interest and flow control allow; pull: someone waits.
    fn can_deliver(&self) -> bool {
        if self.config.is_push() {
            self.active && !self.fc.stalled()
        } else {
            !self.waiting.is_empty()
        }
    }

    /// `getNextMsg`: a due redelivery, else the next message from the cursor.
    fn take_next(&mut self, store: &Store, cx: &mut PollCtx) -> Result<Candidate, Stop> {
        while let Some(seq) = self.state.next_to_redeliver() {
            let max = self.config.max_deliver;
            // Over max_deliver the count goes up through the recorded event, so that a
            // restart replays the same count.
            let dc = self.state.peek_dc(seq);
            if max > 0 && dc > max as u64 {
                if dc == max as u64 + 1 {
                    self.max_deliver_advisory(seq, dc - 1, cx);
                }
                self.record(Event::Exhaust { sseq: seq });
                continue;
            }
            let dc = self.state.next_dc(seq);
            match store.load_into(seq, cx.spare.buf()) {
                Some(msg) => {
                    return Ok(Candidate {
                        msg,
                        dc,
                        from_lss: false,
                    })
                }
                None => {
                    self.record(Event::Drop { sseq: seq });
                }
            }
        }
        let max_ack = self.config.max_ack_pending;
        if max_ack > 0 && self.state.pending.len() as i64 >= max_ack {
            return Err(Stop::MaxAckPending);
        }
        let mut from = self.state.sseq;
        let mut from_lss = false;
        if let Some(lss) = &mut self.lss {
            if let Some(s) = lss.seqs.pop_front() {
                from = s;
                from_lss = true;
            }
        }
        let found = store.next_matching(from, self.filter());
        let Some(msg) = found.and_then(|s| store.load_into(s, cx.spare.buf())) else {
            if from_lss {
                self.finish_lss();
            }
            // Caught up: the cursor moves past whatever did not match.
            let last = store.state().last_seq;
            if self.filter().is_some() && last >= self.state.sseq {
                self.state.sseq = last + 1;
                self.npc = None;
            }
            return Err(Stop::Empty);
        };
        Ok(Candidate {
            msg,
            dc: 1,
            from_lss,
        })
    }

    fn finish_lss(&mut self) {
        if let Some(lss) = self.lss.take() {
            if lss.resume > self.state.sseq {
                self.state.sseq = lss.resume;
            }
        }
    }

    /// `deliverMsg`. Returns the bytes sent, or None when the candidate had to wait.
    fn deliver(&mut self, c: Candidate, store: &Store, cx: &mut PollCtx) -> Option<usize> {
        let now = cx.now;
        let seq = c.msg.seq;
        let mut pending = self.num_pending(store);
        if c.dc == 1 {
            pending = pending.saturating_sub(1);
        }
        let dseq = self.state.dseq;
        let mut reply = cx.spare.reply();
        ack_reply(
            &mut reply,
            &self.ack_prefix,
            [c.dc, seq, dseq, c.msg.ts as u64, pending],
        );
        let (dc, from_lss, ts) = (c.dc, c.from_lss, c.msg.ts);
        let body = if self.config.headers_only {
            Body::HeadersOnly {
                subject: c.msg.subject().to_vec(),
                hdr: push::headers_only(c.msg.hdr(), c.msg.data().len()),
            }
        } else {
            Body::Stored(c.msg)
        };
        let mut out = Out {
            // Set below, once the target is known (a clone, not an allocation).
            to: self.deliver_to.clone(),
            reply,
            seq,
            after_sync: false,
            body,
        };
        let sz = out.subject().len() + out.reply.len() + out.hdr().len() + out.data().len();
        if let Err(at) = self.pace(ts, sz, cx) {
            self.paced_until = Some(at);
            self.unget_out(out, dc, from_lss);
            return None;
        }
        out.to = if self.config.is_push() {
            if *self.deliver_to != *self.config.deliver_subject {
                self.deliver_to = Rc::from(self.config.deliver_subject.as_str());
            }
            self.deliver_to.clone()
        } else {
            match self.next_waiting(sz, cx) {
                Some(r) => r,
                None => {
                    self.unget_out(out, dc, from_lss);
                    return None;
                }
            }
        };
        self.replay_due = false;
        if dc == 1 {
            self.npc = Some(pending);
            if self.lss.as_ref().is_some_and(|l| l.seqs.is_empty()) {
                self.finish_lss();
            }
        }
        self.record(Event::Deliver {
            sseq: seq,
            dseq,
            dc,
            ts: now,
        });
        self.replay_lts = ts;
        self.state.last_delivered = now;
        let psz = out.to.len() + out.reply.len() + out.hdr().len() + out.data().len();
        cx.outs.push(out);
        self.after_delivery(seq, psz as i64, cx);
        Some(psz)
    }

    fn unget_out(&mut self, out: Out, dc: u64, from_lss: bool) {
        if dc > 1 {
            self.state.unredeliver(out.seq);
        } else if from_lss {
            if let Some(lss) = &mut self.lss {
                lss.seqs.push_front(out.seq);
            }
        }
    }

    /// Replay original and the rate limit (push only, so a delivery always follows a
    /// successful take): Ok to send now, or when to try again.
    fn pace(&mut self, ts: i64, sz: usize, cx: &PollCtx) -> Result<(), i64> {
        let now = cx.now;
        if self.replay && self.replay_lts > 0 && !self.replay_due {
            let delay = ts.saturating_sub(self.replay_lts);
            if delay > 1_000_000 {
                return Err(now.saturating_add(delay));
            }
        }
        if self.rate.is_none() && self.config.rate_limit_bps > 0 {
            let burst = if cx.max_msg_size > 0 {
                cx.max_msg_size
            } else {
                1 << 20
            };
            self.rate = push::RateLimit::new(self.config.rate_limit_bps, burst, now);
        }
        if let Some(r) = &mut self.rate {
            r.take(sz, now)?;
        }
        Ok(())
    }

    /// Flow control, heartbeat clock, activity, ack timer, ack-none retention.
    fn after_delivery(&mut self, seq: u64, psz: i64, cx: &mut PollCtx) {
        let now = cx.now;
        if self.config.ack_policy == AckPolicy::None {
            cx.ack_one(seq);
        } else if self.ack_timer.is_none() {
            let wait = self
                .config
                .ack_wait
                .saturating_add(super::state::ACK_WAIT_DELAY);
            self.ack_timer = Some(now.saturating_add(wait));
        }
        if self.fc.sent(psz) && self.config.is_push() {
            let id = format!(
                "$JS.FC.{}.{}.{}",
                self.stream,
                self.name,
                super::random_token(4)
            );
            self.fc.requested(id.clone());
            let mut o = Out::status(&self.config.deliver_subject, push::FC_REQUEST.to_vec());
            o.reply = id;
            cx.outs.push(o);
        }
        if self.config.is_pull() && self.config.inactive_threshold > 0 {
            self.waiting.last = now;
            self.update_delete_timer(now);
        }
        if let Some(hb) = self.hb_next.as_mut() {
            *hb = now.saturating_add(self.config.idle_heartbeat);
        }
    }

    /// `nextWaiting`: the reply subject of the request that takes a message of `sz` bytes.
    fn next_waiting(&mut self, sz: usize, cx: &mut PollCtx) -> Option<Rc<str>> {
        let now = cx.now;
        let sz = sz as i64;
        while let Some(w) = self.waiting.reqs.front_mut() {
            if w.b > 0 {
                if sz <= w.b {
                    w.b -= sz;
                    if w.b == 0 {
                        w.n = 1;
                    }
                } else {
                    let hdr = pull::status_pending(409, "Message Size Exceeds MaxBytes", w.n, w.b);
                    cx.outs.push(Out::status(&w.reply, hdr));
                    self.waiting.reqs.pop_front();
                    continue;
                }
            }
            if w.expires != 0 && now >= w.expires {
                // Expired between two passes of `process_waiting`: the requester still hears
                // of it, as from nats-server 2.10 (2.9.10 dropped it silently, and a client
                // without a timeout of its own waited for ever).
                let hdr = pull::status_pending(408, "Request Timeout", w.n, w.b);
                cx.outs.push(Out::status(&w.reply, hdr));
                self.waiting.reqs.pop_front();
                continue;
            }
            if has_interest(w, cx) {
                return self.waiting.pop(now).map(|(reply, _)| reply);
            }
            self.waiting.reqs.pop_front();
        }
        None
    }

    /// `processWaiting`: expired requests get 408 (and, at the end of the stream,
    /// no-wait requests that got something), requests without interest go; heartbeats.
    /// Returns the messages the remaining requests still want.
    pub(crate) fn process_waiting(&mut self, eos: bool, cx: &mut PollCtx) -> i64 {
        let now = cx.now;
        let mut wanted = 0i64;
        let (last_d, last_s) = (
            self.state.delivered_consumer(),
            self.state.delivered_stream(),
        );
        let stalled = self.fc.id.clone();
        self.waiting.reqs.retain_mut(|w| {
            if (eos && w.no_wait && w.d > 0) || (w.expires != 0 && now > w.expires) {
                let hdr = pull::status_pending(408, "Request Timeout", w.n, w.b);
                cx.outs.push(Out::status(&w.reply, hdr));
                return false;
            }
            if !has_interest(w, cx) {
                return false;
            }
            wanted = wanted.saturating_add(w.n);
            if w.hbt != 0 && now >= w.hbt {
                let hdr = pull::heartbeat(last_d, last_s, &stalled);
                cx.outs.push(Out::status(&w.reply, hdr));
                w.hbt = now.saturating_add(w.hb);
            }
            true
        });
        wanted
    }

    /// After the deliveries: replay catch-up, pull requests, the push heartbeat.
    fn wait_phase(&mut self, cx: &mut PollCtx, stop: Stop) {
        if self.replay && self.state.sseq > self.replay_last_seq {
            self.replay = false;
        }
        if self.config.is_pull() {
            if !self.ready || !self.waiting.is_empty() {
                self.process_waiting(stop != Stop::MaxAckPending, cx);
            }
        } else if let Some(t) = self.hb_next {
            if cx.now >= t {
                if self.active {
                    let hdr = pull::heartbeat(
                        self.state.delivered_consumer(),
                        self.state.delivered_stream(),
                        &self.fc.id,
                    );
                    cx.outs.push(Out::status(&self.config.deliver_subject, hdr));
                }
                self.hb_next = Some(cx.now.saturating_add(self.config.idle_heartbeat));
            }
        }
    }

    /// `checkPending`: deliveries gone from the stream are dropped, expired ones queued
    /// for redelivery.
    fn check_pending(&mut self, store: &Store, now: i64) {
        let first = store.state().first_seq;
        let gone: Vec<u64> = self.state.pending.range(..first).map(|(&s, _)| s).collect();
        for s in gone {
            self.record(Event::Drop { sseq: s });
        }
        let (expired, next) = self
            .state
            .expired(now, self.config.ack_wait, &self.config.backoff);
        if !expired.is_empty() {
            self.ready = true;
        }
        self.ack_timer = next;
    }

    /// `processNextMsgRequest`: a pull request arrives on `reply`. Statuses go to `outs`.
    pub fn next_request(&mut self, reply: &str, payload: &[u8], store: &Store, cx: &mut PollCtx) {
        let now = cx.now;
        let mut err = |code: u16, text: String| {
            cx.outs.push(Out::status(reply, pull::status(code, &text)));
        };
        if self.config.is_push() {
            return err(409, "Consumer is push based".into());
        }
        let r = match pull::parse_request(payload) {
            Ok(r) => r,
            Err(e) => return err(400, format!("Bad Request - {e}")),
        };
        if let Some(text) = self.request_limits(&r) {
            return err(409, text);
        }
        if self.waiting.is_full() {
            self.process_waiting(false, cx);
        }
        if r.no_wait {
            let pending = self
                .num_pending(store)
                .saturating_add(self.state.redelivery_queue_len() as u64);
            if pending == 0 && r.expires == 0 {
                self.waiting.last = now;
                cx.outs
                    .push(Out::status(reply, pull::status(404, "No Messages")));
                return;
            }
            if pending > 0 {
                let wanted = self.process_waiting(false, cx);
                if wanted > 0 && pending < wanted as u64 {
                    self.waiting.last = now;
                    cx.outs
                        .push(Out::status(reply, pull::status(408, "Requests Pending")));
                    return;
                }
            }
        }
        let w = Waiting {
            reply: Rc::from(reply),
            n: r.batch,
            d: 0,
            b: r.max_bytes,
            expires: if r.expires == 0 {
                0
            } else {
                now.saturating_add(r.expires)
            },
            received: now,
            hb: r.heartbeat,
            hbt: if r.heartbeat > 0 {
                now.saturating_add(r.heartbeat)
            } else {
                0
            },
            no_wait: r.no_wait,
            seen: 0,
        };
        if !self.waiting.add(w) {
            cx.outs
                .push(Out::status(reply, pull::status(409, "Exceeded MaxWaiting")));
            return;
        }
        self.update_delete_timer(now);
        self.ready = true;
    }

    /// The consumer's `max_batch`, `max_expires` and `max_bytes` (409 text).
    fn request_limits(&self, r: &NextRequest) -> Option<String> {
        let c = &self.config;
        if c.max_batch > 0 && r.batch > c.max_batch {
            return Some(format!("Exceeded MaxRequestBatch of {}", c.max_batch));
        }
        if r.expires != 0 && c.max_expires > 0 && r.expires > c.max_expires {
            let d = std::time::Duration::from_nanos(c.max_expires as u64);
            return Some(format!(
                "Exceeded MaxRequestExpires of {}",
                crate::util::timefmt::go_duration(d)
            ));
        }
        if r.max_bytes > 0 && c.max_bytes > 0 && r.max_bytes > c.max_bytes {
            return Some(format!("Exceeded MaxRequestMaxBytes of {}", c.max_bytes));
        }
        None
    }

    fn max_deliver_advisory(&self, seq: u64, deliveries: u64, cx: &mut PollCtx) {
        let mut s = String::with_capacity(200);
        let mut o = crate::protocol::json::Obj::new(&mut s);
        o.str("type", "io.nats.jetstream.advisory.v1.max_deliver")
            .str("id", &super::random_token(22))
            .str("timestamp", &super::info::ts(cx.now))
            .str("stream", &self.stream)
            .str("consumer", &self.name)
            .uint("stream_seq", seq)
            .uint("deliveries", deliveries);
        o.end();
        let to = format!("{MAX_DELIVER_ADVISORY}.{}.{}", self.stream, self.name);
        cx.outs.push(Out {
            to: to.into(),
            reply: String::new(),
            seq: 0,
            after_sync: false,
            body: Body::Plain {
                hdr: Vec::new(),
                data: s.into_bytes(),
            },
        });
    }
}

/// `<prefix><dc>.<sseq>.<dseq>.<ts>.<pending>` without the formatting machinery (one of
/// these per delivery): digits two at a time into one buffer.
/// Whether a pull request's inbox has interest: asked once per subscription generation.
fn has_interest(w: &mut Waiting, cx: &PollCtx) -> bool {
    let gen = cx.interest_gen;
    let has = (gen != 0 && w.seen == gen) || (cx.interest)(&w.reply);
    if has {
        w.seen = gen;
    }
    has
}

/// `<prefix><n1>.<n2>.<n3>.<n4>.<n5>` into `out` (emptied first).
fn ack_reply(out: &mut String, prefix: &str, nums: [u64; 5]) {
    out.clear();
    out.push_str(prefix);
    for (i, n) in nums.into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_u64(out, n);
    }
}

const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn push_u64(b: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let p = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    }
    if n >= 10 {
        let p = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[p..p + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    // Digits only: always UTF-8.
    b.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    #[test]
    fn ack_replies() {
        let mut r = "left over".to_string();
        super::ack_reply(
            &mut r,
            "$JS.ACK.S.C.",
            [1, 22, 333, 1_700_000_000_000_000_000, 0],
        );
        assert_eq!(r, "$JS.ACK.S.C.1.22.333.1700000000000000000.0");
        super::ack_reply(&mut r, "p.", [u64::MAX, 0, 9, 10, 100]);
        assert_eq!(r, format!("p.{}.0.9.10.100", u64::MAX));
    }
}
