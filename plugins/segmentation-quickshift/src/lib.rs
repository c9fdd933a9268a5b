//! Quickshift superpixels (Vedaldi & Soatto 2008) with the meaning of
//! `skimage.segmentation.quickshift(image, kernel_size, max_dist, ratio, convert2lab)` — the
//! segmentation the `lime` package uses by default (`kernel_size=4, max_dist=200, ratio=0.2`).
//!
//! Algorithm (as scikit-image's `_quickshift_cy.pyx`): every pixel is a point in the joint space
//! `(ratio · colour, row, column)`, colour in CIELAB when `convert2lab` (default).
//! 1. Density: `P(p) = Σ_q exp(−‖p − q‖² / (2 · kernel_size²))` over the pixels `q` of the
//!    `(2w+1)²` window around `p`, `w = ceil(3 · kernel_size)`.
//! 2. Each pixel links to the nearest (in the joint space) pixel of higher density in the same
//!    window, if that one is closer than `max_dist`; otherwise it is a root.
//! 3. Every tree is a segment. A link can skip pixels, so a tree can be disconnected in the
//!    image: its connected pieces become separate segments (scikit-image leaves them as one
//!    label), labelled `0..n-1` in raster order.
//!
//! Ties in density are broken deterministically (the later pixel in raster order counts as
//! higher) where scikit-image adds Gaussian noise of scale 1e-5 from a seeded generator; on
//! images without exact ties the segmentations agree (tested on a reference computed with
//! scikit-image 0.26). There is no Gaussian pre-smoothing (`sigma`, default 0 in scikit-image).
//!
//! Values: the image is min-max normalised over all channels to 0..1 (scikit-image's float
//! scale) before the CIELAB conversion, so 0..1, 0..255 and standardised inputs of one picture
//! segment identically.
//!
//! Work: `O(H · W · (2w+1)²)`, bounded by `kernel_size` ≤ 10 (w ≤ 30).
//!
//! Component name `quickshift`.
#![warn(missing_docs)]

use maxi_image_ops::{check_image, normalize_min_max, relabel_connected, require_rgb, rgb_to_lab};
use ndarray::{Array2, ArrayView3, Axis};
use serde::{Deserialize, Serialize};

pub use maxi_image_ops::SegmentError;

/// This component's kwargs, under the name every segmentation crate uses.
pub type Kwargs = QuickshiftKwargs;

/// The component's registry name.
pub const NAME: &str = "quickshift";

/// The largest `kernel_size` accepted (it sets the window, hence the work).
pub const MAX_KERNEL_SIZE: f64 = 10.0;
/// The largest `max_dist` accepted.
pub const MAX_MAX_DIST: f64 = 1e6;

fn default_kernel_size() -> f64 {
    4.0
}
fn default_max_dist() -> f64 {
    200.0
}
fn default_ratio() -> f64 {
    0.2
}
fn default_true() -> bool {
    true
}

/// Kwargs of the quickshift segmentation (scikit-image's names; `lime`'s defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickshiftKwargs {
    /// Width (standard deviation, in pixels) of the Gaussian density kernel; the search window
    /// reaches `ceil(3 · kernel_size)` pixels. Larger gives fewer segments. 1..=10. Default 4.
    #[serde(default = "default_kernel_size")]
    pub kernel_size: f64,
    /// Longest link, in the joint `(ratio · colour, position)` space; larger gives fewer
    /// segments. 0..=1e6. Default 200.
    #[serde(default = "default_max_dist")]
    pub max_dist: f64,
    /// Weight of colour against position, 0..=1 (0: position only). Default 0.2.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    /// Use CIELAB colour (needs an RGB image); false uses the normalised channels (0..1)
    /// directly, which also works on grey images. Default true.
    #[serde(default = "default_true")]
    pub convert2lab: bool,
}

impl Default for QuickshiftKwargs {
    fn default() -> Self {
        Self {
            kernel_size: default_kernel_size(),
            max_dist: default_max_dist(),
            ratio: default_ratio(),
            convert2lab: true,
        }
    }
}

impl QuickshiftKwargs {
    /// Range-checks the kwargs; the error is `(field, message with the fix)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(self.kernel_size.is_finite() && (1.0..=MAX_KERNEL_SIZE).contains(&self.kernel_size)) {
            return Err((
                "kernel_size".into(),
                format!(
                    "must be between 1 and {MAX_KERNEL_SIZE}, got {}; 4 is the default",
                    self.kernel_size
                ),
            ));
        }
        if !(self.max_dist.is_finite() && (0.0..=MAX_MAX_DIST).contains(&self.max_dist)) {
            return Err((
                "max_dist".into(),
                format!(
                    "must be between 0 and {MAX_MAX_DIST:e}, got {}; 200 is the default",
                    self.max_dist
                ),
            ));
        }
        if !(self.ratio.is_finite() && (0.0..=1.0).contains(&self.ratio)) {
            return Err((
                "ratio".into(),
                format!(
                    "must be between 0 and 1, got {}; 0.2 is the default",
                    self.ratio
                ),
            ));
        }
        Ok(())
    }
}

/// Segments an `[H, W, C]` image (C = 3, or C = 1 with `convert2lab = false`; any value range —
/// see the crate docs) with quickshift; returns the `[H, W]` label map (labels `0..n-1`, each
/// segment connected).
///
/// Errors: invalid kwargs, an empty image, C ∉ {1, 3}, a non-finite value, or a grey image with
/// `convert2lab = true`.
pub fn segment(
    image: ArrayView3<'_, f64>,
    kwargs: &QuickshiftKwargs,
) -> Result<Array2<i32>, SegmentError> {
    kwargs.validate()?;
    let (h, w, _) = check_image(image)?;
    let unit = normalize_min_max(image, 1.0);
    let colour = if kwargs.convert2lab {
        require_rgb(
            image,
            "quickshift with convert2lab",
            "pass an RGB image or set `convert2lab` to false",
        )?;
        rgb_to_lab(unit.view())?
    } else {
        unit
    };
    let nc = colour.len_of(Axis(2));
    let f: Vec<f64> = colour.iter().map(|v| v * kwargs.ratio).collect();
    let kw = (3.0 * kwargs.kernel_size).ceil() as usize;
    let inv_two_k2 = -0.5 / (kwargs.kernel_size * kwargs.kernel_size);

    // Squared joint distance between pixels p = (r, c) and q = (r2, c2).
    let dist2 = |p: usize, q: usize, dr: f64, dc: f64| -> f64 {
        let (a, b) = (&f[p * nc..(p + 1) * nc], &f[q * nc..(q + 1) * nc]);
        let colour: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        colour + dr * dr + dc * dc
    };
    // Calls `visit(q, dr, dc)` for every pixel q of p's window, in raster order.
    let for_window = |p: usize, visit: &mut dyn FnMut(usize, f64, f64)| {
        let (r, c) = (p / w, p % w);
        for r2 in r.saturating_sub(kw)..(r + kw + 1).min(h) {
            let dr = r as f64 - r2 as f64;
            for c2 in c.saturating_sub(kw)..(c + kw + 1).min(w) {
                visit(r2 * w + c2, dr, c as f64 - c2 as f64);
            }
        }
    };

    // 1. Densities.
    let density: Vec<f64> = (0..h * w)
        .map(|p| {
            let mut sum = 0.0;
            for_window(p, &mut |q, dr, dc| {
                sum += (dist2(p, q, dr, dc) * inv_two_k2).exp();
            });
            sum
        })
        .collect();
    // "q is higher than p": denser, or as dense and later in raster order (a strict total order,
    // so links never form a cycle).
    let higher =
        |q: usize, p: usize| density[q] > density[p] || (density[q] == density[p] && q > p);

    // 2. Links to the nearest higher pixel within the window and max_dist.
    let max_dist2 = kwargs.max_dist * kwargs.max_dist;
    let mut parent: Vec<usize> = (0..h * w).collect();
    for (p, link) in parent.iter_mut().enumerate() {
        let mut closest = f64::INFINITY;
        for_window(p, &mut |q, dr, dc| {
            if higher(q, p) {
                let d = dist2(p, q, dr, dc);
                if d < closest {
                    closest = d;
                    *link = q;
                }
            }
        });
        if closest > max_dist2 {
            *link = p;
        }
    }

    // 3. Roots: parents are strictly higher, so following them ends; resolve in decreasing order
    // of height so each pixel's parent is already resolved.
    let mut order: Vec<usize> = (0..h * w).collect();
    order.sort_unstable_by(|&a, &b| density[b].total_cmp(&density[a]).then_with(|| b.cmp(&a)));
    let mut root = vec![usize::MAX; h * w];
    for &p in &order {
        root[p] = if parent[p] == p { p } else { root[parent[p]] };
    }
    let labels = Array2::from_shape_vec((h, w), root.into_iter().map(|r| r as i32).collect())
        .map_err(|e| SegmentError::InvalidKwarg {
            field: "image".into(),
            message: format!("internal shape error: {e}"),
        })?;
    Ok(relabel_connected(labels.view()))
}

maxi_image_ops::segmentation_component!(Quickshift, QuickshiftKwargs, segment, NAME);
maxi_core::register_segmentation!(
    Quickshift,
    "quickshift",
    aliases = [],
    doc = "Quickshift superpixels (scikit-image meaning; the lime package's default: kernel_size 4, max_dist 200, ratio 0.2); RGB only",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_image_ops::check_segmentation;
    use ndarray::{Array3, array};

    /// 2 × 2 flat blocks of `block` pixels in four distinct colours (0..255).
    fn quadrants(block: usize) -> Array3<f64> {
        const COLOURS: [[f64; 3]; 4] = [
            [230.0, 25.0, 75.0],
            [60.0, 180.0, 75.0],
            [255.0, 225.0, 25.0],
            [0.0, 130.0, 200.0],
        ];
        Array3::from_shape_fn((2 * block, 2 * block, 3), |(r, c, k)| {
            COLOURS[(r / block) * 2 + c / block][k]
        })
    }

    #[test]
    fn quadrants_are_found_exactly() {
        let img = quadrants(16);
        let kw = QuickshiftKwargs {
            kernel_size: 2.0,
            max_dist: 10.0,
            ratio: 0.5,
            convert2lab: true,
        };
        let labels = segment(img.view(), &kw).unwrap();
        for ((r, c), &l) in labels.indexed_iter() {
            assert_eq!(l as usize, (r / 16) * 2 + c / 16, "at ({r}, {c})");
        }
    }

    /// A smooth synthetic image without density ties.
    fn smooth(h: usize, w: usize) -> Array3<f64> {
        Array3::from_shape_fn((h, w, 3), |(r, c, k)| {
            let (r, c) = (r as f64, c as f64);
            match k {
                0 => 0.5 + 0.4 * (0.35 * r).sin() * (0.25 * c).cos(),
                1 => 0.5 + 0.4 * (0.15 * r + 0.45 * c).sin(),
                _ => 0.5 + 0.3 * (0.22 * r - 0.1 * c).cos(),
            }
        })
    }

    #[test]
    fn matches_scikit_image() {
        // References: skimage.segmentation.quickshift (scikit-image 0.26) on `smooth(14, 16)`
        // min-max normalised to 0..1, then split into 4-connected pieces and numbered in raster
        // order (its labels 10 and 33 become 14 and 43 pieces). The result does not depend on
        // scikit-image's tie-breaking seed here.
        let img = smooth(14, 16);
        let cases = [
            (
                (1.5, 5.0, 0.2),
                array![
                    [0, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [0, 1, 1, 1, 1, 6, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 1, 6, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 7, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 7, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 7, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 5],
                    [1, 1, 1, 1, 7, 3, 3, 3, 3, 3, 3, 3, 8, 5, 5, 5],
                    [9, 9, 1, 1, 7, 3, 3, 3, 3, 3, 3, 3, 8, 5, 5, 5],
                    [9, 9, 9, 10, 7, 3, 3, 3, 3, 3, 3, 3, 8, 5, 5, 5],
                    [9, 9, 9, 10, 11, 3, 3, 3, 3, 3, 3, 3, 8, 5, 5, 5],
                    [9, 9, 9, 10, 11, 3, 3, 3, 3, 3, 3, 12, 13, 12, 12, 5],
                    [9, 9, 9, 10, 11, 3, 3, 3, 3, 3, 3, 12, 12, 12, 12, 5],
                    [9, 9, 9, 10, 11, 3, 3, 3, 3, 3, 12, 12, 12, 12, 12, 5],
                ],
            ),
            (
                (2.0, 8.0, 0.5),
                array![
                    [0, 1, 2, 2, 2, 2, 3, 4, 5, 5, 5, 5, 5, 6, 7, 8],
                    [9, 1, 2, 2, 2, 2, 10, 5, 5, 5, 5, 5, 11, 12, 8, 8],
                    [13, 14, 15, 15, 2, 16, 10, 5, 5, 5, 5, 5, 11, 12, 8, 8],
                    [17, 15, 15, 15, 18, 19, 5, 5, 5, 5, 5, 5, 11, 12, 8, 8],
                    [20, 15, 15, 15, 18, 19, 5, 5, 5, 5, 5, 5, 11, 12, 8, 8],
                    [15, 15, 15, 15, 18, 19, 5, 5, 5, 5, 5, 5, 11, 12, 8, 8],
                    [15, 21, 21, 15, 18, 19, 5, 5, 5, 5, 5, 22, 12, 12, 8, 8],
                    [21, 21, 21, 15, 18, 19, 5, 5, 5, 5, 5, 22, 12, 8, 8, 8],
                    [23, 23, 21, 15, 18, 19, 5, 5, 5, 5, 5, 22, 12, 8, 8, 8],
                    [23, 23, 24, 25, 18, 19, 26, 5, 5, 5, 5, 27, 28, 8, 8, 8],
                    [
                        23, 23, 24, 25, 29, 19, 26, 26, 26, 26, 30, 31, 32, 33, 33, 33
                    ],
                    [
                        23, 23, 24, 25, 29, 19, 26, 26, 26, 26, 34, 35, 36, 33, 33, 33
                    ],
                    [
                        23, 23, 24, 25, 29, 19, 26, 26, 26, 26, 37, 38, 33, 33, 33, 39
                    ],
                    [
                        23, 23, 24, 25, 29, 19, 26, 26, 26, 40, 41, 42, 33, 33, 33, 39
                    ],
                ],
            ),
        ];
        for ((kernel_size, max_dist, ratio), want) in cases {
            let kw = QuickshiftKwargs {
                kernel_size,
                max_dist,
                ratio,
                convert2lab: true,
            };
            let got = segment(img.view(), &kw).unwrap();
            assert_eq!(
                got, want,
                "kernel_size {kernel_size}, max_dist {max_dist}, ratio {ratio}"
            );
        }
    }

    #[test]
    fn lime_defaults_contract_and_determinism() {
        let img = smooth(32, 32).mapv(|v| v * 255.0);
        let kw = QuickshiftKwargs::default();
        let a = segment(img.view(), &kw).unwrap();
        check_segmentation(a.view()).unwrap();
        assert_eq!(a, segment(img.view(), &kw).unwrap());
        // Grey images work without the CIELAB conversion.
        let grey = img.index_axis(Axis(2), 1).insert_axis(Axis(2)).to_owned();
        let kw = QuickshiftKwargs {
            convert2lab: false,
            kernel_size: 2.0,
            max_dist: 3.0,
            ratio: 1.0,
        };
        let g = segment(grey.view(), &kw).unwrap();
        assert!(check_segmentation(g.view()).unwrap() > 1);
    }

    #[test]
    fn value_scale_does_not_matter() {
        let img = smooth(20, 20);
        let kw = QuickshiftKwargs {
            kernel_size: 2.0,
            max_dist: 6.0,
            ..QuickshiftKwargs::default()
        };
        let a = segment(img.view(), &kw).unwrap();
        assert!(check_segmentation(a.view()).unwrap() > 1);
        assert_eq!(a, segment(img.mapv(|v| v * 255.0).view(), &kw).unwrap());
        assert_eq!(
            a,
            segment(img.mapv(|v| (v - 0.45) / 0.22).view(), &kw).unwrap()
        );
    }

    #[test]
    fn errors_name_the_problem_and_fix() {
        let grey = Array3::<f64>::zeros((8, 8, 1));
        let err = segment(grey.view(), &QuickshiftKwargs::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quickshift with convert2lab needs an RGB image [H, W, 3] but got 1 channel(s); pass an RGB image or set `convert2lab` to false"
        );
        let img = quadrants(4);
        let bad = |kw: QuickshiftKwargs, field: &str| {
            let err = segment(img.view(), &kw).unwrap_err();
            assert!(
                matches!(&err, SegmentError::InvalidKwarg { field: f, .. } if f == field),
                "{err}"
            );
        };
        let d = QuickshiftKwargs::default;
        bad(
            QuickshiftKwargs {
                kernel_size: 0.5,
                ..d()
            },
            "kernel_size",
        );
        bad(
            QuickshiftKwargs {
                kernel_size: 11.0,
                ..d()
            },
            "kernel_size",
        );
        bad(
            QuickshiftKwargs {
                max_dist: -1.0,
                ..d()
            },
            "max_dist",
        );
        bad(
            QuickshiftKwargs {
                max_dist: f64::INFINITY,
                ..d()
            },
            "max_dist",
        );
        bad(QuickshiftKwargs { ratio: 1.5, ..d() }, "ratio");
        let empty = Array3::<f64>::zeros((3, 0, 3));
        assert!(matches!(
            segment(empty.view(), &d()),
            Err(SegmentError::EmptyImage { .. })
        ));
        // A single pixel is one segment.
        let one = Array3::<f64>::zeros((1, 1, 3));
        assert_eq!(segment(one.view(), &d()).unwrap(), array![[0]]);
    }

    #[test]
    fn kwargs_serde_defaults() {
        let k: QuickshiftKwargs = serde_json::from_str("{}").unwrap();
        assert_eq!(k, QuickshiftKwargs::default());
        assert!(serde_json::from_str::<QuickshiftKwargs>(r#"{"sigma": 1}"#).is_err());
    }
}
