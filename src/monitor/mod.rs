//! The monitoring endpoints: JSON views of the loop's own counters, with nats-server 2.9's
//! paths, parameters and field names, so existing tools and dashboards read them unchanged.
//!
//! `/` (index), `/varz`, `/connz` (`connz.rs`), `/subsz` (`/subscriptionsz`, `subsz.rs`),
//! `/routez`, `/healthz`, `/accountz`, `/jsz` (`jsz.rs`), and `/metrics` (Prometheus text,
//! `metrics.rs`, `jsmetrics.rs`; nats-server has none, see README). `respond` answers a
//! request between two loop passes; the large ones (/connz, /subsz and /jsz lists, the
//! JetStream series of /metrics) come back as a `Stream` that the loop renders a slice per
//! pass (`stream.rs`, `source.rs`), so monitoring never holds up messaging. JetStream's state
//! is read from its source, which the loop lends to this one (`server/source.rs`).

mod connz;
pub mod http;
mod jsmetrics;
mod jsz;
#[cfg(test)]
mod jsz_tests;
mod metrics;
pub mod pretty;
mod routez;
pub mod source;
pub mod stream;
mod subsz;

pub use metrics::resident_bytes;

use crate::core::broker::Broker;
use crate::jetstream::source::JetStream;
use crate::monitor::http::{Request, Response};
use crate::protocol::json::Obj;
use crate::util::timefmt::{rfc3339, uptime};
use metrics::{clock_ticks_per_sec, process_cpu_ticks};
use pretty::pretty;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::IntErrorKind;
use std::time::{Instant, SystemTime};
use stream::Stream;
use subsz::write_sublist_stats;

/// Default page sizes (nats-server: DefaultConnListSize, DefaultSubListSize).
const DEFAULT_LIMIT: usize = 1024;

/// State the endpoints keep between requests.
pub struct Monitor {
    pub req_stats: BTreeMap<&'static str, u64>,
    pub config_load_time: SystemTime,
    cpu_sample: Option<(Instant, u64)>,
    cpu_percent: f64,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor {
            req_stats: BTreeMap::new(),
            config_load_time: SystemTime::now(),
            cpu_sample: None,
            cpu_percent: 0.0,
        }
    }

    /// CPU use of this process since the previous call, in percent of one core (as `ps`).
    fn cpu(&mut self) -> f64 {
        let now = Instant::now();
        let ticks = process_cpu_ticks();
        if let Some((at, before)) = self.cpu_sample {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs >= 0.1 {
                let hz = clock_ticks_per_sec() as f64;
                self.cpu_percent = (ticks.saturating_sub(before) as f64 / hz) / secs * 100.0;
                self.cpu_sample = Some((now, ticks));
            }
        } else {
            self.cpu_sample = Some((now, ticks));
        }
        (self.cpu_percent * 100.0).round() / 100.0
    }
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new()
    }
}

fn json_response(compact: String) -> Response {
    Response::new(200, "application/json", pretty(&compact))
}

/// A 400 with nats-server's message (its error bodies have no newline).
fn bad(msg: String) -> Response {
    Response::new(400, "text/plain; charset=utf-8", msg)
}

/// Go's strconv.ParseBool.
fn param_bool(req: &Request, key: &str) -> Result<bool, Response> {
    match req.param(key).unwrap_or("") {
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        v => Err(bad(format!(
            "Error decoding boolean for '{key}': strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

fn param_int(req: &Request, key: &str) -> Result<i64, Response> {
    match req.param(key).unwrap_or("") {
        "" => Ok(0),
        v => v.parse().map_err(|e: std::num::ParseIntError| {
            // Go's Atoi tells a number too big for an int from one that is no number.
            let why = match e.kind() {
                IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
                _ => "invalid syntax",
            };
            bad(format!(
                "Error decoding int for '{key}': strconv.Atoi: parsing {v:?}: {why}"
            ))
        }),
    }
}

/// A request's answer: complete, or a body still to be rendered.
pub enum Reply {
    Done(Response),
    Stream(Stream),
}

/// Answers one monitoring request; `js` is the JetStream source when it runs.
pub fn respond(m: &mut Monitor, b: &Broker, js: Option<&mut JetStream>, req: &Request) -> Reply {
    if req.method != "GET" && req.method != "HEAD" {
        return Reply::Done(Response::text(405, "method not allowed"));
    }
    let path = req.path.trim_end_matches('/');
    let key: &'static str = match path {
        "" => "/",
        "/varz" => "/varz",
        "/connz" => "/connz",
        "/subsz" | "/subscriptionsz" => "/subsz",
        "/routez" => "/routez",
        "/healthz" => "/healthz",
        "/accountz" => "/accountz",
        "/jsz" => "/jsz",
        "/metrics" => "/metrics",
        _ => return Reply::Done(Response::text(404, "404 page not found")),
    };
    // Counted before answering, so /varz includes itself, as in nats-server.
    *m.req_stats.entry(key).or_default() += 1;
    let done = |r: Result<Response, Response>| Reply::Done(r.unwrap_or_else(|e| e));
    let mut reply = match key {
        "/" => Reply::Done(index()),
        "/varz" => Reply::Done(json_response(varz(m, b, js.as_deref()))),
        "/connz" => connz::connz(b, req).map_or_else(Reply::Done, Reply::Stream),
        "/subsz" => subsz::subsz(b, req).unwrap_or_else(Reply::Done),
        "/routez" => done(param_bool(req, "subs").map(|subs| json_response(routez(b, subs)))),
        "/healthz" => done(healthz(req)),
        "/accountz" => done(accountz(b, js.as_deref(), req)),
        "/jsz" => jsz::jsz(b, js.as_deref(), req),
        _ => metrics::metrics(m, b, js.as_deref()),
    };
    // JSONP, as nats-server: `?callback=f` wraps the JSON in `f(...)`.
    if let Some(cb) = req.param("callback").filter(|c| !c.is_empty()) {
        match &mut reply {
            Reply::Done(r) if r.status == 200 && r.content_type == "application/json" => {
                r.body = format!("{cb}({})", r.body);
                r.content_type = "application/javascript";
            }
            Reply::Done(_) => {}
            Reply::Stream(s) => s.jsonp(cb),
        }
    }
    reply
}

fn index() -> Response {
    let mut s = String::from("<html lang=\"en\"><head><title>tern</title></head><body>\n");
    let _ = writeln!(s, "<h1>tern v{}</h1>", crate::config::VERSION);
    for (path, what) in [
        ("varz", "General"),
        ("jsz", "JetStream"),
        ("connz", "Connections"),
        ("routez", "Routes"),
        ("subsz", "Subscriptions"),
        ("accountz", "Accounts"),
        ("healthz", "Health"),
        ("metrics", "Prometheus metrics"),
    ] {
        let _ = writeln!(s, "<a href=./{path}>{what}</a><br/>");
    }
    s.push_str("</body></html>\n");
    Response::new(200, "text/html; charset=utf-8", s)
}

/// Open client connections, open route connections.
fn counts(b: &Broker) -> (usize, usize) {
    let routes = b.conns.routes.len();
    (b.conns.len() - routes, routes)
}

fn varz(m: &mut Monitor, b: &Broker, js: Option<&JetStream>) -> String {
    let cfg = &b.cfg;
    let now = SystemTime::now();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (clients, routes) = counts(b);
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    crate::protocol::info::write_identity(&mut o, &b.ident);
    if cfg.auth.advertised() {
        o.bool("auth_required", true);
    }
    if b.ident.cluster.is_some() && !cfg.cluster.as_ref().is_some_and(|c| c.no_advertise) {
        o.strs("connect_urls", &b.connect_urls());
    }
    o.uint("max_connections", cfg.max_connections as u64);
    if cfg.max_subs > 0 {
        o.uint("max_subscriptions", cfg.max_subs as u64);
    }
    o.uint("ping_interval", cfg.ping_interval.as_nanos() as u64)
        .uint("ping_max", cfg.max_pings_out as u64)
        .str("http_host", cfg.http_host())
        .uint("http_port", cfg.http_port.unwrap_or(0) as u64)
        .str("http_base_path", "")
        .uint("https_port", 0)
        .float("auth_timeout", cfg.auth_timeout().as_secs_f64())
        .uint("max_control_line", cfg.max_control_line as u64)
        .uint("max_payload", cfg.max_payload as u64)
        .uint("max_pending", cfg.max_pending as u64)
        .raw("cluster", &routez::cluster_varz(b))
        .raw("gateway", "{}")
        .raw("leaf", "{}")
        .raw("mqtt", "{}")
        .raw("websocket", "{}")
        .raw("jetstream", &jsz::varz_jetstream(js))
        .float("tls_timeout", 2.0)
        .uint("write_deadline", cfg.write_deadline.as_nanos() as u64)
        .str("start", &rfc3339(b.ident.started))
        .str("now", &rfc3339(now))
        .str(
            "uptime",
            &uptime(now.duration_since(b.ident.started).unwrap_or_default()),
        )
        .uint("mem", resident_bytes())
        .uint("cores", cores as u64)
        .uint("gomaxprocs", 1)
        .float("cpu", m.cpu())
        .uint("connections", clients as u64)
        .uint("total_connections", b.stats.total_connections)
        .uint("routes", routes as u64)
        .uint("remotes", routes as u64)
        .uint("leafnodes", 0)
        .uint("in_msgs", b.stats.in_msgs)
        .uint("out_msgs", b.stats.out_msgs)
        .uint("in_bytes", b.stats.in_bytes)
        .uint("out_bytes", b.stats.out_bytes)
        .uint("slow_consumers", b.conns.slow_consumers)
        .uint("subscriptions", b.sub_count() as u64);
    let mut stats = String::new();
    let mut so = Obj::new(&mut stats);
    for (path, n) in &m.req_stats {
        so.uint(path, *n);
    }
    so.end();
    o.raw("http_req_stats", &stats)
        .str("config_load_time", &rfc3339(m.config_load_time))
        .str("system_account", crate::config::SYSTEM_ACCOUNT)
        .end();
    s
}

fn routez(b: &Broker, subs: bool) -> String {
    let (routes, n) = routez::routez_list(b, subs);
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(SystemTime::now()))
        .uint("num_routes", n as u64)
        .raw("routes", &routes)
        .end();
    s
}

/// /healthz: a standalone server that answers is healthy, with JetStream or without (its
/// `js-enabled-only` and `js-server-only` checks only look further in a JetStream cluster);
/// the options are still read, so a bad value is the same 400 as nats-server's.
fn healthz(req: &Request) -> Result<Response, Response> {
    if param_bool(req, "js-enabled")? {
        log::warn!("Healthcheck: js-enabled deprecated, use js-enabled-only instead");
    }
    param_bool(req, "js-enabled-only")?;
    param_bool(req, "js-server-only")?;
    let ok = "{\"status\":\"ok\"}".to_string();
    Ok(Response::new(200, "application/json", ok))
}

fn accountz(b: &Broker, js: Option<&JetStream>, req: &Request) -> Result<Response, Response> {
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(SystemTime::now()))
        .str("system_account", crate::config::SYSTEM_ACCOUNT);
    match req.param("acc").filter(|a| !a.is_empty()) {
        None => {
            let names: Vec<String> = b.accounts.iter().map(|a| a.name.clone()).collect();
            o.strs("accounts", &names);
        }
        Some(name) => {
            let Some(i) = b.accounts.iter().position(|a| a.name == name) else {
                return Err(bad(format!("Account {name} does not exist")));
            };
            let a = &b.accounts[i];
            let clients = b
                .conns
                .iter()
                .filter(|(_, c)| c.is_client() && c.account == i)
                .count();
            let mut d = String::new();
            let mut dobj = Obj::new(&mut d);
            dobj.str("account_name", &a.name)
                .str("update_time", &rfc3339(b.ident.started))
                .bool("expired", false)
                .bool("complete", true)
                .bool(
                    "jetstream_enabled",
                    js.is_some_and(|j| j.account(i).is_some()),
                )
                .uint("leafnode_connections", 0)
                .uint("client_connections", clients as u64)
                .uint("subscriptions", a.sublist.count() as u64);
            let mut stats = String::new();
            let mut so = Obj::new(&mut stats);
            write_sublist_stats(&mut so, &[&a.sublist]);
            so.end();
            dobj.raw("sublist_stats", &stats).end();
            o.raw("account_detail", &d);
        }
    }
    o.end();
    Ok(json_response(s))
}
