// Parser leniency that clients rely on: case-insensitive operations, tabs and runs of blanks
// between arguments, trailing blanks, bare LF line endings for control lines (while a payload
// must end in CR LF), several commands per write, and empty payloads.

use crate::harness::*;

const Q: &str = "CONNECT {\"verbose\":false}\r\n";

#[test]
fn operations_are_case_insensitive() {
    let p = Pair::start(&[]);
    p.check(
        &one("connect {\"verbose\":false}\r\nsub foo 1\r\npub foo 2\r\nhi\r\nSuB bar 2\r\nPuB bar 1\r\nx\r\nunsub 1\r\nUnSuB 2\r\npub foo 0\r\n\r\npong\r\nping\r\n"),
        &[info("MSG foo 1 2\r\nhi\r\nMSG bar 2 1\r\nx\r\nPONG\r\n")],
    );
    p.check(&one("cOnNeCt {}\r\nPiNg\r\n"), &[info("+OK\r\nPONG\r\n")]);
}

#[test]
fn tabs_and_multiple_blanks_between_arguments() {
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB\tfoo\t1\r\nSUB  bar   q    2  \r\nPUB\tfoo\t2\r\nhi\r\nPUB \t bar  \t  rep   3 \t \r\nabc\r\nUNSUB\t1\t\r\nUNSUB   2   1\r\nPING\r\n",
            Q
        )),
        &[info("MSG foo 1 2\r\nhi\r\nMSG bar 2 rep 3\r\nabc\r\nPONG\r\n")],
    );
}

#[test]
fn bare_lf_line_endings() {
    let p = Pair::start(&[]);
    // Control lines may end in LF alone ...
    p.check(
        &one("CONNECT {\"verbose\":false}\nSUB foo 1\nPUB foo 2\nhi\r\nUNSUB 1\nPING\n"),
        &[info("MSG foo 1 2\r\nhi\r\nPONG\r\n")],
    );
    // ... but the payload must be followed by CR LF.
    p.check(
        &closes(format!("{}SUB foo 1\nPUB foo 2\nhi\nPING\n", Q)),
        &[info_closed("-ERR 'Unknown Protocol Operation'\r\n")],
    );
}

#[test]
fn many_commands_in_one_write() {
    let p = Pair::start(&[]);
    let mut data = format!("{}SUB foo 1\r\n", Q);
    let mut want = String::new();
    for i in 0..300 {
        data.push_str(&format!("PUB foo {}\r\n{}\r\n", i.to_string().len(), i));
        want.push_str(&format!("MSG foo 1 {}\r\n{}\r\n", i.to_string().len(), i));
    }
    data.push_str("PING\r\n");
    want.push_str("PONG\r\n");
    p.check(&one(data), &[info(&want)]);
}

#[test]
fn empty_payloads_and_reply_subjects() {
    let p = Pair::start(&[]);
    p.check(
        &one(format!(
            "{}SUB foo 1\r\nPUB foo 0\r\n\r\nPUB foo r 0\r\n\r\nPUB foo 00\r\n\r\nPING\r\n",
            Q
        )),
        &[info(
            "MSG foo 1 0\r\n\r\nMSG foo 1 r 0\r\n\r\nMSG foo 1 00\r\n\r\nPONG\r\n",
        )],
    );
}
