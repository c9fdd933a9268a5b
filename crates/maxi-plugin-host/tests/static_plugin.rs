//! The example plugin linked statically (feature `static`): it registers `urv_tutorial` through
//! inventory like a built-in, and the one line below is all a host needs.

mod common;

use common::{SquaredNorm, example_plugin, input, kw, linear_model, point, problem};
use maxi_core::registry::GradientContext;
use maxi_core::{ExplanationGenerator, Gradient, MaxiError, Valid, registry, rng_from_seed};
use maxi_example_gradient_plugin::{UrvTutorial, UrvTutorialKwargs};
use maxi_plugin_host::{load_plugin, plugin_components};
use rand::Rng;
use serde_json::json;

// the built-ins of the pipeline
use maxi_gradient_urv as _;
use maxi_loss_cem as _;
use maxi_optimizer_ao_exp_grad as _;

fn generator(gradient: &str, kwargs: serde_json::Value) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PN", "c": 1.0, "K": 2.0})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.05})))
        .gradient(gradient, kw(kwargs))
        .num_iter(8)
        .seed(4)
        .build()
        .expect("generator")
}

#[test]
fn registers_by_name_through_inventory() {
    let c = registry::global()
        .expect("registry")
        .get::<maxi_core::GradientKind>("urv_tutorial")
        .expect("urv_tutorial");
    assert_eq!(c.meta.origin, "crate maxi-example-gradient-plugin");
    assert_eq!(c.meta.accepted_kwargs(), vec!["mu", "num_iter"]);
}

#[test]
fn runs_a_pipeline_by_name() {
    let shape = [3, 3];
    let x = input(&shape);
    let model = linear_model(&shape, 4);
    let g = generator("urv_tutorial", json!({"num_iter": 16}));
    let a = g.run(x.view(), model.clone()).expect("run");
    assert_eq!(a.history.len(), 8);
    assert!(a.history.iter().all(|r| r.objective.is_finite()));
    assert_eq!(a.config["gradient"]["name"], "urv_tutorial");
    // the same cost as the built-in non-batched URV: 1 + q rows per estimate, base reused
    let b = generator("urv", json!({"batch_mode": false, "sample_num": 16}))
        .run(x.view(), model.clone())
        .expect("run");
    // (the model rows after the run, the final checks of the candidates, depend on where each
    // run ended, so only the rows inside the loop are compared)
    let rows =
        |r: &maxi_core::Explanation| r.history.iter().map(|s| s.model_rows).collect::<Vec<_>>();
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(a.loss_rows, b.loss_rows);
    assert_eq!(g.run(x.view(), model).expect("run").history, a.history);
}

#[test]
fn the_dynamic_build_of_the_same_plugin_collides_by_name() {
    let path = example_plugin();
    match load_plugin(&path) {
        Err(MaxiError::DuplicateComponent {
            name,
            first,
            second,
            ..
        }) => {
            assert_eq!(name, "urv_tutorial");
            assert_eq!(first, "crate maxi-example-gradient-plugin");
            assert_eq!(second, format!("plugin {}", path.display()));
        }
        other => panic!("expected a duplicate name, got {other:?}"),
    }
}

#[test]
fn the_dynamic_build_computes_exactly_what_the_static_build_computes() {
    // Over the ABI the host hands the plugin one u64 drawn from the run's generator, and the
    // plugin seeds its own generator with it: the same code linked here, given that generator,
    // must produce the same estimates bit for bit (and the same μ schedule).
    let path = example_plugin();
    let components = plugin_components(&path).expect("components");
    assert_eq!(components.len(), 1);
    let c = &components[0];
    assert_eq!(c.meta.name, "urv_tutorial");
    assert_eq!(c.meta.origin, format!("plugin {}", path.display()));
    let shape = [3, 4];
    let parsed = c.prepare(&kw(json!({"num_iter": 30}))).expect("kwargs");
    let mut dynamic = parsed
        .build(&GradientContext { shape: &shape })
        .expect("create");
    let mut linked = UrvTutorial::new(
        &Valid::check(UrvTutorialKwargs {
            mu: None,
            num_iter: 30,
        })
        .expect("valid"),
        12,
    );
    let y = point(&shape);
    for seed in 0..5 {
        let p = problem(SquaredNorm::new(&shape), &shape);
        let a = dynamic
            .gradient_at(&p, y.view(), &mut rng_from_seed(seed))
            .expect("dynamic");
        let handed_over = rng_from_seed(seed).next_u64();
        let b = linked
            .gradient_at(&p, y.view(), &mut rng_from_seed(handed_over))
            .expect("linked");
        assert_eq!(a, b, "call {seed}");
    }
}
