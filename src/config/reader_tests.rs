//! Tests of reading config files: variables, includes, errors and limits, real-world files,
//! robustness, and agreement with nats-server.

use super::syntax::*;
use super::syntax_tests::{at, error, parse, s, tmpdir};
use std::path::Path;
use std::time::Duration;

#[test]
fn variables() {
    let m = parse(
        "v = 4222\nport: $v\nc {\n  v = 1\n  a: $v\n  d { b: $v }\n  l: [$v, {q: $v}]\n}\ne: $v\n",
    );
    assert_eq!(at(&m, "port"), &Value::Int(4222));
    assert_eq!(at(&m, "c.a"), &Value::Int(1)); // inner definition shadows
    assert_eq!(at(&m, "c.d.b"), &Value::Int(1)); // enclosing map
    assert_eq!(at(&m, "c.l.1.q"), &Value::Int(1));
    assert_eq!(at(&m, "e"), &Value::Int(4222)); // inner scope is gone
    assert!(m.get("v").unwrap().used_as_var && !m.get("port").unwrap().used_as_var);
    assert_eq!(m.get("e").unwrap().pos.line, 9);
    let m = parse("users = [{user: a}]\nauth { users: $users }\n");
    assert_eq!(at(&m, "auth.users.0.user"), &s("a"));
    // Not visible: a sibling's or a later definition.
    assert_eq!(
        error("a { x = 1 }\ny: $x\n"),
        "t.conf:2:4: variable reference for 'x' can not be found"
    );
    assert_eq!(
        error("a { y: $z, z: 1 }"),
        "t.conf:1:8: variable reference for 'z' can not be found"
    );
    assert_eq!(
        error("y: $"),
        "t.conf:1:4: variable reference for '' can not be found"
    );
    // Environment fallback; the value is parsed like a config value.
    // (std serialises set_var/var_os; the names are unique to this test.)
    std::env::set_var("CONF_TEST_INT", "4222");
    std::env::set_var("CONF_TEST_LIST", "[a, 'b c']");
    std::env::set_var("CONF_TEST_BLANK", " ");
    std::env::set_var("CONF_TEST_BAD", "a b");
    std::env::set_var("CONF_TEST_SELF", "$CONF_TEST_SELF");
    let m = parse("a: $CONF_TEST_INT\nb: $CONF_TEST_LIST\nc: $CONF_TEST_BLANK\n");
    assert_eq!(
        (at(&m, "a"), at(&m, "b.1"), at(&m, "c")),
        (&Value::Int(4222), &s("b c"), &s(""))
    );
    assert_eq!(m.get("b").unwrap().pos.line, 2);
    assert_eq!(
        error("\nx: $CONF_TEST_BAD"),
        "t.conf:2:4: variable reference for 'CONF_TEST_BAD' could not be parsed: \
             expected a new line, ',', ';' or comment after value, found 'b'"
    );
    assert_eq!(
            error("x: $CONF_TEST_SELF"),
            "t.conf:1:4: variable reference for 'CONF_TEST_SELF' could not be parsed: nesting deeper than 64"
        );
}

#[test]
fn includes() {
    let d = tmpdir("inc");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    std::fs::write(
            d.join("main.conf"),
            "p = 1\ninclude sub/a.conf\nauth {\n  include \"sub/b.conf\"\n  x: $PASS\n}\nlast: $A_KEY\n",
        )
        .unwrap();
    std::fs::write(
        d.join("sub/a.conf"),
        "A_KEY: 'from a'\ninclude 'deeper/c.conf'; p = 2\n",
    )
    .unwrap();
    std::fs::write(d.join("sub/deeper/c.conf"), "C: 3\n").unwrap();
    std::fs::write(d.join("sub/b.conf"), "# users\nPASS: secret\n").unwrap();
    let m = parse_file(&d.join("main.conf")).unwrap();
    assert_eq!(at(&m, "A_KEY"), &s("from a"));
    assert_eq!(at(&m, "C"), &Value::Int(3)); // relative to the including file
    assert_eq!(at(&m, "p"), &Value::Int(2)); // include merges; later wins
    assert_eq!(at(&m, "auth.x"), &s("secret"));
    assert_eq!(at(&m, "last"), &s("from a"));
    let pass = at(&m, "auth").as_map().unwrap().get("PASS").unwrap();
    assert!(pass.used_as_var && pass.pos.file.ends_with("sub/b.conf") && pass.pos.line == 2);
    // parse_str resolves against base_dir; absolute paths too (as Go's filepath.Join).
    let m = parse_str("include /sub/b.conf", "s", &d).unwrap();
    assert_eq!(at(&m, "PASS"), &s("secret"));
    // An included file does not see the includer's variables.
    std::fs::write(d.join("v.conf"), "port: $p\n").unwrap();
    let e = parse_str("p = 1\ninclude v.conf", "s", &d).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: variable reference for 'p' can not be found",
            d.join("v.conf:1:7").display()
        )
    );
    // Errors.
    let e = parse_str("a: 1\ninclude nope.conf", "s", &d)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "s:2:1: cannot read '{}'",
            d.join("nope.conf").display()
        )),
        "{e}"
    );
    std::fs::write(d.join("loop1.conf"), "include loop2.conf\n").unwrap();
    std::fs::write(d.join("loop2.conf"), "x: 1\ninclude ./loop1.conf\n").unwrap();
    let e = parse_file(&d.join("loop1.conf")).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: include cycle: '{}' is already being read",
            d.join("loop2.conf:2:1").display(),
            d.join("./loop1.conf").display()
        )
    );
    let e = parse_str("include sub", "s", &d).unwrap_err().to_string();
    assert!(
        e.ends_with("not a regular file or larger than 16 MiB"),
        "{e}"
    );
    for i in 0..12 {
        std::fs::write(
            d.join(format!("n{i}.conf")),
            format!("include n{}.conf\n", i + 1),
        )
        .unwrap();
    }
    std::fs::write(d.join("n12.conf"), "x: 1").unwrap();
    let e = parse_file(&d.join("n0.conf")).unwrap_err().to_string();
    assert!(e.ends_with("includes nested deeper than 10"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn errors() {
    let big_float = format!("f: 1{}.0", "0".repeat(400));
    let cases = [
            ("port:\n", "t.conf:1:6: expected a value, found a new line"),
            ("port:", "t.conf:1:6: expected a value, found end of file"),
            ("port\n", "t.conf:1:1: key 'port' has no value"),
            ("a: 1 2\n", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '2'"),
            ("m { a: 1 2 }", "t.conf:1:10: expected a new line, ',', ';', '}' or comment after value, found '2'"),
            ("m {\n a: 1\n", "t.conf:3:1: unexpected end of file in map (missing '}')"),
            ("m { a: ; }", "t.conf:1:8: expected a value"),
            ("= 1", "t.conf:1:1: expected a key, found '='"),
            ("m { a: 1,, b: 2 }", "t.conf:1:10: expected a key, found ','"),
            ("l: [1, 2", "t.conf:1:9: unexpected end of file in list (missing ']')"),
            ("l: [1 2]", "t.conf:1:7: expected ',' or ']' after list item, found '2'"),
            ("l: [,]", "t.conf:1:5: unexpected ',' in list"),
            ("l: [\n1,\n", "t.conf:3:1: unexpected end of file in list (missing ']')"),
            ("s: \"abc", "t.conf:1:8: unterminated string"),
            ("s: 'abc\n", "t.conf:2:1: unterminated string"),
            ("'key: 1", "t.conf:1:8: unterminated quoted key"),
            ("s: \"a\\qb\"", "t.conf:1:6: invalid escape character 'q' (allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\)"),
            ("s: a\\\n", "t.conf:1:5: invalid escape character '\\n' (allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\)"),
            ("s: \"\\x4\"", "t.conf:1:5: expected two hexadecimal digits after '\\x'"),
            ("s: \"\\xff\"", "t.conf:1:10: string with \\x escapes is not valid UTF-8"),
            ("b: (\nabc)\n", "t.conf:3:1: unterminated block string (needs ')' alone on a line)"),
            ("n: 9223372036854775808", "t.conf:1:4: integer '9223372036854775808' is out of range"),
            ("n: 9223372036854775807k", "t.conf:1:4: integer '9223372036854775807k' is out of range"),
            ("n: 1kbb", "t.conf:1:4: invalid size suffix in '1kbb'"),
            ("n: 1k2", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '2'"),
            ("d: 1m30s", "t.conf:1:6: expected a new line, ',', ';' or comment after value, found '3'"),
            ("f: 1.", "t.conf:1:6: floats must have a digit after the '.'"),
            ("f: .5", "t.conf:1:4: floats must start with a digit"),
            ("f: -x", "t.conf:1:5: expected a digit after '-'"),
            (&big_float, &format!("t.conf:1:407: float '{}' is out of range", &big_float[3..])),
            ("include\n", "t.conf:1:8: include needs a file path"),
            ("include [x]", "t.conf:1:9: expected an include path, found '['"),
            ("include 'x", "t.conf:1:11: unterminated include path"),
            (
                "x: $NOPE_NOT_SET_ANYWHERE",
                "t.conf:1:4: variable reference for 'NOPE_NOT_SET_ANYWHERE' can not be found",
            ),
        ];
    for (text, want) in cases {
        let got = error(text);
        assert_eq!(got, want, "{text:?}");
    }
    let e = parse_file(Path::new("/nonexistent/x.conf")).unwrap_err();
    assert!(
        e.pos.is_none() && e.msg.starts_with("cannot read '/nonexistent/x.conf'"),
        "{e}"
    );
}

#[test]
fn limits() {
    let deep = "a: ".to_string() + &"[".repeat(100);
    assert_eq!(error(&deep), "t.conf:1:69: nesting deeper than 64");
    let deep = "a ".to_string() + &"{b ".repeat(100);
    assert!(error(&deep).ends_with("nesting deeper than 64"));
    assert!(parse(&format!("a: {}{}", "[".repeat(60), "]".repeat(60)))
        .get("a")
        .is_some());
    // Exponential `$var` expansion is cut off.
    let mut text = "v0 = [1,2,3,4,5,6,7,8]\n".to_string();
    for i in 1..10 {
        text += &format!(
            "v{i} = [$v{0},$v{0},$v{0},$v{0},$v{0},$v{0},$v{0},$v{0}]\n",
            i - 1
        );
    }
    assert!(error(&text).ends_with("variable expansion too large"));
    let big = "x".repeat(MAX_FILE_SIZE as usize + 1);
    assert_eq!(
        parse_str(&big, "big", Path::new("."))
            .unwrap_err()
            .to_string(),
        "big: file too large"
    );
}

const REAL: &str = r#"
# nats-server docs style config
server_name: "n1-c1"
listen: 0.0.0.0:4222
http: localhost:8222
max_payload: 1MB
max_pending: 64MB
ping_interval: "2m"
write_deadline: "10s"
debug: false, trace: off
logtime: true

tls {
  cert_file: "./configs/certs/server.pem"
  key_file:  "./configs/certs/key.pem"
  timeout: 2
}

cluster {
  name: c1
  listen: 127.0.0.1:6222
  authorization { user: ruser, password: T0pS3cr3t, timeout: 0.75 }
  routes = [
    nats-route://ruser:T0pS3cr3t@127.0.0.1:6222
    nats-route://ruser:T0pS3cr3t@127.0.0.1:6223
  ]
}

PERMS = {
  publish = { allow: ["req.>", "_INBOX.>"], deny: "secret.>" }
  subscribe = ">"
}
authorization {
  default_permissions = { publish: "SANDBOX.*" }
  users = [
    {user: alice, password: $2a$11$V1qrpBt8/SLfEBr4NJq4T.2mg8chx8.MTblUiTBOLV3MKDeAy.f7u, permissions: $PERMS}
    {user: bob, password: "pw", permissions: { subscribe: { deny: ["a", "b"] } }}
  ]
}

accounts {
  A: {
    users: [ {user: a, password: a} ]
    exports: [ {stream: "orders.>"}, {service: "help"} ]
    jetstream: { max_mem: 1G, max_file: 10GB }
  }
  B: { users: [{user: b, password: b}], imports: [ {stream: {account: A, subject: "orders.>"}, prefix: from_a} ] }
  SYS: {}
}
system_account: SYS
jetstream { store_dir: "/tmp/js", max_memory_store: 1GB, max_file_store: "10G" }
"#;

#[test]
fn real_world_config() {
    let m = parse(REAL);
    assert_eq!(at(&m, "listen"), &s("0.0.0.0:4222"));
    assert_eq!(at(&m, "max_payload"), &Value::Int(1 << 20));
    assert_eq!(
        parse_duration(at(&m, "ping_interval").as_str().unwrap()),
        Ok(Duration::from_secs(120))
    );
    assert_eq!(at(&m, "trace"), &Value::Bool(false));
    assert_eq!(at(&m, "cluster.authorization.timeout"), &Value::Float(0.75));
    assert_eq!(
        at(&m, "cluster.routes.1"),
        &s("nats-route://ruser:T0pS3cr3t@127.0.0.1:6223")
    );
    assert_eq!(
        at(&m, "authorization.users.0.password")
            .as_str()
            .unwrap()
            .len(),
        60
    );
    assert_eq!(
        at(&m, "authorization.users.0.permissions.publish.allow.1"),
        &s("_INBOX.>")
    );
    assert_eq!(
        at(&m, "authorization.users.1.permissions.subscribe.deny.1"),
        &s("b")
    );
    assert!(m.get("PERMS").unwrap().used_as_var);
    assert_eq!(
        at(&m, "accounts.A.jetstream.max_mem").as_size(),
        Some(1_000_000_000)
    );
    assert_eq!(
        at(&m, "accounts.A.jetstream.max_file").as_size(),
        Some(10 << 30)
    );
    assert_eq!(at(&m, "jetstream.max_file_store").as_size(), Some(10 << 30));
    assert_eq!(at(&m, "accounts.B.imports.0.stream.account"), &s("A"));
    assert_eq!(at(&m, "jetstream.max_memory_store"), &Value::Int(1 << 30));
    let users = m
        .get("authorization")
        .unwrap()
        .value
        .as_map()
        .unwrap()
        .get("users")
        .unwrap();
    assert_eq!(users.value.as_list().unwrap()[1].pos.line, 37);
}

#[test]
fn robustness_no_panics() {
    let d = tmpdir("fuzz");
    std::fs::write(d.join("inc.conf"), "x: 1\n").unwrap();
    let sample =
            format!("{REAL}\nz = (\nblock\n)\nq: \"\\x41\\t\"\ninclude inc.conf\nd: 2020-01-01T00:00:00Z\nr: $x\n");
    let mut inputs: Vec<String> = sample
        .char_indices()
        .map(|(i, _)| sample[..i].to_string())
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let specials = b"{}[]()\"'\\$#/:=,;\n \t-.0kK\xff";
    for _ in 0..3000 {
        let mut bytes = sample.clone().into_bytes();
        for _ in 0..1 + rand() % 4 {
            let i = (rand() % bytes.len() as u64) as usize;
            match rand() % 3 {
                0 => bytes[i] = specials[(rand() % specials.len() as u64) as usize],
                1 => bytes[i] = rand() as u8,
                _ => bytes.truncate(i),
            }
            if bytes.is_empty() {
                break;
            }
        }
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut failures = 0;
    for text in &inputs {
        failures += parse_str(text, "f", &d).is_err() as usize;
    }
    assert!(failures > 0 && failures < inputs.len());
    let _ = std::fs::remove_dir_all(&d);
}

/// Inputs checked with `nats-server -t -c` (v2.9.10). "accepts" means it
/// parsed (it may then report unknown fields).

#[test]
fn agrees_with_nats_server() {
    let accepted = [
        "port 4222",        // space separator
        "{ port: 4222 }",   // braces around the file
        "port: 4222\n}\n",  // stray '}' ends a top-level value
        "x {a:1,}",         // trailing comma in a map
        "x = [1, 2, ]",     // trailing comma in a list
        "x\n{\na=1\n}",     // map on the line after its key
        "server_name: a#b", // '#' inside a bare string
        "x = ab\"c",        // '"' inside a bare string
        "x = 1kx",          // becomes a string
        "x = 9223372036854775807",
        "x = 1.5.6", // IP-like string
        "INCLUDE_ME = 1\nx: $INCLUDE_ME",
        "cluster { x = 4248, port: $x }",
        "ping_interval: 10s",       // string "10s"
        "system_account: \"$SYS\"", // a quoted `$` is just text
        "x = [\n 1 # c\n 2 // c\n]",
        "server_name: ab'", // a quote ends a bare string
    ];
    for text in accepted {
        parse_str(text, "t", Path::new(".")).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    let rejected = [
        "port:\n", // Expected value but found new line
        "a b: 1",  // bare keys end at whitespace
        "x = [,]", // Unexpected array value terminator
        "x = [1 2 ]",
        "x: 1.", // Floats must have a digit after the '.'
        "x: .5",
        "x: 123-4",                // All ISO8601 dates must be in full Zulu form
        "x: 2023-13-02T03:04:05Z", // expected Zulu formatted DateTime
        "x = (hello)",             // Unexpected EOF processing block
        "x = (\n  a\n  )\n",       // ')' must start its line
        "x = 1k2",
        "x = 'ab'c",
        "x = 9223372036854775808", // out of the range
        "server_name: \"a\\qb\"",  // Invalid escape character
        "server_name: \"a\\x4\"",
        "server_name: ab\\\n",
        "ping_interval: 1m30s",     // unquoted: 1m then '3'
        "port: $nope_not_defined",  // can not be found
        "a { x = 4222 }\nport: $x", // scopes do not leak out
        "system_account: $SYS",     // a bare `$SYS` is a variable
        "x { { a: 1 } }",
    ];
    for text in rejected {
        assert!(parse_str(text, "t", Path::new(".")).is_err(), "{text:?}");
    }
    // Divergences, on purpose: nats-server rejects `[1, 2]` (number
    // touching ']'), silently drops `x = 1kbb`, `port` (no value) and
    // `x = ;`, wraps `9223372036854775807k`, and overflows its stack on
    // an environment variable whose value is `$` + its own name, and
    // never ends a block string in a CRLF file.
    for text in ["x = [1, 2]", "x = (\nblock\n)\r\n"] {
        assert!(parse_str(text, "t", Path::new(".")).is_ok(), "{text:?}");
    }
    for text in ["x = 1kbb", "port", "x = ;", "x = 9223372036854775807k"] {
        assert!(parse_str(text, "t", Path::new(".")).is_err(), "{text:?}");
    }
}
