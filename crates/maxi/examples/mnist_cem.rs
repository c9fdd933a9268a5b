//! Tuned CEM explanations on the bundled MNIST CNN: the pertinent positive of test image 2953
//! (classified 5) and the pertinent negative of test image 340 (classified 3), each within
//! 20,000 model rows (199 updates × (1 + 99) rows + 2).
//!
//! ```text
//! cargo run --release --example mnist_cem -- [pp|pn|both] [key=value ...]
//! ```
//! `key=value` overrides a setting, e.g. `loss.c=20 optimizer.l1=0.5 gradient.sample_num=50
//! num_iter=300 index=2953 seed=1`. The last line printed is a JSON array of summaries.

use std::sync::Arc;

use maxi::serde_json::{self, Value, json};
use maxi::{ExplanationGenerator, Kwargs, Model, mnist, summary};

/// Tuned settings for the PP of image 2953.
fn pp_settings() -> Value {
    json!({
        "index": 2953, "num_iter": 199, "seed": 0,
        "loss": {"mode": "PP", "c": 10.0, "K": 2.0, "gamma": 0.0, "no_info_val": -0.5},
        "optimizer": {"name": "ao_exp_grad", "l1": 1.0, "l2": 0.0, "eta": 1.0},
        "gradient": {"sample_num": 99},
    })
}

/// Tuned settings for the PN of image 340.
fn pn_settings() -> Value {
    json!({
        "index": 340, "num_iter": 199, "seed": 0,
        "loss": {"mode": "PN", "c": 10.0, "K": 2.0, "gamma": 0.0, "lower": 0.0, "input_range": [-0.5, 0.5]},
        "optimizer": {"name": "ao_exp_grad", "l1": 5.0, "l2": 0.0, "eta": 1.0},
        "gradient": {"sample_num": 99},
    })
}

fn apply(settings: &mut Value, kv: &str) -> Result<(), String> {
    let (key, raw) = kv
        .split_once('=')
        .ok_or_else(|| format!("`{kv}` is not key=value"))?;
    let value: Value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let mut target = &mut *settings;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        target = target
            .get_mut(*p)
            .ok_or_else(|| format!("unknown section `{p}` in `{kv}`"))?;
    }
    target[parts[parts.len() - 1]] = value;
    Ok(())
}

fn explain(
    settings: &Value,
    cnn: &Arc<dyn Model>,
    ae: &Arc<dyn Model>,
) -> Result<Value, Box<dyn std::error::Error>> {
    let index = settings["index"].as_u64().unwrap_or(0) as usize;
    let x = mnist::test_image(index)?;
    let mut loss = settings["loss"].clone();
    let with_ae = loss["gamma"].as_f64().unwrap_or(0.0) > 0.0;
    let mut optimizer = settings["optimizer"].clone();
    let opt_name = optimizer["name"]
        .as_str()
        .unwrap_or("ao_exp_grad")
        .to_string();
    if let Some(o) = optimizer.as_object_mut() {
        o.remove("name");
    }
    if let Some(l) = loss.as_object_mut() {
        l.remove("AE");
    }
    let mut loss_kwargs = Kwargs::try_from(loss)?;
    if with_ae {
        loss_kwargs = loss_kwargs.with_model("AE", ae.clone());
    }
    let generator = ExplanationGenerator::builder()
        .loss("cem", loss_kwargs)
        .optimizer(opt_name, Kwargs::try_from(optimizer)?)
        .gradient("urv", Kwargs::try_from(settings["gradient"].clone())?)
        .num_iter(settings["num_iter"].as_u64().unwrap_or(200) as usize)
        .seed(settings["seed"].as_u64().unwrap_or(0))
        .build()?;
    let e = generator.run(x.view(), cnn.clone())?;
    let s = summary::summarize(&e, x.view(), cnn.as_ref())?;
    let verdict = if s.mode.starts_with("PP") {
        format!(
            "PP of image {index}: {} of {} pixels alone are classified {} (original {})",
            s.nonzero,
            x.len(),
            s.explanation_class,
            s.original_class
        )
    } else {
        format!(
            "PN of image {index}: adding {} pixels turns class {} into {}",
            s.nonzero, s.original_class, s.explanation_class
        )
    };
    eprintln!(
        "{verdict}  (l1 {:.2}, {} model rows, {:.1} s)",
        s.l1, s.model_rows, s.wall_s
    );
    let mut v = serde_json::to_value(&s)?;
    v["index"] = json!(index);
    v["config"] = e.config.clone();
    Ok(v)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args
        .iter()
        .find(|a| !a.contains('='))
        .map(String::as_str)
        .unwrap_or("both");
    let mut runs = match which {
        "pp" => vec![pp_settings()],
        "pn" => vec![pn_settings()],
        "both" => vec![pp_settings(), pn_settings()],
        other => return Err(format!("unknown run `{other}`; use pp, pn or both").into()),
    };
    for kv in args.iter().filter(|a| a.contains('=')) {
        for r in &mut runs {
            apply(r, kv)?;
        }
    }
    let dir = mnist::bundled_fixtures_dir().join("mnist");
    let cnn: Arc<dyn Model> = Arc::new(maxi::OnnxModel::load(dir.join("mnist_cnn.onnx"))?);
    let ae: Arc<dyn Model> = Arc::new(maxi::OnnxModel::load(dir.join("mnist_ae.onnx"))?);
    let mut out = Vec::new();
    for r in &runs {
        out.push(explain(r, &cnn, &ae)?);
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
