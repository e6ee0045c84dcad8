//! Command-line flags, spelled as nats-server spells them.
//!
//! nats-server uses Go's `flag` package: `-x` and `--x` are the same flag, values come as
//! `-x=v` or `-x v` (even `-p -1`), booleans as `-D` or `-D=false`, and one flag often has
//! several names (`-a`, `--addr`, `--net`). `normalize` maps every spelling to one canonical
//! long name in getopts' syntax (`--addr=v`), then getopts does the matching. A flag that
//! nats-server has but tern does not support yet is refused by name, never ignored.
//!
//! The result is a list of (flag, value) pairs applied on top of the config file's values,
//! because on nats-server flags override the file.

use crate::config::{Config, RouteUrl, Setting};

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    Bool,
    Value,
}

/// One flag: its canonical name, every spelling, value kind, help text, and whether tern
/// supports it yet.
struct Flag {
    name: &'static str,
    spellings: &'static [&'static str],
    arg: Arg,
    help: &'static str,
    supported: bool,
}

const fn flag(
    name: &'static str,
    spellings: &'static [&'static str],
    arg: Arg,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        spellings,
        arg,
        help,
        supported: true,
    }
}

const fn missing(name: &'static str, spellings: &'static [&'static str], arg: Arg) -> Flag {
    Flag {
        name,
        spellings,
        arg,
        help: "",
        supported: false,
    }
}

#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("addr", &["a", "addr", "net"], Arg::Value, "Bind to host address (default: 0.0.0.0)"),
    flag("port", &["p", "port"], Arg::Value, "Use port for clients (default: 4222, -1 for random)"),
    flag("name", &["n", "name", "server_name"], Arg::Value, "Server name (default: the server id)"),
    flag("pid", &["P", "pid"], Arg::Value, "File to store PID"),
    flag("log", &["l", "log"], Arg::Value, "File to redirect log output"),
    flag("logtime", &["T", "logtime"], Arg::Bool, "Timestamp log entries (default: true)"),
    flag("debug", &["D", "debug"], Arg::Bool, "Enable debugging output"),
    flag("trace", &["V", "trace"], Arg::Bool, "Trace the raw protocol"),
    flag("DV", &["DV"], Arg::Bool, "Debug and trace"),
    flag("VV", &["VV"], Arg::Bool, "Verbose trace (same as -V in tern)"),
    flag("DVV", &["DVV"], Arg::Bool, "Debug and verbose trace (same as -DV in tern)"),
    flag("user", &["user"], Arg::Value, "User required for connections"),
    flag("pass", &["pass"], Arg::Value, "Password required for connections"),
    flag("auth", &["auth"], Arg::Value, "Authorization token required for connections"),
    flag("http_port", &["m", "http_port"], Arg::Value, "Use port for http monitoring"),
    flag("config", &["c", "config"], Arg::Value, "Configuration file"),
    flag("check_config", &["t"], Arg::Bool, "Test configuration and exit"),
    flag("signal", &["sl", "signal"], Arg::Value, "Send signal to tern: stop, quit, term, reopen, reload, ldm [=pid or pid file]"),
    flag("cluster", &["cluster", "cluster_listen"], Arg::Value, "Cluster URL for solicited routes (listen), e.g. nats://0.0.0.0:6222"),
    flag("cluster_name", &["cluster_name"], Arg::Value, "Cluster Name, if not set one will be dynamically generated"),
    flag("routes", &["routes"], Arg::Value, "Routes to solicit and connect (comma separated URLs)"),
    flag("no_advertise", &["no_advertise"], Arg::Bool, "Do not advertise known cluster information to clients"),
    flag("connect_retries", &["connect_retries"], Arg::Value, "For implicit routes, number of connect retries"),
    flag("jetstream", &["js", "jetstream"], Arg::Bool, "Enable JetStream functionality"),
    flag("store_dir", &["sd", "store_dir"], Arg::Value, "Set the storage directory"),
    flag("help", &["h", "help"], Arg::Bool, "Show this message"),
    flag("version", &["v", "version"], Arg::Bool, "Show version"),
    missing("https_port", &["ms", "https_port"], Arg::Value),
    missing("client_advertise", &["client_advertise"], Arg::Value),
    missing("ports_file_dir", &["ports_file_dir"], Arg::Value),
    missing("syslog", &["s", "syslog"], Arg::Bool),
    missing("remote_syslog", &["r", "remote_syslog"], Arg::Value),
    missing("log_size_limit", &["log_size_limit"], Arg::Value),
    missing("max_traced_msg_len", &["max_traced_msg_len"], Arg::Value),
    missing("tls", &["tls"], Arg::Bool),
    missing("tlscert", &["tlscert"], Arg::Value),
    missing("tlskey", &["tlskey"], Arg::Value),
    missing("tlsverify", &["tlsverify"], Arg::Bool),
    missing("tlscacert", &["tlscacert"], Arg::Value),
    missing("help_tls", &["help_tls"], Arg::Bool),
    missing("cluster_advertise", &["cluster_advertise"], Arg::Value),
    missing("profile", &["profile"], Arg::Value),
];

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub help: bool,
    pub version: bool,
    pub config: Option<String>,
    pub check_config: bool,
    pub signal: Option<String>,
    /// Canonical flag name and its value, in command-line order.
    pub set: Vec<(&'static str, String)>,
}

fn lookup(spelling: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.spellings.contains(&spelling))
}

/// Rewrites Go-style arguments into `--canonical=value` for getopts.
fn normalize(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.extend(args[i..].iter().cloned());
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            out.push(arg.clone());
            continue;
        };
        let (spelling, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let f = lookup(spelling)
            .ok_or_else(|| format!("flag provided but not defined: -{spelling}"))?;
        if !f.supported {
            return Err(format!("flag -{spelling} is not supported by tern yet"));
        }
        let value = match (f.arg, inline) {
            (_, Some(v)) => v,
            (Arg::Bool, None) => "true".to_string(),
            (Arg::Value, None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("flag needs an argument: -{spelling}"))?;
                i += 1;
                v.clone()
            }
        };
        out.push(format!("--{}={}", f.name, value));
    }
    Ok(out)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?} for -{name}")),
    }
}

/// Parses the command line (without the program name).
pub fn parse(args: &[String]) -> Result<Flags, String> {
    let mut opts = getopts::Options::new();
    for f in FLAGS.iter().filter(|f| f.supported) {
        // normalize() always attaches a value, booleans included.
        opts.optmulti("", f.name, f.help, "VALUE");
    }
    let normalized = normalize(args)?;
    let m = opts.parse(&normalized).map_err(|e| e.to_string())?;
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument: {extra}"));
    }
    let mut flags = Flags::default();
    // Keep command-line order: getopts reports positions for each occurrence.
    let mut set: Vec<(usize, &'static str, String)> = Vec::new();
    for f in FLAGS.iter().filter(|f| f.supported) {
        for (pos, v) in m.opt_strs_pos(f.name) {
            set.push((pos, f.name, v));
        }
    }
    set.sort_by_key(|(pos, _, _)| *pos);
    for (_, name, v) in set {
        match name {
            "help" => flags.help = parse_bool(name, &v)?,
            "version" => flags.version = parse_bool(name, &v)?,
            "config" => flags.config = Some(v),
            "signal" => flags.signal = Some(v),
            "check_config" => flags.check_config = parse_bool(name, &v)?,
            _ => flags.set.push((name, v)),
        }
    }
    Ok(flags)
}

/// Applies command-line values on top of `cfg`.
pub fn apply(flags: &Flags, cfg: &mut Config) -> Result<(), String> {
    for (name, v) in &flags.set {
        let name = *name;
        let invalid = || format!("invalid value {v:?} for flag -{name}");
        let setting = match name {
            "addr" => Setting::Host(v.clone()),
            "port" => Setting::Port(v.parse().map_err(|_| invalid())?),
            "name" => Setting::ServerName(v.clone()),
            "pid" => Setting::PidFile(v.clone()),
            "log" => Setting::LogFile(v.clone()),
            "logtime" => Setting::LogTime(parse_bool(name, v)?),
            "debug" => Setting::Debug(parse_bool(name, v)?),
            "trace" | "VV" => Setting::Trace(parse_bool(name, v)?),
            "DV" | "DVV" => {
                if parse_bool(name, v)? {
                    cfg.set(Setting::Debug(true));
                    cfg.set(Setting::Trace(true));
                }
                continue;
            }
            "user" => {
                set_user(cfg, Some(v), None);
                continue;
            }
            "pass" => {
                set_user(cfg, None, Some(v));
                continue;
            }
            "auth" => Setting::Token(v.clone()),
            "cluster" => {
                let u = RouteUrl::parse(v).map_err(|e| format!("--cluster: {e}"))?;
                cfg.set(Setting::ClusterHost(u.host));
                cfg.set(Setting::ClusterPort(i32::from(u.port)));
                if let Some(user) = u.user {
                    cfg.set(Setting::ClusterUser(user));
                }
                match u.pass {
                    Some(pass) => Setting::ClusterPass(pass),
                    None => continue,
                }
            }
            "cluster_name" => Setting::ClusterName(v.clone()),
            "routes" => {
                let urls = v
                    .split(',')
                    .filter(|r| !r.trim().is_empty())
                    .map(RouteUrl::parse);
                Setting::Routes(urls.collect::<Result<_, _>>()?)
            }
            "no_advertise" => Setting::NoAdvertise(parse_bool(name, v)?),
            "jetstream" => Setting::JetStream(parse_bool(name, v)?),
            "store_dir" => Setting::StoreDir(v.clone()),
            "connect_retries" => Setting::ConnectRetries(v.parse().map_err(|_| invalid())?),
            "http_port" => Setting::HttpPort(v.parse().map_err(|_| invalid())?),
            _ => return Err(format!("flag -{name} is not supported by tern yet")),
        };
        cfg.set(setting);
    }
    if cfg.port < -1 || cfg.port > 65535 {
        return Err(format!("invalid port {}", cfg.port));
    }
    if let Some(c) = &cfg.cluster {
        if c.host.is_empty() {
            return Err("solicited routes require cluster capabilities, e.g. --cluster".into());
        }
    }
    Ok(())
}

/// The running configuration: defaults, then the config file if any, then the flags (which
/// override the file, as on nats-server). Returns the file's warnings too.
pub fn build_config(flags: &Flags) -> Result<(Config, Vec<String>), String> {
    let mut cfg = Config::default();
    let mut warnings = Vec::new();
    if let Some(path) = &flags.config {
        warnings = crate::config::keys::load(std::path::Path::new(path), &mut cfg)?;
    }
    apply(flags, &mut cfg)?;
    Ok((cfg, warnings))
}

/// `--user`/`--pass` describe one user; either flag may come first.
fn set_user(cfg: &mut Config, name: Option<&str>, pass: Option<&str>) {
    if cfg.auth.users.is_empty() {
        cfg.auth.users.push(Default::default());
    }
    let u = &mut cfg.auth.users[0];
    if let Some(n) = name {
        u.name = n.to_string();
    }
    if let Some(p) = pass {
        u.password = p.to_string();
    }
}

/// The `-h` text, in nats-server's layout.
pub fn usage() -> String {
    let mut s = String::from("\nUsage: tern [options]\n\n");
    for f in FLAGS.iter().filter(|f| f.supported) {
        let names: Vec<String> = f
            .spellings
            .iter()
            .map(|n| {
                if n.len() == 1 {
                    format!("-{n}")
                } else {
                    format!("--{n}")
                }
            })
            .collect();
        let mut left = names.join(", ");
        if f.arg == Arg::Value {
            left.push_str(" <value>");
        }
        s.push_str(&format!("    {left:<34} {}\n", f.help));
    }
    let missing: Vec<&str> = FLAGS
        .iter()
        .filter(|f| !f.supported)
        .map(|f| f.spellings[f.spellings.len() - 1])
        .collect();
    s.push_str(&format!(
        "\nNot supported yet (refused): --{}\n",
        missing.join(", --")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn config(s: &str) -> Result<Config, String> {
        let mut cfg = Config::default();
        apply(&parse(&args(s))?, &mut cfg)?;
        Ok(cfg)
    }

    #[test]
    fn go_style_spellings() {
        let c = config("-a 127.0.0.1 --port=5222 -n x -user foo --pass=bar -DV -T=false").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.server_name.as_str()),
            ("127.0.0.1", 5222, "x")
        );
        assert_eq!(
            (
                c.auth.users[0].name.as_str(),
                c.auth.users[0].password.as_str()
            ),
            ("foo", "bar")
        );
        assert!(c.debug && c.trace && !c.logtime);
        let c = config("--net ::1 -p -1 --auth tok --server_name y").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.auth.token.as_deref()),
            ("::1", -1, Some("tok"))
        );
        assert_eq!(c.server_name, "y");
    }

    #[test]
    fn later_flags_win() {
        assert_eq!(config("-p 1 --port 2").unwrap().port, 2);
        let c = config("-D -debug=false").unwrap();
        assert!(!c.debug);
    }

    #[test]
    fn refusals_name_the_flag() {
        assert!(config("--bogus").unwrap_err().contains("-bogus"));
        assert!(config("--tls").unwrap_err().contains("-tls"));
        assert!(config("-p").unwrap_err().contains("-p"));
        assert!(config("-p x").unwrap_err().contains("-port"));
        assert!(config("-p 70000").is_err());
        assert!(config("extra").unwrap_err().contains("extra"));
        assert!(config("-D=maybe").is_err());
    }

    #[test]
    fn cluster_flags() {
        let c = config("--cluster nats://127.0.0.1:6222 --cluster_name demo --routes nats://a:1,nats-route://u:p@b:2 --no_advertise").unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(
            (cl.host.as_str(), cl.port, cl.name.as_deref()),
            ("127.0.0.1", 6222, Some("demo"))
        );
        assert_eq!(cl.routes.len(), 2);
        assert_eq!(cl.routes[1].user.as_deref(), Some("u"));
        assert!(cl.no_advertise);
        assert!(config("--routes nats://a:1")
            .unwrap_err()
            .contains("--cluster"));
    }

    #[test]
    fn help_and_version() {
        assert!(parse(&args("-h")).unwrap().help);
        assert!(parse(&args("--version")).unwrap().version);
        assert!(usage().contains("--addr"));
    }
}
