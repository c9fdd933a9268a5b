//! URV: the uniform random vector zero-order gradient estimator.
//!
//! `g = (1/B) Σ_b Σ_{j=1..q} d/(μ·q) · (L(v + μ·u_j) − L(v)) · u_j` with `u_j` drawn from
//! `N(0, I)` and scaled to unit norm, `q = sample_num / batch_num`, `B = batch_num`.
//! The base point (and the request's extra point, if any) and the `q` perturbations of the
//! first batch go to the loss as one batched evaluation (later batches carry only their
//! perturbations), so a gradient costs `1 + q·B` loss rows and returns the base value with
//! the gradient.
//!
//! The directions do not depend on the point: when another request follows
//! ([`Request::more`]), the next call's directions are drawn on a background thread while the
//! loss (the model) evaluates the current batch. They come from the same generator in the same
//! order as when drawn in line, so the estimate is bit-identical either way. How the thread
//! waits for its jobs without costing the caller a wake-up: the `prefetch` module.
//!
//! Large inputs: when a batch of `1 + q` rows would take more than [`POINTS_BUDGET`] bytes of
//! f64 points (about 26,000 entries per row at q = 100, e.g. a 224×224×3 photo), the rows go
//! to the loss in chunks of at most `POINTS_BUDGET / (8·d)` rows, and only the current
//! chunk's directions are kept (the next chunk's are drawn on a second thread while the model
//! evaluates the current one). The draws, the rows and the order of the sum are the same as in
//! one call, so with a model that computes rows independently the estimate is bit-identical;
//! memory drops from `q·d·(8 + 4 + 4)` bytes to about `3·POINTS_BUDGET`. Smaller inputs (MNIST:
//! 0.6 MB per batch) take the one-call path unchanged.
#![warn(missing_docs)]

use maxi_core::ndarray::{ArrayD, ArrayViewMutD, IxDyn};
use maxi_core::{
    Assessed, Estimate, Factory, Gradient, GradientContext, GradientKind, MaxiError, MaxiRng,
    Problem, Request, Result, Valid, register_gradient, rng_from_seed,
};
use maxi_directions::fill_gaussian_directions;
use maxi_directions::normal::NormalSampler;

pub use maxi_directions::DirectionKwargs;

mod prefetch;
use prefetch::Prefetcher;

/// Kwargs of [`Urv`] (`mu`, `sample_num` alias `num_iter`, `batch_num`, `batch_mode`, `seed`).
pub type UrvKwargs = DirectionKwargs;

/// Bytes of f64 points sent to the loss in one call before URV cuts a batch into chunks
/// (16 MiB; see the crate docs).
pub const POINTS_BUDGET: usize = 16 << 20;

/// Rows of `d` entries that fit in [`POINTS_BUDGET`] (at least 3: the head rows and one
/// direction).
pub fn rows_per_call(d: usize) -> usize {
    (POINTS_BUDGET / 8 / d.max(1)).max(3)
}

/// One loss call of the chunked path: `n` directions of batch `batch`, after the head rows
/// (base point, extra point) when `heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    n: usize,
    heads: bool,
}

/// The chunks of one gradient: `batches` batches of `q` directions, at most `cap` rows per
/// call. The first call also carries the head rows (base point and, when asked for, an extra
/// point), so it holds at most `cap − 2` directions whatever the request: every call of the
/// estimator cuts its directions the same way.
fn plan_chunks(batches: usize, q: usize, cap: usize) -> Vec<Chunk> {
    let mut plan = Vec::new();
    for b in 0..batches {
        let mut left = q;
        while left > 0 {
            let heads = b == 0 && left == q;
            let room = if heads {
                cap.saturating_sub(2).max(1)
            } else {
                cap.max(1)
            };
            let n = room.min(left);
            plan.push(Chunk { n, heads });
            left -= n;
        }
    }
    plan
}

// The row loops below are compiled for baseline x86-64 and for AVX2 and picked at run time
// (`multiversion`); both builds do the same IEEE operations in the same order, so results do
// not depend on the CPU.

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

/// `q` Gaussian directions of `d` entries: raw draws (row-major) and reciprocal row norms.
struct Directions {
    z: Vec<f32>,
    inv_norm: Vec<f64>,
}

impl Directions {
    /// Fills `q` rows of `d` draws from `sampler`, row after row.
    fn draw(&mut self, q: usize, d: usize, sampler: &mut NormalSampler) {
        self.z.resize(q * d, 0.0);
        self.inv_norm.resize(q, 0.0);
        for (zj, inv) in self
            .z
            .chunks_exact_mut(d.max(1))
            .zip(self.inv_norm.iter_mut())
        {
            fill_gaussian_directions(zj, d, std::slice::from_mut(inv), sampler);
        }
    }
}

/// The URV estimator (see the crate docs).
pub struct Urv {
    kwargs: Valid<UrvKwargs>,
    d: usize,
    calls: u64,
    own_rng: Option<MaxiRng>,
    /// Reused buffers: the directions (f32 draws: half the memory traffic) and the batch of
    /// points.
    dirs: Directions,
    points: Vec<f64>,
    /// Draws the next call's directions while the model runs; started on first use.
    prefetcher: Option<Prefetcher>,
    /// A spare direction buffer for the prefetcher.
    spare: Option<Directions>,
    /// The next call's sampler, when it could not be handed to the prefetcher.
    held: Option<Box<NormalSampler>>,
    /// With `skip_fixed`: the free coordinates (`None`: all), found on the first call.
    free: Option<Option<Vec<usize>>>,
    /// Most rows per loss call (see [`rows_per_call`]).
    cap: usize,
    /// Chunked path: the rows of the next chunk, filled while the model runs.
    next_points: Vec<f64>,
    /// Chunked path: the next call's sampler and first chunk, drawn during this call.
    ahead: Option<(Box<NormalSampler>, Directions)>,
}

impl Urv {
    /// An estimator for variables of `d` entries.
    pub fn new(kwargs: Valid<UrvKwargs>, d: usize) -> Self {
        let own_rng = kwargs.seed.map(rng_from_seed);
        Urv {
            kwargs,
            d,
            calls: 0,
            own_rng,
            dirs: Directions {
                z: Vec::new(),
                inv_norm: Vec::new(),
            },
            points: Vec::new(),
            prefetcher: None,
            spare: None,
            held: None,
            free: None,
            cap: rows_per_call(d),
            next_points: Vec::new(),
            ahead: None,
        }
    }

    /// Sets the most rows per loss call (at least 3), e.g. to test the chunked path on small
    /// inputs; the default is [`rows_per_call`]`(d)`.
    pub fn with_rows_per_call(mut self, cap: usize) -> Self {
        self.cap = cap.max(3);
        self
    }

    /// The chunked path (see the crate docs): the same draws, rows and sum as one call, with
    /// at most `self.cap` rows per loss call. While the loss (the model) evaluates a chunk, a
    /// second thread draws the next chunk's directions and fills its rows (or, on the last
    /// chunk, when another call follows, draws the next call's first chunk).
    #[allow(clippy::too_many_arguments)]
    fn estimate_chunked(
        &mut self,
        problem: &Problem,
        (heads, at, free): (&[&[f64]], &[f64], Option<&[usize]>),
        mu: f64,
        scale: f64,
        (batches, q): (usize, usize),
        more: bool,
        rng: &mut MaxiRng,
    ) -> Result<(Vec<f64>, Option<Assessed>, Option<Assessed>)> {
        let d = self.d;
        // the dimension the directions live in (the free coordinates with `skip_fixed`)
        let dd = free.map_or(d, <[usize]>::len);
        let plan = plan_chunks(batches, q, self.cap);
        let empty = || Directions {
            z: Vec::new(),
            inv_norm: Vec::new(),
        };
        // the one-call buffers are not needed on this path
        self.dirs = empty();
        self.spare = None;
        let cap_len = self.cap * d;
        let (mut sampler, mut cur) = match self.ahead.take() {
            Some((s, dirs)) => (*s, dirs),
            None => {
                let mut s = Self::sampler(&mut self.own_rng, rng);
                let mut dirs = empty();
                dirs.draw(plan[0].n, dd, &mut s);
                (s, dirs)
            }
        };
        let mut next = empty();
        let mut points = std::mem::take(&mut self.points);
        let mut next_points = std::mem::take(&mut self.next_points);
        points.truncate(0);
        points.shrink_to(cap_len);
        next_points.shrink_to(cap_len);
        let mut g = vec![0.0; d];
        let mut values: (Option<Assessed>, Option<Assessed>) = (None, None);
        let mut f0 = 0.0;
        let fill = |rows: &mut [f64], dirs: &Directions| {
            for ((row, zj), inv) in rows
                .chunks_exact_mut(d.max(1))
                .zip(dirs.z.chunks_exact(dd.max(1)))
                .zip(&dirs.inv_norm)
            {
                place(row, at, zj, mu * inv, free);
            }
        };
        // the first chunk: head rows, then its directions
        let skip0 = heads.len();
        points.resize((skip0 + plan[0].n) * d, 0.0);
        {
            let (head, rows) = points.split_at_mut(skip0 * d);
            for (dst, src) in head.chunks_exact_mut(d.max(1)).zip(heads) {
                dst.copy_from_slice(src);
            }
            fill(rows, &cur);
        }
        let mut ahead: Option<(Box<NormalSampler>, Directions)> = None;
        for (i, chunk) in plan.iter().enumerate() {
            let skip = if chunk.heads { heads.len() } else { 0 };
            let mut shape = vec![skip + chunk.n];
            shape.extend_from_slice(problem.shape());
            let view = ArrayViewMutD::from_shape(IxDyn(&shape), &mut points)
                .map_err(|e| MaxiError::Other(e.to_string()))?;
            let following = plan.get(i + 1).map(|c| c.n);
            let next_call = (following.is_none() && more)
                .then(|| Box::new(Self::sampler(&mut self.own_rng, rng)));
            let e = std::thread::scope(|s| {
                let helper = match (following, next_call) {
                    (Some(n), _) => {
                        let (next, sampler, rows) = (&mut next, &mut sampler, &mut next_points);
                        Some(s.spawn(move || {
                            next.draw(n, dd, sampler);
                            rows.resize(n * d, 0.0);
                            fill(rows, next);
                            None
                        }))
                    }
                    (None, Some(mut s2)) => {
                        let (next, n) = (&mut next, plan[0].n);
                        Some(s.spawn(move || {
                            next.draw(n, dd, &mut s2);
                            Some(s2)
                        }))
                    }
                    (None, None) => None,
                };
                let e = problem.assess_batch_mut(view);
                match helper.map(|h| h.join()) {
                    Some(Err(_)) => Err(MaxiError::Other(
                        "the thread drawing URV directions panicked".into(),
                    )),
                    Some(Ok(s2)) => e.map(|e| (e, s2)),
                    None => e.map(|e| (e, None)),
                }
            });
            let (e, s2) = e?;
            if chunk.heads {
                values.0 = Some(e.at(0));
                values.1 = (heads.len() > 1).then(|| e.at(1));
                f0 = e.at(0).value;
            }
            for ((zj, inv), v) in cur
                .z
                .chunks_exact(dd.max(1))
                .zip(&cur.inv_norm)
                .zip(e.values.iter().skip(skip))
            {
                accumulate(&mut g, (v - f0) * inv * scale, zj, free);
            }
            std::mem::swap(&mut cur, &mut next);
            std::mem::swap(&mut points, &mut next_points);
            if let Some(s2) = s2 {
                ahead = Some((s2, std::mem::replace(&mut cur, empty())));
            }
        }
        self.ahead = ahead;
        self.points = points;
        self.next_points = next_points;
        Ok((g, values.0, values.1))
    }

    /// A sampler for the next call's directions, from the estimator's own generator when it
    /// has one, else from the run's.
    fn sampler(own: &mut Option<MaxiRng>, rng: &mut MaxiRng) -> NormalSampler {
        match own {
            Some(r) => NormalSampler::new(r),
            None => NormalSampler::new(rng),
        }
    }

    /// Hands the drawing of the next call's `q` directions to the background thread; without
    /// a thread, keeps the sampler for the next call, which then draws in line (same stream).
    fn prefetch(&mut self, sampler: Box<NormalSampler>, q: usize, d: usize) {
        if self.prefetcher.is_none() {
            self.prefetcher = Prefetcher::start();
        }
        let buffer = self.spare.take().unwrap_or(Directions {
            z: Vec::new(),
            inv_norm: Vec::new(),
        });
        match self.prefetcher.as_mut() {
            Some(p) => p.send(sampler, buffer, q, d),
            None => self.held = Some(sampler),
        }
    }
}

/// The coordinates the problem's bounds leave free (`lower < upper`); `None` when all are.
fn free_coordinates(problem: &Problem) -> Option<Vec<usize>> {
    let b = problem.bounds();
    let free: Vec<usize> = b
        .lower()
        .iter()
        .zip(b.upper().iter())
        .enumerate()
        .filter(|(_, (l, u))| l < u)
        .map(|(i, _)| i)
        .collect();
    (free.len() < b.lower().len()).then_some(free)
}

/// `row = y + step·z` on the free coordinates (`z` holds one value per free coordinate), `y`
/// elsewhere; every coordinate when `free` is `None`.
fn place(row: &mut [f64], y: &[f64], z: &[f32], step: f64, free: Option<&[usize]>) {
    match free {
        None => shifted(row, y, z, step),
        Some(idx) => {
            row.copy_from_slice(y);
            for (&i, z) in idx.iter().zip(z) {
                row[i] = y[i] + step * f64::from(*z);
            }
        }
    }
}

/// `g += w·z` on the free coordinates (`z` holds one value per free coordinate); every
/// coordinate when `free` is `None`.
fn accumulate(g: &mut [f64], w: f64, z: &[f32], free: Option<&[usize]>) {
    match free {
        None => axpy(g, w, z),
        Some(idx) => {
            for (&i, z) in idx.iter().zip(z) {
                g[i] += w * f64::from(*z);
            }
        }
    }
}

fn contiguous(v: &maxi_core::ndarray::ArrayViewD<'_, f64>) -> Vec<f64> {
    match v.as_slice() {
        Some(flat) => flat.to_vec(),
        None => v.iter().copied().collect(),
    }
}

impl Gradient for Urv {
    fn rows_per_estimate(&self, with_also: bool) -> Option<u64> {
        let (b, q) = self.kwargs.split();
        Some(1 + u64::from(with_also) + (b * q) as u64)
    }

    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        self.calls += 1;
        let d = self.d;
        if request.at.len() != d {
            return Err(MaxiError::Other(format!(
                "asked for a gradient at a point of {} entries; this estimator was built for {d}",
                request.at.len()
            )));
        }
        if self.free.is_none() {
            self.free = Some(if self.kwargs.skip_fixed {
                free_coordinates(problem)
            } else {
                None
            });
        }
        let free = self.free.clone().flatten();
        // the dimension the directions live in
        let dd = free.as_ref().map_or(d, Vec::len);
        let mu = self.kwargs.mu_for(dd, self.calls);
        let (batches, q) = self.kwargs.split();
        let at = contiguous(&request.at);
        let also = request.also.as_ref().map(contiguous);
        let heads: Vec<&[f64]> = std::iter::once(at.as_slice())
            .chain(also.as_deref())
            .collect();
        let scale = dd as f64 / (mu * q as f64);
        if q + 2 > self.cap {
            let (mut g, at_value, also_value) = self.estimate_chunked(
                problem,
                (&heads, &at, free.as_deref()),
                mu,
                scale,
                (batches, q),
                request.more,
                rng,
            )?;
            let inv_b = batches as f64;
            g.iter_mut().for_each(|v| *v /= inv_b);
            let gradient = ArrayD::from_shape_vec(IxDyn(problem.shape()), g)
                .map_err(|e| MaxiError::Other(e.to_string()))?;
            return Ok(Estimate {
                gradient,
                at: at_value,
                also: also_value,
            });
        }
        let mut g = vec![0.0; d];
        let mut values: (Option<Assessed>, Option<Assessed>) = (None, None);
        // the directions of this call, when the previous call had them drawn in the background
        let mut ready = self.prefetcher.as_mut().and_then(Prefetcher::take);
        let mut sampler: Option<NormalSampler> = self.held.take().map(|b| *b);
        for b in 0..batches {
            // rows: [base, extra point (first batch only); v + μ·u_1; ...; v + μ·u_q]
            let skip = if b == 0 { heads.len() } else { 0 };
            self.points.resize((q + skip) * d, 0.0);
            let (head, rows) = self.points.split_at_mut(skip * d);
            for (dst, src) in head.chunks_exact_mut(d.max(1)).zip(&heads) {
                dst.copy_from_slice(src);
            }
            match ready.take() {
                Some(drawn) => {
                    let old = std::mem::replace(&mut self.dirs, drawn);
                    self.spare = Some(old);
                    for ((row, zj), inv) in rows
                        .chunks_exact_mut(d.max(1))
                        .zip(self.dirs.z.chunks_exact(dd.max(1)))
                        .zip(&self.dirs.inv_norm)
                    {
                        place(row, &at, zj, mu * inv, free.as_deref());
                    }
                }
                None => {
                    // each direction is drawn, normalised and applied while its row is in cache
                    let s = sampler.get_or_insert_with(|| Self::sampler(&mut self.own_rng, rng));
                    self.dirs.z.resize(q * dd, 0.0);
                    self.dirs.inv_norm.resize(q, 0.0);
                    for ((row, zj), inv) in rows
                        .chunks_exact_mut(d.max(1))
                        .zip(self.dirs.z.chunks_exact_mut(dd.max(1)))
                        .zip(self.dirs.inv_norm.iter_mut())
                    {
                        fill_gaussian_directions(zj, dd, std::slice::from_mut(inv), s);
                        place(row, &at, zj, mu * *inv, free.as_deref());
                    }
                }
            }
            if batches == 1 && request.more {
                // the next call's directions, from the same stream, while the model runs
                let next = Box::new(Self::sampler(&mut self.own_rng, rng));
                self.prefetch(next, q, dd);
            }
            let mut shape = vec![q + skip];
            shape.extend_from_slice(problem.shape());
            // the points are not needed after this call: the loss may overwrite them
            let points = ArrayViewMutD::from_shape(IxDyn(&shape), &mut self.points)
                .map_err(|e| MaxiError::Other(e.to_string()))?;
            let e = problem.assess_batch_mut(points)?;
            if b == 0 {
                values.0 = Some(e.at(0));
                values.1 = also.as_ref().map(|_| e.at(1));
            }
            let f0 = values.0.map_or(0.0, |a| a.value);
            // Σ_j scale·(L_j − L_0)·u_j with u_j = z_j·inv_norm_j, as one axpy per direction
            for ((zj, inv), v) in self
                .dirs
                .z
                .chunks_exact(dd.max(1))
                .zip(&self.dirs.inv_norm)
                .zip(e.values.iter().skip(skip))
            {
                accumulate(&mut g, (v - f0) * inv * scale, zj, free.as_deref());
            }
        }
        let inv_b = batches as f64;
        g.iter_mut().for_each(|v| *v /= inv_b);
        let gradient = ArrayD::from_shape_vec(IxDyn(problem.shape()), g)
            .map_err(|e| MaxiError::Other(e.to_string()))?;
        Ok(Estimate {
            gradient,
            at: values.0,
            also: values.1,
        })
    }
}

/// Registry factory of [`Urv`].
pub struct UrvFactory;

impl Factory<GradientKind> for UrvFactory {
    type Kwargs = UrvKwargs;
    fn build(kwargs: &Valid<UrvKwargs>, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(Urv::new(
            kwargs.clone(),
            ctx.shape.iter().product(),
        )))
    }
}

register_gradient!(
    UrvFactory,
    "urv",
    aliases = ["URVGradientEstimator", "URV"],
    doc = "Uniform random vector zero-order gradient estimate (1 + sample_num model rows per gradient)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::ndarray::{Array1, ArrayViewD};
    use maxi_core::{Bounds, Loss};

    /// `L(v) = ‖v‖²`, gradient `2v`.
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
        Problem::identity(
            Box::new(SquaredNorm {
                bounds: Bounds::unbounded(shape),
            }),
            shape,
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

    fn urv(kw: UrvKwargs, d: usize) -> Urv {
        Urv::new(Valid::check(kw).expect("valid kwargs"), d)
    }

    fn sq(v: &ArrayD<f64>) -> f64 {
        v.iter().map(|x| x * x).sum()
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
            let mut rng = rng_from_seed(7);
            let e = urv(kw, 20)
                .estimate(&p, &Request::at(y.view()), &mut rng)
                .expect("gradient");
            assert_eq!(e.gradient.shape(), &shape);
            errors.push(rel_error(&e.gradient, &exact));
        }
        // the estimator's relative error scales like sqrt(d / q)
        assert!(errors[2] < 0.05, "errors {errors:?}");
        assert!(errors[2] < errors[0] / 5.0, "errors {errors:?}");
        assert!(errors[1] < errors[0], "errors {errors:?}");
    }

    #[test]
    fn batches_average_cost_one_plus_q_times_b_rows_and_return_the_base_value() {
        let shape = [6];
        let p = problem(&shape);
        let y = point(&shape);
        let kw = UrvKwargs {
            sample_num: 30_000,
            batch_num: 3,
            ..UrvKwargs::default()
        };
        let e = urv(kw, 6)
            .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(1))
            .expect("gradient");
        // 3 batches of q = 10 000 directions, each averaged: error ~ sqrt(d/q)
        assert!(rel_error(&e.gradient, &(&y * 2.0)) < 0.05);
        assert_eq!(p.loss_rows(), 1 + 30_000);
        assert_eq!(e.at.map(|a| a.value), Some(sq(&y)));
        assert_eq!(e.also, None);
    }

    #[test]
    fn the_extra_point_rides_in_the_same_batch() {
        let shape = [5];
        let p = problem(&shape);
        let y = point(&shape);
        let other = y.mapv(|v| v + 1.0);
        let request = Request {
            at: y.view(),
            also: Some(other.view()),
            more: false,
        };
        let kw = UrvKwargs {
            sample_num: 40,
            ..UrvKwargs::default()
        };
        let with = urv(kw.clone(), 5)
            .estimate(&p, &request, &mut rng_from_seed(3))
            .expect("gradient");
        assert_eq!(p.loss_rows(), 2 + 40);
        assert_eq!(with.also.map(|a| a.value), Some(sq(&other)));
        assert_eq!(with.at.map(|a| a.value), Some(sq(&y)));
        // the extra row changes nothing else
        let without = urv(kw, 5)
            .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(3))
            .expect("gradient");
        assert_eq!(with.gradient, without.gradient);
    }

    #[test]
    fn directions_drawn_ahead_give_the_same_estimates() {
        let shape = [7, 3];
        let y = point(&shape);
        for kw in [
            UrvKwargs::default(),
            UrvKwargs {
                batch_mode: false,
                sample_num: 17,
                ..UrvKwargs::default()
            },
            UrvKwargs {
                seed: Some(5),
                ..UrvKwargs::default()
            },
            UrvKwargs {
                sample_num: 20,
                batch_num: 4,
                ..UrvKwargs::default()
            },
        ] {
            let p = problem(&shape);
            let run = |more: bool| {
                let mut g = urv(kw.clone(), 21);
                let mut rng = rng_from_seed(11);
                (0..4)
                    .map(|i| {
                        let at = y.mapv(|v| v * (1.0 + i as f64));
                        let request = Request {
                            at: at.view(),
                            also: None,
                            more: more && i < 3,
                        };
                        g.estimate(&p, &request, &mut rng)
                            .expect("gradient")
                            .gradient
                    })
                    .collect::<Vec<_>>()
            };
            let ahead = run(true);
            let inline = run(false);
            for (a, b) in ahead.iter().zip(&inline) {
                let bits = |x: &ArrayD<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{kw:?}");
            }
        }
    }

    #[test]
    fn chunked_calls_give_bit_identical_estimates() {
        // a 224×224×3 photo goes to the loss 13 rows at a time; MNIST in one call
        assert_eq!(rows_per_call(224 * 224 * 3), 13);
        assert!(rows_per_call(28 * 28) > 1_000);
        assert_eq!(
            plan_chunks(2, 10, 5),
            [(3, true), (5, false), (2, false), (5, false), (5, false)]
                .map(|(n, heads)| Chunk { n, heads })
        );
        let shape = [6, 5];
        let y = point(&shape);
        let other = y.mapv(|v| v - 0.5);
        for kw in [
            UrvKwargs::default(),
            UrvKwargs {
                sample_num: 20,
                batch_num: 4,
                ..UrvKwargs::default()
            },
            UrvKwargs {
                batch_mode: false,
                sample_num: 17,
                seed: Some(3),
                ..UrvKwargs::default()
            },
        ] {
            let run = |cap: Option<usize>| {
                let p = problem(&shape);
                let mut g = urv(kw.clone(), 30);
                if let Some(c) = cap {
                    g = g.with_rows_per_call(c);
                }
                let mut rng = rng_from_seed(5);
                let out: Vec<_> = (0..3)
                    .map(|i| {
                        let at = y.mapv(|v| v * (1.0 + i as f64));
                        let request = Request {
                            at: at.view(),
                            also: (i == 1).then(|| other.view()),
                            more: i < 2,
                        };
                        g.estimate(&p, &request, &mut rng).expect("gradient")
                    })
                    .collect();
                (out, p.loss_rows())
            };
            let (whole, rows_whole) = run(None);
            for cap in [3, 7, 19] {
                let (chunked, rows_chunked) = run(Some(cap));
                assert_eq!(rows_whole, rows_chunked, "{kw:?}");
                for (a, b) in whole.iter().zip(&chunked) {
                    let bits = |x: &ArrayD<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&a.gradient),
                        bits(&b.gradient),
                        "{kw:?}, {cap} rows per call"
                    );
                    assert_eq!(a.at, b.at);
                    assert_eq!(a.also, b.also);
                }
            }
        }
    }

    #[test]
    fn non_batched_mu_shrinks_with_call_counter() {
        let kw = UrvKwargs {
            batch_mode: false,
            ..UrvKwargs::default()
        };
        assert!((kw.mu_for(784, 1) - 1.0 / 28.0).abs() < 1e-15);
        assert!((kw.mu_for(784, 4) - 1.0 / 56.0).abs() < 1e-15);
        assert!((UrvKwargs::default().mu_for(784, 1) - 1.0 / 2800.0).abs() < 1e-15);
    }

    #[test]
    fn same_seed_same_estimate() {
        let shape = [8];
        let y = point(&shape);
        let run = |seed| {
            let p = problem(&shape);
            urv(UrvKwargs::default(), 8)
                .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(seed))
                .expect("gradient")
                .gradient
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn a_point_of_the_wrong_size_is_an_error() {
        let p = problem(&[3]);
        let y = point(&[4]);
        let err = urv(UrvKwargs::default(), 3)
            .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(0))
            .expect_err("wrong size accepted");
        assert!(err.to_string().contains("built for 3"), "{err}");
    }
}
