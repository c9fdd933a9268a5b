//! The random number generator every component draws from.

/// The seeded generator of a run (ChaCha8: portable and reproducible across platforms).
pub type MaxiRng = rand::rngs::ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn rng_from_seed(seed: u64) -> MaxiRng {
    rand::SeedableRng::seed_from_u64(seed)
}
