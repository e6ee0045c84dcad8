//! `/metrics`: the loop's counters in the Prometheus text format, and the process figures
//! (CPU ticks, resident memory) that it and /varz read from `/proc/self`.

use super::jsmetrics::Cursor;
use super::stream::{Source, Stream};
use super::{counts, Monitor, Reply};
use crate::core::broker::Broker;
use crate::jetstream::source::JetStream;
use crate::monitor::http::Response;
use std::fmt::Write as _;
use std::time::SystemTime;

pub(super) fn clock_ticks_per_sec() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz
    } else {
        100
    }
}

/// utime + stime of this process, in clock ticks (/proc/self/stat fields 14 and 15).
pub(super) fn process_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Resident memory of this process in bytes (/proc/self/statm).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

/// The metrics: name, type and help text (values in the same order in `metrics`).
const METRICS: [(&str, &str, &str); 16] = [
    (
        "gnatsd_varz_in_msgs",
        "counter",
        "Messages received from clients and routes",
    ),
    ("gnatsd_varz_out_msgs", "counter", "Messages delivered"),
    ("gnatsd_varz_in_bytes", "counter", "Payload bytes received"),
    (
        "gnatsd_varz_out_bytes",
        "counter",
        "Payload bytes delivered",
    ),
    (
        "gnatsd_varz_slow_consumers",
        "counter",
        "Connections closed as slow consumers",
    ),
    (
        "gnatsd_varz_total_connections",
        "counter",
        "Client connections accepted",
    ),
    (
        "gnatsd_varz_connections",
        "gauge",
        "Open client connections",
    ),
    ("gnatsd_varz_routes", "gauge", "Open route connections"),
    ("gnatsd_varz_subscriptions", "gauge", "Subscriptions"),
    ("gnatsd_varz_mem", "gauge", "Resident memory in bytes"),
    ("gnatsd_varz_cpu", "gauge", "CPU use in percent of one core"),
    ("gnatsd_varz_uptime_seconds", "gauge", "Seconds since start"),
    (
        "gnatsd_varz_max_payload",
        "gauge",
        "Largest accepted payload",
    ),
    ("gnatsd_varz_max_connections", "gauge", "Connection limit"),
    (
        "gnatsd_connz_pending_bytes",
        "gauge",
        "Unsent bytes over all client connections",
    ),
    (
        "gnatsd_healthz_status",
        "gauge",
        "1 when the server is healthy",
    ),
];

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition of the same counters, named as prometheus-nats-exporter
/// names them (`gnatsd_varz_*`, ...), so dashboards built for that exporter work unchanged;
/// with JetStream, its series follow (`jsmetrics.rs`), a sample per part.
pub(super) fn metrics(m: &mut Monitor, b: &Broker, js: Option<&JetStream>) -> Reply {
    let core = core_metrics(m, b);
    match js {
        None => Reply::Done(Response::new(200, CONTENT_TYPE, core)),
        Some(js) => Reply::Stream(Stream::text(
            Source::Metrics(Box::new(Cursor::new(b, js, core))),
            CONTENT_TYPE,
        )),
    }
}

/// The core series.
fn core_metrics(m: &mut Monitor, b: &Broker) -> String {
    let (clients, routes) = counts(b);
    let label = format!("{{server_id=\"{}\"}}", b.ident.id);
    let up = SystemTime::now()
        .duration_since(b.ident.started)
        .unwrap_or_default()
        .as_secs_f64();
    let st = &b.stats;
    let pending: usize = b.conns.iter().map(|(_, c)| c.pending()).sum();
    let values: [f64; 16] = [
        st.in_msgs as f64,
        st.out_msgs as f64,
        st.in_bytes as f64,
        st.out_bytes as f64,
        b.conns.slow_consumers as f64,
        st.total_connections as f64,
        clients as f64,
        routes as f64,
        b.sub_count() as f64,
        resident_bytes() as f64,
        m.cpu(),
        up,
        b.cfg.max_payload as f64,
        b.cfg.max_connections as f64,
        pending as f64,
        1.0,
    ];
    let mut out = String::new();
    for ((name, kind, help), value) in METRICS.iter().zip(values) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{label} {value}"
        );
    }
    out
}
