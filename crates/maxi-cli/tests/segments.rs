//! Colour images end to end: the shipped CIFAR-10 configs (superpixel LIME and a PP per
//! segment) through the `maxi` binary, their outputs, the bundled copies, and the errors of a
//! bad `[segmentation]`.

use std::path::Path;

use maxi::ndarray::{Array1, Array2};
use ndarray_npy::read_npy;

mod common;
use common::{maxi, report, root};

fn explain(config: &Path, out: &Path) -> std::process::Output {
    maxi()
        .args(["explain", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run")
}

/// Checks the segmentation outputs and returns the labels and weights.
fn segment_outputs(out: &Path) -> (Array2<i32>, Array1<f64>) {
    for f in [
        "segments.png",
        "weights.png",
        "explanation.png",
        "heatmap.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let labels: Array2<i32> =
        read_npy(out.join("segments.npy")).expect("segments.npy is int32 [H, W]");
    let weights: Array1<f64> = read_npy(out.join("weights.npy")).expect("weights.npy is f64 [n]");
    assert_eq!(labels.shape(), &[32, 32]);
    let n = weights.len();
    assert!((20..=40).contains(&n), "{n} segments");
    // labels 0..n, each used
    let mut used = vec![false; n];
    for &l in &labels {
        used[usize::try_from(l).expect("label ≥ 0")] = true;
    }
    assert!(used.iter().all(|u| *u));
    let r = report(out);
    assert_eq!(r["segmentation"]["segments"], n);
    assert_eq!(r["config"]["segmentation"]["name"], "slic");
    (labels, weights)
}

#[test]
fn cifar10_lime_config_writes_segments_and_weights() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let output = explain(&root().join("configs/cifar10_lime.toml"), &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, weights) = segment_outputs(&out);
    let r = report(&out);
    // the samples are the model rows; the class is the cat's (3)
    assert_eq!(r["model_rows"], 1000);
    assert_eq!(r["explanation"]["label"], "LIME");
    assert_eq!(r["explanation"]["class"], 3);
    // the surrogate explains: a weight that matters, and the image drawn as the heat map
    assert!(weights.iter().any(|w| w.abs() > 0.01), "{weights}");
    // the verdict counts the segments and names the heaviest one
    let verdict = r["verdict"].as_str().expect("verdict");
    let (top, _) = weights
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("weights");
    for needle in [
        format!(" of {} segments raise 'cat'", weights.len()),
        format!(
            "(strongest: segment {top}, weight {:.3}; fit loss",
            weights[top]
        ),
    ] {
        assert!(verdict.contains(&needle), "{needle:?} not in {verdict:?}");
    }
    // same seed, same bytes
    let again = tmp.path().join("again");
    assert!(
        explain(&root().join("configs/cifar10_lime.toml"), &again)
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(out.join("weights.npy")).expect("first"),
        std::fs::read(again.join("weights.npy")).expect("second")
    );
}

#[test]
fn cifar10_pp_segments_config_finds_a_valid_pp_within_5000_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let output = explain(&root().join("configs/cifar10_pp_segments.toml"), &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, kept) = segment_outputs(&out);
    let r = report(&out);
    assert_eq!(r["valid"], true);
    assert!(
        r["model_rows"].as_u64().expect("rows") <= 5000,
        "{}",
        r["model_rows"]
    );
    let used = kept.iter().filter(|v| **v > 1e-3).count();
    assert!(
        used >= 1 && used < kept.len(),
        "{used} of {} segments",
        kept.len()
    );
    assert!(kept.iter().all(|v| (0.0..=1.0).contains(v)));
    let verdict = r["verdict"].as_str().expect("verdict");
    assert!(
        verdict.contains(&format!("{used} of {} segments keep 'cat'", kept.len())),
        "{verdict}"
    );
}

#[test]
fn the_shipped_configs_run_from_any_folder() {
    let cwd = tempfile::tempdir().expect("cwd");
    let cache = tempfile::tempdir().expect("cache");
    let output = maxi()
        .current_dir(cwd.path())
        .env("XDG_CACHE_HOME", cache.path())
        .args([
            "explain",
            "--quiet",
            "--config",
            "configs/cifar10_lime.toml",
            "--out",
            "o",
        ])
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(cwd.path().join("o/weights.npy").is_file());
}

fn with_segmentation(table: &str) -> std::process::Output {
    let text = std::fs::read_to_string(root().join("configs/cifar10_lime.toml")).expect("config");
    let start = text.find("[segmentation]").expect("table");
    let end = text.find("[loss]").expect("loss");
    let text = format!("{}{table}\n\n{}", &text[..start], &text[end..]).replace(
        "../fixtures",
        &root().join("fixtures").display().to_string(),
    );
    let tmp = tempfile::tempdir().expect("tmp").keep();
    let cfg = tmp.join("c.toml");
    std::fs::write(&cfg, text).expect("write");
    explain(&cfg, &tmp.join("out"))
}

#[test]
fn bad_segmentations_are_usage_errors_that_say_why() {
    for (table, needles) in [
        (
            "[segmentation]\nname = \"grid\"\ncell_size = 32",
            &["single segment", "grid"][..],
        ),
        (
            "[segmentation]\nname = \"slic\"\nregion_size = 0",
            &["[segmentation]", "region_size"][..],
        ),
        (
            "[segmentation]\nname = \"slic\"\nregionsize = 5",
            &["no kwarg `regionsize`", "region_size"][..],
        ),
        (
            "[segmentation]\nname = \"slick\"",
            &["unknown segmentation `slick`", "slic"][..],
        ),
    ] {
        let output = with_segmentation(table);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{table}: {err}");
        for n in needles {
            assert!(err.contains(n), "{table}: `{n}` not in {err}");
        }
    }
}

#[test]
fn list_shows_the_segmentations_and_lime() {
    let output = maxi().args(["list"]).output().expect("run");
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "segmentation (4)",
        "SlicHandler",
        "WatershedHandler",
        "quickshift",
        "region_size: integer = 8",
        "LimeLoss",
        "SuperpixelLimeLoss",
        "LimeGradient",
    ] {
        assert!(text.contains(needle), "list lacks `{needle}`");
    }
}

#[test]
fn imagenet_lime_config_explains_the_photo_with_named_classes() {
    // the 224×224 photo through the preprocess chain: SqueezeNet's class, segments and weights
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("out");
    let output = explain(&root().join("configs/imagenet_lime.toml"), &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let labels: Array2<i32> = read_npy(out.join("segments.npy")).expect("segments.npy");
    let weights: Array1<f64> = read_npy(out.join("weights.npy")).expect("weights.npy");
    assert_eq!(labels.shape(), &[224, 224]);
    assert!((60..=140).contains(&weights.len()), "{}", weights.len());
    assert!(out.join("segments.png").is_file() && out.join("weights.png").is_file());
    let r = report(&out);
    // the fixture README: photo 00 is class 243, 'bull mastiff'
    assert_eq!(r["original_class"], 243);
    assert_eq!(r["model_rows"], 1000);
    let verdict = r["verdict"].as_str().expect("verdict");
    assert!(verdict.contains("'bull mastiff'"), "{verdict}");
    assert!(weights.iter().any(|w| *w > 0.01), "{weights}");
}
