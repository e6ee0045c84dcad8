// Non-fatal violations: per-user publish/subscribe permissions from the config file
// (`Permissions Violation for Publish to "s"`, `... for Subscription to "s"` with
// `using queue "q"`), reserved reply subjects (`Permissions Violation for Publish with Reply
// of "r"`, even without permissions), and max_subscriptions (`maximum subscriptions exceeded`).
// The connection is kept in every case and the offending operation has no effect.

use crate::harness::*;

const PERMS: &str = r#"authorization {
  users = [
    {user: a, password: b, permissions: {
      publish: { allow: ["foo", "req.>", "secret.>"], deny: ["secret.>"] }
      subscribe: { allow: ["bar", "bar.*", "_INBOX.>"], deny: ["bar.x"] }
    }}
    {user: c, password: d}
  ]
}
"#;

const A: &str = "CONNECT {\"user\":\"a\",\"pass\":\"b\",\"verbose\":false}\r\n";

fn ok(rest: &str) -> String {
    format!("{}{}", INFO_AUTH, rest)
}

#[test]
fn publish_permissions() {
    let p = Pair::start_conf(PERMS, &[]);
    p.check(
        &one(format!(
            "{}SUB bar 1\r\nPUB foo 0\r\n\r\nPUB baz 0\r\n\r\nPUB bar 1\r\nx\r\nPUB secret.z 0\r\n\r\nPUB req.a.b 0\r\n\r\nPING\r\n",
            A
        )),
        &[ok(
            "-ERR 'Permissions Violation for Publish to \"baz\"'\r\n\
             -ERR 'Permissions Violation for Publish to \"bar\"'\r\n\
             -ERR 'Permissions Violation for Publish to \"secret.z\"'\r\nPONG\r\n",
        )],
    );
    // Verbose: no +OK for the rejected publish.
    p.check(
        &one(
            "CONNECT {\"user\":\"a\",\"pass\":\"b\"}\r\nPUB baz 0\r\n\r\nPUB foo 0\r\n\r\nPING\r\n",
        ),
        &[ok(
            "+OK\r\n-ERR 'Permissions Violation for Publish to \"baz\"'\r\n+OK\r\nPONG\r\n",
        )],
    );
}

#[test]
fn subscribe_permissions() {
    let p = Pair::start_conf(PERMS, &[]);
    p.check(
        &one(format!("{}SUB bar 1\r\nSUB baz 2\r\nSUB baz q 3\r\nSUB bar.x 4\r\nSUB bar.x g 5\r\nSUB _INBOX.abc 6\r\nPING\r\n", A)),
        &[ok(
            "-ERR 'Permissions Violation for Subscription to \"baz\"'\r\n\
             -ERR 'Permissions Violation for Subscription to \"baz\" using queue \"q\"'\r\n\
             -ERR 'Permissions Violation for Subscription to \"bar.x\"'\r\n\
             -ERR 'Permissions Violation for Subscription to \"bar.x\" using queue \"g\"'\r\nPONG\r\n",
        )],
    );
    // A permitted wildcard subscription does not receive messages on denied subjects; an
    // unrestricted user receives everything.
    let script = Script::new()
        .send(0, format!("{}SUB bar.* 1\r\nSUB baz 2\r\n", A))
        .sync(0)
        .send(1, "CONNECT {\"user\":\"c\",\"pass\":\"d\",\"verbose\":false}\r\nSUB > 9\r\nPUB bar.x 1\r\nx\r\nPUB bar.y 1\r\ny\r\nPUB baz 1\r\nz\r\n")
        .sync(1)
        .sync(0);
    p.check(
        &script,
        &[
            ok("-ERR 'Permissions Violation for Subscription to \"baz\"'\r\nPONG\r\nMSG bar.y 1 1\r\ny\r\nPONG\r\n"),
            ok("MSG bar.x 9 1\r\nx\r\nMSG bar.y 9 1\r\ny\r\nMSG baz 9 1\r\nz\r\nPONG\r\n"),
        ],
    );
}

#[test]
fn reserved_reply_subjects() {
    let p = Pair::start(&[]);
    p.check(
        &one("SUB foo 1\r\nPUB foo _R_.abc 1\r\nx\r\nPUB foo $JS.ACK.x 1\r\ny\r\nPUB foo _GR_.a.b 1\r\nz\r\nPUB foo _R_ 1\r\nw\r\nPUB foo $JS.ACK. 1\r\nv\r\nPING\r\n"),
        &[info(
            "+OK\r\n\
             -ERR 'Permissions Violation for Publish with Reply of \"_R_.abc\"'\r\n\
             -ERR 'Permissions Violation for Publish with Reply of \"$JS.ACK.x\"'\r\n\
             -ERR 'Permissions Violation for Publish with Reply of \"_GR_.a.b\"'\r\n\
             +OK\r\nMSG foo 1 _R_ 1\r\nw\r\n+OK\r\nMSG foo 1 $JS.ACK. 1\r\nv\r\nPONG\r\n",
        )],
    );
}

#[test]
fn max_subscriptions() {
    let p = Pair::start_conf("max_subscriptions: 2\n", &[]);
    p.check(
        &one("SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\nUNSUB 1\r\nSUB e 5\r\nSUB f 6\r\nPUB c 0\r\n\r\nPUB e 0\r\n\r\nPING\r\n"),
        &[info(
            "+OK\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\n-ERR 'maximum subscriptions exceeded'\r\n\
             +OK\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\n+OK\r\n+OK\r\nMSG e 5 0\r\n\r\nPONG\r\n",
        )],
    );
    // A duplicate sid does not take a slot.
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nSUB a 1\r\nSUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n"),
        &[info("-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")],
    );
}
