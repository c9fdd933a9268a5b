//! Framework overhead of one URV + AO-ExpGrad update at d = 784, q = 100 with a trivial
//! linear model (10 classes): everything but real inference.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use maxi::ndarray::{Array2, ArrayD, ArrayViewD, IxDyn};
use maxi::registry::{GradientContext, LossContext, OptimizerContext};
use maxi::serde_json::json;
use maxi::{Kwargs, Model, Problem, model_fn, registry, rng_from_seed};

fn linear() -> Arc<dyn Model> {
    let w = Array2::from_shape_fn((784, 10), |(i, j)| {
        ((i * 10 + j) as f64 * 0.37).sin() * 0.01
    });
    model_fn("linear", move |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        let flat = b.to_shape((n, 784)).expect("shape");
        flat.dot(&w).into_dyn()
    })
}

fn bench_step(c: &mut Criterion) {
    let reg = registry::global().expect("registry");
    let x = ArrayD::from_shape_fn(IxDyn(&[28, 28, 1]), |i| {
        ((i[0] * 28 + i[1]) as f64 * 0.1).sin() * 0.5
    });
    let model = linear();
    let resolver = Kwargs::new().resolver();
    let build_loss = || {
        let cem = reg.get::<maxi::LossKind>("cem").expect("cem");
        let kw = cem
            .prepare(
                &Kwargs::try_from(json!({"mode": "PP", "c": 1.0, "no_info_val": -0.5}))
                    .expect("kw"),
            )
            .expect("kwargs");
        kw.build(&LossContext {
            x: x.view(),
            model: model.clone(),
            models: &resolver,
            space: std::sync::Arc::new(maxi::Identity::new(x.shape())),
            seed: 0,
        })
        .expect("loss")
    };
    let loss = build_loss();
    let start = loss.start();
    let bounds = loss.bounds().clone();
    let problem = Problem::identity(loss, &[28, 28, 1]);
    let urv = reg.get::<maxi::GradientKind>("urv").expect("urv");
    let ukw = urv
        .prepare(&Kwargs::try_from(json!({"sample_num": 100})).expect("kw"))
        .expect("kwargs");
    let mut gradient = ukw
        .build(&GradientContext {
            shape: &[28, 28, 1],
        })
        .expect("urv");
    let ao = reg.get::<maxi::OptimizerKind>("ao_exp_grad").expect("ao");
    let okw = ao
        .prepare(&Kwargs::try_from(json!({"l1": 0.1, "l2": 0.0})).expect("kw"))
        .expect("kwargs");
    let mut optimizer = okw
        .build(&OptimizerContext {
            start: start.view(),
            bounds: &bounds,
        })
        .expect("ao");
    let mut rng = rng_from_seed(0);
    c.bench_function("urv_q100_ao_exp_grad_step_d784_linear", |b| {
        b.iter(|| {
            maxi::step_once(&problem, gradient.as_mut(), optimizer.as_mut(), &mut rng)
                .expect("step")
        })
    });
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
