//! URV: the uniform random vector zero-order gradient estimator.
//!
//! `g = (1/B) Σ_b Σ_{j=1..q} d/(μ·q) · (L(y + μ·u_j) − L(y)) · u_j` with `u_j` drawn from
//! `N(0, I)` and scaled to unit norm, `q = sample_num / batch_num`, `B = batch_num`.
//! The base point and the `q` perturbations of the first batch go to the loss as one batched
//! evaluation (later batches carry only their perturbations), so a gradient costs `1 + q·B`
//! loss rows and the base value is reused for the step record.
#![warn(missing_docs)]

use maxi_core::registry::{GradientContext, GradientFactory, KwargProblem, KwargsSpec};
use maxi_core::{Gradient, MaxiRng, Problem, Result, rng_from_seed};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, s};
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

/// Kwargs of [`Urv`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrvKwargs {
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
}

impl Default for UrvKwargs {
    fn default() -> Self {
        UrvKwargs {
            mu: None,
            sample_num: default_samples(),
            batch_num: 1,
            batch_mode: true,
            seed: None,
        }
    }
}

impl UrvKwargs {
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

impl KwargsSpec for UrvKwargs {
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
        if self.sample_num == 0 {
            return Err(KwargProblem::new("sample_num", "must be at least 1"));
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

// The row loops below are compiled for baseline x86-64 and for AVX2 and picked at run time
// (`multiversion`); both builds do the same IEEE operations in the same order, so results do
// not depend on the CPU.

/// `Σ v²` over a row, in sixteen interleaved partial sums (a fixed order the compiler can
/// vectorise into independent chains).
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn sum_sq<T: Copy + Into<f64>>(row: &[T]) -> f64 {
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

/// `out = y + step·z`, entry by entry.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn shifted(out: &mut [f64], y: &[f64], z: &[f32], step: f64) {
    for ((o, y), z) in out.iter_mut().zip(y).zip(z) {
        *o = y + step * f64::from(*z);
    }
}

/// `g += w·z`, entry by entry.
#[multiversion::multiversion(targets("x86_64+avx2"))]
fn axpy(g: &mut [f64], w: f64, z: &[f32]) {
    for (gi, zi) in g.iter_mut().zip(z) {
        *gi += w * f64::from(*zi);
    }
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
    z *= &inv_norm.insert_axis(ndarray::Axis(1));
    z
}

/// The URV estimator (see the crate docs).
pub struct Urv {
    kwargs: UrvKwargs,
    d: usize,
    calls: u64,
    own_rng: Option<MaxiRng>,
    /// Reused buffers: Gaussian draws (f32: half the memory traffic), reciprocal norms, and
    /// the batch of points.
    z: Vec<f32>,
    inv_norm: Vec<f64>,
    points: Vec<f64>,
}

impl Urv {
    /// An estimator for items of `d` entries.
    pub fn new(kwargs: UrvKwargs, d: usize) -> Self {
        let own_rng = kwargs.seed.map(rng_from_seed);
        Urv {
            kwargs,
            d,
            calls: 0,
            own_rng,
            z: Vec::new(),
            inv_norm: Vec::new(),
            points: Vec::new(),
        }
    }

    /// μ used by the next call (after the call counter is advanced).
    fn mu(&self) -> f64 {
        self.kwargs.mu_for(self.d, self.calls)
    }
}

impl Gradient for Urv {
    fn gradient(
        &mut self,
        problem: &Problem,
        y: ArrayViewD<'_, f64>,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>> {
        self.calls += 1;
        let mu = self.mu();
        let d = self.d;
        let (batches, q) = self.kwargs.split();
        let mut sampler = NormalSampler::new(self.own_rng.as_mut().unwrap_or(rng));
        let flat: Vec<f64> = y.iter().copied().collect();
        let scale = d as f64 / (mu * q as f64);
        let mut g = Array1::<f64>::zeros(d);
        let mut base: Option<f64> = None;
        self.z.resize(q * d, 0.0f32);
        self.inv_norm.resize(q, 0.0);
        for _ in 0..batches {
            // rows: [base (first batch only); y + μ·u_1; ...; y + μ·u_q], one loss evaluation;
            // each direction is drawn, normalised and applied while its row is in cache
            let skip = usize::from(base.is_none());
            self.points.resize((q + skip) * d, 0.0);
            let (head, rows) = self.points.split_at_mut(skip * d);
            head.copy_from_slice(&flat[..head.len()]);
            for ((row, zj), inv) in rows
                .chunks_exact_mut(d.max(1))
                .zip(self.z.chunks_exact_mut(d.max(1)))
                .zip(self.inv_norm.iter_mut())
            {
                fill_gaussian_directions(zj, d, std::slice::from_mut(inv), &mut sampler);
                shifted(row, &flat, zj, mu * *inv);
            }
            let mut shape = vec![q + skip];
            shape.extend_from_slice(y.shape());
            // the points are not needed after this call: the loss may overwrite them
            let points = ArrayViewMutD::from_shape(IxDyn(&shape), &mut self.points)
                .map_err(|e| maxi_core::MaxiError::Other(e.to_string()))?;
            let (f0, values) = match base {
                None => {
                    let all = problem.eval_with_base_row_mut(points)?;
                    base = Some(all[0]);
                    (all[0], all.slice(s![1..]).to_owned())
                }
                Some(f0) => (f0, problem.eval_batch_mut(points)?),
            };
            // Σ_j scale·(L_j − L_0)·u_j with u_j = z_j·inv_norm_j, as one axpy per direction
            let g_flat = g.as_slice_mut().unwrap_or(&mut []);
            for ((zj, inv), v) in self
                .z
                .chunks_exact(d.max(1))
                .zip(&self.inv_norm)
                .zip(values.iter())
            {
                axpy(g_flat, (v - f0) * inv * scale, zj);
            }
        }
        g /= batches as f64;
        g.into_shape_with_order(IxDyn(y.shape()))
            .map_err(|e| maxi_core::MaxiError::Other(e.to_string()))
    }
}

/// Registry factory of [`Urv`].
pub struct UrvFactory;

impl GradientFactory for UrvFactory {
    type Kwargs = UrvKwargs;
    fn build(kwargs: &UrvKwargs, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(Urv::new(
            kwargs.clone(),
            ctx.shape.iter().product(),
        )))
    }
}

maxi_core::register_gradient!(
    UrvFactory,
    "urv",
    aliases = ["URVGradientEstimator", "URV"],
    doc = "Uniform random vector zero-order gradient estimate (1 + sample_num model rows per gradient)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::{Bounds, Loss};
    use ndarray::Array1;

    /// `L(y) = ‖y‖²`, gradient `2y`.
    struct SquaredNorm {
        bounds: Bounds,
    }

    impl Loss for SquaredNorm {
        fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
            Ok(batch
                .outer_iter()
                .map(|row| row.iter().map(|v| v * v).sum())
                .collect())
        }
        fn bounds(&self) -> &Bounds {
            &self.bounds
        }
        fn start(&self) -> ArrayD<f64> {
            ArrayD::zeros(self.bounds.lower().shape())
        }
    }

    fn problem(shape: &[usize]) -> Problem {
        Problem::new(
            Box::new(SquaredNorm {
                bounds: Bounds::unbounded(shape),
            }),
            shape.to_vec(),
        )
    }

    fn point(shape: &[usize]) -> ArrayD<f64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(shape, (0..n).map(|i| ((i as f64) * 0.7).sin()).collect())
            .expect("shape")
    }

    fn rel_error(g: &ArrayD<f64>, exact: &ArrayD<f64>) -> f64 {
        let diff: f64 = (g - exact).iter().map(|v| v * v).sum::<f64>().sqrt();
        diff / exact.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    #[test]
    fn estimates_gradient_of_squared_norm_and_converges_with_samples() {
        let shape = [4, 5];
        let p = problem(&shape);
        let y = point(&shape);
        let exact = &y * 2.0;
        let mut errors = Vec::new();
        for samples in [100, 2_000, 50_000] {
            let kw = UrvKwargs {
                sample_num: samples,
                mu: Some(1e-4),
                ..UrvKwargs::default()
            };
            let mut urv = Urv::new(kw, 20);
            let mut rng = rng_from_seed(7);
            let g = urv.gradient(&p, y.view(), &mut rng).expect("gradient");
            assert_eq!(g.shape(), &shape);
            errors.push(rel_error(&g, &exact));
        }
        // the estimator's relative error scales like sqrt(d / q)
        assert!(errors[2] < 0.05, "errors {errors:?}");
        assert!(errors[2] < errors[0] / 5.0, "errors {errors:?}");
        assert!(errors[1] < errors[0], "errors {errors:?}");
    }

    #[test]
    fn batches_average_and_cost_one_plus_q_times_b_rows() {
        let shape = [6];
        let p = problem(&shape);
        let y = point(&shape);
        let kw = UrvKwargs {
            sample_num: 30_000,
            batch_num: 3,
            ..UrvKwargs::default()
        };
        let mut urv = Urv::new(kw, 6);
        let g = urv
            .gradient(&p, y.view(), &mut rng_from_seed(1))
            .expect("gradient");
        // 3 batches of q = 10 000 directions, each averaged: error ~ sqrt(d/q)
        assert!(rel_error(&g, &(&y * 2.0)) < 0.05);
        assert_eq!(p.loss_rows(), 1 + 30_000);
        // the base value is remembered for the step record
        assert_eq!(p.cached(y.view()), Some(y.iter().map(|v| v * v).sum()));
    }

    #[test]
    fn non_batched_mu_shrinks_with_call_counter() {
        let kw = UrvKwargs {
            batch_mode: false,
            ..UrvKwargs::default()
        };
        let mut urv = Urv::new(kw, 784);
        urv.calls = 1;
        assert!((urv.mu() - 1.0 / 28.0).abs() < 1e-15);
        urv.calls = 4;
        assert!((urv.mu() - 1.0 / 56.0).abs() < 1e-15);
        let batched = Urv::new(UrvKwargs::default(), 784);
        assert!((batched.mu() - 1.0 / 2800.0).abs() < 1e-15);
    }

    #[test]
    fn same_seed_same_estimate() {
        let shape = [8];
        let y = point(&shape);
        let run = |seed| {
            let p = problem(&shape);
            Urv::new(UrvKwargs::default(), 8)
                .gradient(&p, y.view(), &mut rng_from_seed(seed))
                .expect("gradient")
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn directions_have_unit_norm() {
        let u = unit_directions(5, 9, &mut rng_from_seed(0));
        for row in u.rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn kwargs_validation_names_the_field() {
        let bad = UrvKwargs {
            sample_num: 10,
            batch_num: 3,
            ..UrvKwargs::default()
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "batch_num");
        let bad = UrvKwargs {
            mu: Some(-1.0),
            ..UrvKwargs::default()
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "mu");
        let seed_spelling: UrvKwargs =
            serde_json::from_value(serde_json::json!({"mu": null, "num_iter": 150}))
                .expect("alias");
        assert_eq!(seed_spelling.sample_num, 150);
    }
}
