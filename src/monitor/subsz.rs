//! /subsz (`/subscriptionsz`): the subject index's statistics and, with `subs=1`, the
//! subscriptions themselves (`test`, `acc`, `limit`, `offset`), as nats-server 2.9 shows them.
//!
//! The page is decided when the request comes (sorted by connection id and sid, copied out
//! of the index) and rendered a subscription per part by a `Cursor` (see `stream.rs`).

use super::stream::{Source, Stream};
use super::{json_response, param_bool, param_int, Reply, DEFAULT_LIMIT};
use crate::core::broker::Broker;
use crate::monitor::http::{Request, Response};
use crate::protocol::json::Obj;
use crate::subject::sublist::Sublist;
use crate::subject::{subject_matches, valid_literal_subject};
use crate::util::timefmt::rfc3339;
use std::time::SystemTime;

#[allow(clippy::too_many_arguments)]
pub(super) fn write_sub(
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
pub(super) fn write_sublist_stats(o: &mut Obj, lists: &[&Sublist]) {
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

/// A subscription on the page, as it was when the request came.
struct Entry {
    /// Index into the broker's accounts (they never change while running).
    account: usize,
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
    sid: Box<[u8]>,
    delivered: u64,
    max: u64,
    cid: u64,
}

/// The page of a /subsz request, rendered a subscription at a time.
pub struct Cursor {
    /// The document up to the `[` of "subscriptions_list", until the first part is taken.
    head: Option<String>,
    page: Vec<Entry>,
    pos: usize,
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
                    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                    let account = b.accounts.get(e.account).map_or("", |a| a.name.as_str());
                    let queue = e.queue.as_deref().map(text).unwrap_or_default();
                    write_sub(
                        out,
                        Some(account),
                        &text(&e.subject),
                        &queue,
                        &text(&e.sid),
                        e.delivered,
                        e.max,
                        e.cid,
                    );
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

/// The subscriptions `subs=1` lists: clients' only, sorted by connection id and sid.
fn select(b: &Broker, acc: &str, test: &str, offset: usize, limit: usize) -> Vec<Entry> {
    let mut all = Vec::new();
    for (i, a) in b.accounts.iter().enumerate() {
        if !acc.is_empty() && a.name != acc {
            continue;
        }
        for (_, s) in a.sublist.iter() {
            if !test.is_empty() && !subject_matches(&s.subject, test.as_bytes()) {
                continue;
            }
            if let Some(c) = b.conns.get(s.conn).filter(|c| c.is_client()) {
                all.push((i, s, c.cid));
            }
        }
    }
    all.sort_by(|x, y| (x.2, &x.1.sid).cmp(&(y.2, &y.1.sid)));
    all.into_iter()
        .skip(offset)
        .take(limit)
        .map(|(account, s, cid)| Entry {
            account,
            subject: s.subject.clone(),
            queue: s.queue.clone(),
            sid: s.sid.clone(),
            delivered: s.delivered,
            max: s.max,
            cid,
        })
        .collect()
}

pub(super) fn subsz(b: &Broker, req: &Request) -> Result<Reply, Response> {
    let with_subs = param_bool(req, "subs")?;
    let offset = param_int(req, "offset")?.max(0) as usize;
    let limit = match param_int(req, "limit")? {
        n if n <= 0 => DEFAULT_LIMIT,
        n => n as usize,
    };
    let test = req.param("test").unwrap_or("");
    if !test.is_empty() && !valid_literal_subject(test.as_bytes()) {
        return Err(super::bad(format!(
            "invalid test subject, must be valid publish subject: {test}"
        )));
    }
    let acc = req.param("acc").unwrap_or("");
    let lists: Vec<&Sublist> = b
        .accounts
        .iter()
        .filter(|a| acc.is_empty() || a.name == acc)
        .map(|a| &a.sublist)
        .collect();
    let page = if with_subs {
        select(b, acc, test, offset, limit)
    } else {
        Vec::new()
    };
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    // Like nats-server: without a subscription list, only the statistics.
    if page.is_empty() {
        write_sublist_stats(&mut o, &lists);
        o.end();
        return Ok(Reply::Done(json_response(s)));
    }
    o.str("server_id", &b.ident.id)
        .str("now", &rfc3339(SystemTime::now()));
    write_sublist_stats(&mut o, &lists);
    o.uint("total", page.len() as u64)
        .uint("offset", offset as u64)
        .uint("limit", limit as u64)
        .key("subscriptions_list")
        .push('[');
    Ok(Reply::Stream(Stream::new(Source::Subsz(Cursor {
        head: Some(s),
        page,
        pos: 0,
    }))))
}
