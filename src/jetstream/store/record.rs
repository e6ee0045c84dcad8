//! One record of a segment file: encoding, and decoding with every check recovery relies on.
//! No I/O here. The layout is drawn in `mod.rs`; in short, a little-endian header
//! `len u32 | kind u8 | seq u64 | ts i64`, a body that depends on the kind, and a CRC-32C of
//! everything before it. `len` covers the whole record, so a reader steps from one record to
//! the next, and the CRC tells a torn or corrupted record from a good one.

use super::crc::crc32c;

/// `len`, `kind`, `seq`, `ts`.
pub const HEADER: usize = 21;
/// Bytes of a message record besides subject, headers and data (`+ 4` with headers).
pub const MSG_OVERHEAD: usize = HEADER + 2 + 4;
/// Smallest mark: header, floor, a zero tombstone count, CRC.
pub const MARK_MIN: usize = HEADER + 8 + 1 + 4;
/// No record is longer (NATS payloads are at most 64 MiB); a longer `len` is garbage.
pub const MAX_RECORD: usize = 1 << 28;
/// No sequence is higher (2^62: centuries at a billion messages a second); a record that says
/// otherwise is garbage, so arithmetic on sequences never overflows.
pub const MAX_SEQ: u64 = 1 << 62;

pub const KIND_MSG: u8 = 1;
pub const KIND_MARK: u8 = 2;
/// Message flag: a header block (`hdr_len` field and bytes) is present.
pub const F_HDR: u8 = 0x10;
/// Message flag: headers and data were overwritten with zeros (secure delete).
pub const F_ERASED: u8 = 0x20;

/// A message record, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a [u8],
    pub hdr: &'a [u8],
    pub data: &'a [u8],
    pub erased: bool,
}

/// What a mark record says: the stream's last sequence and its time when it was written, the
/// floor (every sequence below it is gone) and the sequences removed one by one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub last_seq: u64,
    pub last_ts: i64,
    pub floor: u64,
    /// Ascending, no duplicates.
    pub tombs: Vec<u64>,
}

impl Mark {
    /// What every mark tern writes satisfies: it removes nothing past the last sequence it
    /// records (tombstones are removed sequences, the floor at most `last_seq + 1`). A mark
    /// that says otherwise is damage (its CRC forged or matching by chance): applied, it
    /// would remove messages appended after it.
    pub fn is_consistent(&self) -> bool {
        self.tombs.last().is_none_or(|&t| t <= self.last_seq)
            && self.floor <= self.last_seq.saturating_add(1)
    }

    /// Folds another mark of the same segment into this one.
    pub fn merge(&mut self, other: &Mark) {
        if other.last_seq >= self.last_seq {
            self.last_seq = other.last_seq;
            self.last_ts = other.last_ts;
        }
        self.floor = self.floor.max(other.floor);
        let Some(&first) = other.tombs.first() else {
            return;
        };
        // Both ascending: only the part of ours from `other`'s first tombstone on is merged
        // (a flush's tombstones are mostly past the segment's earlier ones). Sorting the
        // whole list at every flush made a segment of kv overwrites quadratic.
        let at = self.tombs.partition_point(|&t| t < first);
        let tail = self.tombs.split_off(at);
        let (mut a, mut b) = (tail.iter().peekable(), other.tombs.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x <= y => a.next(),
                (_, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            if let Some(&t) = next {
                if self.tombs.last() != Some(&t) {
                    self.tombs.push(t);
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rec<'a> {
    Msg(Msg<'a>),
    Mark(Mark),
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// The buffer ends before the record does (a torn tail, if nothing good follows).
    Short,
    /// A length, kind or field that cannot be, or a CRC mismatch.
    Invalid,
}

/// Length of the message record for these parts.
pub fn msg_len(subject: &[u8], hdr: &[u8], data: &[u8]) -> usize {
    let h = if hdr.is_empty() { 0 } else { 4 + hdr.len() };
    MSG_OVERHEAD + subject.len() + h + data.len()
}

/// The fixed header, built on the stack so it is copied in one go.
fn header_bytes(len: usize, kind: u8, seq: u64, ts: i64) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind;
    h[5..13].copy_from_slice(&seq.to_le_bytes());
    h[13..21].copy_from_slice(&ts.to_le_bytes());
    h
}

/// Appends a message record to `out`; returns its length. The caller has checked that the
/// subject fits a u16 and the record `MAX_RECORD`.
pub fn encode_msg(
    out: &mut Vec<u8>,
    seq: u64,
    ts: i64,
    subject: &[u8],
    hdr: &[u8],
    data: &[u8],
) -> usize {
    let len = msg_len(subject, hdr, data);
    let start = out.len();
    out.reserve(len);
    let mut fixed = [0u8; HEADER + 6];
    let n = if hdr.is_empty() {
        fixed[..HEADER].copy_from_slice(&header_bytes(len, KIND_MSG, seq, ts));
        HEADER + 2
    } else {
        fixed[..HEADER].copy_from_slice(&header_bytes(len, KIND_MSG | F_HDR, seq, ts));
        fixed[HEADER + 2..].copy_from_slice(&(hdr.len() as u32).to_le_bytes());
        HEADER + 6
    };
    fixed[HEADER..HEADER + 2].copy_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&fixed[..n]);
    out.extend_from_slice(subject);
    out.extend_from_slice(hdr);
    out.extend_from_slice(data);
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    len
}

/// Appends a mark record to `out`; returns its length. `m.tombs` must be ascending.
pub fn encode_mark(out: &mut Vec<u8>, m: &Mark) -> usize {
    let start = out.len();
    out.extend_from_slice(&header_bytes(0, KIND_MARK, m.last_seq, m.last_ts));
    out.extend_from_slice(&m.floor.to_le_bytes());
    put_uvarint(out, m.tombs.len() as u64);
    let mut prev = 0;
    for &t in &m.tombs {
        put_uvarint(out, t - prev);
        prev = t;
    }
    let len = out.len() + 4 - start;
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let crc = crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    len
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The header fields `(len, kind, seq, ts)` if the buffer holds them and `len` and `kind` are
/// possible. Says nothing about the CRC: used to skip quickly over impossible offsets while
/// resynchronising, and to guess which sequence a torn record carried.
pub fn header(b: &[u8]) -> Option<(usize, u8, u64, i64)> {
    if b.len() < HEADER {
        return None;
    }
    let len = u32_at(b, 0) as usize;
    let kind = b[4];
    let ok = match kind & 0x0f {
        KIND_MSG => kind & !(0x0f | F_HDR | F_ERASED) == 0 && len >= MSG_OVERHEAD,
        KIND_MARK => kind == KIND_MARK && len >= MARK_MIN,
        _ => false,
    };
    if !ok || len > MAX_RECORD || u64_at(b, 5) > MAX_SEQ {
        return None;
    }
    Some((len, kind, u64_at(b, 5), u64_at(b, 13) as i64))
}

/// Decodes the record at the start of `b`, checking its framing and CRC.
/// Returns the record and its length.
pub fn decode(b: &[u8]) -> Result<(Rec<'_>, usize), Bad> {
    let Some((len, kind, seq, ts)) = header(b) else {
        // Too short to tell, or impossible fields.
        return Err(if b.len() < HEADER {
            Bad::Short
        } else {
            Bad::Invalid
        });
    };
    if b.len() < len {
        return Err(Bad::Short);
    }
    let body = &b[..len - 4];
    if crc32c(body) != u32_at(b, len - 4) {
        return Err(Bad::Invalid);
    }
    let rec = if kind & 0x0f == KIND_MSG {
        Rec::Msg(decode_msg(body, kind, seq, ts).ok_or(Bad::Invalid)?)
    } else {
        Rec::Mark(decode_mark(body, seq, ts).ok_or(Bad::Invalid)?)
    };
    Ok((rec, len))
}

fn decode_msg(body: &[u8], kind: u8, seq: u64, ts: i64) -> Option<Msg<'_>> {
    let slen = u16_at(body, HEADER) as usize;
    let (hlen, at) = if kind & F_HDR != 0 {
        if body.len() < HEADER + 6 {
            return None;
        }
        (u32_at(body, HEADER + 2) as usize, HEADER + 6)
    } else {
        (0, HEADER + 2)
    };
    // The store never writes an empty subject (appends refuse one), and the index takes an
    // empty name for a freed subject: such a record is damage.
    if slen == 0 || at + slen + hlen > body.len() || (kind & F_HDR != 0 && hlen == 0) {
        return None;
    }
    Some(Msg {
        seq,
        ts,
        subject: &body[at..at + slen],
        hdr: &body[at + slen..at + slen + hlen],
        data: &body[at + slen + hlen..],
        erased: kind & F_ERASED != 0,
    })
}

fn decode_mark(body: &[u8], last_seq: u64, last_ts: i64) -> Option<Mark> {
    let floor = u64_at(body, HEADER);
    let mut at = HEADER + 8;
    let n = get_uvarint(body, &mut at)?;
    // Each tombstone takes at least one byte: a count beyond that is garbage.
    if n > (body.len() - at) as u64 {
        return None;
    }
    let mut tombs = Vec::with_capacity(n as usize);
    let mut prev = 0u64;
    for i in 0..n {
        let d = get_uvarint(body, &mut at)?;
        if i > 0 && d == 0 {
            return None;
        }
        prev = prev.checked_add(d).filter(|&t| t <= MAX_SEQ)?;
        tombs.push(prev);
    }
    // The floor of a store whose last sequence is MAX_SEQ and holds nothing is one above it.
    if at != body.len() || floor > MAX_SEQ + 1 {
        return None;
    }
    let m = Mark {
        last_seq,
        last_ts,
        floor,
        tombs,
    };
    m.is_consistent().then_some(m)
}

/// Overwrites a message record's headers and data with zeros, flags it erased and fixes its
/// CRC; the framing (length, kind, seq, ts, subject) is unchanged. `rec` is exactly one good
/// message record.
pub fn erase(rec: &mut [u8]) -> bool {
    let Ok((Rec::Msg(m), len)) = decode(rec) else {
        return false;
    };
    if len != rec.len() {
        return false;
    }
    let payload = m.hdr.len() + m.data.len();
    let end = len - 4;
    rec[end - payload..end].fill(0);
    rec[4] |= F_ERASED;
    let crc = crc32c(&rec[..end]);
    rec[end..].copy_from_slice(&crc.to_le_bytes());
    true
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at`, advancing it; `None` if cut short or longer than 64 bits.
pub fn get_uvarint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip_and_overhead() {
        let mut out = vec![0xAA];
        let n = encode_msg(&mut out, 7, -3, b"a.b", b"", b"hello");
        assert_eq!(n, 27 + 3 + 5, "27 bytes of overhead without headers");
        let (rec, len) = decode(&out[1..]).unwrap();
        assert_eq!(len, n);
        let want = Msg {
            seq: 7,
            ts: -3,
            subject: b"a.b",
            hdr: b"",
            data: b"hello",
            erased: false,
        };
        assert_eq!(rec, Rec::Msg(want));
        out.clear();
        let n = encode_msg(&mut out, 8, 9, b"s", b"NATS/1.0\r\n\r\n", b"");
        assert_eq!(n, 31 + 1 + 12);
        match decode(&out).unwrap().0 {
            Rec::Msg(m) => assert_eq!((m.hdr, m.data), (&b"NATS/1.0\r\n\r\n"[..], &b""[..])),
            r => panic!("{r:?}"),
        }
    }

    /// Merging keeps the tombstones ascending and without duplicates, whatever the overlap.
    #[test]
    fn mark_merge_keeps_tombstones_sorted() {
        let mut rng = crate::util::rng::Rng::from_seed(0x2545_F491_4F6C_DD1Du64);
        let mut rand = move || rng.next_u64();
        let mut m = Mark::default();
        let mut want = std::collections::BTreeSet::new();
        for _ in 0..300 {
            let mut add: Vec<u64> = (0..rand() % 6).map(|_| rand() % 400).collect();
            add.sort_unstable();
            add.dedup();
            want.extend(&add);
            m.merge(&Mark {
                tombs: add,
                ..Mark::default()
            });
            assert_eq!(m.tombs, want.iter().copied().collect::<Vec<_>>());
        }
    }

    #[test]
    fn mark_round_trip() {
        let m = Mark {
            last_seq: 1 << 41,
            last_ts: 5,
            floor: 10,
            tombs: vec![11, 12, 300, 1 << 40],
        };
        let mut out = Vec::new();
        let n = encode_mark(&mut out, &m);
        assert_eq!(n, out.len());
        assert_eq!(decode(&out).unwrap(), (Rec::Mark(m), n));
        out.clear();
        let empty = Mark::default();
        assert_eq!(encode_mark(&mut out, &empty), MARK_MIN);
        assert_eq!(decode(&out).unwrap().0, Rec::Mark(empty));
        // Removing past its own last sequence: no mark tern writes, read as damage.
        for (floor, tombs) in [(0, vec![901]), (902, vec![])] {
            out.clear();
            let bad = Mark {
                last_seq: 900,
                last_ts: 5,
                floor,
                tombs,
            };
            encode_mark(&mut out, &bad);
            assert!(decode(&out).is_err());
        }
    }

    #[test]
    fn every_flip_and_cut_is_caught() {
        let mut msg = Vec::new();
        encode_msg(&mut msg, 1, 2, b"x.y", b"h:1\r\n", b"payload");
        let mut mark = Vec::new();
        encode_mark(
            &mut mark,
            &Mark {
                last_seq: 9,
                last_ts: 2,
                floor: 1,
                tombs: vec![1, 9],
            },
        );
        for good in [msg, mark] {
            assert!(decode(&good).is_ok());
            for cut in 0..good.len() {
                assert!(decode(&good[..cut]).is_err(), "cut {cut}");
            }
            for i in 0..good.len() {
                for bit in 0..8 {
                    let mut b = good.clone();
                    b[i] ^= 1 << bit;
                    assert!(decode(&b).is_err(), "flip {i}.{bit} accepted");
                }
            }
        }
    }

    #[test]
    fn erase_keeps_framing() {
        let mut out = Vec::new();
        encode_msg(&mut out, 5, 6, b"k", b"h:v\r\n", b"secret");
        assert!(erase(&mut out));
        match decode(&out).unwrap().0 {
            Rec::Msg(m) => {
                assert!(m.erased);
                assert_eq!((m.seq, m.ts, m.subject), (5, 6, &b"k"[..]));
                assert!(m.hdr.iter().chain(m.data).all(|&b| b == 0));
            }
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut at = 0;
            assert_eq!(get_uvarint(&b, &mut at), Some(v));
            assert_eq!(at, b.len());
            let mut at = 0;
            assert_eq!(get_uvarint(&b[..b.len() - 1], &mut at), None);
        }
        let mut at = 0;
        assert_eq!(get_uvarint(&[0xff; 11], &mut at), None);
    }
}
