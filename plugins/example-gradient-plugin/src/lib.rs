//! The seed tutorial's URV estimator, written by a "third party" as a maxi plugin.
//!
//! It depends only on the SDK, `maxi-plugin`, and implements the same traits as maxi's built-in
//! gradients. The estimator is the seed's non-batched one:
//!
//! `t += 1; μ = 1/√t/√d` (unless `mu` is given), `f0 = L(y)`,
//! `g = Σ_{j<q} d/(μ·q) · (L(y + μ·u_j) − f0) · u_j` with `u_j` Gaussian directions scaled to unit
//! norm and `q = num_iter`. The base point and the `q` perturbations go to the loss as **one**
//! batched evaluation.
//!
//! Built as a `cdylib` (feature `dynamic`, on by default) it exports `urv_tutorial` over the C ABI:
//! `maxi --plugin target/release/libmaxi_example_gradient_plugin.so list`. Linked statically
//! with the feature `static`, it registers `urv_tutorial` through inventory in a host that says
//! `use maxi_example_gradient_plugin as _;`.
#![warn(missing_docs)]

use maxi_plugin::prelude::*;

fn default_num_iter() -> usize {
    100
}

/// Kwargs of [`UrvTutorial`]: the seed's `gradient_kwargs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(crate = "maxi_plugin::serde", deny_unknown_fields)]
#[schemars(crate = "maxi_plugin::schemars")]
pub struct UrvTutorialKwargs {
    /// Smoothing radius μ; `null`: `1/√t/√d` with `t` the number of calls so far.
    #[serde(default)]
    pub mu: Option<f64>,
    /// Number of random directions `q` per gradient (costs `1 + q` loss rows).
    #[serde(default = "default_num_iter")]
    pub num_iter: usize,
}

impl Default for UrvTutorialKwargs {
    fn default() -> Self {
        UrvTutorialKwargs {
            mu: None,
            num_iter: default_num_iter(),
        }
    }
}

impl KwargsSpec for UrvTutorialKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        if let Some(mu) = self.mu
            && !(mu.is_finite() && mu > 0.0)
        {
            return Err(KwargProblem::new(
                "mu",
                format!("must be a positive number or null, got {mu}"),
            ));
        }
        if self.num_iter == 0 {
            return Err(KwargProblem::new("num_iter", "must be at least 1"));
        }
        Ok(())
    }
}

/// The seed tutorial's uniform random vector gradient estimator.
#[derive(Debug, Clone)]
pub struct UrvTutorial {
    t: u64,
    d: usize,
    q: usize,
    mu: Option<f64>,
}

impl UrvTutorial {
    /// An estimator for items of `d` entries (the seed's `img_size`).
    pub fn new(kwargs: &Valid<UrvTutorialKwargs>, d: usize) -> Self {
        UrvTutorial {
            t: 0,
            d,
            q: kwargs.num_iter,
            mu: kwargs.mu,
        }
    }

    /// Calls made so far (`t`).
    pub fn calls(&self) -> u64 {
        self.t
    }

    /// μ of the current call: the given one, or `1/√t/√d`.
    pub fn mu(&self) -> f64 {
        self.mu
            .unwrap_or_else(|| 1.0 / (self.t as f64).sqrt() / (self.d as f64).sqrt())
    }
}

fn shape_error(e: impl std::fmt::Display) -> MaxiError {
    MaxiError::Other(format!("urv_tutorial: {e}"))
}

impl Gradient for UrvTutorial {
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        let y = request.at.view();
        self.t += 1;
        let mu = self.mu();
        let (d, q) = (self.d, self.q);

        // q directions u_j ~ N(0, I), each scaled to unit norm
        let mut u = Array2::<f64>::zeros((q, d));
        for mut row in u.rows_mut() {
            loop {
                row.iter_mut()
                    .for_each(|v| *v = StandardNormal.sample(&mut *rng));
                let norm = row.dot(&row).sqrt();
                if norm > 0.0 {
                    row.mapv_inplace(|v| v / norm);
                    break;
                }
            }
        }

        // the perturbed points y + μ·u_j as one batch [q, ...shape]
        let flat = y.to_shape(d).map_err(shape_error)?;
        let points = &u * mu + flat.view().insert_axis(Axis(0));
        let mut batch_shape = vec![q];
        batch_shape.extend_from_slice(y.shape());
        let points = points
            .into_shape_with_order(IxDyn(&batch_shape))
            .map_err(shape_error)?;

        // one batched evaluation: L(y) and every L(y + μ·u_j)
        let (f0, values) = problem.eval_with_base(y.view(), points.view())?;

        let mut g = Array1::<f64>::zeros(d);
        for (j, value) in values.iter().enumerate() {
            g.scaled_add(d as f64 / mu / q as f64 * (value - f0.value), &u.row(j));
        }
        let gradient = g
            .into_shape_with_order(IxDyn(y.shape()))
            .map_err(shape_error)?;
        // the base value comes back with the gradient (it is the step record's loss value)
        Ok(Estimate {
            gradient,
            at: Some(f0),
            also: None,
        })
    }
}

/// Registry factory of [`UrvTutorial`].
pub struct UrvTutorialFactory;

impl Factory<GradientKind> for UrvTutorialFactory {
    type Kwargs = UrvTutorialKwargs;

    fn build(
        kwargs: &Valid<UrvTutorialKwargs>,
        ctx: &GradientContext<'_>,
    ) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(UrvTutorial::new(
            kwargs,
            ctx.shape.iter().product(),
        )))
    }
}

// Dynamic plugin: the C ABI entry point of the `.so`.
#[cfg(feature = "dynamic")]
maxi_plugin::export_plugin! {
    gradient(
        UrvTutorialFactory,
        "urv_tutorial",
        doc = "The seed tutorial's URV estimator (third-party plugin; 1 + num_iter loss rows per gradient)",
    );
}

// Static plugin: registered through inventory when linked into a host.
#[cfg(feature = "static")]
maxi_plugin::register_gradient!(
    UrvTutorialFactory,
    "urv_tutorial",
    aliases = [],
    doc = "The seed tutorial's URV estimator (third-party plugin; 1 + num_iter loss rows per gradient)",
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `L(y) = ‖y‖²`.
    struct SquaredNorm(Bounds);

    impl Loss for SquaredNorm {
        fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> Result<Array1<f64>> {
            Ok(batch
                .outer_iter()
                .map(|row| row.iter().map(|v| v * v).sum())
                .collect())
        }
        fn bounds(&self) -> &Bounds {
            &self.0
        }
        fn start(&self) -> ArrayD<f64> {
            ArrayD::zeros(self.0.lower().shape())
        }
    }

    fn problem(shape: &[usize]) -> Problem {
        Problem::identity(Box::new(SquaredNorm(Bounds::unbounded(shape))), shape)
    }

    fn tutorial(kwargs: UrvTutorialKwargs, d: usize) -> UrvTutorial {
        UrvTutorial::new(&Valid::check(kwargs).expect("valid kwargs"), d)
    }

    #[test]
    fn mu_shrinks_with_the_call_counter() {
        let mut g = tutorial(UrvTutorialKwargs::default(), 784);
        let p = problem(&[784]);
        let y = ArrayD::<f64>::zeros(IxDyn(&[784]));
        let mut rng = rng_from_seed(0);
        g.estimate(&p, &Request::at(y.view()), &mut rng)
            .expect("gradient");
        assert!((g.mu() - 1.0 / 28.0).abs() < 1e-15);
        for _ in 0..3 {
            g.estimate(&p, &Request::at(y.view()), &mut rng)
                .expect("gradient");
        }
        assert_eq!(g.calls(), 4);
        assert!((g.mu() - 1.0 / 56.0).abs() < 1e-15);
        let fixed = tutorial(
            UrvTutorialKwargs {
                mu: Some(0.5),
                num_iter: 3,
            },
            9,
        );
        assert_eq!(fixed.mu(), 0.5);
    }

    #[test]
    fn one_batched_evaluation_of_one_plus_q_rows_and_base_returned() {
        let shape = [2, 3];
        let p = problem(&shape);
        let y = ArrayD::from_shape_vec(IxDyn(&shape), vec![0.1, -0.2, 0.3, 0.0, 0.5, -0.4])
            .expect("shape");
        let mut g = tutorial(
            UrvTutorialKwargs {
                mu: Some(1e-4),
                num_iter: 20_000,
            },
            6,
        );
        let e = g
            .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(3))
            .expect("gradient");
        let est = e.gradient;
        assert_eq!(est.shape(), &shape);
        assert_eq!(p.loss_rows(), 20_001);
        assert_eq!(e.at.map(|a| a.value), Some(y.iter().map(|v| v * v).sum()));
        let exact = &y * 2.0;
        let err = (&est - &exact).iter().map(|v| v * v).sum::<f64>().sqrt()
            / exact.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(err < 0.05, "relative error {err}");
    }

    #[test]
    fn kwargs_are_checked_and_named() {
        let bad = UrvTutorialKwargs {
            mu: Some(-1.0),
            num_iter: 10,
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "mu");
        let bad = UrvTutorialKwargs {
            mu: None,
            num_iter: 0,
        };
        assert_eq!(KwargsSpec::validate(&bad).unwrap_err().field, "num_iter");
        let parsed: UrvTutorialKwargs =
            maxi_plugin::serde_json::from_str(r#"{"mu": null, "num_iter": 150}"#).expect("kwargs");
        assert_eq!(parsed.num_iter, 150);
        assert!(
            maxi_plugin::serde_json::from_str::<UrvTutorialKwargs>(r#"{"sample_num": 3}"#).is_err()
        );
    }
}
