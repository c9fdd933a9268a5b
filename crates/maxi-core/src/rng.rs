//! The random number generator every component draws from.

/// The seeded generator of a run: xoshiro256++, a fixed, portable algorithm (the same stream
/// on every platform) and about twice as fast as ChaCha8 for the ~80,000 Gaussian draws of a
/// URV step at d = 784, q = 100.
pub type MaxiRng = rand::rngs::Xoshiro256PlusPlus;

/// A generator seeded with `seed`.
pub fn rng_from_seed(seed: u64) -> MaxiRng {
    rand::SeedableRng::seed_from_u64(seed)
}
