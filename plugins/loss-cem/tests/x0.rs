//! CEM's start points (`x0`): the defaults (PP at the input, PN at zero), zeros, MAXi's
//! uniform random image and Gaussian noise, seeded from the run's seed.

use std::sync::Arc;

use maxi_core::ndarray::{ArrayD, ArrayViewD, IxDyn};
use maxi_core::{Identity, Kwargs, Loss, LossContext, Valid, model_fn};
use maxi_loss_cem::{CemKwargs, CemLoss};

const D: usize = 2000;

/// An input of D entries in [-0.5, 0.5] and a two-class model that prefers class 0 for it.
fn x() -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[D]), |i| ((i[0] * 37 % 101) as f64) / 100.0 - 0.5)
}

fn loss(kwargs: serde_json::Value, seed: u64) -> CemLoss {
    let model = model_fn("sum", |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        ArrayD::from_shape_fn(IxDyn(&[n, 2]), |i| {
            let s: f64 = b.index_axis(maxi_core::ndarray::Axis(0), i[0]).sum();
            if i[1] == 0 { 1000.0 + s } else { -s }
        })
    });
    let kw: CemKwargs = serde_json::from_value(kwargs).expect("kwargs");
    let resolver = Kwargs::new().resolver();
    let x = x();
    CemLoss::new(
        &Valid::check(kw).expect("valid"),
        &LossContext {
            x: x.view(),
            model,
            models: &resolver,
            space: Arc::new(Identity::new(&[D])),
            seed,
        },
    )
    .expect("loss")
}

#[test]
fn defaults_are_unchanged_pp_at_the_input_pn_at_zero() {
    let l = loss(serde_json::json!({"mode": "PP", "no_info_val": -0.5}), 0);
    assert_eq!(l.start(), x().mapv(|v| v + 0.5));
    let l = loss(serde_json::json!({"mode": "PN"}), 0);
    assert_eq!(l.start(), ArrayD::<f64>::zeros(IxDyn(&[D])));
    let l = loss(serde_json::json!({"mode": "PP", "x0": "input"}), 3);
    // no_info_val 0: the box is between 0 and x, and x is inside it
    assert_eq!(l.start(), x());
}

#[test]
fn zeros_start_from_no_information() {
    let l = loss(
        serde_json::json!({"mode": "PP", "no_info_val": -0.5, "x0": "zeros"}),
        0,
    );
    assert_eq!(l.start(), ArrayD::<f64>::zeros(IxDyn(&[D])));
    assert_eq!(
        l.candidate(l.start().view()),
        ArrayD::from_elem(IxDyn(&[D]), -0.5)
    );
}

#[test]
fn uniform_draws_each_entry_between_the_minimum_and_the_entry() {
    let x = x();
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(lo, -0.5);
    let l = loss(
        serde_json::json!({"mode": "PP", "no_info_val": -0.5, "x0": "uniform"}),
        7,
    );
    let candidate = l.candidate(l.start().view());
    let mut above_mid = 0;
    for (c, xv) in candidate.iter().zip(x.iter()) {
        assert!((lo..=*xv).contains(c), "{c} not in [{lo}, {xv}]");
        above_mid += usize::from(*c > (lo + xv) / 2.0);
    }
    // uniform: about half of the entries above their interval's midpoint
    assert!((900..=1100).contains(&above_mid), "{above_mid} of {D}");
    // seeded: the same seed gives the same start, another seed another one
    let again = loss(
        serde_json::json!({"mode": "PP", "no_info_val": -0.5, "x0": "uniform"}),
        7,
    );
    assert_eq!(again.start(), l.start());
    let other = loss(
        serde_json::json!({"mode": "PP", "no_info_val": -0.5, "x0": "uniform"}),
        8,
    );
    assert_ne!(other.start(), l.start());
}

#[test]
fn gaussian_pn_start_is_standard_normal_clipped_to_the_box() {
    let l = loss(serde_json::json!({"mode": "PN", "x0": "gaussian"}), 1);
    let s = l.start();
    // the PN box is [-1, 1]: P(|z| ≥ 1) = 0.3173 for z ~ N(0, 1)
    let clipped = s.iter().filter(|v| v.abs() == 1.0).count() as f64 / D as f64;
    assert!(
        (clipped - 0.3173).abs() < 0.035,
        "clipped fraction {clipped}"
    );
    let mean = s.iter().sum::<f64>() / D as f64;
    assert!(mean.abs() < 0.05, "mean {mean}");
    assert!(s.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn input_for_pn_is_no_change_and_unknown_starts_are_refused() {
    let l = loss(serde_json::json!({"mode": "PN", "x0": "input"}), 0);
    assert_eq!(l.start(), ArrayD::<f64>::zeros(IxDyn(&[D])));
    let bad: Result<CemKwargs, _> =
        serde_json::from_value(serde_json::json!({"mode": "PP", "x0": "random"}));
    assert!(bad.is_err());
}
