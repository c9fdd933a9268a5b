//! The random number generator every component draws from.

/// The seeded generator of a run: xoshiro256++, a fixed, portable algorithm (the same stream
/// on every platform) and about twice as fast as ChaCha8 for the ~80,000 Gaussian draws of a
/// URV step at d = 784, q = 100.
pub type MaxiRng = rand::rngs::Xoshiro256PlusPlus;

/// A generator seeded with `seed`.
pub fn rng_from_seed(seed: u64) -> MaxiRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// SplitMix64's finaliser: a bijection of `u64` that scatters nearby inputs.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for one purpose (`stream`) of the run seeded with `seed`, independent of the
/// run's main generator (`rng_from_seed(seed)`, which the gradient method draws from) and of
/// other streams; e.g. a loss's random start point. The same `(seed, stream)` gives the same
/// stream.
pub fn rng_for(seed: u64, stream: u64) -> MaxiRng {
    rng_from_seed(mix(seed ^ mix(stream.wrapping_add(0x9E37_79B9_7F4A_7C15))))
}
