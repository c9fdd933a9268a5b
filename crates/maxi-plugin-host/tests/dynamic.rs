//! The example plugin built as a `cdylib`, loaded over the C ABI: registered by name, and its
//! estimates behave like the built-in non-batched URV's.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use common::{
    SquaredNorm, example_plugin, gradient, input, kw, linear_model, point, private_copy, problem,
    scratch_dir,
};
use maxi_core::Request;
use maxi_core::ndarray::{ArrayD, IxDyn};
use maxi_core::{ExplanationGenerator, Kind, MaxiError, registry, rng_from_seed};
use maxi_plugin_host::{load_plugin, loaded_plugins, plugin_paths};
use serde_json::json;

// the built-ins the plugin is compared with and runs next to
use maxi_gradient_urv as _;
use maxi_loss_cem as _;
use maxi_optimizer_ao_exp_grad as _;

/// The example plugin, loaded once.
fn loaded() -> &'static std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = example_plugin();
        let names = load_plugin(&path).expect("load the example plugin");
        assert_eq!(names, vec!["urv_tutorial".to_string()]);
        path
    })
}

fn norm(a: &ArrayD<f64>) -> f64 {
    a.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[test]
fn urv_tutorial_is_registered_next_to_the_built_ins() {
    let path = loaded();
    let reg = registry::global().expect("registry");
    let c = reg
        .get::<maxi_core::GradientKind>("urv_tutorial")
        .expect("urv_tutorial");
    assert_eq!(c.meta.origin, format!("plugin {}", path.display()));
    assert!(c.meta.doc.contains("seed tutorial"), "{}", c.meta.doc);
    assert_eq!(c.meta.accepted_kwargs(), vec!["mu", "num_iter"]);
    assert_eq!(
        c.meta.schema["properties"]["num_iter"]["default"],
        json!(100),
        "{}",
        c.meta.schema
    );
    // the built-ins are still there
    assert!(reg.get::<maxi_core::GradientKind>("urv").is_ok());
    let info = loaded_plugins()
        .into_iter()
        .find(|p| &p.path == path)
        .expect("listed as loaded");
    assert_eq!(info.name, "maxi-example-gradient-plugin");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.components, vec!["urv_tutorial"]);
}

#[test]
fn loading_the_same_file_again_changes_nothing() {
    let path = loaded();
    assert_eq!(
        load_plugin(path).expect("second load"),
        vec!["urv_tutorial"]
    );
    let count = registry::global()
        .expect("registry")
        .metas(Some(Kind::Gradient))
        .iter()
        .filter(|c| c.name == "urv_tutorial")
        .count();
    assert_eq!(count, 1);
}

#[test]
fn another_file_with_the_same_component_name_is_a_duplicate() {
    let first = loaded();
    let copy = private_copy(first, "example-copy");
    match load_plugin(&copy) {
        Err(e @ MaxiError::DuplicateComponent { .. }) => {
            assert!(e.is_usage());
            let text = e.to_string();
            assert!(
                text.contains("`urv_tutorial`")
                    && text.contains(&format!("plugin {}", first.display()))
                    && text.contains(&format!("plugin {}", copy.display())),
                "{text}"
            );
        }
        other => panic!("expected a duplicate name, got {other:?}"),
    }
}

#[test]
fn one_batched_loss_call_of_one_plus_q_rows_per_gradient() {
    loaded();
    let shape = [2, 5];
    let y = point(&shape);
    let loss = SquaredNorm::new(&shape);
    let calls = loss.calls.clone();
    let p = problem(loss, &shape);
    let mut g = gradient("urv_tutorial", json!({"num_iter": 20}), &shape).expect("gradient");
    let est = g
        .estimate(&p, &Request::at(y.view()), &mut rng_from_seed(1))
        .expect("estimate");
    assert_eq!(est.gradient.shape(), &shape);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one batched callback");
    assert_eq!(p.loss_rows(), 21);
    // the base value crossed back with the gradient, for the step record
    assert_eq!(est.at.map(|a| a.value), Some(y.iter().map(|v| v * v).sum()));
}

/// `(mean estimate, mean ‖g − 2y‖²)` over `n` successive calls at `y` on `‖y‖²`.
fn statistics(
    name: &str,
    kwargs: serde_json::Value,
    y: &ArrayD<f64>,
    n: usize,
) -> (ArrayD<f64>, f64) {
    let shape = y.shape().to_vec();
    let mut g = gradient(name, kwargs, &shape).expect("gradient");
    let p = problem(SquaredNorm::new(&shape), &shape);
    let exact = y * 2.0;
    let mut rng = rng_from_seed(2024);
    let mut sum = ArrayD::<f64>::zeros(IxDyn(&shape));
    let mut spread = 0.0;
    for _ in 0..n {
        let est = g.gradient_at(&p, y.view(), &mut rng).expect("estimate");
        spread += norm(&(&est - &exact)).powi(2);
        sum += &est;
    }
    (sum / n as f64, spread / n as f64)
}

#[test]
fn estimates_have_the_statistics_of_the_built_in_non_batched_urv() {
    loaded();
    let shape = [2, 5];
    let y = point(&shape);
    let exact = &y * 2.0;
    let n = 400;
    let (mean_p, spread_p) = statistics("urv_tutorial", json!({"num_iter": 20}), &y, n);
    let (mean_b, spread_b) =
        statistics("urv", json!({"batch_mode": false, "sample_num": 20}), &y, n);
    // unbiased on a quadratic: the means converge to the exact gradient 2y
    let err_p = norm(&(&mean_p - &exact)) / norm(&exact);
    let err_b = norm(&(&mean_b - &exact)) / norm(&exact);
    assert!(err_p < 0.15, "plugin mean off by {err_p}");
    assert!(err_b < 0.15, "built-in mean off by {err_b}");
    // single estimates scatter, and equally for both
    assert!(spread_p > 0.1 * norm(&exact).powi(2), "spread {spread_p}");
    let ratio = spread_p / spread_b;
    assert!(
        (0.75..1.33).contains(&ratio),
        "spread plugin {spread_p} vs built-in {spread_b}"
    );
}

#[test]
fn mu_shrinks_with_the_call_counter_like_the_built_in() {
    // At y = 0 on ‖y‖², g_t = d·μ_t/q · Σ u_j, so E‖g_t‖² = d²μ_t²/q = d/(t·q) with
    // μ_t = 1/√t/√d: t·‖g_t‖² averages d/q for both estimators.
    loaded();
    let shape = [10];
    let (d, q) = (10.0, 20.0);
    let y = ArrayD::<f64>::zeros(IxDyn(&shape));
    for (name, kwargs) in [
        ("urv_tutorial", json!({"num_iter": 20})),
        ("urv", json!({"batch_mode": false, "sample_num": 20})),
    ] {
        let mut g = gradient(name, kwargs, &shape).expect("gradient");
        let p = problem(SquaredNorm::new(&shape), &shape);
        let mut rng = rng_from_seed(5);
        let n = 400;
        let mut scaled = 0.0;
        for t in 1..=n {
            let est = g.gradient_at(&p, y.view(), &mut rng).expect("estimate");
            scaled += t as f64 * norm(&est).powi(2);
        }
        let mean = scaled / n as f64;
        assert!(
            (mean - d / q).abs() < 0.1 * d / q,
            "{name}: mean t·‖g_t‖² = {mean}, expected {}",
            d / q
        );
    }
}

#[test]
fn same_seed_same_estimates_different_seed_different() {
    loaded();
    let shape = [6];
    let y = point(&shape);
    let run = |seed| {
        let p = problem(SquaredNorm::new(&shape), &shape);
        let mut g = gradient("urv_tutorial", json!({"num_iter": 5}), &shape).expect("gradient");
        let mut rng = rng_from_seed(seed);
        (0..3)
            .map(|_| g.gradient_at(&p, y.view(), &mut rng).expect("estimate"))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

fn generator(gradient: &str, kwargs: serde_json::Value, seed: u64) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PN", "c": 1.0, "K": 2.0})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.05})))
        .gradient(gradient, kw(kwargs))
        .num_iter(10)
        .seed(seed)
        .build()
        .expect("generator")
}

#[test]
fn pipeline_with_the_plugin_costs_what_the_built_in_costs_and_is_reproducible() {
    loaded();
    let shape = [2, 5];
    let x = input(&shape);
    let model = linear_model(&shape, 3);
    let plugin = generator("urv_tutorial", json!({"num_iter": 20}), 1);
    let a = plugin.run(x.view(), model.clone()).expect("run");
    assert_eq!(a.history.len(), 10);
    assert!(a.history.iter().all(|r| r.objective.is_finite()));
    assert_eq!(
        a.config["gradient"],
        json!({"name": "urv_tutorial", "mu": null, "num_iter": 20})
    );
    // the base value of every estimate is reused for the step record: same cost as the built-in
    let builtin = generator("urv", json!({"batch_mode": false, "sample_num": 20}), 1)
        .run(x.view(), model.clone())
        .expect("run");
    assert_eq!(a.model.rows, builtin.model.rows);
    assert_eq!(a.model.calls, builtin.model.calls);
    assert_eq!(a.loss_rows, builtin.loss_rows);
    // reproducible from the run's seed
    let b = plugin.run(x.view(), model.clone()).expect("run");
    assert_eq!(a.savepoints, b.savepoints);
    assert_eq!(a.history, b.history);
    let c = generator("urv_tutorial", json!({"num_iter": 20}), 2)
        .run(x.view(), model)
        .expect("run");
    assert_ne!(a.savepoints, c.savepoints);
}

#[test]
fn kwargs_are_checked_by_the_plugin_when_the_pipeline_is_built() {
    let path = loaded().display().to_string();
    let build = |kwargs| {
        ExplanationGenerator::builder()
            .loss("cem", kw(json!({"mode": "PN"})))
            .optimizer("ao_exp_grad", kw(json!({})))
            .gradient("urv_tutorial", kw(kwargs))
            .build()
    };
    match build(json!({"sample_num": 20})) {
        Err(MaxiError::UnknownKwarg { key, accepted, .. }) => {
            assert_eq!(key, "sample_num");
            assert_eq!(accepted, vec!["mu", "num_iter"]);
        }
        other => panic!("expected an unknown kwarg, got {other:?}"),
    }
    match build(json!({"mu": -1.0})) {
        Err(e @ MaxiError::InvalidKwarg { .. }) => {
            assert!(e.is_usage());
            let text = e.to_string();
            assert!(
                text.contains("kwarg `mu`")
                    && text.contains("positive number or null")
                    && text.contains(&path),
                "{text}"
            );
        }
        other => panic!("expected an invalid kwarg, got {other:?}"),
    }
    match build(json!({"num_iter": "many"})) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "num_iter"),
        other => panic!("expected an invalid kwarg, got {other:?}"),
    }
}

#[test]
fn plugin_path_lists_expand_files_and_folders() {
    let dir = scratch_dir().join(format!("plugin-path-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nested.so")).expect("folder");
    for f in ["b.so", "a.so", "notes.txt"] {
        std::fs::write(dir.join(f), "").expect("file");
    }
    let file = dir.join("notes.txt");
    let spec = format!("{}::{}", dir.display(), file.display());
    let paths = plugin_paths(spec.as_ref()).expect("paths");
    assert_eq!(paths, vec![dir.join("a.so"), dir.join("b.so"), file]);
    assert!(plugin_paths("".as_ref()).expect("empty").is_empty());
    let missing = dir.join("missing");
    let spec = format!("{}:{}", dir.display(), missing.display());
    match plugin_paths(spec.as_ref()) {
        Err(e @ MaxiError::Plugin { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&missing.display().to_string()) && text.contains("MAXI_PLUGIN_PATH"),
                "{text}"
            );
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
}
