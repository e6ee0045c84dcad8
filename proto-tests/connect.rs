// Connection greeting and CONNECT: the INFO line shape and key set, +OK in verbose mode
// (verbose/pedantic/echo default to true before and within CONNECT), verbose:false, `protocol`
// range, no_responders without headers, malformed CONNECT JSON, echo off.

use crate::harness::*;

#[test]
fn info_line_shape_and_fields() {
    let s = Server::start(&[]);
    let mut c = s.raw();
    // The very first bytes: `INFO {json} \r\n` (note the space before CRLF).
    let line = c.expect_line();
    assert!(line.starts_with("INFO {"), "{:?}", line);
    assert!(
        line.ends_with("} \r\n"),
        "INFO must end with a space before CRLF: {:?}",
        line
    );
    let json = &line[5..line.len() - 3];
    assert_eq!(
        json_keys(json),
        [
            "client_id",
            "client_ip",
            "go",
            "headers",
            "host",
            "max_payload",
            "port",
            "proto",
            "server_id",
            "server_name",
            "version"
        ]
    );
    assert_eq!(json_get(json, "proto").as_deref(), Some("1"));
    assert_eq!(json_get(json, "headers").as_deref(), Some("true"));
    assert_eq!(json_get(json, "max_payload").as_deref(), Some("1048576"));
    assert_eq!(json_get(json, "port"), Some(s.port.to_string()));
    assert_eq!(json_str(json, "host").as_deref(), Some("127.0.0.1"));
    assert_eq!(json_str(json, "client_ip").as_deref(), Some("127.0.0.1"));
    let cid = json_get(json, "client_id").unwrap();
    assert!(
        cid.parse::<u64>().is_ok(),
        "client_id must be a number: {}",
        cid
    );
    assert!(!json_str(json, "server_id").unwrap().is_empty());
    assert!(!json_str(json, "version").unwrap().is_empty());
    // Without a name, server_name is the server id.
    assert_eq!(json_str(json, "server_name"), json_str(json, "server_id"));
    // Nothing else is sent before the client speaks.
    c.expect_nothing(300);
}

#[test]
fn info_client_ids_are_distinct_and_increasing() {
    let s = Server::start(&[]);
    let a = s.client();
    let b = s.client();
    let ia: u64 = json_get(&a.info, "client_id").unwrap().parse().unwrap();
    let ib: u64 = json_get(&b.info, "client_id").unwrap().parse().unwrap();
    assert!(ib > ia, "client ids {} then {}", ia, ib);
    assert_eq!(
        json_str(&a.info, "server_id"),
        json_str(&b.info, "server_id")
    );
}

#[test]
fn info_reflects_config_and_auth() {
    let s = Server::start_conf(
        "max_payload: 2048\n",
        &["--user", "u", "--pass", "p", "-n", "srv-a"],
    );
    let c = s.client();
    assert_eq!(json_get(&c.info, "max_payload").as_deref(), Some("2048"));
    assert_eq!(json_get(&c.info, "auth_required").as_deref(), Some("true"));
    assert_eq!(json_str(&c.info, "server_name").as_deref(), Some("srv-a"));
    let s2 = Server::start(&["--auth", "tok"]);
    let c2 = s2.client();
    assert_eq!(json_get(&c2.info, "auth_required").as_deref(), Some("true"));
    assert_eq!(json_keys(&c2.info).len(), 12);
}

#[test]
fn verbose_defaults_to_true() {
    let p = Pair::start(&[]);
    // Bare CONNECT {} gets +OK.
    p.check(&one("CONNECT {}\r\nPING\r\n"), &[info("+OK\r\nPONG\r\n")]);
    // Absent fields (and JSON null) keep the defaults.
    p.check(
        &one("CONNECT {\"name\":\"x\"}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    p.check(&one("CONNECT null\r\nPING\r\n"), &[info("+OK\r\nPONG\r\n")]);
    p.check(
        &one("CONNECT {\"verbose\":null}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"verbose\":true}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    // No CONNECT at all: SUB, PUB, UNSUB are acknowledged; PING is not.
    p.check(
        &one("SUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nPING\r\n"),
        &[info("+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n+OK\r\nPONG\r\n")],
    );
    // Verbose acknowledges every SUB / PUB / UNSUB / CONNECT.
    p.check(
        &one(
            "CONNECT {}\r\nSUB a 1\r\nSUB b q 2\r\nPUB c 0\r\n\r\nUNSUB 1\r\nUNSUB 2 5\r\nPING\r\n",
        ),
        &[info("+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n")],
    );
}

#[test]
fn verbose_false_is_silent() {
    let p = Pair::start(&[]);
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nPING\r\n"),
        &[info("MSG foo 1 2\r\nhi\r\nPONG\r\n")],
    );
    // Extra whitespace inside and around the JSON is fine.
    p.check(
        &one("CONNECT  { \"verbose\" : false } \r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &one("CONNECT\t{\"verbose\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    // Unknown fields and client metadata are ignored.
    p.check(
        &one("CONNECT {\"verbose\":false,\"lang\":\"rust\",\"version\":\"1.0\",\"name\":\"a\\u00e9\\\"b\",\"foo\":[1,{\"x\":2}],\"tls_required\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
}

#[test]
fn second_connect_updates_only_given_fields() {
    let p = Pair::start(&[]);
    // A later CONNECT only overrides the fields it names.
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nCONNECT {}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nCONNECT {\"verbose\":true}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"verbose\":false,\"echo\":false}\r\nCONNECT {\"echo\":true}\r\nSUB foo 1\r\nPUB foo 0\r\n\r\nPING\r\n"),
        &[info("MSG foo 1 0\r\n\r\nPONG\r\n")],
    );
}

#[test]
fn connect_json_field_names_are_case_insensitive_last_wins() {
    // Go's encoding/json: field names match case-insensitively; duplicate keys, last one wins.
    let p = Pair::start(&[]);
    p.check(
        &one("CONNECT {\"VERBOSE\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"Verbose\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"verbose\":false,\"verbose\":true}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
}

#[test]
fn connect_protocol_range() {
    let p = Pair::start(&[]);
    p.check(
        &one("CONNECT {\"protocol\":0}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    p.check(
        &one("CONNECT {\"protocol\":1}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
    p.check(
        &closes("CONNECT {\"protocol\":2}\r\nPING\r\n"),
        &[info_closed("-ERR 'invalid client protocol'\r\n")],
    );
    p.check(
        &closes("CONNECT {\"protocol\":-1,\"verbose\":false}\r\nPING\r\n"),
        &[info_closed("-ERR 'invalid client protocol'\r\n")],
    );
    // The protocol check comes before the no_responders check.
    p.check(
        &closes("CONNECT {\"protocol\":3,\"no_responders\":true}\r\n"),
        &[info_closed("-ERR 'invalid client protocol'\r\n")],
    );
    // Wrong JSON types: closed without any -ERR.
    p.check(
        &closes("CONNECT {\"protocol\":\"1\"}\r\nPING\r\n"),
        &[info_closed("")],
    );
    p.check(
        &closes("CONNECT {\"protocol\":1.5}\r\nPING\r\n"),
        &[info_closed("")],
    );
}

#[test]
fn no_responders_requires_headers() {
    let p = Pair::start(&[]);
    p.check(
        &closes("CONNECT {\"no_responders\":true}\r\nPING\r\n"),
        &[info_closed(
            "-ERR 'no responders requires headers support'\r\n",
        )],
    );
    p.check(
        &closes("CONNECT {\"verbose\":false,\"headers\":false,\"no_responders\":true}\r\nPING\r\n"),
        &[info_closed(
            "-ERR 'no responders requires headers support'\r\n",
        )],
    );
    p.check(
        &one("CONNECT {\"headers\":true,\"no_responders\":true}\r\nPING\r\n"),
        &[info("+OK\r\nPONG\r\n")],
    );
}

#[test]
fn malformed_connect_closes_silently() {
    let p = Pair::start(&[]);
    for bad in [
        "CONNECT {bad json\r\nPING\r\n",
        "CONNECT\r\nPING\r\n",
        "CONNECT []\r\nPING\r\n",
        "CONNECT {\"verbose\":\"yes\"}\r\nPING\r\n",
        "CONNECT {\"verbose\":0}\r\nPING\r\n",
        "CONNECT {\"verbose\":false}{}\r\nPING\r\n",
        "CONNECT {\"verbose\":false} junk\r\nPING\r\n",
        "CONNECT {\"verbose\":false\r\nPING\r\n",
    ] {
        p.check(&closes(bad), &[info_closed("")]);
    }
    // An account designation without accounts configured is an authorization violation.
    p.check(
        &closes("CONNECT {\"account\":\"x\",\"verbose\":false}\r\n"),
        &[info_closed("-ERR 'Authorization Violation'\r\n")],
    );
}

#[test]
fn credentials_ignored_without_auth() {
    let p = Pair::start(&[]);
    p.check(
        &one("CONNECT {\"user\":\"a\",\"pass\":\"b\",\"auth_token\":\"t\",\"verbose\":false}\r\nPING\r\n"),
        &[info("PONG\r\n")],
    );
}

#[test]
fn echo_off_never_receives_own_messages() {
    let p = Pair::start(&[]);
    let script = Script::new()
        .send(
            0,
            "CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB foo 1\r\nSUB bar 2\r\n",
        )
        .sync(0)
        .send(1, "CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n")
        .sync(1)
        .send(0, "PUB foo 2\r\nhi\r\nPUB bar 0\r\n\r\n")
        .sync(0)
        .sync(1)
        .send(1, "PUB foo 3\r\nyou\r\n")
        .sync(1)
        .sync(0);
    p.check(
        &script,
        &[
            info("PONG\r\nPONG\r\nMSG foo 1 3\r\nyou\r\nPONG\r\n"),
            info("PONG\r\nMSG foo 1 2\r\nhi\r\nPONG\r\nMSG foo 1 3\r\nyou\r\nPONG\r\n"),
        ],
    );
    // Echo on (the default): the publisher gets its own message.
    p.check(
        &one(
            "CONNECT {\"verbose\":false,\"echo\":true}\r\nSUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n",
        ),
        &[info("MSG foo 1 2\r\nhi\r\nPONG\r\n")],
    );
}
