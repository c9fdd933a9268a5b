use super::*;
use maxi_core::ndarray::{Array1, IxDyn, arr1};
use maxi_core::{Kwargs, Problem, rng_from_seed, step_once};
use maxi_expgrad::testing::{Exact, Quadratic, bounds_of};

fn valid(k: SpectralAoExpGradKwargs) -> Valid<SpectralAoExpGradKwargs> {
    Valid::check(k).expect("valid kwargs")
}

/// `½‖V − C‖²` over variables shaped like `c`, in `bounds`, with its exact gradient.
fn problem(c: ArrayD<f64>, bounds: Bounds) -> Problem {
    let shape = c.shape().to_vec();
    Problem::identity(Box::new(Quadratic { c, bounds }), &shape)
}

fn run(opt: &mut dyn Optimizer, p: &Problem, steps: usize) -> ArrayD<f64> {
    let mut grad = Exact::default();
    let mut rng = rng_from_seed(0);
    let mut y = opt.iterate().to_owned();
    for _ in 0..steps {
        y = step_once(p, &mut grad, opt, &mut rng).expect("step");
        grad.points.clear();
    }
    y
}

fn singular_values(m: ArrayView2<'_, f64>) -> Vec<f64> {
    let (_, mut s, _) = svd(m).expect("svd");
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

const LO: f64 = -0.8;
const HI: f64 = 1.5;

/// `Σ s_i·a_i b_iᵀ` with orthonormal `a_i ∈ R⁴`, `b_i ∈ R³`.
fn low_rank(s: [f64; 3]) -> Array2<f64> {
    let a = [
        arr1(&[0.5, 0.5, 0.5, 0.5]),
        arr1(&[0.5, -0.5, 0.5, -0.5]),
        arr1(&[0.5, 0.5, -0.5, -0.5]),
    ];
    let b: [Array1<f64>; 3] = [
        arr1(&[1.0, 2.0, 2.0]) / 3.0,
        arr1(&[2.0, 1.0, -2.0]) / 3.0,
        arr1(&[2.0, -2.0, 1.0]) / 3.0,
    ];
    let mut m = Array2::zeros((4, 3));
    for k in 0..3 {
        for i in 0..4 {
            for j in 0..3 {
                m[[i, j]] += s[k] * a[k][i] * b[k][j];
            }
        }
    }
    m
}

#[test]
fn converges_to_the_known_low_rank_minimiser() {
    // min ½‖X − C‖² + l1·‖X‖_* + (l2/2)‖X‖² is solved by shrinking C's singular values:
    // σ* = max(σ − l1, 0)/(1 + l2). Channel 0: C with σ = (3, 1, 0.2) → rank 2; channel 1:
    // 0.4·C with σ = (1.2, 0.4, 0.08) → rank 1.
    let (l1, l2) = (0.5, 0.5);
    let shrink = |s: [f64; 3]| s.map(|v| (v - l1).max(0.0) / (1.0 + l2));
    let s0 = [3.0, 1.0, 0.2];
    let s1 = s0.map(|v| v * 0.4);
    let c0 = low_rank(s0);
    let c1 = low_rank(s1);
    let mut c = ArrayD::zeros(IxDyn(&[4, 3, 2]));
    c.index_axis_mut(Axis(2), 0).assign(&c0);
    c.index_axis_mut(Axis(2), 1).assign(&c1);
    let want = [low_rank(shrink(s0)), low_rank(shrink(s1))];
    let bounds = Bounds::unbounded(&[4, 3, 2]);
    let p = problem(c, bounds.clone());
    let start = ArrayD::zeros(IxDyn(&[4, 3, 2]));
    let k = SpectralAoExpGradKwargs {
        l1,
        l2,
        channels_first: Some(false),
        ..SpectralAoExpGradKwargs::default()
    };
    let mut opt = SpectralAoExpGrad::new(&valid(k), start.view(), &bounds).expect("build");
    assert_eq!(opt.slicing(), Slicing::PerChannel(2));
    let y = run(&mut opt, &p, 3000);
    for (ch, want) in want.iter().enumerate() {
        let x = opt
            .x()
            .index_axis(Axis(2), ch)
            .into_dimensionality()
            .expect("2-D");
        let err_x = (&x - want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err_x <= 1e-6, "channel {ch}: |x − X*|∞ = {err_x}");
        let s = singular_values(x);
        let rank = if ch == 0 { 2 } else { 1 };
        assert!(
            s[rank..].iter().all(|v| *v <= 1e-12),
            "channel {ch}: singular values {s:?}, expected rank {rank}"
        );
        let yc = y.index_axis(Axis(2), ch);
        let err_y = (&yc - want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err_y <= 5e-3, "channel {ch}: |y − X*|∞ = {err_y}");
    }
}

#[test]
fn slicing_follows_the_shape_or_the_kwarg() {
    assert_eq!(
        slicing(&[28, 28, 1], None).ok(),
        Some(Slicing::PerChannel(2))
    );
    assert_eq!(
        slicing(&[3, 224, 224], None).ok(),
        Some(Slicing::PerChannel(0))
    );
    assert_eq!(slicing(&[5, 7], None).ok(), Some(Slicing::Matrix));
    assert_eq!(
        slicing(&[5, 6, 7], Some(true)).ok(),
        Some(Slicing::PerChannel(0))
    );
    let e = slicing(&[5, 6, 7], None).expect_err("ambiguous");
    assert!(e.to_string().contains("channels_first"), "{e}");
    let e = slicing(&[3, 3, 3], None).expect_err("ambiguous");
    assert!(e.to_string().contains("channels_first"), "{e}");
    for bad in [&[64][..], &[1, 2, 3, 4][..]] {
        let e = slicing(bad, None).expect_err("not a matrix");
        assert!(e.to_string().contains("ao_exp_grad"), "{e}");
    }
}

#[test]
fn registered_with_maxi_defaults() -> Result<()> {
    let registry = maxi_core::registry::global()?;
    let e = registry.get::<OptimizerKind>("SpectralAoExpGradOptimizer")?;
    assert_eq!(e.meta.name, "spectral_ao_exp_grad");
    let parsed = e.prepare(&Kwargs::new())?;
    assert_eq!(
        parsed.kwargs_json(),
        serde_json::json!({"l1": 0.5, "l2": 0.5, "eta": 1.0, "channels_first": null})
    );
    let bad = e.prepare(&Kwargs::from_serialize(&serde_json::json!({"eta": 0}))?);
    assert!(bad.is_err());
    // a 1-D variable is refused when the optimiser is built, naming the fix
    let start = ArrayD::zeros(IxDyn(&[5]));
    let bounds = bounds_of(LO, HI, 5);
    let err = parsed
        .build(&OptimizerContext {
            start: start.view(),
            bounds: &bounds,
        })
        .err()
        .expect("1-D accepted");
    assert!(err.to_string().contains("use ao_exp_grad"), "{err}");
    Ok(())
}

#[test]
fn svd_recomposes_rank_deficient_matrices() {
    // nalgebra's SVD with eps = f64::EPSILON returns σ₁ = 1.407 for this rank-1 matrix whose
    // only singular value is 1.2; the tolerance used here (5ε) gives the right answer.
    for s in [
        [1.2, 0.0, 0.0],
        [3.0, 1.0, 0.0],
        [3.0, 1.0, 0.2],
        [0.0, 0.0, 0.0],
    ] {
        let m = low_rank(s);
        let (u, sigma, v_t) = svd(m.view()).expect("svd");
        let err = (&compose(u, &sigma, &v_t) - &m)
            .iter()
            .fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(err <= 1e-14, "σ = {s:?}: recomposed with error {err}");
        let mut got = sigma.clone();
        got.sort_by(|a, b| b.total_cmp(a));
        for (g, w) in got.iter().zip(s) {
            assert!((g - w).abs() <= 1e-14, "σ = {s:?}: got {got:?}");
        }
    }
}
