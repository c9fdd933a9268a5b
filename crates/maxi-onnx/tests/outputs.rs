//! The `output` and `squeeze` kwargs of the tract backend, on real models with several outputs
//! (CIFAR-10 ResNet-8: `probs`, `logits`) and trailing unit axes (SqueezeNet: `[N,1000,1,1]`).

use maxi_core::registry::ModelContext;
use maxi_core::{Kwargs, Model, ModelKind};
use maxi_onnx::OnnxModel;
use maxi_onnx_support::OutputRef;
use ndarray::{Array2, ArrayD, IxDyn};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

fn fixture(rel: &str) -> String {
    format!("{FIXTURES}/{rel}")
}

/// The 20 CIFAR-10 test images `[20, 32, 32, 3]`, raw 0..255, and ONNX Runtime's `probs` and
/// `logits` for them (from the fixture).
fn cifar() -> (ArrayD<f64>, Array2<f32>, Array2<f32>) {
    let x: ArrayD<u8> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/images_u8_nhwc.npy")).expect("images");
    let probs: Array2<f32> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/resnet8_ort_probs_f32.npy")).expect("p");
    let logits: Array2<f32> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/resnet8_ort_logits_f32.npy")).expect("l");
    (x.mapv(f64::from), probs, logits)
}

fn max_diff(a: &ArrayD<f64>, b: &Array2<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .fold(0.0, |m, (a, b)| m.max((a - f64::from(*b)).abs()))
}

#[test]
fn picks_an_output_by_name_or_position() {
    let (x, probs, logits) = cifar();
    let path = fixture("cifar10/resnet8_cifar10_nhwc.onnx");
    let first = OnnxModel::with_threads(&path, 1).expect("load");
    let by_name = OnnxModel::with_output(
        &path,
        2,
        None,
        Some(&OutputRef::Name("logits".into())),
        false,
    )
    .expect("load logits");
    let by_index =
        OnnxModel::with_output(&path, 1, None, Some(&OutputRef::Index(1)), false).expect("load 1");
    let p = first.predict(x.view()).expect("probs");
    let l = by_name.predict(x.view()).expect("logits");
    assert!(
        max_diff(&p, &probs) < 1e-5,
        "probs differ by {}",
        max_diff(&p, &probs)
    );
    assert!(
        max_diff(&l, &logits) < 1e-3,
        "logits differ by {}",
        max_diff(&l, &logits)
    );
    assert_eq!(by_index.predict(x.view()).expect("logits"), l);
    // the softmax of the logits is the probs output
    for (lr, pr) in l.outer_iter().zip(p.outer_iter()) {
        let m = lr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = lr.iter().map(|v| (v - m).exp()).sum();
        for (lv, pv) in lr.iter().zip(pr.iter()) {
            assert!(((lv - m).exp() / z - pv).abs() < 1e-5);
        }
    }
}

#[test]
fn an_unknown_output_is_a_load_error_listing_the_outputs() {
    let path = fixture("cifar10/resnet8_cifar10_nhwc.onnx");
    for (wanted, says) in [
        (
            OutputRef::Name("scores".into()),
            "no output named \"scores\"",
        ),
        (OutputRef::Index(2), "output 2 does not exist"),
    ] {
        let e = OnnxModel::with_output(&path, 1, None, Some(&wanted), false)
            .expect_err("unknown output accepted")
            .to_string();
        assert!(
            e.contains(says) && e.contains("0: \"probs\"") && e.contains("1: \"logits\""),
            "{e}"
        );
    }
}

#[test]
fn squeeze_drops_trailing_unit_axes_through_the_registry_kwargs() {
    let path = fixture("imagenet/squeezenet1.1_fp32.onnx");
    let plain = OnnxModel::with_threads(&path, 1).expect("load");
    assert_eq!(plain.input_shape(), Some(vec![3, 224, 224]));
    assert_eq!(plain.output_item_shape(), &[1000, 1, 1]);
    let kwargs = Kwargs::from_serialize(&serde_json::json!({
        "path": path, "threads": 1, "squeeze": true, "output": "softmaxout_1"
    }))
    .expect("kwargs");
    let registry = maxi_core::registry::global().expect("registry");
    let prepared = registry
        .get::<ModelKind>("onnx")
        .expect("onnx")
        .prepare(&kwargs)
        .expect("valid kwargs");
    let squeezed = prepared
        .build(&ModelContext { base_dir: None })
        .expect("load");
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 224, 224]), |i| {
        ((i[1] * 7 + i[2] * 3 + i[3] + i[0]) % 50) as f64 - 25.0
    });
    let a = plain.predict(x.view()).expect("plain");
    let b = squeezed.predict(x.view()).expect("squeezed");
    assert_eq!(a.shape(), &[2, 1000, 1, 1]);
    assert_eq!(b.shape(), &[2, 1000]);
    assert_eq!(
        a.iter().copied().collect::<Vec<_>>(),
        b.iter().copied().collect::<Vec<_>>()
    );
}
