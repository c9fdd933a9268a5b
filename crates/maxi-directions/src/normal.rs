//! Fast standard-normal draws for random directions.
//!
//! A URV step at d = 784, q = 100 needs 78,400 Gaussian draws, which dominate the estimator's
//! own cost. A random direction needs neither 53-bit resolution nor the far tail, so
//! [`NormalSampler`] makes `f32` draws by the Box–Muller transform, sixteen at a time, without
//! branches or table lookups:
//!
//! - 32-bit words come from four xoshiro256++ lanes seeded from the caller's generator;
//! - from a word pair `(a, b)`: `u = ((a >> 9) + ½)·2⁻²³ ∈ (0, 1)` and
//!   `φ = ((b >> 9) + ½)·2⁻²³·π/2 ∈ (0, π/2)`, and two bits of `a` pick the signs, so that
//!   `(±r·cos φ, ±r·sin φ)` with `r = √(−2 ln u)` is a pair of independent standard normals
//!   (the angle is uniform on the whole circle once both signs are random);
//! - `ln` and `sin`/`cos` are evaluated in `f32` by series accurate to a few units in the last
//!   place (`ln` through `2·atanh((m−1)/(m+1))` for the mantissa `m ∈ [√½, √2)`, `sin`/`cos`
//!   by their Taylor series on `|x| ≤ π/4` around `π/4`).
//!
//! The draws are exact Box–Muller up to `f32` rounding, with `|z| ≤ 5.9` (the probability of
//! anything beyond is 4·10⁻⁹). The same arithmetic runs either with AVX2 (picked at run time)
//! or in plain Rust: both perform the same IEEE operations in the same order (no fused
//! multiply-adds), so the stream depends only on the caller's generator — never on the CPU or
//! the thread count. Measured on the development machine (fastest of 40 rounds of 50 fills of
//! 78,400 draws): ≈ 0.9 ns per draw with AVX2 (≈ 1.7 ns in plain Rust), against ≈ 1.3 ns for
//! the vectorised 256-layer ziggurat it replaced, whose table lookups need gathers and whose
//! ~1.5 % slow-path draws need `exp`.

use maxi_core::MaxiRng;
use rand::Rng;

/// A float type the draws can be stored as.
pub trait Draw: Copy {
    /// Converts a draw (exactly).
    fn from_f32(v: f32) -> Self;
    /// The slice itself when `Self` is `f32` (draws are then written in place).
    fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]>;
}

impl Draw for f64 {
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

impl Draw for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn as_f32_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        Some(values)
    }
}

/// Interleaved xoshiro256++ generators.
const LANES: usize = 4;
/// Draws per group: two steps of every lane give 16 words, turned into 16 draws.
const GROUP: usize = 4 * LANES;
/// Draws made per block of [`NormalSampler::fill`].
const BLOCK: usize = 8 * GROUP;

/// `2⁻²³`: scales a 23-bit integer plus ½ into (0, 1).
const TWO_M23: f32 = 1.0 / 8_388_608.0;
/// `π/2 · 2⁻²³`.
const ANGLE_STEP: f32 = std::f32::consts::FRAC_PI_2 / 8_388_608.0;
/// `2²² − ½`: centres a 23-bit integer plus ½ on zero.
const ANGLE_MID: f32 = 4_194_303.5;
const LN_2: f32 = std::f32::consts::LN_2;
const SQRT_2: f32 = std::f32::consts::SQRT_2;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `2·atanh(s)/s = 2·(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9 + …)`, coefficients of `s²ᵏ`.
const ATANH: [f32; 5] = [2.0, 2.0 / 3.0, 2.0 / 5.0, 2.0 / 7.0, 2.0 / 9.0];
/// `sin x / x` in powers of `x²`.
const SIN: [f32; 5] = [1.0, -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362_880.0];
/// `cos x` in powers of `x²`.
const COS: [f32; 6] = [
    1.0,
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
];

/// A source of standard-normal draws seeded from a run's generator (see the module docs).
pub struct NormalSampler {
    /// `s[k][lane]`: word `k` of each lane's xoshiro256++ state.
    s: [[u64; LANES]; 4],
    /// Draws of the current block.
    block: [f32; BLOCK],
}

impl NormalSampler {
    /// A sampler seeded from `rng` (draws 16 words from it).
    pub fn new(rng: &mut MaxiRng) -> Self {
        let mut s = [[0u64; LANES]; 4];
        for lane in 0..LANES {
            // an all-zero state would stay zero; drawing one has probability 2^-256
            while (0..4).all(|k| s[k][lane] == 0) {
                for word in s.iter_mut() {
                    word[lane] = rng.next_u64();
                }
            }
        }
        NormalSampler {
            s,
            block: [0.0; BLOCK],
        }
    }

    /// Fills `out` with independent standard-normal draws.
    pub fn fill<T: Draw>(&mut self, out: &mut [T]) {
        let whole = out.len() - out.len() % GROUP;
        let (head, tail) = out.split_at_mut(whole);
        if let Some(head) = T::as_f32_mut(head) {
            groups(&mut self.s, head);
            self.fill_via_block(tail);
        } else {
            self.fill_via_block(out);
        }
    }

    /// [`NormalSampler::fill`] through the block buffer (any length, any [`Draw`] type).
    fn fill_via_block<T: Draw>(&mut self, out: &mut [T]) {
        for chunk in out.chunks_mut(BLOCK) {
            let used = chunk.len().next_multiple_of(GROUP);
            groups(&mut self.s, &mut self.block[..used]);
            for (v, x) in chunk.iter_mut().zip(&self.block) {
                *v = T::from_f32(*x);
            }
        }
    }
}

/// Fills `out` with independent standard-normal draws from a [`NormalSampler`] seeded from
/// `rng`.
pub fn fill_standard_normal<T: Draw>(out: &mut [T], rng: &mut MaxiRng) {
    NormalSampler::new(rng).fill(out);
}

/// One xoshiro256++ step of every lane, writing each lane's 64-bit output as two 32-bit
/// halves (low first) to `out`.
#[inline(always)]
fn next_halves(s: &mut [[u64; LANES]; 4], out: &mut [u32]) {
    let [s0, s1, s2, s3] = s;
    for i in 0..LANES {
        let w = s0[i]
            .wrapping_add(s3[i])
            .rotate_left(23)
            .wrapping_add(s0[i]);
        let t = s1[i] << 17;
        s2[i] ^= s0[i];
        s3[i] ^= s1[i];
        s1[i] ^= s2[i];
        s0[i] ^= s3[i];
        s2[i] ^= t;
        s3[i] = s3[i].rotate_left(45);
        out[2 * i] = w as u32;
        out[2 * i + 1] = (w >> 32) as u32;
    }
}

/// Fills `out` (a multiple of [`GROUP`] long) with draws.
fn groups(s: &mut [[u64; LANES]; 4], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::groups(s, out) };
    }
    groups_portable(s, out)
}

/// [`groups`] in plain Rust: the reference the vector version must match bit for bit.
fn groups_portable(s: &mut [[u64; LANES]; 4], out: &mut [f32]) {
    let mut w = [0u32; GROUP];
    for g in out.chunks_exact_mut(GROUP) {
        next_halves(s, &mut w[..GROUP / 2]);
        next_halves(s, &mut w[GROUP / 2..]);
        for i in 0..GROUP / 2 {
            let (z0, z1) = box_muller(w[i], w[i + GROUP / 2]);
            g[i] = z0;
            g[i + GROUP / 2] = z1;
        }
    }
}

/// `ln u` for `u` in (0, 1], from the exponent and `2·atanh((m−1)/(m+1))` of the mantissa
/// `m ∈ [√½, √2)`.
#[inline(always)]
fn ln(u: f32) -> f32 {
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = ATANH[4];
    for c in ATANH[..4].iter().rev() {
        p = p * s2 + c;
    }
    e as f32 * LN_2 + s * p
}

/// `(sin x, cos x)` for `|x| ≤ π/4`.
#[inline(always)]
fn sin_cos(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let mut sp = SIN[4];
    for c in SIN[..4].iter().rev() {
        sp = sp * x2 + c;
    }
    let mut cp = COS[5];
    for c in COS[..5].iter().rev() {
        cp = cp * x2 + c;
    }
    (x * sp, cp)
}

/// Two standard-normal draws from two uniform words (see the module docs).
#[inline(always)]
fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let u = ((a >> 9) as f32 + 0.5) * TWO_M23;
    let r = (-2.0 * ln(u)).sqrt();
    // φ = π/4 + x with x ∈ (−π/4, π/4)
    let x = ((b >> 9) as f32 - ANGLE_MID) * ANGLE_STEP;
    let (sx, cx) = sin_cos(x);
    let cos_phi = (cx - sx) * FRAC_1_SQRT_2;
    let sin_phi = (cx + sx) * FRAC_1_SQRT_2;
    let z0 = f32::from_bits((r * cos_phi).to_bits() ^ (a << 31));
    let z1 = f32::from_bits((r * sin_phi).to_bits() ^ ((a << 30) & 0x8000_0000));
    (z0, z1)
}

/// [`groups`] with AVX2: eight lanes of [`box_muller`] per instruction.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// `p(x2)` by Horner's rule with separate multiplies and adds, as in the plain version.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn horner(coefficients: &[f32], x2: __m256) -> __m256 {
        let (last, rest) = coefficients.split_last().unwrap_or((&0.0, &[]));
        let mut p = _mm256_set1_ps(*last);
        for c in rest.iter().rev() {
            p = _mm256_add_ps(_mm256_mul_ps(p, x2), _mm256_set1_ps(*c));
        }
        p
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn groups(s: &mut [[u64; LANES]; 4], out: &mut [f32]) {
        // SAFETY: every row of `s` is 4 u64 = 32 bytes; unaligned loads.
        let [mut s0, mut s1, mut s2, mut s3] =
            s.map(|row| unsafe { _mm256_loadu_si256(row.as_ptr().cast()) });
        let mut step = || {
            // w = rotl(s0 + s3, 23) + s0, then the state update, in each 64-bit lane;
            // as eight u32 the low half of each lane comes first, as in `next_halves`
            let sum = _mm256_add_epi64(s0, s3);
            let rot = _mm256_or_si256(_mm256_slli_epi64::<23>(sum), _mm256_srli_epi64::<41>(sum));
            let w = _mm256_add_epi64(rot, s0);
            let t17 = _mm256_slli_epi64::<17>(s1);
            s2 = _mm256_xor_si256(s2, s0);
            s3 = _mm256_xor_si256(s3, s1);
            s1 = _mm256_xor_si256(s1, s2);
            s0 = _mm256_xor_si256(s0, s3);
            s2 = _mm256_xor_si256(s2, t17);
            s3 = _mm256_or_si256(_mm256_slli_epi64::<45>(s3), _mm256_srli_epi64::<19>(s3));
            w
        };
        let ps = _mm256_set1_ps;
        // two draws per lane from the words (a, b); see `box_muller`
        let draw = |a: __m256i, b: __m256i| {
            // r = √(−2 ln u)
            let u = _mm256_mul_ps(
                _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32::<9>(a)), ps(0.5)),
                ps(TWO_M23),
            );
            let bits = _mm256_castps_si256(u);
            let e = _mm256_sub_epi32(
                _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff)),
                _mm256_set1_epi32(127),
            );
            let m = _mm256_castsi256_ps(_mm256_or_si256(
                _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x3f80_0000),
            ));
            let big = _mm256_cmp_ps::<_CMP_GT_OQ>(m, ps(SQRT_2));
            let m = _mm256_blendv_ps(m, _mm256_mul_ps(m, ps(0.5)), big);
            // big lanes are all ones (−1 as i32): e − (−1) = e + 1
            let e = _mm256_sub_epi32(e, _mm256_castps_si256(big));
            let sx = _mm256_div_ps(_mm256_sub_ps(m, ps(1.0)), _mm256_add_ps(m, ps(1.0)));
            let p = horner(&ATANH, _mm256_mul_ps(sx, sx));
            let ln_u = _mm256_add_ps(
                _mm256_mul_ps(_mm256_cvtepi32_ps(e), ps(LN_2)),
                _mm256_mul_ps(sx, p),
            );
            let r = _mm256_sqrt_ps(_mm256_mul_ps(ps(-2.0), ln_u));
            // φ = π/4 + x
            let x = _mm256_mul_ps(
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32::<9>(b)), ps(ANGLE_MID)),
                ps(ANGLE_STEP),
            );
            let x2 = _mm256_mul_ps(x, x);
            let sin_x = _mm256_mul_ps(x, horner(&SIN, x2));
            let cos_x = horner(&COS, x2);
            let cos_phi = _mm256_mul_ps(_mm256_sub_ps(cos_x, sin_x), ps(FRAC_1_SQRT_2));
            let sin_phi = _mm256_mul_ps(_mm256_add_ps(cos_x, sin_x), ps(FRAC_1_SQRT_2));
            let sign0 = _mm256_slli_epi32::<31>(a);
            let sign1 = _mm256_and_si256(
                _mm256_slli_epi32::<30>(a),
                _mm256_set1_epi32(0x8000_0000_u32 as i32),
            );
            (
                _mm256_xor_ps(_mm256_mul_ps(r, cos_phi), _mm256_castsi256_ps(sign0)),
                _mm256_xor_ps(_mm256_mul_ps(r, sin_phi), _mm256_castsi256_ps(sign1)),
            )
        };
        // two groups per iteration: independent chains for the out-of-order core to overlap
        let mut pairs = out.chunks_exact_mut(2 * GROUP);
        for g in &mut pairs {
            let (a0, b0) = (step(), step());
            let (a1, b1) = (step(), step());
            let (z0, z1) = draw(a0, b0);
            let (z2, z3) = draw(a1, b1);
            // SAFETY: `g` holds 32 f32 = four 32-byte quarters.
            unsafe {
                _mm256_storeu_ps(g.as_mut_ptr(), z0);
                _mm256_storeu_ps(g.as_mut_ptr().add(GROUP / 2), z1);
                _mm256_storeu_ps(g.as_mut_ptr().add(GROUP), z2);
                _mm256_storeu_ps(g.as_mut_ptr().add(3 * GROUP / 2), z3);
            }
        }
        for g in pairs.into_remainder().chunks_exact_mut(GROUP) {
            let (a, b) = (step(), step());
            let (z0, z1) = draw(a, b);
            // SAFETY: `g` holds 16 f32 = two 32-byte halves.
            unsafe {
                _mm256_storeu_ps(g.as_mut_ptr(), z0);
                _mm256_storeu_ps(g.as_mut_ptr().add(GROUP / 2), z1);
            }
        }
        for (row, v) in s.iter_mut().zip([s0, s1, s2, s3]) {
            // SAFETY: as for the loads.
            unsafe { _mm256_storeu_si256(row.as_mut_ptr().cast(), v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard normal CDF-based masses `P(|Z| < k)`.
    const MASSES: [(f64, f64); 5] = [
        (0.5, 0.382_924_922_548_026),
        (1.0, 0.682_689_492_137_086),
        (2.0, 0.954_499_736_103_642),
        (3.0, 0.997_300_203_936_740),
        (4.0, 0.999_936_657_516_334),
    ];

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
        for (k, p) in MASSES {
            let frac = v.iter().filter(|x| x.abs() < k).count() as f64 / n as f64;
            assert!(
                (frac - p).abs() < 1.5e-3,
                "P(|Z| < {k}) = {frac}, expected {p}"
            );
        }
        let pos = v.iter().filter(|x| **x > 0.0).count() as f64 / n as f64;
        assert!((pos - 0.5).abs() < 2e-3);
        // pairs are uncorrelated, also within a group (cos and sin of one draw)
        let corr = |lag: usize| {
            v.iter().zip(&v[lag..]).map(|(a, b)| a * b).sum::<f64>() / (n - lag) as f64
        };
        for lag in [1, 8, 16] {
            assert!(corr(lag).abs() < 3e-3, "lag {lag}: {}", corr(lag));
        }
        // and so are their squares (r is shared by the two draws of a pair)
        let sq = |lag: usize| {
            v.iter()
                .zip(&v[lag..])
                .map(|(a, b)| (a * a - 1.0) * (b * b - 1.0))
                .sum::<f64>()
                / (n - lag) as f64
        };
        assert!(sq(8).abs() < 0.02, "squares at lag 8: {}", sq(8));
    }

    #[test]
    fn series_match_the_standard_library() {
        for i in 1..=100_000u32 {
            let u = i as f32 / 100_000.0;
            let exact = f64::from(u).ln();
            assert!(
                (f64::from(ln(u)) - exact).abs() <= 4e-7 * exact.abs().max(1e-3),
                "ln {u}"
            );
        }
        for i in 0..=10_000 {
            let x = (i as f32 / 10_000.0 - 0.5) * std::f32::consts::FRAC_PI_2;
            let (s, c) = sin_cos(x);
            assert!((f64::from(s) - f64::from(x).sin()).abs() < 2e-7, "sin {x}");
            assert!((f64::from(c) - f64::from(x).cos()).abs() < 2e-7, "cos {x}");
        }
    }

    /// Without AVX2 there is no vector path to compare: the test fails when
    /// `MAXI_REQUIRE_AVX2=1` (as `.ci/run` sets), else it writes a `SKIPPED:` line straight to
    /// stdout (past the harness's capture) and returns.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_path_matches_the_portable_one_bit_for_bit() {
        const TEST: &str = "vector_path_matches_the_portable_one_bit_for_bit";
        if !std::arch::is_x86_feature_detected!("avx2") {
            assert!(
                std::env::var_os("MAXI_REQUIRE_AVX2").is_none_or(|v| v != "1"),
                "{TEST}: MAXI_REQUIRE_AVX2=1 but this CPU has no AVX2"
            );
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "SKIPPED: {TEST}: no AVX2; MAXI_REQUIRE_AVX2=1 makes this a failure"
            );
            let _ = stdout.flush();
            return;
        }
        let sampler = NormalSampler::new(&mut maxi_core::rng_from_seed(9));
        let (mut a, mut b) = (sampler.s, sampler.s);
        for _ in 0..500 {
            let (mut va, mut vb) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
            groups_portable(&mut a, &mut va);
            // SAFETY: AVX2 was detected above.
            unsafe { avx2::groups(&mut b, &mut vb) };
            assert_eq!(va.map(f32::to_bits), vb.map(f32::to_bits));
        }
        assert_eq!(a, b, "generator states diverged");
    }

    #[test]
    fn lanes_are_xoshiro256plusplus() {
        // lane 0's words are the reference xoshiro256++ seeded with the same state
        let mut sampler = NormalSampler::new(&mut maxi_core::rng_from_seed(5));
        let state: Vec<u8> = (0..4).flat_map(|k| sampler.s[k][0].to_le_bytes()).collect();
        let mut reference: MaxiRng =
            rand::SeedableRng::from_seed(state.try_into().expect("32 bytes"));
        let mut bits = [0u32; 2 * LANES];
        for _ in 0..10 {
            next_halves(&mut sampler.s, &mut bits);
            let w = reference.next_u64();
            assert_eq!((bits[0], bits[1]), (w as u32, (w >> 32) as u32));
        }
    }

    #[test]
    fn odd_lengths_and_seeds_are_reproducible() {
        let mut a = vec![0.0f64; 7];
        let mut b = vec![0.0f64; 7];
        fill_standard_normal(&mut a, &mut maxi_core::rng_from_seed(1));
        fill_standard_normal(&mut b, &mut maxi_core::rng_from_seed(1));
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.is_finite()));
        // the f64 variant stores exactly the f32 variant's draws (which are written in place
        // for whole groups of 16 and through the block buffer otherwise)
        for n in [7, 16, 100, 300] {
            let mut a = vec![0.0f64; n];
            let mut c = vec![0.0f32; n];
            fill_standard_normal(&mut a, &mut maxi_core::rng_from_seed(1));
            fill_standard_normal(&mut c, &mut maxi_core::rng_from_seed(1));
            for (x, y) in a.iter().zip(&c) {
                assert_eq!(*x, f64::from(*y));
            }
        }
        // extreme words: u at its ends, angles at theirs
        for (wa, wb) in [(0u32, 0u32), (u32::MAX, u32::MAX), (511, 1 << 31)] {
            let (z0, z1) = box_muller(wa, wb);
            assert!(z0.is_finite() && z1.is_finite() && z0.abs() < 6.0 && z1.abs() < 6.0);
        }
    }
}
