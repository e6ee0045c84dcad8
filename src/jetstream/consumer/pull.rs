//! Pull requests (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, and `+NXT` acks) as
//! nats-server 2.9.10 reads them (`nextReqFromMsg`): an empty body is a batch of one, an
//! integer is a batch, a JSON object carries `batch`, `expires`, `no_wait`, `max_bytes` and
//! `idle_heartbeat`. Waiting requests queue FIFO up to `max_waiting`; a request that still
//! wants more after a delivery goes to the back, so concurrent requests share messages
//! round-robin (`waitQueue.pop`). The status messages are nats-server's, byte for byte.

use crate::jetstream::gojson;
use std::collections::VecDeque;
use std::rc::Rc;

/// A parsed pull request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NextRequest {
    pub batch: i64,
    /// Expiry as an offset from now in ns (0: none).
    pub expires: i64,
    pub max_bytes: i64,
    pub no_wait: bool,
    pub heartbeat: i64,
}

/// `nextReqFromMsg`. Err: the text after `Bad Request - `.
pub fn parse_request(msg: &[u8]) -> Result<NextRequest, String> {
    let req = trim(msg);
    let one = NextRequest {
        batch: 1,
        ..NextRequest::default()
    };
    if req.is_empty() {
        return Ok(one);
    }
    if req[0] == b'{' {
        let mut r = NextRequest::default();
        gojson::decode(req, |k, v| {
            match k {
                "expires" => r.expires = gojson::int(v, r.expires)?,
                "batch" => r.batch = gojson::int(v, r.batch)?,
                "max_bytes" => r.max_bytes = gojson::int(v, r.max_bytes)?,
                "no_wait" => r.no_wait = gojson::boolean(v, r.no_wait)?,
                "idle_heartbeat" => r.heartbeat = gojson::int(v, r.heartbeat)?,
                _ => {}
            }
            Ok(())
        })
        .map_err(|_| "invalid request".to_string())?;
        if r.heartbeat > 0 && r.heartbeat.saturating_mul(2) > r.expires {
            return Err("heartbeat value too large".into());
        }
        return Ok(r);
    }
    match std::str::from_utf8(req)
        .ok()
        .and_then(super::check::parse_atoi)
    {
        Some(n) => Ok(NextRequest {
            batch: n,
            ..NextRequest::default()
        }),
        None => Ok(one),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let sp = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c');
    let start = b.iter().position(|c| !sp(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !sp(c)).map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// A request waiting for messages (`waitingRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Shared with each delivery to it.
    pub reply: Rc<str>,
    /// Messages still wanted (may go to zero or below: then it is done).
    pub n: i64,
    /// Messages delivered to it so far.
    pub d: i64,
    /// Bytes still allowed (0: no limit).
    pub b: i64,
    /// Unix ns; 0: never.
    pub expires: i64,
    pub received: i64,
    pub hb: i64,
    /// Next heartbeat (Unix ns); 0: none.
    pub hbt: i64,
    pub no_wait: bool,
    /// The subscription generation (`PollCtx::interest_gen`) at which its inbox last had
    /// interest: while nothing was subscribed or unsubscribed since, it still has.
    pub seen: u64,
}

/// The queue of waiting requests (`waitQueue`), at most `max` long.
#[derive(Debug, Default)]
pub struct WaitQueue {
    pub reqs: VecDeque<Waiting>,
    pub max: usize,
    /// When the last request came in (or the last delivery to a pull request, or a no-wait
    /// answer): the pull consumer's activity, for `inactive_threshold`.
    pub last: i64,
}

impl WaitQueue {
    pub fn new(max: i64) -> WaitQueue {
        WaitQueue {
            reqs: VecDeque::new(),
            max: usize::try_from(max.max(0)).unwrap_or(usize::MAX),
            last: 0,
        }
    }
    pub fn is_full(&self) -> bool {
        self.reqs.len() >= self.max
    }
    pub fn len(&self) -> usize {
        self.reqs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Queues a request; false when full.
    pub fn add(&mut self, w: Waiting) -> bool {
        if self.is_full() {
            return false;
        }
        self.last = w.received;
        self.reqs.push_back(w);
        true
    }

    /// `pop`: one delivery to the head request; a request that still wants more moves to
    /// the back (when others wait), a finished one leaves. Returns its reply subject and
    /// whether it is done.
    /// A request with a heartbeat restarts its heartbeat clock at `now`.
    pub fn pop(&mut self, now: i64) -> Option<(Rc<str>, bool)> {
        let mut w = self.reqs.pop_front()?;
        w.d += 1;
        w.n -= 1;
        let reply = w.reply.clone();
        let done = w.n <= 0;
        if !done && w.hb > 0 {
            w.hbt = now.saturating_add(w.hb);
        }
        if !done {
            if self.reqs.is_empty() {
                self.reqs.push_front(w);
            } else {
                self.reqs.push_back(w);
            }
        }
        Some((reply, done))
    }
}

/// The header block of a status message: `NATS/1.0 408 Request Timeout` plus headers.
pub fn status(code: u16, text: &str) -> Vec<u8> {
    format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()
}

/// A status carrying `Nats-Pending-Messages` and `Nats-Pending-Bytes`.
pub fn status_pending(code: u16, text: &str, msgs: i64, bytes: i64) -> Vec<u8> {
    format!(
        "NATS/1.0 {code} {text}\r\nNats-Pending-Messages: {msgs}\r\nNats-Pending-Bytes: {bytes}\r\n\r\n"
    )
    .into_bytes()
}

/// `100 Idle Heartbeat` with the last delivered sequences, and the flow control subject
/// when one is outstanding.
pub fn heartbeat(last_dseq: u64, last_sseq: u64, stalled: &str) -> Vec<u8> {
    let mut h = format!(
        "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {last_dseq}\r\nNats-Last-Stream: {last_sseq}\r\n"
    );
    if !stalled.is_empty() {
        h.push_str("Nats-Consumer-Stalled: ");
        h.push_str(stalled);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_like_nats_server() {
        assert_eq!(parse_request(b"").unwrap().batch, 1);
        assert_eq!(parse_request(b" 5 ").unwrap().batch, 5);
        assert_eq!(parse_request(b"x").unwrap().batch, 1);
        assert_eq!(parse_request(b"-3").unwrap().batch, -3);
        let r =
            parse_request(br#"{"batch":10,"expires":5000,"no_wait":true,"max_bytes":9}"#).unwrap();
        assert_eq!(
            (r.batch, r.expires, r.no_wait, r.max_bytes),
            (10, 5000, true, 9)
        );
        assert_eq!(parse_request(br#"{"expires":5}"#).unwrap().batch, 0);
        assert_eq!(
            parse_request(br#"{"batch":1,"expires":100,"idle_heartbeat":60}"#),
            Err("heartbeat value too large".into())
        );
        assert!(parse_request(br#"{"batch":"x"}"#).is_err());
        assert!(parse_request(br#"{"batch":99999999999999999999}"#).is_err());
    }

    #[test]
    fn queue_round_robin() {
        let w = |r: &str, n| Waiting {
            reply: r.into(),
            n,
            d: 0,
            b: 0,
            expires: 0,
            received: 0,
            hb: 0,
            hbt: 0,
            no_wait: false,
            seen: 0,
        };
        let mut q = WaitQueue::new(2);
        assert!(q.add(w("a", 2)) && q.add(w("b", 1)) && !q.add(w("c", 1)));
        assert_eq!(q.pop(0).map(|x| x.0), Some("a".into()));
        assert_eq!(q.pop(0), Some(("b".into(), true)));
        assert_eq!(q.pop(0), Some(("a".into(), true)));
        assert!(q.is_empty());
        assert_eq!(
            heartbeat(3, 4, ""),
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\nNats-Last-Stream: 4\r\n\r\n"
        );
    }
}
