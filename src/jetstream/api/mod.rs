//! The `$JS.API` request router: pure functions from a request and the account's JetStream
//! state to a reply; no sockets. The integration hands every message published to
//! `$JS.API.>` in a JetStream-enabled account to `handle` (accounts without JetStream to
//! `not_enabled`) and publishes the reply to the request's reply subject.
//!
//! Subjects the API does not serve get no reply at all, as from nats-server (whose
//! catch-all subscription on `$JS.API.>` means no 503 either): unknown verbs, missing or
//! extra tokens, DIRECT.GET on a stream without `allow_direct`, the system account's
//! META/SERVER/ACCOUNT endpoints, MSG.NEXT to a consumer that does not exist.
//!
//! The api counters follow nats-server: most replies count in `api.total`, errors also in
//! `api.errors`; a successful MSG.GET and every DIRECT.GET count nowhere, and a store
//! failure on MSG.DELETE or PURGE counts as a success.

mod consumers;
pub mod errors;
mod msgs;
mod other;
mod streams;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_delivery;

use super::account::{Env, JsAccount};
use super::store::SyncTarget;
use crate::protocol::json::Obj;
use errors::ApiError;

/// An API request as the client sent it.
pub struct Request<'a> {
    /// The full subject, e.g. `$JS.API.STREAM.INFO.ORDERS`.
    pub subject: &'a str,
    /// The reply subject (empty: none; handlers still run, the reply is dropped).
    pub reply: &'a [u8],
    /// The payload without headers (request headers are ignored, as by nats-server).
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    None,
    Json(String),
    /// DIRECT.GET: a raw message with a header block (or a status-only header).
    Msg {
        hdr: Vec<u8>,
        data: Vec<u8>,
    },
}

/// A change to the streams that the integration must mirror in its subscriptions (each
/// stream's subjects, and its DIRECT.GET subjects when `allow_direct`).
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Updated(String),
    Deleted(String),
    /// (stream, consumer): a push consumer's deliver subject is to be watched
    /// (`JsAccount::set_interest`).
    ConsumerCreated(String, String),
    /// Its deliver subject may have changed.
    ConsumerUpdated(String, String),
    ConsumerDeleted(String, String),
}

#[derive(Debug)]
pub struct Response {
    pub reply: Reply,
    /// The reply reports changes buffered in this stream's store (purge, message delete,
    /// limits lowered by an update): flush that store (and, with `sync: always`, fsync what
    /// the flush wrote) before sending the reply. If the flush fails, send
    /// `failed_reply(subject, error)` instead.
    pub flush: Option<String>,
    /// Files or directories whose fsync makes this change durable (meta.inf written,
    /// a stream directory removed): with `sync: always`, send the reply after it.
    pub sync: Option<SyncTarget>,
    pub change: Option<Change>,
    /// Messages to publish besides the reply (pull request statuses, `409 Consumer
    /// Deleted` to waiting pull requests), in order.
    pub outs: Vec<crate::jetstream::consumer::Out>,
}

impl Response {
    fn none() -> Response {
        Response::reply(Reply::None)
    }

    fn reply(reply: Reply) -> Response {
        Response {
            reply,
            flush: None,
            sync: None,
            change: None,
            outs: Vec::new(),
        }
    }
}

/// How a reply counts in the account's api counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Count {
    Ok,
    Err,
    Not,
}

/// Answers one `$JS.API` request for a JetStream-enabled account.
pub fn handle(acc: &mut JsAccount, env: &Env, req: &Request) -> Response {
    let Some(rest) = req.subject.strip_prefix("$JS.API.") else {
        return Response::none();
    };
    let toks: Vec<&str> = rest.split('.').collect();
    let (resp, count) = match toks.as_slice() {
        ["INFO"] => streams::account_info(acc, env, req),
        ["STREAM", "CREATE", name] => streams::create(acc, env, req, name),
        ["STREAM", "UPDATE", name] => streams::update(acc, env, req, name),
        ["STREAM", "INFO", name] => streams::info(acc, req, name),
        ["STREAM", "DELETE", name] => streams::delete(acc, req, name),
        ["STREAM", "PURGE", name] => streams::purge(acc, req, name),
        ["STREAM", "NAMES"] => streams::names(acc, req),
        ["STREAM", "LIST"] => streams::list(acc, req),
        ["STREAM", "MSG", "GET", name] => msgs::get(acc, req, name),
        ["STREAM", "MSG", "DELETE", name] => msgs::delete(acc, req, name),
        ["DIRECT", "GET", name] => msgs::direct_get(acc, req, name, None),
        ["CONSUMER", ..] => route_consumer(acc, env, req, &toks[1..]),
        ["DIRECT", "GET", name, ..] if toks.len() > 3 => {
            let key = rest.splitn(4, '.').nth(3).unwrap_or_default();
            msgs::direct_get(acc, req, name, Some(key))
        }
        _ => route_other(acc, req, &toks),
    };
    match count {
        Count::Ok => acc.api_total += 1,
        Count::Err => {
            acc.api_total += 1;
            acc.api_errors += 1;
        }
        Count::Not => {}
    }
    resp
}

/// The CONSUMER endpoints (`toks` after `CONSUMER`).
fn route_consumer(
    acc: &mut JsAccount,
    env: &Env,
    req: &Request,
    toks: &[&str],
) -> (Response, Count) {
    use consumers::Form;
    match toks {
        ["CREATE", s] => consumers::create(acc, env, req, Form::Ephemeral, s, "", ""),
        ["CREATE", s, n] => consumers::create(acc, env, req, Form::Named, s, n, ""),
        // A single token after the name is not a filter (nats-server needs two or more).
        ["CREATE", s, n, _] => consumers::create(acc, env, req, Form::Named, s, n, ""),
        ["CREATE", s, n, f @ ..] => {
            let filter = f.join(".");
            consumers::create(acc, env, req, Form::Named, s, n, &filter)
        }
        ["DURABLE", "CREATE", s, d] => consumers::create(acc, env, req, Form::Durable, s, d, ""),
        ["INFO", s, c] => consumers::info(acc, env, req, s, c),
        ["DELETE", s, c] => consumers::delete(acc, req, s, c),
        ["NAMES", s] => consumers::names_or_list(acc, env, req, s, false),
        ["LIST", s] => consumers::names_or_list(acc, env, req, s, true),
        ["MSG", "NEXT", s, c] => consumers::next(acc, env, req, s, c),
        ["LEADER", "STEPDOWN", _, _] => {
            other::cluster_required("consumer_leader_stepdown_response")
        }
        _ => (Response::none(), Count::Not),
    }
}

/// Endpoints of features tern does not have (clustering, templates, snapshots).
fn route_other(acc: &JsAccount, req: &Request, toks: &[&str]) -> (Response, Count) {
    match toks {
        ["STREAM", "LEADER", "STEPDOWN", _] => {
            other::cluster_required("stream_leader_stepdown_response")
        }
        ["STREAM", "PEER", "REMOVE", _] => other::cluster_required("stream_remove_peer_response"),
        ["STREAM", "TEMPLATE", "NAMES"] => other::template_names(req),
        ["STREAM", "TEMPLATE", "INFO", _] => {
            other::template_missing("stream_template_info_response", req)
        }
        ["STREAM", "TEMPLATE", "DELETE", _] => {
            other::template_missing("stream_template_delete_response", req)
        }
        ["STREAM", "TEMPLATE", "CREATE", name] => other::template_create(req, name),
        ["STREAM", "SNAPSHOT", name] => other::snapshot(acc, req, name),
        ["STREAM", "RESTORE", _] => other::restore(req),
        _ => (Response::none(), Count::Not),
    }
}

/// Answers a `$JS.API` request from an account without JetStream (while the server has
/// it): 10039 "JetStream not enabled for account" in the shape of each endpoint's reply.
pub fn not_enabled(req: &Request) -> Response {
    let Some(rest) = req.subject.strip_prefix("$JS.API.") else {
        return Response::none();
    };
    let toks: Vec<&str> = rest.split('.').collect();
    let shape = match toks.as_slice() {
        ["INFO"] => Shape::plain("account_info_response"),
        ["STREAM", "CREATE", _] => Shape::plain("stream_create_response"),
        ["STREAM", "UPDATE", _] => Shape::plain("stream_update_response"),
        ["STREAM", "INFO", _] => Shape::paged("stream_info_response", ""),
        ["STREAM", "DELETE", _] => Shape::plain("stream_delete_response"),
        ["STREAM", "PURGE", _] => Shape::purge(),
        ["STREAM", "NAMES"] => Shape::paged("stream_names_response", "null"),
        ["STREAM", "LIST"] => Shape::paged("stream_list_response", "[]"),
        ["STREAM", "MSG", "GET", _] => Shape::plain("stream_msg_get_response"),
        ["STREAM", "MSG", "DELETE", _] => Shape::plain("stream_msg_delete_response"),
        ["CONSUMER", "CREATE", ..] | ["CONSUMER", "DURABLE", "CREATE", _, _] => {
            Shape::plain("consumer_create_response")
        }
        ["CONSUMER", "INFO", _, _] => Shape::plain("consumer_info_response"),
        ["CONSUMER", "DELETE", _, _] => Shape::plain("consumer_delete_response"),
        ["CONSUMER", "NAMES", _] => Shape::consumers("consumer_names_response"),
        ["CONSUMER", "LIST", _] => Shape::consumers("consumer_list_response"),
        _ => return Response::none(),
    };
    let err = ApiError::new(errors::NOT_ENABLED_FOR_ACCOUNT);
    Response::reply(Reply::Json(shape.error(&err)))
}

/// The reply to send instead of the handler's when the flush it waited for failed
/// (nats-server never gets here: it writes synchronously). 500/10051 with the error.
pub fn failed_reply(subject: &str, err: &str) -> Reply {
    let rest = subject.strip_prefix("$JS.API.").unwrap_or_default();
    let toks: Vec<&str> = rest.split('.').collect();
    let shape = match toks.as_slice() {
        ["STREAM", "PURGE", _] => Shape::purge(),
        ["STREAM", "MSG", "DELETE", _] => Shape::plain("stream_msg_delete_response"),
        ["STREAM", "UPDATE", _] => Shape::plain("stream_update_response"),
        ["STREAM", "CREATE", _] => Shape::plain("stream_create_response"),
        ["STREAM", "DELETE", _] => Shape::plain("stream_delete_response"),
        ["CONSUMER", "DELETE", _, _] => Shape::plain("consumer_delete_response"),
        _ => return Reply::None,
    };
    Reply::Json(shape.error(&ApiError::with(errors::STREAM_GENERAL, err)))
}

/// What an error reply of an endpoint looks like: `type`, `error`, then the fields Go
/// always writes (paging, `streams`, `purged`).
struct Shape {
    kind: &'static str,
    paged: bool,
    tail: &'static str,
}

impl Shape {
    fn plain(kind: &'static str) -> Shape {
        Shape {
            kind,
            paged: false,
            tail: "",
        }
    }

    /// `streams` is the list field's empty value ("" for none).
    fn paged(kind: &'static str, streams: &'static str) -> Shape {
        Shape {
            kind,
            paged: true,
            tail: streams,
        }
    }

    /// Consumer NAMES and LIST: paged, with an empty `consumers` list.
    fn consumers(kind: &'static str) -> Shape {
        Shape {
            kind,
            paged: true,
            tail: "consumers",
        }
    }

    fn purge() -> Shape {
        Shape {
            kind: "stream_purge_response",
            paged: false,
            tail: "purged",
        }
    }

    fn restore() -> Shape {
        Shape {
            kind: "stream_restore_response",
            paged: false,
            tail: "deliver_subject",
        }
    }

    fn error(&self, err: &ApiError) -> String {
        let mut s = String::with_capacity(160);
        let mut o = Obj::new(&mut s);
        o.str("type", &api_type(self.kind))
            .raw("error", &err.json());
        if self.paged {
            o.int("total", 0).int("offset", 0).int("limit", 0);
            if self.tail == "consumers" {
                o.raw("consumers", "[]");
            } else if !self.tail.is_empty() {
                o.raw("streams", self.tail);
            }
        } else if self.tail == "purged" {
            o.int("purged", 0);
        } else if self.tail == "deliver_subject" {
            o.str("deliver_subject", "");
        }
        o.end();
        s
    }
}

/// `io.nats.jetstream.api.v1.<kind>`.
fn api_type(kind: &str) -> String {
    format!("io.nats.jetstream.api.v1.{kind}")
}

/// A JSON reply counted as an error.
fn error_reply(shape: Shape, err: &ApiError) -> (Response, Count) {
    (Response::reply(Reply::Json(shape.error(err))), Count::Err)
}
