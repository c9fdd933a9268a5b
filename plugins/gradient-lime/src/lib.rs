//! The exact gradient: asks the loss for its closed-form gradient (`Loss::gradient`), as
//! MAXi's `LimeGradient` does for LIME, so LIME can run with it or with the URV/USRV
//! estimates. The loss values the executor records are computed in one batch of the requested
//! points; no model is called for losses, like `lime`, whose samples are fixed.
#![warn(missing_docs)]

use maxi_core::ndarray::{ArrayD, Axis, concatenate};
use maxi_core::{
    Estimate, Factory, Gradient, GradientContext, GradientKind, KwargsSpec, MaxiError, MaxiRng,
    Problem, Request, Result, Valid,
};
use serde::{Deserialize, Serialize};

/// The exact gradient takes no kwargs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExactKwargs {}

impl KwargsSpec for ExactKwargs {}

/// The loss's own gradient.
#[derive(Debug, Default)]
pub struct Exact;

impl Gradient for Exact {
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        _rng: &mut MaxiRng,
    ) -> Result<Estimate> {
        let gradient = problem
            .analytic_gradient(request.at.view())
            .ok_or_else(|| {
                MaxiError::Other(
                    "this loss has no exact gradient; gradient `lime` works with loss `lime`, use `urv` or `usrv` for other losses".into(),
                )
            })??;
        let mut points: Vec<_> = vec![request.at.view().insert_axis(Axis(0))];
        if let Some(also) = &request.also {
            points.push(also.view().insert_axis(Axis(0)));
        }
        let mut batch: ArrayD<f64> = concatenate(Axis(0), &points)
            .map_err(|e| MaxiError::Other(format!("cannot stack the requested points: {e}")))?;
        let e = problem.assess_batch_mut(batch.view_mut())?;
        Ok(Estimate {
            gradient,
            at: Some(e.at(0)),
            also: request.also.as_ref().map(|_| e.at(1)),
        })
    }

    fn rows_per_estimate(&self, with_also: bool) -> Option<u64> {
        Some(if with_also { 2 } else { 1 })
    }
}

/// Registry factory of [`Exact`].
pub struct ExactFactory;

impl Factory<GradientKind> for ExactFactory {
    type Kwargs = ExactKwargs;
    fn build(
        _kwargs: &Valid<ExactKwargs>,
        _ctx: &GradientContext<'_>,
    ) -> Result<Box<dyn Gradient>> {
        Ok(Box::new(Exact))
    }
}

maxi_core::register_gradient!(
    ExactFactory,
    "lime",
    aliases = ["LimeGradient"],
    doc = "The loss's exact gradient (LIME's least-squares gradient); no model rows",
);
