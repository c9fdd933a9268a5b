//! USRV: the two-point (symmetric) random vector gradient estimator.
//!
//! `g = (1/B) Σ_b d/(2μq) Σ_{j=1..q} (L(y + μ·u_j) − L(y − μ·u_j)) · u_j` with unit-norm
//! Gaussian directions `u_j`. The base point rides along in the first batched evaluation
//! (for the step record), so a gradient costs `1 + 2·q·B` loss rows.
//! (MAXi's non-batched version multiplies by `d·μ/2` instead of dividing by `2μ`; not here.)
#![warn(missing_docs)]

use maxi_core::registry::{GradientContext, GradientFactory};
use maxi_core::{Gradient, MaxiError, MaxiRng, Problem, Result, rng_from_seed};
use maxi_gradient_urv::{UrvKwargs, unit_directions};
use ndarray::{Array1, ArrayD, ArrayViewD, Axis, IxDyn, concatenate, s};

/// Kwargs of [`Usrv`]: the same as URV's (`mu`, `sample_num` alias `num_iter`, `batch_num`,
/// `batch_mode`, `seed`), with `sample_num` counting direction pairs.
pub type UsrvKwargs = UrvKwargs;

/// The USRV estimator (see the crate docs).
pub struct Usrv {
    kwargs: UsrvKwargs,
    d: usize,
    calls: u64,
    own_rng: Option<MaxiRng>,
}

impl Usrv {
    /// An estimator for items of `d` entries.
    pub fn new(kwargs: UsrvKwargs, d: usize) -> Self {
        let own_rng = kwargs.seed.map(rng_from_seed);
        Usrv {
            kwargs,
            d,
            calls: 0,
            own_rng,
        }
    }
}

fn shape_err(e: impl std::fmt::Display) -> MaxiError {
    MaxiError::Other(e.to_string())
}

impl Gradient for Usrv {
    fn gradient(
        &mut self,
        problem: &Problem,
        y: ArrayViewD<'_, f64>,
        rng: &mut MaxiRng,
    ) -> Result<ArrayD<f64>> {
        self.calls += 1;
        let mu = self.kwargs.mu_for(self.d, self.calls);
        let d = self.d;
        let (batches, q) = self.kwargs.split();
        let rng = self.own_rng.as_mut().unwrap_or(rng);
        let flat = y.to_shape(d).map_err(shape_err)?;
        let mut shape = vec![2 * q];
        shape.extend_from_slice(y.shape());
        let mut g = Array1::<f64>::zeros(d);
        for b in 0..batches {
            let u = unit_directions(q, d, rng);
            let step = &u * mu;
            let center = flat.view().insert_axis(Axis(0));
            let plus = &center + &step;
            let minus = &center - &step;
            let points = concatenate(Axis(0), &[plus.view(), minus.view()]).map_err(shape_err)?;
            let points = points
                .into_shape_with_order(IxDyn(&shape))
                .map_err(shape_err)?;
            let values = if b == 0 {
                problem.eval_with_base(y.view(), points.view())?.1
            } else {
                problem.eval_batch(points.view())?
            };
            let scale = d as f64 / (2.0 * mu * q as f64);
            let diffs = (&values.slice(s![..q]) - &values.slice(s![q..])).mapv(|v| v * scale);
            g += &diffs.dot(&u);
        }
        g /= batches as f64;
        g.into_shape_with_order(IxDyn(y.shape())).map_err(shape_err)
    }
}

/// Registry factory of [`Usrv`].
pub struct UsrvFactory;

impl GradientFactory for UsrvFactory {
    type Kwargs = UsrvKwargs;
    fn build(kwargs: &UsrvKwargs, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(Usrv::new(
            kwargs.clone(),
            ctx.shape.iter().product(),
        )))
    }
}

maxi_core::register_gradient!(
    UsrvFactory,
    "usrv",
    aliases = ["USRVGradientEstimator", "USRV"],
    doc = "Two-point (symmetric) random vector gradient estimate (1 + 2·sample_num rows per gradient)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::{Bounds, Loss};

    /// `L(y) = Σ sin(y_i)`, gradient `cos(y)`.
    struct SinSum {
        bounds: Bounds,
    }

    impl Loss for SinSum {
        fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
            Ok(batch
                .outer_iter()
                .map(|r| r.iter().map(|v| v.sin()).sum())
                .collect())
        }
        fn bounds(&self) -> &Bounds {
            &self.bounds
        }
        fn start(&self) -> ArrayD<f64> {
            ArrayD::zeros(self.bounds.lower().shape())
        }
    }

    #[test]
    fn estimates_smooth_gradient_with_correct_scale() {
        let d = 10;
        let p = Problem::new(
            Box::new(SinSum {
                bounds: Bounds::unbounded(&[d]),
            }),
            vec![d],
        );
        let y = ArrayD::from_shape_vec(vec![d], (0..d).map(|i| i as f64 * 0.3).collect())
            .expect("shape");
        let exact = y.mapv(f64::cos);
        let mut errs = Vec::new();
        for n in [200, 40_000] {
            let kw = UsrvKwargs {
                sample_num: n,
                batch_num: 2,
                mu: Some(1e-3),
                ..UsrvKwargs::default()
            };
            let g = Usrv::new(kw, d)
                .gradient(&p, y.view(), &mut rng_from_seed(5))
                .expect("gradient");
            let err = (&g - &exact).iter().map(|v| v * v).sum::<f64>().sqrt()
                / exact.iter().map(|v| v * v).sum::<f64>().sqrt();
            errs.push(err);
        }
        assert!(errs[1] < 0.04, "{errs:?}");
        assert!(errs[1] < errs[0] / 4.0, "{errs:?}");
        // per call: the base row + 2 rows per direction
        assert_eq!(p.loss_rows(), (1 + 2 * 200) + (1 + 2 * 40_000));
    }
}
