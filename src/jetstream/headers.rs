//! NATS/1.0 header blocks as JetStream reads and writes them.
//!
//! Reading copies nats-server's `getHeader` exactly, quirks included: the key is looked up
//! as a byte string, only its *first* occurrence counts, and that occurrence must start a
//! line and be followed by `:` (so `X-Nats-Msg-Id: a` hides a later `Nats-Msg-Id`, and
//! `nats-msg-id` is not `Nats-Msg-Id`). Leading spaces of the value are skipped, trailing
//! ones kept. Writing appends `Key: value` lines before the final CRLF (`genHeader`).

use memchr::memmem;

pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
pub const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
pub const EXPECTED_LAST_SUBJ_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
pub const ROLLUP: &str = "Nats-Rollup";
/// Added by nats-server to requests crossing accounts; removed before a message is stored.
pub const REQUEST_INFO: &str = "Nats-Request-Info";

pub const STREAM: &str = "Nats-Stream";
pub const SEQUENCE: &str = "Nats-Sequence";
pub const TIME_STAMP: &str = "Nats-Time-Stamp";
pub const SUBJECT: &str = "Nats-Subject";
pub const LAST_SEQUENCE: &str = "Nats-Last-Sequence";
pub const MSG_SIZE: &str = "Nats-Msg-Size";

const HDR_LINE: &[u8] = b"NATS/1.0\r\n";

/// nats-server's `getHeader`: the value of `key`, or `None` (an empty value is `Some("")`).
pub fn get<'a>(key: &str, hdr: &'a [u8]) -> Option<&'a [u8]> {
    if hdr.is_empty() {
        return None;
    }
    let index = memmem::find(hdr, key.as_bytes())?;
    if index < 2 || hdr[index - 1] != b'\n' || hdr[index - 2] != b'\r' {
        return None;
    }
    let mut i = index + key.len();
    if hdr.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while hdr.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    while i < hdr.len() {
        if hdr[i] == b'\r' && hdr.get(i + 1) == Some(&b'\n') {
            break;
        }
        i += 1;
    }
    Some(&hdr[start.min(hdr.len())..i])
}

/// A header value as text ("" when absent, as Go's `string(getHeader(..))`).
pub fn get_str(key: &str, hdr: &[u8]) -> String {
    get(key, hdr)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// A numeric header as nats-server reads it (`parseInt64`, then `uint64(..)`): absent or
/// empty is `None`; anything but plain digits is `u64::MAX` (-1), which matches nothing.
pub fn get_seq(key: &str, hdr: &[u8]) -> Option<u64> {
    let v = get(key, hdr)?;
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Some(u64::MAX);
        }
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
        {
            Some(n) => n,
            None => return Some(u64::MAX),
        };
    }
    Some(n)
}

/// nats-server's `removeHeaderIfPresent`: drops the `key` line; `None` if nothing remains.
pub fn remove(hdr: &[u8], key: &str) -> Option<Vec<u8>> {
    let keep = || Some(hdr.to_vec());
    let Some(start) = memmem::find(hdr, key.as_bytes()) else {
        return keep();
    };
    if start < 1 || hdr[start - 1] != b'\n' || hdr.get(start + key.len()) != Some(&b':') {
        return keep();
    }
    let Some(end) = memmem::find(&hdr[start..], b"\r\n") else {
        return keep();
    };
    let mut out = hdr[..start].to_vec();
    out.extend_from_slice(&hdr[start + end + 2..]);
    if out.len() <= b"NATS/1.0\r\n\r\n".len() {
        return None;
    }
    Some(out)
}

/// nats-server's `genHeader`: `hdr` (or a fresh `NATS/1.0` block) with `key: value` added
/// before the final blank line. CR and LF in the value become spaces, as Go's http.Header.
pub fn append(hdr: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(hdr.len() + key.len() + value.len() + 8);
    if hdr.len() > 2 {
        out.extend_from_slice(&hdr[..hdr.len() - 2]);
    } else {
        out.extend_from_slice(HDR_LINE);
    }
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b": ");
    let clean: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    out.extend_from_slice(clean.trim_matches([' ', '\t']).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// A status-only header block: `NATS/1.0 404 Message Not Found\r\n\r\n`.
pub fn status(code: u16, text: &str) -> Vec<u8> {
    format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &[u8] = b"NATS/1.0\r\nNats-Msg-Id:   m9  \r\nNats-Expected-Last-Sequence: 12\r\n\r\n";

    #[test]
    fn get_like_nats_server() {
        assert_eq!(get(MSG_ID, H), Some(&b"m9  "[..]));
        assert_eq!(get_seq(EXPECTED_LAST_SEQ, H), Some(12));
        assert_eq!(get(ROLLUP, H), None);
        let hidden = b"NATS/1.0\r\nX-Nats-Msg-Id: a\r\nNats-Msg-Id: b\r\n\r\n";
        assert_eq!(get(MSG_ID, hidden), None);
        assert_eq!(get(MSG_ID, b"NATS/1.0\r\nnats-msg-id: a\r\n\r\n"), None);
        let empty = b"NATS/1.0\r\nNats-Expected-Last-Sequence:\r\n\r\n";
        assert_eq!(get_seq(EXPECTED_LAST_SEQ, empty), None);
        let bad = b"NATS/1.0\r\nNats-Expected-Last-Sequence: abc\r\n\r\n";
        assert_eq!(get_seq(EXPECTED_LAST_SEQ, bad), Some(u64::MAX));
        // A truncated block never panics.
        for i in 0..H.len() {
            let _ = get(MSG_ID, &H[..i]);
            let _ = get_seq(EXPECTED_LAST_SEQ, &H[..i]);
        }
    }

    #[test]
    fn append_and_remove() {
        let h = append(b"", STREAM, "S");
        assert_eq!(h, b"NATS/1.0\r\nNats-Stream: S\r\n\r\n");
        let h = append(&h, SEQUENCE, "1");
        assert_eq!(h, b"NATS/1.0\r\nNats-Stream: S\r\nNats-Sequence: 1\r\n\r\n");
        let with_info = b"NATS/1.0\r\nNats-Request-Info: {}\r\nA: b\r\n\r\n";
        assert_eq!(
            remove(with_info, REQUEST_INFO).unwrap(),
            b"NATS/1.0\r\nA: b\r\n\r\n"
        );
        assert_eq!(
            remove(b"NATS/1.0\r\nNats-Request-Info: {}\r\n\r\n", REQUEST_INFO),
            None
        );
        assert_eq!(remove(H, REQUEST_INFO).unwrap(), H);
        assert_eq!(
            status(404, "Message Not Found"),
            b"NATS/1.0 404 Message Not Found\r\n\r\n"
        );
    }
}
