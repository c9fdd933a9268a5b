//! USRV: the two-point (symmetric) random vector gradient estimator.
//!
//! `g = (1/B) Σ_b d/(2μq) Σ_{j=1..q} (L(v + μ·u_j) − L(v − μ·u_j)) · u_j` with unit-norm
//! Gaussian directions `u_j`. The base point (and the request's extra point, if any) ride
//! along in the first batched evaluation, so a gradient costs `1 + 2·q·B` loss rows and
//! returns the base value with the gradient.
//! (MAXi's non-batched version multiplies by `d·μ/2` instead of dividing by `2μ`; not here.)
#![warn(missing_docs)]

use maxi_core::ndarray::{Array1, Axis, IxDyn, concatenate, s};
use maxi_core::{
    Assessed, Estimate, Factory, Gradient, GradientContext, GradientKind, MaxiError, MaxiRng,
    Problem, Request, Result, Valid, register_gradient, rng_from_seed,
};
use maxi_directions::{DirectionKwargs, unit_directions};

/// Kwargs of [`Usrv`]: the same as URV's (`mu`, `sample_num` alias `num_iter`, `batch_num`,
/// `batch_mode`, `seed`), with `sample_num` counting direction pairs.
pub type UsrvKwargs = DirectionKwargs;

/// The USRV estimator (see the crate docs).
pub struct Usrv {
    kwargs: Valid<UsrvKwargs>,
    d: usize,
    calls: u64,
    own_rng: Option<MaxiRng>,
}

impl Usrv {
    /// An estimator for variables of `d` entries.
    pub fn new(kwargs: Valid<UsrvKwargs>, d: usize) -> Self {
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
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        self.calls += 1;
        let mu = self.kwargs.mu_for(self.d, self.calls);
        let d = self.d;
        let (batches, q) = self.kwargs.split();
        let rng = self.own_rng.as_mut().unwrap_or(rng);
        if request.at.len() != d {
            return Err(MaxiError::Other(format!(
                "asked for a gradient at a point of {} entries; this estimator was built for {d}",
                request.at.len()
            )));
        }
        let flat = request.at.to_shape(d).map_err(shape_err)?;
        let mut heads = vec![flat.view().insert_axis(Axis(0))];
        let also = match &request.also {
            Some(a) => Some(a.to_shape(d).map_err(shape_err)?),
            None => None,
        };
        if let Some(a) = &also {
            heads.push(a.view().insert_axis(Axis(0)));
        }
        let mut g = Array1::<f64>::zeros(d);
        let mut values: (Option<Assessed>, Option<Assessed>) = (None, None);
        for b in 0..batches {
            let u = unit_directions(q, d, rng);
            let step = &u * mu;
            let center = flat.view().insert_axis(Axis(0));
            let plus = &center + &step;
            let minus = &center - &step;
            let mut parts = if b == 0 { heads.clone() } else { Vec::new() };
            let skip = parts.len();
            parts.push(plus.view());
            parts.push(minus.view());
            let points = concatenate(Axis(0), &parts).map_err(shape_err)?;
            let mut shape = vec![points.shape()[0]];
            shape.extend_from_slice(problem.shape());
            let mut points = points
                .into_shape_with_order(IxDyn(&shape))
                .map_err(shape_err)?;
            let e = problem.assess_batch_mut(points.view_mut())?;
            if b == 0 {
                values.0 = Some(e.at(0));
                values.1 = also.as_ref().map(|_| e.at(1));
            }
            let pm = e.values.slice(s![skip..]);
            let scale = d as f64 / (2.0 * mu * q as f64);
            let diffs = (&pm.slice(s![..q]) - &pm.slice(s![q..])).mapv(|v| v * scale);
            g += &diffs.dot(&u);
        }
        g /= batches as f64;
        let gradient = g
            .into_shape_with_order(IxDyn(problem.shape()))
            .map_err(shape_err)?;
        Ok(Estimate {
            gradient,
            at: values.0,
            also: values.1,
        })
    }
}

/// Registry factory of [`Usrv`].
pub struct UsrvFactory;

impl Factory<GradientKind> for UsrvFactory {
    type Kwargs = UsrvKwargs;
    fn build(kwargs: &Valid<UsrvKwargs>, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(Usrv::new(
            kwargs.clone(),
            ctx.shape.iter().product(),
        )))
    }
}

register_gradient!(
    UsrvFactory,
    "usrv",
    aliases = ["USRVGradientEstimator", "USRV"],
    doc = "Two-point (symmetric) random vector gradient estimate (1 + 2·sample_num rows per gradient)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::ndarray::{ArrayD, ArrayViewD};
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
        let p = Problem::identity(
            Box::new(SinSum {
                bounds: Bounds::unbounded(&[d]),
            }),
            &[d],
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
            let g = Usrv::new(Valid::check(kw).expect("valid"), d)
                .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(5))
                .expect("gradient")
                .gradient;
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
