// The order in which one message is delivered to several overlapping subscriptions of the same
// connection (found while testing accounts): nats-server walks its subject tree level by level,
// giving `>` subscriptions first, then the `*` branch, then the literal subject; queue groups
// after all plain subscriptions. Only subscriptions in different tree nodes are compared (within
// one node nats-server's order is that of a Go map, i.e. unspecified).

use crate::harness::*;

#[test]
fn overlapping_subscriptions_of_one_connection() {
    let p = Pair::start(&[]);
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nSUB foo 1\r\nSUB > 2\r\nSUB * 3\r\nSUB foo q 4\r\nPUB foo 1\r\nx\r\nPING\r\n"),
        &[info(
            "MSG foo 2 1\r\nx\r\nMSG foo 1 1\r\nx\r\nMSG foo 3 1\r\nx\r\nMSG foo 4 1\r\nx\r\nPONG\r\n",
        )],
    );
    // Two tokens: `>`, then the `*` branch (`*.>`, then `*.b`, then `*.*`), then `a.>`, then
    // the literal `a.b`, then `a.*`.
    p.check(
        &one("CONNECT {\"verbose\":false}\r\nSUB a.b 1\r\nSUB a.* 2\r\nSUB a.> 3\r\nSUB *.b 4\r\nSUB *.* 5\r\nSUB *.> 6\r\nSUB > 7\r\nPUB a.b 1\r\nx\r\nPING\r\n"),
        &[info(
            "MSG a.b 7 1\r\nx\r\nMSG a.b 6 1\r\nx\r\nMSG a.b 4 1\r\nx\r\nMSG a.b 5 1\r\nx\r\n\
             MSG a.b 3 1\r\nx\r\nMSG a.b 1 1\r\nx\r\nMSG a.b 2 1\r\nx\r\nPONG\r\n",
        )],
    );
}
