use super::*;
use crate::testing::*;
use maxi_core::ndarray::{ArrayD, IxDyn};
use maxi_core::registry::Builder;
use maxi_core::{Kind, Kwargs, rng_from_seed};

// ---------------------------------------------------------------------------------------------
// w_of_exp
// ---------------------------------------------------------------------------------------------

const S_VALUES: [f64; 22] = [
    -700.0, -50.0, -39.9, -5.0, -1.0, 0.0, 1e-9, 0.5, 1.0, 2.0, 10.0, 30.0, 39.9, 40.0, 40.1,
    100.0, 700.0, 709.7, 710.0, 1e4, 1e6, 1e12,
];

#[test]
fn lambert_w0_reference_value() {
    // lambert_w0 is accurate to ~50 bits; W(1) = Ω = 0.5671432904097838.
    assert!((lambert_w::lambert_w0(1.0) - 0.5671432904097838).abs() <= 1e-15);
    // W(e^0) = W(1) = Ω.
    assert!((w_of_exp(0.0) - 0.5671432904097838).abs() <= 2.0 * f64::EPSILON);
    // W(e^1) = 1 exactly.
    assert!((w_of_exp(1.0) - 1.0).abs() <= 2.0 * f64::EPSILON);
}

#[test]
fn w_of_exp_solves_w_plus_ln_w_eq_s() {
    for &s in &S_VALUES {
        let w = w_of_exp(s);
        assert!(w > 0.0 && w.is_finite(), "s = {s}: w = {w}");
        let residual = (w + w.ln() - s).abs();
        assert!(
            residual <= 1e-12 * s.abs().max(1.0),
            "s = {s}: w = {w}, w + ln w − s = {residual:e}"
        );
    }
}

#[test]
fn w_of_exp_satisfies_w_exp_w_eq_exp_s_where_representable() {
    for &s in S_VALUES.iter().filter(|&&s| s.exp().is_normal()) {
        let w = w_of_exp(s);
        // w·e^w = e^s, compared in relative terms (exp amplifies w's rounding by w).
        let rel = (w * w.exp() / s.exp() - 1.0).abs();
        assert!(rel <= 1e-13 * w.max(1.0), "s = {s}: relative error {rel:e}");
    }
    assert!(
        710.0f64.exp().is_infinite(),
        "the large cases do overflow e^s"
    );
    assert!(w_of_exp(710.0).is_finite());
}

#[test]
fn w_of_exp_is_accurate_for_tiny_and_special_inputs() {
    // For very negative s, W(e^s) = e^s (1 − e^s + …).
    for s in [-45.0, -300.0, -1000.0] {
        assert_eq!(w_of_exp(s), s.exp());
    }
    assert_eq!(w_of_exp(f64::INFINITY), f64::INFINITY);
    assert!(w_of_exp(f64::NAN).is_nan());
    assert_eq!(w_of_exp(f64::NEG_INFINITY), 0.0);
}

#[test]
fn w_of_exp_is_continuous_and_monotone_across_switches() {
    for switch in [W_TINY, W_OF_EXP_SWITCH] {
        let below = switch.next_down();
        let (wb, wa) = (w_of_exp(below), w_of_exp(switch));
        // dw/ds = w/(1+w) < 1, so one ulp in s moves w by less than one ulp of s.
        assert!(wa >= wb, "not monotone at {switch}: {wb} > {wa}");
        assert!(
            wa - wb <= 4.0 * f64::EPSILON * wa.max(switch.abs()),
            "jump at {switch}: {wb} → {wa}"
        );
        // Wider window: the difference matches the derivative.
        for h in [1e-9, 1e-6, 1e-3] {
            let (lo, hi) = (w_of_exp(switch - h), w_of_exp(switch + h));
            let w = w_of_exp(switch);
            let slope = w / (1.0 + w);
            let predicted = 2.0 * h * slope;
            assert!(
                ((hi - lo) - predicted).abs() <= 1e-6 * predicted + 1e-13 * w.max(1.0),
                "switch {switch}, h {h}: Δw = {}, predicted {predicted}",
                hi - lo
            );
        }
    }
    // Monotone on a dense sweep through both switches.
    let mut prev = w_of_exp(-60.0);
    let mut s = -60.0;
    while s < 60.0 {
        s += 0.01;
        let w = w_of_exp(s);
        assert!(w >= prev, "w_of_exp decreases at s = {s}");
        prev = w;
    }
}

// ---------------------------------------------------------------------------------------------
// prox
// ---------------------------------------------------------------------------------------------

/// The function that the proximal step minimises over `v ≥ 0`.
fn h_obj(v: f64, r: f64, a: f64, b: f64) -> f64 {
    (v + a) * (v / a).ln_1p() - v - r * v + 0.5 * b * v * v
}

/// Golden-section minimisation of the convex `h` on `[0, hi]`.
fn golden_min(r: f64, a: f64, b: f64, hi: f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.0f64, hi);
    let mut c = hi - g * (hi - lo);
    let mut d = lo + g * (hi - lo);
    for _ in 0..300 {
        if h_obj(c, r, a, b) < h_obj(d, r, a, b) {
            hi = d;
        } else {
            lo = c;
        }
        c = hi - g * (hi - lo);
        d = lo + g * (hi - lo);
    }
    0.5 * (lo + hi)
}

/// Bisection on the stationarity condition `h'(v) = ln(1 + v/a) + b·v − r` (increasing).
fn bisect_stationary(r: f64, a: f64, b: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, hi);
    for _ in 0..400 {
        let mid = 0.5 * (lo + hi);
        if (mid / a).ln_1p() + b * mid - r > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// An upper bound of the minimiser: `v* ≤ a(e^r − 1)` and `v* ≤ r/b`.
fn upper_bound(r: f64, a: f64, b: f64) -> f64 {
    let soft = a * r.exp_m1();
    let quad = if b > 0.0 { r / b } else { f64::INFINITY };
    2.0 * soft.min(quad) + 1.0
}

/// (z, threshold, a, b)
const PROX_CASES: [(f64, f64, f64, f64); 16] = [
    (1.0, 0.2, 0.2, 0.0),
    (-3.0, 0.5, 0.2, 0.0),
    (0.7, 0.0, 1.0 / 784.0, 0.0),
    (12.0, 1.0, 0.01, 0.0),
    (1.0, 0.2, 0.2, 0.3),
    (-3.0, 0.5, 0.2, 2.0),
    (0.7, 0.0, 1.0 / 784.0, 1e-4),
    (-12.0, 1.0, 0.01, 50.0),
    (5.0, 4.999, 0.5, 1.0),
    (2.0, 0.1, 3.0, 1e3),
    (1e-8, 0.0, 0.2, 0.5),
    // Large arguments: s = r + ln(ab) + ab is far above where e^s overflows.
    (800.0, 0.0, 0.2, 1.0),
    (-1e4, 5.0, 0.1, 0.5),
    (1e6, 10.0, 0.2, 3.0),
    (750.0, 1.0, 1e-3, 1e-3),
    (400.0, 0.0, 0.2, 1e-6),
];

#[test]
fn prox_matches_closed_form() {
    for &(z, thr, a, b) in &PROX_CASES {
        let r = (z.abs() - thr).max(0.0);
        let v = prox(z, thr, a, b).abs();
        assert_eq!(prox(z, thr, a, b).signum(), z.signum(), "sign for z = {z}");
        let closed = if b == 0.0 {
            a * r.exp() - a
        } else {
            w_of_exp(r + (a * b).ln() + a * b) / b - a
        };
        assert!(
            (v - closed).abs() <= 1e-12 * closed.abs() + 1e-15 * a,
            "z {z} thr {thr} a {a} b {b}: prox {v} vs closed form {closed}"
        );
        if b == 0.0 {
            // Soft threshold in the mirror space.
            assert!((v - a * r.exp_m1()).abs() <= 1e-14 * v);
        } else if (r + (a * b).ln() + a * b) < 700.0 {
            // Where e^s is finite, compare with lambert_w0 directly.
            let direct = lambert_w::lambert_w0(a * b * (r + a * b).exp()) / b - a;
            assert!(
                (v - direct).abs() <= 1e-9 * direct.abs() + 1e-14 * a,
                "z {z}: prox {v} vs lambert_w0 {direct}"
            );
        }
    }
}

#[test]
fn prox_minimises_h() {
    for &(z, thr, a, b) in &PROX_CASES {
        let r = (z.abs() - thr).max(0.0);
        let v = prox(z, thr, a, b).abs();
        let hi = upper_bound(r, a, b);
        // Stationarity, solved by bisection, to near machine precision.
        let v_bis = bisect_stationary(r, a, b, hi);
        assert!(
            (v - v_bis).abs() <= 1e-12 * v_bis + 1e-15 * a,
            "z {z} thr {thr} a {a} b {b}: prox {v} vs bisection {v_bis}"
        );
        // Direct minimisation of h: golden section finds v to ~√ε, and h(prox) is no worse.
        let v_gs = golden_min(r, a, b, hi);
        let scale = h_obj(v, r, a, b).abs().max(1.0);
        assert!(
            h_obj(v, r, a, b) <= h_obj(v_gs, r, a, b) + 1e-14 * scale,
            "z {z}: h(prox) = {} > h(golden) = {}",
            h_obj(v, r, a, b),
            h_obj(v_gs, r, a, b)
        );
        assert!(
            (v - v_gs).abs() <= 1e-6 * (v + a),
            "z {z}: prox {v} vs golden section {v_gs}"
        );
        // And v is a local minimum on a fine grid around it.
        for k in 1..=5 {
            let dv = 1e-4 * k as f64 * (v + a);
            for w in [v + dv, (v - dv).max(0.0)] {
                assert!(h_obj(w, r, a, b) >= h_obj(v, r, a, b) - 1e-14 * scale);
            }
        }
    }
}

#[test]
fn prox_thresholds_to_exact_zero() {
    for (z, thr) in [(0.3, 0.5), (-0.5, 0.5), (0.0, 0.0), (0.0, 1.0)] {
        for b in [0.0, 0.7] {
            assert_eq!(prox(z, thr, 0.2, b), 0.0, "z {z} thr {thr} b {b}");
        }
    }
    // Just above the threshold the result is small but positive and keeps z's sign.
    let p = prox(-0.5 - 1e-12, 0.5, 0.2, 0.7);
    assert!(p < 0.0 && p > -1e-11, "{p}");
    // b → 0 is continuous with the soft threshold.
    let soft = prox(2.0, 0.5, 0.2, 0.0);
    let nearly = prox(2.0, 0.5, 0.2, 1e-12);
    assert!((soft - nearly).abs() <= 1e-9 * soft);
}

#[test]
fn mirror_inverts_soft_threshold_without_penalty() {
    for x in [-3.0, -0.1, 0.0, 1e-9, 0.4, 7.0] {
        let z = mirror(x, 0.2);
        assert!((prox(z, 0.0, 0.2, 0.0) - x).abs() <= 1e-14 * x.abs().max(1e-300));
    }
}

// ---------------------------------------------------------------------------------------------
// Kwargs and registry
// ---------------------------------------------------------------------------------------------

#[test]
fn kwargs_defaults_and_validation() {
    let k: ExpGradKwargs = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert_eq!(
        k,
        ExpGradKwargs {
            l1: 0.5,
            l2: 0.5,
            eta: 1.0
        }
    );
    assert_eq!(k, ExpGradKwargs::default());
    assert!(k.validate().is_ok());
    for (field, bad) in [
        ("l1", ExpGradKwargs { l1: -1.0, ..k }),
        ("l1", ExpGradKwargs { l1: f64::NAN, ..k }),
        ("l2", ExpGradKwargs { l2: -0.1, ..k }),
        (
            "l2",
            ExpGradKwargs {
                l2: f64::INFINITY,
                ..k
            },
        ),
        ("eta", ExpGradKwargs { eta: 0.0, ..k }),
        ("eta", ExpGradKwargs { eta: -2.0, ..k }),
        ("eta", ExpGradKwargs { eta: f64::NAN, ..k }),
    ] {
        let p = bad.validate().expect_err("invalid kwargs accepted");
        assert_eq!(p.field, field);
        assert!(p.message.contains("must be"), "{}", p.message);
    }
    assert!(
        ExpGradKwargs {
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
    let c = registry.get(Kind::Optimizer, "ao_exp_grad")?;
    assert_eq!(c.name, "ao_exp_grad");
    assert_eq!(c.aliases, ["AoExpGradOptimizer", "AOExpGrad"]);
    for alias in ["AoExpGradOptimizer", "AOExpGrad", "aoexpgrad"] {
        assert_eq!(registry.get(Kind::Optimizer, alias)?.name, "ao_exp_grad");
    }
    assert_eq!(c.accepted_kwargs(), ["eta", "l1", "l2"]);
    // Docs of the fields reach the schema.
    let props = &c.schema["properties"];
    assert!(
        props["l1"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("L1"))
    );
    assert_eq!(props["eta"]["default"], serde_json::json!(1.0));

    let parsed = c.parse_kwargs(&Kwargs::from_serialize(&serde_json::json!({"l1": 0.1}))?)?;
    assert_eq!(
        parsed.to_json(),
        serde_json::json!({"l1": 0.1, "l2": 0.5, "eta": 1.0})
    );
    let start = ArrayD::zeros(IxDyn(&[3]));
    let bounds = bounds_of(-1.0, 1.0, 3);
    let opt = match c.builder() {
        Builder::Optimizer(build) => build(
            parsed.as_ref(),
            &OptimizerContext {
                start: start.view(),
                bounds: &bounds,
            },
        )?,
        _ => panic!("ao_exp_grad is not an optimiser builder"),
    };
    assert_eq!(opt.regularization(), Regularization { l1: 0.1, l2: 0.5 });
    Ok(())
}

#[test]
fn bad_kwargs_are_reported() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let c = registry.get(Kind::Optimizer, "AOExpGrad")?;
    match c.parse_kwargs(&Kwargs::from_serialize(&serde_json::json!({"lr": 0.1}))?) {
        Err(MaxiError::UnknownKwarg { key, accepted, .. }) => {
            assert_eq!(key, "lr");
            assert_eq!(accepted, ["eta", "l1", "l2"]);
        }
        other => panic!("expected UnknownKwarg, got {:?}", other.err()),
    }
    match c.parse_kwargs(&Kwargs::from_serialize(&serde_json::json!({"l1": -1}))?) {
        Err(MaxiError::InvalidKwarg { field, message, .. }) => {
            assert_eq!(field, "l1");
            assert!(message.contains(">= 0"), "{message}");
        }
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    match c.parse_kwargs(&Kwargs::from_serialize(&serde_json::json!({"eta": 0}))?) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "eta"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    match c.parse_kwargs(&Kwargs::from_serialize(&serde_json::json!({"l2": "big"}))?) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "l2"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    Ok(())
}

#[test]
fn build_rejects_mismatched_start() {
    let k = ExpGradKwargs::default();
    let start = ArrayD::zeros(IxDyn(&[4]));
    assert!(matches!(
        AoExpGrad::new(&k, start.view(), &bounds_of(-1.0, 1.0, 3)),
        Err(MaxiError::InvalidInput { .. })
    ));
    let empty = ArrayD::zeros(IxDyn(&[0]));
    assert!(AoExpGrad::new(&k, empty.view(), &bounds_of(-1.0, 1.0, 0)).is_err());
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
        y = opt.step(&p, &mut grad, &mut rng).expect("step");
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
        let k = ExpGradKwargs { l1, l2, eta: 1.0 };
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt = AoExpGrad::new(&k, start.view(), &bounds_of(LO, HI, 5)).expect("build");
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
    let c = maxi_core::registry::global()?.get(Kind::Optimizer, "AoExpGradOptimizer")?;
    let parsed = c.parse_kwargs(&Kwargs::from_serialize(
        &serde_json::json!({"l1": 0.5, "l2": 0.5, "eta": 1.0}),
    )?)?;
    let start = ArrayD::zeros(IxDyn(&[5]));
    let bounds = bounds_of(LO, HI, 5);
    let Builder::Optimizer(build) = c.builder() else {
        panic!("not an optimiser builder");
    };
    let mut opt = build(
        parsed.as_ref(),
        &OptimizerContext {
            start: start.view(),
            bounds: &bounds,
        },
    )?;
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
        let k = ExpGradKwargs { l1, l2, eta };
        let start = ArrayD::zeros(IxDyn(&[5]));
        let mut opt = AoExpGrad::new(&k, start.view(), &bounds_of(LO, HI, 5)).expect("build");
        let p = problem(&C, LO, HI);
        let mut grad = Exact::default();
        let mut rng = rng_from_seed(0);
        for (i, (at, y_ref)) in reference.iter().enumerate() {
            let y = opt.step(&p, &mut grad, &mut rng).expect("step");
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
            assert_eq!(opt.y(), &y);
        }
    }
}

#[test]
fn nonfinite_gradient_is_an_error() {
    struct Nan;
    impl Gradient for Nan {
        fn gradient(
            &mut self,
            _: &Problem,
            y: ArrayViewD<'_, f64>,
            _: &mut MaxiRng,
        ) -> Result<ArrayD<f64>> {
            Ok(ArrayD::from_elem(y.raw_dim(), f64::NAN))
        }
    }
    let start = ArrayD::zeros(IxDyn(&[5]));
    let mut opt = AoExpGrad::new(
        &ExpGradKwargs::default(),
        start.view(),
        &bounds_of(LO, HI, 5),
    )
    .expect("build");
    let p = problem(&C, LO, HI);
    let err = opt
        .step(&p, &mut Nan, &mut rng_from_seed(0))
        .expect_err("NaN accepted");
    assert!(err.to_string().contains("not finite"), "{err}");
}
