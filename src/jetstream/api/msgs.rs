//! STREAM.MSG.GET, STREAM.MSG.DELETE and DIRECT.GET (both forms).
//!
//! MSG.GET answers JSON with the message's headers and data in base64 (Go's `[]byte`);
//! DIRECT.GET answers the raw message with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence`
//! and `Nats-Time-Stamp` headers appended, or a status (`404 Message Not Found`,
//! `408 Empty Request` ...). DIRECT.GET is served only for streams with `allow_direct`.

use super::errors::{self as e, ApiError};
use super::{api_type, error_reply, Count, Reply, Request, Response, Shape};
use crate::jetstream::account::JsAccount;
use crate::jetstream::gojson::{self, is_empty_request, BadJson};
use crate::jetstream::headers;
use crate::jetstream::store::StoredMsg;
use crate::jetstream::stream::ts_string;
use crate::protocol::json::Obj;

/// `{"seq":n,"last_by_subj":s,"next_by_subj":s}` (MSG.GET and DIRECT.GET).
#[derive(Default)]
struct GetReq {
    seq: u64,
    last_by: String,
    next_by: String,
}

fn parse_get(payload: &[u8]) -> Result<GetReq, BadJson> {
    let mut r = GetReq::default();
    gojson::decode(payload, |k, v| {
        match k {
            "seq" => r.seq = gojson::uint(v, r.seq)?,
            "last_by_subj" => r.last_by = gojson::string(v, &r.last_by)?,
            "next_by_subj" => r.next_by = gojson::string(v, &r.next_by)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(r)
}

impl GetReq {
    /// Nothing asked, or both a sequence and last-by-subject, or last and next together.
    fn conflicting(&self) -> bool {
        let (seq, last, next) = (
            self.seq > 0,
            !self.last_by.is_empty(),
            !self.next_by.is_empty(),
        );
        (seq && last) || (!seq && !last && !next) || (last && next)
    }
}

pub(super) fn get(acc: &JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::plain("stream_msg_get_response");
    if is_empty_request(req.payload) {
        return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
    }
    let Ok(r) = parse_get(req.payload) else {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    };
    if r.conflicting() {
        return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
    }
    let Some(stream) = acc.streams.get(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    let Some(m) = stream.get(r.seq, &r.last_by, &r.next_by) else {
        return error_reply(shape(), &ApiError::new(e::NO_MESSAGE_FOUND));
    };
    let mut s = String::with_capacity(128 + (m.hdr().len() + m.data().len()) * 4 / 3);
    Obj::new(&mut s)
        .str("type", &api_type("stream_msg_get_response"))
        .raw("message", &message_json(&m))
        .end();
    // nats-server sends this one past its API accounting.
    (Response::reply(Reply::Json(s)), Count::Not)
}

/// `{"subject":..,"seq":..,"hdrs":b64,"data":b64,"time":..}` (empty hdrs/data left out).
fn message_json(m: &StoredMsg) -> String {
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("subject", &String::from_utf8_lossy(m.subject()))
        .uint("seq", m.seq);
    if !m.hdr().is_empty() {
        o.str("hdrs", &base64(m.hdr()));
    }
    if !m.data().is_empty() {
        o.str("data", &base64(m.data()));
    }
    o.str("time", &ts_string(m.ts)).end();
    s
}

pub(super) fn delete(acc: &mut JsAccount, req: &Request, name: &str) -> (Response, Count) {
    let shape = || Shape::plain("stream_msg_delete_response");
    if is_empty_request(req.payload) {
        return error_reply(shape(), &ApiError::new(e::BAD_REQUEST));
    }
    let (mut seq, mut no_erase) = (0u64, false);
    let parsed = gojson::decode(req.payload, |k, v| {
        match k {
            "seq" => seq = gojson::uint(v, seq)?,
            "no_erase" => no_erase = gojson::boolean(v, no_erase)?,
            _ => {}
        }
        Ok(())
    });
    if parsed.is_err() {
        return error_reply(shape(), &ApiError::new(e::INVALID_JSON));
    }
    let Some(stream) = acc.streams.get_mut(name) else {
        return error_reply(shape(), &ApiError::new(e::STREAM_NOT_FOUND));
    };
    if stream.config.sealed {
        return error_reply(shape(), &ApiError::new(e::STREAM_SEALED));
    }
    if stream.config.deny_delete {
        let err = ApiError::with(e::STREAM_MSG_DELETE_FAILED, "message delete not permitted");
        return error_reply(shape(), &err);
    }
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    o.str("type", &api_type("stream_msg_delete_response"));
    let mut resp = Response::reply(Reply::None);
    match stream.delete_msg(seq, !no_erase) {
        Ok(()) => {
            o.bool("success", true);
            resp.flush = Some(name.to_string());
        }
        // nats-server counts these as successful API calls.
        Err(err) => {
            o.raw("error", &err.json());
        }
    }
    o.end();
    resp.reply = Reply::Json(s);
    (resp, Count::Ok)
}

pub(super) fn direct_get(
    acc: &JsAccount,
    req: &Request,
    name: &str,
    key: Option<&str>,
) -> (Response, Count) {
    let Some(stream) = acc.streams.get(name).filter(|s| s.config.allow_direct) else {
        return (Response::none(), Count::Not);
    };
    if req.reply.is_empty() {
        return (Response::none(), Count::Not);
    }
    let status = |code, text| {
        let reply = Reply::Msg {
            hdr: headers::status(code, text),
            data: Vec::new(),
        };
        (Response::reply(reply), Count::Not)
    };
    let r = match key {
        Some(_) if !req.payload.is_empty() => return status(408, "Bad Request"),
        Some("") => return status(408, "Bad Request"),
        Some(k) => GetReq {
            last_by: k.to_string(),
            ..GetReq::default()
        },
        None if req.payload.is_empty() => return status(408, "Empty Request"),
        None => match parse_get(req.payload) {
            Err(_) => return status(408, "Malformed Request"),
            Ok(r) if r.seq == 0 && r.last_by.is_empty() && r.next_by.is_empty() => {
                return status(408, "Empty Request")
            }
            Ok(r) if r.conflicting() => return status(408, "Bad Request"),
            Ok(r) => r,
        },
    };
    let Some(m) = stream.get(r.seq, &r.last_by, &r.next_by) else {
        return status(404, "Message Not Found");
    };
    let reply = Reply::Msg {
        hdr: stream.direct_headers(&m),
        data: m.data().to_vec(),
    };
    (Response::reply(reply), Count::Not)
}

/// Standard base64 with padding (Go's `[]byte` in JSON).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("two", "dHdv"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(
            base64(b"NATS/1.0\r\nK: v\r\n\r\n"),
            "TkFUUy8xLjANCks6IHYNCg0K"
        );
    }
}
