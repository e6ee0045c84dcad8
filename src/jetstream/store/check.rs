//! `FileStore::check`: every counter recomputed from the index, and every segment read back
//! and compared with what the index says about it. Reads the whole store; for tests.

use super::file::FileStore;
use super::idx;
use super::index::{Chunk, Index};
use super::recover::{scan, Scan};
use super::segment::{sizer, Seg};

impl FileStore {
    pub fn check(&self) -> Result<(), String> {
        self.ix.audit(&mut sizer(&self.segs))?;
        let mut prev = 0;
        // One scan across the segments, as recovery reads them: a record whose sequence does
        // not follow every message before it is damage, not a message.
        let mut sc = Scan::default();
        for (i, s) in self.segs.iter().enumerate() {
            if s.id <= prev || s.sealed == (i + 1 == self.segs.len()) {
                return Err(format!("segment {}: out of order or wrongly sealed", s.id));
            }
            prev = s.id;
            self.check_segment(s, &mut sc)?;
        }
        let mut last_seg = 0;
        for c in &self.ix.chunks {
            if c.seg < last_seg || self.seg(c.seg).is_none() {
                return Err(format!(
                    "chunk at {} names segment {} out of order or missing",
                    c.base, c.seg
                ));
            }
            last_seg = c.seg;
        }
        if let (Some(s), Some(c)) = (self.segs.back(), self.ix.chunks.back()) {
            if c.seg != s.id {
                return Err("the last chunk is not the active segment's".into());
            }
        }
        Ok(())
    }

    fn check_segment(&self, s: &Seg, sc: &mut Scan) -> Result<(), String> {
        let id = s.id;
        let tail_ok = s.tail_start <= s.durable
            && s.durable <= s.end
            && s.tail.len() as u64 == s.end - s.tail_start;
        if !tail_ok {
            return Err(format!(
                "segment {id}: tail [{}, {}) durable {}",
                s.tail_start, s.end, s.durable
            ));
        }
        let file_len = match &s.file {
            Some(f) => f.metadata().map_err(|e| e.to_string())?.len(),
            None => 0,
        };
        if file_len != s.durable {
            return Err(format!(
                "segment {id}: file has {file_len} bytes, {} flushed",
                s.durable
            ));
        }
        let buf = s
            .read(0, s.end as usize)
            .map_err(|e| format!("segment {id}: {e}"))?;
        let mut scratch = Index::new();
        let (found, chunks) = scan(&buf, id, &mut scratch, sc);
        if found.end != s.end || (s.clean && found.gaps != s.gaps) {
            return Err(format!(
                "segment {id}: reads back as {} bytes, gaps {:?} (index: {}, {:?})",
                found.end, found.gaps, s.end, s.gaps
            ));
        }
        let durable_marks = found.mark.floor == s.mark.floor && found.mark.tombs == s.mark.tombs;
        if !durable_marks {
            return Err(format!(
                "segment {id}: marks read back {:?}, kept {:?}",
                found.mark, s.mark
            ));
        }
        if s.sealed && s.clean {
            self.check_index_file(s)?;
        }
        self.check_messages(s, &chunks, &scratch)
    }

    /// The message records read back (`found`, their subjects in `scratch`) are the ones the
    /// index has for this segment, at the same offsets, on the same subjects.
    fn check_messages(&self, s: &Seg, found: &[Chunk], scratch: &Index) -> Result<(), String> {
        let on_disk: Vec<(u64, u32, &[u8])> = found
            .iter()
            .flat_map(|c| {
                c.ents
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (c.base + i as u64, *e))
            })
            .filter(|(_, e)| e.is_msg())
            .map(|(seq, e)| (seq, e.loc, scratch.name(e.subject())))
            .collect();
        let mut kept = Vec::new();
        for c in self.ix.chunks.iter().filter(|c| c.seg == s.id) {
            for (i, e) in c.ents.iter().enumerate().filter(|(_, e)| e.is_msg()) {
                let seq = c.base + i as u64;
                // Removed messages may name a subject id that was freed since; compare live ones.
                let name = match e.live_sid().filter(|_| seq >= self.ix.first) {
                    Some(sid) => self.ix.name(sid),
                    None => on_disk
                        .binary_search_by_key(&seq, |d| d.0)
                        .map_or(&b""[..], |i| on_disk[i].2),
                };
                kept.push((seq, e.loc, name));
            }
        }
        // A record the index does not have, on a sequence that is not live (below the floor,
        // removed, or never stored), is one recovery skipped for its sequence, judged against
        // segments compacted since: this scan cannot see them.
        let on_disk: Vec<_> = on_disk
            .into_iter()
            .filter(|d| {
                kept.binary_search_by_key(&d.0, |k| k.0).is_ok()
                    || (d.0 >= self.ix.first && self.ix.live(d.0).is_some())
            })
            .collect();
        if on_disk != kept {
            let n = on_disk
                .iter()
                .zip(&kept)
                .take_while(|(a, b)| a == b)
                .count();
            let (a, b) = (on_disk.get(n), kept.get(n));
            return Err(format!(
                "segment {}: message {n} reads back as {a:?}, index has {b:?}",
                s.id
            ));
        }
        Ok(())
    }

    /// The index file this sealed segment gets must decode to what the index holds.
    fn check_index_file(&self, s: &Seg) -> Result<(), String> {
        let chunks: Vec<&Chunk> = self.ix.chunks.iter().filter(|c| c.seg == s.id).collect();
        let crc = s
            .read(s.end.saturating_sub(4), 4.min(s.end as usize))
            .map_err(|e| e.to_string())?;
        let crc = if crc.len() == 4 {
            u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])
        } else {
            0
        };
        let bytes = idx::encode(s, &chunks, &self.ix, crc)
            .ok_or(format!("segment {}: cannot be indexed", s.id))?;
        let d = idx::decode(&bytes, &mut Index::new())
            .ok_or(format!("segment {}: its index does not decode", s.id))?;
        // Where a hole points does not matter (it only bounds the record before it).
        let shape = |c: &Chunk| {
            (
                c.base,
                c.ents
                    .iter()
                    .map(|e| if e.is_msg() { Some(e.loc) } else { None })
                    .collect::<Vec<_>>(),
            )
        };
        let want: Vec<_> = chunks
            .iter()
            .filter(|c| !c.ents.is_empty())
            .map(|c| shape(c))
            .collect();
        let got: Vec<_> = d
            .chunks
            .iter()
            .filter(|c| !c.ents.is_empty())
            .map(shape)
            .collect();
        if want != got || d.gaps != s.gaps || d.mark != s.mark || d.seg_len != s.end {
            return Err(format!("segment {}: index file round trip differs", s.id));
        }
        Ok(())
    }
}
