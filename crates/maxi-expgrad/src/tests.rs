use super::*;

// ---------------------------------------------------------------------------------------------
// w_of_exp
// ---------------------------------------------------------------------------------------------

const S_VALUES: [f64; 22] = [
    -700.0, -50.0, -39.9, -5.0, -1.0, 0.0, 1e-9, 0.5, 1.0, 2.0, 10.0, 30.0, 39.9, 40.0, 40.1,
    100.0, 700.0, 709.7, 710.0, 1e4, 1e6, 1e12,
];

#[test]
fn lambert_w0_reference_value() {
    // lambert_w0 is accurate to ~50 bits; W(1) = Ω = 0.5671432904097838.
    assert!((lambert_w::lambert_w0(1.0) - 0.5671432904097838).abs() <= 1e-15);
    // W(e^0) = W(1) = Ω.
    assert!((w_of_exp(0.0) - 0.5671432904097838).abs() <= 2.0 * f64::EPSILON);
    // W(e^1) = 1 exactly.
    assert!((w_of_exp(1.0) - 1.0).abs() <= 2.0 * f64::EPSILON);
}

#[test]
fn w_of_exp_solves_w_plus_ln_w_eq_s() {
    for &s in &S_VALUES {
        let w = w_of_exp(s);
        assert!(w > 0.0 && w.is_finite(), "s = {s}: w = {w}");
        let residual = (w + w.ln() - s).abs();
        assert!(
            residual <= 1e-12 * s.abs().max(1.0),
            "s = {s}: w = {w}, w + ln w − s = {residual:e}"
        );
    }
}

#[test]
fn w_of_exp_satisfies_w_exp_w_eq_exp_s_where_representable() {
    for &s in S_VALUES.iter().filter(|&&s| s.exp().is_normal()) {
        let w = w_of_exp(s);
        // w·e^w = e^s, compared in relative terms (exp amplifies w's rounding by w).
        let rel = (w * w.exp() / s.exp() - 1.0).abs();
        assert!(rel <= 1e-13 * w.max(1.0), "s = {s}: relative error {rel:e}");
    }
    assert!(
        710.0f64.exp().is_infinite(),
        "the large cases do overflow e^s"
    );
    assert!(w_of_exp(710.0).is_finite());
}

#[test]
fn w_of_exp_is_accurate_for_tiny_and_special_inputs() {
    // For very negative s, W(e^s) = e^s (1 − e^s + …).
    for s in [-45.0, -300.0, -1000.0] {
        assert_eq!(w_of_exp(s), s.exp());
    }
    assert_eq!(w_of_exp(f64::INFINITY), f64::INFINITY);
    assert!(w_of_exp(f64::NAN).is_nan());
    assert_eq!(w_of_exp(f64::NEG_INFINITY), 0.0);
}

#[test]
fn w_of_exp_is_continuous_and_monotone_across_switches() {
    for switch in [W_TINY, W_OF_EXP_SWITCH] {
        let below = switch.next_down();
        let (wb, wa) = (w_of_exp(below), w_of_exp(switch));
        // dw/ds = w/(1+w) < 1, so one ulp in s moves w by less than one ulp of s.
        assert!(wa >= wb, "not monotone at {switch}: {wb} > {wa}");
        assert!(
            wa - wb <= 4.0 * f64::EPSILON * wa.max(switch.abs()),
            "jump at {switch}: {wb} → {wa}"
        );
        // Wider window: the difference matches the derivative.
        for h in [1e-9, 1e-6, 1e-3] {
            let (lo, hi) = (w_of_exp(switch - h), w_of_exp(switch + h));
            let w = w_of_exp(switch);
            let slope = w / (1.0 + w);
            let predicted = 2.0 * h * slope;
            assert!(
                ((hi - lo) - predicted).abs() <= 1e-6 * predicted + 1e-13 * w.max(1.0),
                "switch {switch}, h {h}: Δw = {}, predicted {predicted}",
                hi - lo
            );
        }
    }
    // Monotone on a dense sweep through both switches.
    let mut prev = w_of_exp(-60.0);
    let mut s = -60.0;
    while s < 60.0 {
        s += 0.01;
        let w = w_of_exp(s);
        assert!(w >= prev, "w_of_exp decreases at s = {s}");
        prev = w;
    }
}

// ---------------------------------------------------------------------------------------------
// prox
// ---------------------------------------------------------------------------------------------

/// The function that the proximal step minimises over `v ≥ 0`.
fn h_obj(v: f64, r: f64, a: f64, b: f64) -> f64 {
    (v + a) * (v / a).ln_1p() - v - r * v + 0.5 * b * v * v
}

/// Golden-section minimisation of the convex `h` on `[0, hi]`.
fn golden_min(r: f64, a: f64, b: f64, hi: f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (0.0f64, hi);
    let mut c = hi - g * (hi - lo);
    let mut d = lo + g * (hi - lo);
    for _ in 0..300 {
        if h_obj(c, r, a, b) < h_obj(d, r, a, b) {
            hi = d;
        } else {
            lo = c;
        }
        c = hi - g * (hi - lo);
        d = lo + g * (hi - lo);
    }
    0.5 * (lo + hi)
}

/// Bisection on the stationarity condition `h'(v) = ln(1 + v/a) + b·v − r` (increasing).
fn bisect_stationary(r: f64, a: f64, b: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, hi);
    for _ in 0..400 {
        let mid = 0.5 * (lo + hi);
        if (mid / a).ln_1p() + b * mid - r > 0.0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// An upper bound of the minimiser: `v* ≤ a(e^r − 1)` and `v* ≤ r/b`.
fn upper_bound(r: f64, a: f64, b: f64) -> f64 {
    let soft = a * r.exp_m1();
    let quad = if b > 0.0 { r / b } else { f64::INFINITY };
    2.0 * soft.min(quad) + 1.0
}

/// (z, threshold, a, b)
const PROX_CASES: [(f64, f64, f64, f64); 16] = [
    (1.0, 0.2, 0.2, 0.0),
    (-3.0, 0.5, 0.2, 0.0),
    (0.7, 0.0, 1.0 / 784.0, 0.0),
    (12.0, 1.0, 0.01, 0.0),
    (1.0, 0.2, 0.2, 0.3),
    (-3.0, 0.5, 0.2, 2.0),
    (0.7, 0.0, 1.0 / 784.0, 1e-4),
    (-12.0, 1.0, 0.01, 50.0),
    (5.0, 4.999, 0.5, 1.0),
    (2.0, 0.1, 3.0, 1e3),
    (1e-8, 0.0, 0.2, 0.5),
    // Large arguments: s = r + ln(ab) + ab is far above where e^s overflows.
    (800.0, 0.0, 0.2, 1.0),
    (-1e4, 5.0, 0.1, 0.5),
    (1e6, 10.0, 0.2, 3.0),
    (750.0, 1.0, 1e-3, 1e-3),
    (400.0, 0.0, 0.2, 1e-6),
];

#[test]
fn prox_matches_closed_form() {
    for &(z, thr, a, b) in &PROX_CASES {
        let r = (z.abs() - thr).max(0.0);
        let v = prox(z, thr, a, b).abs();
        assert_eq!(prox(z, thr, a, b).signum(), z.signum(), "sign for z = {z}");
        let closed = if b == 0.0 {
            a * r.exp() - a
        } else {
            w_of_exp(r + (a * b).ln() + a * b) / b - a
        };
        assert!(
            (v - closed).abs() <= 1e-12 * closed.abs() + 1e-15 * a,
            "z {z} thr {thr} a {a} b {b}: prox {v} vs closed form {closed}"
        );
        if b == 0.0 {
            // Soft threshold in the mirror space.
            assert!((v - a * r.exp_m1()).abs() <= 1e-14 * v);
        } else if (r + (a * b).ln() + a * b) < 700.0 {
            // Where e^s is finite, compare with lambert_w0 directly.
            let direct = lambert_w::lambert_w0(a * b * (r + a * b).exp()) / b - a;
            assert!(
                (v - direct).abs() <= 1e-9 * direct.abs() + 1e-14 * a,
                "z {z}: prox {v} vs lambert_w0 {direct}"
            );
        }
    }
}

#[test]
fn prox_minimises_h() {
    for &(z, thr, a, b) in &PROX_CASES {
        let r = (z.abs() - thr).max(0.0);
        let v = prox(z, thr, a, b).abs();
        let hi = upper_bound(r, a, b);
        // Stationarity, solved by bisection, to near machine precision.
        let v_bis = bisect_stationary(r, a, b, hi);
        assert!(
            (v - v_bis).abs() <= 1e-12 * v_bis + 1e-15 * a,
            "z {z} thr {thr} a {a} b {b}: prox {v} vs bisection {v_bis}"
        );
        // Direct minimisation of h: golden section finds v to ~√ε, and h(prox) is no worse.
        let v_gs = golden_min(r, a, b, hi);
        let scale = h_obj(v, r, a, b).abs().max(1.0);
        assert!(
            h_obj(v, r, a, b) <= h_obj(v_gs, r, a, b) + 1e-14 * scale,
            "z {z}: h(prox) = {} > h(golden) = {}",
            h_obj(v, r, a, b),
            h_obj(v_gs, r, a, b)
        );
        assert!(
            (v - v_gs).abs() <= 1e-6 * (v + a),
            "z {z}: prox {v} vs golden section {v_gs}"
        );
        // And v is a local minimum on a fine grid around it.
        for k in 1..=5 {
            let dv = 1e-4 * k as f64 * (v + a);
            for w in [v + dv, (v - dv).max(0.0)] {
                assert!(h_obj(w, r, a, b) >= h_obj(v, r, a, b) - 1e-14 * scale);
            }
        }
    }
}

#[test]
fn prox_thresholds_to_exact_zero() {
    for (z, thr) in [(0.3, 0.5), (-0.5, 0.5), (0.0, 0.0), (0.0, 1.0)] {
        for b in [0.0, 0.7] {
            assert_eq!(prox(z, thr, 0.2, b), 0.0, "z {z} thr {thr} b {b}");
        }
    }
    // Just above the threshold the result is small but positive and keeps z's sign.
    let p = prox(-0.5 - 1e-12, 0.5, 0.2, 0.7);
    assert!(p < 0.0 && p > -1e-11, "{p}");
    // b → 0 is continuous with the soft threshold.
    let soft = prox(2.0, 0.5, 0.2, 0.0);
    let nearly = prox(2.0, 0.5, 0.2, 1e-12);
    assert!((soft - nearly).abs() <= 1e-9 * soft);
}

#[test]
fn mirror_inverts_soft_threshold_without_penalty() {
    for x in [-3.0, -0.1, 0.0, 1e-9, 0.4, 7.0] {
        let z = mirror(x, 0.2);
        assert!((prox(z, 0.0, 0.2, 0.0) - x).abs() <= 1e-14 * x.abs().max(1e-300));
    }
}
