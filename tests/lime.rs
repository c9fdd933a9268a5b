//! LIME end to end: the exact gradient against URV's estimate, and a model that is exactly
//! linear in the segments, whose coefficients the optimiser recovers.

use std::sync::Arc;

use maxi::ndarray::{ArrayD, ArrayViewD, Axis, Ix3, IxDyn};
use maxi::serde_json::json;
use maxi::{
    ExplanationGenerator, GradientContext, GradientKind, Kwargs, LossContext, LossKind, Model,
    Problem, model_fn, registry,
};

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

const C: [f64; 4] = [0.4, -0.2, 0.9, 0.1];

/// 8×8 RGB; class 1 scores `0.3 + Σ_s C_s · mean(quadrant s)` (quadrants = grid cells of 4).
fn linear_in_quadrants() -> Arc<dyn Model> {
    model_fn("linear_in_quadrants", |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        let mut out = ArrayD::zeros(IxDyn(&[n, 2]));
        for (i, item) in b.axis_iter(Axis(0)).enumerate() {
            let item = item.into_dimensionality::<Ix3>().expect("[H, W, C]");
            let mut s = 0.3;
            for ((r, c, _), v) in item.indexed_iter() {
                s += C[(r / 4) * 2 + c / 4] * v / 48.0;
            }
            out[[i, 1]] = s;
        }
        out
    })
}

fn ones() -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(&[8, 8, 3]), 1.0)
}

fn lime_generator(gradient: &str, seed: u64) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("LimeLoss", kw(json!({"n_samples": 60})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.0, "l2": 0.0, "eta": 2.0})))
        .gradient(gradient, kw(json!({})))
        .segmentation("grid", kw(json!({"cell_size": 4})))
        .num_iter(300)
        .seed(seed)
        .build()
        .expect("generator")
}

#[test]
fn lime_recovers_the_coefficients_of_a_model_linear_in_the_segments() {
    let model = Arc::new(maxi::CountingModel::new(linear_in_quadrants()));
    let e = lime_generator("LimeGradient", 4)
        .run(ones().view(), model.clone())
        .expect("run");
    let w = &e.outcome.variable;
    for (s, c) in C.iter().enumerate() {
        assert!((w[s] - c).abs() < 1e-3, "weights {w} vs {C:?}");
    }
    // the samples are the only model rows (plus the generator's own check of the input)
    assert_eq!(e.model.rows, 60);
    assert_eq!(e.description.label, "LIME");
    // the candidate paints each segment's weight on its pixels
    assert!((e.outcome.candidate[[6, 1, 0]] - w[2]).abs() < 1e-15);
}

#[test]
fn lime_is_deterministic() {
    let bits = |seed| {
        let e = lime_generator("lime", seed)
            .run(ones().view(), linear_in_quadrants())
            .expect("run");
        e.history
            .iter()
            .map(|r| r.objective.to_bits())
            .chain(e.outcome.variable.iter().map(|v| v.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(9), bits(9));
}

#[test]
fn exact_gradient_agrees_with_the_urv_estimate() {
    // a non-linear model: the surrogate does not fit exactly, the gradient is not zero
    let model = model_fn("wavy", |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        let mut out = ArrayD::zeros(IxDyn(&[n, 2]));
        for (i, item) in b.axis_iter(Axis(0)).enumerate() {
            let s: f64 = item
                .iter()
                .enumerate()
                .map(|(j, v)| (j as f64 * 0.05).sin() * v)
                .sum();
            out[[i, 1]] = (s / 20.0).tanh();
        }
        out
    });
    let reg = registry::global().expect("registry");
    let x = ones();
    let labels =
        maxi::ndarray::Array2::from_shape_fn((8, 8), |(r, c)| ((r / 4) * 2 + c / 4) as i32);
    let seg = maxi::Segmentation::new(labels, 8, 8, "grid").expect("segmentation");
    let space: Arc<dyn maxi::VariableSpace> =
        Arc::new(maxi::SegmentSpace::new(seg, x.shape()).expect("space"));
    let loss = reg
        .get::<LossKind>("lime")
        .expect("lime")
        .prepare(&kw(json!({"n_samples": 200, "sampling": "bernoulli"})))
        .expect("kwargs")
        .build(&LossContext {
            x: x.view(),
            model,
            models: &Kwargs::new().resolver(),
            space: space.clone(),
            seed: 1,
        })
        .expect("loss");
    let problem = Problem::new(loss, space);
    let w = ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.2, -0.1, 0.3, 0.0]).expect("w");
    let mut rng = maxi::rng_from_seed(2);
    let exact = reg
        .get::<GradientKind>("lime")
        .expect("lime gradient")
        .prepare(&Kwargs::new())
        .expect("kwargs")
        .build(&GradientContext { shape: &[4] })
        .expect("build")
        .gradient_at(&problem, w.view(), &mut rng)
        .expect("exact");
    let urv = reg
        .get::<GradientKind>("urv")
        .expect("urv")
        .prepare(&kw(json!({"sample_num": 20_000, "mu": 1e-4})))
        .expect("kwargs")
        .build(&GradientContext { shape: &[4] })
        .expect("build")
        .gradient_at(&problem, w.view(), &mut rng)
        .expect("urv");
    let norm = |a: &ArrayD<f64>| a.mapv(|v| v * v).sum().sqrt();
    let rel = norm(&(&urv - &exact)) / norm(&exact);
    assert!(norm(&exact) > 1e-3, "{exact}");
    assert!(rel < 0.05, "exact {exact} urv {urv} relative error {rel}");
}
