//! Option names of the config file (`-c`): the tree that `syntax.rs` reads, mapped onto
//! `Config` (the settings the command line also gives through `Config::set`).
//!
//! Key names and value types are nats-server 2.9's (`opts.go`), matched case-insensitively.
//! A key tern does not know is a warning naming it and its line; a key that belongs to a
//! feature tern does not have (TLS, JetStream, leaf nodes, ...) is an error, so tern never
//! starts half-configured. Every error carries `file:line:col`.

use crate::config::syntax::{self, Item, Map, Value};
use crate::config::values::{
    boolean, count, duration, err, host_port, int, map, port, positive, proto_limit, seconds,
    string, Result,
};
use crate::config::{Config, RouteUrl, Setting, User};
use crate::subject::perms::{Permissions, SubjectPerm};
use std::path::Path;
use std::time::Duration;

/// Keys of features tern does not have yet: refused rather than ignored.
const UNSUPPORTED: &[&str] = &[
    "tls",
    "https",
    "https_port",
    "leaf",
    "leafnodes",
    "gateway",
    "websocket",
    "ws",
    "mqtt",
    "operator",
    "operators",
    "roots",
    "root",
    "root_operators",
    "root_operator",
    "resolver",
    "account_resolver",
    "accounts_resolver",
    "resolver_tls",
    "resolver_preload",
    "resolver_pinned_accounts",
    "trusted",
    "trusted_keys",
    "system_account",
    "system",
    "mappings",
    "maps",
    "syslog",
    "remote_syslog",
    "ocsp",
    "default_js_domain",
];

/// Keys nats-server has that only tune things tern does differently: accepted, with a warning.
const IGNORED: &[&str] = &[
    "client_advertise",
    "trace_verbose",
    "disable_sublist_cache",
    "no_sublist_cache",
    "http_base_path",
    "logfile_size_limit",
    "log_size_limit",
    "ports_file_dir",
    "prof_port",
    "max_traced_msg_len",
    "max_sub_tokens",
    "max_subscription_tokens",
    "allow_non_tls",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "no_header_support",
    "connect_error_reports",
    "reconnect_error_reports",
    "server_tags",
];

/// Reads `path` onto `cfg` (which holds the defaults). Returns the warnings to log.
pub fn load(path: &Path, cfg: &mut Config) -> Result<Vec<String>> {
    let top = syntax::parse_file(path).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    apply(&top, cfg, &mut warnings)?;
    cfg.config_file = Some(path.display().to_string());
    Ok(warnings)
}

/// `load` for config text (named `name` in errors; includes resolve in `base_dir`): what the
/// fuzz target drives, since `tern -t -c` and a reload run exactly this after reading the file.
pub fn load_text(text: &str, name: &str, base_dir: &Path, cfg: &mut Config) -> Result<Vec<String>> {
    let top = syntax::parse_str(text, name, base_dir).map_err(|e| e.to_string())?;
    let mut warnings = Vec::new();
    apply(&top, cfg, &mut warnings)?;
    Ok(warnings)
}

fn apply(top: &Map, cfg: &mut Config, warnings: &mut Vec<String>) -> Result<()> {
    let mut authorization = None;
    let mut accounts = None;
    for (key, item) in top.iter() {
        let k = key.to_ascii_lowercase();
        match k.as_str() {
            "listen" => {
                let (h, p) = host_port(item, key)?;
                if let Some(h) = h {
                    cfg.set(Setting::Host(h));
                }
                cfg.set(Setting::Port(port(item, key, p)?));
            }
            "port" => cfg.set(Setting::Port(port(item, key, int(item, key)?)?)),
            "host" | "net" => cfg.set(Setting::Host(string(item, key)?)),
            "server_name" => {
                let name = string(item, key)?;
                if name.contains(' ') {
                    return Err(err(item, "server_name cannot contain spaces"));
                }
                cfg.set(Setting::ServerName(name));
            }
            "debug" => cfg.set(Setting::Debug(boolean(item, key)?)),
            "trace" => cfg.set(Setting::Trace(boolean(item, key)?)),
            "logtime" => cfg.set(Setting::LogTime(boolean(item, key)?)),
            "log_file" | "logfile" => cfg.set(Setting::LogFile(string(item, key)?)),
            "pid_file" | "pidfile" => cfg.set(Setting::PidFile(string(item, key)?)),
            _ if apply_limit(&k, key, item, cfg, warnings)? => {}
            "http" => {
                let (h, p) = host_port(item, key)?;
                if let Some(h) = h {
                    cfg.http_host = Some(h);
                }
                cfg.set(Setting::HttpPort(port(item, key, p)?.max(0) as u16));
            }
            "http_port" | "monitor_port" => {
                let p = port(item, key, int(item, key)?)?;
                cfg.set(Setting::HttpPort(p.max(0) as u16));
            }
            "authorization" => authorization = Some(item),
            "cluster" => parse_cluster(item, cfg, warnings)?,
            "jetstream" => super::jetstream::parse(item, &mut cfg.js, warnings)?,
            "store_dir" | "storedir" => {
                if !cfg.js.store_dir.is_empty() {
                    return Err(err(item, "Duplicate 'store_dir' configuration"));
                }
                cfg.js.store_dir = string(item, key)?;
            }
            "accounts" => accounts = Some(item),
            "no_auth_user" => cfg.auth.no_auth_user = Some(string(item, key)?),
            _ if UNSUPPORTED.contains(&k.as_str()) => {
                return Err(err(item, format!("{key:?} is not supported by tern yet")));
            }
            _ if IGNORED.contains(&k.as_str()) => {
                warnings.push(err(item, format!("{key:?} has no effect in tern; ignored")));
            }
            _ if item.used_as_var => {}
            _ => warnings.push(err(item, format!("unknown field {key:?}"))),
        }
    }
    // Accounts first, so users in `authorization` and in accounts end up in one list.
    if let Some(item) = accounts {
        parse_accounts(item, cfg, warnings)?;
    }
    if let Some(item) = authorization {
        parse_authorization(item, cfg, warnings)?;
    }
    check(cfg)
}

/// A limit or timer key (`k` is `key` lowercased): applied, true; not one of them, false.
fn apply_limit(
    k: &str,
    key: &str,
    item: &Item,
    cfg: &mut Config,
    warnings: &mut Vec<String>,
) -> Result<bool> {
    match k {
        "max_payload" => cfg.max_payload = proto_limit(item, key)?,
        "max_control_line" => cfg.max_control_line = proto_limit(item, key)?,
        "max_pending" => cfg.max_pending = positive(item, key)?,
        "max_connections" | "max_conn" => cfg.max_connections = positive(item, key)?,
        "max_subscriptions" | "max_subs" => cfg.max_subs = positive(item, key)?,
        "ping_interval" => cfg.ping_interval = duration(item, key, warnings)?,
        "ping_max" => cfg.max_pings_out = count(item, key)?,
        "write_deadline" => cfg.write_deadline = duration(item, key, warnings)?,
        "lame_duck_duration" => {
            let d = duration(item, key, warnings)?;
            if d < Duration::from_secs(30) {
                return Err(err(
                    item,
                    format!("invalid lame_duck_duration of {d:?}, minimum is 30 seconds"),
                ));
            }
            cfg.lame_duck_duration = d;
        }
        "lame_duck_grace_period" => cfg.lame_duck_grace = duration(item, key, warnings)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// The rules that tie the file's settings together.
fn check(cfg: &Config) -> Result<()> {
    if cfg.max_payload > cfg.max_pending {
        return Err(format!(
            "max_payload ({}) cannot be higher than max_pending ({})",
            cfg.max_payload, cfg.max_pending
        ));
    }
    if let Some(name) = &cfg.auth.no_auth_user {
        if !cfg.auth.users.iter().any(|u| &u.name == name) {
            return Err(format!("no_auth_user: {name:?} not present as user in authorization block or account configuration"));
        }
    }
    Ok(())
}

fn parse_cluster(item: &Item, cfg: &mut Config, warnings: &mut Vec<String>) -> Result<()> {
    let m = map(item, "cluster")?;
    cfg.cluster_mut();
    for (key, v) in m.iter() {
        match key.to_ascii_lowercase().as_str() {
            "name" => cfg.set(Setting::ClusterName(string(v, key)?)),
            "listen" => {
                let (h, p) = host_port(v, key)?;
                if let Some(h) = h {
                    cfg.set(Setting::ClusterHost(h));
                }
                cfg.set(Setting::ClusterPort(port(v, key, p)?));
            }
            "host" | "net" => cfg.set(Setting::ClusterHost(string(v, key)?)),
            "port" => cfg.set(Setting::ClusterPort(port(v, key, int(v, key)?)?)),
            "routes" => {
                let list = v
                    .value
                    .as_list()
                    .ok_or_else(|| err(v, "routes: expected a list"))?;
                let mut routes = Vec::new();
                for r in list {
                    routes.push(RouteUrl::parse(&string(r, "route")?).map_err(|e| err(r, e))?);
                }
                cfg.set(Setting::Routes(routes));
            }
            "authorization" => parse_cluster_auth(v, key, cfg)?,
            "no_advertise" => cfg.set(Setting::NoAdvertise(boolean(v, key)?)),
            "connect_retries" => cfg.set(Setting::ConnectRetries(count(v, key)?)),
            "tls" | "permissions" | "advertise" | "cluster_advertise" | "pool_size"
            | "accounts" | "compression" => {
                return Err(err(
                    v,
                    format!("cluster {key:?} is not supported by tern yet"),
                ));
            }
            _ if v.used_as_var => {}
            _ => warnings.push(err(v, format!("unknown field {key:?} in cluster"))),
        }
    }
    let c = cfg.cluster_mut();
    if c.host.is_empty() {
        c.host = "0.0.0.0".into();
    }
    Ok(())
}

/// `cluster { authorization { user, password, timeout } }`.
fn parse_cluster_auth(v: &Item, key: &str, cfg: &mut Config) -> Result<()> {
    for (ak, av) in map(v, key)?.iter() {
        match ak.to_ascii_lowercase().as_str() {
            "user" | "username" => cfg.set(Setting::ClusterUser(string(av, ak)?)),
            "pass" | "password" => cfg.set(Setting::ClusterPass(string(av, ak)?)),
            "timeout" => cfg.cluster_mut().auth_timeout = seconds(av, ak)?,
            _ => {
                return Err(err(
                    av,
                    format!("cluster authorization: {ak:?} is not supported by tern yet"),
                ))
            }
        }
    }
    Ok(())
}

fn parse_authorization(item: &Item, cfg: &mut Config, warnings: &mut Vec<String>) -> Result<()> {
    let m = map(item, "authorization")?;
    let mut single = User::default();
    let mut default_perms = None;
    let mut users = Vec::new();
    for (key, v) in m.iter() {
        match key.to_ascii_lowercase().as_str() {
            "user" | "username" => single.name = string(v, key)?,
            "pass" | "password" => single.password = string(v, key)?,
            "token" => cfg.set(Setting::Token(string(v, key)?)),
            "timeout" => {
                if let Some(d) = seconds(v, key)? {
                    cfg.auth.timeout = Some(d);
                }
            }
            "users" => users = parse_users(v, "")?,
            "default_permission" | "default_permissions" | "permissions" => {
                default_perms = Some(parse_permissions(v)?)
            }
            _ if v.used_as_var => {}
            _ => warnings.push(err(v, format!("unknown field {key:?} in authorization"))),
        }
    }
    if !single.name.is_empty() {
        if !users.is_empty() {
            return Err(err(
                item,
                "can not have a single user/pass and a users array",
            ));
        }
        users.push(single);
    }
    if cfg.auth.token.is_some() && !users.is_empty() {
        return Err(err(item, "can not have a token and a users array"));
    }
    for u in &mut users {
        if u.permissions.is_none() {
            u.permissions = default_perms.clone();
        }
    }
    cfg.auth.users.extend(users);
    Ok(())
}

fn parse_users(item: &Item, account: &str) -> Result<Vec<User>> {
    let list = item
        .value
        .as_list()
        .ok_or_else(|| err(item, "users: expected a list"))?;
    let mut users = Vec::new();
    for entry in list {
        let m = map(entry, "user")?;
        let mut u = User {
            account: account.to_string(),
            ..User::default()
        };
        for (key, v) in m.iter() {
            match key.to_ascii_lowercase().as_str() {
                "user" | "username" => u.name = string(v, key)?,
                "pass" | "password" => u.password = string(v, key)?,
                "permission" | "permissions" | "authorization" => {
                    u.permissions = Some(parse_permissions(v)?)
                }
                "nkey" => return Err(err(v, "nkey users are not supported by tern yet")),
                _ if v.used_as_var => {}
                _ => return Err(err(v, format!("unknown field {key:?} parsing users"))),
            }
        }
        if u.name.is_empty() {
            return Err(err(entry, "user entry requires a user"));
        }
        users.push(u);
    }
    Ok(users)
}

fn parse_permissions(item: &Item) -> Result<Permissions> {
    let m = map(item, "permissions")?;
    let mut p = Permissions::default();
    for (key, v) in m.iter() {
        match key.to_ascii_lowercase().as_str() {
            "pub" | "publish" | "import" => p.publish = parse_subject_perm(v)?,
            "sub" | "subscribe" | "export" => p.subscribe = parse_subject_perm(v)?,
            "publish_allow_responses" | "allow_responses" => {
                let mut max = 1u64;
                let mut ttl = Duration::from_secs(120);
                match &v.value {
                    Value::Bool(false) => continue,
                    Value::Bool(true) => {}
                    Value::Map(rm) => {
                        for (rk, rv) in rm.iter() {
                            match rk.to_ascii_lowercase().as_str() {
                                "max" | "max_msgs" | "max_messages" | "max_responses" => {
                                    let n = int(rv, rk)?;
                                    if n > 0 {
                                        max = n as u64;
                                    }
                                }
                                "expires" | "expiration" | "ttl" => {
                                    let s = string(rv, rk)?;
                                    ttl = syntax::parse_duration(&s).map_err(|e| {
                                        err(rv, format!("error parsing expires: {e}"))
                                    })?;
                                }
                                _ => {
                                    return Err(err(
                                        rv,
                                        format!("Unknown field {rk:?} parsing permissions"),
                                    ))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(err(
                            v,
                            "error parsing response permissions, expected a boolean or a map",
                        ))
                    }
                }
                p.allow_responses = Some((max, ttl));
                if p.publish.allow.is_none() {
                    p.publish.allow = Some(Vec::new());
                }
            }
            _ if v.used_as_var => {}
            _ => return Err(err(v, format!("Unknown field {key:?} parsing permissions"))),
        }
    }
    Ok(p)
}

/// `"subj"`, `["a", "b"]` (an allow list) or `{ allow: ..., deny: ... }`.
fn parse_subject_perm(item: &Item) -> Result<SubjectPerm> {
    match &item.value {
        Value::Map(m) => {
            let mut p = SubjectPerm::default();
            for (key, v) in m.iter() {
                match key.to_ascii_lowercase().as_str() {
                    "allow" => p.allow = Some(subjects(v)?),
                    "deny" => p.deny = subjects(v)?,
                    _ => {
                        return Err(err(
                            v,
                            format!("Unknown field name {key:?} parsing subject permissions, only 'allow' or 'deny' are permitted"),
                        ))
                    }
                }
            }
            Ok(p)
        }
        _ => Ok(SubjectPerm {
            allow: Some(subjects(item)?),
            deny: Vec::new(),
        }),
    }
}

fn subjects(item: &Item) -> Result<Vec<String>> {
    let list: Vec<&Item> = match &item.value {
        Value::List(l) => l.iter().collect(),
        _ => vec![item],
    };
    let mut out = Vec::new();
    for s in list {
        let subject = string(s, "subject")?;
        let subj = subject.split(' ').next().unwrap_or_default();
        if !crate::subject::valid_subject(subj.as_bytes()) {
            return Err(err(
                s,
                format!("invalid subject {subject:?} in permissions"),
            ));
        }
        out.push(subject);
    }
    Ok(out)
}

fn parse_accounts(item: &Item, cfg: &mut Config, warnings: &mut Vec<String>) -> Result<()> {
    let m = map(item, "accounts")?;
    for (name, v) in m.iter() {
        if name == crate::config::GLOBAL_ACCOUNT || name == crate::config::SYSTEM_ACCOUNT {
            return Err(err(
                v,
                format!("the built-in account {name} cannot be configured in tern"),
            ));
        }
        let am = map(v, name)?;
        cfg.accounts.push(name.to_string());
        let mut default_perms = None;
        let mut users = Vec::new();
        for (key, av) in am.iter() {
            match key.to_ascii_lowercase().as_str() {
                "users" => users = parse_users(av, name)?,
                "default_permissions" => default_perms = Some(parse_permissions(av)?),
                "imports" | "exports" => {
                    return Err(err(
                        av,
                        format!("account {key} are not supported by tern yet"),
                    ));
                }
                "jetstream" => {
                    if let Some(limits) = super::jetstream::parse_account(av)? {
                        cfg.js.accounts.push((name.to_string(), limits));
                    }
                }
                "mappings" | "maps" | "limits" | "nkey" => {
                    return Err(err(
                        av,
                        format!("account {key:?} is not supported by tern yet"),
                    ));
                }
                _ if av.used_as_var => {}
                _ => warnings.push(err(av, format!("unknown field {key:?} in account {name}"))),
            }
        }
        for u in &mut users {
            if u.permissions.is_none() {
                u.permissions = default_perms.clone();
            }
        }
        cfg.auth.users.extend(users);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<(Config, Vec<String>)> {
        let mut cfg = Config::default();
        let warnings = load_text(text, "test.conf", Path::new("."), &mut cfg)?;
        Ok((cfg, warnings))
    }

    #[test]
    fn limits_and_durations() {
        let (c, w) = load_str(
            "listen: 127.0.0.1:4333\nmax_payload: 512KB\nmax_pending = 1MB\nping_interval: \"1s\"\n\
             ping_max: 1\nwrite_deadline: 3\nmax_connections 10\nmax_control_line: 512\nserver_name: x",
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 4333));
        assert_eq!((c.max_payload, c.max_pending), (512 * 1024, 1024 * 1024));
        assert_eq!(c.ping_interval, Duration::from_secs(1));
        assert_eq!(c.write_deadline, Duration::from_secs(3));
        assert_eq!(
            (c.max_pings_out, c.max_connections, c.max_control_line),
            (1, 10, 512)
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("test.conf:6") && w[0].contains("write_deadline"),
            "{w:?}"
        );
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics() {
        // Each is refused with its key and position (a reload runs this in the live server).
        for (text, key) in [
            (
                "authorization { user: a, password: b, timeout: 100000000000000000000.0 }",
                "timeout",
            ),
            (
                "authorization { user: a, password: b, timeout: 9223372037 }",
                "timeout",
            ),
            (
                "cluster { authorization { user: a, password: b, timeout: 100000000000000000000.5 } }",
                "timeout",
            ),
            (
                "cluster { authorization { user: a, timeout: 9999999999999.5 } }",
                "timeout",
            ),
            ("ping_interval: 9223372037", "ping_interval"),
            ("write_deadline: 9223372036854775807", "write_deadline"),
            (
                "lame_duck_grace_period: 9223372036854775807",
                "lame_duck_grace_period",
            ),
            ("ping_interval: \"2562048h\"", "ping_interval"),
            ("max_payload: 2147483648", "max_payload value is too big"),
            (
                "max_control_line: 9223372036854775807",
                "max_control_line value is too big",
            ),
        ] {
            let e = load_str(&format!("\n{text}\n")).expect_err(text);
            assert!(e.contains("test.conf:2:") && e.contains(key), "{text}: {e}");
        }
        // The largest values that fit are kept; counts past u32 are clamped, not wrapped.
        let (c, _) = load_str(
            "ping_interval: 9223372036\nping_max: 4294967296\n\
             authorization { user: a, password: b, timeout: 9223372036.0 }\n\
             max_payload: 2147483647\nmax_pending: 3000000000\n",
        )
        .unwrap();
        assert_eq!(c.ping_interval, Duration::from_secs(9_223_372_036));
        assert_eq!(c.max_pings_out, u32::MAX);
        assert_eq!(c.auth.timeout, Some(Duration::from_secs(9_223_372_036)));
        assert_eq!(c.max_payload, i32::MAX as usize);
    }

    #[test]
    fn unknown_keys_warn_and_features_are_refused() {
        let (_, w) = load_str("port: 4222\nbogus: 1\n").unwrap();
        assert!(
            w[0].contains("test.conf:2") && w[0].contains("bogus"),
            "{w:?}"
        );
        let e = load_str("port: 4222\nleafnodes: {}\n").unwrap_err();
        assert!(e.contains("test.conf:2") && e.contains("leafnodes"), "{e}");
        let e = load_str("tls { cert_file: x }\n").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = load_str("port: \"x\"\n").unwrap_err();
        assert!(e.contains("test.conf:1") && e.contains("integer"), "{e}");
    }

    #[test]
    fn authorization_users_and_permissions() {
        let (c, _) = load_str(
            r#"authorization {
                timeout: 0.5
                users = [
                  {user: a, password: b, permissions: {publish: "foo.>", subscribe: {allow: ["bar", "baz q"], deny: "bar.x"}}}
                  {user: c, password: d}
                ]
                default_permissions: { publish: ["x"] }
              }"#,
        )
        .unwrap();
        assert_eq!(c.auth.timeout, Some(Duration::from_millis(500)));
        let a = &c.auth.users[0];
        let p = a.permissions.as_ref().unwrap();
        assert_eq!(p.publish.allow, Some(vec!["foo.>".to_string()]));
        assert_eq!(
            p.subscribe.allow,
            Some(vec!["bar".to_string(), "baz q".to_string()])
        );
        assert_eq!(p.subscribe.deny, vec!["bar.x".to_string()]);
        let cp = c.auth.users[1].permissions.as_ref().unwrap();
        assert_eq!(cp.publish.allow, Some(vec!["x".to_string()]));
        assert!(load_str("authorization { user: a, password: b, token: t }").is_err());
    }

    #[test]
    fn cluster_block() {
        let (c, _) = load_str(
            "cluster {\n  name: demo\n  listen: 127.0.0.1:6222\n  routes: [nats-route://127.0.0.1:6223, \"nats://u:p@h:6224\"]\n  authorization { user: r, password: s, timeout: 0.5 }\n  no_advertise: true\n  connect_retries: 3\n}",
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(
            (cl.name.as_deref(), cl.host.as_str(), cl.port),
            (Some("demo"), "127.0.0.1", 6222)
        );
        assert_eq!(cl.routes.len(), 2);
        assert_eq!(
            (cl.user.as_deref(), cl.pass.as_deref()),
            (Some("r"), Some("s"))
        );
        assert!(cl.no_advertise && cl.connect_retries == 3);
        assert!(load_str("cluster { tls { } }")
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn accounts_and_no_auth_user() {
        let (c, _) = load_str(
            "accounts { A { users: [{user: a, pass: a}] }, B { users: [{user: b, pass: b}] } }\nno_auth_user: b\n",
        )
        .unwrap();
        assert_eq!(c.accounts, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(c.auth.users[1].account, "B");
        assert_eq!(c.auth.no_auth_user.as_deref(), Some("b"));
        assert!(load_str("no_auth_user: z\n").unwrap_err().contains("z"));
        assert!(load_str("accounts { A { exports: [] } }")
            .unwrap_err()
            .contains("not supported"));
    }
}
