//! Shared helpers for the workspace-level integration tests: small models with known answers.

use std::sync::Arc;

use maxi::ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn};
use maxi::{Model, model_fn};

/// A deterministic pseudo-random matrix `[rows, cols]` with entries in [-1, 1].
pub fn matrix(rows: usize, cols: usize, salt: u64) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        let k = (i * cols + j) as f64 + salt as f64 * 0.37;
        (k * 1.618_033_988_7).sin() * 0.5 + (k * 0.577).cos() * 0.5
    })
}

/// A linear classifier `s = W·vec(x) + b` over items of shape `shape`.
pub fn linear_model(shape: &[usize], classes: usize, salt: u64) -> (Arc<dyn Model>, Array2<f64>) {
    let d: usize = shape.iter().product();
    let w = matrix(classes, d, salt);
    let wc = w.clone();
    let model = model_fn("linear", move |batch: ArrayViewD<'_, f64>| {
        let b = batch.shape()[0];
        let flat = batch
            .to_shape((b, wc.shape()[1]))
            .expect("batch shape")
            .to_owned();
        let bias = Array2::from_shape_fn((1, wc.shape()[0]), |(_, c)| c as f64 * 0.1);
        (flat.dot(&wc.t()) + bias).into_dyn()
    });
    (model, w)
}

/// A deterministic input of the given shape with entries in [0, 1].
pub fn input(shape: &[usize], salt: u64) -> ArrayD<f64> {
    let d: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..d)
            .map(|i| ((i as f64 + salt as f64) * 0.731).sin().abs())
            .collect(),
    )
    .expect("shape")
}

/// Class with the largest score for one item.
pub fn predict_class(model: &dyn Model, x: ArrayViewD<'_, f64>) -> usize {
    let s = model.predict(x.insert_axis(Axis(0))).expect("model");
    let row = s.index_axis(Axis(0), 0);
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 { (i, *v) } else { best }
        })
        .0
}

/// Path of a bundled fixture file.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(rel)
}
