//! The monitoring endpoints: JSON views of the loop's own counters, with nats-server 2.9's
//! paths, parameters and field names, so existing tools and dashboards read them unchanged.
//!
//! `/` (index), `/varz`, `/connz`, `/subsz` (`/subscriptionsz`), `/routez`, `/healthz`,
//! `/accountz`, and `/metrics` (Prometheus text; nats-server has none, see README). Every
//! handler reads the `Broker` between two loop passes, so what it reports is consistent.

use crate::broker::Broker;
use crate::conn::{Conn, Kind};
use crate::http::{Request, Response};
use crate::json::Obj;
use crate::sublist::{self, Sublist};
use crate::timefmt::{go_duration, rfc3339, uptime};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

/// Default page sizes (nats-server: DefaultConnListSize, DefaultSubListSize).
const DEFAULT_LIMIT: usize = 1024;
/// Subscriptions kept per closed connection.
const CLOSED_SUBS_MAX: usize = 1024;

/// A connection as /connz shows it (also kept for closed connections).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub cid: u64,
    pub kind: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    pub stop: Option<SystemTime>,
    pub reason: Option<&'static str>,
    pub rtt: Duration,
    pub pending: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub num_subs: usize,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: String,
    pub account: String,
    /// (subject, queue, sid, delivered, max)
    pub subs: Vec<(String, String, String, u64, u64)>,
}

/// Wall-clock time of a loop instant of connection `c`: its start plus the loop time since,
/// so it is never before the start.
fn wall(c: &Conn, at: Instant) -> SystemTime {
    c.started_wall + at.saturating_duration_since(c.started)
}

/// Takes a snapshot of a connection for /connz.
pub fn snapshot(b: &Broker, c: &Conn, with_subs: bool) -> ConnInfo {
    let acc = &b.accounts[c.account];
    let mut subs = Vec::new();
    if with_subs {
        for &id in c.subs.values().take(CLOSED_SUBS_MAX) {
            if let Some(s) = acc.sublist.get(id) {
                let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                subs.push((
                    text(&s.subject),
                    s.queue.as_deref().map(text).unwrap_or_default(),
                    text(&s.sid),
                    s.delivered,
                    s.max,
                ));
            }
        }
    }
    subs.sort_by(|a, b| a.2.cmp(&b.2));
    ConnInfo {
        cid: c.cid,
        kind: if c.kind == Kind::Client {
            "Client"
        } else {
            "Router"
        },
        ip: c.addr.ip().to_string(),
        port: c.addr.port(),
        start: c.started_wall,
        last_activity: wall(c, c.last_activity),
        stop: None,
        reason: None,
        rtt: c.rtt,
        pending: c.pending(),
        in_msgs: c.counters.in_msgs,
        out_msgs: c.counters.out_msgs,
        in_bytes: c.counters.in_bytes,
        out_bytes: c.counters.out_bytes,
        num_subs: c.subs.len(),
        name: c.opts.name.clone(),
        lang: c.opts.lang.clone(),
        version: c.opts.version.clone(),
        user: c.opts.user.clone(),
        account: acc.name.clone(),
        subs,
    }
}

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

fn clock_ticks_per_sec() -> i64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz
    } else {
        100
    }
}

/// utime + stime of this process, in clock ticks (/proc/self/stat fields 14 and 15).
fn process_cpu_ticks() -> u64 {
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

/// Re-indents compact JSON with two spaces, as nats-server's `json.MarshalIndent`.
pub fn pretty(compact: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = compact.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
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
        v => v.parse().map_err(|_| {
            bad(format!(
                "Error decoding int for '{key}': strconv.Atoi: parsing {v:?}: invalid syntax"
            ))
        }),
    }
}

/// Answers one monitoring request.
pub fn respond(m: &mut Monitor, b: &Broker, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "method not allowed");
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
        "/metrics" => "/metrics",
        _ => return Response::text(404, "404 page not found"),
    };
    // Counted before answering, so /varz includes itself, as in nats-server.
    *m.req_stats.entry(key).or_default() += 1;
    let mut result = match key {
        "/" => Ok(index()),
        "/varz" => Ok(json_response(varz(m, b))),
        "/connz" => connz(b, req),
        "/subsz" => subsz(b, req),
        "/routez" => param_bool(req, "subs").map(|subs| json_response(routez(b, subs))),
        "/healthz" => Ok(Response::new(
            200,
            "application/json",
            "{\"status\":\"ok\"}".into(),
        )),
        "/accountz" => accountz(b, req),
        _ => Ok(metrics(m, b)),
    };
    // JSONP, as nats-server: `?callback=f` wraps the JSON in `f(...)`.
    if let (Ok(r), Some(cb)) = (&mut result, req.param("callback").filter(|c| !c.is_empty())) {
        if r.content_type == "application/json" {
            r.body = format!("{cb}({})", r.body);
            r.content_type = "application/javascript";
        }
    }
    result.unwrap_or_else(|e| e)
}

fn index() -> Response {
    let mut s = String::from("<html lang=\"en\"><head><title>tern</title></head><body>\n");
    let _ = writeln!(s, "<h1>tern v{}</h1>", crate::config::VERSION);
    for (path, what) in [
        ("varz", "General"),
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
    let routes = b
        .conns
        .iter()
        .filter(|(_, c)| c.kind == Kind::Route)
        .count();
    (b.conns.len() - routes, routes)
}

fn varz(m: &mut Monitor, b: &Broker) -> String {
    let cfg = &b.cfg;
    let now = SystemTime::now();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (clients, routes) = counts(b);
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    crate::info::write_identity(&mut o, b);
    if cfg.auth.advertised() {
        o.bool("auth_required", true);
    }
    if b.cluster.is_some() && !cfg.cluster.as_ref().is_some_and(|c| c.no_advertise) {
        o.strs("connect_urls", &b.cluster_connect_urls());
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
        .raw("cluster", &b.cluster_varz())
        .raw("gateway", "{}")
        .raw("leaf", "{}")
        .raw("mqtt", "{}")
        .raw("websocket", "{}")
        .raw("jetstream", "{}")
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
        .uint("slow_consumers", b.stats.slow_consumers)
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

/// How /connz orders connections; `true` means descending.
fn sort_key(sort: &str, closed: bool) -> Result<(&str, bool), String> {
    let desc = match sort {
        "" | "cid" | "start" => false,
        "subs" | "pending" | "msgs_to" | "msgs_from" | "bytes_to" | "bytes_from" | "last"
        | "idle" | "uptime" => true,
        "stop" if closed => true,
        "reason" if closed => false,
        "stop" | "reason" => {
            return Err(format!("sort by {sort} only valid on closed connections"))
        }
        _ => return Err(format!("invalid sorting option: {sort}")),
    };
    Ok((sort, desc))
}

fn compare(a: &ConnInfo, b: &ConnInfo, sort: &str) -> std::cmp::Ordering {
    match sort {
        "subs" => a.num_subs.cmp(&b.num_subs),
        "pending" => a.pending.cmp(&b.pending),
        "msgs_to" => a.out_msgs.cmp(&b.out_msgs),
        "msgs_from" => a.in_msgs.cmp(&b.in_msgs),
        "bytes_to" => a.out_bytes.cmp(&b.out_bytes),
        "bytes_from" => a.in_bytes.cmp(&b.in_bytes),
        "last" => a.last_activity.cmp(&b.last_activity),
        "idle" => b.last_activity.cmp(&a.last_activity),
        // nats-server lists the newest connection first.
        "uptime" => a.start.cmp(&b.start),
        "stop" => a.stop.cmp(&b.stop),
        "reason" => a.reason.cmp(&b.reason),
        _ => a.cid.cmp(&b.cid),
    }
}

fn connz(b: &Broker, req: &Request) -> Result<Response, Response> {
    let auth = param_bool(req, "auth")?;
    let detail = req
        .param("subs")
        .is_some_and(|v| v.eq_ignore_ascii_case("detail"));
    let subs = detail || param_bool(req, "subs")?;
    let offset = param_int(req, "offset")?.max(0) as usize;
    let limit = match param_int(req, "limit")? {
        n if n <= 0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    let cid = req
        .param("cid")
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|_| {
            bad(format!(
                "Error decoding uint64 for 'cid': strconv.ParseUint: parsing {:?}: invalid syntax",
                req.param("cid").unwrap_or("")
            ))
        })?;
    let (open, closed) = match req
        .param("state")
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "open" => (true, false),
        "closed" => (false, true),
        "any" | "all" => (true, true),
        other => return Err(bad(format!("Error decoding state for {other}"))),
    };
    let user = req.param("user").unwrap_or("");
    let acc = req.param("acc").unwrap_or("");
    if !auth && (!user.is_empty() || !acc.is_empty()) {
        return Err(bad(
            "filter by user or account only allowed with auth option".into(),
        ));
    }
    let (sort, desc) = sort_key(req.param("sort").unwrap_or(""), closed && !open).map_err(bad)?;
    let mut list: Vec<ConnInfo> = Vec::new();
    if open {
        list.extend(
            b.conns
                .iter()
                .filter(|(_, c)| c.kind == Kind::Client)
                .map(|(_, c)| snapshot(b, c, subs)),
        );
    }
    if closed {
        list.extend(b.closed.iter().cloned());
    }
    // As nats-server: the account filter narrows the total, the cid and user filters do
    // not, and a cid query has a limit of one.
    list.retain(|c| acc.is_empty() || c.account == acc);
    let total = list.len();
    let limit = if cid.is_some() { 1 } else { limit };
    list.retain(|c| cid.is_none_or(|id| c.cid == id) && (user.is_empty() || c.user == user));
    list.sort_by(|x, y| {
        if desc {
            compare(y, x, sort)
        } else {
            compare(x, y, sort)
        }
    });
    let page: Vec<&ConnInfo> = list.iter().skip(offset).take(limit).collect();
    let now = SystemTime::now();
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(now))
        .uint("num_connections", page.len() as u64)
        .uint("total", total as u64)
        .uint("offset", offset as u64)
        .uint("limit", limit as u64);
    let mut arr = String::from("[");
    for (i, c) in page.iter().enumerate() {
        if i > 0 {
            arr.push(',');
        }
        write_conn(&mut arr, c, now, auth, subs, detail);
    }
    arr.push(']');
    o.raw("connections", &arr).end();
    Ok(json_response(s))
}

fn write_conn(
    out: &mut String,
    c: &ConnInfo,
    now: SystemTime,
    auth: bool,
    subs: bool,
    detail: bool,
) {
    let mut o = Obj::new(out);
    o.uint("cid", c.cid)
        .str("kind", c.kind)
        .str("type", "nats")
        .str("ip", &c.ip)
        .uint("port", c.port as u64)
        .str("start", &rfc3339(c.start))
        .str("last_activity", &rfc3339(c.last_activity));
    if let Some(stop) = c.stop {
        o.str("stop", &rfc3339(stop));
    }
    if let Some(reason) = c.reason {
        o.str("reason", reason);
    }
    let end = c.stop.unwrap_or(now);
    o.str("rtt", &go_duration(c.rtt));
    o.str(
        "uptime",
        &uptime(end.duration_since(c.start).unwrap_or_default()),
    )
    .str(
        "idle",
        &uptime(end.duration_since(c.last_activity).unwrap_or_default()),
    )
    .uint("pending_bytes", c.pending as u64)
    .uint("in_msgs", c.in_msgs)
    .uint("out_msgs", c.out_msgs)
    .uint("in_bytes", c.in_bytes)
    .uint("out_bytes", c.out_bytes)
    .uint("subscriptions", c.num_subs as u64);
    for (key, v) in [
        ("name", &c.name),
        ("lang", &c.lang),
        ("version", &c.version),
    ] {
        if !v.is_empty() {
            o.str(key, v);
        }
    }
    if auth {
        if !c.user.is_empty() {
            o.str("authorized_user", &c.user);
        }
        if c.account != crate::config::GLOBAL_ACCOUNT {
            o.str("account", &c.account);
        }
    }
    if subs && !c.subs.is_empty() {
        if detail {
            let mut arr = String::from("[");
            for (i, (subject, queue, sid, msgs, max)) in c.subs.iter().enumerate() {
                if i > 0 {
                    arr.push(',');
                }
                // nats-server names the account in the details of closed connections.
                let account = c.stop.map(|_| c.account.as_str());
                write_sub(&mut arr, account, subject, queue, sid, *msgs, *max, c.cid);
            }
            arr.push(']');
            o.raw("subscriptions_list_detail", &arr);
        } else {
            let subjects: Vec<String> = c.subs.iter().map(|s| s.0.clone()).collect();
            o.strs("subscriptions_list", &subjects);
        }
    }
    o.end();
}

#[allow(clippy::too_many_arguments)]
fn write_sub(
    out: &mut String,
    account: Option<&str>,
    subject: &str,
    queue: &str,
    sid: &str,
    msgs: u64,
    max: u64,
    cid: u64,
) {
    let mut o = Obj::new(out);
    if let Some(a) = account {
        o.str("account", a);
    }
    o.str("subject", subject);
    if !queue.is_empty() {
        o.str("qgroup", queue);
    }
    o.str("sid", sid).uint("msgs", msgs);
    if max > 0 {
        o.uint("max", max);
    }
    o.uint("cid", cid).end();
}

/// Sublist statistics summed over accounts, in nats-server's SublistStats shape.
fn write_sublist_stats(o: &mut Obj, lists: &[&Sublist]) {
    let (mut subs, mut cache, mut inserts, mut removes, mut matches, mut hits) = (0, 0, 0, 0, 0, 0);
    let (mut max_fanout, mut fanout_sum, mut cached) = (0usize, 0usize, 0usize);
    for sl in lists {
        subs += sl.count();
        cache += sl.cache_len();
        inserts += sl.stats.inserts;
        removes += sl.stats.removes;
        matches += sl.stats.matches;
        hits += sl.stats.cache_hits;
        let (max, sum, n) = sl.cache_fanout();
        max_fanout = max_fanout.max(max);
        fanout_sum += sum;
        cached += n;
    }
    let rate = if matches > 0 {
        hits as f64 / matches as f64
    } else {
        0.0
    };
    let avg = if cached > 0 {
        fanout_sum as f64 / cached as f64
    } else {
        0.0
    };
    o.uint("num_subscriptions", subs as u64)
        .uint("num_cache", cache as u64)
        .uint("num_inserts", inserts)
        .uint("num_removes", removes)
        .uint("num_matches", matches)
        .float("cache_hit_rate", rate)
        .uint("max_fanout", max_fanout as u64)
        .float("avg_fanout", avg);
}

fn subsz(b: &Broker, req: &Request) -> Result<Response, Response> {
    let with_subs = param_bool(req, "subs")?;
    let offset = param_int(req, "offset")?.max(0) as usize;
    let limit = match param_int(req, "limit")? {
        n if n <= 0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    let test = req.param("test").unwrap_or("");
    if !test.is_empty() && !sublist::valid_literal_subject(test.as_bytes()) {
        return Err(bad(format!(
            "invalid test subject, must be valid publish subject: {test}"
        )));
    }
    let acc = req.param("acc").unwrap_or("");
    let accounts: Vec<_> = b
        .accounts
        .iter()
        .filter(|a| acc.is_empty() || a.name == acc)
        .collect();
    let lists: Vec<&Sublist> = accounts.iter().map(|a| &a.sublist).collect();
    let mut details = String::from("[");
    let mut shown = 0;
    if with_subs {
        let mut all = Vec::new();
        for a in &accounts {
            for (_, s) in a.sublist.iter() {
                if !test.is_empty() && !sublist::subject_matches(&s.subject, test.as_bytes()) {
                    continue;
                }
                if let Some(c) = b.conns.get(s.conn).filter(|c| c.kind == Kind::Client) {
                    all.push((a.name.as_str(), s, c.cid));
                }
            }
        }
        all.sort_by_key(|(_, s, cid)| (*cid, s.sid.clone()));
        for (account, s, cid) in all.into_iter().skip(offset).take(limit) {
            if shown > 0 {
                details.push(',');
            }
            let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
            let queue = s.queue.as_deref().map(text).unwrap_or_default();
            write_sub(
                &mut details,
                Some(account),
                &text(&s.subject),
                &queue,
                &text(&s.sid),
                s.delivered,
                s.max,
                cid,
            );
            shown += 1;
        }
    }
    details.push(']');
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    // Like nats-server: without a subscription list, only the statistics.
    if shown > 0 {
        o.str("server_id", &b.ident.id)
            .str("now", &rfc3339(SystemTime::now()));
    }
    write_sublist_stats(&mut o, &lists);
    if shown > 0 {
        o.uint("total", shown as u64)
            .uint("offset", offset as u64)
            .uint("limit", limit as u64)
            .raw("subscriptions_list", &details);
    }
    o.end();
    Ok(json_response(s))
}

fn routez(b: &Broker, subs: bool) -> String {
    let (routes, n) = b.routez_list(subs);
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(SystemTime::now()))
        .uint("num_routes", n as u64)
        .raw("routes", &routes)
        .end();
    s
}

fn accountz(b: &Broker, req: &Request) -> Result<Response, Response> {
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
                .filter(|(_, c)| c.kind == Kind::Client && c.account == i)
                .count();
            let mut d = String::new();
            let mut dobj = Obj::new(&mut d);
            dobj.str("account_name", &a.name)
                .str("update_time", &rfc3339(b.ident.started))
                .bool("expired", false)
                .bool("complete", true)
                .bool("jetstream_enabled", false)
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

/// Prometheus text exposition of the same counters, named as prometheus-nats-exporter
/// names them (`gnatsd_varz_*`, ...), so dashboards built for that exporter work unchanged.
fn metrics(m: &mut Monitor, b: &Broker) -> Response {
    let (clients, routes) = counts(b);
    let label = format!("{{server_id=\"{}\"}}", b.ident.id);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{label} {value}"
        );
    };
    let now = SystemTime::now();
    let up = now
        .duration_since(b.ident.started)
        .unwrap_or_default()
        .as_secs_f64();
    let st = &b.stats;
    metric(
        "gnatsd_varz_in_msgs",
        "counter",
        "Messages received from clients and routes",
        st.in_msgs as f64,
    );
    metric(
        "gnatsd_varz_out_msgs",
        "counter",
        "Messages delivered",
        st.out_msgs as f64,
    );
    metric(
        "gnatsd_varz_in_bytes",
        "counter",
        "Payload bytes received",
        st.in_bytes as f64,
    );
    metric(
        "gnatsd_varz_out_bytes",
        "counter",
        "Payload bytes delivered",
        st.out_bytes as f64,
    );
    metric(
        "gnatsd_varz_slow_consumers",
        "counter",
        "Connections closed as slow consumers",
        st.slow_consumers as f64,
    );
    metric(
        "gnatsd_varz_total_connections",
        "counter",
        "Client connections accepted",
        st.total_connections as f64,
    );
    metric(
        "gnatsd_varz_connections",
        "gauge",
        "Open client connections",
        clients as f64,
    );
    metric(
        "gnatsd_varz_routes",
        "gauge",
        "Open route connections",
        routes as f64,
    );
    metric(
        "gnatsd_varz_subscriptions",
        "gauge",
        "Subscriptions",
        b.sub_count() as f64,
    );
    metric(
        "gnatsd_varz_mem",
        "gauge",
        "Resident memory in bytes",
        resident_bytes() as f64,
    );
    metric(
        "gnatsd_varz_cpu",
        "gauge",
        "CPU use in percent of one core",
        m.cpu(),
    );
    metric(
        "gnatsd_varz_uptime_seconds",
        "gauge",
        "Seconds since start",
        up,
    );
    metric(
        "gnatsd_varz_max_payload",
        "gauge",
        "Largest accepted payload",
        b.cfg.max_payload as f64,
    );
    metric(
        "gnatsd_varz_max_connections",
        "gauge",
        "Connection limit",
        b.cfg.max_connections as f64,
    );
    metric(
        "gnatsd_connz_pending_bytes",
        "gauge",
        "Unsent bytes over all client connections",
        b.conns.iter().map(|(_, c)| c.pending()).sum::<usize>() as f64,
    );
    metric(
        "gnatsd_healthz_status",
        "gauge",
        "1 when the server is healthy",
        1.0,
    );
    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_prints_like_marshal_indent() {
        let s = pretty(r#"{"a":1,"b":[],"c":{},"d":["x,y",{"e":"\"}"}]}"#);
        assert_eq!(
            s,
            "{\n  \"a\": 1,\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    \"x,y\",\n    {\n      \"e\": \"\\\"}\"\n    }\n  ]\n}"
        );
        assert!(crate::json::parse(s.as_bytes()).is_ok());
    }

    #[test]
    fn sort_options() {
        assert_eq!(sort_key("", false), Ok(("", false)));
        assert_eq!(sort_key("bytes_to", false), Ok(("bytes_to", true)));
        assert!(sort_key("stop", false).is_err());
        assert!(sort_key("stop", true).is_ok());
        assert!(sort_key("nonsense", false).is_err());
    }
}
