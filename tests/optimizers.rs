//! Optimisers checked against each other, built by name through the registry (component crates
//! do not depend on each other, so such comparisons live here).

use maxi::ndarray::{ArrayD, IxDyn, arr1};
use maxi::registry::OptimizerContext;
use maxi::serde_json::json;
use maxi::{Bounds, Kwargs, Optimizer, OptimizerKind, Problem, registry, rng_from_seed, step_once};
use maxi_expgrad::testing::{Exact, Quadratic, bounds_of};

const DIAG: [f64; 4] = [3.0, -2.0, 0.3, -0.4];
const LO: f64 = -0.8;
const HI: f64 = 1.5;

fn optimizer(
    name: &str,
    kwargs: maxi::serde_json::Value,
    start: &ArrayD<f64>,
    bounds: &Bounds,
) -> Box<dyn Optimizer> {
    registry::global()
        .expect("registry")
        .get::<OptimizerKind>(name)
        .expect("registered")
        .prepare(&Kwargs::try_from(kwargs).expect("kwargs"))
        .expect("valid kwargs")
        .build(&OptimizerContext {
            start: start.view(),
            bounds,
        })
        .expect("build")
}

/// `½‖V − C‖²` over variables shaped like `c`, in `bounds`, with its exact gradient.
fn problem(c: ArrayD<f64>, bounds: Bounds) -> Problem {
    let shape = c.shape().to_vec();
    Problem::identity(Box::new(Quadratic { c, bounds }), &shape)
}

fn one_step(opt: &mut dyn Optimizer, p: &Problem) -> ArrayD<f64> {
    let mut grad = Exact::default();
    step_once(p, &mut grad, opt, &mut rng_from_seed(0)).expect("step")
}

#[test]
fn spectral_ao_exp_grad_on_a_diagonal_matrix_is_ao_exp_grad_on_its_diagonal() {
    let n = DIAG.len();
    let box_m = Bounds::new(
        ArrayD::from_elem(IxDyn(&[n, n]), LO),
        ArrayD::from_elem(IxDyn(&[n, n]), HI),
    )
    .expect("bounds");
    for (l1, l2) in [(0.5, 0.5), (0.5, 0.0), (0.0, 2.0)] {
        let c = ArrayD::from_shape_fn(
            IxDyn(&[n, n]),
            |i| {
                if i[0] == i[1] { DIAG[i[0]] } else { 0.0 }
            },
        );
        let p_mat = problem(c, box_m.clone());
        let p_vec = problem(arr1(&DIAG).into_dyn(), bounds_of(LO, HI, n));
        let kw = json!({"l1": l1, "l2": l2, "eta": 1.0});
        let mut spectral = optimizer(
            "spectral_ao_exp_grad",
            kw.clone(),
            &ArrayD::zeros(IxDyn(&[n, n])),
            &box_m,
        );
        let mut vector = optimizer(
            "ao_exp_grad",
            kw,
            &ArrayD::zeros(IxDyn(&[n])),
            &bounds_of(LO, HI, n),
        );
        for step in 1..=60 {
            let ym = one_step(spectral.as_mut(), &p_mat);
            let yv = one_step(vector.as_mut(), &p_vec);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { yv[[i]] } else { 0.0 };
                    let got = ym[[i, j]];
                    assert!(
                        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                        "l1={l1} l2={l2} step {step}: y[{i},{j}] = {got}, vector step gives {want}"
                    );
                }
            }
        }
    }
}
