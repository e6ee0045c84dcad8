//! Stream config defaults and validation in nats-server 2.9.10's order: `checkStreamCfg`
//! (`check`), the create-only rules of the STREAM.CREATE handler (`create_rules`), and
//! `configUpdateCheck` (`update_check`). Every message is nats-server's own wording; the
//! first failing rule wins, so the order of the checks is part of the behaviour.
//!
//! Where tern differs: mirrors and sources are refused (tern has no stream sourcing), and
//! `storage: any` is refused (nats-server 2.9.10 accepts it and then crashes).

use super::account::JsLimits;
use super::api::errors::{self as e, ApiError};
use super::config::{Discard, Storage, StreamConfig};
use super::subject;
pub use super::subject::is_valid_name;
use super::transform::Transform;
use crate::protocol::wire::go_quote;
use crate::util::timefmt::go_duration;
use std::time::Duration;

const MAX_NAME_LEN: usize = 255;
const MAX_DESCRIPTION_LEN: usize = 4 * 1024;
const MAX_REPLICAS: i64 = 5;
const DEFAULT_DUPLICATE_WINDOW: i64 = 120_000_000_000;
const MIN_WINDOW: i64 = 100_000_000;
/// Wildcard subject comparisons a config check may make (a few tens of ms at most).
pub const MAX_SUBJECT_PAIRS: usize = 1 << 20;

/// What validation needs from outside the config.
pub struct CheckCtx<'a> {
    pub limits: &'a JsLimits,
    /// The server's `jetstream { limits { duplicate_window } }` in ns (0: none).
    pub max_duplicate_window: i64,
}

/// The STREAM.CREATE handler's own rules, checked before `check`.
pub fn create_rules(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.name.contains(['/', '\\']) {
        return Err(ApiError::new(e::STREAM_NAME_CONTAINS_PATH_SEPARATORS));
    }
    if cfg.sealed {
        return Err(ApiError::invalid_config(
            "stream configuration for create can not be sealed",
        ));
    }
    if cfg.mirror_direct && cfg.mirror.is_none() {
        return Err(ApiError::invalid_config(
            "stream has no mirror but does have mirror direct",
        ));
    }
    Ok(())
}

/// `checkStreamCfg`: the config with defaults applied, or the first rule it breaks.
pub fn check(config: &StreamConfig, ctx: &CheckCtx) -> Result<StreamConfig, ApiError> {
    if !is_valid_name(&config.name) {
        return Err(ApiError::invalid_config(
            "stream name is required and can not contain '.', '*', '>'",
        ));
    }
    if config.name.len() > MAX_NAME_LEN {
        return Err(ApiError::invalid_config(format!(
            "stream name is too long, maximum allowed is {MAX_NAME_LEN}"
        )));
    }
    if config.description.len() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::invalid_config(format!(
            "stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}"
        )));
    }
    let mut cfg = config.clone();
    defaults(&mut cfg, ctx)?;
    windows(&cfg, ctx)?;
    if cfg.deny_purge && cfg.allow_rollup_hdrs {
        return Err(ApiError::invalid_config(
            "roll-ups require the purge permission",
        ));
    }
    discard_new_per_subject(&cfg)?;
    mirrors(&cfg)?;
    subjects(&mut cfg)?;
    stream_bytes(&cfg, ctx.limits)?;
    republish(&mut cfg)?;
    Ok(cfg)
}

fn defaults(cfg: &mut StreamConfig, ctx: &CheckCtx) -> Result<(), ApiError> {
    match cfg.storage {
        Storage::Unset => cfg.storage = Storage::File,
        Storage::Any => return Err(ApiError::invalid_config("invalid storage type")),
        _ => {}
    }
    if cfg.num_replicas == 0 {
        cfg.num_replicas = 1;
    }
    if cfg.num_replicas > MAX_REPLICAS {
        return Err(ApiError::invalid_config(format!(
            "maximum replicas is {MAX_REPLICAS}"
        )));
    }
    if cfg.num_replicas < 0 {
        return Err(ApiError::new(e::REPLICAS_COUNT_CANNOT_BE_NEGATIVE));
    }
    for v in [
        &mut cfg.max_msgs,
        &mut cfg.max_msgs_per_subject,
        &mut cfg.max_bytes,
        &mut cfg.max_msg_size,
        &mut cfg.max_consumers,
    ] {
        if *v == 0 {
            *v = -1;
        }
    }
    if cfg.duplicate_window == 0 && cfg.mirror.is_none() {
        let mut window = DEFAULT_DUPLICATE_WINDOW;
        if ctx.max_duplicate_window > 0 && window > ctx.max_duplicate_window {
            window = ctx.max_duplicate_window;
        }
        cfg.duplicate_window = if cfg.max_age != 0 && cfg.max_age < window {
            cfg.max_age
        } else {
            window
        };
    }
    Ok(())
}

fn windows(cfg: &StreamConfig, ctx: &CheckCtx) -> Result<(), ApiError> {
    if cfg.max_age > 0 && cfg.max_age < MIN_WINDOW {
        return Err(ApiError::invalid_config("max age needs to be >= 100ms"));
    }
    if cfg.duplicate_window < 0 {
        return Err(ApiError::invalid_config(
            "duplicates window can not be negative",
        ));
    }
    if cfg.max_age != 0 && cfg.duplicate_window > cfg.max_age {
        return Err(ApiError::invalid_config(
            "duplicates window can not be larger then max age",
        ));
    }
    let limit = ctx.max_duplicate_window;
    if limit > 0 && cfg.duplicate_window > limit {
        let d = go_duration(Duration::from_nanos(limit as u64));
        return Err(ApiError::invalid_config(format!(
            "duplicates window can not be larger then server limit of {d}"
        )));
    }
    if cfg.duplicate_window > 0 && cfg.duplicate_window < MIN_WINDOW {
        return Err(ApiError::invalid_config(
            "duplicates window needs to be >= 100ms",
        ));
    }
    Ok(())
}

fn discard_new_per_subject(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.discard_new_per_subject {
        if cfg.discard != Discard::New {
            return Err(ApiError::invalid_config(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if cfg.max_msgs_per_subject <= 0 {
            return Err(ApiError::invalid_config(
                "discard new per subject requires max msgs per subject > 0",
            ));
        }
    }
    Ok(())
}

/// nats-server's own mirror rules first, then tern's refusal of sourcing altogether.
fn mirrors(cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.mirror.is_some() {
        if !cfg.subjects.is_empty() {
            return Err(ApiError::new(e::MIRROR_WITH_SUBJECTS));
        }
        if !cfg.sources.is_empty() {
            return Err(ApiError::new(e::MIRROR_WITH_SOURCES));
        }
        return Err(ApiError::invalid_config(
            "stream mirrors are not supported by tern",
        ));
    }
    if !cfg.sources.is_empty() {
        return Err(ApiError::invalid_config(
            "stream sources are not supported by tern",
        ));
    }
    Ok(())
}

fn subjects(cfg: &mut StreamConfig) -> Result<(), ApiError> {
    if cfg.subjects.is_empty() {
        cfg.subjects.push(cfg.name.clone());
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(cfg.subjects.len());
    for s in &cfg.subjects {
        if !seen.insert(s.as_str()) {
            return Err(ApiError::invalid_config("duplicate subjects detected"));
        }
        if subject::is_subset_match(s, "$JS.API.>") {
            return Err(ApiError::invalid_config(
                "subjects overlap with jetstream api",
            ));
        }
        if !subject::is_valid(s) {
            return Err(ApiError::invalid_config("invalid subject"));
        }
    }
    Ok(())
}

/// Max-bytes account rules, then the stream's own subjects against each other.
fn stream_bytes(cfg: &StreamConfig, limits: &JsLimits) -> Result<(), ApiError> {
    let limit = if cfg.storage == Storage::Memory {
        limits.memory_max_stream_bytes
    } else {
        limits.store_max_stream_bytes
    };
    if limits.max_bytes_required && cfg.max_bytes <= 0 {
        return Err(ApiError::new(e::STREAM_MAX_BYTES_REQUIRED));
    }
    if limit > 0 && cfg.max_bytes > limit {
        return Err(ApiError::new(e::STREAM_MAX_STREAM_BYTES_EXCEEDED));
    }
    self_overlap(&cfg.subjects)
}

/// The stream's subjects must not overlap each other; the first pair in nats-server's
/// loop order is reported. Distinct literal subjects never collide (duplicates were refused
/// before), so only pairs with a wildcard are compared, and their number is bounded: the
/// check runs on the loop thread (nats-server has no bound, and takes its time).
fn self_overlap(subjects: &[String]) -> Result<(), ApiError> {
    let wild: Vec<&String> = subjects
        .iter()
        .filter(|s| !subject::is_literal(s))
        .collect();
    if wild.len().saturating_mul(subjects.len()) > MAX_SUBJECT_PAIRS {
        return Err(ApiError::invalid_config(format!(
            "too many wildcard subjects: tern compares at most {MAX_SUBJECT_PAIRS} pairs"
        )));
    }
    let all: Vec<&String> = subjects.iter().collect();
    for a in subjects {
        let others = if subject::is_literal(a) { &wild } else { &all };
        if let Some(b) = others.iter().find(|b| a != **b && subject::collide(a, b)) {
            return Err(ApiError::invalid_config(format!(
                "subject {} overlaps with {}",
                go_quote(a.as_bytes()),
                go_quote(b.as_bytes())
            )));
        }
    }
    Ok(())
}

fn republish(cfg: &mut StreamConfig) -> Result<(), ApiError> {
    let subjects = cfg.subjects.clone();
    let Some(rp) = cfg.republish.as_mut() else {
        return Ok(());
    };
    if rp.src.is_empty() {
        rp.src = ">".to_string();
    }
    if !subjects.iter().any(|s| subject::collide(&rp.src, s)) {
        return Err(ApiError::invalid_config(
            "stream configuration for republish source is not valid subset of subjects",
        ));
    }
    if subjects.iter().any(|s| subject::collide(&rp.dest, s)) {
        return Err(ApiError::invalid_config(
            "stream configuration for republish destination forms a cycle",
        ));
    }
    if Transform::new(&rp.src, &rp.dest).is_none() {
        return Err(ApiError::invalid_config(
            "stream configuration for republish not valid",
        ));
    }
    Ok(())
}

/// `configUpdateCheck` without the limits (see account.rs): the new config with defaults
/// applied, or the first rule the change breaks.
pub fn update_check(
    old: &StreamConfig,
    new: &StreamConfig,
    ctx: &CheckCtx,
) -> Result<StreamConfig, ApiError> {
    let mut cfg = check(new, ctx)?;
    let refuse = |t: &str| Err(ApiError::invalid_config(t));
    if cfg.name != old.name {
        return refuse("stream configuration name must match original");
    }
    if cfg.max_consumers != old.max_consumers {
        return refuse("stream configuration update can not change MaxConsumers");
    }
    if cfg.storage != old.storage {
        return refuse("stream configuration update can not change storage type");
    }
    if cfg.retention != old.retention {
        return refuse("stream configuration update can not change retention policy");
    }
    if !old.template_owner.is_empty() {
        return refuse("stream configuration update not allowed on template owned stream");
    }
    if !cfg.template_owner.is_empty() {
        return refuse("stream configuration update can not be owned by a template");
    }
    if !cfg.sealed && old.sealed {
        return refuse("stream configuration update can not unseal a sealed stream");
    }
    if !cfg.deny_delete && old.deny_delete {
        return refuse("stream configuration update can not cancel deny message deletes");
    }
    if !cfg.deny_purge && old.deny_purge {
        return refuse("stream configuration update can not cancel deny purge");
    }
    if cfg.mirror != old.mirror {
        return Err(ApiError::new(e::STREAM_MIRROR_NOT_UPDATABLE));
    }
    if cfg.republish != old.republish {
        return refuse("stream configuration update can not change RePublish");
    }
    discard_new_per_subject(&cfg)?;
    if cfg.sealed {
        cfg.max_age = 0;
        cfg.discard = Discard::New;
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jetstream::config::parse;

    fn checked(body: &str) -> Result<StreamConfig, String> {
        let limits = JsLimits::default();
        let ctx = CheckCtx {
            limits: &limits,
            max_duplicate_window: 0,
        };
        check(&parse(body.as_bytes()).unwrap(), &ctx).map_err(|e| e.description)
    }

    #[test]
    fn defaults_like_nats_server() {
        let c = checked(r#"{"name":"ORDERS"}"#).unwrap();
        assert_eq!(c.subjects, vec!["ORDERS".to_string()]);
        assert_eq!((c.max_msgs, c.max_bytes, c.max_msg_size), (-1, -1, -1));
        assert_eq!((c.max_consumers, c.max_msgs_per_subject), (-1, -1));
        assert_eq!((c.num_replicas, c.storage), (1, Storage::File));
        assert_eq!(c.duplicate_window, 120_000_000_000);
        let c = checked(r#"{"name":"A","max_age":1000000000}"#).unwrap();
        assert_eq!(c.duplicate_window, 1_000_000_000);
        let c = checked(r#"{"name":"A","max_msg_size":-5}"#).unwrap();
        assert_eq!(c.max_msg_size, -5);
        let c = checked(r#"{"name":"A","subjects":["a"],"republish":{"dest":"b.>"}}"#).unwrap();
        assert_eq!(c.republish.unwrap().src, ">");
    }

    #[test]
    fn rules_in_order() {
        let cases = [
            (
                r#"{"name":"a.b"}"#,
                "stream name is required and can not contain '.', '*', '>'",
            ),
            (
                r#"{"name":"E","max_age":-1}"#,
                "duplicates window can not be negative",
            ),
            (r#"{"name":"E","num_replicas":6}"#, "maximum replicas is 5"),
            (r#"{"name":"E","storage":"any"}"#, "invalid storage type"),
            (
                r#"{"name":"E","subjects":["x.*","x.a"]}"#,
                r#"subject "x.*" overlaps with "x.a""#,
            ),
            (
                r#"{"name":"E","subjects":["a","a"]}"#,
                "duplicate subjects detected",
            ),
            (
                r#"{"name":"E","mirror":{"name":"O"},"subjects":["m"]}"#,
                "stream mirrors can not contain subjects",
            ),
            (
                r#"{"name":"E","sources":[{"name":"O"}]}"#,
                "stream sources are not supported by tern",
            ),
            (
                r#"{"name":"E","republish":{"dest":"b"}}"#,
                "stream configuration for republish not valid",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(checked(body).unwrap_err(), want, "{body}");
        }
    }
}
