//! The API endpoints of features a standalone tern does not have, answered the way a
//! standalone nats-server 2.9.10 answers them where it refuses too (leader step-downs and
//! peer removal need a cluster: 10010; there are no templates: empty lists, 10068), and
//! with a clear refusal where nats-server would go ahead: template creation, snapshots and
//! restores are not supported by tern.

use super::errors::{self as e, ApiError};
use super::{api_type, error_reply, Count, Reply, Request, Response, Shape};
use crate::jetstream::account::JsAccount;
use crate::jetstream::gojson::{self, is_empty_request};
use crate::jetstream::subject;
use crate::protocol::json::Obj;

/// STREAM.LEADER.STEPDOWN, STREAM.PEER.REMOVE, CONSUMER.LEADER.STEPDOWN.
pub(super) fn cluster_required(kind: &'static str) -> (Response, Count) {
    error_reply(Shape::plain(kind), &ApiError::new(e::CLUSTER_REQUIRED))
}

pub(super) fn template_names(req: &Request) -> (Response, Count) {
    let mut offset = 0i64;
    if !is_empty_request(req.payload) {
        let parsed = gojson::decode(req.payload, |k, v| {
            if k == "offset" {
                offset = gojson::int(v, offset)?;
            }
            Ok(())
        });
        if parsed.is_err() {
            let shape = Shape::paged("stream_template_names_response", "null");
            return error_reply(shape, &ApiError::new(e::INVALID_JSON));
        }
    }
    let mut s = String::new();
    Obj::new(&mut s)
        .str("type", &api_type("stream_template_names_response"))
        .int("total", 0)
        .int("offset", 0)
        .int("limit", 1024)
        .raw("streams", "[]")
        .end();
    (Response::reply(Reply::Json(s)), Count::Ok)
}

/// TEMPLATE.INFO / TEMPLATE.DELETE: no template exists.
pub(super) fn template_missing(kind: &'static str, req: &Request) -> (Response, Count) {
    if !is_empty_request(req.payload) {
        return error_reply(Shape::plain(kind), &ApiError::new(e::NOT_EMPTY_REQUEST));
    }
    error_reply(
        Shape::plain(kind),
        &ApiError::new(e::STREAM_TEMPLATE_NOT_FOUND),
    )
}

pub(super) fn template_create(req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::plain("stream_template_create_response");
    let mut tname = String::new();
    let parsed = gojson::decode(req.payload, |k, v| {
        if k == "name" {
            tname = gojson::string(v, &tname)?;
        }
        Ok(())
    });
    if parsed.is_err() {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    }
    if tname != name {
        return error_reply(shape(), &ApiError::new(e::TEMPLATE_NAME_NOT_MATCH_SUBJECT));
    }
    let err = ApiError::with(
        e::STREAM_TEMPLATE_CREATE,
        "stream templates are not supported by tern",
    );
    error_reply(shape(), &err)
}

pub(super) fn snapshot(acc: &JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::plain("stream_snapshot_response");
    if is_empty_request(req.payload) {
        return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
    }
    if !acc.streams.contains_key(name) {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    }
    let mut deliver = String::new();
    let parsed = gojson::decode(req.payload, |k, v| {
        if k == "deliver_subject" {
            deliver = gojson::string(v, &deliver)?;
        }
        Ok(())
    });
    if parsed.is_err() {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    }
    if !subject::is_valid(&deliver) {
        let err = ApiError::with(
            e::SNAPSHOT_DELIVER_SUBJECT_INVALID,
            "deliver subject not valid",
        );
        return error_reply(shape(), &err);
    }
    let text = format!(
        "{}stream snapshots are not supported by tern",
        e::STREAM_SNAPSHOT.2
    );
    error_reply(shape(), &ApiError::with(e::STREAM_SNAPSHOT, text))
}

pub(super) fn restore(req: &Request) -> (Response, Count) {
    let shape = Shape::restore;
    if is_empty_request(req.payload) {
        return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
    }
    if gojson::decode(req.payload, |_, _| Ok(())).is_err() {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    }
    let text = format!(
        "{}stream restores are not supported by tern",
        e::STREAM_RESTORE.2
    );
    error_reply(shape(), &ApiError::with(e::STREAM_RESTORE, text))
}
