//! Real explanations on the bundled MNIST CNN (known model outputs from the fixtures README).

use std::sync::Arc;

use maxi::serde_json::json;
use maxi::{ExplanationGenerator, Kwargs, Model, OnnxModel, mnist, predict_class, summary};

fn cnn(threads: usize) -> Arc<dyn Model> {
    let path = mnist::bundled_fixtures_dir().join("mnist/mnist_cnn.onnx");
    Arc::new(OnnxModel::with_threads(path, threads).expect("bundled CNN"))
}

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

/// The tuned PP settings of `examples/mnist_cem.rs`.
fn pp(num_iter: usize, seed: u64) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss(
            "cem",
            kw(json!({"mode": "PP", "c": 10.0, "K": 2.0, "gamma": 0.0, "no_info_val": -0.5})),
        )
        .optimizer("ao_exp_grad", kw(json!({"l1": 1.0, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 99})))
        .num_iter(num_iter)
        .save_freq(50)
        .seed(seed)
        .build()
        .expect("generator")
}

#[test]
fn the_fixture_images_are_classified_as_documented() {
    let m = cnn(1);
    let (c2953, s) =
        predict_class(m.as_ref(), mnist::test_image(2953).expect("img").view()).expect("predict");
    assert_eq!(c2953, 5);
    assert!(
        (s[3] - 15.667).abs() < 1e-2 && (s[5] - 18.311).abs() < 1e-2,
        "{s:?}"
    );
    let (c340, _) =
        predict_class(m.as_ref(), mnist::test_image(340).expect("img").view()).expect("predict");
    assert_eq!(c340, 3);
}

#[test]
fn pertinent_positive_of_2953_is_sparse_and_keeps_class_5() {
    let x = mnist::test_image(2953).expect("image");
    let m = cnn(2);
    let e = pp(199, 0).run(x.view(), m.clone()).expect("run");
    let s = summary::summarize(&e, x.view(), m.as_ref()).expect("summary");
    assert_eq!(s.original_class, 5);
    assert_eq!(s.explanation_class, 5, "{s:?}");
    // the digit has 166 ink pixels; IBM's white-box PP uses 85
    assert!(s.nonzero >= 1 && s.nonzero < 120, "{s:?}");
    assert!(s.model_rows <= 20_000, "{s:?}");
    assert!(s.attack_loss < 0.0, "{s:?}");
}

#[test]
fn pertinent_negative_of_340_changes_class_3_with_few_pixels() {
    let x = mnist::test_image(340).expect("image");
    let m = cnn(2);
    let g = ExplanationGenerator::builder()
        .loss(
            "cem",
            kw(json!({"mode": "PN", "c": 10.0, "K": 2.0, "gamma": 0.0, "lower": 0.0, "input_range": [-0.5, 0.5]})),
        )
        .optimizer("ao_exp_grad", kw(json!({"l1": 5.0, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 99})))
        .num_iter(199)
        .build()
        .expect("generator");
    let e = g.run(x.view(), m.clone()).expect("run");
    let s = summary::summarize(&e, x.view(), m.as_ref()).expect("summary");
    assert_eq!(s.original_class, 3);
    assert_ne!(s.explanation_class, 3, "{s:?}");
    // IBM's white-box PN uses 15 pixels
    assert!(s.nonzero > 0 && s.nonzero < 60, "{s:?}");
    assert!(s.model_rows <= 20_000);
    // x + PN stays a valid image
    let shown = summary::shown_input(&e, x.view()).expect("shown");
    assert!(shown.iter().all(|v| (-0.5..=0.5).contains(v)));
}

#[test]
fn onnx_runs_are_identical_for_one_and_two_threads() {
    let x = mnist::test_image(2953).expect("image");
    let a = pp(6, 9).run(x.view(), cnn(1)).expect("run");
    let b = pp(6, 9).run(x.view(), cnn(2)).expect("run");
    assert_eq!(a.savepoints, b.savepoints);
    assert_eq!(a.history, b.history);
}
