//! The `output` and `squeeze` kwargs of the ONNX Runtime backend, on real models with several
//! outputs (CIFAR-10 ResNet-8: `probs`, `logits`) and trailing unit axes (SqueezeNet:
//! `[N,1000,1,1]`). These tests need the ONNX Runtime library (`python3 -m pip install
//! "onnxruntime==1.32.*"`, as `.ci/run` does) and fail without it.

use maxi::ndarray::{Array2, ArrayD, IxDyn};
use maxi::registry::ModelContext;
use maxi::{Kwargs, Model, ModelKind, OnnxModel};
use maxi_onnx_support::OutputRef;
use maxi_onnxruntime::OrtModel;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

fn fixture(rel: &str) -> String {
    format!("{FIXTURES}/{rel}")
}

fn require_ort() {
    if let Err(e) = maxi_onnxruntime::runtime() {
        panic!(
            "these tests need the ONNX Runtime library: {e}; install it with {}",
            maxi_onnxruntime::install_command()
        );
    }
}

fn max_diff(a: &ArrayD<f64>, b: &Array2<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .fold(0.0, |m, (a, b)| m.max((a - f64::from(*b)).abs()))
}

#[test]
fn picks_an_output_by_name_or_position() {
    require_ort();
    let x: ArrayD<u8> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/images_u8_nhwc.npy")).expect("images");
    let x = x.mapv(f64::from);
    let probs: Array2<f32> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/resnet8_ort_probs_f32.npy")).expect("p");
    let logits: Array2<f32> =
        ndarray_npy::read_npy(fixture("cifar10/foolbox20/resnet8_ort_logits_f32.npy")).expect("l");
    let path = fixture("cifar10/resnet8_cifar10_nhwc.onnx");
    let first = OrtModel::with_options(&path, 1, None).expect("load");
    let by_name = OrtModel::with_output(
        &path,
        2,
        None,
        Some(&OutputRef::Name("logits".into())),
        false,
    )
    .expect("load logits");
    let by_index =
        OrtModel::with_output(&path, 1, None, Some(&OutputRef::Index(1)), false).expect("load");
    let p = first.predict(x.view()).expect("probs");
    let l = by_name.predict(x.view()).expect("logits");
    // the fixture's outputs were computed with this runtime
    assert!(max_diff(&p, &probs) < 1e-6, "{}", max_diff(&p, &probs));
    assert!(max_diff(&l, &logits) < 1e-5, "{}", max_diff(&l, &logits));
    assert_eq!(by_index.predict(x.view()).expect("logits"), l);
    for (wanted, says) in [
        (
            OutputRef::Name("scores".into()),
            "no output named \"scores\"",
        ),
        (OutputRef::Index(2), "output 2 does not exist"),
    ] {
        let e = OrtModel::with_output(&path, 1, None, Some(&wanted), false)
            .expect_err("unknown output accepted")
            .to_string();
        assert!(e.contains(says) && e.contains("1: \"logits\""), "{e}");
    }
}

#[test]
fn squeeze_through_the_registry_kwargs_and_agreement_with_tract() {
    require_ort();
    let path = fixture("imagenet/squeezenet1.1_fp32.onnx");
    let kwargs = Kwargs::from_serialize(&maxi::serde_json::json!({
        "path": path, "threads": 2, "squeeze": true, "output": 0
    }))
    .expect("kwargs");
    let registry = maxi::registry::global().expect("registry");
    let ort = registry
        .get::<ModelKind>("onnxruntime")
        .expect("onnxruntime")
        .prepare(&kwargs)
        .expect("valid kwargs")
        .build(&ModelContext { base_dir: None })
        .expect("load");
    let tract = OnnxModel::with_output(&path, 2, None, None, true).expect("tract");
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 3, 224, 224]), |i| {
        ((i[1] * 7 + i[2] * 3 + i[3] + 11 * i[0]) % 50) as f64 - 25.0
    });
    let a = ort.predict(x.view()).expect("ort");
    let b = tract.predict(x.view()).expect("tract");
    assert_eq!(a.shape(), &[3, 1000]);
    assert_eq!(b.shape(), &[3, 1000]);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-5, "ONNX Runtime and tract differ by {diff}");
}
