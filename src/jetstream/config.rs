//! StreamConfig: the stream's settings as nats-server 2.9.10's `StreamConfig` holds them,
//! read from a request with Go's JSON rules (`gojson`) and written back in nats-server's
//! field order with its `omitempty` choices, so STREAM.INFO and meta.inf look the same.
//! The defaults and validation (`checkStreamCfg`) and the update rules live in `check.rs`.
//! Durations are int64 nanoseconds; enums are lowercase strings.

use super::gojson::{self, BadJson};
use crate::protocol::json::{write_str, Obj, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    WorkQueue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Discard {
    #[default]
    Old,
    New,
}

/// `Unset` is Go's zero value (becomes `file` in checkStreamCfg); `Any` parses (nats-server
/// accepts the word) but no stream may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Storage {
    #[default]
    Unset,
    File,
    Memory,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Placement {
    pub cluster: String,
    pub tags: Vec<String>,
}

/// A mirror or source. tern refuses both (see check.rs); they are read so that a malformed
/// one is "invalid JSON" as in nats-server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StreamSource {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RePublish {
    pub src: String,
    pub dest: String,
    pub headers_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    pub description: String,
    pub subjects: Vec<String>,
    pub retention: Retention,
    pub max_consumers: i64,
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_msgs_per_subject: i64,
    pub max_msg_size: i64,
    pub discard: Discard,
    pub storage: Storage,
    pub num_replicas: i64,
    pub no_ack: bool,
    pub template_owner: String,
    pub duplicate_window: i64,
    pub placement: Option<Placement>,
    pub mirror: Option<StreamSource>,
    pub sources: Vec<StreamSource>,
    pub republish: Option<RePublish>,
    pub allow_direct: bool,
    pub mirror_direct: bool,
    pub discard_new_per_subject: bool,
    pub sealed: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
    pub allow_rollup_hdrs: bool,
}

impl Default for StreamConfig {
    /// Go's zero value: what `json.Unmarshal` starts from.
    fn default() -> StreamConfig {
        StreamConfig {
            name: String::new(),
            description: String::new(),
            subjects: Vec::new(),
            retention: Retention::Limits,
            max_consumers: 0,
            max_msgs: 0,
            max_bytes: 0,
            max_age: 0,
            max_msgs_per_subject: 0,
            max_msg_size: 0,
            discard: Discard::Old,
            storage: Storage::Unset,
            num_replicas: 0,
            no_ack: false,
            template_owner: String::new(),
            duplicate_window: 0,
            placement: None,
            mirror: None,
            sources: Vec::new(),
            republish: None,
            allow_direct: false,
            mirror_direct: false,
            discard_new_per_subject: false,
            sealed: false,
            deny_delete: false,
            deny_purge: false,
            allow_rollup_hdrs: false,
        }
    }
}

/// Reads a StreamConfig request body (Go's rules: see gojson). Errors are 10025.
pub fn parse(payload: &[u8]) -> Result<StreamConfig, BadJson> {
    let mut c = StreamConfig::default();
    gojson::decode(payload, |k, v| field(&mut c, k, v))?;
    Ok(c)
}

/// Reads a StreamConfig from an already parsed value (meta.inf).
pub fn from_value(v: &Value) -> Result<StreamConfig, BadJson> {
    let mut c = StreamConfig::default();
    gojson::decode_value(v, |k, v| field(&mut c, k, v))?;
    Ok(c)
}

fn field(c: &mut StreamConfig, k: &str, v: &Value) -> Result<(), BadJson> {
    use gojson::{boolean, int, int32, string};
    match k {
        "name" => c.name = string(v, &c.name)?,
        "description" => c.description = string(v, &c.description)?,
        "subjects" => c.subjects = gojson::strings(v)?,
        "retention" => c.retention = retention(gojson::enum_str(v)?)?,
        "max_consumers" => c.max_consumers = int(v, c.max_consumers)?,
        "max_msgs" => c.max_msgs = int(v, c.max_msgs)?,
        "max_bytes" => c.max_bytes = int(v, c.max_bytes)?,
        "max_age" => c.max_age = int(v, c.max_age)?,
        "max_msgs_per_subject" => c.max_msgs_per_subject = int(v, c.max_msgs_per_subject)?,
        "max_msg_size" => c.max_msg_size = int32(v, c.max_msg_size)?,
        "discard" => c.discard = discard(gojson::enum_str(v)?)?,
        "storage" => c.storage = storage(gojson::enum_str(v)?)?,
        "num_replicas" => c.num_replicas = int(v, c.num_replicas)?,
        "no_ack" => c.no_ack = boolean(v, c.no_ack)?,
        "template_owner" => c.template_owner = string(v, &c.template_owner)?,
        "duplicate_window" => c.duplicate_window = int(v, c.duplicate_window)?,
        "placement" => c.placement = placement(v)?,
        "mirror" => c.mirror = source(v)?,
        "sources" => c.sources = sources(v)?,
        "republish" => c.republish = republish(v)?,
        "allow_direct" => c.allow_direct = boolean(v, c.allow_direct)?,
        "mirror_direct" => c.mirror_direct = boolean(v, c.mirror_direct)?,
        "discard_new_per_subject" => {
            c.discard_new_per_subject = boolean(v, c.discard_new_per_subject)?
        }
        "sealed" => c.sealed = boolean(v, c.sealed)?,
        "deny_delete" => c.deny_delete = boolean(v, c.deny_delete)?,
        "deny_purge" => c.deny_purge = boolean(v, c.deny_purge)?,
        "allow_rollup_hdrs" => c.allow_rollup_hdrs = boolean(v, c.allow_rollup_hdrs)?,
        _ => {}
    }
    Ok(())
}

fn retention(s: &str) -> Result<Retention, BadJson> {
    match s {
        "limits" => Ok(Retention::Limits),
        "interest" => Ok(Retention::Interest),
        "workqueue" => Ok(Retention::WorkQueue),
        _ => Err(BadJson),
    }
}

/// nats-server lowercases the discard policy before matching (the others are exact).
fn discard(s: &str) -> Result<Discard, BadJson> {
    match s.to_ascii_lowercase().as_str() {
        "old" => Ok(Discard::Old),
        "new" => Ok(Discard::New),
        _ => Err(BadJson),
    }
}

fn storage(s: &str) -> Result<Storage, BadJson> {
    match s {
        "file" => Ok(Storage::File),
        "memory" => Ok(Storage::Memory),
        "any" => Ok(Storage::Any),
        _ => Err(BadJson),
    }
}

fn placement(v: &Value) -> Result<Option<Placement>, BadJson> {
    if *v == Value::Null {
        return Ok(None);
    }
    let mut p = Placement::default();
    gojson::decode_value(v, |k, v| {
        match k {
            "cluster" => p.cluster = gojson::string(v, &p.cluster)?,
            "tags" => p.tags = gojson::strings(v)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(p))
}

fn source(v: &Value) -> Result<Option<StreamSource>, BadJson> {
    if *v == Value::Null {
        return Ok(None);
    }
    let mut s = StreamSource::default();
    gojson::decode_value(v, |k, v| {
        match k {
            "name" => s.name = gojson::string(v, &s.name)?,
            "opt_start_seq" => {
                gojson::uint(v, 0)?;
            }
            "opt_start_time" | "filter_subject" => {
                gojson::string(v, "")?;
            }
            "external" => gojson::decode_value(v, |k, v| match k {
                "api" | "deliver" => gojson::string(v, "").map(|_| ()),
                _ => Ok(()),
            })?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(s))
}

fn sources(v: &Value) -> Result<Vec<StreamSource>, BadJson> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(items) => {
            let mut out = Vec::new();
            for it in items {
                if let Some(s) = source(it)? {
                    out.push(s);
                }
            }
            Ok(out)
        }
        _ => Err(BadJson),
    }
}

fn republish(v: &Value) -> Result<Option<RePublish>, BadJson> {
    if *v == Value::Null {
        return Ok(None);
    }
    let mut r = RePublish::default();
    gojson::decode_value(v, |k, v| {
        match k {
            "src" => r.src = gojson::string(v, &r.src)?,
            "dest" => r.dest = gojson::string(v, &r.dest)?,
            "headers_only" => r.headers_only = gojson::boolean(v, r.headers_only)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(r))
}

impl Retention {
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::WorkQueue => "workqueue",
        }
    }
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Unset | Storage::File => "file",
            Storage::Memory => "memory",
            Storage::Any => "any",
        }
    }
}

impl StreamConfig {
    /// The config object's JSON in nats-server's field order.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(512);
        let mut o = Obj::new(&mut s);
        self.write_fields(&mut o);
        o.end();
        s
    }

    /// The config's fields, for embedding in another object (meta.inf puts `Created` first).
    pub fn write_fields(&self, o: &mut Obj) {
        o.str("name", &self.name);
        if !self.description.is_empty() {
            o.str("description", &self.description);
        }
        if !self.subjects.is_empty() {
            o.strs("subjects", &self.subjects);
        }
        o.str("retention", self.retention.as_str())
            .int("max_consumers", self.max_consumers)
            .int("max_msgs", self.max_msgs)
            .int("max_bytes", self.max_bytes)
            .int("max_age", self.max_age)
            .int("max_msgs_per_subject", self.max_msgs_per_subject);
        if self.max_msg_size != 0 {
            o.int("max_msg_size", self.max_msg_size);
        }
        let discard = if self.discard == Discard::New {
            "new"
        } else {
            "old"
        };
        o.str("discard", discard)
            .str("storage", self.storage.as_str())
            .int("num_replicas", self.num_replicas);
        if self.no_ack {
            o.bool("no_ack", true);
        }
        if !self.template_owner.is_empty() {
            o.str("template_owner", &self.template_owner);
        }
        if self.duplicate_window != 0 {
            o.int("duplicate_window", self.duplicate_window);
        }
        self.write_optional(o);
        o.bool("allow_direct", self.allow_direct)
            .bool("mirror_direct", self.mirror_direct);
        if self.discard_new_per_subject {
            o.bool("discard_new_per_subject", true);
        }
        o.bool("sealed", self.sealed)
            .bool("deny_delete", self.deny_delete)
            .bool("deny_purge", self.deny_purge)
            .bool("allow_rollup_hdrs", self.allow_rollup_hdrs);
    }

    fn write_optional(&self, o: &mut Obj) {
        if let Some(p) = &self.placement {
            let mut ps = String::new();
            let mut po = Obj::new(&mut ps);
            if !p.cluster.is_empty() {
                po.str("cluster", &p.cluster);
            }
            if !p.tags.is_empty() {
                po.strs("tags", &p.tags);
            }
            po.end();
            o.raw("placement", &ps);
        }
        if let Some(m) = &self.mirror {
            o.raw("mirror", &source_json(m));
        }
        if !self.sources.is_empty() {
            let list: Vec<String> = self.sources.iter().map(source_json).collect();
            o.raw("sources", &format!("[{}]", list.join(",")));
        }
        if let Some(r) = &self.republish {
            let mut rs = String::new();
            let mut ro = Obj::new(&mut rs);
            if !r.src.is_empty() {
                ro.str("src", &r.src);
            }
            ro.str("dest", &r.dest);
            if r.headers_only {
                ro.bool("headers_only", true);
            }
            ro.end();
            o.raw("republish", &rs);
        }
    }
}

fn source_json(s: &StreamSource) -> String {
    let mut out = String::from("{\"name\":");
    write_str(&mut out, &s.name);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_render_round_trip() {
        let body = br#"{"NAME":"FULL","Description":"d","subjects":["a.>"],"retention":"workqueue",
            "max_consumers":10,"max_msgs":100,"max_bytes":1000,"max_age":3600000000000,
            "max_msgs_per_subject":5,"max_msg_size":1024,"discard":"NEW","storage":"memory",
            "num_replicas":1,"no_ack":true,"duplicate_window":60000000000,"allow_direct":true,
            "placement":{"cluster":"c1","tags":["t"]},"republish":{"dest":"rp.>"},"x":{}}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.name, "FULL");
        assert_eq!(c.retention, Retention::WorkQueue);
        assert_eq!(c.discard, Discard::New);
        assert_eq!(c.storage, Storage::Memory);
        let json = c.to_json();
        assert_eq!(
            json,
            r#"{"name":"FULL","description":"d","subjects":["a.\u003e"],"retention":"workqueue","max_consumers":10,"max_msgs":100,"max_bytes":1000,"max_age":3600000000000,"max_msgs_per_subject":5,"max_msg_size":1024,"discard":"new","storage":"memory","num_replicas":1,"no_ack":true,"duplicate_window":60000000000,"placement":{"cluster":"c1","tags":["t"]},"republish":{"dest":"rp.\u003e"},"allow_direct":true,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false}"#
        );
        assert_eq!(parse(json.as_bytes()).unwrap(), c);
    }

    #[test]
    fn go_type_rules() {
        for bad in [
            r#"{"retention":null}"#,
            r#"{"retention":"Limits"}"#,
            r#"{"storage":"disk"}"#,
            r#"{"discard":null}"#,
            r#"{"subjects":"x"}"#,
            r#"{"subjects":[1]}"#,
            r#"{"max_msg_size":3000000000}"#,
            r#"{"mirror":5}"#,
            r#"{"sources":{}}"#,
            r#"{"placement":{"tags":"x"}}"#,
            "[1]",
            "",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let c = parse(br#"{"name":"X","subjects":null,"mirror":null,"max_msgs":null}"#).unwrap();
        assert!(c.subjects.is_empty() && c.mirror.is_none() && c.max_msgs == 0);
        assert_eq!(parse(b"null").unwrap(), StreamConfig::default());
    }
}
