//! Acks as nats-server 2.9.10 reads them: the reply subject a delivery carried,
//! `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (nats-server reads
//! nothing else from the subject; a malformed one acks sequence 0, which matches nothing),
//! and the payload: empty, `+ACK` or `+OK` (ack), `-NAK` with an optional delay (a Go
//! duration or `{"delay":ns}`), `+WPI`, `+TERM`, `+NXT` with a pull request after it.
//! Anything else is ignored, but still answered with the empty "ack of the ack" when it came
//! with a reply subject (that is what `ack_sync` waits for).
//!
//! The v2 form of ADR-15 (`$JS.ACK.<domain>.<acc hash>.<stream>.<consumer>...<token>`) is
//! not emitted by nats-server 2.9 and not read by it either (it wants exactly 9 tokens); tern
//! reads it the same way nats-server does: not at all.

/// What the ack subject carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckSubject<'a> {
    pub stream: &'a str,
    pub consumer: &'a str,
    /// Delivery count, stream and consumer sequence (0 when malformed, as nats-server).
    pub dc: u64,
    pub sseq: u64,
    pub dseq: u64,
}

/// `ackReplyInfo`: exactly 9 tokens starting `$JS.ACK`; numbers that are not plain digits
/// read as nats-server reads them (-1, which as uint64 matches no sequence).
/// Bytes, as they came (one ack per delivery: only the stream and consumer names are
/// checked as UTF-8, not the whole subject).
pub fn parse_subject(subject: &[u8]) -> Option<AckSubject<'_>> {
    let rest = subject.strip_prefix(b"$JS.ACK.")?;
    // The 7 tokens after `$JS.ACK.`, cut at the dots.
    let mut t: [&[u8]; 7] = [b""; 7];
    let (mut n, mut start, mut ok) = (0, 0, true);
    crate::subject::each_dot(rest, |i| {
        if n == 6 {
            ok = false;
            return false;
        }
        t[n] = &rest[start..i];
        n += 1;
        start = i + 1;
        true
    });
    t[n] = &rest[start..];
    if !ok || n != 6 {
        return None;
    }
    Some(AckSubject {
        stream: std::str::from_utf8(t[0]).ok()?,
        consumer: std::str::from_utf8(t[1]).ok()?,
        dc: num(t[2]),
        sseq: num(t[3]),
        dseq: num(t[4]),
    })
}

/// `parseAckReplyNum` as uint64: empty or not digits is -1 (u64::MAX).
fn num(d: &[u8]) -> u64 {
    if d.is_empty() {
        return u64::MAX;
    }
    let mut n: u64 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return u64::MAX;
        }
        n = n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
    }
    n
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckKind<'a> {
    Ack,
    /// A delay in ns when one was given and parsed.
    Nak(Option<i64>),
    Progress,
    Term,
    /// The pull request after `+NXT` (may be empty).
    Next(&'a [u8]),
    /// Not an ack nats-server knows: nothing happens (but a reply still gets its empty answer).
    Unknown,
}

/// `processAck`'s switch, in its order.
pub fn parse_payload(msg: &[u8]) -> AckKind<'_> {
    if msg.is_empty() || msg == b"+ACK" || msg == b"+OK" {
        return AckKind::Ack;
    }
    if let Some(rest) = msg.strip_prefix(b"+NXT") {
        return AckKind::Next(rest);
    }
    if let Some(rest) = msg.strip_prefix(b"-NAK") {
        return AckKind::Nak(nak_delay(rest));
    }
    if msg == b"+WPI" {
        return AckKind::Progress;
    }
    if msg == b"+TERM" {
        return AckKind::Term;
    }
    AckKind::Unknown
}

/// The delay after `-NAK`: `{"delay":ns}` or a Go duration; None when absent or unreadable
/// (nats-server then treats it as a plain NAK).
fn nak_delay(rest: &[u8]) -> Option<i64> {
    let arg = trim(rest);
    if arg.is_empty() {
        return None;
    }
    if arg[0] == b'{' {
        let mut d = 0i64;
        crate::jetstream::gojson::decode(arg, |k, v| {
            if k == "delay" {
                d = crate::jetstream::gojson::int(v, d)?;
            }
            Ok(())
        })
        .ok()?;
        return Some(d);
    }
    parse_go_duration(std::str::from_utf8(arg).ok()?)
}

fn trim(b: &[u8]) -> &[u8] {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c');
    let start = b.iter().position(|c| !is_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_space(c))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `<decimal><unit>` (ns, us, µs, ms,
/// s, m, h); "0" alone is zero.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .bytes()
            .take_while(|b| !b.is_ascii_digit() && *b != b'.')
            .count();
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let v = total as i64;
    Some(if neg { -v } else { v })
}

use super::config::AckPolicy;
use super::engine::PollCtx;
use super::state::{Acked, Event};
use super::{Body, Consumer, Out};
use crate::jetstream::store::Store;

const NAK_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED";
const TERM_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED";
const ACK_METRIC: &str = "$JS.EVENT.METRIC.CONSUMER.ACK";

impl Consumer {
    /// `processAck`: applies one ack. Stream sequences it acked are added to `cx.acked`
    /// (retention); statuses, advisories and the empty ack-of-the-ack go to `cx.outs`.
    pub fn process_ack(
        &mut self,
        a: &AckSubject,
        payload: &[u8],
        reply: &str,
        store: &Store,
        cx: &mut PollCtx,
    ) {
        let kind = parse_payload(payload);
        let mut skip_reply = a.sseq == 0;
        match kind {
            AckKind::Ack => self.ack_msg(a, true, cx),
            AckKind::Next(req) => {
                self.ack_msg(a, true, cx);
                if !reply.is_empty() {
                    self.next_request(reply, req, store, cx);
                }
                skip_reply = true;
            }
            AckKind::Nak(delay) => self.nak(a, delay, cx),
            AckKind::Progress => {
                if self.state.pending.contains_key(&a.sseq) {
                    self.record(Event::Touch {
                        sseq: a.sseq,
                        ts: cx.now,
                    });
                }
            }
            AckKind::Term => {
                self.ack_msg(a, false, cx);
                let ev = self.event(TERM_ADVISORY, "terminated", a, cx.now);
                cx.outs.push(ev);
            }
            AckKind::Unknown => {}
        }
        self.suppress_deletion(cx.now);
        if !reply.is_empty() && !skip_reply {
            let mut o = Out::status(reply, Vec::new());
            o.after_sync = true;
            cx.outs.push(o);
        }
    }

    /// `processAckMsg`. Acks naming sequences the consumer cannot have delivered (0,
    /// unreadable numbers, past its cursor) are ignored.
    fn ack_msg(&mut self, a: &AckSubject, sample: bool, cx: &mut PollCtx) {
        let policy = self.config.ack_policy;
        if policy == AckPolicy::None || a.sseq == 0 || a.sseq == u64::MAX {
            return;
        }
        if a.sseq >= self.state.sseq || a.dseq == u64::MAX {
            return;
        }
        if sample && self.state.pending.contains_key(&a.sseq) {
            self.sample_ack(a, cx);
        }
        let applied = self.record(Event::Ack {
            sseq: a.sseq,
            dseq: a.dseq,
        });
        self.state.last_ack = cx.now;
        if applied.was_pending {
            self.ready = true;
            match applied.acked {
                Acked::One(s) => cx.ack_one(s),
                Acked::Range(from, to) => cx.ack_range(from, to),
                Acked::Nothing => {}
            }
        }
    }

    /// `processNak`: back on the redelivery queue now, or after `delay`.
    fn nak(&mut self, a: &AckSubject, delay: Option<i64>, cx: &mut PollCtx) {
        if a.dseq <= self.state.adflr || a.dseq > self.state.dseq {
            return;
        }
        let Some(p) = self.state.pending.get(&a.sseq).copied() else {
            return;
        };
        let ev = self.event(NAK_ADVISORY, "nak", a, cx.now);
        cx.outs.push(ev);
        if let Some(d) = delay {
            self.state.unqueue(a.sseq);
            let ts = cx
                .now
                .saturating_sub(self.config.ack_wait)
                .saturating_add(d);
            let _ = p;
            self.record(Event::Touch { sseq: a.sseq, ts });
            let soon = cx.now.saturating_add(10_000_000);
            self.ack_timer = Some(self.ack_timer.map_or(soon, |t| t.min(soon)));
            return;
        }
        self.state.queue_redelivery(a.sseq);
        self.ready = true;
    }

    /// `suppressDeletion`: ack activity keeps an inactive consumer alive.
    fn suppress_deletion(&mut self, now: i64) {
        if self.config.inactive_threshold <= 0 {
            return;
        }
        if self.config.is_push() {
            if self.delete_at.is_some() {
                self.delete_at = Some(now.saturating_add(self.config.inactive_threshold));
            }
        } else {
            self.waiting.last = now;
            self.update_delete_timer(now);
        }
    }

    /// `sampleAck`: the ack metric, for `sample_freq` percent of acks.
    fn sample_ack(&mut self, a: &AckSubject, cx: &mut PollCtx) {
        let freq = super::check::sample_percent(&self.config.sample_freq);
        if freq <= 0 {
            return;
        }
        if freq < 100 {
            let r = super::random_token(2).bytes().map(u64::from).sum::<u64>() % 100;
            if r as i64 > freq {
                return;
            }
        }
        let delay = self
            .state
            .pending
            .get(&a.sseq)
            .map_or(0, |p| cx.now.saturating_sub(p.ts));
        let mut s = String::with_capacity(220);
        let mut o = crate::protocol::json::Obj::new(&mut s);
        o.str("type", "io.nats.jetstream.metric.v1.consumer_ack")
            .str("id", &super::random_token(22))
            .str("timestamp", &super::info::ts(cx.now))
            .str("stream", &self.stream)
            .str("consumer", &self.name)
            .uint("consumer_seq", a.dseq)
            .uint("stream_seq", a.sseq)
            .int("ack_time", delay)
            .uint("deliveries", a.dc);
        o.end();
        cx.outs.push(self.plain(ACK_METRIC, s));
    }

    /// The NAK and TERM advisories.
    fn event(&self, prefix: &str, kind: &str, a: &AckSubject, now: i64) -> Out {
        let mut s = String::with_capacity(220);
        let mut o = crate::protocol::json::Obj::new(&mut s);
        o.str("type", &format!("io.nats.jetstream.advisory.v1.{kind}"))
            .str("id", &super::random_token(22))
            .str("timestamp", &super::info::ts(now))
            .str("stream", &self.stream)
            .str("consumer", &self.name)
            .uint("consumer_seq", a.dseq)
            .uint("stream_seq", a.sseq)
            .uint("deliveries", a.dc);
        o.end();
        self.plain(prefix, s)
    }

    fn plain(&self, prefix: &str, json: String) -> Out {
        Out {
            to: format!("{prefix}.{}.{}", self.stream, self.name).into(),
            reply: String::new(),
            seq: 0,
            after_sync: false,
            body: Body::Plain {
                hdr: Vec::new(),
                data: json.into_bytes(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_like_nats_server() {
        let a = parse_subject(b"$JS.ACK.S.C.2.10.11.1700000000000000000.3").unwrap();
        assert_eq!(
            (a.stream, a.consumer, a.dc, a.sseq, a.dseq),
            ("S", "C", 2, 10, 11)
        );
        assert!(parse_subject(b"$JS.ACK.S.C.1.2.3.4").is_none());
        assert!(parse_subject(b"$JS.ACK.S.C.1.2.3.4.5.6").is_none());
        assert!(parse_subject(b"$JS.ACK._.hash.S.C.1.2.3.4.5.tok").is_none());
        assert!(parse_subject(b"$JS.NAK.S.C.1.2.3.4.5").is_none());
        assert!(parse_subject(b"$JS.ACK.S.C.1.2.3.4.5.").is_none());
        assert!(parse_subject(b"$JS.ACKS.C.1.2.3.4.5.6").is_none());
        assert!(parse_subject(b"$JS.ACK").is_none());
        let empty = parse_subject(b"$JS.ACK..C.1.2.3.4.").unwrap();
        assert_eq!((empty.stream, empty.consumer, empty.sseq), ("", "C", 2));
        let bad = parse_subject(b"$JS.ACK.S.C.x.2.-3.4.5").unwrap();
        assert_eq!((bad.dc, bad.sseq, bad.dseq), (u64::MAX, 2, u64::MAX));
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(b""), AckKind::Ack);
        assert_eq!(parse_payload(b"+ACK"), AckKind::Ack);
        assert_eq!(parse_payload(b"+OK"), AckKind::Ack);
        assert_eq!(parse_payload(b"+ACK "), AckKind::Unknown);
        assert_eq!(parse_payload(b"-NAK"), AckKind::Nak(None));
        assert_eq!(
            parse_payload(b"-NAK 1.5s"),
            AckKind::Nak(Some(1_500_000_000))
        );
        assert_eq!(
            parse_payload(br#"-NAK {"delay":2000}"#),
            AckKind::Nak(Some(2000))
        );
        assert_eq!(parse_payload(b"-NAK soon"), AckKind::Nak(None));
        assert_eq!(parse_payload(b"+WPI"), AckKind::Progress);
        assert_eq!(parse_payload(b"+TERM"), AckKind::Term);
        assert_eq!(parse_payload(b"+NXT 5"), AckKind::Next(b" 5"));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("-10ms"), Some(-10_000_000));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
