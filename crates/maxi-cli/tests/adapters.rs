//! End-to-end runs of the model adapters and photo inputs through the `maxi` binary: a region
//! of an MNIST digit, the bundled ImageNet photo through SqueezeNet's preprocessing chain, and
//! the errors for a rectangle outside the image and a chain that does not fit.

use std::path::{Path, PathBuf};

use maxi::serde_json::{self, Value};

mod common;
use common::{maxi, pp_toml};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .canonicalize()
        .expect("fixtures")
}

fn run_config(name: &str, toml: &str) -> (std::process::Output, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp").keep();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, toml).expect("write config");
    let out = dir.join("out");
    let output = maxi()
        .args(["explain", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    (output, out)
}

fn mnist_region(region: &str) -> String {
    pp_toml(
        "num_iter = 4\nseed = 1",
        &format!("region = {region}"),
        "path = \"mnist:2953\"",
        "no_info_val = -0.5",
        "l2 = 0.0",
        "name = \"urv\"\nsample_num = 10",
    )
}

#[test]
fn a_region_is_explained_on_its_own_and_shown_on_the_full_image() {
    let (output, out) = run_config("region", &mnist_region("[4, 6, 20, 16]"));
    // 0, or 3 when the short run found no valid explanation: either way it ran and wrote
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report"))
            .expect("json");
    // the explained input is the 20×16 crop; the model still sees whole 28×28 images
    assert_eq!(report["input"]["shape"], serde_json::json!([16, 20, 1]));
    assert_eq!(report["entries"], 320);
    assert_eq!(
        report["config"]["model"]["region"],
        serde_json::json!([4, 6, 20, 16])
    );
    assert!(out.join("region.png").is_file());
    let saved: maxi::ndarray::ArrayD<f64> =
        ndarray_npy::read_npy(out.join("iter_4.npy")).expect("savepoint");
    assert_eq!(saved.shape(), &[16, 20, 1]);
}

#[test]
fn a_rectangle_outside_the_image_is_a_usage_error() {
    let (output, out) = run_config("outside", &mnist_region("[20, 0, 10, 5]"));
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("[model] region") && err.contains("outside the 28×28 image"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn the_bundled_photo_through_squeezenet_names_its_class() {
    // two updates of the per-pixel PP of configs/imagenet_pp.toml, on the tract backend
    let config = fixtures().join("../configs/imagenet_pp.toml");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("num_iter = 100", "num_iter = 2")
        .replace("sample_num = 100", "sample_num = 4")
        .replace("\"../fixtures", &format!("\"{}", fixtures().display()));
    let (output, out) = run_config("photo", &text);
    // 0, or 3 when the short run found no valid explanation: either way it ran and wrote
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["original_class"], 243);
    assert_eq!(report["original_class_name"], "bull mastiff");
    assert_eq!(report["input"]["shape"], serde_json::json!([224, 224, 3]));
    assert!(
        report["verdict"]
            .as_str()
            .is_some_and(|v| v.contains("'bull mastiff'")),
        "{report}"
    );
    assert_eq!(report["model_rows"], 1 + 2 * 5 + 1);
}

#[test]
fn a_chain_that_does_not_fit_the_model_is_a_usage_error() {
    let config = fixtures().join("../configs/imagenet_pp.toml");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(
            "{ mean = [104.0, 117.0, 123.0] }",
            "{ mean = [104.0, 117.0] }",
        )
        .replace("\"../fixtures", &format!("\"{}", fixtures().display()));
    let (output, _) = run_config("bad_chain", &text);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("mean has 2 values") && err.contains("3 channel"),
        "{err}"
    );
}
