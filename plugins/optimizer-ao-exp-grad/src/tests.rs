use super::*;
use maxi_core::ndarray::{ArrayD, IxDyn};
use maxi_core::{
    Estimate, Gradient, Kwargs, MaxiError, MaxiRng, Problem, Request, rng_from_seed, step_once,
};
use maxi_expgrad::testing::*;

fn valid(k: AoExpGradKwargs) -> Valid<AoExpGradKwargs> {
    Valid::check(k).expect("valid kwargs")
}
// ---------------------------------------------------------------------------------------------
// Kwargs and registry
// ---------------------------------------------------------------------------------------------

#[test]
fn kwargs_defaults_and_validation() {
    let k: AoExpGradKwargs = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert_eq!(
        k,
        AoExpGradKwargs {
            l1: 0.5,
            l2: 0.5,
            eta: 1.0
        }
    );
    assert_eq!(k, AoExpGradKwargs::default());
    assert!(k.validate().is_ok());
    for (field, bad) in [
        ("l1", AoExpGradKwargs { l1: -1.0, ..k }),
        ("l1", AoExpGradKwargs { l1: f64::NAN, ..k }),
        ("l2", AoExpGradKwargs { l2: -0.1, ..k }),
        (
            "l2",
            AoExpGradKwargs {
                l2: f64::INFINITY,
                ..k
            },
        ),
        ("eta", AoExpGradKwargs { eta: 0.0, ..k }),
        ("eta", AoExpGradKwargs { eta: -2.0, ..k }),
        ("eta", AoExpGradKwargs { eta: f64::NAN, ..k }),
    ] {
        let p = bad.validate().expect_err("invalid kwargs accepted");
        assert_eq!(p.field, field);
        assert!(p.message.contains("must be"), "{}", p.message);
    }
    assert!(
        AoExpGradKwargs {
            l1: 0.0,
            l2: 0.0,
            ..k
        }
        .validate()
        .is_ok()
    );
}

#[test]
fn registered_under_name_and_aliases() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let c = registry.get::<OptimizerKind>("ao_exp_grad")?;
    assert_eq!(c.meta.name, "ao_exp_grad");
    assert_eq!(c.meta.aliases, ["AoExpGradOptimizer", "AOExpGrad"]);
    for alias in ["AoExpGradOptimizer", "AOExpGrad", "aoexpgrad"] {
        assert_eq!(
            registry.get::<OptimizerKind>(alias)?.meta.name,
            "ao_exp_grad"
        );
    }
    assert_eq!(c.meta.accepted_kwargs(), ["eta", "l1", "l2"]);
    // Docs of the fields reach the schema.
    let props = &c.meta.schema["properties"];
    assert!(
        props["l1"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("L1"))
    );
    assert_eq!(props["eta"]["default"], serde_json::json!(1.0));

    let parsed = c.prepare(&Kwargs::from_serialize(&serde_json::json!({"l1": 0.1}))?)?;
    assert_eq!(
        parsed.kwargs_json(),
        serde_json::json!({"l1": 0.1, "l2": 0.5, "eta": 1.0})
    );
    let start = ArrayD::zeros(IxDyn(&[3]));
    let bounds = bounds_of(-1.0, 1.0, 3);
    let opt = parsed.build(&OptimizerContext {
        start: start.view(),
        bounds: &bounds,
    })?;
    assert_eq!(opt.regularization(), Regularization { l1: 0.1, l2: 0.5 });
    Ok(())
}

#[test]
fn bad_kwargs_are_reported() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let c = registry.get::<OptimizerKind>("AOExpGrad")?;
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"lr": 0.1}))?) {
        Err(MaxiError::UnknownKwarg { key, accepted, .. }) => {
            assert_eq!(key, "lr");
            assert_eq!(accepted, ["eta", "l1", "l2"]);
        }
        other => panic!("expected UnknownKwarg, got {:?}", other.err()),
    }
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"l1": -1}))?) {
        Err(MaxiError::InvalidKwarg { field, message, .. }) => {
            assert_eq!(field, "l1");
            assert!(message.contains(">= 0"), "{message}");
        }
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"eta": 0}))?) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "eta"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"l2": "big"}))?) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "l2"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    Ok(())
}

#[test]
fn build_rejects_mismatched_start() {
    let k = AoExpGradKwargs::default();
    let start = ArrayD::zeros(IxDyn(&[4]));
    assert!(matches!(
        AoExpGrad::new(&valid(k), start.view(), &bounds_of(-1.0, 1.0, 3)),
        Err(MaxiError::InvalidInput { .. })
    ));
    let empty = ArrayD::zeros(IxDyn(&[0]));
    assert!(AoExpGrad::new(&valid(k), empty.view(), &bounds_of(-1.0, 1.0, 0)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Behaviour on a composite problem
// ---------------------------------------------------------------------------------------------

/// Runs `steps` updates and returns (max error of y, objective gap) after each checkpoint.
fn converge(opt: &mut dyn Optimizer, l1: f64, l2: f64, steps: usize) -> (f64, f64) {
    let p = problem(&C, LO, HI);
    let y_star = minimiser(&C, l1, l2, LO, HI);
    let mut grad = Exact::default();
    let mut rng = rng_from_seed(0);
    let mut y = ArrayD::zeros(IxDyn(&[5]));
    for _ in 0..steps {
        y = step_once(&p, &mut grad, opt, &mut rng).expect("step");
        assert!(
            y.iter().all(|v| v.is_finite() && (LO..=HI).contains(v)),
            "{y}"
        );
    }
    let y: Vec<f64> = y.iter().copied().collect();
    let err = y
        .iter()
        .zip(&y_star)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    let gap = objective(&y, &C, l1, l2) - objective(&y_star, &C, l1, l2);
    (err, gap)
}

#[test]
fn converges_on_elastic_net_box_problem() {
    let y_star = minimiser(&C, 0.5, 0.5, LO, HI);
    // The test problem exercises clipping (coords 0, 1), thresholding (2, 3) and an interior
    // coordinate (4).
    assert_eq!(&y_star[..4], &[HI, LO, 0.0, 0.0]);
    assert!(y_star[4] > 0.0 && y_star[4] < HI);
    for (l1, l2, steps, tol) in [
        (0.5, 0.5, 3000, 1e-5),
        (0.5, 0.0, 3000, 1e-6),
        (0.5, 0.5, 200, 1e-3),
    ] {
        let k = AoExpGradKwargs { l1, l2, eta: 1.0 };
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt =
            AoExpGrad::new(&valid(k), start.view(), &bounds_of(LO, HI, 5)).expect("build");
        let (err, gap) = converge(&mut opt, l1, l2, steps);
        eprintln!("ao_exp_grad l1={l1} l2={l2} steps={steps}: |y − y*|∞ = {err:e}, gap = {gap:e}");
        assert!(
            err <= tol,
            "l1={l1} l2={l2}: |y − y*|∞ = {err} after {steps} steps"
        );
        assert!(gap >= -1e-12, "objective below the minimum: {gap}");
        assert!(gap <= tol, "objective gap {gap}");
    }
}

#[test]
fn converges_when_built_through_registry() -> Result<()> {
    let c = maxi_core::registry::global()?.get::<OptimizerKind>("AoExpGradOptimizer")?;
    let parsed = c.prepare(&Kwargs::from_serialize(
        &serde_json::json!({"l1": 0.5, "l2": 0.5, "eta": 1.0}),
    )?)?;
    let start = ArrayD::zeros(IxDyn(&[5]));
    let bounds = bounds_of(LO, HI, 5);
    let mut opt = parsed.build(&OptimizerContext {
        start: start.view(),
        bounds: &bounds,
    })?;
    let (err, _) = converge(opt.as_mut(), 0.5, 0.5, 3000);
    assert!(err <= 1e-5, "{err}");
    Ok(())
}

/// The spec's update, written out per coordinate with scalars, as an independent reference.
fn reference_steps(
    c: &[f64],
    l1: f64,
    l2: f64,
    eta: f64,
    lo: f64,
    hi: f64,
    n: usize,
) -> Vec<(Vec<f64>, Vec<f64>)> {
    let d = c.len();
    let beta = 1.0 / d as f64;
    let (mut x, mut y, mut h) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let (mut lam, mut s_sum) = (0.0f64, 0.0f64);
    let sgn = |v: f64| if v == 0.0 { 0.0 } else { v.signum() };
    let mut out = Vec::new();
    for step in 1..=n {
        let t = step as f64;
        s_sum += t;
        let at = y.clone();
        let g: Vec<f64> = y.iter().zip(c).map(|(y, c)| y - c).collect();
        let diff = g
            .iter()
            .zip(&h)
            .map(|(g, h)| (g - h).abs())
            .fold(0.0, f64::max);
        lam += (t * diff).powi(2);
        let mut alpha = eta * lam.sqrt() / ((d as f64) + 1.0).ln().sqrt();
        if alpha == 0.0 {
            alpha = 1e-6;
        }
        for i in 0..d {
            let z = sgn(x[i]) * (x[i].abs() / beta + 1.0).ln()
                - (t * g[i] - t * h[i] + (t + 1.0) * g[i]) / alpha;
            let shifted = (z.abs() - l1 * (t + 1.0) / alpha).max(0.0);
            let v = if l2 == 0.0 {
                beta * shifted.exp() - beta
            } else {
                let (a, b) = (beta, l2 * (t + 1.0) / alpha);
                let s = shifted + (a * b).ln() + a * b;
                lambert_w::lambert_w0(s.exp()) / b - a
            };
            x[i] = (sgn(z) * v).clamp(lo, hi);
            y[i] = ((t / s_sum) * x[i] + ((s_sum - t) / s_sum) * y[i]).clamp(lo, hi);
        }
        h = g;
        out.push((at, y.clone()));
    }
    out
}

#[test]
fn first_steps_follow_the_spec() {
    for (l1, l2, eta) in [(0.5, 0.5, 1.0), (0.1, 0.0, 2.0), (0.0, 1.0, 0.5)] {
        let reference = reference_steps(&C, l1, l2, eta, LO, HI, 30);
        let k = AoExpGradKwargs { l1, l2, eta };
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt =
            AoExpGrad::new(&valid(k), start.view(), &bounds_of(LO, HI, 5)).expect("build");
        let p = problem(&C, LO, HI);
        let mut grad = Exact::default();
        let mut rng = rng_from_seed(0);
        for (i, (at, y_ref)) in reference.iter().enumerate() {
            let y = step_once(&p, &mut grad, &mut opt, &mut rng).expect("step");
            // The gradient is taken at the averaged iterate y.
            let asked = grad.points.last().expect("gradient called");
            for (a, b) in asked.iter().zip(at) {
                assert!(
                    (a - b).abs() <= 1e-9,
                    "step {}: gradient point {a} vs {b}",
                    i + 1
                );
            }
            for (a, b) in y.iter().zip(y_ref) {
                assert!(
                    (a - b).abs() <= 1e-9,
                    "step {}: y {a} vs reference {b}",
                    i + 1
                );
            }
            assert_eq!(opt.iterate(), y.view());
        }
    }
}

#[test]
fn nonfinite_gradient_is_an_error() {
    struct Nan;
    impl Gradient for Nan {
        fn estimate(
            &mut self,
            _: &Problem,
            request: &Request<'_>,
            _: &mut MaxiRng,
        ) -> Result<Estimate> {
            Ok(Estimate::new(ArrayD::from_elem(
                request.at.raw_dim(),
                f64::NAN,
            )))
        }
    }
    let start = ArrayD::zeros(IxDyn(&[5]));
    let mut opt = AoExpGrad::new(
        &valid(AoExpGradKwargs::default()),
        start.view(),
        &bounds_of(LO, HI, 5),
    )
    .expect("build");
    let p = problem(&C, LO, HI);
    let err = step_once(&p, &mut Nan, &mut opt, &mut rng_from_seed(0)).expect_err("NaN accepted");
    assert!(err.to_string().contains("not finite"), "{err}");
}
