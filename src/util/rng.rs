//! The one cheap pseudo-random generator (xorshift64): queue picks, PING and dial jitter, the
//! server id and a generated cluster name. Nothing here needs to be unpredictable to an
//! attacker (maps keyed by client input use std's keyed hasher: `hash.rs`).

/// A xorshift64 generator; every draw is the next state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from the process's random seed.
    pub fn seeded() -> Rng {
        Rng(crate::util::hash::random_seed())
    }

    /// A generator started from `seed` (zero is replaced: xorshift never leaves zero).
    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_sequence() {
        let mut r = Rng::from_seed(1);
        assert_eq!(r.next_u64(), 1082269761);
        assert_eq!(r.next_u64(), 1152992998833853505);
        assert_eq!(Rng::from_seed(0).next_u64(), 1082269761);
    }
}
