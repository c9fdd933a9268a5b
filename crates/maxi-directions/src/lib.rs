//! Random directions for maxi's zero-order gradient estimators: fast seeded Gaussian draws
//! ([`normal::NormalSampler`]), unit directions, and the kwargs the random-direction
//! estimators share ([`DirectionKwargs`]).
//!
//! Not a component: URV and USRV are their own crates under `plugins/` and use this one.
#![warn(missing_docs)]

use maxi_core::ndarray::{Array1, Array2};
use maxi_core::{KwargProblem, KwargsSpec, MaxiRng};
use serde::{Deserialize, Serialize};

pub mod normal;

use normal::NormalSampler;

fn default_samples() -> usize {
    100
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

/// Kwargs of the random-direction gradient estimators (URV, USRV): smoothing radius, number
/// of directions and how they are batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectionKwargs {
    /// Smoothing radius μ. `null`: `1/(sample_num·√d)` in batch mode, `1/√(t·d)` (t = call
    /// counter) otherwise.
    #[serde(default)]
    pub mu: Option<f64>,
    /// Random directions per gradient (alias `num_iter`, the seed tutorial's spelling).
    #[serde(default = "default_samples", alias = "num_iter")]
    pub sample_num: usize,
    /// Batches the directions are split into; must divide `sample_num`.
    #[serde(default = "one")]
    pub batch_num: usize,
    /// `true`: batched estimator with fixed μ; `false`: the seed tutorial's estimator (one
    /// batch, μ shrinking with the call counter).
    #[serde(default = "yes")]
    pub batch_mode: bool,
    /// Own seed for the directions; `null` draws from the run's generator.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Perturb only the coordinates the loss's bounds leave free (`lower < upper`): fixed
    /// coordinates cannot move, and directions in fewer dimensions estimate the gradient
    /// better (`d` in the formulas is then the number of free coordinates).
    #[serde(default)]
    pub skip_fixed: bool,
}

impl Default for DirectionKwargs {
    fn default() -> Self {
        DirectionKwargs {
            mu: None,
            sample_num: default_samples(),
            batch_num: 1,
            batch_mode: true,
            seed: None,
            skip_fixed: false,
        }
    }
}

impl DirectionKwargs {
    /// μ for a call: the given `mu`, else `1/(sample_num·√d)` in batch mode and `1/√(t·d)`
    /// otherwise (`t` = 1-based call counter).
    pub fn mu_for(&self, d: usize, call: u64) -> f64 {
        let d = d as f64;
        match (self.mu, self.batch_mode) {
            (Some(mu), _) => mu,
            (None, true) => 1.0 / (self.sample_num as f64 * d.sqrt()),
            (None, false) => 1.0 / (call as f64 * d).sqrt(),
        }
    }

    /// `(batches, directions per batch)`: `(batch_num, sample_num / batch_num)` in batch
    /// mode, one batch of `sample_num` otherwise.
    pub fn split(&self) -> (usize, usize) {
        if self.batch_mode {
            (self.batch_num, self.sample_num / self.batch_num)
        } else {
            (1, self.sample_num)
        }
    }
}

impl KwargsSpec for DirectionKwargs {
    const ALIASES: &'static [(&'static str, &'static str)] = &[("num_iter", "sample_num")];

    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        if let Some(mu) = self.mu
            && !(mu.is_finite() && mu > 0.0)
        {
            return Err(KwargProblem::new(
                "mu",
                format!("must be a positive number or null, got {mu}"),
            ));
        }
        if self.sample_num == 0 || self.sample_num > MAX_SAMPLE_NUM {
            return Err(KwargProblem::new(
                "sample_num",
                format!(
                    "must be between 1 and {MAX_SAMPLE_NUM} (directions per gradient), got {}",
                    self.sample_num
                ),
            ));
        }
        if self.batch_mode {
            if self.batch_num == 0 {
                return Err(KwargProblem::new("batch_num", "must be at least 1"));
            }
            if self.batch_num > self.sample_num || !self.sample_num.is_multiple_of(self.batch_num) {
                return Err(KwargProblem::new(
                    "batch_num",
                    format!(
                        "{} does not divide sample_num = {}; choose a divisor so no samples are dropped",
                        self.batch_num, self.sample_num
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Most random directions per gradient (`sample_num`): a million model rows per update, far
/// beyond MAXi's 100; the bound keeps a mistyped number from meaning unbounded work.
pub const MAX_SAMPLE_NUM: usize = 1_000_000;

// The row loops below are compiled for baseline x86-64 and for AVX2 and picked at run time
// (`multiversion`); both builds do the same IEEE operations in the same order, so results do
// not depend on the CPU.

/// `Σ v²` over a row, in sixteen interleaved partial sums (a fixed order the compiler can
/// vectorise into independent chains).
#[multiversion::multiversion(targets("x86_64+avx2"))]
pub fn sum_sq<T: Copy + Into<f64>>(row: &[T]) -> f64 {
    const K: usize = 16;
    let mut acc = [0.0f64; K];
    let mut chunks = row.chunks_exact(K);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            let v: f64 = (*v).into();
            *a += v * v;
        }
    }
    // pairwise, in a fixed order
    let mut width = K;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    let mut s = acc[0];
    for v in chunks.remainder() {
        let v: f64 = (*v).into();
        s += v * v;
    }
    s
}

/// Fills `z` (`q·d` entries, row-major) with Gaussian draws and `inv_norm` (`q` entries) with
/// the reciprocal Euclidean norm of each row, so that the unit directions are
/// `u_j = z_j · inv_norm_j`. Keeping the norm separate saves a pass over the draws.
pub fn fill_gaussian_directions<T: normal::Draw + Into<f64>>(
    z: &mut [T],
    d: usize,
    inv_norm: &mut [f64],
    sampler: &mut NormalSampler,
) {
    for (row, slot) in z.chunks_exact_mut(d.max(1)).zip(inv_norm.iter_mut()) {
        sampler.fill(row);
        let mut s = sum_sq(row);
        while s <= 0.0 {
            sampler.fill(row);
            s = sum_sq(row);
        }
        *slot = 1.0 / s.sqrt();
    }
}

/// Draws `q` Gaussian vectors of `d` entries: the raw draws `[q, d]` and the reciprocal norm of
/// each row (see [`fill_gaussian_directions`]).
pub fn gaussian_directions(q: usize, d: usize, rng: &mut MaxiRng) -> (Array2<f64>, Array1<f64>) {
    let mut z = Array2::<f64>::zeros((q, d));
    let mut inv_norm = Array1::<f64>::zeros(q);
    if let (Some(zs), Some(ns)) = (z.as_slice_mut(), inv_norm.as_slice_mut()) {
        fill_gaussian_directions(zs, d, ns, &mut NormalSampler::new(rng));
    }
    (z, inv_norm)
}

/// Draws `q` directions of `d` entries, each scaled to unit Euclidean norm.
pub fn unit_directions(q: usize, d: usize, rng: &mut MaxiRng) -> Array2<f64> {
    let (mut z, inv_norm) = gaussian_directions(q, d, rng);
    z *= &inv_norm.insert_axis(maxi_core::ndarray::Axis(1));
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::rng_from_seed;

    #[test]
    fn directions_have_unit_norm() {
        let u = unit_directions(5, 9, &mut rng_from_seed(0));
        for row in u.rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn mu_schedule_and_split() {
        let k = DirectionKwargs::default();
        assert!((k.mu_for(784, 1) - 1.0 / 2800.0).abs() < 1e-15);
        assert_eq!(k.split(), (1, 100));
        let seed_style = DirectionKwargs {
            batch_mode: false,
            ..DirectionKwargs::default()
        };
        assert!((seed_style.mu_for(784, 1) - 1.0 / 28.0).abs() < 1e-15);
        assert!((seed_style.mu_for(784, 4) - 1.0 / 56.0).abs() < 1e-15);
        let batched = DirectionKwargs {
            sample_num: 30,
            batch_num: 3,
            ..DirectionKwargs::default()
        };
        assert_eq!(batched.split(), (3, 10));
    }

    #[test]
    fn kwargs_validation_names_the_field() {
        let bad = DirectionKwargs {
            sample_num: 10,
            batch_num: 3,
            ..DirectionKwargs::default()
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "batch_num");
        let bad = DirectionKwargs {
            batch_num: 0,
            ..DirectionKwargs::default()
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "batch_num");
        let bad = DirectionKwargs {
            mu: Some(-1.0),
            ..DirectionKwargs::default()
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "mu");
        let seed_spelling: DirectionKwargs =
            serde_json::from_value(serde_json::json!({"mu": null, "num_iter": 150}))
                .expect("alias");
        assert_eq!(seed_spelling.sample_num, 150);
    }
}
