//! `maxi::batch`: many inputs with one pipeline — one result per input, the same whatever the
//! number of workers, each input's error its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use maxi::batch::{Batch, input_seed};
use maxi::ndarray::ArrayD;
use maxi::serde_json::json;
use maxi::{ExplanationGenerator, Kwargs, Model, OnnxModel, mnist};

fn cnn() -> Arc<dyn Model> {
    let path = mnist::bundled_fixtures_dir().join("mnist/mnist_cnn.onnx");
    Arc::new(OnnxModel::with_threads(path, 1).expect("bundled CNN"))
}

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

fn short_pp(seed: u64) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss(
            "cem",
            kw(json!({"mode": "PP", "c": 10.0, "K": 2.0, "gamma": 0.0, "no_info_val": -0.5})),
        )
        .optimizer("ao_exp_grad", kw(json!({"l1": 1.0, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 9})))
        .num_iter(6)
        .seed(seed)
        .build()
        .expect("generator")
}

fn images() -> Vec<ArrayD<f64>> {
    (0..6)
        .map(|i| mnist::test_image(i).expect("image"))
        .collect()
}

#[test]
fn results_do_not_depend_on_the_number_of_workers_and_match_single_runs() {
    let g = short_pp(11);
    let xs = images();
    let one = Batch::new(&g).workers(1).run(&xs, cnn());
    let three = Batch::new(&g).workers(3).run(&xs, cnn());
    assert_eq!(one.len(), xs.len());
    for (i, (a, b)) in one.iter().zip(&three).enumerate() {
        let (a, b) = (a.as_ref().expect("ok"), b.as_ref().expect("ok"));
        assert_eq!(a.seed, input_seed(11, i as u64));
        assert_eq!(a.outcome.candidate, b.outcome.candidate, "input {i}");
        assert_eq!(a.model.rows, b.model.rows);
        // the same as explaining that input alone with its seed
        let alone = g
            .run_seeded(xs[i].view(), cnn(), input_seed(11, i as u64))
            .expect("run");
        assert_eq!(alone.outcome.candidate, a.outcome.candidate);
    }
    // inputs get different seeds: two runs of one image under two indices differ
    let same = vec![xs[0].clone(), xs[0].clone()];
    let r = Batch::new(&g).workers(2).run(&same, cnn());
    let (a, b) = (r[0].as_ref().expect("ok"), r[1].as_ref().expect("ok"));
    assert_ne!(a.outcome.candidate, b.outcome.candidate);
}

#[test]
fn a_failing_input_gets_its_own_error_and_the_others_succeed() {
    let g = short_pp(1);
    let mut xs = images();
    xs[2] = ArrayD::zeros(maxi::ndarray::IxDyn(&[3, 3])); // not the model's shape
    xs[4][[0, 0, 0]] = f64::NAN;
    let r = Batch::new(&g).workers(2).run(&xs, cnn());
    assert_eq!(r.len(), 6);
    for (i, res) in r.iter().enumerate() {
        match i {
            2 => assert!(
                res.as_ref()
                    .expect_err("bad shape")
                    .to_string()
                    .contains("shape"),
                "{:?}",
                res.as_ref().err()
            ),
            4 => assert!(
                res.as_ref()
                    .expect_err("NaN")
                    .to_string()
                    .contains("finite")
            ),
            _ => assert!(res.is_ok(), "input {i}: {:?}", res.as_ref().err()),
        }
    }
}

#[test]
fn a_raised_stop_flag_starts_no_input() {
    let g = short_pp(1);
    let stop = Arc::new(AtomicBool::new(true));
    let r = Batch::new(&g)
        .workers(2)
        .stop(stop.clone())
        .run(&images(), cnn());
    assert!(r.iter().all(|r| r.is_err()));
    stop.store(false, Ordering::SeqCst);
    let r = Batch::new(&g).workers(2).stop(stop).run(&images(), cnn());
    assert!(r.iter().all(|r| r.is_ok()));
}
