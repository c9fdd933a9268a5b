//! The generator end to end with closure models: gradients, records, determinism, reuse.

use maxi::ndarray::{Array1, ArrayD, Axis};
use maxi::registry::{GradientContext, LossContext};
use maxi::serde_json::json;
use maxi::{ExplanationGenerator, Kwargs, Problem, registry};
use maxi_tests::{input, linear_model, predict_class};

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

#[test]
fn urv_estimate_of_linear_cem_loss_converges_to_the_analytic_gradient() {
    // PN loss on a linear model, away from the hinge: L(δ) = c·(s_t − s_j)(x + δ) with
    // j the runner-up, so ∇L = c·(W_t − W_j).
    let shape = [3, 4];
    let (model, w) = linear_model(&shape, 5, 1);
    let x = input(&shape, 2);
    let t = predict_class(model.as_ref(), x.view());
    let scores =
        w.dot(&x.to_shape(12).expect("flat")) + Array1::from_shape_fn(5, |c| c as f64 * 0.1);
    let j = (0..5)
        .filter(|&c| c != t)
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .expect("runner-up");
    let c = 2.0;
    let exact = (&w.row(t) - &w.row(j)) * c;

    let reg = registry::global().expect("registry");
    let cem = reg.get::<maxi::LossKind>("cem").expect("cem");
    let parsed = cem
        .prepare(&kw(json!({"mode": "PN", "c": c, "K": 1000.0})))
        .expect("kwargs");
    let resolver = Kwargs::new().resolver();
    let loss = parsed
        .build(&LossContext {
            x: x.view(),
            model: model.clone(),
            models: &resolver,
            space: std::sync::Arc::new(maxi::Identity::new(x.shape())),
            seed: 0,
        })
        .expect("loss");
    let problem = Problem::identity(loss, &shape);
    let urv = reg.get::<maxi::GradientKind>("urv").expect("urv");
    let y = ArrayD::<f64>::zeros(&shape[..]);
    let mut errors = Vec::new();
    for samples in [50, 1_000, 20_000] {
        let parsed = urv
            .prepare(&kw(json!({"sample_num": samples, "mu": 1e-3})))
            .expect("kwargs");
        let mut g = parsed
            .build(&GradientContext { shape: &shape })
            .expect("urv");
        let est = g
            .gradient_at(&problem, y.view(), &mut maxi::rng_from_seed(11))
            .expect("gradient");
        let est = est.to_shape(12).expect("flat").to_owned();
        let err = (&est - &exact).mapv(|v| v * v).sum().sqrt() / exact.mapv(|v| v * v).sum().sqrt();
        errors.push(err);
    }
    assert!(errors[2] < 0.05, "relative errors {errors:?}");
    assert!(
        errors[2] < errors[1] && errors[1] < errors[0],
        "relative errors {errors:?}"
    );
}

fn pp_generator(seed: u64, num_iter: usize) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 1.0, "K": 2.0})))
        .optimizer(
            "ao_exp_grad",
            kw(json!({"l1": 0.05, "l2": 0.0, "eta": 1.0})),
        )
        .gradient("urv", kw(json!({"sample_num": 20})))
        .num_iter(num_iter)
        .save_freq(4)
        .seed(seed)
        .metadata("case", "linear")
        .build()
        .expect("generator")
}

#[test]
fn records_savepoints_and_model_accounting_follow_the_rules() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let g = pp_generator(1, 10);
    let e = g.run(x.view(), model).expect("run");
    // savepoints after update 1, every 4th and the last
    assert_eq!(
        e.savepoints.keys().copied().collect::<Vec<_>>(),
        vec![1, 4, 8, 10]
    );
    assert_eq!(e.history.len(), 10);
    // one row for the original class, 1 + q rows per update, one for the last record
    assert_eq!(e.model.rows, 1 + 10 * 21 + 1);
    assert_eq!(e.model.calls, 1 + 10 + 1);
    for (i, r) in e.history.iter().enumerate() {
        assert_eq!(r.iteration, i + 1);
        // every record counts the rows up to and including its update's gradient, the last
        // one too (the row evaluating the final iterate is in the total only)
        assert_eq!(r.model_rows, 1 + (i as u64 + 1) * 21);
        assert_eq!(r.model_calls, 1 + i as u64 + 1);
        // objective = L + l1·‖y‖₁ (l2 = 0)
        assert!((r.objective - (r.attack_loss + 0.05 * r.l1_norm)).abs() < 1e-12);
    }
    // the final candidate lies between 0 (no information) and x
    let last = e.final_candidate().expect("final");
    for (v, xv) in last.iter().zip(x.iter()) {
        assert!(*v >= xv.min(0.0) - 1e-12 && *v <= xv.max(0.0) + 1e-12);
    }
    // the record's attack loss is the CEM loss at the last savepoint
    let last_l1: f64 = last.iter().map(|v| v.abs()).sum();
    assert!((e.history[9].l1_norm - last_l1).abs() < 1e-9);
    assert_eq!(e.metadata["case"], "linear");
    assert_eq!(e.config["gradient"]["sample_num"], 20);
    assert_eq!(e.config["gradient"]["name"], "urv");
}

#[test]
fn same_seed_gives_identical_results_and_runs_share_no_state() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let g = pp_generator(7, 12);
    let a = g.run(x.view(), model.clone()).expect("run");
    let b = g
        .run(x.view(), model.clone())
        .expect("second run on the same generator");
    assert_eq!(a.savepoints, b.savepoints);
    assert_eq!(a.history, b.history);
    let c = pp_generator(7, 12)
        .run(x.view(), model.clone())
        .expect("run");
    assert_eq!(a.savepoints, c.savepoints);
    let d = pp_generator(8, 12).run(x.view(), model).expect("run");
    assert_ne!(a.savepoints, d.savepoints);
}

#[test]
fn results_do_not_depend_on_the_thread_pool() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let g = pp_generator(3, 8);
    let mut results = Vec::new();
    for threads in [1, 2] {
        let m = model.clone();
        let xv = x.clone();
        let e = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let m = m.clone();
                    let xv = xv.clone();
                    let g = &g;
                    s.spawn(move || g.run(xv.view(), m).expect("run"))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect::<Vec<_>>()
        });
        results.extend(e);
    }
    for r in &results[1..] {
        assert_eq!(r.savepoints, results[0].savepoints);
    }
}

#[test]
fn pp_on_a_linear_model_keeps_the_class_with_fewer_entries() {
    let shape = [4, 4];
    let (model, _) = linear_model(&shape, 3, 5);
    let x = input(&shape, 4);
    let t = predict_class(model.as_ref(), x.view());
    let g = ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 10.0, "K": 0.5})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.5, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 50})))
        .num_iter(300)
        .build()
        .expect("generator");
    let e = g.run(x.view(), model.clone()).expect("run");
    let pp = e.final_candidate().expect("pp");
    assert_eq!(predict_class(model.as_ref(), pp.view()), t);
    let l1_pp: f64 = pp.iter().map(|v| v.abs()).sum();
    let l1_x: f64 = x.iter().map(|v| v.abs()).sum();
    assert!(l1_pp < 0.8 * l1_x, "PP l1 {l1_pp} vs input {l1_x}");
    let _ = Axis(0);
}

#[test]
fn model_kwargs_given_as_paths_are_opened_once_when_the_generator_is_built() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    // an "autoencoder" that halves its input: the AE term is γ·‖z − z/2‖²
    let opened = Arc::new(AtomicUsize::new(0));
    let seen = opened.clone();
    let loader: maxi::ModelLoader = Arc::new(move |path: &std::path::Path| {
        seen.fetch_add(1, Ordering::SeqCst);
        assert!(path.ends_with("ae.onnx"), "{}", path.display());
        Ok(maxi::model_fn(
            "half",
            |b: maxi::ndarray::ArrayViewD<'_, f64>| b.mapv(|v| v / 2.0),
        ))
    });
    let builder = || {
        ExplanationGenerator::builder()
            .loss(
                "cem",
                kw(json!({"mode": "PP", "c": 0.0, "gamma": 2.0, "AE": "ae.onnx"})),
            )
            .optimizer("ao_exp_grad", kw(json!({"l1": 0.05, "l2": 0.0})))
            .gradient("urv", kw(json!({"sample_num": 4})))
            .num_iter(3)
    };
    let g = builder().model_loader(loader).build().expect("generator");
    assert_eq!(opened.load(Ordering::SeqCst), 1, "opened when built");
    let a = g.run(x.view(), model.clone()).expect("run");
    let b = g.run(x.view(), model.clone()).expect("run");
    assert_eq!(opened.load(Ordering::SeqCst), 1, "not opened again per run");
    assert_eq!(a.history, b.history);
    // with c = 0 the loss is the AE term alone: γ·‖z − z/2‖² = ‖z‖²/2 at the final iterate
    let r = a.history.last().expect("record");
    assert!(r.l2_norm_sq > 0.0);
    assert!((r.attack_loss - 0.5 * r.l2_norm_sq).abs() < 1e-12, "{r:?}");
    // the default loader opens files by extension: a missing one fails at build, naming `AE`
    let err = builder().build().expect_err("missing AE file");
    assert!(err.to_string().contains("kwarg `AE`"), "{err}");
}

#[test]
fn ada_exp_grad_takes_one_model_call_per_update() {
    // AdaExpGrad's gradient is at one point and its record at another: both ride in the
    // same batch (Request::also), so each update is one model call, not two
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let e = ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 1.0, "K": 2.0})))
        .optimizer("ada_exp_grad", kw(json!({"l1": 0.05})))
        .gradient("urv", kw(json!({"sample_num": 7})))
        .num_iter(6)
        .build()
        .expect("generator")
        .run(x.view(), model)
        .expect("run");
    assert_eq!(e.history.len(), 6);
    for (i, r) in e.history.iter().enumerate() {
        // the class check, then one call per update
        assert_eq!(r.model_calls, 1 + i as u64 + 1, "{r:?}");
    }
    // + the final iterate's evaluation (and any full-strength checks)
    assert!(e.model.calls > 1 + 6);
    // rows: 1 + 7 per gradient, plus the previous iterate when it differs from the query
    let rows: Vec<u64> = e.history.iter().map(|r| r.model_rows).collect();
    let steps: Vec<u64> = rows.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(rows[0], 1 + 8, "{rows:?}");
    assert!(steps.iter().all(|s| (8..=9).contains(s)), "{rows:?}");
    assert!(steps.contains(&9), "the record rides along: {rows:?}");
}
