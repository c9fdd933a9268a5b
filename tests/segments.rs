//! Segmentation as a component: selection by name, one weight per segment, CEM per segment,
//! and the errors of bad segmentations.

use std::sync::Arc;

use maxi::ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use maxi::serde_json::json;
use maxi::{ExplanationGenerator, Kind, Kwargs, MaxiError, Model, SegmentationKind, model_fn};

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

/// An 8×8 RGB image, every entry 1.
fn ones_image() -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(&[8, 8, 3]), 1.0)
}

/// Two classes: class 1 scores the mean of the bottom-left 4×4 block (grid cell 2 of a
/// `cell_size = 4` grid), class 0 a constant 0.5 — that one segment decides the class.
fn one_segment_decides() -> Arc<dyn Model> {
    model_fn("bottom_left", |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        let mut out = ArrayD::zeros(IxDyn(&[n, 2]));
        for (i, item) in b.axis_iter(Axis(0)).enumerate() {
            let mut s = 0.0;
            for r in 4..8 {
                for c in 0..4 {
                    for k in 0..3 {
                        s += item[[r, c, k]];
                    }
                }
            }
            out[[i, 0]] = 0.5;
            out[[i, 1]] = s / 48.0;
        }
        out
    })
}

fn pp_per_segment(seed: u64) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 10.0, "K": 0.2})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.5, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 20})))
        .segmentation("grid", kw(json!({"cell_size": 4})))
        .num_iter(60)
        .seed(seed)
        .build()
        .expect("generator")
}

#[test]
fn segmentations_are_registered_by_name_and_alias() {
    let r = maxi::registry::global().expect("registry");
    for (name, canonical) in [
        ("slic", "slic"),
        ("SlicHandler", "slic"),
        ("watershed", "watershed"),
        ("WatershedHandler", "watershed"),
        ("quickshift", "quickshift"),
        ("grid", "grid"),
    ] {
        assert_eq!(
            r.get::<SegmentationKind>(name).expect(name).meta.name,
            canonical
        );
    }
    assert_eq!(r.metas(Some(Kind::Segmentation)).len(), 4);
}

#[test]
fn cem_pp_per_segment_finds_the_segment_that_decides_the_class() {
    let x = ones_image();
    let e = pp_per_segment(3)
        .run(x.view(), one_segment_decides())
        .expect("run");
    assert_eq!(e.unit, maxi::Unit::Segment);
    let labels = e.segments.as_ref().expect("segments");
    assert_eq!(labels.shape(), &[8, 8]);
    assert_eq!(e.outcome.valid, Some(true));
    // the variable is one kept share per segment: only segment 2 (bottom left) is kept
    let v = &e.outcome.variable;
    assert_eq!(v.shape(), &[4]);
    let kept: Vec<usize> = (0..4).filter(|&s| v[s] > 1e-3).collect();
    assert_eq!(kept, vec![2], "variable {v}");
    // the candidate is the image: segment 2's pixels at their share of x, the rest 0
    let c = &e.outcome.candidate;
    assert_eq!(c.shape(), &[8, 8, 3]);
    assert!((c[[5, 1, 2]] - v[2]).abs() < 1e-12 && c[[0, 0, 0]] == 0.0);
    assert!(e.model.rows <= 5000, "{} rows", e.model.rows);
}

#[test]
fn cem_per_segment_is_deterministic() {
    let x = ones_image();
    let bits = |seed| {
        let e = pp_per_segment(seed)
            .run(x.view(), one_segment_decides())
            .expect("run");
        e.history
            .iter()
            .map(|r| r.objective.to_bits())
            .chain(e.outcome.variable.iter().map(|v| v.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(7), bits(7));
    assert_ne!(bits(7), bits(8));
}

fn run_with(segmentation: &str, seg_kwargs: maxi::serde_json::Value, x: ArrayD<f64>) -> MaxiError {
    let g = ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP"})))
        .optimizer("ao_exp_grad", kw(json!({})))
        .gradient("urv", kw(json!({"sample_num": 4})))
        .segmentation(segmentation, kw(seg_kwargs))
        .num_iter(2);
    match g.build() {
        Err(e) => e,
        Ok(g) => g
            .run(x.view(), one_segment_decides())
            .expect_err("bad segmentation must fail"),
    }
}

#[test]
fn bad_segmentations_get_clear_errors() {
    // one segment: an explanation could say nothing
    let e = run_with("grid", json!({"cell_size": 8}), ones_image()).to_string();
    assert!(e.contains("single segment") && e.contains("grid"), "{e}");
    // a kwarg out of range is caught when the generator is built
    let e = run_with("slic", json!({"region_size": 0}), ones_image());
    assert!(
        matches!(&e, MaxiError::InvalidKwarg { kind: Kind::Segmentation, field, .. } if field == "region_size"),
        "{e}"
    );
    // a grey image to a colour-only segmenter
    let grey = ArrayD::from_elem(IxDyn(&[8, 8, 1]), 1.0);
    let e = run_with("quickshift", json!({}), grey).to_string();
    assert!(e.contains("needs an RGB image"), "{e}");
    // an input that is not an image
    let flat = ArrayD::from_elem(IxDyn(&[64]), 1.0);
    let e = run_with("grid", json!({"cell_size": 2}), flat).to_string();
    assert!(e.contains("[H, W]"), "{e}");
    // an unknown segmentation name lists the known ones
    let e = run_with("slick", json!({}), ones_image()).to_string();
    assert!(
        e.contains("unknown segmentation `slick`") && e.contains("slic"),
        "{e}"
    );
}

#[test]
fn cem_pn_per_segment_changes_the_segment_that_decides_the_class() {
    // class 1 (mean of segment 2 = 1 > 0.5) turns into class 0 once segment 2 darkens by
    // more than 0.5 + K; input_range [0, 1] leaves no room to brighten any segment
    let g = ExplanationGenerator::builder()
        .loss(
            "cem",
            kw(json!({"mode": "PN", "c": 10.0, "K": 0.1, "input_range": [0.0, 1.0]})),
        )
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.5, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 20})))
        .segmentation("grid", kw(json!({"cell_size": 4})))
        .num_iter(80)
        .seed(1)
        .build()
        .expect("generator");
    let e = g
        .run(ones_image().view(), one_segment_decides())
        .expect("run");
    assert_eq!(e.outcome.valid, Some(true));
    let v = &e.outcome.variable;
    let changed: Vec<usize> = (0..4).filter(|&s| v[s].abs() > 1e-3).collect();
    assert_eq!(changed, vec![2], "variable {v}");
    assert!(v[2] < -0.6 && v[2] >= -1.0, "{v}");
    // the candidate is the change per pixel: segment 2's pixels only
    let c = &e.outcome.candidate;
    assert_eq!(c.shape(), &[8, 8, 3]);
    assert_eq!(c[[6, 1, 0]], v[2]);
    assert_eq!(c[[0, 7, 2]], 0.0);
}
