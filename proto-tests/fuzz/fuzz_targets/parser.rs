//! The parser alone: any bytes, as a client and as a route, with small limits. A frame never
//! claims more bytes than it has; "incomplete" always asks for more than it has, and never
//! for more than max_payload (plus CRLF) beyond it: a declared size cannot make a peer's
//! connection hold memory it did not send.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern::protocol::parser::{parse, Limits, Parsed, Peer};

fuzz_target!(|data: &[u8]| {
    for peer in [Peer::Client, Peer::Route] {
        let lim = Limits {
            peer,
            max_control_line: 64,
            max_payload: 256,
            headers: true,
        };
        let mut rest = data;
        loop {
            match parse(rest, &lim) {
                Parsed::Frame(_, n) => {
                    assert!(n > 0 && n <= rest.len());
                    rest = &rest[n..];
                }
                Parsed::Incomplete(n) => {
                    assert!(n > rest.len());
                    assert!(
                        n <= rest.len() + lim.max_payload + 2,
                        "{peer:?} asks for {n}"
                    );
                    break;
                }
                Parsed::Fail(_) => break,
            }
        }
    }
});
