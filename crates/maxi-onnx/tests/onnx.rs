//! Tests of the ONNX backend against the bundled MNIST fixtures (real pretrained models).

use std::path::{Path, PathBuf};
use std::time::Instant;

use maxi_core::registry::ModelContext;
use maxi_core::{Kwargs, MaxiError, Model};
use maxi_onnx::OnnxModel;
use ndarray::{ArrayD, Axis, IxDyn, concatenate};
use prost::Message;
use tract_onnx::pb;

const CNN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/mnist_cnn.onnx"
);
const AE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/mnist_ae.onnx"
);
const IBM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/ibm_cem_reference"
);

/// Test image 2953 (label 3, predicted 5) and its known logits.
const IMG_2953: &str = "PP_ID2953_Gamma_100.0/Orig_original5.npy";
const LOGITS_2953: [f64; 10] = [
    -10.050, -2.831, -10.176, 15.667, -10.548, 18.311, -5.112, -7.339, 5.836, 1.368,
];
/// Test image 340 (label 5, predicted 3) and its known logits.
const IMG_340: &str = "PN_ID340_Gamma_100.0/Orig_original3.npy";
const LOGITS_340: [f64; 10] = [
    -11.279, 0.736, -9.009, 19.397, -8.286, 14.443, -1.317, -11.587, -0.992, 1.018,
];

/// An IBM reference array, float32 `[1,28,28,1]` in [-0.5, 0.5], as f64.
fn npy(rel: &str) -> ArrayD<f64> {
    let a: ArrayD<f32> = ndarray_npy::read_npy(Path::new(IBM).join(rel)).expect("read npy");
    assert_eq!(a.shape(), &[1, 28, 28, 1]);
    a.mapv(f64::from)
}

/// Six real rows: the two test images and the four IBM adversarial / delta arrays.
fn six_rows() -> ArrayD<f64> {
    let files = [
        IMG_2953,
        IMG_340,
        "PP_ID2953_Gamma_100.0/Adv_id2953_kappa10.0_Orig5_Adv3_Delta5.npy",
        "PP_ID2953_Gamma_100.0/Delta_id2953_kappa10.0_Orig5_Adv3_Delta5.npy",
        "PN_ID340_Gamma_100.0/Adv_id340_kappa10.0_Orig3_Adv5_Delta8.npy",
        "PN_ID340_Gamma_100.0/Delta_id340_kappa10.0_Orig3_Adv5_Delta8.npy",
    ];
    let arrays: Vec<ArrayD<f64>> = files.iter().map(|f| npy(f)).collect();
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    concatenate(Axis(0), &views).expect("concatenate")
}

fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("non-empty")
}

fn tmp_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("maxi-onnx-tests");
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

#[test]
fn cnn_logits_of_known_test_images() {
    let model = maxi_onnx::load(CNN).expect("load cnn");
    assert_eq!(model.input_shape(), Some(vec![28, 28, 1]));
    assert_eq!(model.output_item_shape(), &[10]);
    assert_eq!(model.describe(), "mnist_cnn.onnx");
    let a = npy(IMG_2953);
    let b = npy(IMG_340);
    let batch = concatenate(Axis(0), &[a.view(), b.view()]).unwrap();
    let out = model.predict(batch.view()).expect("predict");
    assert_eq!(out.shape(), &[2, 10]);
    for (row, (expected, class)) in out.outer_iter().zip([(LOGITS_2953, 5), (LOGITS_340, 3)]) {
        let row: Vec<f64> = row.iter().copied().collect();
        assert_eq!(argmax(&row), class, "logits {row:?}");
        for (got, want) in row.iter().zip(expected) {
            assert!((got - want).abs() < 1e-2, "logits {row:?} vs {expected:?}");
        }
    }
}

#[test]
fn rows_are_independent_of_batch_and_thread_count() {
    let batch = six_rows();
    let one = OnnxModel::with_threads(CNN, 1).expect("load 1 thread");
    let two = OnnxModel::with_threads(CNN, 2).expect("load 2 threads");
    assert_eq!((one.threads(), two.threads()), (1, 2));
    let out1 = one.predict(batch.view()).unwrap();
    let out2 = two.predict(batch.view()).unwrap();
    assert_eq!(out1.shape(), &[6, 10]);
    // Bit-identical, not just close.
    assert_eq!(out1, out2);
    for i in 0..batch.shape()[0] {
        let row = batch.index_axis(Axis(0), i).insert_axis(Axis(0));
        let alone = two.predict(row.view()).unwrap();
        assert_eq!(alone.index_axis(Axis(0), 0), out1.index_axis(Axis(0), i));
    }
    // Non-contiguous input (a reversed view) gives the reversed rows.
    let mut rev = batch.view();
    rev.invert_axis(Axis(0));
    let out_rev = two.predict(rev).unwrap();
    for i in 0..6 {
        assert_eq!(
            out_rev.index_axis(Axis(0), i),
            out1.index_axis(Axis(0), 5 - i)
        );
    }
}

#[test]
fn batch_size_cuts_batches_into_padded_chunks_independent_of_threads() {
    let batch = six_rows();
    let rowwise = OnnxModel::with_threads(CNN, 1)
        .unwrap()
        .predict(batch.view())
        .unwrap();
    let one = OnnxModel::with_options(CNN, 1, Some(4)).expect("batch_size 4");
    let two = OnnxModel::with_options(CNN, 2, Some(4)).expect("batch_size 4, 2 threads");
    assert_eq!((one.batch_size(), two.batch_size()), (4, 4));
    // 6 rows: a chunk of 4 and a chunk of 2 padded to 4
    let out1 = one.predict(batch.view()).unwrap();
    let out2 = two.predict(batch.view()).unwrap();
    assert_eq!(out1.shape(), &[6, 10]);
    assert_eq!(out1, out2, "bit-identical for any thread count");
    for (a, b) in out1.iter().zip(rowwise.iter()) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b} row by row");
    }
    // one row (padded with three zero rows), and no rows
    let first = one
        .predict(batch.slice(ndarray::s![0..1, .., .., ..]).into_dyn())
        .unwrap();
    assert_eq!(first.shape(), &[1, 10]);
    for (a, b) in first.iter().zip(rowwise.index_axis(Axis(0), 0).iter()) {
        assert!((a - b).abs() < 1e-4);
    }
    let none = two
        .predict(ArrayD::<f64>::zeros(IxDyn(&[0, 28, 28, 1])).view())
        .unwrap();
    assert_eq!(none.shape(), &[0, 10]);
    assert!(matches!(
        OnnxModel::with_options(CNN, 1, Some(0)),
        Err(MaxiError::InvalidSetting { .. })
    ));
}

#[test]
fn empty_batch_gives_empty_output() {
    let model = OnnxModel::with_threads(CNN, 2).unwrap();
    let out = model
        .predict(ArrayD::<f64>::zeros(IxDyn(&[0, 28, 28, 1])).view())
        .unwrap();
    assert_eq!(out.shape(), &[0, 10]);
}

#[test]
fn autoencoder_reconstructs_images() {
    let model = OnnxModel::with_threads(AE, 2).expect("load ae");
    assert_eq!(model.input_shape(), Some(vec![28, 28, 1]));
    let batch = concatenate(Axis(0), &[npy(IMG_2953).view(), npy(IMG_340).view()]).unwrap();
    let out = model.predict(batch.view()).unwrap();
    assert_eq!(out.shape(), &[2, 28, 28, 1]);
    let mse = (&out - &batch).mapv(|d| d * d).mean().unwrap();
    assert!(mse < 0.01, "reconstruction MSE {mse}");
}

#[test]
fn wrong_item_shape_is_invalid_input() {
    let model = OnnxModel::with_threads(CNN, 1).unwrap();
    for shape in [&[2, 28, 28][..], &[2, 28, 28, 3], &[28, 28, 1], &[2, 784]] {
        let err = model
            .predict(ArrayD::<f64>::zeros(IxDyn(shape)).view())
            .unwrap_err();
        match err {
            MaxiError::InvalidInput { message, .. } => {
                assert!(message.contains("[B, 28, 28, 1]"), "{message}")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }
}

fn expect_load_error(result: maxi_core::Result<OnnxModel>, needle: &str) -> String {
    match result {
        Err(MaxiError::ModelLoad { message, .. }) => {
            println!("{message}");
            assert!(
                message.contains(needle),
                "message {message:?} lacks {needle:?}"
            );
            message
        }
        Err(other) => panic!("expected ModelLoad, got {other:?}"),
        Ok(m) => panic!("expected ModelLoad, loaded {m:?}"),
    }
}

#[test]
fn missing_directory_and_garbage_files_are_model_load_errors() {
    expect_load_error(maxi_onnx::load("/no/such/dir/model.onnx"), "no such file");
    expect_load_error(maxi_onnx::load(tmp_dir()), "directory");
    let garbage = tmp_dir().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf \xff\xfe\x00\x01 at all").unwrap();
    expect_load_error(maxi_onnx::load(&garbage), "ONNX");
    let empty = tmp_dir().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        maxi_onnx::load(&empty),
        Err(MaxiError::ModelLoad { .. })
    ));
    // A real file of another format.
    let labels = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/mnist/t10k-labels-idx1-ubyte.gz"
    );
    assert!(matches!(
        maxi_onnx::load(labels),
        Err(MaxiError::ModelLoad { .. })
    ));
    assert!(matches!(
        OnnxModel::with_threads(CNN, 0),
        Err(MaxiError::InvalidSetting { .. })
    ));
}

// ---- Hand-made ONNX graphs for the input checks -------------------------------------------

enum Dim {
    Val(i64),
    Sym(&'static str),
    Unknown,
}

fn value_info(name: &str, elem_type: i32, dims: Option<&[Dim]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let shape = dims.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: match d {
                    Dim::Val(v) => Some(Value::DimValue(*v)),
                    Dim::Sym(s) => Some(Value::DimParam(s.to_string())),
                    Dim::Unknown => None,
                },
                ..Default::default()
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const FLOAT: i32 = 1;
const DOUBLE: i32 = 11;

/// `y = Relu(x)` (plus `y2 = Relu(x2)` when a second input is given), saved to a temp file.
fn tiny_model(file: &str, inputs: Vec<pb::ValueInfoProto>) -> PathBuf {
    let mut node = vec![];
    let mut output = vec![];
    for (i, inp) in inputs.iter().enumerate() {
        let out = format!("y{i}");
        node.push(pb::NodeProto {
            op_type: "Relu".into(),
            input: vec![inp.name.clone()],
            output: vec![out.clone()],
            name: format!("relu{i}"),
            ..Default::default()
        });
        output.push(pb::ValueInfoProto {
            name: out,
            ..Default::default()
        });
    }
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "tiny".into(),
            node,
            input: inputs,
            output,
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = tmp_dir().join(file);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

#[test]
fn supported_batch_axes() {
    for (file, batch) in [
        ("sym.onnx", Dim::Sym("N")),
        ("one.onnx", Dim::Val(1)),
        ("unknown_batch.onnx", Dim::Unknown),
    ] {
        let path = tiny_model(
            file,
            vec![value_info(
                "x",
                FLOAT,
                Some(&[batch, Dim::Val(2), Dim::Val(3)]),
            )],
        );
        let model = OnnxModel::with_threads(&path, 2).expect(file);
        assert_eq!(model.input_shape(), Some(vec![2, 3]));
        let x = ArrayD::from_shape_fn(IxDyn(&[4, 2, 3]), |i| {
            i[0] as f64 - i[1] as f64 * 0.5 + i[2] as f64 * 0.25 - 1.0
        });
        let y = model.predict(x.view()).unwrap();
        assert_eq!(y, x.mapv(|v| v.max(0.0)), "{file}");
    }
}

#[test]
fn thread_count_and_batch_size_are_bounded_before_anything_is_started() {
    let invalid = |r: maxi_core::Result<OnnxModel>| match r {
        Err(MaxiError::InvalidSetting { name, message }) => (name, message),
        other => panic!("expected InvalidSetting, got {other:?}"),
    };
    let (name, message) = invalid(OnnxModel::with_threads(CNN, 100_000));
    assert_eq!(name, "threads");
    assert!(message.contains("at most 256"), "{message}");
    let (name, message) = invalid(OnnxModel::with_options(CNN, 1, Some(100_000)));
    assert_eq!(name, "batch_size");
    assert!(message.contains("at most 1024"), "{message}");
    // 100 padded rows of 1024x1024x3 float32 items are 1.2 GB per call: refused at load, from
    // the item shape, before tract plans for them (64 MiB hold 5 such rows)
    let big = tiny_model(
        "big_items.onnx",
        vec![value_info(
            "x",
            FLOAT,
            Some(&[Dim::Sym("N"), Dim::Val(1024), Dim::Val(1024), Dim::Val(3)]),
        )],
    );
    let (name, message) = invalid(OnnxModel::with_options(&big, 1, Some(100)));
    assert_eq!(name, "batch_size");
    assert!(
        message.contains("[1024, 1024, 3]") && message.contains("batch_size ≤ 5"),
        "{message}"
    );
    assert_eq!(
        OnnxModel::with_options(&big, 1, Some(5))
            .expect("5 rows fit")
            .batch_size(),
        5
    );
    // the registered backend's kwargs carry the same bounds
    for (field, value) in [("threads", 257), ("batch_size", 1025)] {
        let kwargs = Kwargs::new()
            .set("path", CNN)
            .unwrap()
            .set(field, value)
            .unwrap();
        match build_from_registry("onnx", kwargs, None) {
            Err(MaxiError::InvalidKwarg { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidKwarg, got {:?}", other.err()),
        }
    }
}

#[test]
fn unsupported_inputs_are_rejected_with_a_fix() {
    let cases: Vec<(&str, Vec<pb::ValueInfoProto>, &str)> = vec![
        (
            "fixed_batch.onnx",
            vec![value_info("x", FLOAT, Some(&[Dim::Val(4), Dim::Val(3)]))],
            "fixed to 4",
        ),
        (
            "no_shape.onnx",
            vec![value_info("x", FLOAT, None)],
            "no declared shape",
        ),
        (
            "rank1.onnx",
            vec![value_info("x", FLOAT, Some(&[Dim::Sym("N")]))],
            "rank 1",
        ),
        (
            "sym_item.onnx",
            vec![value_info(
                "x",
                FLOAT,
                Some(&[Dim::Sym("N"), Dim::Sym("L")]),
            )],
            "axis 1",
        ),
        (
            "unknown_item.onnx",
            vec![value_info("x", FLOAT, Some(&[Dim::Sym("N"), Dim::Unknown]))],
            "axis 1",
        ),
        (
            "double.onnx",
            vec![value_info("x", DOUBLE, Some(&[Dim::Sym("N"), Dim::Val(3)]))],
            "float32",
        ),
        (
            "two_inputs.onnx",
            vec![
                value_info("x", FLOAT, Some(&[Dim::Sym("N"), Dim::Val(3)])),
                value_info("x2", FLOAT, Some(&[Dim::Sym("N"), Dim::Val(3)])),
            ],
            "2 inputs",
        ),
    ];
    for (file, inputs, needle) in cases {
        let message = expect_load_error(maxi_onnx::load(tiny_model(file, inputs)), needle);
        assert!(
            message.contains("re-export"),
            "{file}: message should say what to do: {message}"
        );
    }
}

// ---- Registry ------------------------------------------------------------------------------

fn build_from_registry(
    name: &str,
    kwargs: Kwargs,
    base_dir: Option<&Path>,
) -> maxi_core::Result<std::sync::Arc<dyn Model>> {
    let registry = maxi_core::registry::global()?;
    let component = registry.get::<maxi_core::ModelKind>(name)?;
    assert_eq!(component.meta.extensions, ["onnx".to_string()]);
    component
        .prepare(&kwargs)?
        .build(&ModelContext { base_dir })
}

#[test]
fn registered_backend_resolves_relative_paths_and_validates_kwargs() {
    let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures"));
    let kwargs = Kwargs::new()
        .set("path", "mnist/mnist_cnn.onnx")
        .unwrap()
        .set("threads", 2)
        .unwrap();
    let model = build_from_registry("tract", kwargs, Some(fixtures)).expect("build via alias");
    assert_eq!(model.describe(), "mnist_cnn.onnx");
    assert_eq!(model.input_shape(), Some(vec![28, 28, 1]));

    let zero = Kwargs::new()
        .set("path", CNN)
        .unwrap()
        .set("threads", 0)
        .unwrap();
    match build_from_registry("onnx", zero, None) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "threads"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    let zero_rows = Kwargs::new()
        .set("path", CNN)
        .unwrap()
        .set("batch_size", 0)
        .unwrap();
    match build_from_registry("onnx", zero_rows, None) {
        Err(MaxiError::InvalidKwarg { field, .. }) => assert_eq!(field, "batch_size"),
        other => panic!("expected InvalidKwarg, got {:?}", other.err()),
    }
    let chunked = Kwargs::new()
        .set("path", CNN)
        .unwrap()
        .set("batch_size", 8)
        .unwrap();
    let model = build_from_registry("onnx", chunked, None).expect("batch_size 8");
    let out = model.predict(npy(IMG_2953).view()).unwrap();
    assert_eq!(argmax(out.as_slice().unwrap()), 5);
    let unknown = Kwargs::new()
        .set("path", CNN)
        .unwrap()
        .set("batch", 3)
        .unwrap();
    assert!(matches!(
        build_from_registry("onnx", unknown, None),
        Err(MaxiError::UnknownKwarg { .. })
    ));
    assert!(matches!(
        build_from_registry("onnx", Kwargs::new(), None),
        Err(MaxiError::InvalidKwarg { .. })
    ));

    let by_ext = maxi_core::registry::load_model_file(Path::new(CNN)).expect("load by extension");
    let out = by_ext.predict(npy(IMG_2953).view()).unwrap();
    assert_eq!(argmax(out.as_slice().unwrap()), 5);
}

// ---- Throughput (informative, no asserts on time) -------------------------------------------

#[test]
#[ignore = "timing printout; run with --ignored --nocapture"]
fn throughput_batch_100() {
    let rows = six_rows();
    let batch = ArrayD::from_shape_fn(IxDyn(&[100, 28, 28, 1]), |i| {
        rows[[i[0] % 6, i[1], i[2], i[3]]]
    });
    for threads in [1, 2] {
        let model = OnnxModel::with_threads(CNN, threads).unwrap();
        model.predict(batch.view()).unwrap(); // warm-up
        let reps = 10;
        let start = Instant::now();
        for _ in 0..reps {
            model.predict(batch.view()).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "threads = {threads}: {:.0} rows/s ({} batches of 100 in {secs:.3} s)",
            (reps * 100) as f64 / secs,
            reps
        );
    }
}
