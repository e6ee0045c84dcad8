//! `latency`: request/reply round trips at a fixed (open-loop) rate.
//!
//! One responder connection subscribes to SUBJECT and answers each request on
//! its reply subject. One requester connection subscribes to `_INBOX.<id>.*`
//! and sends `PUB SUBJECT _INBOX.<id>.<seq> SIZE` at RATE per second for
//! DURATION seconds from a sender thread; a receiver thread matches replies by
//! seq. Latency = reply received - request written.

use crate::proto;
use crate::report::{commafy, percentile, us};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub struct LatCfg {
    pub addr: SocketAddr,
    pub subject: String,
    pub rate: u64,
    pub secs: f64,
    pub size: usize,
    pub pid: Option<u32>,
}

pub fn run(cfg: LatCfg) -> Result<(), String> {
    let total = ((cfg.rate as f64) * cfg.secs).round() as u64;
    if total == 0 || cfg.rate == 0 {
        return Err("rate and duration must be > 0".into());
    }
    let payload = proto::payload(cfg.size);

    // Responder.
    let mut resp = proto::dial(&cfg.addr)?;
    let sub = format!("SUB {} 1\r\n", cfg.subject);
    let rp = proto::handshake(&mut resp, sub.as_bytes(), Duration::from_secs(10)).map_err(|e| format!("responder: {e}"))?;
    let payload2 = payload.clone();
    let responder = thread::spawn(move || -> Result<u64, String> {
        let mut p = rp;
        let mut buf = vec![0u8; 256 * 1024];
        let mut out = Vec::with_capacity(64 * 1024);
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut answered = 0u64;
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(answered), // closed by us at the end (or by the server)
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(answered),
            };
            let pings = p.pings;
            p.feed(&buf[..n], &mut |l, _| {
                if let Some((_, _, Some(r))) = proto::msg_fields(l) {
                    replies.push(r.to_vec());
                }
            })
            .map_err(|e| format!("responder: {e}"))?;
            out.clear();
            for r in replies.drain(..) {
                proto::push_pub(&mut out, &r, None, &payload2);
                answered += 1;
            }
            for _ in pings..p.pings {
                out.extend_from_slice(b"PONG\r\n");
            }
            if !out.is_empty() {
                resp.write_all(&out).map_err(|e| format!("responder: write: {e}"))?;
            }
        }
    });

    // Requester.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let inbox = format!("_INBOX.{:x}{:x}", std::process::id(), nonce & 0xffff_ffff_ffff);
    let mut req = proto::dial(&cfg.addr)?;
    let rq = proto::handshake(&mut req, format!("SUB {inbox}.* 1\r\n").as_bytes(), Duration::from_secs(10))
        .map_err(|e| format!("requester: {e}"))?;
    let mut writer = req.try_clone().map_err(|e| e.to_string())?;
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(u64::MAX)).collect());
    let base = Instant::now();
    let cpu0 = cfg.pid.and_then(proto::proc_cpu_ns);

    let sa = sent_at.clone();
    let subject = cfg.subject.clone();
    let rate = cfg.rate;
    let sender = thread::spawn(move || -> Result<Duration, String> {
        let interval = 1e9 / rate as f64;
        let mut frame = Vec::with_capacity(256 + payload.len());
        let mut reply = Vec::with_capacity(64);
        let start = Instant::now();
        let mut max_lag = Duration::ZERO;
        for i in 0..total {
            let target = start + Duration::from_nanos((i as f64 * interval) as u64);
            let now = Instant::now();
            if target > now {
                thread::sleep(target - now);
            } else {
                max_lag = max_lag.max(now - target);
            }
            reply.clear();
            reply.extend_from_slice(inbox.as_bytes());
            reply.push(b'.');
            proto::push_num(&mut reply, i);
            frame.clear();
            proto::push_pub(&mut frame, subject.as_bytes(), Some(&reply), &payload);
            sa[i as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            writer.write_all(&frame).map_err(|e| format!("requester: write: {e}"))?;
        }
        Ok(max_lag)
    });

    // Receiver (this thread).
    let mut p = rq;
    let mut lat: Vec<Duration> = Vec::with_capacity(total as usize);
    let mut seen = vec![false; total as usize];
    let mut buf = vec![0u8; 256 * 1024];
    let mut bad: Option<String> = None;
    req.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let expected_end = base + Duration::from_secs_f64(cfg.secs);
    let mut last_progress = Instant::now();
    while (lat.len() as u64) < total {
        match req.read(&mut buf) {
            Ok(0) => return Err(format!("requester: disconnected after {} of {} replies", lat.len(), total)),
            Ok(n) => {
                let now_ns = base.elapsed().as_nanos() as u64;
                let pings = p.pings;
                p.feed(&buf[..n], &mut |l, _| {
                    let seq = proto::msg_fields(l)
                        .and_then(|(s, _, _)| memchr::memrchr(b'.', s).and_then(|d| proto::parse_usize(&s[d + 1..])));
                    match seq {
                        Some(i) if i < seen.len() && !seen[i] => {
                            seen[i] = true;
                            let t = sent_at[i].load(Ordering::Acquire);
                            lat.push(Duration::from_nanos(now_ns.saturating_sub(t)));
                        }
                        _ => bad = Some(proto::show(l)),
                    }
                })
                .map_err(|e| format!("requester: {e}"))?;
                if let Some(b) = bad.take() {
                    return Err(format!("requester: unexpected or duplicate reply {b:?}"));
                }
                for _ in pings..p.pings {
                    let _ = req.write_all(b"PONG\r\n");
                }
                last_progress = Instant::now();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("requester: read: {e}")),
        }
        let now = Instant::now();
        if now > expected_end && now.duration_since(last_progress) > Duration::from_secs(5) {
            return Err(format!(
                "LOST REPLIES: received {} of {} replies (none for 5s)",
                commafy(lat.len() as u64),
                commafy(total)
            ));
        }
    }
    let took = base.elapsed();
    let cpu1 = cfg.pid.and_then(proto::proc_cpu_ns);
    let max_lag = sender.join().map_err(|_| "sender panicked".to_string())??;
    let _ = req.shutdown(std::net::Shutdown::Both);
    drop(req);
    lat.sort_unstable();
    let mean = lat.iter().map(|d| d.as_nanos()).sum::<u128>() / lat.len() as u128;
    println!(
        "Latency: {} requests at {} req/s over {:.2}s, {} B payload",
        commafy(total),
        commafy(cfg.rate),
        took.as_secs_f64(),
        cfg.size
    );
    println!(
        "Latency (us): p50 {} | p90 {} | p99 {} | p99.9 {} | max {} | mean {}",
        us(percentile(&lat, 50.0)),
        us(percentile(&lat, 90.0)),
        us(percentile(&lat, 99.0)),
        us(percentile(&lat, 99.9)),
        us(*lat.last().unwrap()),
        us(Duration::from_nanos(mean as u64))
    );
    if max_lag > Duration::from_millis(1) {
        println!("Note: the sender fell behind its schedule by up to {} us", us(max_lag));
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!("Server CPU: {} ns during load (pid {})", b.saturating_sub(a), cfg.pid.unwrap());
    }
    // The responder exits when its socket closes; don't wait on it.
    drop(responder);
    Ok(())
}
