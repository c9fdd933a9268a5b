use super::*;
use maxi_core::ndarray::{ArrayD, ArrayViewD, IxDyn};
use maxi_core::{Kwargs, model_fn};

/// Returns each row of its input flattened: shows what an adapter passed on.
struct Echo {
    shape: Vec<usize>,
}

impl Model for Echo {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        assert_eq!(
            &batch.shape()[1..],
            &self.shape[..],
            "adapter passed the wrong shape"
        );
        let b = batch.shape()[0];
        let flat: Vec<f64> = batch.iter().copied().collect();
        Ok(ArrayD::from_shape_vec(IxDyn(&[b, flat.len() / b.max(1)]), flat).expect("shape"))
    }
    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.shape.clone())
    }
}

fn echo(shape: &[usize]) -> Arc<dyn Model> {
    Arc::new(Echo {
        shape: shape.to_vec(),
    })
}

fn spec(v: Value) -> Result<AdapterSpec> {
    let Value::Object(mut m) = v else {
        panic!("not a table")
    };
    let s = AdapterSpec::take_from(&mut m)?;
    assert!(m.keys().all(|k| !AdapterSpec::KEYS.contains(&k.as_str())));
    Ok(s)
}

#[test]
fn the_preprocess_chain_on_a_known_image_equals_a_hand_computation() {
    // RGB [H=2, W=2, C=3] image, value 100·row + 10·col + channel; the model takes BGR
    // [3, 2, 2] minus a per-channel mean (B 10, G 20, R 30), halved.
    let chain = json!({"preprocess": [
        {"reorder": [2, 1, 0]}, {"mean": [10.0, 20.0, 30.0]}, {"scale": 0.5},
        {"layout": "HWC->CHW"}
    ]});
    let model = spec(chain)
        .expect("valid")
        .wrap(echo(&[3, 2, 2]))
        .expect("wraps");
    assert_eq!(model.input_shape(), Some(vec![2, 2, 3]));
    let image = ArrayD::from_shape_fn(IxDyn(&[1, 2, 2, 3]), |i| {
        (100 * i[1] + 10 * i[2] + i[3]) as f64
    });
    let out = model.predict(image.view()).expect("predict");
    // out[k, r, c] = 0.5·(image[r, c, 2 − k] − mean[k]), flattened CHW
    let mut want = Vec::new();
    for k in 0..3 {
        for r in 0..2 {
            for c in 0..2 {
                let v = (100 * r + 10 * c + (2 - k)) as f64;
                want.push(0.5 * (v - [10.0, 20.0, 30.0][k]));
            }
        }
    }
    assert_eq!(out.iter().copied().collect::<Vec<_>>(), want);
    // two entries by hand: B of pixel (1, 0) = 0.5·(102 − 10); R of pixel (0, 1) = 0.5·(10 − 30)
    assert_eq!(out[[0, 2]], 46.0);
    assert_eq!(out[[0, 2 * 4 + 1]], -10.0);
    // std divides per channel; one value applies to all channels
    let chain = json!({"preprocess": [{"std": [2.0, 4.0, 8.0]}, {"mean": [1.0]}]});
    let model = spec(chain)
        .expect("valid")
        .wrap(echo(&[2, 2, 3]))
        .expect("wraps");
    let out = model.predict(image.view()).expect("predict");
    assert_eq!(out[[0, 3 * 3 + 2]], (112.0 / 8.0) - 1.0);
    assert_eq!(out[[0, 1]], (1.0 / 4.0) - 1.0);
}

#[test]
fn chains_that_do_not_fit_the_model_are_refused_with_the_reason() {
    let err = |v: Value, shape: &[usize]| -> String {
        match spec(v).and_then(|s| s.wrap(echo(shape))) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(json!({"preprocess": [{"mean": [1.0, 2.0]}]}), &[4, 4, 3]);
    assert!(
        e.contains("mean has 2 values") && e.contains("3 channel"),
        "{e}"
    );
    let e = err(json!({"preprocess": [{"layout": "hwc_to_chw"}]}), &[28, 28]);
    assert!(e.contains("needs a 3-D item"), "{e}");
    let e = err(json!({"preprocess": [{"reorder": [0, 0, 1]}]}), &[4, 4, 3]);
    assert!(e.contains("not a permutation"), "{e}");
    let e = err(json!({"preprocess": [{"reorder": [1, 0]}]}), &[4, 4, 3]);
    assert!(e.contains("lists 2 channels"), "{e}");
    let e = err(json!({"preprocess": [{"std": [0.0]}]}), &[4, 4, 3]);
    assert!(e.contains("std must be positive"), "{e}");
    let e = err(json!({"preprocess": [{"rotate": 90}]}), &[4, 4, 3]);
    assert!(
        e.contains("[model] preprocess") && e.contains("write it like"),
        "{e}"
    );
    let e = err(json!({"preprocess": []}), &[4, 4, 3]);
    assert!(e.contains("empty chain"), "{e}");
}

#[test]
fn large_batches_go_to_the_model_in_chunks_with_the_same_result() {
    // 224×224×3 items: 27 rows per inner call
    assert_eq!(rows_per_call(224 * 224 * 3), 27);
    let rows = chunks::stacked(10, 3, |s, e| {
        Ok(ArrayD::from_shape_fn(IxDyn(&[e - s, 2]), |i| {
            (s + i[0]) as f64 + 0.5 * i[1] as f64
        }))
    })
    .expect("stacked");
    let want = ArrayD::from_shape_fn(IxDyn(&[10, 2]), |i| i[0] as f64 + 0.5 * i[1] as f64);
    assert_eq!(rows, want);
}

#[test]
fn binary_confidence_on_known_masks() {
    let quantized = |v: Value| spec(json!({"quantizer": v})).expect("valid");
    // masks of 4 entries in 0..255: full, empty, half, a quarter on
    let masks = ArrayD::from_shape_vec(
        IxDyn(&[4, 4]),
        vec![
            255.0, 255.0, 255.0, 255.0, //
            0.0, 0.0, 0.0, 0.0, //
            127.5, 127.5, 127.5, 127.5, //
            255.0, 0.0, 0.0, 0.0,
        ],
    )
    .expect("masks");
    let identity = model_fn("mask", |b: ArrayViewD<'_, f64>| b.to_owned());
    let m = quantized(json!("binary_confidence"))
        .wrap(identity.clone())
        .expect("wrap");
    let s = m.predict(masks.view()).expect("scores");
    assert_eq!(s.shape(), &[4, 2]);
    let want = [[-1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [0.5, -0.5]];
    for (row, w) in s.outer_iter().zip(want) {
        assert_eq!(row.iter().copied().collect::<Vec<_>>(), w.to_vec());
    }
    // max_value rescales: the same masks scaled to 0..1
    let m = quantized(json!({"name": "binary_confidence", "max_value": 1.0}))
        .wrap(identity.clone())
        .expect("wrap");
    let s = m.predict((&masks / 255.0).view()).expect("scores");
    assert_eq!(
        s.outer_iter()
            .nth(3)
            .map(|r| r.iter().copied().collect::<Vec<_>>()),
        Some(vec![0.5, -0.5])
    );
    // identity passes outputs through
    let m = quantized(json!("identity")).wrap(identity).expect("wrap");
    assert_eq!(m.predict(masks.view()).expect("scores"), masks);
    // checked kwargs
    for (bad, says) in [
        (json!("binary"), "write it like"),
        (
            json!({"name": "identity", "max_value": 2.0}),
            "only applies to binary_confidence",
        ),
        (
            json!({"name": "binary_confidence", "max_value": 0.0}),
            "positive finite",
        ),
    ] {
        let e = spec(json!({"quantizer": bad}))
            .expect_err("accepted")
            .to_string();
        assert!(e.contains(says) && e.contains("[model] quantizer"), "{e}");
    }
}

const AE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/mnist/mnist_ae.onnx"
);

#[test]
fn the_mnist_autoencoder_explained_as_a_binary_decision() {
    // The autoencoder returns an image in about [-0.63, 0.64]; with max_value 0.5 a
    // reconstruction whose mean is above 0.25 is class 1 ("mostly ink").
    let ae: Arc<dyn Model> = Arc::new(maxi::OnnxModel::with_threads(AE, 1).expect("AE"));
    let spec =
        spec(json!({"quantizer": {"name": "binary_confidence", "max_value": 0.5}})).expect("valid");
    let decision = spec.wrap(ae.clone()).expect("wrap");
    let x = maxi::mnist::test_image(2953).expect("image");
    let batch = ndarray_stack(&[x.clone(), x.mapv(|v| -v)]);
    let rec = ae.predict(batch.view()).expect("AE");
    let scores = decision.predict(batch.view()).expect("scores");
    for (i, row) in rec.outer_iter().enumerate() {
        let mean = row.iter().sum::<f64>() / row.len() as f64;
        let s = 2.0 * mean / 0.5 - 1.0;
        assert!((scores[[i, 0]] + s).abs() < 1e-12 && (scores[[i, 1]] - s).abs() < 1e-12);
    }
    // the digit (mostly background) is class 0, its negative (mostly ink) class 1
    assert!(
        scores[[0, 0]] > scores[[0, 1]] && scores[[1, 1]] > scores[[1, 0]],
        "{scores}"
    );

    // and CEM explains that decision: the pixels that keep "mostly background"
    let g = maxi::ExplanationGenerator::builder()
        .loss(
            "cem",
            Kwargs::try_from(json!({"mode": "PP", "K": 0.5, "no_info_val": 0.5})).expect("kw"),
        )
        .optimizer(
            "ao_exp_grad",
            Kwargs::try_from(json!({"l1": 0.01})).expect("kw"),
        )
        .gradient(
            "urv",
            Kwargs::try_from(json!({"sample_num": 20})).expect("kw"),
        )
        .num_iter(5)
        .build()
        .expect("pipeline");
    let e = g.run(x.view(), decision).expect("run");
    assert_eq!(e.description.class, Some(0));
    assert_eq!(e.model.rows, 1 + 5 * 21 + 1);
}

fn ndarray_stack(items: &[ArrayD<f64>]) -> ArrayD<f64> {
    let views: Vec<_> = items
        .iter()
        .map(|a| a.view().insert_axis(maxi_core::ndarray::Axis(0)))
        .collect();
    maxi_core::ndarray::concatenate(maxi_core::ndarray::Axis(0), &views).expect("stack")
}

#[test]
fn region_pastes_exactly_and_rejects_a_rectangle_outside_the_image() {
    // a 6-row, 5-column, 1-channel image; the region is columns 1..4, rows 2..4
    let image = ArrayD::from_shape_fn(IxDyn(&[6, 5, 1]), |i| (10 * i[0] + i[1]) as f64);
    let s = spec(json!({"region": [1, 2, 3, 2]})).expect("valid");
    let region = s
        .region(echo(&[6, 5, 1]), image.clone())
        .expect("fits")
        .expect("set");
    assert_eq!(region.input_shape(), Some(vec![2, 3, 1]));
    let crop = region.crop();
    assert_eq!(
        crop.iter().copied().collect::<Vec<_>>(),
        vec![21.0, 22.0, 23.0, 31.0, 32.0, 33.0]
    );
    let rows = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3, 1]), |i| {
        -((1 + i[0] * 100 + i[1] * 3 + i[2]) as f64)
    });
    let out = region.predict(rows.view()).expect("predict");
    for b in 0..2 {
        for r in 0..6 {
            for c in 0..5 {
                let inside = (2..4).contains(&r) && (1..4).contains(&c);
                let want = if inside {
                    rows[[b, r - 2, c - 1, 0]]
                } else {
                    image[[r, c, 0]]
                };
                assert_eq!(out[[b, r * 5 + c]], want, "row {b}, pixel ({r}, {c})");
            }
        }
    }
    assert_eq!(region.paste(&image, crop.view()), image);
    // the table form, and CHW images
    let chw = ArrayD::from_shape_fn(IxDyn(&[3, 6, 5]), |i| {
        (100 * i[0] + 10 * i[1] + i[2]) as f64
    });
    let s = spec(json!({"region": {"x": 4, "y": 0, "w": 1, "h": 6}})).expect("valid");
    let r = s.region(echo(&[3, 6, 5]), chw).expect("fits").expect("set");
    assert_eq!(r.input_shape(), Some(vec![3, 6, 1]));
    assert_eq!(r.crop()[[2, 5, 0]], 254.0);
    // outside the image: a clear error naming the limits
    for bad in [
        json!([3, 2, 3, 2]),
        json!([0, 5, 1, 2]),
        json!([0, 0, 6, 1]),
    ] {
        let s = spec(json!({ "region": bad })).expect("valid kwargs");
        let e = s
            .region(echo(&[6, 5, 1]), image.clone())
            .err()
            .expect("accepted")
            .to_string();
        assert!(
            e.contains("outside the 5×6 image") && e.contains("x + w ≤ 5 and y + h ≤ 6"),
            "{e}"
        );
    }
    let e = spec(json!({"region": [1, 1, 0, 2]}))
        .expect_err("empty")
        .to_string();
    assert!(e.contains("is empty"), "{e}");
    let e = spec(json!({"region": [1, 1, 2]}))
        .expect_err("short")
        .to_string();
    assert!(e.contains("[x, y, w, h]"), "{e}");
}

#[test]
fn catalog_lists_every_adapter_with_its_schema() {
    let keys: Vec<&str> = catalog().iter().map(|a| a.key).collect();
    assert_eq!(keys, AdapterSpec::KEYS);
    for a in catalog() {
        assert!(a.schema.get("properties").is_some(), "{}", a.key);
    }
    let s = spec(json!({"quantizer": "binary_confidence", "region": [0, 0, 2, 2]})).expect("ok");
    assert_eq!(
        Value::Object(s.config()),
        json!({"quantizer": {"name": "binary_confidence", "max_value": null}, "region": [0, 0, 2, 2]})
    );
}
