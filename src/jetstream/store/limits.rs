//! Limits and purges, the same for both stores: nats-server's discard-new checks
//! (`storeRawMsg`), the removals that follow an append (`enforcePerSubjectLimit`,
//! `enforceMsgLimit`, `enforceBytesLimit`), and `PurgeEx`/`Compact`. All of it works on the
//! index; a store passes a `SizeFn` that measures (and, for the memory store, releases) each
//! message dropped. Removals of the oldest messages move the floor; per-subject and filtered
//! removals are one by one (tombstones).

use super::index::{Index, SizeFn};
use super::query::Filter;
use super::{StoreError, StoreLimits};

fn limit(v: i64) -> Option<u64> {
    (v > 0).then_some(v as u64)
}

fn size_of(ix: &Index, seq: u64, size: &mut SizeFn) -> u64 {
    match ix.locate(seq) {
        Some((ci, pos)) => size(&ix.chunks[ci], pos),
        None => 0,
    }
}

/// With `discard_new`, refuses a message that would break a limit; nothing changes either
/// way. `payload` is `len(hdr) + len(data)`; `size` must only measure. nats-server lets a
/// message through when it will replace the oldest of its subject (per-subject limit reached
/// without `discard_new_per_subject`); `memory` picks the memory store's comparison.
pub fn check_new(
    ix: &mut Index,
    lim: &StoreLimits,
    subject: &[u8],
    payload: u64,
    memory: bool,
    size: &mut SizeFn,
) -> Result<(), StoreError> {
    if !lim.discard_new {
        return Ok(());
    }
    let mut replaces = None;
    if let (Some(max), Some(sid)) = (limit(lim.max_msgs_per_subject), ix.lookup(subject)) {
        if ix.subs[sid as usize].msgs >= max {
            if lim.discard_new_per_subject {
                return Err(StoreError::MaxMsgsPerSubject);
            }
            replaces = ix.oldest_of(sid);
        }
    }
    if let Some(max) = limit(lim.max_msgs) {
        if ix.msgs >= max && replaces.is_none() {
            return Err(StoreError::MaxMsgs);
        }
    }
    if let Some(max) = limit(lim.max_bytes) {
        if ix.bytes + payload >= max {
            let Some(seq) = replaces else {
                return Err(StoreError::MaxBytes);
            };
            let freed = size_of(ix, seq, size);
            if freed < payload || (!memory && freed == payload) {
                return Err(StoreError::MaxBytes);
            }
        }
    }
    Ok(())
}

/// After an append on subject `sid`: its per-subject limit, then `max_msgs`, then `max_bytes`.
pub fn enforce(ix: &mut Index, lim: &StoreLimits, sid: u32, drop: &mut SizeFn) {
    if let Some(max) = limit(lim.max_msgs_per_subject) {
        trim_subject(ix, sid, max, drop);
    }
    trim_head(ix, lim, drop);
}

/// Every limit at once, for new limits (STREAM.UPDATE) and recovery.
pub fn enforce_all(ix: &mut Index, lim: &StoreLimits, drop: &mut SizeFn) {
    if let Some(max) = limit(lim.max_msgs_per_subject) {
        let over: Vec<u32> = (0..ix.subs.len() as u32)
            .filter(|&s| ix.subs[s as usize].msgs > max)
            .collect();
        for sid in over {
            trim_subject(ix, sid, max, drop);
        }
    }
    trim_head(ix, lim, drop);
}

fn trim_subject(ix: &mut Index, sid: u32, max: u64, drop: &mut SizeFn) {
    while ix.subs[sid as usize].msgs > max {
        let Some(seq) = ix.oldest_of(sid) else { break };
        if ix.remove(seq, drop).is_none() {
            break;
        }
    }
}

fn trim_head(ix: &mut Index, lim: &StoreLimits, drop: &mut SizeFn) {
    if let Some(max) = limit(lim.max_msgs) {
        while ix.msgs > max {
            if !ix.drop_head(drop) {
                break;
            }
        }
    }
    if let Some(max) = limit(lim.max_bytes) {
        while ix.bytes > max {
            if !ix.drop_head(drop) {
                break;
            }
        }
    }
}

/// What a purge did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub count: u64,
    /// `last` jumped forward (a compaction past the end): the next sequence is `upto`.
    pub jumped: bool,
}

/// nats-server's `PurgeEx(filter, upto, keep)`: without a filter (or `>`), everything, or
/// everything below `upto`, or all but the newest `keep`; with one, the same among matching
/// messages, removed one by one. `upto` and `keep` together purge nothing (the API refuses
/// that request first). Like nats-server, an unfiltered `keep` keeps the newest `keep`
/// sequences, so interior gaps among them leave fewer messages.
pub fn purge(
    ix: &mut Index,
    filter: Option<&[u8]>,
    upto: Option<u64>,
    keep: Option<u64>,
    drop: &mut SizeFn,
) -> Purged {
    let (upto, keep) = (upto.unwrap_or(0), keep.unwrap_or(0));
    if upto > 1 && keep > 0 {
        return Purged::default();
    }
    let f = Filter::parse(filter);
    if f != Filter::All {
        return Purged {
            count: purge_matching(ix, f, upto, keep, drop),
            jumped: false,
        };
    }
    if keep == 0 && upto <= 1 {
        return Purged {
            count: ix.purge_all(),
            jumped: false,
        };
    }
    if upto > 1 {
        return compact(ix, upto, drop);
    }
    if keep >= ix.msgs {
        return Purged::default();
    }
    // As nats-server: the newest `keep` sequences stay (interior gaps count).
    compact(ix, ix.last - keep + 1, drop)
}

/// nats-server's `Compact(seq)`: everything below `seq` goes. Past the end, the stream is
/// emptied and its next sequence becomes `seq`.
fn compact(ix: &mut Index, seq: u64, drop: &mut SizeFn) -> Purged {
    if seq <= ix.last {
        return Purged {
            count: ix.floor_to(seq, drop),
            jumped: false,
        };
    }
    let count = ix.purge_all();
    let jumped = seq > ix.first;
    if jumped {
        ix.first = seq;
        ix.last = seq - 1;
    }
    Purged { count, jumped }
}

fn purge_matching(ix: &mut Index, f: Filter, upto: u64, keep: u64, drop: &mut SizeFn) -> u64 {
    let sids = ix.matching_subjects(f);
    if sids.is_empty() {
        return 0;
    }
    let total: u64 = sids.iter().map(|&s| ix.subs[s as usize].msgs).sum();
    if keep >= total && keep > 0 {
        return 0;
    }
    let max = if keep > 0 { total - keep } else { u64::MAX };
    let mut table = vec![false; ix.subs.len()];
    let (mut lo, mut hi) = (u64::MAX, 0);
    for &s in &sids {
        table[s as usize] = true;
        lo = lo.min(ix.subs[s as usize].first);
        hi = hi.max(ix.subs[s as usize].last);
    }
    if upto > 1 {
        hi = hi.min(upto - 1);
    }
    let mut n = 0;
    while n < max {
        let Some(seq) = ix.scan(lo, hi, |sid| table[sid as usize]) else {
            break;
        };
        ix.remove(seq, drop);
        n += 1;
        lo = seq + 1;
    }
    n
}
