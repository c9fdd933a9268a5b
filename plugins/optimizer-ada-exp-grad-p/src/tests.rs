use super::*;
use maxi_core::ndarray::IxDyn;
use maxi_core::{Estimate, Gradient, Kwargs, MaxiRng, Problem, Request, rng_from_seed, step_once};
use maxi_expgrad::testing::*;

fn valid(k: AdaExpGradPKwargs) -> Valid<AdaExpGradPKwargs> {
    Valid::check(k).expect("valid kwargs")
}

fn new(l1: f64, l2: f64, p: f64) -> AdaExpGradP {
    let start = ArrayD::zeros(IxDyn(&[5]));
    AdaExpGradP::new(
        &valid(AdaExpGradPKwargs { l1, l2, eta: p }),
        start.view(),
        &bounds_of(LO, HI, 5),
    )
    .expect("build")
}

fn run(opt: &mut dyn Optimizer, p: &Problem, grad: &mut dyn Gradient, steps: usize) -> ArrayD<f64> {
    let mut rng = rng_from_seed(0);
    let mut y = opt.iterate().to_owned();
    for _ in 0..steps {
        y = step_once(p, grad, opt, &mut rng).expect("step");
    }
    y
}

/// `Λ` and `x` after one step.
type Step = (f64, [f64; 5]);
/// `(l1, l2, p)` and the first four steps.
type Case = (f64, f64, f64, [Step; 4]);

#[test]
fn first_steps_match_maxis_formula() {
    // Λ and x after steps 1..4 of MAXi's AdaExpGradP.md on ½‖x − C‖² (start 0, box
    // [-0.8, 1.5]), computed with NumPy from ada_exp_grad_p.py (W(e^s) solved exactly).
    let cases: [Case; 2] = [
        (
            0.5,
            0.5,
            0.7,
            [
                (
                    0.4183092434884962,
                    [
                        1.1624925766749241,
                        -0.4985684354761524,
                        0.0,
                        0.0,
                        0.16994204057103474,
                    ],
                ),
                (
                    0.46697688179917635,
                    [1.5, -0.8, 0.0, 0.0, 0.3323197870238191],
                ),
                (
                    0.4675633509515164,
                    [1.5, -0.8, 0.0, 0.0, 0.42246724223485305],
                ),
                (
                    0.4676363703066943,
                    [1.5, -0.8, 0.0, 0.0, 0.4545503872128694],
                ),
            ],
        ),
        (
            0.1,
            0.0,
            2.0,
            [
                (
                    0.5444708461684883,
                    [
                        1.5,
                        -0.8,
                        0.04428055163203396,
                        -0.06997176151520064,
                        0.40083320478928663,
                    ],
                ),
                (
                    0.5696217344232974,
                    [
                        1.5,
                        -0.8,
                        0.08544141736279176,
                        -0.13979605691402078,
                        1.0089217937026094,
                    ],
                ),
                (
                    0.5715626546103187,
                    [
                        1.5,
                        -0.8,
                        0.12008782061153452,
                        -0.19883569819806513,
                        1.1241981270070203,
                    ],
                ),
                (
                    0.5720067798820215,
                    [
                        1.5,
                        -0.8,
                        0.14671654639254622,
                        -0.24129511644466994,
                        1.0925395959129982,
                    ],
                ),
            ],
        ),
    ];
    for (l1, l2, p, steps) in cases {
        let mut opt = new(l1, l2, p);
        let prob = problem(&C, LO, HI);
        let mut grad = Exact::default();
        for (i, (lambda, x)) in steps.iter().enumerate() {
            let got = run(&mut opt, &prob, &mut grad, 1);
            assert!(
                (opt.lambda() - lambda).abs() <= 1e-12 * lambda,
                "l1={l1} l2={l2} p={p} step {}: Λ = {} vs {lambda}",
                i + 1,
                opt.lambda()
            );
            for (a, b) in got.iter().zip(x) {
                assert!((a - b).abs() <= 1e-12, "step {}: x = {got} vs {x:?}", i + 1);
            }
        }
    }
}

#[test]
fn converges_on_elastic_net_box_problem() {
    for (l1, l2) in [(0.5, 0.5), (0.5, 0.0)] {
        let y_star = minimiser(&C, l1, l2, LO, HI);
        let mut opt = new(l1, l2, 1.0);
        let y = run(&mut opt, &problem(&C, LO, HI), &mut Exact::default(), 200);
        let err = y
            .iter()
            .zip(&y_star)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-12, "l2={l2}: |x − x*|∞ = {err}");
        assert_eq!((y[2], y[3]), (0.0, 0.0), "exact zeros: {y}");
    }
}

/// The exact gradient plus seeded N(0, 1) noise on every entry.
struct Noisy;

impl Gradient for Noisy {
    fn estimate(
        &mut self,
        problem: &Problem,
        request: &Request<'_>,
        rng: &mut MaxiRng,
    ) -> maxi_core::Result<Estimate> {
        let mut g = problem
            .analytic_gradient(request.at.view())
            .expect("analytic gradient")?;
        let mut z = vec![0.0f64; g.len()];
        maxi_directions::normal::fill_standard_normal(&mut z, rng);
        g.iter_mut().zip(&z).for_each(|(g, z)| *g += z);
        Ok(Estimate::new(g))
    }
}

#[test]
fn settles_under_gradient_noise() {
    // MAXi's asymmetric step (√Λ now, Λ next) makes the mixing weight shrink, so x averages
    // out the noise: within 0.05 of the minimiser after 10,000 noisy steps.
    let y_star = minimiser(&C, 0.5, 0.5, LO, HI);
    let mut opt = new(0.5, 0.5, 1.0);
    let y = run(&mut opt, &problem(&C, LO, HI), &mut Noisy, 10_000);
    let err = y
        .iter()
        .zip(&y_star)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 0.05, "|x − x*|∞ = {err} after 10,000 noisy steps");
}

#[test]
fn registered_with_maxi_name_and_defaults() -> maxi_core::Result<()> {
    let registry = maxi_core::registry::global()?;
    for name in ["ada_exp_grad_p", "AdaExpGradPOptimizer", "AdaExpGradP"] {
        assert_eq!(
            registry.get::<OptimizerKind>(name)?.meta.name,
            "ada_exp_grad_p"
        );
    }
    let e = registry.get::<OptimizerKind>("ada_exp_grad_p")?;
    assert_eq!(e.meta.accepted_kwargs(), ["eta", "l1", "l2", "p"]);
    let parsed = e.prepare(&Kwargs::new())?;
    assert_eq!(
        parsed.kwargs_json(),
        serde_json::json!({"l1": 0.5, "l2": 0.5, "eta": 1.0})
    );
    let parsed = e.prepare(&Kwargs::from_serialize(&serde_json::json!({"p": 2.0}))?)?;
    assert_eq!(parsed.kwargs_json()["eta"], 2.0);
    let err = e
        .prepare(&Kwargs::from_serialize(&serde_json::json!({"eta": -1.0}))?)
        .err()
        .expect("negative p accepted");
    assert!(err.to_string().contains("eta"), "{err}");
    Ok(())
}
