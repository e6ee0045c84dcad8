//! Consumer config defaults and validation in nats-server 2.9.10's order:
//! `setConsumerConfigDefaults` (`defaults`), `checkConsumerCfg` (`check`), the
//! ephemeral inactivity default (`updateInactiveThreshold`) and `checkNewConsumerConfig`
//! (`update_check`). Every message is nats-server's own wording.

use super::config::{AckPolicy, ConsumerConfig, DeliverPolicy};
use crate::config::jetstream::JsLimits;
use crate::jetstream::api::errors::{self as e, ApiError};
use crate::jetstream::config::{Retention, StreamConfig};
use crate::jetstream::subject;

pub const MAX_NAME_LEN: usize = 255;
const MAX_DESCRIPTION_LEN: usize = 4 * 1024;
const DEFAULT_MAX_WAITING: i64 = 512;
const DEFAULT_ACK_WAIT: i64 = 30_000_000_000;
const DEFAULT_MAX_ACK_PENDING: i64 = 1000;
/// `JsDeleteWaitTimeDefault`: ephemerals go after 5 s without interest.
pub const DEFAULT_INACTIVE_THRESHOLD: i64 = 5_000_000_000;
const MIN_HEARTBEAT: i64 = 100_000_000;
const MIN_MAX_EXPIRES: i64 = 1_000_000;

/// `setConsumerConfigDefaults` (the server has no JetStream limits of its own in tern, so
/// only the account's max_ack_pending lowers the default).
pub fn defaults(c: &mut ConsumerConfig, lim: &JsLimits) {
    if c.deliver_subject.is_empty() && c.max_waiting == 0 {
        c.max_waiting = DEFAULT_MAX_WAITING;
    }
    if c.ack_wait == 0 && c.acks() {
        c.ack_wait = DEFAULT_ACK_WAIT;
    }
    if c.max_deliver == 0 {
        c.max_deliver = -1;
    }
    if let Some(&first) = c.backoff.first() {
        c.ack_wait = first;
    }
    if c.acks() && c.max_ack_pending == 0 {
        let mut p = DEFAULT_MAX_ACK_PENDING;
        if lim.max_ack_pending > 0 && lim.max_ack_pending < p {
            p = lim.max_ack_pending;
        }
        c.max_ack_pending = p;
    }
}

/// `updateInactiveThreshold`'s config part: ephemerals always have a threshold.
pub fn inactive_default(c: &mut ConsumerConfig) {
    if !c.is_durable() && c.inactive_threshold <= 0 {
        c.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD;
    }
}

/// `checkConsumerCfg`, after `defaults`.
pub fn check(c: &ConsumerConfig, s: &StreamConfig, lim: &JsLimits) -> Result<(), ApiError> {
    // (num_replicas above the stream's cannot get here: the API refuses > 1 first.)
    if c.num_replicas < 0 {
        return Err(ApiError::new(e::REPLICAS_COUNT_CANNOT_BE_NEGATIVE));
    }
    if !c.backoff.is_empty() && c.max_deliver <= c.backoff.len() as i64 {
        return Err(ApiError::new(e::CONSUMER_MAX_DELIVER_BACKOFF));
    }
    if c.description.len() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::suffixed(
            e::CONSUMER_DESCRIPTION_TOO_LONG,
            MAX_DESCRIPTION_LEN,
        ));
    }
    if c.is_push() {
        push_rules(c, s)?;
    } else {
        pull_rules(c, s)?;
    }
    if lim.max_ack_pending > 0 && c.max_ack_pending > lim.max_ack_pending {
        return Err(ApiError::suffixed(
            e::CONSUMER_MAX_PENDING_ACK_EXCESS,
            lim.max_ack_pending,
        ));
    }
    if c.direct {
        if c.is_pull() {
            return Err(ApiError::new(e::CONSUMER_DIRECT_REQUIRES_PUSH));
        }
        if c.is_durable() {
            return Err(ApiError::new(e::CONSUMER_DIRECT_REQUIRES_EPHEMERAL));
        }
    }
    if !c.filter_subject.is_empty() && !valid_filter(&c.filter_subject, &s.subjects) {
        return Err(ApiError::new(e::CONSUMER_FILTER_NOT_SUBSET));
    }
    start_rules(c)?;
    if !c.sample_freq.is_empty() {
        sampling(&c.sample_freq)?;
    }
    if c.flow_control && c.idle_heartbeat == 0 {
        return Err(ApiError::new(e::CONSUMER_FC_NEEDS_HEARTBEATS));
    }
    if !c.durable_name.is_empty() && !c.name.is_empty() && c.name != c.durable_name {
        return Err(ApiError::new(e::CONSUMER_CREATE_DURABLE_AND_NAME_MISMATCH));
    }
    Ok(())
}

fn push_rules(c: &ConsumerConfig, s: &StreamConfig) -> Result<(), ApiError> {
    let d = &c.deliver_subject;
    if !subject::is_literal(d) {
        return Err(ApiError::new(e::CONSUMER_DELIVER_TO_WILDCARDS));
    }
    if !subject::is_valid(d) {
        return Err(ApiError::new(e::CONSUMER_INVALID_DELIVER_SUBJECT));
    }
    if s.subjects.iter().any(|x| subject::is_subset_match(d, x)) {
        return Err(ApiError::new(e::CONSUMER_DELIVER_CYCLE));
    }
    if c.max_waiting != 0 {
        return Err(ApiError::new(e::CONSUMER_PUSH_MAX_WAITING));
    }
    if c.max_ack_pending > 0 && c.ack_policy == AckPolicy::None {
        return Err(ApiError::new(e::CONSUMER_MAX_PENDING_ACK_POLICY_REQUIRED));
    }
    if c.idle_heartbeat > 0 && c.idle_heartbeat < MIN_HEARTBEAT {
        return Err(ApiError::new(e::CONSUMER_SMALL_HEARTBEAT));
    }
    Ok(())
}

fn pull_rules(c: &ConsumerConfig, s: &StreamConfig) -> Result<(), ApiError> {
    if c.ack_policy == AckPolicy::None && s.retention == Retention::WorkQueue {
        return Err(ApiError::new(e::CONSUMER_PULL_REQUIRES_ACK));
    }
    if c.rate_limit_bps > 0 {
        return Err(ApiError::new(e::CONSUMER_PULL_WITH_RATE_LIMIT));
    }
    if c.max_waiting < 0 {
        return Err(ApiError::new(e::CONSUMER_MAX_WAITING_NEGATIVE));
    }
    if c.idle_heartbeat > 0 {
        return Err(ApiError::new(e::CONSUMER_HB_REQUIRES_PUSH));
    }
    if c.flow_control {
        return Err(ApiError::new(e::CONSUMER_FC_REQUIRES_PUSH));
    }
    if c.max_batch < 0 {
        return Err(ApiError::new(e::CONSUMER_MAX_REQUEST_BATCH_NEGATIVE));
    }
    if c.max_expires != 0 && c.max_expires < MIN_MAX_EXPIRES {
        return Err(ApiError::new(e::CONSUMER_MAX_REQUEST_EXPIRES_TOO_SMALL));
    }
    Ok(())
}

/// `validFilteredSubject`.
fn valid_filter(filter: &str, subjects: &[String]) -> bool {
    if !subject::is_valid(filter) {
        return false;
    }
    let wild = !subject::is_literal(filter);
    subjects.iter().any(|s| {
        subject::is_subset_match(filter, s) || (wild && subject::is_subset_match(s, filter))
    })
}

fn start_rules(c: &ConsumerConfig) -> Result<(), ApiError> {
    let bad_start = |dp: &str, start: &str| {
        Err(ApiError::with(
            e::CONSUMER_INVALID_POLICY,
            format!(
                "consumer delivery policy is deliver {dp}, but optional start {start} is also set"
            ),
        ))
    };
    let not_set = |dp: &str, what: &str| {
        Err(ApiError::with(
            e::CONSUMER_INVALID_POLICY,
            format!("consumer delivery policy is deliver {dp}, but optional {what} is not set"),
        ))
    };
    let (seq, time) = (c.opt_start_seq > 0, c.opt_start_time.is_some());
    match c.deliver_policy {
        DeliverPolicy::All | DeliverPolicy::Last | DeliverPolicy::New => {
            let dp = match c.deliver_policy {
                DeliverPolicy::All => "all",
                DeliverPolicy::Last => "last",
                _ => "new",
            };
            if seq {
                return bad_start(dp, "sequence");
            }
            if time {
                return bad_start(dp, "time");
            }
        }
        DeliverPolicy::LastPerSubject => {
            if seq {
                return bad_start("last per subject", "sequence");
            }
            if time {
                return bad_start("last per subject", "time");
            }
            if c.filter_subject.is_empty() {
                return not_set("last per subject", "filter subject");
            }
        }
        DeliverPolicy::ByStartSequence => {
            if !seq {
                return not_set("by start sequence", "start sequence");
            }
            if time {
                return bad_start("by start sequence", "time");
            }
        }
        DeliverPolicy::ByStartTime => {
            if !time {
                return not_set("by start time", "start time");
            }
            if c.opt_start_seq != 0 {
                return bad_start("by start time", "start sequence");
            }
        }
    }
    Ok(())
}

/// `sample_freq`: an integer, optionally followed by `%`, not negative (Go's `strconv.Atoi`
/// error text when it is not a number; a negative one fails with a nil error).
fn sampling(freq: &str) -> Result<(), ApiError> {
    let s = freq.strip_suffix('%').unwrap_or(freq);
    match parse_atoi(s) {
        Some(n) if n >= 0 => Ok(()),
        Some(_) => Err(ApiError::suffixed(e::CONSUMER_INVALID_SAMPLING, "<nil>")),
        None => Err(ApiError::suffixed(
            e::CONSUMER_INVALID_SAMPLING,
            format!(
                "strconv.Atoi: parsing {}: invalid syntax",
                crate::protocol::wire::go_quote(s.as_bytes())
            ),
        )),
    }
}

/// Go's `strconv.Atoi` for what fits an int64 (an optional sign, then digits).
pub fn parse_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The sampling percentage of a checked `sample_freq`.
pub fn sample_percent(freq: &str) -> i64 {
    parse_atoi(freq.strip_suffix('%').unwrap_or(freq)).unwrap_or(0)
}

/// `isValidName`: no whitespace, `.`, `*` or `>`, not empty.
pub fn is_valid_name(name: &str) -> bool {
    crate::jetstream::subject::is_valid_name(name)
}

/// `checkNewConsumerConfig`: what an update may not change (10012 with the reason). The
/// start time is compared as Go compares two `*time.Time`: two configs that both carry
/// one differ, unless the whole configs are equal.
pub fn update_check(
    old: &ConsumerConfig,
    new: &ConsumerConfig,
    deliver_has_interest: bool,
) -> Result<(), ApiError> {
    if old == new {
        return Ok(());
    }
    let refuse = |t: &str| Err(ApiError::with(e::CONSUMER_CREATE, t));
    if old.deliver_policy != new.deliver_policy {
        return refuse("deliver policy can not be updated");
    }
    if old.opt_start_seq != new.opt_start_seq {
        return refuse("start sequence can not be updated");
    }
    if old.opt_start_time.is_some() || new.opt_start_time.is_some() {
        return refuse("start time can not be updated");
    }
    if old.ack_policy != new.ack_policy {
        return refuse("ack policy can not be updated");
    }
    if old.replay_policy != new.replay_policy {
        return refuse("replay policy can not be updated");
    }
    if old.idle_heartbeat != new.idle_heartbeat {
        return refuse("heart beats can not be updated");
    }
    if old.flow_control != new.flow_control {
        return refuse("flow control can not be updated");
    }
    if old.max_waiting != new.max_waiting {
        return refuse("max waiting can not be updated");
    }
    if old.deliver_subject != new.deliver_subject {
        if old.deliver_subject.is_empty() {
            return refuse("can not update pull consumer to push based");
        }
        if new.deliver_subject.is_empty() {
            return refuse("can not update push consumer to pull based");
        }
        if deliver_has_interest {
            return Err(ApiError::new(e::CONSUMER_NAME_EXIST));
        }
    }
    if !new.backoff.is_empty() && new.max_deliver <= new.backoff.len() as i64 {
        return Err(ApiError::new(e::CONSUMER_MAX_DELIVER_BACKOFF));
    }
    Ok(())
}
