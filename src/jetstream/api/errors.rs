//! The JetStream error catalog tern uses: HTTP-like code, `err_code` and description exactly
//! as nats-server 2.9.10's `server/errors.json` words them. Entries whose description is
//! `{err}` in errors.json carry the text of the underlying failure instead (`ApiError::with`).

use crate::protocol::json::Obj;

/// An error as it appears in a JSON reply: `{"code":400,"err_code":10003,"description":"..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

/// One catalog entry: (code, err_code, description).
#[derive(Clone, Copy, Debug)]
pub struct Def(pub u16, pub u16, pub &'static str);

pub const ACCOUNT_RESOURCES_EXCEEDED: Def = Def(400, 10002, "resource limits exceeded for account");
pub const BAD_REQUEST: Def = Def(400, 10003, "bad request");
pub const CLUSTER_REQUIRED: Def = Def(503, 10010, "JetStream clustering support required");
pub const INSUFFICIENT_RESOURCES: Def = Def(503, 10023, "insufficient resources");
pub const INVALID_JSON: Def = Def(400, 10025, "invalid JSON");
pub const MAXIMUM_CONSUMERS_LIMIT: Def = Def(400, 10026, "maximum consumers limit reached");
pub const MAXIMUM_STREAMS_LIMIT: Def = Def(400, 10027, "maximum number of streams reached");
pub const MEMORY_RESOURCES_EXCEEDED: Def =
    Def(500, 10028, "insufficient memory resources available");
pub const MIRROR_WITH_SOURCES: Def = Def(
    400,
    10031,
    "stream mirrors can not also contain other sources",
);
pub const MIRROR_WITH_SUBJECTS: Def = Def(400, 10034, "stream mirrors can not contain subjects");
pub const NO_MESSAGE_FOUND: Def = Def(404, 10037, "no message found");
pub const NOT_EMPTY_REQUEST: Def = Def(400, 10038, "expected an empty request payload");
pub const NOT_ENABLED_FOR_ACCOUNT: Def = Def(503, 10039, "JetStream not enabled for account");
pub const STORAGE_RESOURCES_EXCEEDED: Def =
    Def(500, 10047, "insufficient storage resources available");
/// `{err}`: stream create failed for a reason outside the config checks.
pub const STREAM_CREATE: Def = Def(500, 10049, "");
/// `{err}`: deleting the stream's files failed.
pub const STREAM_DELETE: Def = Def(500, 10050, "");
/// `{err}`: a store failure on purge.
pub const STREAM_GENERAL: Def = Def(500, 10051, "");
/// `{err}`: an invalid stream config (checkStreamCfg and the update rules).
pub const STREAM_INVALID_CONFIG: Def = Def(500, 10052, "");
pub const STREAM_MESSAGE_EXCEEDS_MAXIMUM: Def =
    Def(400, 10054, "message size exceeds maximum allowed");
pub const STREAM_MIRROR_NOT_UPDATABLE: Def =
    Def(400, 10055, "stream mirror configuration can not be updated");
pub const STREAM_MISMATCH: Def = Def(400, 10056, "stream name in subject does not match request");
/// `{err}`: a message delete that failed in the store.
pub const STREAM_MSG_DELETE_FAILED: Def = Def(500, 10057, "");
pub const STREAM_NAME_EXIST: Def = Def(
    400,
    10058,
    "stream name already in use with a different configuration",
);
pub const STREAM_NOT_FOUND: Def = Def(404, 10059, "stream not found");
pub const STREAM_NOT_MATCH: Def = Def(400, 10060, "expected stream does not match");
pub const STREAM_SUBJECT_OVERLAP: Def = Def(400, 10065, "subjects overlap with an existing stream");
pub const STREAM_REPLICAS_NOT_SUPPORTED: Def = Def(
    500,
    10074,
    "replicas > 1 not supported in non-clustered mode",
);
/// `{err}`: the store refused the message (discard new limits, a write failure).
pub const STREAM_STORE_FAILED: Def = Def(503, 10077, "");
pub const STREAM_HEADER_EXCEEDS_MAXIMUM: Def =
    Def(400, 10097, "header size exceeds maximum allowed of 64k");
pub const STREAM_SEALED: Def = Def(400, 10109, "invalid operation on sealed stream");
/// `{err}`: purge refused.
pub const STREAM_PURGE_FAILED: Def = Def(500, 10110, "");
/// `{err}`: rollup refused.
pub const STREAM_ROLLUP_FAILED: Def = Def(500, 10111, "");
pub const STREAM_MAX_BYTES_REQUIRED: Def = Def(
    400,
    10113,
    "account requires a stream config to have max bytes set",
);
pub const STREAM_MAX_STREAM_BYTES_EXCEEDED: Def = Def(
    400,
    10122,
    "stream max bytes exceeds account limit max stream bytes",
);
pub const STREAM_NAME_CONTAINS_PATH_SEPARATORS: Def =
    Def(400, 10128, "Stream name can not contain path separators");
/// `restore failed: {err}` (the prefix is part of the catalog's description).
pub const STREAM_RESTORE: Def = Def(500, 10062, "restore failed: ");
/// `snapshot failed: {err}`.
pub const STREAM_SNAPSHOT: Def = Def(500, 10064, "snapshot failed: ");
/// `{err}`: template create failed.
pub const STREAM_TEMPLATE_CREATE: Def = Def(500, 10066, "");
pub const SNAPSHOT_DELIVER_SUBJECT_INVALID: Def = Def(400, 10015, "deliver subject not valid");
pub const STREAM_TEMPLATE_NOT_FOUND: Def = Def(404, 10068, "template not found");
pub const TEMPLATE_NAME_NOT_MATCH_SUBJECT: Def = Def(
    400,
    10073,
    "template name in subject does not match request",
);
pub const REPLICAS_COUNT_CANNOT_BE_NEGATIVE: Def =
    Def(400, 10133, "replicas count cannot be negative");

// Consumers (issue 12).
/// `{err}`: consumer create or update failed (update rules, store).
pub const CONSUMER_CREATE: Def = Def(500, 10012, "");
pub const CONSUMER_NAME_EXIST: Def = Def(400, 10013, "consumer name already in use");
pub const CONSUMER_NOT_FOUND: Def = Def(404, 10014, "consumer not found");
pub const CONSUMER_DURABLE_NAME_NOT_MATCH_SUBJECT: Def = Def(
    400,
    10017,
    "consumer name in subject does not match durable name in request",
);
pub const CONSUMER_DURABLE_NAME_NOT_SET: Def = Def(
    400,
    10018,
    "consumer expected to be durable but a durable name was not set",
);
pub const CONSUMER_EPHEMERAL_WITH_DURABLE_NAME: Def = Def(
    400,
    10020,
    "consumer expected to be ephemeral but a durable name was set in request",
);
pub const CONSUMER_DELIVER_TO_WILDCARDS: Def =
    Def(400, 10079, "consumer deliver subject has wildcards");
pub const CONSUMER_PUSH_MAX_WAITING: Def =
    Def(400, 10080, "consumer in push mode can not set max waiting");
pub const CONSUMER_DELIVER_CYCLE: Def = Def(400, 10081, "consumer deliver subject forms a cycle");
pub const CONSUMER_MAX_PENDING_ACK_POLICY_REQUIRED: Def = Def(
    400,
    10082,
    "consumer requires ack policy for max ack pending",
);
pub const CONSUMER_SMALL_HEARTBEAT: Def =
    Def(400, 10083, "consumer idle heartbeat needs to be >= 100ms");
pub const CONSUMER_PULL_REQUIRES_ACK: Def =
    Def(400, 10084, "consumer in pull mode requires ack policy");
pub const CONSUMER_PULL_WITH_RATE_LIMIT: Def = Def(
    400,
    10086,
    "consumer in pull mode can not have rate limit set",
);
pub const CONSUMER_MAX_WAITING_NEGATIVE: Def =
    Def(400, 10087, "consumer max waiting needs to be positive");
pub const CONSUMER_HB_REQUIRES_PUSH: Def = Def(
    400,
    10088,
    "consumer idle heartbeat requires a push based consumer",
);
pub const CONSUMER_FC_REQUIRES_PUSH: Def = Def(
    400,
    10089,
    "consumer flow control requires a push based consumer",
);
pub const CONSUMER_DIRECT_REQUIRES_PUSH: Def =
    Def(400, 10090, "consumer direct requires a push based consumer");
pub const CONSUMER_DIRECT_REQUIRES_EPHEMERAL: Def =
    Def(400, 10091, "consumer direct requires an ephemeral consumer");
pub const CONSUMER_FILTER_NOT_SUBSET: Def = Def(
    400,
    10093,
    "consumer filter subject is not a valid subset of the interest subjects",
);
/// `{err}`: deliver policy and opt_start fields disagree.
pub const CONSUMER_INVALID_POLICY: Def = Def(400, 10094, "");
/// `failed to parse consumer sampling configuration: {err}`.
pub const CONSUMER_INVALID_SAMPLING: Def = Def(
    400,
    10095,
    "failed to parse consumer sampling configuration: ",
);
pub const CONSUMER_WQ_REQUIRES_EXPLICIT_ACK: Def =
    Def(400, 10098, "workqueue stream requires explicit ack");
pub const CONSUMER_WQ_MULTIPLE_UNFILTERED: Def = Def(
    400,
    10099,
    "multiple non-filtered consumers not allowed on workqueue stream",
);
pub const CONSUMER_WQ_NOT_UNIQUE: Def = Def(
    400,
    10100,
    "filtered consumer not unique on workqueue stream",
);
pub const CONSUMER_WQ_NOT_DELIVER_ALL: Def = Def(
    400,
    10101,
    "consumer must be deliver all on workqueue stream",
);
/// `consumer name is too long, maximum allowed is {max}`.
pub const CONSUMER_NAME_TOO_LONG: Def =
    Def(400, 10102, "consumer name is too long, maximum allowed is ");
pub const CONSUMER_BAD_DURABLE_NAME: Def =
    Def(400, 10103, "durable name can not contain '.', '*', '>'");
/// `consumer description is too long, maximum allowed is {max}`.
pub const CONSUMER_DESCRIPTION_TOO_LONG: Def = Def(
    400,
    10107,
    "consumer description is too long, maximum allowed is ",
);
pub const CONSUMER_FC_NEEDS_HEARTBEATS: Def = Def(
    400,
    10108,
    "consumer with flow control also needs heartbeats",
);
pub const CONSUMER_INVALID_DELIVER_SUBJECT: Def =
    Def(400, 10112, "invalid push consumer deliver subject");
pub const CONSUMER_MAX_REQUEST_BATCH_NEGATIVE: Def =
    Def(400, 10114, "consumer max request batch needs to be > 0");
pub const CONSUMER_MAX_REQUEST_EXPIRES_TOO_SMALL: Def = Def(
    400,
    10115,
    "consumer max request expires needs to be >= 1ms",
);
pub const CONSUMER_MAX_DELIVER_BACKOFF: Def = Def(
    400,
    10116,
    "max deliver is required to be > length of backoff values",
);
/// `consumer max ack pending exceeds system limit of {limit}`.
pub const CONSUMER_MAX_PENDING_ACK_EXCESS: Def = Def(
    400,
    10121,
    "consumer max ack pending exceeds system limit of ",
);
pub const CONSUMER_NAME_CONTAINS_PATH_SEPARATORS: Def =
    Def(400, 10127, "Consumer name can not contain path separators");
pub const CONSUMER_CREATE_FILTER_SUBJECT_MISMATCH: Def = Def(
    400,
    10131,
    "Consumer create request did not match filtered subject from create subject",
);
pub const CONSUMER_CREATE_DURABLE_AND_NAME_MISMATCH: Def = Def(
    400,
    10132,
    "Consumer Durable and Name have to be equal if both are provided",
);

impl ApiError {
    /// The catalog entry with its own description.
    pub fn new(d: Def) -> ApiError {
        ApiError {
            code: d.0,
            err_code: d.1,
            description: d.2.to_string(),
        }
    }

    /// A `{err}` entry carrying the failure's text.
    pub fn with(d: Def, text: impl Into<String>) -> ApiError {
        ApiError {
            code: d.0,
            err_code: d.1,
            description: text.into(),
        }
    }

    /// A catalog entry whose description is a prefix, followed by `tail`.
    pub fn suffixed(d: Def, tail: impl std::fmt::Display) -> ApiError {
        ApiError {
            code: d.0,
            err_code: d.1,
            description: format!("{}{tail}", d.2),
        }
    }

    /// `JSStreamInvalidConfigF` with its text (the most common rejection).
    pub fn invalid_config(text: impl Into<String>) -> ApiError {
        ApiError::with(STREAM_INVALID_CONFIG, text)
    }

    /// 10043 `sequence {seq} not found`.
    pub fn sequence_not_found(seq: u64) -> ApiError {
        ApiError {
            code: 400,
            err_code: 10043,
            description: format!("sequence {seq} not found"),
        }
    }

    /// 10071 `wrong last sequence: {seq}`.
    pub fn wrong_last_sequence(seq: u64) -> ApiError {
        ApiError {
            code: 400,
            err_code: 10071,
            description: format!("wrong last sequence: {seq}"),
        }
    }

    /// 10070 `wrong last msg ID: {id}`.
    pub fn wrong_last_msg_id(id: &str) -> ApiError {
        ApiError {
            code: 400,
            err_code: 10070,
            description: format!("wrong last msg ID: {id}"),
        }
    }

    /// The `error` object's JSON (Go omits an empty description).
    pub fn json(&self) -> String {
        let mut s = String::new();
        let mut o = Obj::new(&mut s);
        o.uint("code", u64::from(self.code))
            .uint("err_code", u64::from(self.err_code));
        if !self.description.is_empty() {
            o.str("description", &self.description);
        }
        o.end();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_nats_server() {
        assert_eq!(
            ApiError::new(STREAM_REPLICAS_NOT_SUPPORTED).json(),
            r#"{"code":500,"err_code":10074,"description":"replicas \u003e 1 not supported in non-clustered mode"}"#
        );
        assert_eq!(
            ApiError::wrong_last_sequence(3).json(),
            r#"{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}"#
        );
        assert_eq!(
            ApiError::invalid_config("max age needs to be >= 100ms").description,
            "max age needs to be >= 100ms"
        );
    }
}
