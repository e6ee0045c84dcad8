//! CONSUMER.CREATE (ephemeral `CREATE.<S>`, named `CREATE.<S>.<name>[.<filter>]`, legacy
//! `DURABLE.CREATE.<S>.<D>`), INFO, DELETE, NAMES, LIST and MSG.NEXT, checked in the order
//! of nats-server 2.9.10's `jsConsumerCreateRequest` and `addConsumer`, so the same request
//! fails with the same error first.

use super::errors::{self as e, ApiError};
use super::{api_type, Change, Count, Reply, Request, Response};
use crate::jetstream::account::{Env, JsAccount};
use crate::jetstream::config::{Retention, Storage};
use crate::jetstream::consumer::config::{self as ccfg, AckPolicy, ConsumerConfig, DeliverPolicy};
use crate::jetstream::consumer::engine::PollCtx;
use crate::jetstream::consumer::{check, persist, random_token, Consumer};
use crate::jetstream::gojson::{self, is_empty_request};
use crate::jetstream::store::SyncTarget;
use crate::jetstream::stream::Stream;
use crate::protocol::json::Obj;

const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;

/// The three create forms.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    Ephemeral,
    Named,
    Durable,
}

fn shape(kind: &'static str) -> super::Shape {
    super::Shape::plain(kind)
}

fn err(kind: &'static str, e: ApiError) -> (Response, Count) {
    super::error_reply(shape(kind), &e)
}

fn paged_err(kind: &'static str, e: &ApiError) -> (Response, Count) {
    let mut s = String::with_capacity(200);
    let mut o = Obj::new(&mut s);
    o.str("type", &api_type(kind))
        .raw("error", &e.json())
        .int("total", 0)
        .int("offset", 0)
        .int("limit", 0)
        .raw("consumers", "[]");
    o.end();
    (Response::reply(Reply::Json(s)), Count::Err)
}

const CREATE: &str = "consumer_create_response";

/// CONSUMER.CREATE in any form. `name` is the consumer token (empty: ephemeral form),
/// `filter` the subject tokens after it.
pub(super) fn create(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    form: Form,
    stream: &str,
    name: &str,
    filter: &str,
) -> (Response, Count) {
    let Ok(mut r) = ccfg::parse_request(req.payload) else {
        return err(CREATE, ApiError::new(e::INVALID_JSON));
    };
    if r.stream_name != stream {
        return err(CREATE, ApiError::new(e::STREAM_MISMATCH));
    }
    if name.contains(['/', '\\']) {
        return err(
            CREATE,
            ApiError::new(e::CONSUMER_NAME_CONTAINS_PATH_SEPARATORS),
        );
    }
    let cfg = &mut r.config;
    match form {
        Form::Durable if cfg.durable_name.is_empty() => {
            return err(CREATE, ApiError::new(e::CONSUMER_DURABLE_NAME_NOT_SET));
        }
        Form::Durable if cfg.durable_name != name => {
            return err(
                CREATE,
                ApiError::new(e::CONSUMER_DURABLE_NAME_NOT_MATCH_SUBJECT),
            );
        }
        Form::Named => {
            if !cfg.durable_name.is_empty() && cfg.durable_name != name {
                return err(
                    CREATE,
                    ApiError::new(e::CONSUMER_DURABLE_NAME_NOT_MATCH_SUBJECT),
                );
            }
            cfg.name = name.to_string();
        }
        Form::Ephemeral if !cfg.durable_name.is_empty() => {
            return err(
                CREATE,
                ApiError::new(e::CONSUMER_EPHEMERAL_WITH_DURABLE_NAME),
            );
        }
        _ => {}
    }
    if !filter.is_empty() && cfg.filter_subject != filter {
        return err(
            CREATE,
            ApiError::new(e::CONSUMER_CREATE_FILTER_SUBJECT_MISMATCH),
        );
    }
    if cfg.num_replicas > 1 {
        return err(CREATE, ApiError::new(e::STREAM_REPLICAS_NOT_SUPPORTED));
    }
    let limits = acc.limits;
    let Some(s) = acc.streams.get_mut(stream) else {
        return err(CREATE, ApiError::new(e::STREAM_NOT_FOUND));
    };
    match add_consumer(s, r.config, &limits, env) {
        Ok((info, created, sync)) => {
            let mut resp = Response::reply(Reply::Json(info));
            resp.sync = sync;
            resp.change = Some(match created {
                Created::New(c) => Change::ConsumerCreated(stream.to_string(), c),
                Created::Updated(c) => Change::ConsumerUpdated(stream.to_string(), c),
            });
            (resp, Count::Ok)
        }
        Err(e) => err(CREATE, e),
    }
}

/// A create request made a consumer or updated one (its name).
enum Created {
    New(String),
    Updated(String),
}

/// `addConsumer`: defaults, checks, update of an existing one or a new one. Returns the
/// create reply, which consumer and what to fsync.
fn add_consumer(
    s: &mut Stream,
    mut cfg: ConsumerConfig,
    limits: &crate::jetstream::account::JsLimits,
    env: &Env,
) -> Result<(String, Created, Option<SyncTarget>), ApiError> {
    check::defaults(&mut cfg, limits);
    check::check(&cfg, &s.config, limits)?;
    let now = env.now_ns();
    let cname = if cfg.is_durable() {
        cfg.durable_name.clone()
    } else {
        cfg.name.clone()
    };
    if !cname.is_empty() && s.consumers.contains_key(&cname) {
        return update_consumer(s, &cname, cfg, env);
    }
    let mut maxc = s.config.max_consumers;
    if maxc <= 0 || (limits.max_consumers > 0 && limits.max_consumers < maxc) {
        maxc = limits.max_consumers;
    }
    if maxc > 0 && s.consumers.len() as i64 >= maxc {
        return Err(ApiError::new(e::MAXIMUM_CONSUMERS_LIMIT));
    }
    workqueue_rules(s, &cfg)?;
    if cfg.is_durable() && cfg.durable_name.len() > check::MAX_NAME_LEN {
        return Err(ApiError::suffixed(
            e::CONSUMER_NAME_TOO_LONG,
            check::MAX_NAME_LEN,
        ));
    }
    let name = if cname.is_empty() {
        let mut n = random_token(8);
        while s.consumers.contains_key(&n) {
            n = random_token(8);
        }
        n
    } else {
        cname
    };
    if !check::is_valid_name(&name) {
        return Err(ApiError::new(e::CONSUMER_BAD_DURABLE_NAME));
    }
    let mut c = Consumer::new(&name, &s.config.name, cfg, now, &s.store, now);
    check::inactive_default(&mut c.config);
    if c.config.is_push() {
        // setLeader looks at the deliver subject's interest at once.
        c.set_interest((env.interest)(&c.config.deliver_subject), now);
    }
    let sync = open_files(s, &mut c).map_err(|err| {
        log::warn!(
            "JetStream: consumer create failed for '{} > {name}': {err}",
            s.config.name
        );
        ApiError::with(e::CONSUMER_CREATE, "error creating store for consumer")
    })?;
    let info = reply_json(CREATE, &mut c, &s.store, now);
    s.consumers.insert(name.clone(), c);
    Ok((info, Created::New(name), sync))
}

/// Files for a consumer of a file stream (not `mem_storage`): meta.inf and its first
/// snapshot.
fn open_files(
    s: &Stream,
    c: &mut Consumer,
) -> std::io::Result<Option<crate::jetstream::store::SyncTarget>> {
    let Some(sdir) = &s.dir else { return Ok(None) };
    if s.config.storage != Storage::File || c.config.mem_storage {
        return Ok(None);
    }
    let dir = sdir.join("obs").join(&c.name);
    let res = persist::write_meta(&dir, &c.name, c.created, &c.config.to_json())
        .and_then(|_| persist::Log::create(&dir, &c.state));
    match res {
        Ok(log) => {
            c.log = Some(log);
            c.dir = Some(dir.clone());
            let f = std::fs::File::open(dir.join("meta.inf"))?;
            let d = std::fs::File::open(&dir)?;
            Ok(Some(crate::jetstream::store::SyncTarget {
                files: vec![std::sync::Arc::new(f)],
                dirs: vec![std::sync::Arc::new(d)],
            }))
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(err)
        }
    }
}

/// The workqueue rules of `addConsumer`.
fn workqueue_rules(s: &Stream, cfg: &ConsumerConfig) -> Result<(), ApiError> {
    if s.config.retention != Retention::WorkQueue || cfg.direct {
        return Ok(());
    }
    if cfg.ack_policy != AckPolicy::Explicit {
        return Err(ApiError::new(e::CONSUMER_WQ_REQUIRES_EXPLICIT_ACK));
    }
    if !s.consumers.is_empty() {
        if cfg.filter_subject.is_empty() {
            return Err(ApiError::new(e::CONSUMER_WQ_MULTIPLE_UNFILTERED));
        }
        let f = &cfg.filter_subject;
        let unique = s.consumers.values().all(|o| {
            let of = &o.config.filter_subject;
            !of.is_empty()
                && !crate::jetstream::subject::is_subset_match(f, of)
                && !crate::jetstream::subject::is_subset_match(of, f)
        });
        if !unique {
            return Err(ApiError::new(e::CONSUMER_WQ_NOT_UNIQUE));
        }
    }
    if cfg.deliver_policy != DeliverPolicy::All {
        return Err(ApiError::new(e::CONSUMER_WQ_NOT_DELIVER_ALL));
    }
    Ok(())
}

/// `updateConfig` of an existing consumer.
fn update_consumer(
    s: &mut Stream,
    name: &str,
    mut cfg: ConsumerConfig,
    env: &Env,
) -> Result<(String, Created, Option<SyncTarget>), ApiError> {
    let now = env.now_ns();
    let Some(c) = s.consumers.get_mut(name) else {
        return Err(ApiError::new(e::CONSUMER_NOT_FOUND));
    };
    if !c.config.is_durable() && cfg.inactive_threshold != c.config.inactive_threshold {
        check::inactive_default(&mut cfg);
    }
    let interest = (env.interest)(&c.config.deliver_subject);
    check::update_check(&c.config, &cfg, interest)?;
    let mut sync = None;
    if let Some(dir) = &c.dir {
        persist::write_meta(dir, &c.name, c.created, &cfg.to_json())
            .map_err(|err| ApiError::with(e::CONSUMER_CREATE, err.to_string()))?;
        if let Ok(f) = std::fs::File::open(dir.join("meta.inf")) {
            sync = Some(crate::jetstream::store::SyncTarget {
                files: vec![std::sync::Arc::new(f)],
                dirs: Vec::new(),
            });
        }
    }
    c.update(cfg, now);
    let info = reply_json(CREATE, c, &s.store, now);
    Ok((info, Created::Updated(name.to_string()), sync))
}

fn reply_json(
    kind: &str,
    c: &mut Consumer,
    store: &crate::jetstream::store::Store,
    now: i64,
) -> String {
    let mut s = String::with_capacity(800);
    let mut o = Obj::new(&mut s);
    o.str("type", &api_type(kind));
    c.info_fields(&mut o, store, now);
    o.end();
    s
}

const INFO: &str = "consumer_info_response";

pub(super) fn info(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    stream: &str,
    name: &str,
) -> (Response, Count) {
    if !is_empty_request(req.payload) {
        return err(INFO, ApiError::new(e::NOT_EMPTY_REQUEST));
    }
    let Some(s) = acc.streams.get_mut(stream) else {
        return err(INFO, ApiError::new(e::STREAM_NOT_FOUND));
    };
    let Stream {
        consumers, store, ..
    } = s;
    let Some(c) = consumers.get_mut(name) else {
        return err(INFO, ApiError::new(e::CONSUMER_NOT_FOUND));
    };
    let json = reply_json(INFO, c, store, env.now_ns());
    (Response::reply(Reply::Json(json)), Count::Ok)
}

const DELETE: &str = "consumer_delete_response";

pub(super) fn delete(
    acc: &mut JsAccount,
    req: &Request,
    stream: &str,
    name: &str,
) -> (Response, Count) {
    if !is_empty_request(req.payload) {
        return err(DELETE, ApiError::new(e::NOT_EMPTY_REQUEST));
    }
    let Some(s) = acc.streams.get_mut(stream) else {
        return err(DELETE, ApiError::new(e::STREAM_NOT_FOUND));
    };
    let sync = s
        .consumers
        .get(name)
        .and_then(|c| c.dir.as_deref())
        .and_then(crate::jetstream::meta::parent_sync);
    let Some(outs) = s.remove_consumer(name) else {
        return err(DELETE, ApiError::new(e::CONSUMER_NOT_FOUND));
    };
    let mut out = String::new();
    Obj::new(&mut out)
        .str("type", &api_type(DELETE))
        .bool("success", true)
        .end();
    let mut resp = Response::reply(Reply::Json(out));
    resp.sync = sync;
    resp.outs = outs;
    resp.flush = Some(stream.to_string());
    resp.change = Some(Change::ConsumerDeleted(
        stream.to_string(),
        name.to_string(),
    ));
    (resp, Count::Ok)
}

fn parse_offset(payload: &[u8]) -> Result<i64, gojson::BadJson> {
    let mut offset = 0i64;
    if is_empty_request(payload) {
        return Ok(0);
    }
    gojson::decode(payload, |k, v| {
        if k == "offset" {
            offset = gojson::int(v, offset)?;
        }
        Ok(())
    })?;
    Ok(offset)
}

/// NAMES (`list` false) and LIST.
pub(super) fn names_or_list(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    stream: &str,
    list: bool,
) -> (Response, Count) {
    let kind = if list {
        "consumer_list_response"
    } else {
        "consumer_names_response"
    };
    let Ok(offset) = parse_offset(req.payload) else {
        return paged_err(kind, &ApiError::new(e::INVALID_JSON));
    };
    let Some(s) = acc.streams.get_mut(stream) else {
        return paged_err(kind, &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let total = s.consumers.len();
    // A negative offset crashes nats-server 2.9.10; tern reads it as 0.
    let offset = usize::try_from(offset.max(0))
        .unwrap_or(usize::MAX)
        .min(total);
    let limit = if list { LIST_LIMIT } else { NAMES_LIMIT };
    let now = env.now_ns();
    let Stream {
        consumers, store, ..
    } = s;
    let items: Vec<String> = consumers
        .values_mut()
        .skip(offset)
        .take(limit)
        .map(|c| {
            if list {
                c.info_json(store, now)
            } else {
                let mut q = String::new();
                crate::protocol::json::write_str(&mut q, &c.name);
                q
            }
        })
        .collect();
    let mut out = String::with_capacity(128 + items.iter().map(String::len).sum::<usize>());
    let mut o = Obj::new(&mut out);
    o.str("type", &api_type(kind))
        .uint("total", total as u64)
        .uint("offset", offset as u64)
        .uint("limit", limit as u64)
        .raw("consumers", &format!("[{}]", items.join(",")));
    o.end();
    (Response::reply(Reply::Json(out)), Count::Ok)
}

/// MSG.NEXT: a pull request. No JSON reply; statuses (404/408/409/400) go in `outs`.
pub(super) fn next(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    stream: &str,
    name: &str,
) -> (Response, Count) {
    let mut resp = Response::none();
    let Ok(reply) = std::str::from_utf8(req.reply) else {
        return (resp, Count::Not);
    };
    if reply.is_empty() {
        return (resp, Count::Not);
    }
    let Some(s) = acc.streams.get_mut(stream) else {
        return (resp, Count::Not);
    };
    let Stream {
        consumers, store, ..
    } = s;
    let Some(c) = consumers.get_mut(name) else {
        return (resp, Count::Not);
    };
    let mut cx = PollCtx::new(env.now_ns(), env.interest);
    c.next_request(reply, req.payload, store, &mut cx);
    resp.outs = cx.outs;
    (resp, Count::Not)
}
