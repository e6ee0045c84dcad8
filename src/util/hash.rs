//! The hasher of every map keyed by what clients send (subjects, sids, permission caches,
//! route interest), and the process's random seed.
//!
//! Those maps must not degrade into lists when a hostile client picks its keys: with a weak
//! mix, keys that collide for every seed can be computed offline (the multiply-rotate hash
//! tern used before had them; see the tests), and n colliding subjects cost O(n) per insert,
//! stalling the loop for everyone. std's `RandomState` is SipHash-1-3, a keyed PRF, with its
//! key from the OS (getrandom) and different for every map: no collision can be found
//! without the key. A SipHash-1-3 written here (this file's git history) measured the same
//! on lookups, so tern keeps std's rather than owning hashing code.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::sync::OnceLock;

pub type FastMap<K, V> = HashMap<K, V, RandomState>;

pub fn new_map<K, V>() -> FastMap<K, V> {
    HashMap::default()
}

/// A per-process random number (seeds the loop's cheap RNG); never zero.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    use std::time::Instant;

    fn load(bytes: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(w)
    }

    /// The hash this module used before: `h = (rotl(h, 23) ^ word) * K`, then fmix64.
    #[derive(Clone, Copy)]
    struct OldSeeded(u64);
    struct Old(u64);
    impl BuildHasher for OldSeeded {
        type Hasher = Old;
        fn build_hasher(&self) -> Old {
            Old(self.0)
        }
    }
    impl Old {
        fn mix(&mut self, w: u64) {
            self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    impl Hasher for Old {
        fn write(&mut self, bytes: &[u8]) {
            let mut words = bytes.chunks_exact(8);
            for w in &mut words {
                self.mix(load(w));
            }
            let rest = words.remainder();
            if !rest.is_empty() {
                self.mix(load(rest) ^ ((rest.len() as u64) << 59));
            }
        }
        fn write_usize(&mut self, n: usize) {
            self.mix(n as u64);
        }
        fn finish(&self) -> u64 {
            let mut h = self.0;
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            h ^ (h >> 33)
        }
    }

    /// 2^k subjects of k 16-byte blocks, each block one of a pair that the old hash cannot
    /// tell apart for any seed: flipping bit 63 of a word flips bit 63 of the state (K is
    /// odd), which the next rotate moves to bit 22, where the next word's flipped bit 22
    /// cancels it.
    fn colliding(k: u32) -> Vec<Box<[u8]>> {
        (0..1u32 << k)
            .map(|bits| {
                (0..k)
                    .flat_map(|i| match bits >> i & 1 {
                        0 => *b"aaaaaaaaaaaaaaaa",
                        _ => *b"aaaaaaa\xe1aa!aaaaa",
                    })
                    .collect()
            })
            .collect()
    }

    /// Keys of the same count and length, of random letters.
    fn random_keys(k: u32) -> Vec<Box<[u8]>> {
        let mut x = random_seed();
        (0..1u32 << k)
            .map(|_| {
                (0..16 * k)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        b'a' + (x % 26) as u8
                    })
                    .collect()
            })
            .collect()
    }

    fn distinct(b: &impl BuildHasher, keys: &[Box<[u8]>], shift: u32) -> usize {
        let set: std::collections::HashSet<u64> =
            keys.iter().map(|k| b.hash_one(&k[..]) >> shift).collect();
        set.len()
    }

    #[test]
    fn old_hash_collides_for_every_seed_new_hash_spreads() {
        let keys = colliding(12);
        for seed in [1, 0x1234_5678_9abc_def1, random_seed()] {
            assert_eq!(distinct(&OldSeeded(seed), &keys, 0), 1, "seed {seed:#x}");
        }
        let map: FastMap<(), ()> = new_map();
        let new = map.hasher();
        assert_eq!(distinct(new, &keys, 0), keys.len());
        // Top 12 bits as 4096 buckets: a random function fills ~63% of them.
        let buckets = distinct(new, &keys, 52);
        assert!(buckets > 2400, "{buckets} of 4096 buckets used");
    }

    thread_local! {
        static EQ_CALLS: Cell<u64> = const { Cell::new(0) };
    }

    /// A map key that counts its equality checks: the map's probing work, deterministically.
    struct Counted(Box<[u8]>);
    impl std::hash::Hash for Counted {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.0.hash(h);
        }
    }
    impl PartialEq for Counted {
        fn eq(&self, other: &Counted) -> bool {
            EQ_CALLS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }
    impl Eq for Counted {}

    /// Key comparisons and time to insert `keys` into `m`.
    fn insert_cost<B: BuildHasher>(
        mut m: HashMap<Counted, (), B>,
        keys: &[Box<[u8]>],
    ) -> (u64, std::time::Duration) {
        EQ_CALLS.with(|c| c.set(0));
        let t = Instant::now();
        for k in keys {
            m.insert(Counted(k.clone()), ());
        }
        (EQ_CALLS.with(|c| c.get()), t.elapsed())
    }

    #[test]
    fn colliding_subjects_insert_into_a_fast_map_as_random_ones_do() {
        let (keys, random) = (colliding(12), random_keys(12));
        let n = keys.len() as u64;
        let (old_eq, old_t) = insert_cost(HashMap::with_hasher(OldSeeded(random_seed())), &keys);
        let (new_eq, new_t) = insert_cost(new_map(), &keys);
        let (rnd_eq, rnd_t) = insert_cost(new_map(), &random);
        println!(
            "insert {n} colliding subjects: old hash {old_eq} key comparisons, {old_t:?}; \
             FastMap {new_eq} comparisons, {new_t:?}; {n} random subjects: {rnd_eq}, {rnd_t:?}"
        );
        // Old: every insert compares with every key before it. New: as random keys (a key
        // is compared only on a 7-bit tag match, well under once per insert).
        assert!(old_eq >= n * (n - 1) / 2, "{old_eq}");
        assert!(new_eq < n / 4 && rnd_eq < n / 4, "{new_eq} {rnd_eq}");
    }

    #[test]
    #[ignore = "figures: cargo test --release --lib hash_flood_figures -- --ignored --nocapture"]
    fn hash_flood_figures() {
        for k in [10, 12, 14] {
            let (keys, random) = (colliding(k), random_keys(k));
            let (old_eq, old_t) =
                insert_cost(HashMap::with_hasher(OldSeeded(random_seed())), &keys);
            let (new_eq, new_t) = insert_cost(new_map(), &keys);
            let (rnd_eq, rnd_t) = insert_cost(new_map(), &random);
            println!(
                "n={:>6} ({} B keys): old hash {old_eq:>11} comparisons {old_t:>12.2?} | \
                 FastMap {new_eq:>4} comparisons {new_t:>9.2?} | random keys {rnd_eq:>4} {rnd_t:>9.2?}",
                keys.len(),
                16 * k
            );
        }
    }

    #[test]
    fn map_works() {
        let mut m: FastMap<Box<[u8]>, u32> = new_map();
        m.insert(b"a.b"[..].into(), 1);
        m.insert(b"a.b.c.d.e.f.g.h.i"[..].into(), 2);
        assert_eq!(m.get(&b"a.b"[..]), Some(&1));
        assert_eq!(m.get(&b"a.b.c.d.e.f.g.h.i"[..]), Some(&2));
        assert_eq!(m.get(&b"a.c"[..]), None);
        let mut s: FastMap<String, u32> = new_map();
        s.insert("x".into(), 1);
        assert_eq!(s.get("x"), Some(&1));
    }

    #[test]
    fn every_map_has_its_own_key() {
        // Keys come from the OS; no two maps (let alone processes) hash a subject alike.
        let (a, b): (FastMap<(), ()>, FastMap<(), ()>) = (new_map(), new_map());
        assert_ne!(
            a.hasher().hash_one(b"foo.bar"),
            b.hasher().hash_one(b"foo.bar")
        );
    }
}
