//! What only push consumers have (nats-server 2.9.10): interest in the deliver subject
//! (`active`, reported by the integration), flow control (a window of bytes in flight that
//! starts at 2 MiB and doubles up to 32 MiB each time the subscriber answers a
//! `100 FlowControl Request` on its `$JS.FC.<stream>.<consumer>.<4 chars>` reply),
//! `rate_limit_bps` (a token bucket whose burst is the largest message the stream takes),
//! and `headers_only` (`Nats-Msg-Size` instead of the payload).

/// `JsFlowControlMaxPending`.
const FC_MAX_PENDING: i64 = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct FlowControl {
    /// Window limit and current window (`pblimit`, `maxpb`); 0: no flow control.
    pub limit: i64,
    pub window: i64,
    /// Bytes sent and not yet covered by an answered request (`pbytes`).
    pub bytes: i64,
    /// Bytes the outstanding request covers (`fcsz`) and its reply subject (`fcid`).
    pub covered: i64,
    pub id: String,
}

impl FlowControl {
    pub fn new(enabled: bool) -> FlowControl {
        let mut f = FlowControl::default();
        if enabled {
            f.limit = FC_MAX_PENDING;
            f.window = (FC_MAX_PENDING / 16).max(1);
        }
        f
    }

    /// Delivery must wait for the subscriber (`pbytes > maxpb`).
    pub fn stalled(&self) -> bool {
        self.window > 0 && self.bytes > self.window
    }

    /// Counts a delivery of `size` bytes; true when a request must go out now
    /// (`needFlowControl`).
    pub fn sent(&mut self, size: i64) -> bool {
        if self.window == 0 {
            return false;
        }
        self.bytes += size;
        if self.id.is_empty() && self.bytes > self.window / 2 {
            return true;
        }
        if !self.id.is_empty() && self.bytes - self.covered >= self.window {
            self.covered += size;
        }
        false
    }

    /// A request goes out with reply `id`: it covers everything sent so far.
    pub fn requested(&mut self, id: String) {
        self.covered = self.bytes;
        self.id = id;
    }

    /// The subscriber answered on `subject` (`processFlowControl`). True when it was the
    /// outstanding request (delivery may resume).
    pub fn answered(&mut self, subject: &str) -> bool {
        if self.id.is_empty() || subject != self.id {
            return false;
        }
        if self.window < self.limit {
            self.window = (self.window * 2).min(self.limit);
        }
        self.bytes = (self.bytes - self.covered).max(0);
        self.id.clear();
        self.covered = 0;
        true
    }

    /// A new deliver subject or a restart: nothing is in flight.
    pub fn reset(&mut self) {
        self.bytes = 0;
        self.covered = 0;
        self.id.clear();
    }
}

/// `rate.Limiter` with `rate = bps / 8` bytes per second and `burst` bytes.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    at: i64,
}

impl RateLimit {
    pub fn new(bps: u64, burst: i64, now: i64) -> Option<RateLimit> {
        if bps == 0 {
            return None;
        }
        let burst = burst.max(1) as f64;
        Some(RateLimit {
            per_sec: (bps / 8) as f64,
            burst,
            tokens: burst,
            at: now,
        })
    }

    fn refill(&mut self, now: i64) {
        if now > self.at {
            let add = (now - self.at) as f64 / 1e9 * self.per_sec;
            self.tokens = (self.tokens + add).min(self.burst);
            self.at = now;
        }
    }

    /// Takes `size` bytes if they are there; otherwise says when they will be (Unix ns).
    /// A message larger than the burst waits for a full bucket and then goes.
    pub fn take(&mut self, size: usize, now: i64) -> Result<(), i64> {
        self.refill(now);
        let want = (size as f64).min(self.burst);
        if self.tokens >= want {
            self.tokens -= want;
            return Ok(());
        }
        if self.per_sec <= 0.0 {
            return Err(i64::MAX);
        }
        let wait = ((want - self.tokens) / self.per_sec * 1e9).ceil() as i64;
        Err(now.saturating_add(wait.max(1)))
    }
}

/// `convertToHeadersOnly`: the stored headers (or a fresh block) plus `Nats-Msg-Size`.
pub fn headers_only(hdr: &[u8], data_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(hdr.len() + 40);
    if hdr.is_empty() {
        h.extend_from_slice(b"NATS/1.0\r\n");
    } else {
        h.extend_from_slice(&hdr[..hdr.len().saturating_sub(2)]);
    }
    h.extend_from_slice(b"Nats-Msg-Size: ");
    h.extend_from_slice(data_len.to_string().as_bytes());
    h.extend_from_slice(b"\r\n\r\n");
    h
}

/// `100 FlowControl Request`.
pub const FC_REQUEST: &[u8] = b"NATS/1.0 100 FlowControl Request\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_control_window() {
        let mut f = FlowControl::new(true);
        assert_eq!(f.window, 2 << 20);
        assert!(!f.sent(1 << 20));
        assert!(f.sent(1));
        f.requested("$JS.FC.S.C.abcd".into());
        assert!(!f.answered("$JS.FC.S.C.zzzz"));
        f.sent(3 << 20);
        assert!(f.stalled());
        assert!(f.answered("$JS.FC.S.C.abcd"));
        assert_eq!(f.window, 4 << 20);
        // The request came back while over the window: it covered the rest too.
        assert_eq!(f.bytes, 0);
        assert!(!f.stalled());
    }

    #[test]
    fn rate_limit_paces() {
        let mut r = RateLimit::new(8000, 1000, 0).unwrap();
        assert!(r.take(1000, 0).is_ok());
        assert_eq!(r.take(500, 0), Err(500_000_000));
        assert!(r.take(500, 500_000_000).is_ok());
        assert!(RateLimit::new(0, 1, 0).is_none());
        assert_eq!(
            headers_only(b"", 5),
            b"NATS/1.0\r\nNats-Msg-Size: 5\r\n\r\n"
        );
        assert_eq!(
            headers_only(b"NATS/1.0\r\nA: b\r\n\r\n", 0),
            b"NATS/1.0\r\nA: b\r\nNats-Msg-Size: 0\r\n\r\n"
        );
    }
}
