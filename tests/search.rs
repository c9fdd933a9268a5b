//! The best valid iterate, searches over `c` and `l1`, and the shared row budget.

use maxi::ndarray::{Array1, ArrayD, ArrayViewD, ArrayViewMutD};
use maxi::serde_json::json;
use maxi::{
    Bounds, Evaluation, ExplanationGenerator, Factory, KwargProblem, Kwargs, KwargsSpec, Loss,
    LossContext, LossKind, Registry, SearchKwargs, SearchMethod, StopReason, Valid, registry,
};
use maxi_tests::{input, linear_model, predict_class};

fn kw(v: maxi::serde_json::Value) -> Kwargs {
    Kwargs::try_from(v).expect("kwargs")
}

#[test]
fn the_outcome_is_the_best_valid_iterate_even_when_the_last_one_is_invalid() {
    // A strong L1 weight drives the PP from the (valid) input towards zero, where the linear
    // model's bias decides and the class is lost: early iterates are valid, the last is not.
    let shape = [6];
    let (model, _) = linear_model(&shape, 3, 5);
    let x = input(&shape, 4).mapv(|v| v * 3.0);
    let t = predict_class(model.as_ref(), x.view());
    let zero = ArrayD::<f64>::zeros(&shape[..]);
    assert_ne!(
        predict_class(model.as_ref(), zero.view()),
        t,
        "bias must not keep class {t}"
    );
    let e = ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 0.05, "K": 0.0})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.1, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 20})))
        .num_iter(60)
        .build()
        .expect("generator")
        .run(x.view(), model.clone())
        .expect("run");
    let last = e.last_record().expect("records");
    assert_eq!(last.valid, Some(false), "the last iterate must be invalid");
    assert_eq!(e.outcome.valid, Some(true));
    assert!(e.outcome.iteration < last.iteration);
    let record = e.history[e.outcome.iteration - 1];
    assert_eq!(record.valid, Some(true));
    // the outcome is the valid iterate of the fewest entries (the earliest among equals)
    let threshold = e.support_threshold;
    let support = |c: &ArrayD<f64>| c.iter().filter(|v| v.abs() > threshold).count();
    assert_eq!(support(&e.outcome.candidate), e.outcome.size.support);
    assert_eq!(predict_class(model.as_ref(), e.outcome.candidate.view()), t);
    // the last iterate (the old result) is not a pertinent positive
    let last_candidate = e.final_candidate().expect("savepoint");
    assert_ne!(predict_class(model.as_ref(), last_candidate.view()), t);
}

/// A loss whose iterates are all valid exactly when its kwarg `c` is at least 3.7.
struct Threshold {
    c: f64,
    bounds: Bounds,
}

impl Loss for Threshold {
    fn eval_batch(&self, batch: ArrayViewD<'_, f64>) -> maxi::Result<Array1<f64>> {
        Ok(batch
            .outer_iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>())
            .collect())
    }
    fn assess_batch_mut(&self, batch: ArrayViewMutD<'_, f64>) -> maxi::Result<Evaluation> {
        let values = self.eval_batch(batch.view())?;
        let n = values.len();
        Ok(Evaluation {
            values,
            valid: Some(vec![self.c >= 3.7; n]),
        })
    }
    fn bounds(&self) -> &Bounds {
        &self.bounds
    }
    fn start(&self) -> ArrayD<f64> {
        ArrayD::from_elem(self.bounds.lower().shape(), 0.5)
    }
}

#[derive(maxi::serde::Serialize, maxi::serde::Deserialize, maxi::schemars::JsonSchema)]
#[serde(crate = "maxi::serde", deny_unknown_fields)]
#[schemars(crate = "maxi::schemars")]
struct ThresholdKwargs {
    c: f64,
}

impl KwargsSpec for ThresholdKwargs {
    fn validate(&self) -> Result<(), KwargProblem> {
        if self.c.is_finite() && self.c > 0.0 {
            Ok(())
        } else {
            Err(KwargProblem::new("c", "must be a finite number > 0"))
        }
    }
}

struct ThresholdFactory;

impl Factory<LossKind> for ThresholdFactory {
    type Kwargs = ThresholdKwargs;
    fn build(k: &Valid<ThresholdKwargs>, ctx: &LossContext<'_>) -> maxi::Result<Box<dyn Loss>> {
        Ok(Box::new(Threshold {
            c: k.c,
            bounds: Bounds::unbounded(ctx.x.shape()),
        }))
    }
}

#[test]
fn c_search_brackets_a_known_validity_threshold() {
    let mut r = Registry::clone(&registry::global().expect("registry"));
    r.add(maxi::registry::Entry::<LossKind>::of::<ThresholdFactory>(
        "threshold",
        &[],
        "valid iff c ≥ 3.7",
    ))
    .expect("add");
    let (model, _) = linear_model(&[3], 2, 0);
    let e = ExplanationGenerator::builder()
        .loss("threshold", kw(json!({"c": 1.0})))
        .optimizer("ao_exp_grad", Kwargs::new())
        .gradient("urv", kw(json!({"sample_num": 4})))
        .num_iter(3)
        .search(SearchKwargs {
            method: SearchMethod::C,
            steps: 9,
            ..SearchKwargs::default()
        })
        .registry(r)
        .build()
        .expect("generator")
        .run(input(&[3], 1).view(), model)
        .expect("run");
    let tried: Vec<f64> = e
        .rounds
        .iter()
        .map(|r| r.settings["c"].as_f64().expect("c"))
        .collect();
    // ×10 until a success brackets the threshold, then bisection
    assert_eq!(&tried[..3], &[1.0, 10.0, 5.5]);
    assert_eq!(tried.len(), 9);
    for r in &e.rounds {
        let c = r.settings["c"].as_f64().expect("c");
        assert_eq!(r.succeeded, c >= 3.7, "round {} c = {c}", r.round);
    }
    let lowest_success = tried
        .iter()
        .copied()
        .filter(|c| *c >= 3.7)
        .fold(f64::INFINITY, f64::min);
    let highest_failure = tried
        .iter()
        .copied()
        .filter(|c| *c < 3.7)
        .fold(0.0f64, f64::max);
    assert!(
        lowest_success - highest_failure < 0.1,
        "bracket [{highest_failure}, {lowest_success}] after 9 steps"
    );
}

fn pp_with(search: SearchKwargs) -> ExplanationGenerator {
    ExplanationGenerator::builder()
        .loss("cem", kw(json!({"mode": "PP", "c": 1.0, "K": 0.5})))
        .optimizer("ao_exp_grad", kw(json!({"l1": 0.05, "l2": 0.0})))
        .gradient("urv", kw(json!({"sample_num": 9})))
        .num_iter(40)
        .search(search)
        .build()
        .expect("generator")
}

#[test]
fn the_shared_row_budget_is_never_exceeded() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    for method in [SearchMethod::None, SearchMethod::C, SearchMethod::L1] {
        for budget in [40, 57, 200, 451, 1000] {
            let e = pp_with(SearchKwargs {
                method,
                steps: 6,
                budget_rows: Some(budget),
                ..SearchKwargs::default()
            })
            .run(x.view(), model.clone())
            .expect("run");
            assert!(
                e.model.rows <= budget,
                "{method:?}: {} rows > budget {budget}",
                e.model.rows
            );
            // the budget is used: not more than one update's worth (1 + 9 rows, one extra
            // point, the final evaluation and a round's class check) and the 24 rows kept for
            // full-strength checks are left over
            if e.stop == StopReason::Budget {
                assert!(
                    e.model.rows + 13 + 24 > budget,
                    "{method:?} {budget}: {}",
                    e.model.rows
                );
            }
        }
    }
    // a budget too small for one update is a clear error
    let err = pp_with(SearchKwargs {
        budget_rows: Some(5),
        ..SearchKwargs::default()
    })
    .run(x.view(), model)
    .unwrap_err();
    assert!(err.to_string().contains("budget_rows"), "{err}");
}

#[test]
fn patience_ends_a_round_that_stopped_improving() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let e = pp_with(SearchKwargs {
        patience: Some(3),
        ..SearchKwargs::default()
    })
    .run(x.view(), model)
    .expect("run");
    assert_eq!(e.stop, StopReason::Converged);
    assert!(e.history.len() < 40);
    let best = e.outcome.iteration;
    assert!(
        e.history.len() >= best + 3,
        "stopped before patience ran out"
    );
}

#[test]
fn searches_are_deterministic_and_record_every_round() {
    let shape = [2, 5];
    let (model, _) = linear_model(&shape, 4, 3);
    let x = input(&shape, 1);
    let search = SearchKwargs {
        method: SearchMethod::C,
        steps: 4,
        budget_rows: Some(900),
        patience: Some(5),
        ..SearchKwargs::default()
    };
    let a = pp_with(search.clone())
        .run(x.view(), model.clone())
        .expect("run");
    let b = pp_with(search).run(x.view(), model).expect("run");
    let bits = |c: &ArrayD<f64>| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.outcome.candidate), bits(&b.outcome.candidate));
    assert_eq!(a.history, b.history);
    assert!(a.rounds.len() > 1);
    let rows: u64 = a.rounds.iter().map(|r| r.model_rows).sum();
    assert_eq!(rows, a.model.rows, "the rounds account for every row");
    for (i, r) in a.rounds.iter().enumerate() {
        assert_eq!(r.round, i);
        assert!(a.history.iter().any(|h| h.round == i) || r.iterations == 0);
    }
}
