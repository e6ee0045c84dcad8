//! STREAM.CREATE / UPDATE / INFO / DELETE / PURGE / NAMES / LIST and the account INFO, in
//! the order nats-server 2.9.10's handlers check things (jetstream_api.go, addStream,
//! stream.update), so that the same request fails with the same error first.

use super::errors::{self as e, ApiError};
use super::{api_type, error_reply, Change, Count, Reply, Request, Response, Shape};
use crate::jetstream::account::{Env, JsAccount};
use crate::jetstream::check::{self, CheckCtx};
use crate::jetstream::config::{self, Storage, StreamConfig};
use crate::jetstream::gojson::{self, is_empty_request};
use crate::jetstream::meta;
use crate::jetstream::stream::{StateOpts, Stream};
use crate::protocol::json::Obj;

/// nats-server's page sizes.
const NAMES_LIMIT: usize = 1024;
const LIST_LIMIT: usize = 256;
const SUBJECT_DETAILS_LIMIT: usize = 100_000;

fn ok_json(s: String) -> (Response, Count) {
    (Response::reply(Reply::Json(s)), Count::Ok)
}

pub(super) fn account_info(acc: &JsAccount, env: &Env, _req: &Request) -> (Response, Count) {
    let (mem, store) = acc.usage();
    let l = &acc.limits;
    let mut limits = String::new();
    Obj::new(&mut limits)
        .int("max_memory", l.max_memory)
        .int("max_storage", l.max_store)
        .int("max_streams", l.max_streams)
        .int("max_consumers", l.max_consumers)
        .int("max_ack_pending", l.max_ack_pending)
        .int("memory_max_stream_bytes", l.memory_max_stream_bytes)
        .int("storage_max_stream_bytes", l.store_max_stream_bytes)
        .bool("max_bytes_required", l.max_bytes_required)
        .end();
    let consumers = acc.consumer_count();
    let mut s = String::with_capacity(400);
    let mut o = Obj::new(&mut s);
    o.str("type", &api_type("account_info_response"))
        .int("memory", mem)
        .int("storage", store)
        .uint("streams", acc.streams.len() as u64)
        .uint("consumers", consumers as u64)
        .raw("limits", &limits);
    if let Some(d) = env.domain {
        o.str("domain", d);
    }
    let mut api = String::new();
    Obj::new(&mut api)
        .uint("total", acc.api_total)
        .uint("errors", acc.api_errors)
        .end();
    o.raw("api", &api).end();
    ok_json(s)
}

fn ctx<'a>(acc: &'a JsAccount, env: &Env) -> CheckCtx<'a> {
    CheckCtx {
        limits: &acc.limits,
        max_duplicate_window: env.server.max_duplicate_window,
    }
}

pub(super) fn create(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    name: &str,
) -> (Response, Count) {
    let shape = || Shape::plain("stream_create_response");
    let Ok(raw) = config::parse(req.payload) else {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    };
    if raw.name != name {
        return error_reply(shape(), &ApiError::new(e::STREAM_MISMATCH));
    }
    let checked = check::create_rules(&raw)
        .and_then(|_| acc.create_limits(&raw, env))
        .and_then(|_| check::check(&raw, &ctx(acc, env)));
    let cfg = match checked {
        Ok(cfg) => cfg,
        Err(err) => return error_reply(shape(), &err),
    };
    if cfg.num_replicas > 1 {
        return error_reply(shape(), &ApiError::new(e::STREAM_REPLICAS_NOT_SUPPORTED));
    }
    if let Some(existing) = acc.streams.get(name) {
        if existing.config != cfg {
            return error_reply(shape(), &ApiError::new(e::STREAM_NAME_EXIST));
        }
        return ok_json(create_reply(existing));
    }
    if let Err(err) = acc.create_limits(&cfg, env) {
        return error_reply(shape(), &err);
    }
    if !cfg.template_owner.is_empty() {
        let err = ApiError::with(e::STREAM_CREATE, "stream not owned by template");
        return error_reply(shape(), &err);
    }
    if acc.overlaps(&cfg.subjects, None) {
        return error_reply(shape(), &ApiError::new(e::STREAM_SUBJECT_OVERLAP));
    }
    match open_new(acc, env, cfg) {
        Ok((stream, sync)) => {
            let reply = create_reply(&stream);
            acc.streams.insert(name.to_string(), stream);
            let mut resp = Response::reply(Reply::Json(reply));
            resp.sync = sync;
            resp.change = Some(Change::Created(name.to_string()));
            (resp, Count::Ok)
        }
        Err(err) => {
            log::warn!(
                "JetStream: stream create failed for '{} > {name}': {err}",
                acc.name
            );
            let err = ApiError::with(e::STREAM_CREATE, "error creating store for stream");
            error_reply(shape(), &err)
        }
    }
}

/// Creates the stream's store and, for file storage, its meta.inf.
fn open_new(
    acc: &JsAccount,
    env: &Env,
    cfg: StreamConfig,
) -> std::io::Result<(Stream, Option<crate::jetstream::store::SyncTarget>)> {
    let dir = (cfg.storage == Storage::File).then(|| acc.dir.join(&cfg.name));
    let mut sync = None;
    if let Some(d) = &dir {
        sync = Some(meta::write(d, &cfg, env.now)?);
    }
    let opened = Stream::open(cfg, dir.clone(), env.now, env.domain);
    match opened {
        Ok((stream, _)) => Ok((stream, sync)),
        Err(err) => {
            if let Some(d) = dir {
                let _ = std::fs::remove_dir_all(d);
            }
            Err(err)
        }
    }
}

fn create_reply(s: &Stream) -> String {
    let mut out = String::with_capacity(800);
    let mut o = Obj::new(&mut out);
    o.str("type", &api_type("stream_create_response"));
    s.info_fields(&mut o, &StateOpts::default(), false);
    o.bool("did_create", true).end();
    out
}

pub(super) fn update(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    name: &str,
) -> (Response, Count) {
    let shape = || Shape::plain("stream_update_response");
    let Ok(raw) = config::parse(req.payload) else {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    };
    let cfg = match check::check(&raw, &ctx(acc, env)) {
        Ok(cfg) => cfg,
        Err(err) => return error_reply(shape(), &err),
    };
    if cfg.name != name {
        return error_reply(shape(), &ApiError::new(e::STREAM_MISMATCH));
    }
    let Some(old) = acc.streams.get(name).map(|s| s.config.clone()) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let checked = check::update_check(&old, &raw, &ctx(acc, env))
        .and_then(|cfg| acc.update_limits(&old, &cfg, env).map(|_| cfg));
    let cfg = match checked {
        Ok(cfg) => cfg,
        Err(err) => return error_reply(shape(), &err),
    };
    if acc.overlaps(&cfg.subjects, Some(name)) {
        return error_reply(shape(), &ApiError::new(e::STREAM_SUBJECT_OVERLAP));
    }
    let Some(stream) = acc.streams.get_mut(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let mut sync = None;
    if let Some(d) = &stream.dir {
        match meta::write(d, &cfg, stream.created) {
            Ok(t) => sync = Some(t),
            Err(err) => {
                log::warn!(
                    "JetStream: stream update failed for '{} > {name}': {err}",
                    acc.name
                );
                return error_reply(shape(), &ApiError::with(e::STREAM_GENERAL, err.to_string()));
            }
        }
    }
    stream.update(cfg, env.now);
    let mut out = String::with_capacity(800);
    let mut o = Obj::new(&mut out);
    o.str("type", &api_type("stream_update_response"));
    stream.info_fields(&mut o, &StateOpts::default(), true);
    o.end();
    let mut resp = Response::reply(Reply::Json(out));
    resp.flush = Some(name.to_string());
    resp.sync = sync;
    resp.change = Some(Change::Updated(name.to_string()));
    (resp, Count::Ok)
}

/// STREAM.INFO's optional request.
#[derive(Default)]
struct InfoReq {
    offset: i64,
    deleted_details: bool,
    subjects_filter: String,
}

fn parse_info_req(payload: &[u8]) -> Result<InfoReq, gojson::BadJson> {
    let mut r = InfoReq::default();
    if is_empty_request(payload) {
        return Ok(r);
    }
    gojson::decode(payload, |k, v| {
        match k {
            "offset" => r.offset = gojson::int(v, r.offset)?,
            "deleted_details" => r.deleted_details = gojson::boolean(v, r.deleted_details)?,
            "subjects_filter" => r.subjects_filter = gojson::string(v, &r.subjects_filter)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(r)
}

pub(super) fn info(acc: &JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::paged("stream_info_response", "");
    let Ok(r) = parse_info_req(req.payload) else {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    };
    let Some(stream) = acc.streams.get(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let mut opts = StateOpts {
        deleted_details: r.deleted_details,
        subjects: None,
    };
    let (mut total, mut offset, mut limit) = (0usize, 0usize, 0usize);
    if !r.subjects_filter.is_empty() {
        let all = stream.store.subjects(Some(r.subjects_filter.as_bytes()));
        if !all.is_empty() {
            total = all.len();
            offset = usize::try_from(r.offset.max(0))
                .unwrap_or(usize::MAX)
                .min(total);
            limit = SUBJECT_DETAILS_LIMIT;
            let end = offset.saturating_add(SUBJECT_DETAILS_LIMIT).min(total);
            let page = all[offset..end]
                .iter()
                .map(|(s, n)| (String::from_utf8_lossy(s).into_owned(), *n))
                .collect();
            opts.subjects = Some(page);
        }
    }
    let mut out = String::with_capacity(800);
    let mut o = Obj::new(&mut out);
    o.str("type", &api_type("stream_info_response"))
        .uint("total", total as u64)
        .uint("offset", offset as u64)
        .uint("limit", limit as u64);
    stream.info_fields(&mut o, &opts, true);
    o.end();
    ok_json(out)
}

pub(super) fn delete(acc: &mut JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::plain("stream_delete_response");
    if !is_empty_request(req.payload) {
        return error_reply(shape(), &ApiError::new(e::NOT_EMPTY_REQUEST));
    }
    let Some(mut stream) = acc.streams.remove(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let outs = stream.cancel_waiting();
    let sync = stream.dir.as_deref().and_then(meta::parent_sync);
    if let Err(err) = stream.delete_files() {
        log::warn!("JetStream: deleting stream '{} > {name}': {err}", acc.name);
        return error_reply(shape(), &ApiError::with(e::STREAM_DELETE, err.to_string()));
    }
    let mut s = String::new();
    Obj::new(&mut s)
        .str("type", &api_type("stream_delete_response"))
        .bool("success", true)
        .end();
    let mut resp = Response::reply(Reply::Json(s));
    resp.sync = sync;
    resp.outs = outs;
    resp.change = Some(Change::Deleted(name.to_string()));
    (resp, Count::Ok)
}

/// STREAM.PURGE's optional request.
#[derive(Default)]
struct PurgeReq {
    seq: u64,
    filter: String,
    keep: u64,
}

pub(super) fn purge(acc: &mut JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = Shape::purge;
    let mut r = PurgeReq::default();
    let mut requested = false;
    if !is_empty_request(req.payload) {
        let parsed = gojson::decode(req.payload, |k, v| {
            match k {
                "seq" => r.seq = gojson::uint(v, r.seq)?,
                "filter" => r.filter = gojson::string(v, &r.filter)?,
                "keep" => r.keep = gojson::uint(v, r.keep)?,
                _ => {}
            }
            Ok(())
        });
        if parsed.is_err() {
            return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
        }
        if r.seq > 0 && r.keep > 0 {
            return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
        }
        requested = true;
    }
    let Some(stream) = acc.streams.get_mut(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    if stream.config.sealed {
        return error_reply(shape(), &ApiError::new(e::STREAM_SEALED));
    }
    if stream.config.deny_purge {
        let err = ApiError::with(e::STREAM_PURGE_FAILED, "stream purge not permitted");
        return error_reply(shape(), &err);
    }
    let purged = if requested {
        let filter = (!r.filter.is_empty()).then_some(r.filter.as_bytes());
        let upto = (r.seq > 0).then_some(r.seq);
        let keep = (r.keep > 0).then_some(r.keep);
        let n = stream.store.purge(filter, upto, keep);
        stream.consumers_purged((!r.filter.is_empty()).then_some(r.filter.as_str()));
        n
    } else {
        let n = stream.store.purge(None, None, None);
        stream.consumers_purged(None);
        n
    };
    let mut s = String::new();
    Obj::new(&mut s)
        .str("type", &api_type("stream_purge_response"))
        .bool("success", true)
        .uint("purged", purged)
        .end();
    let mut resp = Response::reply(Reply::Json(s));
    resp.flush = Some(name.to_string());
    (resp, Count::Ok)
}

/// NAMES / LIST request: `{"offset":n,"subject":filter}`.
fn parse_list_req(payload: &[u8]) -> Result<(i64, String), gojson::BadJson> {
    let (mut offset, mut subject) = (0i64, String::new());
    if is_empty_request(payload) {
        return Ok((offset, subject));
    }
    gojson::decode(payload, |k, v| {
        match k {
            "offset" => offset = gojson::int(v, offset)?,
            "subject" => subject = gojson::string(v, &subject)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((offset, subject))
}

/// The streams a NAMES/LIST filter selects, by name (nats-server sorts them the same way).
fn filtered<'a>(acc: &'a JsAccount, filter: &str) -> Vec<&'a Stream> {
    acc.streams
        .values()
        .filter(|s| {
            filter.is_empty()
                || s.config
                    .subjects
                    .iter()
                    .any(|subj| crate::jetstream::subject::collide(filter, subj))
        })
        .collect()
}

fn page(total: usize, offset: i64) -> usize {
    usize::try_from(offset.max(0))
        .unwrap_or(usize::MAX)
        .min(total)
}

pub(super) fn names(acc: &JsAccount, req: &Request) -> (Response, Count) {
    let Ok((offset, filter)) = parse_list_req(req.payload) else {
        let shape = Shape::paged("stream_names_response", "null");
        return error_reply(shape, &ApiError::new(e::INVALID_JSON));
    };
    let streams = filtered(acc, &filter);
    let offset = page(streams.len(), offset);
    let names: Vec<String> = streams[offset..]
        .iter()
        .take(NAMES_LIMIT)
        .map(|s| s.config.name.clone())
        .collect();
    let mut s = String::with_capacity(200);
    let mut o = Obj::new(&mut s);
    o.str("type", &api_type("stream_names_response"))
        .uint("total", streams.len() as u64)
        .uint("offset", offset as u64)
        .uint("limit", NAMES_LIMIT as u64);
    if names.is_empty() {
        o.raw("streams", "null");
    } else {
        o.strs("streams", &names);
    }
    o.end();
    ok_json(s)
}

pub(super) fn list(acc: &JsAccount, req: &Request) -> (Response, Count) {
    let Ok((offset, filter)) = parse_list_req(req.payload) else {
        let shape = Shape::paged("stream_list_response", "[]");
        return error_reply(shape, &ApiError::new(e::INVALID_JSON));
    };
    let streams = filtered(acc, &filter);
    let offset = page(streams.len(), offset);
    let mut items = Vec::new();
    for st in streams[offset..].iter().take(LIST_LIMIT) {
        let mut one = String::with_capacity(700);
        let mut o = Obj::new(&mut one);
        st.info_fields(&mut o, &StateOpts::default(), true);
        o.end();
        items.push(one);
    }
    let mut s = String::with_capacity(200 + items.iter().map(String::len).sum::<usize>());
    Obj::new(&mut s)
        .str("type", &api_type("stream_list_response"))
        .uint("total", streams.len() as u64)
        .uint("offset", offset as u64)
        .uint("limit", LIST_LIMIT as u64)
        .raw("streams", &format!("[{}]", items.join(",")))
        .end();
    ok_json(s)
}
