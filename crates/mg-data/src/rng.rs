//! A small deterministic random number generator (SplitMix64).
//!
//! Every synthetic sample is drawn from an [`Rng`] keyed by `(seed, index, ...)`, so it is a pure function of
//! those numbers and does not depend on any external crate's algorithm. The whole state is one `u64`
//! ([`Rng::state`], [`Rng::from_state`]), so a training checkpoint can store it as a plain integer.

/// Stream tags that keep the random streams of different purposes independent.
pub mod stream {
    /// Maze generation.
    pub const MAZE: u64 = 0x4d41_5a45;
    /// Random-walk motion.
    pub const WALK: u64 = 0x5741_4c4b;
    /// Per-sample query indices.
    pub const QUERY: u64 = 0x5155_4552;
    /// Per-batch (shared) query indices.
    pub const BATCH_QUERY: u64 = 0x4251_5259;
    /// Priority-sort samples.
    pub const SORT: u64 = 0x534f_5254;
    /// Associative-recall samples.
    pub const RECALL: u64 = 0x5245_4341;
}

/// SplitMix64 generator. Deterministic across platforms and versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed) }
    }

    /// A generator keyed by several numbers, e.g. `&[seed, stream::MAZE, index]`. Different keys give
    /// independent streams; the same key always gives the same stream.
    pub fn keyed(key: &[u64]) -> Self {
        let mut h = 0x006d_672d_6461_7461_u64; // "mg-data"
        for &k in key {
            h = mix(h ^ mix(k.wrapping_add(GAMMA)));
        }
        Self { state: h }
    }

    /// Restores a generator from [`Rng::state`].
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// The whole state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// A uniform integer in `0..n` (unbiased). Panics if `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        // Lemire's method with rejection.
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// A uniform index in `0..n`. Panics if `n == 0`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A uniform integer in `lo..=hi` (inclusive, like Python's `randint`). Panics if `lo > hi`.
    pub fn range_inclusive(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "Rng::range_inclusive({lo}, {hi})");
        let span = (hi - lo) as u64;
        if span == u64::MAX {
            return self.next_u64() as i64;
        }
        lo + self.below(span + 1) as i64
    }

    /// A uniform `f32` in `[0, 1)`.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_stream_and_state_round_trip() {
        let mut a = Rng::keyed(&[1, 2, 3]);
        let mut b = Rng::keyed(&[1, 2, 3]);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut c = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(
            Rng::keyed(&[1, 2, 3]).next_u64(),
            Rng::keyed(&[1, 2, 4]).next_u64()
        );
        assert_ne!(
            Rng::keyed(&[1, 2]).next_u64(),
            Rng::keyed(&[2, 1]).next_u64()
        );
    }

    #[test]
    fn ranges_and_uniformity() {
        let mut r = Rng::new(7);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            let v = r.range_inclusive(-2, 2);
            assert!((-2..=2).contains(&v));
            counts[(v + 2) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            let f = r.unit_f32();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
