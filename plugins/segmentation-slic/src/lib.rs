//! SLIC and SLICO superpixels (Achanta et al., TPAMI 2012), with the meaning of OpenCV's
//! `cv2.ximgproc.createSuperpixelSLIC(image, algorithm, region_size, ruler)` followed by
//! `iterate(num_iter)` and `enforceLabelConnectivity(min_element_size)` — what MAXi's
//! `SlicHandler` calls (MAXi skips the connectivity step; here it always runs).
//!
//! Algorithm:
//! 1. Seeds on a grid of about `region_size`-pixel cells (`round(W / region_size)` columns,
//!    `round(H / region_size)` rows, evenly spread), each moved to the lowest colour gradient in
//!    its 3×3 neighbourhood.
//! 2. `num_iter` times: every seed claims the pixels of the `2·region_size` square around it
//!    whose distance to it is smallest, then moves to the mean colour and position of its
//!    pixels. The distance is OpenCV's: `d_colour² + d_xy² · (ruler / region_size)²` for SLIC;
//!    for SLICO `d_colour² / m_k + d_xy² / region_size²`, where `m_k` is the largest squared colour
//!    distance inside superpixel `k` in the previous iteration (its compactness adapts).
//! 3. Fragments of at most `min_element_size` % of the average superpixel area (and at least
//!    3 pixels) join a neighbouring superpixel; the rest are relabelled as connected segments.
//!
//! Values: the image is min-max normalised over all channels to 0..255 (OpenCV's 8-bit scale),
//! so 0..1, 0..255 and standardised inputs of one picture segment identically. With
//! `convert2lab` (default) an RGB image is converted to CIELAB first and scaled as OpenCV's
//! 8-bit `cvtColor(..., COLOR_RGB2Lab)` (`L·255/100`, `a`, `b`), the preprocessing OpenCV's
//! documentation recommends; `ruler` then weighs the same colour units as on an 8-bit Lab image.
//! Grey images (`C = 1`) cluster on their one channel.
//!
//! Deviations from OpenCV: SLICO seeds on the same square grid as SLIC (OpenCV: a hexagonal
//! grid) and starts from `m_k = 10²` (the SLICO paper's start; OpenCV starts from `FLT_MIN`, i.e.
//! colour alone in the first pass); a seed moves in its 3×3 neighbourhood whenever that lowers the
//! gradient (OpenCV moves it only when both coordinates change); an emptied superpixel keeps its
//! centre (OpenCV moves it to (0, 0)); `MSLIC` is not offered.
//!
//! Component name `slic`, MAXi alias `SlicHandler`.
#![warn(missing_docs)]

use maxi_image_ops::{check_image, merge_small_segments, normalize_min_max, rgb_to_lab};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use serde::{Deserialize, Serialize};

pub use maxi_image_ops::SegmentError;

/// This component's kwargs, under the name every segmentation crate uses.
pub type Kwargs = SlicKwargs;

/// The component's registry name.
pub const NAME: &str = "slic";
/// Names MAXi uses for this component.
pub const ALIASES: &[&str] = &["SlicHandler"];

/// The largest `region_size` accepted.
pub const MAX_REGION_SIZE: u32 = 4096;
/// The largest `num_iter` accepted.
pub const MAX_ITERATIONS: u32 = 100;
/// The largest `ruler` accepted.
pub const MAX_RULER: f64 = 1e6;

/// Which SLIC variant runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SlicAlgorithm {
    /// Fixed compactness `ruler`.
    #[serde(rename = "SLIC", alias = "slic")]
    Slic,
    /// Compactness adapted per superpixel ("SLIC zero"); `ruler` is not used.
    #[serde(rename = "SLICO", alias = "slico")]
    Slico,
}

fn default_region_size() -> u32 {
    8
}
fn default_ruler() -> f64 {
    200.0
}
fn default_num_iter() -> u32 {
    10
}
fn default_algorithm() -> SlicAlgorithm {
    SlicAlgorithm::Slic
}
fn default_true() -> bool {
    true
}
fn default_min_element_size() -> u32 {
    25
}

/// Kwargs of the SLIC segmentation (MAXi's `SlicHandler` names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlicKwargs {
    /// Average superpixel size in pixels: seeds are about this far apart. 1..=4096 and at most the
    /// image's shorter side. Default 8.
    #[serde(default = "default_region_size")]
    pub region_size: u32,
    /// Compactness (SLIC only): larger values give squarer superpixels, smaller ones follow colour
    /// edges more closely. Greater than 0, at most 1e6. Default 200.
    #[serde(default = "default_ruler")]
    pub ruler: f64,
    /// Number of assignment/update iterations, 1..=100. Default 10.
    #[serde(default = "default_num_iter")]
    pub num_iter: u32,
    /// `SLIC` (fixed compactness) or `SLICO` (adaptive). Default `SLIC`. MAXi's name
    /// `sp_algorithm` is accepted too.
    #[serde(default = "default_algorithm", alias = "sp_algorithm")]
    pub algorithm: SlicAlgorithm,
    /// Cluster RGB images in CIELAB (as OpenCV recommends) rather than in RGB. Ignored for grey
    /// images. Default true.
    #[serde(default = "default_true")]
    pub convert2lab: bool,
    /// Connected fragments of at most this percentage of the average superpixel area are merged
    /// into a neighbour (OpenCV's `enforceLabelConnectivity`), 0..=100; 0 keeps every fragment
    /// as its own segment. Default 25.
    #[serde(default = "default_min_element_size")]
    pub min_element_size: u32,
}

impl Default for SlicKwargs {
    fn default() -> Self {
        Self {
            region_size: default_region_size(),
            ruler: default_ruler(),
            num_iter: default_num_iter(),
            algorithm: default_algorithm(),
            convert2lab: true,
            min_element_size: default_min_element_size(),
        }
    }
}

impl SlicKwargs {
    /// Range-checks the kwargs; the error is `(field, message with the fix)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_REGION_SIZE).contains(&self.region_size) {
            return Err((
                "region_size".into(),
                format!(
                    "must be between 1 and {MAX_REGION_SIZE} pixels, got {}; 8 is the default",
                    self.region_size
                ),
            ));
        }
        if !(self.ruler.is_finite() && self.ruler > 0.0 && self.ruler <= MAX_RULER) {
            return Err((
                "ruler".into(),
                format!(
                    "must be a number greater than 0 and at most {MAX_RULER:e}, got {}; 200 is the default",
                    self.ruler
                ),
            ));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.num_iter) {
            return Err((
                "num_iter".into(),
                format!(
                    "must be between 1 and {MAX_ITERATIONS}, got {}; 10 is the default",
                    self.num_iter
                ),
            ));
        }
        if self.min_element_size > 100 {
            return Err((
                "min_element_size".into(),
                format!(
                    "is a percentage of the average superpixel area, 0..=100, got {}; 25 is the default",
                    self.min_element_size
                ),
            ));
        }
        Ok(())
    }
}

/// The colour features SLIC clusters on, `[H, W, C']`, in OpenCV's 8-bit units.
fn features(image: ArrayView3<'_, f64>, convert2lab: bool) -> Result<Array3<f64>, SegmentError> {
    if image.len_of(Axis(2)) == 3 && convert2lab {
        let mut lab = rgb_to_lab(normalize_min_max(image, 1.0).view())?;
        lab.index_axis_mut(Axis(2), 0)
            .mapv_inplace(|l| l * 255.0 / 100.0);
        Ok(lab)
    } else {
        Ok(normalize_min_max(image, 255.0))
    }
}

/// A cluster centre: colour and position.
#[derive(Clone)]
struct Centre {
    colour: Vec<f64>,
    x: f64,
    y: f64,
}

/// Segments an `[H, W, C]` image (C = 1 or 3, any value range — see the crate docs) into SLIC
/// superpixels; returns the `[H, W]` label map (labels `0..n-1`, each segment connected).
///
/// Errors: invalid kwargs, an empty image, C ∉ {1, 3}, a non-finite value, or an image whose
/// shorter side is smaller than `region_size`.
pub fn segment(
    image: ArrayView3<'_, f64>,
    kwargs: &SlicKwargs,
) -> Result<Array2<i32>, SegmentError> {
    kwargs.validate()?;
    let (h, w, _) = check_image(image)?;
    let s = kwargs.region_size as usize;
    if h < s || w < s {
        return Err(SegmentError::TooSmall {
            height: h,
            width: w,
            what: "superpixel",
            field: "region_size",
            value: s,
            max: h.min(w),
        });
    }
    let feat = features(image, kwargs.convert2lab)?;
    let nc = feat.len_of(Axis(2));
    // Flat, row-major copies: pixel p = y·w + x, channel b at p·nc + b.
    let f: Vec<f64> = feat.iter().copied().collect();

    // 1. Grid seeds, each moved to the lowest gradient of its 3×3 neighbourhood.
    let xs = ((w as f64 / s as f64) + 0.5).floor().max(1.0) as usize;
    let ys = ((h as f64 / s as f64) + 0.5).floor().max(1.0) as usize;
    let grad = gradient(&f, h, w, nc);
    let mut centres = Vec::with_capacity(xs * ys);
    for j in 0..ys {
        let y0 = (((j as f64 + 0.5) * h as f64 / ys as f64) as usize).min(h - 1);
        for i in 0..xs {
            let x0 = (((i as f64 + 0.5) * w as f64 / xs as f64) as usize).min(w - 1);
            let (mut bx, mut by) = (x0, y0);
            for (dy, dx) in [
                (-1, -1),
                (-1, 0),
                (-1, 1),
                (0, -1),
                (0, 1),
                (1, -1),
                (1, 0),
                (1, 1),
            ] {
                let (ny, nx) = (y0 as isize + dy, x0 as isize + dx);
                if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                    continue;
                }
                let (ny, nx) = (ny as usize, nx as usize);
                if grad[ny * w + nx] < grad[by * w + bx] {
                    (bx, by) = (nx, ny);
                }
            }
            let p = by * w + bx;
            centres.push(Centre {
                colour: f[p * nc..(p + 1) * nc].to_vec(),
                x: bx as f64,
                y: by as f64,
            });
        }
    }
    let k = centres.len();

    // Start from the seed cell of each pixel, so a pixel no window reaches still has a label.
    let mut labels: Vec<usize> = (0..h * w)
        .map(|p| {
            let (y, x) = (p / w, p % w);
            (y * ys / h).min(ys - 1) * xs + (x * xs / w).min(xs - 1)
        })
        .collect();

    // 2. Assignment and update.
    let spatial_weight = match kwargs.algorithm {
        SlicAlgorithm::Slic => (kwargs.ruler / s as f64).powi(2),
        SlicAlgorithm::Slico => 1.0 / (s * s) as f64,
    };
    let mut max_colour = vec![100.0_f64; k];
    let mut dist = vec![f64::INFINITY; h * w];
    let mut colour_dist = vec![0.0_f64; h * w];
    for _ in 0..kwargs.num_iter {
        dist.fill(f64::INFINITY);
        for (n, c) in centres.iter().enumerate() {
            let (cx, cy) = (c.x as usize, c.y as usize);
            let (y1, y2) = (cy.saturating_sub(s), (cy + s).min(h));
            let (x1, x2) = (cx.saturating_sub(s), (cx + s).min(w));
            let colour_weight = match kwargs.algorithm {
                SlicAlgorithm::Slic => 1.0,
                SlicAlgorithm::Slico => 1.0 / max_colour[n],
            };
            for y in y1..y2 {
                let dy = y as f64 - c.y;
                for x in x1..x2 {
                    let p = y * w + x;
                    let px = &f[p * nc..(p + 1) * nc];
                    let dc: f64 = px
                        .iter()
                        .zip(&c.colour)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum();
                    let dx = x as f64 - c.x;
                    let d = dc * colour_weight + (dx * dx + dy * dy) * spatial_weight;
                    if d < dist[p] {
                        dist[p] = d;
                        labels[p] = n;
                        colour_dist[p] = dc;
                    }
                }
            }
        }
        if kwargs.algorithm == SlicAlgorithm::Slico {
            // The largest colour distance inside each superpixel (at least 1 unit², so a flat
            // superpixel does not divide by zero).
            max_colour.fill(1.0);
            for p in 0..h * w {
                if dist[p].is_finite() {
                    let m = &mut max_colour[labels[p]];
                    *m = m.max(colour_dist[p]);
                }
            }
        }
        let mut sum_colour = vec![0.0_f64; k * nc];
        let mut sum_xy = vec![(0.0_f64, 0.0_f64, 0usize); k];
        for (p, &n) in labels.iter().enumerate() {
            for b in 0..nc {
                sum_colour[n * nc + b] += f[p * nc + b];
            }
            let e = &mut sum_xy[n];
            e.0 += (p % w) as f64;
            e.1 += (p / w) as f64;
            e.2 += 1;
        }
        for (n, c) in centres.iter_mut().enumerate() {
            let (sx, sy, count) = sum_xy[n];
            if count == 0 {
                continue;
            }
            let inv = 1.0 / count as f64;
            for b in 0..nc {
                c.colour[b] = sum_colour[n * nc + b] * inv;
            }
            c.x = sx * inv;
            c.y = sy * inv;
        }
    }

    // 3. Connectivity: fold small fragments into a neighbour, relabel 0..n-1.
    let min_size = if kwargs.min_element_size == 0 {
        0
    } else {
        let average = (h * w) / k;
        let div = (100.0 / kwargs.min_element_size as f64 + 0.5) as usize;
        (average / div.max(1)).max(3)
    };
    let labels = Array2::from_shape_vec((h, w), labels.into_iter().map(|l| l as i32).collect())
        .map_err(|e| SegmentError::InvalidKwarg {
            field: "image".into(),
            message: format!("internal shape error: {e}"),
        })?;
    Ok(merge_small_segments(labels.view(), min_size))
}

/// Squared gradient magnitude summed over channels, with central differences and mirrored
/// borders (OpenCV's 1-aperture Sobel with `BORDER_REFLECT_101`).
fn gradient(f: &[f64], h: usize, w: usize, nc: usize) -> Vec<f64> {
    let mirror = |i: isize, n: usize| -> usize {
        if n == 1 {
            0
        } else if i < 0 {
            (-i) as usize
        } else if i as usize >= n {
            2 * (n - 1) - i as usize
        } else {
            i as usize
        }
    };
    let mut g = vec![0.0; h * w];
    for y in 0..h {
        let (yu, yd) = (mirror(y as isize - 1, h), mirror(y as isize + 1, h));
        for x in 0..w {
            let (xl, xr) = (mirror(x as isize - 1, w), mirror(x as isize + 1, w));
            let mut sum = 0.0;
            for b in 0..nc {
                let dx = f[(y * w + xr) * nc + b] - f[(y * w + xl) * nc + b];
                let dy = f[(yd * w + x) * nc + b] - f[(yu * w + x) * nc + b];
                sum += dx * dx + dy * dy;
            }
            g[y * w + x] = sum;
        }
    }
    g
}

maxi_image_ops::segmentation_component!(Slic, SlicKwargs, segment, NAME);
maxi_core::register_segmentation!(
    Slic,
    "slic",
    aliases = ["SlicHandler"],
    doc = "SLIC / SLICO superpixels (OpenCV ximgproc meaning: region_size, ruler, num_iter, algorithm)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_image_ops::check_segmentation;
    use ndarray::Array3;

    /// Distinct, saturated colours (0..255).
    const PALETTE: [[f64; 3]; 9] = [
        [230.0, 25.0, 75.0],
        [60.0, 180.0, 75.0],
        [255.0, 225.0, 25.0],
        [0.0, 130.0, 200.0],
        [245.0, 130.0, 48.0],
        [145.0, 30.0, 180.0],
        [70.0, 240.0, 240.0],
        [240.0, 50.0, 230.0],
        [0.0, 0.0, 0.0],
    ];

    /// `rows × cols` flat blocks of `block` pixels, colours from the palette.
    fn blocks(rows: usize, cols: usize, block: usize) -> Array3<f64> {
        Array3::from_shape_fn((rows * block, cols * block, 3), |(r, c, k)| {
            PALETTE[((r / block) * cols + c / block) % PALETTE.len()][k]
        })
    }

    /// Every segment lies inside one region of `truth` (no segment crosses a region boundary).
    fn assert_pure(labels: &Array2<i32>, truth: &Array2<i32>) {
        let mut region_of = std::collections::HashMap::new();
        for (l, t) in labels.iter().zip(truth.iter()) {
            let r = region_of.entry(*l).or_insert(*t);
            assert_eq!(r, t, "segment {l} crosses regions {r} and {t}");
        }
    }

    #[test]
    fn one_superpixel_per_block_when_region_size_is_the_block() {
        let img = blocks(3, 3, 8);
        for algorithm in [SlicAlgorithm::Slic, SlicAlgorithm::Slico] {
            let kw = SlicKwargs {
                algorithm,
                ..SlicKwargs::default()
            };
            let labels = segment(img.view(), &kw).unwrap();
            for ((r, c), &l) in labels.indexed_iter() {
                assert_eq!(l as usize, (r / 8) * 3 + c / 8, "{algorithm:?}");
            }
        }
    }

    /// A disc on a background, not aligned with the seed grid.
    fn disc(h: usize, w: usize) -> (Array3<f64>, Array2<i32>) {
        let truth = Array2::from_shape_fn((h, w), |(r, c)| {
            let (dy, dx) = (r as f64 - 21.3, c as f64 - 26.7);
            i32::from(dy * dy + dx * dx < 13.5 * 13.5)
        });
        let img = Array3::from_shape_fn((h, w, 3), |(r, c, k)| {
            if truth[[r, c]] == 1 {
                [200.0, 40.0, 40.0][k]
            } else {
                [40.0, 90.0, 200.0][k]
            }
        });
        (img, truth)
    }

    #[test]
    fn superpixels_follow_a_disc_boundary() {
        let (img, truth) = disc(48, 56);
        for algorithm in [SlicAlgorithm::Slic, SlicAlgorithm::Slico] {
            for ruler in [200.0, 20.0] {
                let kw = SlicKwargs {
                    algorithm,
                    ruler,
                    ..SlicKwargs::default()
                };
                let labels = segment(img.view(), &kw).unwrap();
                let n = check_segmentation(labels.view()).unwrap();
                // 6 × 7 seeds; fragments may merge but the count stays near the grid's.
                assert!((30..=50).contains(&n), "{algorithm:?} ruler {ruler}: {n}");
                assert_pure(&labels, &truth);
            }
        }
    }

    #[test]
    fn labels_are_contiguous_connected_and_deterministic() {
        // A textured image: smooth gradients plus a checker pattern.
        let img = Array3::from_shape_fn((40, 37, 3), |(r, c, k)| {
            let base = [r as f64 * 6.0, c as f64 * 5.0, ((r + c) % 7) as f64 * 30.0][k];
            base + if (r / 3 + c / 4) % 2 == 0 { 40.0 } else { 0.0 }
        });
        for algorithm in [SlicAlgorithm::Slic, SlicAlgorithm::Slico] {
            for min_element_size in [0, 25, 100] {
                let kw = SlicKwargs {
                    algorithm,
                    min_element_size,
                    ruler: 10.0,
                    ..SlicKwargs::default()
                };
                let a = segment(img.view(), &kw).unwrap();
                check_segmentation(a.view()).unwrap();
                assert_eq!(a, segment(img.view(), &kw).unwrap());
            }
        }
        // Grey images work too.
        let grey = img.index_axis(Axis(2), 0).insert_axis(Axis(2)).to_owned();
        let labels = segment(grey.view(), &SlicKwargs::default()).unwrap();
        check_segmentation(labels.view()).unwrap();
    }

    #[test]
    fn merging_removes_small_fragments() {
        let img = Array3::from_shape_fn((64, 64, 3), |(r, c, k)| {
            (((r * 7 + c * 13 + k * 5) % 17) as f64) * 15.0
        });
        let kw = SlicKwargs {
            ruler: 5.0,
            min_element_size: 25,
            ..SlicKwargs::default()
        };
        let labels = segment(img.view(), &kw).unwrap();
        let n = check_segmentation(labels.view()).unwrap();
        let mut sizes = vec![0usize; n];
        for &l in &labels {
            sizes[l as usize] += 1;
        }
        // Average area 64, 25 % of it is 16: no fragment of 16 pixels or fewer survives.
        assert!(sizes.iter().all(|&s| s > 16), "{sizes:?}");
    }

    #[test]
    fn value_scale_does_not_matter() {
        let (img, _) = disc(40, 40);
        let unit = img.mapv(|v| v / 255.0);
        let standardised = img.mapv(|v| (v - 120.0) / 60.0);
        let kw = SlicKwargs::default();
        let a = segment(img.view(), &kw).unwrap();
        assert_eq!(a, segment(unit.view(), &kw).unwrap());
        assert_eq!(a, segment(standardised.view(), &kw).unwrap());
    }

    #[test]
    fn constant_image_gives_the_seed_grid() {
        let img = Array3::from_elem((16, 24, 3), 0.5);
        let labels = segment(img.view(), &SlicKwargs::default()).unwrap();
        assert_eq!(check_segmentation(labels.view()), Ok(6));
    }

    #[test]
    fn errors_name_the_problem_and_fix() {
        let img = Array3::<f64>::zeros((6, 10, 3));
        let err = segment(img.view(), &SlicKwargs::default()).unwrap_err();
        assert!(err.to_string().contains("use `region_size` ≤ 6"), "{err}");
        let bad = |kw: SlicKwargs, field: &str| {
            let err = segment(blocks(2, 2, 8).view(), &kw).unwrap_err();
            assert!(
                matches!(&err, SegmentError::InvalidKwarg { field: f, .. } if f == field),
                "{err}"
            );
        };
        let d = SlicKwargs::default;
        bad(
            SlicKwargs {
                region_size: 0,
                ..d()
            },
            "region_size",
        );
        bad(
            SlicKwargs {
                ruler: f64::NAN,
                ..d()
            },
            "ruler",
        );
        bad(SlicKwargs { ruler: 0.0, ..d() }, "ruler");
        bad(SlicKwargs { num_iter: 0, ..d() }, "num_iter");
        bad(
            SlicKwargs {
                num_iter: 101,
                ..d()
            },
            "num_iter",
        );
        bad(
            SlicKwargs {
                min_element_size: 101,
                ..d()
            },
            "min_element_size",
        );
        let empty = Array3::<f64>::zeros((0, 8, 3));
        assert!(matches!(
            segment(empty.view(), &d()),
            Err(SegmentError::EmptyImage { .. })
        ));
    }

    #[test]
    fn kwargs_serde_matches_maxi() {
        let k: SlicKwargs = serde_json::from_str("{}").unwrap();
        assert_eq!(k, SlicKwargs::default());
        let k: SlicKwargs =
            serde_json::from_str(r#"{"sp_algorithm": "SLICO", "region_size": 10, "ruler": 50}"#)
                .unwrap();
        assert_eq!(
            (k.algorithm, k.region_size, k.ruler),
            (SlicAlgorithm::Slico, 10, 50.0)
        );
        assert!(serde_json::from_str::<SlicKwargs>(r#"{"algorithm": "MSLIC"}"#).is_err());
        assert!(serde_json::from_str::<SlicKwargs>(r#"{"regionsize": 4}"#).is_err());
    }
}
