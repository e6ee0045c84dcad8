//! Tests of the config-file syntax: separators, values, keys, durations, accessors (and the
//! helpers `reader_tests.rs` shares).

use super::syntax::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn parse(text: &str) -> Map {
    parse_str(text, "t.conf", Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
}
pub(super) fn error(text: &str) -> String {
    parse_str(text, "t.conf", Path::new("."))
        .expect_err(text)
        .to_string()
}
/// Value at a dotted path (`a.b.0.c`; numbers index lists).
pub(super) fn at<'m>(m: &'m Map, path: &str) -> &'m Value {
    let mut parts = path.split('.');
    let mut v = &m
        .get(parts.next().unwrap())
        .unwrap_or_else(|| panic!("{path}"))
        .value;
    for p in parts {
        v = match v {
            Value::List(l) => &l[p.parse::<usize>().unwrap()].value,
            Value::Map(m) => &m.get(p).unwrap_or_else(|| panic!("{path}")).value,
            _ => panic!("{path}"),
        };
    }
    v
}
pub(super) fn s(v: &str) -> Value {
    Value::Str(v.into())
}
pub(super) fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("conf-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn separators_comments_terminators() {
    let m =
            parse("a: 1\nb = 2\nc 3\n# c\n// c\nd: 4 # c\ne: 5 // c\nf: 6; g: 7, h: 8\n\"i\": 9\n'j' = 10\nk\n  11\n");
    for (i, k) in "abcdefghijk".chars().enumerate() {
        assert_eq!(at(&m, &k.to_string()), &Value::Int(i as i64 + 1), "{k}");
    }
    // nats-server ignores braces around the whole file.
    assert_eq!(at(&parse("{\n port: 4222\n}\n"), "port"), &Value::Int(4222));
    assert_eq!(
        at(&parse("port: 4222, debug: true }"), "debug"),
        &Value::Bool(true)
    );
}

#[test]
fn maps_and_lists() {
    let m = parse("cluster {\n  port: 4248\n  inner { x: 1, y: 2, }\n}\nnext\n{\n a = 1 }\ne {}\nl = [1, 2, 3]\nn = [\n  a # c\n  b, // c\n  c,\n]\nmix [ {a: 1}, [x, y ], 'q' ]\nempty []\n");
    assert_eq!(at(&m, "cluster.port"), &Value::Int(4248));
    assert_eq!(at(&m, "cluster.inner.y"), &Value::Int(2));
    assert_eq!(at(&m, "next.a"), &Value::Int(1));
    assert!(at(&m, "e").as_map().unwrap().is_empty());
    let ints: Vec<_> = at(&m, "l")
        .as_list()
        .unwrap()
        .iter()
        .map(|i| i.value.as_i64().unwrap())
        .collect();
    assert_eq!(ints, [1, 2, 3]);
    let strs: Vec<_> = at(&m, "n")
        .as_list()
        .unwrap()
        .iter()
        .map(|i| i.value.as_str().unwrap())
        .collect();
    assert_eq!(strs, ["a", "b", "c"]);
    assert_eq!(at(&m, "mix.0.a"), &Value::Int(1));
    assert_eq!(at(&m, "mix.1.1"), &s("y"));
    assert_eq!(at(&m, "mix.2"), &s("q"));
    assert_eq!(at(&m, "empty").as_list().unwrap().len(), 0);
    let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["cluster", "next", "e", "l", "n", "mix", "empty"]);
}

#[test]
fn strings() {
    let m = parse(concat!(
        "a: \"x\\ty\\n\\r\\\"\\\\\\x41\\xc3\\xa9\"\n",
        "b: 'raw \\q \"'\n",
        "c: 0.0.0.0\nd: 127.0.0.1:4222\ne: nats://h:4248\nf: a#b\ng: $2a$11$abc/def.\n",
        "h: a\\tb\ni: 10s\nj: 1kx\nk: \"true\"\nl: \"multi\nline\"\nm: ab'\n",
        "n: (\n  block ( ) text\n)\no: (\n)\n",
    ));
    assert_eq!(at(&m, "a"), &s("x\ty\n\r\"\\Aé"));
    assert_eq!(at(&m, "b"), &s("raw \\q \""));
    assert_eq!(at(&m, "c"), &s("0.0.0.0"));
    assert_eq!(at(&m, "d"), &s("127.0.0.1:4222"));
    assert_eq!(at(&m, "e"), &s("nats://h:4248"));
    assert_eq!(at(&m, "f"), &s("a#b"));
    assert_eq!(at(&m, "g"), &s("$2a$11$abc/def."));
    assert_eq!(at(&m, "h"), &s("a\tb"));
    assert_eq!(at(&m, "i"), &s("10s"));
    assert_eq!(at(&m, "j"), &s("1kx"));
    assert_eq!(at(&m, "k"), &s("true"));
    assert_eq!(at(&m, "l"), &s("multi\nline"));
    assert_eq!(at(&m, "m"), &s("ab")); // a quote ends a bare string (nats-server)
    assert_eq!(at(&m, "n"), &s("\n  block ( ) text\n"));
    assert_eq!(at(&m, "o"), &s("\n"));
    assert_eq!(m.get("o").unwrap().pos.line, 18);
}

#[test]
fn bools() {
    for (word, b) in [
        ("true", true),
        ("YES", true),
        ("On", true),
        ("false", false),
        ("No", false),
        ("OFF", false),
    ] {
        assert_eq!(
            at(&parse(&format!("x: {word}")), "x"),
            &Value::Bool(b),
            "{word}"
        );
    }
    assert_eq!(at(&parse("x: truth"), "x"), &s("truth"));
}

#[test]
fn numbers_and_size_suffixes() {
    let cases = [
        ("0", 0),
        ("-12", -12),
        ("4222", 4222),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1Ki", 1024),
        ("1kib", 1024),
        ("2m", 2_000_000),
        ("2MB", 2 << 20),
        ("-1m", -1_000_000),
        ("1g", 1_000_000_000),
        ("1Gb", 1 << 30),
        ("1t", 1_000_000_000_000),
        ("1TiB", 1 << 40),
        ("1p", 1_000_000_000_000_000),
        ("1pb", 1 << 50),
        ("1e", 1_000_000_000_000_000_000),
        ("1EB", 1 << 60),
        ("9223372036854775807", i64::MAX),
        ("-9223372036854775808", i64::MIN),
    ];
    for (text, n) in cases {
        assert_eq!(
            at(&parse(&format!("x: {text}\n")), "x"),
            &Value::Int(n),
            "{text}"
        );
        assert_eq!(
            at(&parse(&format!("x: [{text}]")), "x.0"),
            &Value::Int(n),
            "[{text}]"
        );
    }
    assert_eq!(at(&parse("x: 1.5"), "x"), &Value::Float(1.5));
    assert_eq!(at(&parse("x: -0.25;"), "x"), &Value::Float(-0.25));
    assert_eq!(at(&parse("x: 4222abc"), "x"), &s("4222abc"));
    assert_eq!(at(&parse("x: 10ms"), "x"), &s("10ms"));
}

#[test]
fn datetimes() {
    assert_eq!(
        at(&parse("x: 2024-02-29T23:59:59Z"), "x"),
        &s("2024-02-29T23:59:59Z")
    );
    assert_eq!(
        error("x: 2023-02-29T00:00:00Z"),
        "t.conf:1:24: invalid datetime '2023-02-29T00:00:00Z'"
    );
    assert_eq!(
        error("x: 2023-13-01T00:00:00Z"),
        "t.conf:1:24: invalid datetime '2023-13-01T00:00:00Z'"
    );
    assert_eq!(
        error("x: 2023-01-02\n"),
        "t.conf:2:1: invalid datetime, expected YYYY-MM-DDTHH:MM:SSZ"
    );
    assert_eq!(
        error("x: 123-4"),
        "t.conf:1:7: dates must be in full ISO8601 Zulu form"
    );
}

#[test]
fn keys_duplicates_positions() {
    let m =
        parse("Port: 1\nport: 2\nx: 1\ny {\n  z: [\n    a\n    {b: 1}\n  ]\n}\nx: 3\n\"a b\": 4\n");
    assert_eq!(at(&m, "Port"), &Value::Int(1)); // keys are case-sensitive here
    assert_eq!(at(&m, "port"), &Value::Int(2));
    assert_eq!(at(&m, "x"), &Value::Int(3)); // later wins ...
    let keys: Vec<_> = m.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["Port", "port", "x", "y", "a b"]); // ... at the first position
    assert_eq!(m.get("x").unwrap().pos.line, 10);
    let y = m.get("y").unwrap();
    assert_eq!((y.pos.line, y.pos.col, &*y.pos.file), (4, 1, "t.conf"));
    let z = &y.value.as_map().unwrap().get("z").unwrap();
    assert_eq!((z.pos.line, z.pos.col), (5, 3));
    let list = z.value.as_list().unwrap();
    assert_eq!(
        (list[0].pos.line, list[0].pos.col, list[1].pos.line),
        (6, 5, 7)
    );
    assert_eq!(m.get("a b").unwrap().pos.to_string(), "t.conf:11:1");
    assert_eq!(
        m.get("x").unwrap().error("bad").to_string(),
        "t.conf:10:1: bad"
    );
}

#[test]
fn durations() {
    let ok = [
        ("0", 0),
        ("10s", 10_000_000_000),
        ("2m", 120_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("500ms", 500_000_000),
        ("250us", 250_000),
        ("3µs", 3_000),
        ("3μs", 3_000),
        ("7ns", 7),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("+2s", 2_000_000_000),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ("-0s", 0),
        ("2562047h47m16.854775807s", i64::MAX as u64),
    ];
    for (text, nanos) in ok {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_nanos(nanos)),
            "{text}"
        );
    }
    let bad = [
        ("", "time: invalid duration \"\""),
        ("60", "time: missing unit in duration \"60\""),
        ("5x", "time: unknown unit \"x\" in duration \"5x\""),
        ("s", "time: invalid duration \"s\""),
        (".s", "time: invalid duration \".s\""),
        ("1m 30s", "time: unknown unit \"m \" in duration \"1m 30s\""),
        ("-1s", "negative duration \"-1s\""),
        ("2562048h", "time: invalid duration \"2562048h\""),
        (
            "99999999999999999999s",
            "time: invalid duration \"99999999999999999999s\"",
        ),
    ];
    for (text, msg) in bad {
        assert_eq!(parse_duration(text), Err(msg.to_string()), "{text}");
    }
}

#[test]
fn accessors() {
    let m = parse("i: 3\nf: 0.5\ns: \"1K\"\nt: 2G\nb: on\nl: []\nm {}\nq: 5X\n");
    assert_eq!(at(&m, "i").as_f64(), Some(3.0));
    assert_eq!(at(&m, "f").as_f64(), Some(0.5));
    assert_eq!(at(&m, "i").as_size(), Some(3));
    assert_eq!(at(&m, "s").as_size(), Some(1024)); // getStorageSize: K/M/G/T are 1024-based
    assert_eq!(at(&m, "t").as_size(), Some(2_000_000_000)); // unquoted: the reader's 1000-based g
    assert_eq!(at(&m, "q").as_size(), None);
    assert_eq!(s("").as_size(), Some(0));
    assert_eq!(at(&m, "b").as_bool(), Some(true));
    assert_eq!(at(&m, "b").as_str(), None);
    assert_eq!(at(&m, "l").type_name(), "list");
    assert!(at(&m, "m").as_map().is_some() && at(&m, "m").as_list().is_none());
}
