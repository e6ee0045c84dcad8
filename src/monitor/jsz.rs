//! /jsz, and JetStream's parts of /varz (`jetstream`) and /accountz (`jetstream_enabled`),
//! with nats-server 2.9's parameters (`accounts`, `streams`, `consumers`, `config`, `acc`,
//! `offset`, `limit`, `leader-only`), fields and order (its JSInfo, AccountDetail,
//! StreamDetail, JetStreamVarz).
//!
//! The JetStream source is found through `Cx::others` (server/source.rs) and read through
//! jetstream/report.rs. The head of /jsz (totals over every stream) is rendered when the
//! request comes; the account details are a `Cursor` that renders one account head, one
//! stream or one consumer per part (`stream.rs`), so thousands of streams or consumers never
//! hold up the loop. The cursor keeps its place by names: a stream or consumer deleted
//! between two parts is skipped, one created after its place is shown.

use super::stream::{Source, Stream};
use super::{bad, json_response, param_bool, param_int, Reply, DEFAULT_LIMIT};
use crate::core::broker::Broker;
use crate::jetstream::account::{to_ns, JsAccount};
use crate::jetstream::report::{Settings, Usage};
use crate::jetstream::source::JetStream;
use crate::jetstream::stream::{StateOpts, Stream as JsStream};
use crate::monitor::http::{Request, Response};
use crate::protocol::json::Obj;
use crate::util::timefmt::rfc3339;
use std::ops::Bound::{Excluded, Unbounded};
use std::time::SystemTime;

/// The first stream of account `a` after `after` (by name; all of them from the first).
pub(super) fn stream_after<'a>(a: &'a JsAccount, after: Option<&str>) -> Option<&'a JsStream> {
    match after {
        None => a.streams.values().next(),
        Some(n) => (a.streams.range::<str, _>((Excluded(n), Unbounded)).next()).map(|(_, s)| s),
    }
}

/// The name of the first consumer of `s` after `after`.
pub(super) fn consumer_after<'a>(s: &'a JsStream, after: Option<&str>) -> Option<&'a str> {
    let next = match after {
        None => s.consumers.keys().next(),
        Some(n) => (s.consumers.range::<str, _>((Excluded(n), Unbounded)).next()).map(|(k, _)| k),
    };
    next.map(String::as_str)
}

/// JetStreamConfig.
fn config_json(s: &Settings) -> String {
    let mut out = String::with_capacity(128);
    let mut o = Obj::new(&mut out);
    o.int("max_memory", s.max_memory)
        .int("max_storage", s.max_store)
        .str("store_dir", &s.store_dir.to_string_lossy());
    if let Some(d) = s.domain {
        o.str("domain", d);
    }
    if s.compress_ok {
        o.bool("compress_ok", true);
    }
    o.end();
    out
}

fn api_json(total: u64, errors: u64) -> String {
    format!("{{\"total\":{total},\"errors\":{errors}}}")
}

/// The fields of JetStreamStats (embedded in JSInfo and AccountDetail, an object in /varz).
fn stats_fields(o: &mut Obj, u: &Usage) {
    o.uint("memory", u.memory)
        .uint("storage", u.storage)
        .uint("reserved_memory", u.reserved_memory)
        .uint("reserved_storage", u.reserved_storage)
        .uint("accounts", u.accounts as u64)
        .uint("ha_assets", 0)
        .raw("api", &api_json(u.api_total, u.api_errors));
}

/// /varz `jetstream`: `{}` without JetStream, else its config and stats (nats-server's
/// JetStreamVarz; `meta` only in a JetStream cluster).
pub(super) fn varz_jetstream(js: Option<&JetStream>) -> String {
    let Some(js) = js else {
        return "{}".into();
    };
    let mut stats = String::with_capacity(200);
    let mut so = Obj::new(&mut stats);
    stats_fields(&mut so, &js.usage());
    so.end();
    let mut s = String::with_capacity(400);
    Obj::new(&mut s)
        .raw("config", &config_json(&js.settings()))
        .raw("stats", &stats)
        .end();
    s
}

/// What a /jsz request asked for.
#[derive(Clone, Copy, Default)]
struct Opts {
    streams: bool,
    consumers: bool,
    config: bool,
}

/// Answers /jsz: a bad parameter is a 400; without account details the answer is complete,
/// with them a stream of the account page.
pub(super) fn jsz(b: &Broker, js: Option<&JetStream>, req: &Request) -> Reply {
    page(b, js, req).unwrap_or_else(Reply::Done)
}

fn page(b: &Broker, js: Option<&JetStream>, req: &Request) -> Result<Reply, Response> {
    let done = |r: Response| Reply::Done(r);
    let mut accounts = param_bool(req, "accounts")?;
    let mut streams = param_bool(req, "streams")?;
    let consumers = param_bool(req, "consumers")?;
    let config = param_bool(req, "config")?;
    // nats-server panics on a negative offset or limit; tern takes 0 and the default.
    let offset = param_int(req, "offset")?.max(0) as usize;
    let limit = match param_int(req, "limit")? {
        n if n <= 0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    let leader_only = param_bool(req, "leader-only")?;
    streams |= consumers;
    accounts |= streams;
    let now = rfc3339(SystemTime::now());
    let Some(js) = js else {
        if leader_only {
            return Err(bad("filtered response: not leader".into()));
        }
        return Ok(done(json_response(disabled(&b.ident.id, &now))));
    };
    let mut head = head(b, js, &now);
    let mut names: Vec<(&str, usize)> = js.accounts().map(|(i, a)| (a.name.as_str(), i)).collect();
    names.sort_unstable();
    let acc = req.param("acc").unwrap_or("");
    let page: Vec<usize> = match names.iter().find(|(n, _)| *n == acc) {
        Some(&(_, i)) => vec![i],
        None if accounts => names
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&(_, i)| i)
            .collect(),
        None => Vec::new(),
    };
    if page.is_empty() {
        head.push('}');
        return Ok(done(json_response(head)));
    }
    head.push_str(",\"account_details\":[");
    let opts = Opts {
        streams,
        consumers,
        config,
    };
    let leader = b.ident.name.clone();
    let cluster = b.ident.cluster.as_ref().map(|c| c.name.clone());
    Ok(Reply::Stream(Stream::new(Source::Jsz(Box::new(Cursor {
        head: Some(head),
        page,
        at: At::Account(0),
        opts,
        leader,
        cluster,
        first: true,
    })))))
}

/// JSInfo of a server without JetStream.
fn disabled(id: &str, now: &str) -> String {
    let mut s = String::with_capacity(400);
    let mut o = Obj::new(&mut s);
    o.str("server_id", id)
        .str("now", now)
        .bool("disabled", true)
        .raw("config", "{\"max_memory\":0,\"max_storage\":0}");
    stats_fields(&mut o, &Usage::default());
    o.uint("streams", 0)
        .uint("consumers", 0)
        .uint("messages", 0)
        .uint("bytes", 0)
        .end();
    s
}

/// JSInfo up to its last total, unclosed: the server's config, usage and the totals over
/// every stream (O(streams)).
fn head(b: &Broker, js: &JetStream, now: &str) -> String {
    let t = js.totals();
    let mut s = String::with_capacity(600);
    let mut o = Obj::new(&mut s);
    o.str("server_id", &b.ident.id)
        .str("now", now)
        .raw("config", &config_json(&js.settings()));
    stats_fields(&mut o, &js.usage());
    o.uint("streams", t.streams)
        .uint("consumers", t.consumers)
        .uint("messages", t.messages)
        .uint("bytes", t.bytes);
    s
}

/// Where the cursor is: the next part renders this.
enum At {
    /// The head of the page's `i`-th account (or the end, past the page).
    Account(usize),
    /// The account's stream after the one named (the first when None).
    Stream(usize, Option<String>),
    /// The stream's consumer after the one named.
    Consumer(usize, String, Option<String>),
}

/// The account details of a /jsz request, rendered a part at a time.
pub struct Cursor {
    /// The document up to the `[` of "account_details", until the first part is taken.
    head: Option<String>,
    /// Broker account indexes, in name order.
    page: Vec<usize>,
    at: At,
    opts: Opts,
    /// The server's name and cluster: a stream's `cluster` (its leader is this server).
    leader: String,
    cluster: Option<String>,
    /// No entry yet in the innermost list being rendered.
    first: bool,
}

impl Cursor {
    /// Appends the next part; false with the last one. Without the JetStream source every
    /// lookup fails and the lists close.
    pub fn next(&mut self, js: Option<&mut JetStream>, out: &mut String) -> bool {
        if let Some(head) = self.head.take() {
            out.push_str(&head);
            return true;
        }
        match std::mem::replace(&mut self.at, At::Account(usize::MAX)) {
            At::Account(i) => {
                let Some(&acc) = self.page.get(i) else {
                    out.push_str("]}");
                    return false;
                };
                if i > 0 {
                    out.push(',');
                }
                let a = js.as_deref().and_then(|j| j.account(acc));
                self.at = self.account(a, i, out);
            }
            At::Stream(i, after) => {
                let acc = self.page.get(i).copied().unwrap_or(usize::MAX);
                let a = js.as_deref().and_then(|j| j.account(acc));
                match a.and_then(|a| stream_after(a, after.as_deref())) {
                    Some(s) => self.at = self.stream(s, i, out),
                    None => {
                        out.push_str("]}");
                        self.at = At::Account(i + 1);
                    }
                }
            }
            At::Consumer(i, stream, after) => {
                let acc = self.page.get(i).copied().unwrap_or(usize::MAX);
                let a = js.as_deref().and_then(|j| j.account(acc));
                let s = a.and_then(|a| a.streams.get(&stream));
                let name = s.and_then(|s| consumer_after(s, after.as_deref()));
                let name = name.map(str::to_string);
                let now = to_ns(SystemTime::now());
                let info = (name.as_deref()).and_then(|c| {
                    let js = js?;
                    js.consumer_info((acc, &stream, c), now, self.opts.config)
                });
                match (name, info) {
                    (Some(name), Some(info)) => {
                        if !std::mem::take(&mut self.first) {
                            out.push(',');
                        }
                        out.push_str(&info);
                        self.at = At::Consumer(i, stream, Some(name));
                    }
                    _ => {
                        out.push_str("]}");
                        self.first = false;
                        self.at = At::Stream(i, Some(stream));
                    }
                }
            }
        }
        true
    }

    /// AccountDetail's head; its `stream_detail` list is opened when it has streams to show.
    fn account(&mut self, a: Option<&JsAccount>, i: usize, out: &mut String) -> At {
        let Some(a) = a else {
            out.push_str("{}");
            return At::Account(i + 1);
        };
        let (memory, storage) = a.usage();
        let u = Usage {
            memory: u64::try_from(memory).unwrap_or(0),
            storage: u64::try_from(storage).unwrap_or(0),
            // nats-server shows the account's limits here (-1, unlimited, as a uint64).
            reserved_memory: a.limits.max_memory as u64,
            reserved_storage: a.limits.max_store as u64,
            accounts: 0,
            api_total: a.api_total,
            api_errors: a.api_errors,
        };
        let mut o = Obj::new(out);
        o.str("name", &a.name).str("id", &a.name);
        stats_fields(&mut o, &u);
        if self.opts.streams && !a.streams.is_empty() {
            out.push_str(",\"stream_detail\":[");
            self.first = true;
            return At::Stream(i, None);
        }
        out.push('}');
        At::Account(i + 1)
    }

    /// StreamDetail's head; its `consumer_detail` list is opened when it has consumers to
    /// show.
    fn stream(&mut self, s: &JsStream, i: usize, out: &mut String) -> At {
        if !std::mem::take(&mut self.first) {
            out.push(',');
        }
        let name = &s.config.name;
        let mut cluster = String::with_capacity(100);
        let mut co = Obj::new(&mut cluster);
        if let Some(c) = &self.cluster {
            co.str("name", c);
        }
        co.str("leader", &self.leader).end();
        let mut o = Obj::new(out);
        o.str("name", name)
            .str("created", &rfc3339(s.created))
            .raw("cluster", &cluster);
        if self.opts.config {
            o.raw("config", &s.config.to_json());
        }
        o.raw("state", &s.state_json(&StateOpts::default()));
        if self.opts.consumers && !s.consumers.is_empty() {
            out.push_str(",\"consumer_detail\":[");
            self.first = true;
            return At::Consumer(i, name.clone(), None);
        }
        out.push('}');
        At::Stream(i, Some(name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_disabled_shapes() {
        assert_eq!(api_json(6, 1), r#"{"total":6,"errors":1}"#);
        let d = disabled("ID", "T");
        assert!(d.starts_with(r#"{"server_id":"ID","now":"T","disabled":true,"config":{"max_memory":0,"max_storage":0},"memory":0,"#), "{d}");
        assert!(
            d.ends_with(
                r#""api":{"total":0,"errors":0},"streams":0,"consumers":0,"messages":0,"bytes":0}"#
            ),
            "{d}"
        );
    }
}
