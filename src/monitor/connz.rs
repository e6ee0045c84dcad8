//! /connz: client connections, open and recently closed, with nats-server 2.9's parameters
//! (`limit`, `offset`, `sort`, `subs`, `cid`, `state`, `auth`, `user`, `acc`) and fields.
//!
//! The request decides the page at once, from cheap data: each matching connection's sort
//! key and identity (slab token and cid; the closed ones are shared `Rc`s). The entries are
//! rendered later by a `Cursor`, one per part, from the connections' state at that moment
//! (`stream.rs`), so a page of thousands never stalls the loop. A connection that closed
//! in between is shown as it was when it closed, as nats-server shows the client it listed.

use super::stream::{Source, Stream};
use super::subsz::write_sub;
use super::{bad, param_bool, param_int, DEFAULT_LIMIT};
use crate::conn::close::{self, wall, ConnInfo};
use crate::conn::Conn;
use crate::core::broker::Broker;
use crate::monitor::http::{Request, Response};
use crate::protocol::json::Obj;
use crate::util::timefmt::{go_duration, rfc3339, uptime};
use std::rc::Rc;
use std::time::SystemTime;

/// A snapshot of connection `c` for /connz.
fn snapshot(b: &Broker, c: &Conn, with_subs: bool) -> ConnInfo {
    let acc = &b.accounts[c.account];
    close::snapshot(c, &acc.name, &acc.sublist, with_subs)
}

/// How /connz orders connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Cid,
    Subs,
    Pending,
    MsgsTo,
    MsgsFrom,
    BytesTo,
    BytesFrom,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
}

/// The sort field of `sort`, and whether it is descending.
fn sort_key(sort: &str, closed: bool) -> Result<(Sort, bool), String> {
    Ok(match sort {
        "" | "cid" | "start" => (Sort::Cid, false),
        "subs" => (Sort::Subs, true),
        "pending" => (Sort::Pending, true),
        "msgs_to" => (Sort::MsgsTo, true),
        "msgs_from" => (Sort::MsgsFrom, true),
        "bytes_to" => (Sort::BytesTo, true),
        "bytes_from" => (Sort::BytesFrom, true),
        "last" => (Sort::Last, true),
        "idle" => (Sort::Idle, true),
        // nats-server lists the newest connection first.
        "uptime" => (Sort::Uptime, true),
        "stop" if closed => (Sort::Stop, true),
        "reason" if closed => (Sort::Reason, false),
        "stop" | "reason" => {
            return Err(format!("sort by {sort} only valid on closed connections"))
        }
        _ => return Err(format!("invalid sorting option: {sort}")),
    })
}

/// A connection's value of the sort field (all keys of one request have the same variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Num(u64),
    Time(SystemTime),
    Stop(Option<SystemTime>),
    Reason(Option<&'static str>),
}

fn key_of_conn(c: &Conn, sort: Sort) -> Key {
    let n = |v: u64| Key::Num(v);
    match sort {
        Sort::Cid => n(c.cid),
        Sort::Subs => n(c.subs.len() as u64),
        Sort::Pending => n(c.pending() as u64),
        Sort::MsgsTo => n(c.counters.out_msgs),
        Sort::MsgsFrom => n(c.counters.in_msgs),
        Sort::BytesTo => n(c.counters.out_bytes),
        Sort::BytesFrom => n(c.counters.in_bytes),
        Sort::Last | Sort::Idle => Key::Time(wall(c, c.last_activity)),
        Sort::Uptime => Key::Time(c.started_wall),
        Sort::Stop => Key::Stop(None),
        Sort::Reason => Key::Reason(None),
    }
}

fn key_of_info(c: &ConnInfo, sort: Sort) -> Key {
    let n = |v: u64| Key::Num(v);
    match sort {
        Sort::Cid => n(c.cid),
        Sort::Subs => n(c.num_subs as u64),
        Sort::Pending => n(c.pending as u64),
        Sort::MsgsTo => n(c.out_msgs),
        Sort::MsgsFrom => n(c.in_msgs),
        Sort::BytesTo => n(c.out_bytes),
        Sort::BytesFrom => n(c.in_bytes),
        Sort::Last | Sort::Idle => Key::Time(c.last_activity),
        Sort::Uptime => Key::Time(c.start),
        Sort::Stop => Key::Stop(c.stop),
        Sort::Reason => Key::Reason(c.reason),
    }
}

/// Ascending order of two keys: most fields by value, idle time by last activity reversed.
fn order(sort: Sort, a: &Key, b: &Key) -> std::cmp::Ordering {
    if sort == Sort::Idle {
        b.cmp(a)
    } else {
        a.cmp(b)
    }
}

/// A connection on the page: open ones are looked up when rendered.
enum Entry {
    Open { token: usize, cid: u64 },
    Closed(Rc<ConnInfo>),
}

/// What each entry shows.
#[derive(Clone, Copy)]
struct Show {
    auth: bool,
    subs: bool,
    detail: bool,
}

/// The page of a /connz request, rendered an entry at a time.
pub struct Cursor {
    /// The document up to the `[` of "connections", until the first part is taken.
    head: Option<String>,
    page: Vec<Entry>,
    pos: usize,
    now: SystemTime,
    show: Show,
}

impl Cursor {
    /// Appends the next part; false with the last one.
    pub fn next(&mut self, b: &Broker, out: &mut String) -> bool {
        match self.head.take() {
            Some(head) => out.push_str(&head),
            None => {
                if let Some(e) = self.page.get(self.pos) {
                    if self.pos > 0 {
                        out.push(',');
                    }
                    render(b, e, self.now, self.show, out);
                    self.pos += 1;
                }
            }
        }
        if self.pos < self.page.len() {
            return true;
        }
        out.push_str("]}");
        false
    }
}

fn render(b: &Broker, e: &Entry, now: SystemTime, show: Show, out: &mut String) {
    match e {
        Entry::Open { token, cid } => match b.conns.get(*token).filter(|c| c.cid == *cid) {
            Some(c) => write_conn(out, &snapshot(b, c, show.subs), now, show),
            None => {
                let mut info = b
                    .conns
                    .closed
                    .iter()
                    .rev()
                    .find(|i| i.cid == *cid)
                    .map_or_else(|| ConnInfo::stub(*cid), |i| (**i).clone());
                info.stop = None;
                info.reason = None;
                write_conn(out, &info, now, show);
            }
        },
        Entry::Closed(info) => write_conn(out, info, now, show),
    }
}

/// The request's filters.
struct Filter<'a> {
    cid: Option<u64>,
    user: &'a str,
    acc: &'a str,
}

impl Filter<'_> {
    /// Counted in "total": the account filter narrows the total, the others do not.
    fn counts(&self, acc: &str) -> bool {
        self.acc.is_empty() || acc == self.acc
    }
    fn shows(&self, cid: u64, user: &str) -> bool {
        self.cid.is_none_or(|id| cid == id) && (self.user.is_empty() || user == self.user)
    }
}

/// Answers /connz: a bad parameter is a 400, anything else a stream of the page.
pub(super) fn connz(b: &Broker, req: &Request) -> Result<Stream, Response> {
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
    let filter = Filter {
        cid,
        user: req.param("user").unwrap_or(""),
        acc: req.param("acc").unwrap_or(""),
    };
    if !auth && (!filter.user.is_empty() || !filter.acc.is_empty()) {
        return Err(bad(
            "filter by user or account only allowed with auth option".into(),
        ));
    }
    let (sort, desc) = sort_key(req.param("sort").unwrap_or(""), closed && !open).map_err(bad)?;
    let (mut list, total) = select(b, &filter, sort, open, closed);
    // As nats-server: a cid query has a limit of one.
    let limit = if cid.is_some() { 1 } else { limit };
    list.sort_by(|x, y| {
        if desc {
            order(sort, &y.0, &x.0)
        } else {
            order(sort, &x.0, &y.0)
        }
    });
    let page: Vec<Entry> = list
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, e)| e)
        .collect();
    let now = SystemTime::now();
    let mut head = String::new();
    let mut o = Obj::new(&mut head);
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(now))
        .uint("num_connections", page.len() as u64)
        .uint("total", total as u64)
        .uint("offset", offset as u64)
        .uint("limit", limit as u64)
        .key("connections")
        .push('[');
    let show = Show { auth, subs, detail };
    Ok(Stream::new(Source::Connz(Cursor {
        head: Some(head),
        page,
        pos: 0,
        now,
        show,
    })))
}

/// The connections the filter shows, with their sort keys (open ones in slab order, then
/// the closed ones oldest first), and the total the filter counts.
fn select(
    b: &Broker,
    filter: &Filter,
    sort: Sort,
    open: bool,
    closed: bool,
) -> (Vec<(Key, Entry)>, usize) {
    let mut list = Vec::new();
    let mut total = 0;
    if open {
        for (token, c) in b.conns.iter().filter(|(_, c)| c.is_client()) {
            if !filter.counts(&b.accounts[c.account].name) {
                continue;
            }
            total += 1;
            if filter.shows(c.cid, &c.opts.user) {
                let entry = Entry::Open { token, cid: c.cid };
                list.push((key_of_conn(c, sort), entry));
            }
        }
    }
    if closed {
        for info in b.conns.closed.iter().filter(|i| filter.counts(&i.account)) {
            total += 1;
            if filter.shows(info.cid, &info.user) {
                list.push((key_of_info(info, sort), Entry::Closed(info.clone())));
            }
        }
    }
    (list, total)
}

fn write_conn(out: &mut String, c: &ConnInfo, now: SystemTime, show: Show) {
    let Show { auth, subs, detail } = show;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sort_options() {
        assert_eq!(sort_key("", false), Ok((Sort::Cid, false)));
        assert_eq!(sort_key("start", false), Ok((Sort::Cid, false)));
        assert_eq!(sort_key("bytes_to", false), Ok((Sort::BytesTo, true)));
        assert!(sort_key("stop", false).is_err());
        assert_eq!(sort_key("stop", true), Ok((Sort::Stop, true)));
        assert!(sort_key("nonsense", false).is_err());
    }

    #[test]
    fn idle_orders_by_last_activity_reversed() {
        let t = |s| Key::Time(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let (early, late) = (t(1), t(2));
        assert_eq!(order(Sort::Last, &early, &late), std::cmp::Ordering::Less);
        assert_eq!(
            order(Sort::Idle, &early, &late),
            std::cmp::Ordering::Greater
        );
    }
}
