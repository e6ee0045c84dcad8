//! A fast, seeded hash for the maps on the message path (subjects, sids).
//!
//! std's SipHash costs more than the rest of a cached subject lookup; this one reads eight
//! bytes per step and mixes with a multiply, then finishes with a full avalanche. The seed is
//! drawn once per process so hostile clients cannot precompute colliding subjects offline.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

pub type FastMap<K, V> = HashMap<K, V, Seeded>;

pub fn new_map<K, V>() -> FastMap<K, V> {
    HashMap::with_hasher(Seeded(random_seed()))
}

/// A per-process random number (also seeds the loop's cheap RNG); never zero.
pub fn random_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut s = 0u64;
        // SAFETY: getrandom writes at most 8 bytes into the u64 we own.
        let n = unsafe { libc::getrandom((&mut s as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
        if n != 8 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            s = t ^ ((std::process::id() as u64) << 32);
        }
        s | 1
    })
}

#[derive(Clone, Copy, Debug)]
pub struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Seeded {
        Seeded(random_seed())
    }
}

impl BuildHasher for Seeded {
    type Hasher = Fast;
    fn build_hasher(&self) -> Fast {
        Fast(self.0)
    }
}

pub struct Fast(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Fast {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for Fast {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 8];
            tail[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit affects every output bit.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keys_spread() {
        let s = Seeded(12345);
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let mut h = s.build_hasher();
            h.write(format!("foo.bar.{i}").as_bytes());
            seen.insert(h.finish() >> 52); // top 12 bits: 4096 buckets
        }
        assert!(seen.len() > 3500, "{} buckets used", seen.len());
    }

    #[test]
    fn map_works() {
        let mut m: FastMap<Box<[u8]>, u32> = new_map();
        m.insert(b"a.b"[..].into(), 1);
        m.insert(b"a.b.c.d.e.f.g.h.i"[..].into(), 2);
        assert_eq!(m.get(&b"a.b"[..]), Some(&1));
        assert_eq!(m.get(&b"a.b.c.d.e.f.g.h.i"[..]), Some(&2));
        assert_eq!(m.get(&b"a.c"[..]), None);
    }
}
