//! Fast standard-normal draws for random directions.
//!
//! A URV step at d = 784, q = 100 needs 78,400 Gaussian draws, which dominate the estimator's
//! own cost. `rand_distr::StandardNormal` spends one 64-bit draw per `f64` sample; a direction
//! does not need 53-bit resolution, so this 32-bit ziggurat (Marsaglia & Tsang 2000, 256
//! layers, ~0.5 % of draws take the slow path) takes two samples from every 64-bit draw. Its output is exactly distributed as the
//! 32-bit ziggurat's (resolution ≈ 2⁻³¹ near 0); every draw comes from the given generator.

use std::sync::OnceLock;

use maxi_core::MaxiRng;
use rand::Rng;

/// Right edge of the base layer.
const R: f64 = 3.654_152_885_361_009;
/// Layers of the ziggurat.
const N: usize = 256;
/// Index mask.
const MASK: i32 = (N - 1) as i32;

struct Tables {
    kn: [u32; N],
    wn: [f64; N],
    fn_: [f64; N],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        const M1: f64 = 2147483648.0; // 2^31
        const VN: f64 = 4.928_673_233_99e-3; // area of each layer
        let mut t = Tables {
            kn: [0; N],
            wn: [0.0; N],
            fn_: [0.0; N],
        };
        let mut dn = R;
        let mut tn = dn;
        let q = VN / (-0.5 * dn * dn).exp();
        t.kn[0] = ((dn / q) * M1) as u32;
        t.kn[1] = 0;
        t.wn[0] = q / M1;
        t.wn[N - 1] = dn / M1;
        t.fn_[0] = 1.0;
        t.fn_[N - 1] = (-0.5 * dn * dn).exp();
        for i in (1..=N - 2).rev() {
            dn = (-2.0 * (VN / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            t.kn[i + 1] = ((dn / tn) * M1) as u32;
            tn = dn;
            t.fn_[i] = (-0.5 * dn * dn).exp();
            t.wn[i] = dn / M1;
        }
        t
    })
}

/// A uniform draw in (0, 1).
fn open01(rng: &mut MaxiRng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / 9007199254740992.0)
}

/// The slow path: wedges and the tail.
#[cold]
fn fix(t: &Tables, mut hz: i32, rng: &mut MaxiRng) -> f64 {
    loop {
        let iz = (hz & MASK) as usize;
        let x = hz as f64 * t.wn[iz];
        if iz == 0 {
            loop {
                let x = -open01(rng).ln() / R;
                let y = -open01(rng).ln();
                if y + y >= x * x {
                    return if hz > 0 { R + x } else { -R - x };
                }
            }
        }
        if t.fn_[iz] + open01(rng) * (t.fn_[iz - 1] - t.fn_[iz]) < (-0.5 * x * x).exp() {
            return x;
        }
        hz = rng.next_u32() as i32;
        let iz = (hz & MASK) as usize;
        if hz.unsigned_abs() < t.kn[iz] {
            return hz as f64 * t.wn[iz];
        }
    }
}

#[inline]
fn from_bits(t: &Tables, hz: i32, rng: &mut MaxiRng) -> f64 {
    let iz = (hz & MASK) as usize;
    if hz.unsigned_abs() < t.kn[iz] {
        hz as f64 * t.wn[iz]
    } else {
        fix(t, hz, rng)
    }
}

/// A float type the draws can be stored as.
pub trait Draw: Copy {
    /// Converts a draw.
    fn from_f64(v: f64) -> Self;
}

impl Draw for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Draw for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// Fills `out` with independent standard-normal draws (`f32` halves the memory a URV batch of
/// directions takes; the 32-bit ziggurat's resolution fits either).
pub fn fill_standard_normal<T: Draw>(out: &mut [T], rng: &mut MaxiRng) {
    let t = tables();
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let bits = rng.next_u64();
        pair[0] = T::from_f64(from_bits(t, bits as u32 as i32, rng));
        pair[1] = T::from_f64(from_bits(t, (bits >> 32) as u32 as i32, rng));
    }
    for v in pairs.into_remainder() {
        *v = T::from_f64(from_bits(t, rng.next_u32() as i32, rng));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_mass_match_the_standard_normal() {
        let n = 2_000_000;
        let mut v = vec![0.0f64; n];
        fill_standard_normal(&mut v, &mut maxi_core::rng_from_seed(42));
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt = v.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 3e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 5e-3, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.03, "kurtosis {kurt}");
        // P(|Z| < k) for k = 0.5, 1, 2, 3 and the tail beyond the base layer's edge R
        for (k, p) in [
            (0.5, 0.382_924_922_548_026),
            (1.0, 0.682_689_492_137_086),
            (2.0, 0.954_499_736_103_642),
            (3.0, 0.997_300_203_936_740),
            (R, 0.999_741_967_512_346),
        ] {
            let frac = v.iter().filter(|x| x.abs() < k).count() as f64 / n as f64;
            assert!(
                (frac - p).abs() < 1.5e-3,
                "P(|Z| < {k}) = {frac}, expected {p}"
            );
        }
        let pos = v.iter().filter(|x| **x > 0.0).count() as f64 / n as f64;
        assert!((pos - 0.5).abs() < 2e-3);
        assert!(v.iter().any(|x| x.abs() > R), "the tail is sampled");
    }

    #[test]
    fn odd_lengths_and_seeds_are_reproducible() {
        let mut a = vec![0.0f64; 7];
        let mut b = vec![0.0f64; 7];
        fill_standard_normal(&mut a, &mut maxi_core::rng_from_seed(1));
        fill_standard_normal(&mut b, &mut maxi_core::rng_from_seed(1));
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.is_finite()));
        // the f32 variant stores the same draws, rounded
        let mut c = vec![0.0f32; 7];
        fill_standard_normal(&mut c, &mut maxi_core::rng_from_seed(1));
        for (x, y) in a.iter().zip(&c) {
            assert_eq!(*x as f32, *y);
        }
    }
}
