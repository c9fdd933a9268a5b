//! Every user error is specific: it names the problem and what is accepted.

use std::sync::Arc;

use maxi::ndarray::ArrayD;
use maxi::serde_json::json;
use maxi::{ExplanationGenerator, Kind, Kwargs, MaxiError, Registry, registry};
use maxi_tests::{input, linear_model};

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

fn build(
    loss: (&str, Kwargs),
    opt: (&str, Kwargs),
    grad: (&str, Kwargs),
) -> Result<ExplanationGenerator, MaxiError> {
    ExplanationGenerator::builder()
        .loss(loss.0, loss.1)
        .optimizer(opt.0, opt.1)
        .gradient(grad.0, grad.1)
        .num_iter(3)
        .build()
}

fn pp() -> Kwargs {
    kw(json!({"mode": "PP"}))
}

#[test]
fn unknown_component_lists_known_names_closest_first() {
    let err = build(
        ("cem", pp()),
        ("ao_exp_grad", Kwargs::new()),
        ("urvv", Kwargs::new()),
    )
    .unwrap_err();
    match &err {
        MaxiError::UnknownComponent { kind, name, known } => {
            assert_eq!(*kind, Kind::Gradient);
            assert_eq!(name, "urvv");
            assert!(known[0].starts_with("urv "), "{known:?}");
            assert!(known.iter().any(|k| k.starts_with("usrv")), "{known:?}");
        }
        other => panic!("wrong error {other:?}"),
    }
    assert!(err.to_string().contains("known gradient components: urv"));
    assert!(err.is_usage());
}

#[test]
fn maxi_class_names_are_aliases() {
    let g = build(
        ("TF_CEMLoss", pp()),
        ("AoExpGradOptimizer", Kwargs::new()),
        ("URVGradientEstimator", Kwargs::new()),
    )
    .expect("aliases resolve");
    assert_eq!(g.config()["loss"]["name"], "cem");
    assert_eq!(g.config()["optimizer"]["name"], "ao_exp_grad");
    assert_eq!(g.config()["gradient"]["name"], "urv");
}

#[test]
fn unknown_kwarg_is_named_with_the_accepted_ones() {
    let err = build(
        ("cem", pp()),
        ("ao_exp_grad", kw(json!({"l3": 1.0}))),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    match err {
        MaxiError::UnknownKwarg {
            component,
            key,
            accepted,
            ..
        } => {
            assert_eq!(component, "ao_exp_grad");
            assert_eq!(key, "l3");
            assert_eq!(accepted, vec!["eta", "l1", "l2"]);
        }
        other => panic!("wrong error {other:?}"),
    }
    // the seed's spelling `num_iter` is accepted for URV's sample_num, and listed
    let err = build(
        ("cem", pp()),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", kw(json!({"samples": 3}))),
    )
    .unwrap_err();
    assert!(err.to_string().contains("num_iter"), "{err}");
}

#[test]
fn wrong_type_names_the_field() {
    let err = build(
        ("cem", kw(json!({"mode": "PP", "c": "high"}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    match err {
        MaxiError::InvalidKwarg {
            component,
            field,
            message,
            ..
        } => {
            assert_eq!(component, "cem");
            assert_eq!(field, "c");
            assert!(message.contains("invalid type"), "{message}");
        }
        other => panic!("wrong error {other:?}"),
    }
    let err = build(
        ("cem", kw(json!({"mode": "XX"}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, .. } if field == "mode"),
        "{err}"
    );
    let err = build(
        ("cem", Kwargs::new()),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, message, .. } if field == "mode" && message.contains("missing")),
        "{err}"
    );
}

#[test]
fn out_of_range_kwargs_are_rejected_when_the_pipeline_is_built() {
    let err = build(
        ("cem", pp()),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", kw(json!({"sample_num": 10, "batch_num": 3}))),
    )
    .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, .. } if field == "batch_num"),
        "{err}"
    );
    let err = build(
        ("cem", kw(json!({"mode": "PP", "K": -1}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, .. } if field == "K"),
        "{err}"
    );
}

#[test]
fn settings_are_validated() {
    let err = ExplanationGenerator::builder()
        .loss("cem", pp())
        .optimizer("ao_exp_grad", Kwargs::new())
        .gradient("urv", Kwargs::new())
        .num_iter(0)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidSetting { name, .. } if name == "num_iter"),
        "{err}"
    );
    let err = ExplanationGenerator::builder()
        .num_iter(3)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidSetting { name, .. } if name == "loss"),
        "{err}"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let global = registry::global().expect("registry");
    let cem = global.get::<maxi::LossKind>("cem").expect("cem");
    let mut r = Registry::empty();
    r.add((*cem).clone()).expect("first");
    let err = r
        .add((*cem).clone().with_origin("plugin libdup.so"))
        .unwrap_err();
    assert!(
        matches!(&err, MaxiError::DuplicateComponent { name, .. } if name == "cem"),
        "{err}"
    );
    assert!(err.to_string().contains("libdup.so"));
    // the linked registry itself has no duplicates and all built-ins
    for (kind, name) in [
        (Kind::Loss, "cem"),
        (Kind::Gradient, "urv"),
        (Kind::Gradient, "usrv"),
        (Kind::Optimizer, "ao_exp_grad"),
        (Kind::Optimizer, "ada_exp_grad"),
        (Kind::Model, "onnx"),
    ] {
        let metas = global.metas(Some(kind));
        assert_eq!(
            metas.iter().filter(|m| m.matches(name)).count(),
            1,
            "{kind} {name}"
        );
    }
}

fn generator() -> ExplanationGenerator {
    build(
        ("cem", pp()),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", kw(json!({"sample_num": 4}))),
    )
    .expect("generator")
}

#[test]
fn nan_input_is_named() {
    let (model, _) = linear_model(&[4], 3, 0);
    let mut x = input(&[4], 0);
    x[[2]] = f64::NAN;
    let err = generator().run(x.view(), model).unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidInput { name, message } if name == "x" && message.contains("entry 2")),
        "{err}"
    );
}

#[test]
fn model_returning_nan_is_a_runtime_error_with_the_iteration() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let model = maxi::model_fn("flaky", move |b| {
        let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut out = ArrayD::from_elem(vec![b.shape()[0], 3], 0.5);
        out[[0, 0]] = 1.0;
        if n == 2 {
            out[[0, 1]] = f64::NAN;
        }
        out
    });
    let err = generator().run(input(&[4], 0).view(), model).unwrap_err();
    match &err {
        MaxiError::Runtime {
            kind,
            component,
            iteration,
            message,
        } => {
            assert_eq!(*kind, Kind::Model);
            assert_eq!(component, "flaky");
            assert_eq!(*iteration, 2);
            assert!(message.contains("non-finite"), "{message}");
        }
        other => panic!("wrong error {other:?}"),
    }
    assert!(!err.is_usage());
}

#[test]
fn missing_model_file_is_named() {
    // found when the pipeline is built, before any run
    let err = build(
        ("cem", kw(json!({"mode": "PP", "AE": "no/such/ae.onnx"}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .unwrap_err();
    assert!(err.is_usage());
    assert!(
        matches!(&err, MaxiError::ModelLoad { path, .. } if path.contains("no/such/ae.onnx")),
        "{err}"
    );
}

#[test]
fn pn_target_equal_to_the_original_class_is_refused() {
    let (model, _) = linear_model(&[4], 3, 0);
    let x = input(&[4], 0);
    let t = maxi_tests::predict_class(model.as_ref(), x.view());
    let g = build(
        ("cem", kw(json!({"mode": "PN", "pn_target": t}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .expect("generator");
    let err = g.run(x.view(), model).unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, .. } if field == "pn_target"),
        "{err}"
    );
}

#[test]
fn bounds_of_the_wrong_shape_are_refused() {
    let (model, _) = linear_model(&[4], 3, 0);
    let g = build(
        ("cem", kw(json!({"mode": "PN", "lower": [0.0, 0.0]}))),
        ("ao_exp_grad", Kwargs::new()),
        ("urv", Kwargs::new()),
    )
    .expect("generator");
    let err = g.run(input(&[4], 0).view(), model).unwrap_err();
    assert!(
        matches!(&err, MaxiError::InvalidKwarg { field, .. } if field == "lower"),
        "{err}"
    );
}

/// A gradient method that fails on its second call.
struct FailsSecond(usize);

impl maxi::Gradient for FailsSecond {
    fn estimate(
        &mut self,
        _problem: &maxi::Problem,
        request: &maxi::Request<'_>,
        _rng: &mut maxi::MaxiRng,
    ) -> maxi::Result<maxi::Estimate> {
        self.0 += 1;
        if self.0 == 2 {
            return Err(MaxiError::Other("estimator blew up".into()));
        }
        Ok(maxi::Estimate::new(ArrayD::zeros(request.at.shape())))
    }
}

struct FailsSecondFactory;

impl maxi::Factory<maxi::GradientKind> for FailsSecondFactory {
    type Kwargs = NoKwargs;
    fn build(
        _: &maxi::Valid<NoKwargs>,
        _: &maxi::GradientContext<'_>,
    ) -> maxi::Result<Box<dyn maxi::Gradient>> {
        Ok(Box::new(FailsSecond(0)))
    }
}

/// No kwargs.
#[derive(maxi::serde::Serialize, maxi::serde::Deserialize, maxi::schemars::JsonSchema)]
#[serde(crate = "maxi::serde", deny_unknown_fields)]
#[schemars(crate = "maxi::schemars")]
struct NoKwargs {}

impl maxi::KwargsSpec for NoKwargs {}

#[test]
fn a_failing_gradient_is_blamed_on_the_gradient_not_the_optimizer() {
    let mut r = maxi::Registry::clone(&registry::global().expect("registry"));
    r.add(maxi::registry::Entry::<maxi::GradientKind>::of::<
        FailsSecondFactory,
    >("fails_second", &[], "test"))
        .expect("add");
    let g = ExplanationGenerator::builder()
        .loss("cem", pp())
        .optimizer("ao_exp_grad", Kwargs::new())
        .gradient("fails_second", Kwargs::new())
        .num_iter(3)
        .registry(r)
        .build()
        .expect("generator");
    let (model, _) = linear_model(&[4], 3, 0);
    let err = g.run(input(&[4], 0).view(), model).unwrap_err();
    match &err {
        MaxiError::Runtime {
            kind,
            component,
            iteration,
            message,
        } => {
            assert_eq!(
                (*kind, component.as_str(), *iteration),
                (Kind::Gradient, "fails_second", 2)
            );
            assert!(message.contains("blew up"), "{message}");
        }
        other => panic!("wrong error {other:?}"),
    }
}
