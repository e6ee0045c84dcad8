//! nats-bench style reporting: per-client samples, group rates, statistics,
//! CSV rows, latency percentiles.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Sample {
    pub msgs: u64,
    pub bytes: u64,
    pub start: Instant,
    pub end: Instant,
}

impl Sample {
    pub fn secs(&self) -> f64 {
        self.end.saturating_duration_since(self.start).as_secs_f64().max(1e-9)
    }
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs()
    }
    pub fn throughput(&self) -> f64 {
        self.bytes as f64 / self.secs()
    }
}

/// Group of samples (all publishers, or all subscribers): totals over
/// [earliest start, latest end].
pub fn group(samples: &[Sample]) -> Option<Sample> {
    let start = samples.iter().map(|s| s.start).min()?;
    let end = samples.iter().map(|s| s.end).max()?;
    Some(Sample {
        msgs: samples.iter().map(|s| s.msgs).sum(),
        bytes: samples.iter().map(|s| s.bytes).sum(),
        start,
        end,
    })
}

/// 1234567 -> "1,234,567"
pub fn commafy(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Like nats-bench's HumanBytes(x, false): base 1024, "12.34 MB".
pub fn human_bytes(b: f64) -> String {
    const PRE: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if b < 1024.0 {
        return format!("{:.2} B", b);
    }
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < PRE.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{:.2} {}B", v, PRE[i - 1])
}

pub fn sample_line(s: &Sample) -> String {
    format!("{} msgs/sec ~ {}/sec", commafy(s.rate().round() as u64), human_bytes(s.throughput()))
}

/// "min X | avg Y | max Z | stddev W msgs" over the per-client rates.
pub fn stats_line(samples: &[Sample]) -> String {
    let rates: Vec<f64> = samples.iter().map(|s| s.rate()).collect();
    let n = rates.len().max(1) as f64;
    let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = rates.iter().cloned().fold(0.0, f64::max);
    let avg = rates.iter().sum::<f64>() / n;
    let var = rates.iter().map(|r| (r - avg) * (r - avg)).sum::<f64>() / n;
    format!(
        "min {} | avg {} | max {} | stddev {} msgs",
        commafy(min.round() as u64),
        commafy(avg.round() as u64),
        commafy(max.round() as u64),
        commafy(var.sqrt().round() as u64)
    )
}

/// The nats-bench report text for a pub/sub run.
pub fn report(pubs: &[Sample], subs: &[Sample]) -> String {
    let mut out = String::new();
    let mut indent = "";
    if !pubs.is_empty() && !subs.is_empty() {
        let all: Vec<Sample> = pubs.iter().chain(subs.iter()).cloned().collect();
        let g = group(&all).unwrap();
        let _ = writeln!(out, "Pub/Sub stats: {}", sample_line(&g));
        indent = " ";
    }
    for (name, set) in [("Pub", pubs), ("Sub", subs)] {
        if set.is_empty() {
            continue;
        }
        let g = group(set).unwrap();
        let _ = writeln!(out, "{indent}{name} stats: {}", sample_line(&g));
        if set.len() > 1 {
            for (i, s) in set.iter().enumerate() {
                let _ = writeln!(out, "{indent} [{}] {} ({} msgs)", i + 1, sample_line(s), s.msgs);
            }
            let _ = writeln!(out, "{indent} {}", stats_line(set));
        }
    }
    out
}

/// CSV in nats-bench's layout.
pub fn csv(run_id: &str, pubs: &[Sample], subs: &[Sample]) -> String {
    let mut out = String::from("#RunID, ClientID, MsgCount, MsgBytes, MsgsPerSec, BytesPerSec, DurationSecs\n");
    for (p, set) in [("P", pubs), ("S", subs)] {
        for (i, s) in set.iter().enumerate() {
            let _ = writeln!(
                out,
                "{run_id},{p}{i},{},{},{:.0},{:.2},{:.6}",
                s.msgs,
                s.bytes,
                s.rate(),
                s.throughput(),
                s.secs()
            );
        }
    }
    out
}

/// Nearest-rank percentile of a sorted slice (q in 0..=100).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_nanos() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(msgs: u64, bytes: u64, base: Instant, from_ms: u64, to_ms: u64) -> Sample {
        Sample {
            msgs,
            bytes,
            start: base + Duration::from_millis(from_ms),
            end: base + Duration::from_millis(to_ms),
        }
    }

    #[test]
    fn commas() {
        assert_eq!(commafy(0), "0");
        assert_eq!(commafy(999), "999");
        assert_eq!(commafy(1000), "1,000");
        assert_eq!(commafy(1234567), "1,234,567");
        assert_eq!(commafy(100000), "100,000");
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(10.0), "10.00 B");
        assert_eq!(human_bytes(1536.0), "1.50 KB");
        assert_eq!(human_bytes(150.0 * 1024.0 * 1024.0), "150.00 MB");
        assert_eq!(human_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.00 GB");
    }

    #[test]
    fn report_layout_and_aggregate() {
        let t = Instant::now();
        let pubs = vec![s(1000, 128_000, t, 0, 1000)];
        let subs = vec![s(1000, 128_000, t, 10, 1000), s(1000, 128_000, t, 0, 2000)];
        let r = report(&pubs, &subs);
        let lines: Vec<&str> = r.lines().collect();
        // 3000 msgs over [0, 2000ms]
        assert_eq!(lines[0], "Pub/Sub stats: 1,500 msgs/sec ~ 187.50 KB/sec");
        assert_eq!(lines[1], " Pub stats: 1,000 msgs/sec ~ 125.00 KB/sec");
        assert_eq!(lines[2], " Sub stats: 1,000 msgs/sec ~ 125.00 KB/sec");
        assert_eq!(lines[3], "  [1] 1,010 msgs/sec ~ 126.26 KB/sec (1000 msgs)");
        assert_eq!(lines[4], "  [2] 500 msgs/sec ~ 62.50 KB/sec (1000 msgs)");
        assert_eq!(lines[5], "  min 500 | avg 755 | max 1,010 | stddev 255 msgs");
        assert_eq!(lines.len(), 6);
        let only_pub = report(&pubs, &[]);
        assert!(only_pub.starts_with("Pub stats: 1,000 msgs/sec"), "{only_pub}");
    }

    #[test]
    fn csv_rows() {
        let t = Instant::now();
        let c = csv("r1", &[s(10, 20, t, 0, 1000)], &[s(10, 20, t, 0, 500)]);
        let l: Vec<&str> = c.lines().collect();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1], "r1,P0,10,20,10,20.00,1.000000");
        assert_eq!(l[2], "r1,S0,10,20,20,40.00,0.500000");
    }

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&v, 0.0), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        assert_eq!(us(Duration::from_nanos(12345)), "12.3");
    }
}
