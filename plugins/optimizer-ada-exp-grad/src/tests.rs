use super::*;
use maxi_core::ndarray::IxDyn;
use maxi_core::{Kwargs, MaxiError, Problem, rng_from_seed, step_once};
use maxi_expgrad::testing::*;

fn valid(k: AdaExpGradKwargs) -> Valid<AdaExpGradKwargs> {
    Valid::check(k).expect("valid kwargs")
}

/// Max-norm distance of `a` to `b`.
fn dist(a: &ArrayD<f64>, b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
}

/// Runs `steps` more updates and returns the last averaged iterate `y`.
fn run(opt: &mut dyn Optimizer, p: &Problem, steps: usize) -> ArrayD<f64> {
    let mut grad = Exact::default();
    let mut rng = rng_from_seed(0);
    let mut y = ArrayD::zeros(IxDyn(&[5]));
    for _ in 0..steps {
        y = step_once(p, &mut grad, opt, &mut rng).expect("step");
        assert!(
            y.iter().all(|v| v.is_finite() && (LO..=HI).contains(v)),
            "{y}"
        );
        grad.points.clear();
    }
    y
}

#[test]
fn converges_on_elastic_net_box_problem() {
    let y_star = minimiser(&C, 0.5, 0.5, LO, HI);
    // Clipped (0, 1), thresholded (2, 3) and interior (4) coordinates.
    assert_eq!(&y_star[..4], &[HI, LO, 0.0, 0.0]);
    assert!(y_star[4] > 0.0 && y_star[4] < HI);
    for (l1, l2) in [(0.5, 0.5), (0.5, 0.0)] {
        let k = AdaExpGradKwargs { l1, l2, eta: 1.0 };
        let y_star = minimiser(&C, l1, l2, LO, HI);
        let p = problem(&C, LO, HI);
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt =
            AdaExpGrad::new(&valid(k), start.view(), &bounds_of(LO, HI, 5)).expect("build");

        let y = run(&mut opt, &p, 3000);
        // The iterate x reaches the minimiser to rounding, exact zeros included.
        let x_err = dist(opt.x(), &y_star);
        assert!(x_err <= 1e-10, "l2={l2}: |x − y*|∞ = {x_err}");
        assert_eq!((opt.x()[2], opt.x()[3]), (0.0, 0.0), "x = {}", opt.x());
        // The returned uniform average y converges like 1/t.
        let err_3k = dist(&y, &y_star);
        assert!(
            err_3k <= 5e-3,
            "l2={l2}: |y − y*|∞ = {err_3k} after 3000 steps"
        );
        assert_eq!((y[2], y[3]), (0.0, 0.0), "y = {y}");

        let y = run(&mut opt, &p, 27_000);
        let err_30k = dist(&y, &y_star);
        let yv: Vec<f64> = y.iter().copied().collect();
        let gap = objective(&yv, &C, l1, l2) - objective(&y_star, &C, l1, l2);
        eprintln!(
            "ada_exp_grad l1={l1} l2={l2}: |x − y*|∞ = {x_err:e} (3000 steps), |y − y*|∞ = \
             {err_3k:e} (3000), {err_30k:e} (30000), gap {gap:e} (30000)"
        );
        assert!(
            err_30k <= 5e-4,
            "l2={l2}: |y − y*|∞ = {err_30k} after 30000 steps"
        );
        assert!(
            err_30k <= 0.15 * err_3k,
            "no 1/t decay: {err_3k} → {err_30k}"
        );
        assert!(gap >= -1e-12, "objective below the minimum: {gap}");
        assert!(gap <= 5e-4, "objective gap {gap}");
    }
}

#[test]
fn registered_and_converges_when_built_through_registry() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let c = registry.get::<OptimizerKind>("ada_exp_grad")?;
    assert_eq!(c.meta.name, "ada_exp_grad");
    assert_eq!(c.meta.aliases, ["AdaExpGradOptimizer", "AdaExpGrad"]);
    for alias in ["AdaExpGradOptimizer", "AdaExpGrad", "adaexpgrad"] {
        assert_eq!(
            registry.get::<OptimizerKind>(alias)?.meta.name,
            "ada_exp_grad"
        );
    }
    assert_eq!(c.meta.accepted_kwargs(), ["eta", "l1", "l2"]);
    let parsed = c.prepare(&Kwargs::from_serialize(&serde_json::json!({"l2": 0.25}))?)?;
    assert_eq!(
        parsed.kwargs_json(),
        serde_json::json!({"l1": 0.5, "l2": 0.25, "eta": 0.5})
    );
    let start = ArrayD::zeros(IxDyn(&[5]));
    let bounds = bounds_of(LO, HI, 5);
    let mut opt = parsed.build(&OptimizerContext {
        start: start.view(),
        bounds: &bounds,
    })?;
    assert_eq!(opt.regularization(), Regularization { l1: 0.5, l2: 0.25 });
    let p = problem(&C, LO, HI);
    let y = run(opt.as_mut(), &p, 3000);
    let err = dist(&y, &minimiser(&C, 0.5, 0.25, LO, HI));
    assert!(err <= 5e-3, "{err}");
    // Same iterates as the optimiser built directly.
    let k = AdaExpGradKwargs {
        l1: 0.5,
        l2: 0.25,
        eta: 0.5,
    };
    let mut direct = AdaExpGrad::new(&valid(k), start.view(), &bounds)?;
    assert_eq!(run(&mut direct, &p, 3000), y);
    Ok(())
}

#[test]
fn bad_kwargs_are_reported() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let c = registry.get::<OptimizerKind>("AdaExpGrad")?;
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"beta": 0.1}))?) {
        Err(MaxiError::UnknownKwarg { key, accepted, .. }) => {
            assert_eq!(key, "beta");
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
    match c.prepare(&Kwargs::from_serialize(&serde_json::json!({"eta": -1.0}))?) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "eta"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    Ok(())
}

/// The spec's update, written out per coordinate with scalars, as an independent reference.
/// Returns (gradient point, y) per step.
fn reference_steps(c: &[f64], l1: f64, l2: f64, eta: f64, n: usize) -> Vec<(Vec<f64>, Vec<f64>)> {
    let d = c.len();
    let beta = 1.0 / d as f64;
    let (mut x, mut y) = (vec![0.0; d], vec![0.0; d]);
    let mut lam = 1.0f64;
    let sgn = |v: f64| if v == 0.0 { 0.0 } else { v.signum() };
    let mut out = Vec::new();
    for step in 1..=n {
        let t = step as f64;
        let at = x.clone();
        let g: Vec<f64> = x.iter().zip(c).map(|(x, c)| x - c).collect();
        lam += g.iter().fold(0.0f64, |m, g| m.max(g.abs())).powi(2);
        let alpha = eta * lam.sqrt();
        for i in 0..d {
            let z = sgn(x[i]) * (x[i].abs() / beta + 1.0).ln() - g[i] / alpha;
            let shifted = (z.abs() - l1 / alpha).max(0.0);
            let v = if l2 == 0.0 {
                beta * shifted.exp() - beta
            } else {
                let (a, b) = (beta, l2 / alpha);
                let s = shifted + (a * b).ln() + a * b;
                lambert_w::lambert_w0(s.exp()) / b - a
            };
            x[i] = (sgn(z) * v).clamp(LO, HI);
            y[i] = (x[i] / t + (1.0 - 1.0 / t) * y[i]).clamp(LO, HI);
        }
        out.push((at, y.clone()));
    }
    out
}

#[test]
fn first_steps_follow_the_spec() {
    for (l1, l2, eta) in [(0.5, 0.5, 1.0), (0.1, 0.0, 2.0), (0.0, 1.0, 0.5)] {
        let reference = reference_steps(&C, l1, l2, eta, 30);
        let k = AdaExpGradKwargs { l1, l2, eta };
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt =
            AdaExpGrad::new(&valid(k), start.view(), &bounds_of(LO, HI, 5)).expect("build");
        let p = problem(&C, LO, HI);
        let mut grad = Exact::default();
        let mut rng = rng_from_seed(0);
        for (i, (at, y_ref)) in reference.iter().enumerate() {
            let y = step_once(&p, &mut grad, &mut opt, &mut rng).expect("step");
            // The gradient is taken at x, not at the average y.
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
        // After step 1 the gradient point (x) differs from the returned average.
        let x2: Vec<f64> = grad.points[2].iter().copied().collect();
        assert_ne!(x2, reference[1].1);
    }
}

#[test]
fn soft_threshold_never_flips_sign() {
    // l2 = 0 and a tiny gradient: |z| < l1/α, so the coordinate must become exactly 0 (MAXi's
    // l2 == 0 branch, without max(·, 0), would give β(e^{|z|−thr} − 1) < 0 with z's sign).
    let c = [0.01, -0.01, 0.0];
    let k = AdaExpGradKwargs {
        l1: 0.5,
        l2: 0.0,
        eta: 1.0,
    };
    let start = ArrayD::zeros(IxDyn(&[3]));
    let mut opt =
        AdaExpGrad::new(&valid(k), start.view(), &bounds_of(-1.0, 1.0, 3)).expect("build");
    let p = problem(&c, -1.0, 1.0);
    let mut rng = rng_from_seed(0);
    for _ in 0..5 {
        let y = step_once(&p, &mut Exact::default(), &mut opt, &mut rng).expect("step");
        assert!(y.iter().all(|&v| v == 0.0), "{y}");
    }
}
