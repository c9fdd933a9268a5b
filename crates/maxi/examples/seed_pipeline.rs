//! The seed document's pipeline, by name and with its kwargs verbatim: CEM (PP) with the
//! autoencoder, AO-ExpGrad and URV, 1500 updates, savepoints every 500, on MNIST test image 2953
//! with the bundled CNN and autoencoder.
//!
//! ```text
//! cargo run --release --example seed_pipeline -- [--num-iter N] [--seed S]
//! ```
//! The last line printed is one JSON object with the outcome.

use std::sync::Arc;

use maxi::serde_json::{self, json};
use maxi::{ExplanationGenerator, Kwargs, Model, Observer, StepRecord, mnist, summary};

struct Progress {
    every: usize,
}

impl Observer for Progress {
    fn on_step(&self, r: &StepRecord) {
        if r.iteration == 1 || r.iteration.is_multiple_of(self.every) {
            eprintln!(
                "iter {:>5}  attack loss {:>10.4}  l1 {:>9.3}  objective {:>10.4}  rows {}",
                r.iteration, r.attack_loss, r.l1_norm, r.objective, r.model_rows
            );
        }
    }
}

fn arg(name: &str) -> Result<Option<u64>, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("{name} needs a whole number, e.g. {name} 100")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let num_iter = arg("--num-iter")?.unwrap_or(1500) as usize;
    let seed = arg("--seed")?.unwrap_or(0);
    let dir = mnist::bundled_fixtures_dir().join("mnist");
    let cnn: Arc<dyn Model> = Arc::new(maxi::OnnxModel::load(dir.join("mnist_cnn.onnx"))?);
    let ae: Arc<dyn Model> = Arc::new(maxi::OnnxModel::load(dir.join("mnist_ae.onnx"))?);
    let x = mnist::test_image(2953)?;

    // the seed's kwargs, verbatim; the autoencoder is passed as a model object
    let loss_kwargs = json!({"mode": "PP", "c": 100, "gamma": 300, "K": 30});
    let optimizer_kwargs = json!({"l1": 0.1, "l2": 30, "eta": 1.0});
    let gradient_kwargs = json!({"mu": null, "num_iter": 150});

    let generator = ExplanationGenerator::builder()
        .loss(
            "TF_CEMLoss",
            Kwargs::try_from(loss_kwargs)?.with_model("AE", ae),
        )
        .optimizer("AoExpGradOptimizer", Kwargs::try_from(optimizer_kwargs)?)
        .gradient("URVGradientEstimator", Kwargs::try_from(gradient_kwargs)?)
        .num_iter(num_iter)
        .save_freq(500)
        .seed(seed)
        .observer(Arc::new(Progress {
            every: (num_iter / 10).max(1),
        }))
        .build()?;
    let explanation = generator.run(x.view(), cnn.clone())?;
    let s = summary::summarize(&explanation, x.view(), cnn.as_ref())?;
    eprintln!(
        "savepoints at updates {:?}",
        explanation.savepoints.keys().collect::<Vec<_>>()
    );
    println!(
        "{}",
        serde_json::to_string(&json!({
            "original_class": s.original_class,
            "explanation_class": s.explanation_class,
            "nonzero": s.nonzero,
            "l1": s.l1,
            "attack_loss": s.attack_loss,
            "model_rows": s.model_rows,
            "wall_s": s.wall_s,
            "model_s": s.model_s,
        }))?
    );
    Ok(())
}
