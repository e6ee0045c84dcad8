//! ConsumerConfig: a consumer's settings as nats-server 2.9.10's `ConsumerConfig` holds them,
//! read with Go's JSON rules (`gojson`: case-insensitive keys, wrong types are 10025, enums
//! refuse `null`), written back in nats-server's field order with its `omitempty` choices
//! (ConsumerInfo, meta.inf). The defaults (`setConsumerConfigDefaults`), the validation
//! (`checkConsumerCfg`, in its order: the first failing rule wins) and the update rules
//! (`checkNewConsumerConfig`) are in `check.rs`. Durations are int64 nanoseconds.

use crate::jetstream::gojson::{self, BadJson};
use crate::protocol::json::{Obj, Value};
use crate::util::timefmt::{date_time, days_from_civil};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeliverPolicy {
    #[default]
    All,
    Last,
    New,
    ByStartSequence,
    ByStartTime,
    LastPerSubject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AckPolicy {
    #[default]
    None,
    All,
    Explicit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplayPolicy {
    #[default]
    Instant,
    Original,
}

/// A Go `time.Time` as JSON carries it: the instant (Unix ns) and the UTC offset it was
/// written with (Go writes it back with the same offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoTime {
    pub ns: i64,
    pub offset_s: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConsumerConfig {
    pub durable_name: String,
    pub name: String,
    pub description: String,
    pub deliver_policy: DeliverPolicy,
    pub opt_start_seq: u64,
    pub opt_start_time: Option<GoTime>,
    pub ack_policy: AckPolicy,
    pub ack_wait: i64,
    pub max_deliver: i64,
    pub backoff: Vec<i64>,
    pub filter_subject: String,
    pub replay_policy: ReplayPolicy,
    pub rate_limit_bps: u64,
    pub sample_freq: String,
    pub max_waiting: i64,
    pub max_ack_pending: i64,
    pub idle_heartbeat: i64,
    pub flow_control: bool,
    pub headers_only: bool,
    pub max_batch: i64,
    pub max_expires: i64,
    pub max_bytes: i64,
    pub deliver_subject: String,
    pub deliver_group: String,
    pub inactive_threshold: i64,
    pub num_replicas: i64,
    pub mem_storage: bool,
    pub direct: bool,
}

impl ConsumerConfig {
    pub fn is_durable(&self) -> bool {
        !self.durable_name.is_empty()
    }
    pub fn is_push(&self) -> bool {
        !self.deliver_subject.is_empty()
    }
    pub fn is_pull(&self) -> bool {
        self.deliver_subject.is_empty()
    }
    /// Acks are tracked (explicit or all).
    pub fn acks(&self) -> bool {
        self.ack_policy != AckPolicy::None
    }
}

/// `CreateConsumerRequest`: `{"stream_name":..,"config":{..}}`.
pub struct CreateRequest {
    pub stream_name: String,
    pub config: ConsumerConfig,
}

/// Reads a CONSUMER.CREATE body (Go's rules). Errors are 10025.
pub fn parse_request(payload: &[u8]) -> Result<CreateRequest, BadJson> {
    let mut r = CreateRequest {
        stream_name: String::new(),
        config: ConsumerConfig::default(),
    };
    gojson::decode(payload, |k, v| {
        match k {
            "stream_name" => r.stream_name = gojson::string(v, &r.stream_name)?,
            "config" => gojson::decode_value(v, |k, v| field(&mut r.config, k, v))?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(r)
}

/// Reads a ConsumerConfig from an already parsed value (meta.inf).
pub fn from_value(v: &Value) -> Result<ConsumerConfig, BadJson> {
    let mut c = ConsumerConfig::default();
    gojson::decode_value(v, |k, v| field(&mut c, k, v))?;
    Ok(c)
}

fn field(c: &mut ConsumerConfig, k: &str, v: &Value) -> Result<(), BadJson> {
    use gojson::{boolean, int, string, uint};
    match k {
        "durable_name" => c.durable_name = string(v, &c.durable_name)?,
        "name" => c.name = string(v, &c.name)?,
        "description" => c.description = string(v, &c.description)?,
        "deliver_policy" => c.deliver_policy = deliver_policy(gojson::enum_str(v)?)?,
        "opt_start_seq" => c.opt_start_seq = uint(v, c.opt_start_seq)?,
        "opt_start_time" => c.opt_start_time = go_time(v)?,
        "ack_policy" => c.ack_policy = ack_policy(gojson::enum_str(v)?)?,
        "ack_wait" => c.ack_wait = int(v, c.ack_wait)?,
        "max_deliver" => c.max_deliver = int(v, c.max_deliver)?,
        "backoff" => c.backoff = ints(v)?,
        "filter_subject" => c.filter_subject = string(v, &c.filter_subject)?,
        "replay_policy" => c.replay_policy = replay_policy(gojson::enum_str(v)?)?,
        "rate_limit_bps" => c.rate_limit_bps = uint(v, c.rate_limit_bps)?,
        "sample_freq" => c.sample_freq = string(v, &c.sample_freq)?,
        "max_waiting" => c.max_waiting = int(v, c.max_waiting)?,
        "max_ack_pending" => c.max_ack_pending = int(v, c.max_ack_pending)?,
        "idle_heartbeat" => c.idle_heartbeat = int(v, c.idle_heartbeat)?,
        "flow_control" => c.flow_control = boolean(v, c.flow_control)?,
        "headers_only" => c.headers_only = boolean(v, c.headers_only)?,
        "max_batch" => c.max_batch = int(v, c.max_batch)?,
        "max_expires" => c.max_expires = int(v, c.max_expires)?,
        "max_bytes" => c.max_bytes = int(v, c.max_bytes)?,
        "deliver_subject" => c.deliver_subject = string(v, &c.deliver_subject)?,
        "deliver_group" => c.deliver_group = string(v, &c.deliver_group)?,
        "inactive_threshold" => c.inactive_threshold = int(v, c.inactive_threshold)?,
        "num_replicas" => c.num_replicas = int(v, c.num_replicas)?,
        "mem_storage" => c.mem_storage = boolean(v, c.mem_storage)?,
        "direct" => c.direct = boolean(v, c.direct)?,
        _ => {}
    }
    Ok(())
}

/// A `[]time.Duration` field: `null` empties it.
fn ints(v: &Value) -> Result<Vec<i64>, BadJson> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(items) => items.iter().map(|x| gojson::int(x, 0)).collect(),
        _ => Err(BadJson),
    }
}

/// A `*time.Time` field: `null` is unset, otherwise an RFC 3339 string.
fn go_time(v: &Value) -> Result<Option<GoTime>, BadJson> {
    match v {
        Value::Null => Ok(None),
        Value::Str(s) => parse_time(s).map(Some).ok_or(BadJson),
        _ => Err(BadJson),
    }
}

fn deliver_policy(s: &str) -> Result<DeliverPolicy, BadJson> {
    match s {
        "all" | "undefined" => Ok(DeliverPolicy::All),
        "last" => Ok(DeliverPolicy::Last),
        "new" => Ok(DeliverPolicy::New),
        "by_start_sequence" => Ok(DeliverPolicy::ByStartSequence),
        "by_start_time" => Ok(DeliverPolicy::ByStartTime),
        "last_per_subject" => Ok(DeliverPolicy::LastPerSubject),
        _ => Err(BadJson),
    }
}

fn ack_policy(s: &str) -> Result<AckPolicy, BadJson> {
    match s {
        "none" => Ok(AckPolicy::None),
        "all" => Ok(AckPolicy::All),
        "explicit" => Ok(AckPolicy::Explicit),
        _ => Err(BadJson),
    }
}

fn replay_policy(s: &str) -> Result<ReplayPolicy, BadJson> {
    match s {
        "instant" => Ok(ReplayPolicy::Instant),
        "original" => Ok(ReplayPolicy::Original),
        _ => Err(BadJson),
    }
}

impl DeliverPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliverPolicy::All => "all",
            DeliverPolicy::Last => "last",
            DeliverPolicy::New => "new",
            DeliverPolicy::ByStartSequence => "by_start_sequence",
            DeliverPolicy::ByStartTime => "by_start_time",
            DeliverPolicy::LastPerSubject => "last_per_subject",
        }
    }
}

impl AckPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AckPolicy::None => "none",
            AckPolicy::All => "all",
            AckPolicy::Explicit => "explicit",
        }
    }
}

impl ReplayPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayPolicy::Instant => "instant",
            ReplayPolicy::Original => "original",
        }
    }
}

impl ConsumerConfig {
    /// The config object's JSON in nats-server's field order.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(384);
        let mut o = Obj::new(&mut s);
        self.write_fields(&mut o);
        o.end();
        s
    }

    pub fn write_fields(&self, o: &mut Obj) {
        let str_if = |o: &mut Obj, k: &str, v: &str| {
            if !v.is_empty() {
                o.str(k, v);
            }
        };
        let int_if = |o: &mut Obj, k: &str, v: i64| {
            if v != 0 {
                o.int(k, v);
            }
        };
        str_if(o, "durable_name", &self.durable_name);
        str_if(o, "name", &self.name);
        str_if(o, "description", &self.description);
        o.str("deliver_policy", self.deliver_policy.as_str());
        if self.opt_start_seq != 0 {
            o.uint("opt_start_seq", self.opt_start_seq);
        }
        if let Some(t) = self.opt_start_time {
            o.str("opt_start_time", &format_time(t));
        }
        o.str("ack_policy", self.ack_policy.as_str());
        int_if(o, "ack_wait", self.ack_wait);
        int_if(o, "max_deliver", self.max_deliver);
        if !self.backoff.is_empty() {
            let items: Vec<String> = self.backoff.iter().map(i64::to_string).collect();
            o.raw("backoff", &format!("[{}]", items.join(",")));
        }
        str_if(o, "filter_subject", &self.filter_subject);
        o.str("replay_policy", self.replay_policy.as_str());
        if self.rate_limit_bps != 0 {
            o.uint("rate_limit_bps", self.rate_limit_bps);
        }
        str_if(o, "sample_freq", &self.sample_freq);
        int_if(o, "max_waiting", self.max_waiting);
        int_if(o, "max_ack_pending", self.max_ack_pending);
        int_if(o, "idle_heartbeat", self.idle_heartbeat);
        if self.flow_control {
            o.bool("flow_control", true);
        }
        if self.headers_only {
            o.bool("headers_only", true);
        }
        int_if(o, "max_batch", self.max_batch);
        int_if(o, "max_expires", self.max_expires);
        int_if(o, "max_bytes", self.max_bytes);
        str_if(o, "deliver_subject", &self.deliver_subject);
        str_if(o, "deliver_group", &self.deliver_group);
        int_if(o, "inactive_threshold", self.inactive_threshold);
        o.int("num_replicas", self.num_replicas);
        if self.mem_storage {
            o.bool("mem_storage", true);
        }
        if self.direct {
            o.bool("direct", true);
        }
    }
}

/// Go's `time.Parse(time.RFC3339, s)` for what clients send: `YYYY-MM-DDTHH:MM:SS`, an
/// optional fraction of up to 9 digits, then `Z` or `±HH:MM`.
pub fn parse_time(s: &str) -> Option<GoTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 {
        return None;
    }
    if sec > 59 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = format!("{:0<9}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset_s: i32 = match rest {
        "Z" => 0,
        o if o.len() == 6
            && (o.starts_with('+') || o.starts_with('-'))
            && o.as_bytes()[3] == b':' =>
        {
            let oh = num(rest_at(s, o) + 1..rest_at(s, o) + 3)?;
            let om = num(rest_at(s, o) + 4..rest_at(s, o) + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let v = (oh * 3600 + om * 60) as i32;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let local = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
    let secs = local - i64::from(offset_s);
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(GoTime { ns, offset_s })
}

fn rest_at(s: &str, tail: &str) -> usize {
    s.len() - tail.len()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's RFC 3339 (nano, trailing zeros trimmed) in the time's own offset.
pub fn format_time(t: GoTime) -> String {
    let secs = t.ns.div_euclid(1_000_000_000) + i64::from(t.offset_s);
    let nanos = t.ns.rem_euclid(1_000_000_000) as u32;
    let mut out = date_time(secs, nanos);
    if t.offset_s == 0 {
        out.push('Z');
    } else {
        let o = t.offset_s.unsigned_abs();
        let sign = if t.offset_s < 0 { '-' } else { '+' };
        out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, o / 60 % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_like_go() {
        for s in [
            "2020-01-02T03:04:05.123456789Z",
            "2020-01-02T03:04:05Z",
            "2020-01-02T03:04:05.1+01:30",
            "1969-12-31T23:59:59.5-05:00",
        ] {
            assert_eq!(format_time(parse_time(s).unwrap()), s);
        }
        assert_eq!(
            format_time(parse_time("2020-01-02T03:04:05.100Z").unwrap()),
            "2020-01-02T03:04:05.1Z"
        );
        let t = parse_time("1970-01-01T01:00:00+01:00").unwrap();
        assert_eq!(t.ns, 0);
        for bad in [
            "yesterday",
            "2020-02-30T00:00:00Z",
            "2020-01-02 03:04:05Z",
            "2020-01-02T03:04:05",
            "2020-01-02T03:04:05.Z",
            "2020-01-02T03:04:05+0100",
            "2020-01-02T03:04:05.1234567890Z",
            "2020-01-02T03:04:05+0\u{e9}:0",
            "2020-01-02T03:04:05+01\u{e9}0",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn parse_and_render() {
        let r = parse_request(
            br#"{"Stream_Name":"S","CONFIG":{"Durable_Name":"J","ACK_POLICY":"explicit","backoff":[1,2],"opt_start_time":null,"x":{}}}"#,
        )
        .unwrap();
        assert_eq!(r.stream_name, "S");
        assert_eq!(r.config.ack_policy, AckPolicy::Explicit);
        assert_eq!(
            r.config.to_json(),
            r#"{"durable_name":"J","deliver_policy":"all","ack_policy":"explicit","backoff":[1,2],"replay_policy":"instant","num_replicas":0}"#
        );
        for bad in [
            r#"{"config":{"ack_policy":null}}"#,
            r#"{"config":{"ack_policy":"Explicit"}}"#,
            r#"{"config":{"deliver_policy":null}}"#,
            r#"{"config":{"replay_policy":"fast"}}"#,
            r#"{"config":{"opt_start_time":"yesterday"}}"#,
            r#"{"config":{"max_deliver":1.5}}"#,
            r#"{"config":{"rate_limit_bps":-1}}"#,
            r#"{"config":{"backoff":"1s"}}"#,
            r#"{"config":[]}"#,
            "",
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad}");
        }
        let r = parse_request(br#"{"config":{"deliver_policy":"undefined"}}"#).unwrap();
        assert_eq!(r.config.deliver_policy, DeliverPolicy::All);
    }
}
