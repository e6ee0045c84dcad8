//! The hasher of every map keyed by what clients send (subjects, sids, permission caches,
//! route interest): SipHash-1-3 with a 128-bit key drawn once per process from getrandom.
//!
//! Those maps must not degrade into lists when a hostile client picks its keys: with a weak
//! mix, keys that collide for every seed can be computed offline (the multiply-rotate hash
//! this replaces had them; see the tests), and n colliding subjects cost O(n) per insert,
//! stalling the loop for everyone. SipHash is a keyed PRF: without the key no collision can
//! be found. 1-3 rounds is what std's `RandomState` and Redis use. It is written here (std's
//! `SipHasher13` is unstable and `RandomState` hides its keys); it is std's algorithm, and a
//! test checks it against std's with the same key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

pub type FastMap<K, V> = HashMap<K, V, Seeded>;

pub fn new_map<K, V>() -> FastMap<K, V> {
    HashMap::with_hasher(Seeded::default())
}

/// `n` bytes from getrandom, or (should the kernel refuse) the clock and pid.
fn entropy<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most N bytes into the array we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), N, libc::GRND_NONBLOCK) };
    if n != N as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let s = t ^ ((std::process::id() as u64) << 32);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (s.rotate_left(8 * i as u32) as u8) ^ (i as u8).wrapping_mul(0x9d);
        }
    }
    b
}

/// A per-process random number (seeds the loop's cheap RNG); never zero.
pub fn random_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| u64::from_le_bytes(entropy::<8>()) | 1)
}

/// The process's SipHash key.
fn sip_key() -> (u64, u64) {
    static KEY: OnceLock<(u64, u64)> = OnceLock::new();
    *KEY.get_or_init(|| {
        let b = entropy::<16>();
        let half = |r: std::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[r]);
            u64::from_le_bytes(w)
        };
        (half(0..8), half(8..16))
    })
}

#[derive(Clone, Copy, Debug)]
pub struct Seeded {
    k0: u64,
    k1: u64,
}

impl Default for Seeded {
    fn default() -> Seeded {
        let (k0, k1) = sip_key();
        Seeded { k0, k1 }
    }
}

impl BuildHasher for Seeded {
    type Hasher = Sip13;
    #[inline]
    fn build_hasher(&self) -> Sip13 {
        Sip13::new(self.k0, self.k1)
    }
}

/// SipHash-1-3 (one compression round per 8-byte word, three finalization rounds).
pub struct Sip13 {
    v: [u64; 4],
    /// Bytes of an unfinished word (little-endian), how many, and the total length.
    tail: u64,
    ntail: usize,
    len: usize,
}

/// Up to 8 bytes as a little-endian word. Short tails are read as 4 + 2 + 1 bytes (as std
/// does): a variable-length copy would be a call to memcpy, on the path of every lookup.
#[inline(always)]
fn load(b: &[u8]) -> u64 {
    let n = b.len();
    if let Some(w) = b.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    let (mut out, mut i) = (0u64, 0);
    if let Some(w) = b.first_chunk::<4>() {
        (out, i) = (u64::from(u32::from_le_bytes(*w)), 4);
    }
    if let Some(w) = b[i..].first_chunk::<2>() {
        out |= u64::from(u16::from_le_bytes(*w)) << (8 * i);
        i += 2;
    }
    if i < n {
        out |= u64::from(b[i]) << (8 * i);
    }
    out
}

impl Sip13 {
    #[inline]
    fn new(k0: u64, k1: u64) -> Sip13 {
        Sip13 {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            ntail: 0,
            len: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let [mut v0, mut v1, mut v2, mut v3] = self.v;
        v0 = v0.wrapping_add(v1);
        v1 = v1.rotate_left(13) ^ v0;
        v0 = v0.rotate_left(32);
        v2 = v2.wrapping_add(v3);
        v3 = v3.rotate_left(16) ^ v2;
        v0 = v0.wrapping_add(v3);
        v3 = v3.rotate_left(21) ^ v0;
        v2 = v2.wrapping_add(v1);
        v1 = v1.rotate_left(17) ^ v2;
        v2 = v2.rotate_left(32);
        self.v = [v0, v1, v2, v3];
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        self.round();
        self.v[0] ^= m;
    }

    /// An integer: one whole word when no bytes are pending (map keys write their length
    /// first, so this is the common case), else the same bytes through `write`.
    #[inline]
    fn word(&mut self, n: u64) {
        if self.ntail == 0 {
            self.len += 8;
            self.compress(n);
        } else {
            self.write(&n.to_le_bytes());
        }
    }
}

impl Hasher for Sip13 {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        let mut rest = bytes;
        if self.ntail != 0 {
            let take = (8 - self.ntail).min(rest.len());
            self.tail |= load(&rest[..take]) << (8 * self.ntail);
            self.ntail += take;
            rest = &rest[take..];
            if self.ntail < 8 {
                return;
            }
            self.compress(self.tail);
            (self.tail, self.ntail) = (0, 0);
        }
        let mut words = rest.chunks_exact(8);
        for w in &mut words {
            self.compress(load(w));
        }
        let rem = words.remainder();
        (self.tail, self.ntail) = (load(rem), rem.len());
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut s = Sip13 {
            v: self.v,
            tail: 0,
            ntail: 0,
            len: 0,
        };
        let b = ((self.len as u64 & 0xff) << 56) | self.tail;
        s.compress(b);
        s.v[2] ^= 0xff;
        s.round();
        s.round();
        s.round();
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::time::Instant;

    fn hash_of(b: &impl BuildHasher, key: &[u8]) -> u64 {
        b.hash_one(key)
    }

    /// SipHash-2-4 from the same key setup, round and finalization: the paper's vectors.
    fn sip24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut s = Sip13::new(k0, k1);
        let c = |s: &mut Sip13, m: u64| {
            s.v[3] ^= m;
            s.round();
            s.round();
            s.v[0] ^= m;
        };
        let mut words = msg.chunks_exact(8);
        for w in &mut words {
            c(&mut s, load(w));
        }
        c(&mut s, ((msg.len() as u64) << 56) | load(words.remainder()));
        s.v[2] ^= 0xff;
        for _ in 0..4 {
            s.round();
        }
        s.v[0] ^ s.v[1] ^ s.v[2] ^ s.v[3]
    }

    #[test]
    fn siphash_reference_vectors() {
        // Key 00..0f; messages 00..(n-1) (Aumasson & Bernstein, SipHash, appendix A).
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(sip24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
        assert_eq!(sip24(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn same_as_std_siphash13() {
        // std's DefaultHasher::new() is SipHash-1-3 with a zero key; every way a map key is
        // fed (length prefix, split writes, str terminator) must give the same hash.
        #[allow(clippy::type_complexity)]
        let feeds: &[&dyn Fn(&mut dyn Hasher)] = &[
            &|h| h.write(b""),
            &|h| h.write(b"foo.bar"),
            &|h| h.write(b"0123456789abcdef0123"),
            &|h| {
                h.write(b"abc");
                h.write(b"defghij");
                h.write(b"klmnopqrstuvwxyz");
            },
            &|h| {
                h.write_usize(7);
                h.write(b"foo.bar");
            },
            &|h| {
                h.write(b"x");
                h.write_u64(u64::MAX);
                h.write_u8(0xff);
            },
        ];
        for (i, feed) in feeds.iter().enumerate() {
            let mut ours = Sip13::new(0, 0);
            #[allow(deprecated)]
            let mut std = std::collections::hash_map::DefaultHasher::new();
            feed(&mut ours);
            feed(&mut std);
            assert_eq!(ours.finish(), std.finish(), "feed {i}");
        }
        for key in ["", "a", "foo.bar.baz", "_INBOX.abcdefghijklmnopqrstuv.1234"] {
            let ours = Seeded { k0: 0, k1: 0 };
            let std =
                std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default(
                );
            assert_eq!(ours.hash_one(key), std.hash_one(key), "{key:?}");
            assert_eq!(
                hash_of(&ours, key.as_bytes()),
                hash_of(&std, key.as_bytes())
            );
        }
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

    /// Keys of the same count and length, with random bytes.
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
            keys.iter().map(|k| hash_of(b, k) >> shift).collect();
        set.len()
    }

    #[test]
    fn old_hash_collides_for_every_seed_new_hash_spreads() {
        let keys = colliding(12);
        for seed in [1, 0x1234_5678_9abc_def1, random_seed()] {
            assert_eq!(distinct(&OldSeeded(seed), &keys, 0), 1, "seed {seed:#x}");
        }
        let new = Seeded::default();
        assert_eq!(distinct(&new, &keys, 0), keys.len());
        // Top 12 bits as 4096 buckets: a random function fills ~63% of them.
        let buckets = distinct(&new, &keys, 52);
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
             SipHash-1-3 {new_eq} comparisons, {new_t:?}; {n} random subjects: {rnd_eq}, {rnd_t:?}"
        );
        // Old: every insert compares with every key before it. New: as random keys (a key
        // is compared only on a 7-bit tag match, well under once per insert).
        assert!(old_eq >= n * (n - 1) / 2, "{old_eq}");
        assert!(new_eq < n / 4 && rnd_eq < n / 4, "{new_eq} {rnd_eq}");
    }

    #[test]
    #[ignore = "figures: cargo test --release --lib hash_flood_figures -- --ignored --nocapture"]
    fn hash_flood_figures() {
        for k in [10, 12, 14, 16] {
            let (keys, random) = (colliding(k), random_keys(k));
            let (old_eq, old_t) =
                insert_cost(HashMap::with_hasher(OldSeeded(random_seed())), &keys);
            let (new_eq, new_t) = insert_cost(new_map(), &keys);
            let (rnd_eq, rnd_t) = insert_cost(new_map(), &random);
            println!(
                "n={:>6} ({} B keys): old hash {old_eq:>11} comparisons {old_t:>12.2?} | \
                 SipHash-1-3 {new_eq:>4} comparisons {new_t:>9.2?} | random keys {rnd_eq:>4} {rnd_t:>9.2?}",
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
    fn keys_differ_per_process_not_per_map() {
        let (a, b) = (Seeded::default(), Seeded::default());
        assert_eq!(a.hash_one(b"foo"), b.hash_one(b"foo"));
        assert_ne!((a.k0, a.k1), (0, 0));
    }
}
