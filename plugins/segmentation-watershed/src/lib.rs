//! Watershed segmentation with the pipeline of MAXi's `WatershedHandler`:
//!
//! 1. The image is min-max normalised to 0..255 and truncated to 8 bits (MAXi:
//!    `cv2.normalize(NORM_MINMAX)` then `astype(uint8)`), so 0..1, 0..255 and standardised
//!    inputs of one picture segment identically.
//! 2. Mean-shift filtering (OpenCV `pyrMeanShiftFiltering(img, ms_spatial_radius,
//!    ms_color_radius)`): each pixel moves, up to 5 times, to the mean position and colour of the
//!    pixels in the `(2·ms_spatial_radius+1)²` window around it whose colour is within
//!    `ms_color_radius`, and takes the colour where it stops.
//! 3. Grey (`0.299 R + 0.587 G + 0.114 B`), inverted when `invert`, then Otsu's threshold: the
//!    pixels above it are the foreground.
//! 4. Euclidean distance of each foreground pixel to the nearest background pixel.
//! 5. Markers: local maxima of that distance at least `max_min_dist` apart (Chebyshev), as
//!    `skimage.feature.peak_local_max(D, min_distance=max_min_dist, labels=thresh)`: a
//!    maximum of its `(2·max_min_dist+1)²` window inside the foreground's bounding box, strongest
//!    first, one kept per `max_min_dist`; with `exclude_border` (default, as scikit-image) none
//!    within `max_min_dist` of the image border.
//! 6. A marker-based watershed (priority flood, 4-connected, as `skimage.segmentation.watershed`)
//!    of `−distance` from the markers, restricted to the foreground.
//!
//! Output: every pixel needs a segment here, where MAXi labels the background 0 and drops it.
//! Each watershed basin is a segment; each connected piece of the background is a segment; and
//! each connected piece of foreground that no marker reached (a blob too small or too close to
//! the border to hold a marker) is a segment of its own. Labels are `0..n-1` in raster order.
//! Without foreground or without background the whole image is one segment.
//!
//! Deviations: the mean shift runs at full resolution on every pixel (OpenCV's default
//! `maxLevel = 1` first filters a half-size pyramid level and re-filters only near its colour
//! edges, for speed); grey uses the RGB weights on RGB input (MAXi hands an RGB array to
//! `COLOR_BGR2GRAY`, which swaps the red and blue weights); grey inputs (`C = 1`) are accepted
//! (OpenCV's mean shift needs 3 channels); ties between equally strong peaks are taken in raster
//! order.
//!
//! Work: `O(H · W · (2·ms_spatial_radius+1)²)` for the mean shift (radius ≤ 32), linear in the
//! pixels for the rest.
//!
//! Component name `watershed`, MAXi alias `WatershedHandler`.
#![warn(missing_docs)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use image::{GrayImage, Luma};
use maxi_image_ops::{check_image, normalize_min_max, relabel_connected};
use ndarray::{Array2, ArrayView2, ArrayView3};
use serde::{Deserialize, Serialize};

pub use maxi_image_ops::SegmentError;

/// This component's kwargs, under the name every segmentation crate uses.
pub type Kwargs = WatershedKwargs;

/// The component's registry name.
pub const NAME: &str = "watershed";
/// Names MAXi uses for this component.
pub const ALIASES: &[&str] = &["WatershedHandler"];

/// The largest `ms_spatial_radius` accepted (it sets the mean-shift window, hence the work).
pub const MAX_SPATIAL_RADIUS: u32 = 32;
/// The largest `ms_color_radius` accepted (above √3·255 ≈ 441.7 every colour is within reach).
pub const MAX_COLOR_RADIUS: f64 = 442.0;
/// The largest `max_min_dist` accepted.
pub const MAX_MIN_DIST: u32 = 1000;
/// The most pixels accepted (16.7 M: the mean shift costs about 4000 window visits per pixel,
/// and imageproc's Otsu histogram sums stay within `u32`).
pub const MAX_PIXELS: usize = 1 << 24;
/// OpenCV's default mean-shift termination: at most 5 iterations, or a move of at most 1.
const MEAN_SHIFT_ITERATIONS: usize = 5;
const MEAN_SHIFT_EPS: i64 = 1;

fn default_spatial_radius() -> u32 {
    14
}
fn default_color_radius() -> f64 {
    32.0
}
fn default_min_dist() -> u32 {
    20
}
fn default_true() -> bool {
    true
}

/// Kwargs of the watershed segmentation (MAXi's `WatershedHandler` names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatershedKwargs {
    /// Mean-shift spatial radius in pixels (OpenCV's `sp`), 1..=32. Default 14.
    #[serde(default = "default_spatial_radius")]
    pub ms_spatial_radius: u32,
    /// Mean-shift colour radius in 8-bit colour units (OpenCV's `sr`), 0..=442. Default 32.
    #[serde(default = "default_color_radius")]
    pub ms_color_radius: f64,
    /// Least distance in pixels between two markers (`peak_local_max`'s `min_distance`),
    /// 1..=1000. Default 20.
    #[serde(default = "default_min_dist")]
    pub max_min_dist: u32,
    /// Invert the grey image before thresholding, making dark objects the foreground.
    /// Default true.
    #[serde(default = "default_true")]
    pub invert: bool,
    /// Place no marker within `max_min_dist` of the image border (scikit-image's default).
    /// On images smaller than about `2·max_min_dist` this leaves no markers, so every
    /// foreground blob becomes one segment. Default true.
    #[serde(default = "default_true")]
    pub exclude_border: bool,
}

impl Default for WatershedKwargs {
    fn default() -> Self {
        Self {
            ms_spatial_radius: default_spatial_radius(),
            ms_color_radius: default_color_radius(),
            max_min_dist: default_min_dist(),
            invert: true,
            exclude_border: true,
        }
    }
}

impl WatershedKwargs {
    /// Range-checks the kwargs; the error is `(field, message with the fix)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_SPATIAL_RADIUS).contains(&self.ms_spatial_radius) {
            return Err((
                "ms_spatial_radius".into(),
                format!(
                    "must be between 1 and {MAX_SPATIAL_RADIUS} pixels, got {}; 14 is the default",
                    self.ms_spatial_radius
                ),
            ));
        }
        if !(self.ms_color_radius.is_finite()
            && (0.0..=MAX_COLOR_RADIUS).contains(&self.ms_color_radius))
        {
            return Err((
                "ms_color_radius".into(),
                format!(
                    "must be between 0 and {MAX_COLOR_RADIUS} (8-bit colour units), got {}; 32 is the default",
                    self.ms_color_radius
                ),
            ));
        }
        if !(1..=MAX_MIN_DIST).contains(&self.max_min_dist) {
            return Err((
                "max_min_dist".into(),
                format!(
                    "must be between 1 and {MAX_MIN_DIST} pixels, got {}; 20 is the default",
                    self.max_min_dist
                ),
            ));
        }
        Ok(())
    }
}

/// Segments an `[H, W, C]` image (C = 1 or 3, any value range — see the crate docs) with MAXi's
/// watershed pipeline; returns the `[H, W]` label map (labels `0..n-1`, each segment connected).
///
/// Errors: invalid kwargs, an empty image, C ∉ {1, 3}, or a non-finite value.
pub fn segment(
    image: ArrayView3<'_, f64>,
    kwargs: &WatershedKwargs,
) -> Result<Array2<i32>, SegmentError> {
    kwargs.validate()?;
    let (h, w, nc) = check_image(image)?;
    if h * w > MAX_PIXELS {
        return Err(SegmentError::TooLarge {
            pixels: h * w,
            max: MAX_PIXELS,
        });
    }
    // 1. 8-bit values (truncated, as numpy's astype(uint8)).
    let bytes: Vec<u8> = normalize_min_max(image, 255.0)
        .iter()
        .map(|&v| v as u8)
        .collect();
    // 2. Mean shift.
    let shifted = mean_shift_filter(
        &bytes,
        h,
        w,
        nc,
        kwargs.ms_spatial_radius as usize,
        kwargs.ms_color_radius,
    );
    // 3. Grey, inversion, Otsu.
    let grey = to_grey(&shifted, nc, kwargs.invert);
    let foreground = otsu_foreground(&grey, h, w);
    let n_fg = foreground.iter().filter(|&&f| f).count();
    let flat = |v: Vec<i32>| {
        Array2::from_shape_vec((h, w), v).map_err(|e| SegmentError::InvalidKwarg {
            field: "image".into(),
            message: format!("internal shape error: {e}"),
        })
    };
    if n_fg == 0 || n_fg == h * w {
        return Ok(Array2::zeros((h, w)));
    }
    // 4. Squared distance to the background (exact integers).
    let dist2 = distance_to_background(&foreground, h, w);
    // 5. Markers.
    let peaks = peak_local_max(
        &dist2,
        &foreground,
        h,
        w,
        kwargs.max_min_dist as usize,
        kwargs.exclude_border,
    );
    let mut markers = vec![0i32; h * w];
    for (k, &p) in peaks.iter().enumerate() {
        markers[p] = k as i32 + 1;
    }
    // 6. Watershed of −distance inside the foreground.
    let values: Vec<f64> = dist2.iter().map(|&d| -(d as f64)).collect();
    let basins = flood(&values, &markers, Some(&foreground), h, w);
    // Background 0, unreached foreground −1, basins 1..; then one segment per connected piece.
    let combined: Vec<i32> = basins
        .iter()
        .zip(&foreground)
        .map(|(&b, &fg)| match (b, fg) {
            (0, false) => 0,
            (0, true) => -1,
            (b, _) => b,
        })
        .collect();
    Ok(relabel_connected(flat(combined)?.view()))
}

/// Marker-based watershed: floods `values` (lowest first) from the labelled pixels of
/// `markers` (labels > 0; 0 = unlabelled), 4-connected, within `mask` if given. Returns the
/// `[H, W]` labels; pixels no marker reaches (outside the mask or cut off) stay 0. Equal values
/// flood in the order they were reached, like `skimage.segmentation.watershed`.
///
/// Errors if the shapes differ (the message names the shapes).
pub fn watershed(
    values: ArrayView2<'_, f64>,
    markers: ArrayView2<'_, i32>,
    mask: Option<ArrayView2<'_, bool>>,
) -> Result<Array2<i32>, String> {
    let (h, w) = values.dim();
    if markers.dim() != (h, w) || mask.is_some_and(|m| m.dim() != (h, w)) {
        return Err(format!(
            "values {:?}, markers {:?} and mask {:?} must have one shape",
            values.dim(),
            markers.dim(),
            mask.map(|m| m.dim())
        ));
    }
    let v: Vec<f64> = values.iter().copied().collect();
    let m: Vec<i32> = markers.iter().map(|&l| l.max(0)).collect();
    let mk: Option<Vec<bool>> = mask.map(|m| m.iter().copied().collect());
    let out = flood(&v, &m, mk.as_deref(), h, w);
    Array2::from_shape_vec((h, w), out).map_err(|e| e.to_string())
}

/// A flood-queue entry ordered by value, then age (first reached first).
#[derive(PartialEq)]
struct Entry {
    value: f64,
    age: u64,
    pixel: usize,
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value
            .total_cmp(&other.value)
            .then(self.age.cmp(&other.age))
    }
}

fn flood(values: &[f64], markers: &[i32], mask: Option<&[bool]>, h: usize, w: usize) -> Vec<i32> {
    let inside = |p: usize| mask.is_none_or(|m| m[p]);
    let mut out: Vec<i32> = markers
        .iter()
        .enumerate()
        .map(|(p, &l)| if inside(p) { l } else { 0 })
        .collect();
    let mut heap = BinaryHeap::new();
    let mut age = 0u64;
    for (p, &l) in out.iter().enumerate() {
        if l > 0 {
            heap.push(Reverse(Entry {
                value: values[p],
                age,
                pixel: p,
            }));
            age += 1;
        }
    }
    while let Some(Reverse(Entry { pixel: p, .. })) = heap.pop() {
        let (r, c) = (p / w, p % w);
        let neighbours = [
            (r > 0).then(|| p - w),
            (c > 0).then(|| p - 1),
            (c + 1 < w).then(|| p + 1),
            (r + 1 < h).then(|| p + w),
        ];
        for q in neighbours.into_iter().flatten() {
            if out[q] == 0 && inside(q) {
                out[q] = out[p];
                heap.push(Reverse(Entry {
                    value: values[q],
                    age,
                    pixel: q,
                }));
                age += 1;
            }
        }
    }
    out
}

/// OpenCV's `pyrMeanShiftFiltering` at one pyramid level (`maxLevel = 0`), on 8-bit pixels with
/// `nc` channels (1 or 3), row-major.
fn mean_shift_filter(src: &[u8], h: usize, w: usize, nc: usize, sp: usize, sr: f64) -> Vec<u8> {
    if nc == 3 {
        mean_shift::<3>(src, h, w, sp, sr)
    } else {
        mean_shift::<1>(src, h, w, sp, sr)
    }
}

fn mean_shift<const NC: usize>(src: &[u8], h: usize, w: usize, sp: usize, sr: f64) -> Vec<u8> {
    let sr2 = (sr * sr).round_ties_even() as i32;
    let round = |v: f64| v.round_ties_even() as i64;
    let mut dst = vec![0u8; src.len()];
    for (p, out) in dst.chunks_exact_mut(NC).enumerate() {
        let (mut x0, mut y0) = (p % w, p / w);
        let mut colour = [0i32; NC];
        for b in 0..NC {
            colour[b] = i32::from(src[p * NC + b]);
        }
        for _ in 0..MEAN_SHIFT_ITERATIONS {
            let (minx, maxx) = (x0.saturating_sub(sp), (x0 + sp).min(w - 1));
            let (miny, maxy) = (y0.saturating_sub(sp), (y0 + sp).min(h - 1));
            let (mut count, mut sx, mut sy) = (0i64, 0i64, 0i64);
            let mut sums = [0i64; NC];
            for y in miny..=maxy {
                let row = &src[(y * w + minx) * NC..(y * w + maxx + 1) * NC];
                let mut row_count = 0i64;
                for (x, px) in (minx..).zip(row.chunks_exact(NC)) {
                    let mut d = 0;
                    for b in 0..NC {
                        let t = i32::from(px[b]) - colour[b];
                        d += t * t;
                    }
                    if d <= sr2 {
                        for b in 0..NC {
                            sums[b] += i64::from(px[b]);
                        }
                        sx += x as i64;
                        row_count += 1;
                    }
                }
                count += row_count;
                sy += y as i64 * row_count;
            }
            if count == 0 {
                break;
            }
            let inv = 1.0 / count as f64;
            let (x1, y1) = (round(sx as f64 * inv), round(sy as f64 * inv));
            let mut moved = (x1 - x0 as i64).abs() + (y1 - y0 as i64).abs();
            for b in 0..NC {
                let c1 = round(sums[b] as f64 * inv);
                moved += (c1 - i64::from(colour[b])).pow(2);
                colour[b] = c1 as i32;
            }
            let stop = (x0 as i64 == x1 && y0 as i64 == y1) || moved <= MEAN_SHIFT_EPS;
            // Means of in-range coordinates and 8-bit values stay in range.
            (x0, y0) = (x1 as usize, y1 as usize);
            if stop {
                break;
            }
        }
        for b in 0..NC {
            out[b] = colour[b].clamp(0, 255) as u8;
        }
    }
    dst
}

/// Grey value of each pixel (`0.299 R + 0.587 G + 0.114 B`, rounded), inverted if asked.
fn to_grey(pixels: &[u8], nc: usize, invert: bool) -> Vec<u8> {
    pixels
        .chunks_exact(nc)
        .map(|px| {
            let g = if nc == 3 {
                (0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]))
                    .round()
                    .clamp(0.0, 255.0) as u8
            } else {
                px[0]
            };
            if invert { 255 - g } else { g }
        })
        .collect()
}

/// Otsu's threshold (imageproc); the pixels above it are the foreground (OpenCV's
/// `THRESH_BINARY | THRESH_OTSU`).
fn otsu_foreground(grey: &[u8], h: usize, w: usize) -> Vec<bool> {
    let Some(img) = GrayImage::from_raw(w as u32, h as u32, grey.to_vec()) else {
        return vec![false; grey.len()];
    };
    let level = imageproc::contrast::otsu_level(&img);
    grey.iter().map(|&g| g > level).collect()
}

/// Squared Euclidean distance of every pixel to the nearest background pixel (imageproc's exact
/// transform; 0 on the background). Needs at least one background pixel.
fn distance_to_background(foreground: &[bool], h: usize, w: usize) -> Vec<u64> {
    let background: Vec<u8> = foreground
        .iter()
        .map(|&f| if f { 0 } else { 255 })
        .collect();
    let Some(img) = GrayImage::from_raw(w as u32, h as u32, background) else {
        return vec![0; foreground.len()];
    };
    let d = imageproc::distance_transform::euclidean_squared_distance_transform(&img);
    d.pixels()
        .map(|&Luma([v])| if v.is_finite() { v.round() as u64 } else { 0 })
        .collect()
}

/// Running maximum over `[i − d, i + d]` (clipped) of `src`, written to `out` (monotone deque).
fn sliding_max(src: &[u64], d: usize, out: &mut [u64]) {
    let n = src.len();
    let mut deque: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    for (i, o) in out.iter_mut().enumerate() {
        while next < n && next <= i + d {
            while deque.back().is_some_and(|&b| src[b] <= src[next]) {
                deque.pop_back();
            }
            deque.push_back(next);
            next += 1;
        }
        while deque.front().is_some_and(|&f| f + d < i) {
            deque.pop_front();
        }
        *o = deque.front().map_or(0, |&f| src[f]);
    }
}

/// `skimage.feature.peak_local_max(dist, min_distance=d, labels=foreground,
/// exclude_border=exclude_border)` for one label: flat indices of the kept peaks, strongest first.
fn peak_local_max(
    dist2: &[u64],
    foreground: &[bool],
    h: usize,
    w: usize,
    d: usize,
    exclude_border: bool,
) -> Vec<usize> {
    let border = if exclude_border { d } else { 0 };
    // The region of interest: bounding box of the foreground outside the border band.
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for r in border..h.saturating_sub(border) {
        for c in border..w.saturating_sub(border) {
            if foreground[r * w + c] {
                (r0, r1, c0, c1) = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
            }
        }
    }
    if r0 == usize::MAX {
        return Vec::new();
    }
    let (rh, rw) = (r1 - r0 + 1, c1 - c0 + 1);
    // Max filter of the (2d+1)² window inside the region (background counts as 0).
    let roi: Vec<u64> = (0..rh * rw)
        .map(|k| {
            let p = (r0 + k / rw) * w + c0 + k % rw;
            if foreground[p] { dist2[p] } else { 0 }
        })
        .collect();
    let mut rows_max = vec![0u64; rh * rw];
    for r in 0..rh {
        sliding_max(
            &roi[r * rw..(r + 1) * rw],
            d,
            &mut rows_max[r * rw..(r + 1) * rw],
        );
    }
    let mut max = vec![0u64; rh * rw];
    let mut col = vec![0u64; rh];
    let mut col_out = vec![0u64; rh];
    for c in 0..rw {
        for r in 0..rh {
            col[r] = rows_max[r * rw + c];
        }
        sliding_max(&col, d, &mut col_out);
        for r in 0..rh {
            max[r * rw + c] = col_out[r];
        }
    }
    let mut candidates: Vec<(u64, usize, usize)> = (0..rh * rw)
        .filter(|&k| roi[k] > 0 && roi[k] == max[k])
        .map(|k| (roi[k], r0 + k / rw, c0 + k % rw))
        .collect();
    // Strongest first; equal strengths in raster order (a stable sort).
    candidates.sort_by_key(|&(v, _, _)| Reverse(v));
    // Keep a peak unless a kept one is closer than d (Chebyshev); a grid of d-sized buckets
    // limits the check to the 3×3 buckets around it.
    let bucket = d.max(1);
    let (bh, bw) = (h.div_ceil(bucket), w.div_ceil(bucket));
    let mut buckets: Vec<Vec<(usize, usize)>> = vec![Vec::new(); bh * bw];
    let mut kept = Vec::new();
    for (_, r, c) in candidates {
        let (br, bc) = (r / bucket, c / bucket);
        let too_close = (br.saturating_sub(1)..=(br + 1).min(bh - 1)).any(|rr| {
            (bc.saturating_sub(1)..=(bc + 1).min(bw - 1)).any(|cc| {
                buckets[rr * bw + cc]
                    .iter()
                    .any(|&(pr, pc)| pr.abs_diff(r).max(pc.abs_diff(c)) < d)
            })
        });
        if !too_close {
            buckets[br * bw + bc].push((r, c));
            kept.push(r * w + c);
        }
    }
    kept
}

maxi_image_ops::segmentation_component!(Watershed, WatershedKwargs, segment, NAME);
maxi_core::register_segmentation!(
    Watershed,
    "watershed",
    aliases = ["WatershedHandler"],
    doc = "MAXi's watershed pipeline: mean shift, Otsu threshold, distance transform, markers at least max_min_dist apart, watershed (nucleus-style segments)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_image_ops::check_segmentation;
    use ndarray::{Array3, Axis, array};

    /// Dark discs `(row, col, radius)` on a light background, `[H, W, 3]` in 0..255.
    fn discs(h: usize, w: usize, discs: &[(f64, f64, f64)]) -> (Array3<f64>, Array2<bool>) {
        let inside = Array2::from_shape_fn((h, w), |(r, c)| {
            discs.iter().any(|&(dr, dc, rad)| {
                let (y, x) = (r as f64 - dr, c as f64 - dc);
                y * y + x * x <= rad * rad
            })
        });
        let img = Array3::from_shape_fn((h, w, 3), |(r, c, k)| {
            if inside[[r, c]] {
                [40.0, 30.0, 90.0][k]
            } else {
                [220.0, 210.0, 180.0][k]
            }
        });
        (img, inside)
    }

    #[test]
    fn separate_discs_are_one_segment_each() {
        let (img, inside) = discs(60, 100, &[(30.0, 28.0, 9.0), (30.0, 72.0, 9.0)]);
        let labels = segment(img.view(), &WatershedKwargs::default()).unwrap();
        assert_eq!(check_segmentation(labels.view()), Ok(3));
        let (a, b) = (labels[[30, 28]], labels[[30, 72]]);
        let bg = labels[[0, 0]];
        assert!(a != b && a != bg && b != bg);
        for ((r, c), &l) in labels.indexed_iter() {
            let want = if !inside[[r, c]] {
                bg
            } else if c < 50 {
                a
            } else {
                b
            };
            assert_eq!(l, want, "at ({r}, {c})");
        }
    }

    #[test]
    fn touching_discs_are_split_between_their_centres() {
        // Two overlapping discs: one blob, two distance peaks; the watershed cuts the neck.
        let (img, inside) = discs(64, 96, &[(32.0, 35.0, 13.0), (32.0, 58.0, 13.0)]);
        let labels = segment(img.view(), &WatershedKwargs::default()).unwrap();
        assert_eq!(check_segmentation(labels.view()), Ok(3));
        let (a, b) = (labels[[32, 35]], labels[[32, 58]]);
        assert_ne!(a, b);
        for ((r, c), &l) in labels.indexed_iter() {
            if inside[[r, c]] {
                // Symmetric blob: the cut is at the middle column 46.5.
                assert_eq!(l, if c <= 46 { a } else { b }, "at ({r}, {c})");
            }
        }
    }

    #[test]
    fn blobs_without_markers_and_background_pieces_are_segments() {
        // A small image (< 2·max_min_dist): with exclude_border no marker fits, so each blob
        // is one segment. A dark bar across the image cuts the background in two.
        let mut img = Array3::from_elem((32, 32, 3), 230.0);
        for r in 0..32 {
            for c in 14..18 {
                img.slice_mut(ndarray::s![r, c, ..]).fill(20.0);
            }
        }
        for r in 4..9 {
            for c in 4..9 {
                img.slice_mut(ndarray::s![r, c, ..]).fill(20.0);
            }
        }
        let labels = segment(img.view(), &WatershedKwargs::default()).unwrap();
        // Left background, square, bar, right background.
        assert_eq!(check_segmentation(labels.view()), Ok(4));
        assert_ne!(labels[[0, 0]], labels[[0, 31]]);
        assert_ne!(labels[[6, 6]], labels[[0, 0]]);
        // Without border exclusion the bar and the square get markers and still one basin each.
        let kw = WatershedKwargs {
            exclude_border: false,
            ..WatershedKwargs::default()
        };
        let l2 = segment(img.view(), &kw).unwrap();
        check_segmentation(l2.view()).unwrap();
    }

    #[test]
    fn flood_matches_scikit_image() {
        // skimage.segmentation.watershed(values, markers) (scikit-image 0.26) on this landscape:
        // two valleys separated by a ridge at column 4, with a saddle on row 2.
        let values = array![
            [1.0, 2.0, 3.0, 4.0, 9.0, 4.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0, 9.0, 5.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0, 9.0, 4.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0, 9.0, 4.0, 3.0, 2.0, 1.0],
        ];
        let markers = array![
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 0, 0, 0, 2],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        let want = array![
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
        ];
        let got = watershed(values.view(), markers.view(), None).unwrap();
        assert_eq!(got, want);
        // With mask=values < 9 the flood stops at the ridge; unreached pixels stay 0.
        let mask = values.mapv(|v| v < 9.0);
        let want = array![
            [1, 1, 1, 1, 0, 2, 2, 2, 2],
            [1, 1, 1, 1, 0, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 0, 2, 2, 2, 2],
            [1, 1, 1, 1, 0, 2, 2, 2, 2],
        ];
        let masked = watershed(values.view(), markers.view(), Some(mask.view())).unwrap();
        assert_eq!(masked, want);
        assert!(watershed(values.view(), array![[1]].view(), None).is_err());
    }

    #[test]
    fn mean_shift_matches_opencv() {
        // cv2.pyrMeanShiftFiltering(img, 3, 25, maxLevel=0) (opencv-contrib-python-headless
        // 5.0.0) on this 8×9 two-region image with noise and a brighter green band.
        let (h, w) = (8, 9);
        let src: Vec<u8> = (0..h * w * 3)
            .map(|i| {
                let (r, c, k) = (i / (w * 3), i / 3 % w, i % 3);
                let base = if c < 4 { 60 } else { 170 };
                let band = if r > 4 && k == 1 { 40 } else { 0 };
                (base + (r * 37 + c * 11 + k * 23) % 29 + band) as u8
            })
            .collect();
        #[rustfmt::skip]
        let want: [u8; 216] = [
            74, 73, 75, 74, 73, 75, 74, 73, 75, 74, 73, 75, 184, 185, 184, 184, 185, 184, 184, 185, 184, 184, 185, 184, 184, 185, 184,
            74, 73, 75, 74, 73, 75, 74, 73, 75, 74, 73, 75, 184, 185, 184, 183, 186, 185, 184, 185, 184, 184, 185, 184, 184, 185, 184,
            74, 73, 75, 74, 73, 75, 74, 73, 75, 74, 73, 75, 184, 185, 184, 184, 185, 184, 185, 186, 183, 184, 185, 184, 184, 185, 184,
            74, 73, 75, 74, 73, 75, 74, 73, 75, 74, 74, 74, 184, 185, 184, 184, 185, 184, 183, 190, 187, 184, 185, 184, 184, 185, 184,
            74, 73, 75, 74, 73, 75, 74, 73, 75, 74, 73, 75, 184, 185, 184, 184, 185, 184, 184, 185, 184, 184, 185, 184, 184, 185, 184,
            74, 115, 74, 74, 115, 74, 74, 115, 74, 74, 115, 74, 185, 223, 183, 181, 214, 184, 185, 223, 183, 185, 223, 183, 186, 222, 182,
            74, 115, 74, 72, 116, 76, 78, 112, 66, 74, 115, 74, 185, 223, 183, 185, 223, 183, 190, 226, 180, 181, 214, 184, 185, 223, 183,
            74, 115, 74, 74, 115, 74, 74, 115, 74, 74, 115, 74, 185, 223, 183, 185, 223, 183, 183, 217, 184, 185, 223, 183, 186, 224, 182,
        ];
        assert_eq!(mean_shift_filter(&src, h, w, 3, 3, 25.0), want);
    }

    #[test]
    fn mean_shift_smooths_within_and_keeps_edges() {
        // Left half noisy dark, right half noisy light (difference ≫ colour radius).
        let (h, w) = (12, 16);
        let src: Vec<u8> = (0..h * w * 3)
            .map(|i| {
                let p = i / 3;
                let noise = ((p * 7 + i % 3 * 3) % 9) as u8;
                if p % w < 8 { 40 + noise } else { 200 + noise }
            })
            .collect();
        let out = mean_shift_filter(&src, h, w, 3, 5, 20.0);
        for p in 0..h * w {
            for b in 0..3 {
                let v = out[p * 3 + b];
                if p % w < 8 {
                    assert!((40..49).contains(&v), "{p}: {v}");
                } else {
                    assert!((200..209).contains(&v), "{p}: {v}");
                }
            }
        }
        // Less spread than the input.
        let spread = |v: &[u8]| {
            let left: Vec<u8> = v
                .chunks(3)
                .enumerate()
                .filter(|(p, _)| p % w < 8)
                .map(|(_, c)| c[0])
                .collect();
            left.iter().max().unwrap() - left.iter().min().unwrap()
        };
        assert!(spread(&out) < spread(&src));
        // A flat image stays flat.
        let flat = vec![77u8; 5 * 5];
        assert_eq!(mean_shift_filter(&flat, 5, 5, 1, 2, 10.0), flat);
    }

    #[test]
    fn peaks_respect_min_distance_and_border() {
        // One plateau row of equal distances: peaks every ≥ d along it, none in the border band.
        let (h, w) = (5, 30);
        let fg: Vec<bool> = (0..h * w).map(|p| p / w == 2).collect();
        let d2: Vec<u64> = fg.iter().map(|&f| u64::from(f)).collect();
        let peaks = peak_local_max(&d2, &fg, h, w, 4, false);
        let cols: Vec<usize> = peaks.iter().map(|p| p % w).collect();
        assert_eq!(cols, vec![0, 4, 8, 12, 16, 20, 24, 28]);
        let h = 12;
        let fg: Vec<bool> = (0..h * w).map(|p| p / w == 6).collect();
        let d2: Vec<u64> = fg.iter().map(|&f| u64::from(f)).collect();
        let peaks = peak_local_max(&d2, &fg, h, w, 4, true);
        let cols: Vec<usize> = peaks.iter().map(|p| p % w).collect();
        assert_eq!(cols, vec![4, 8, 12, 16, 20, 24]);
    }

    #[test]
    fn deterministic_and_value_scale_free() {
        let (img, _) = discs(50, 70, &[(25.0, 22.0, 11.0), (25.0, 44.0, 10.0)]);
        let kw = WatershedKwargs {
            max_min_dist: 8,
            ..WatershedKwargs::default()
        };
        let a = segment(img.view(), &kw).unwrap();
        check_segmentation(a.view()).unwrap();
        assert_eq!(a, segment(img.view(), &kw).unwrap());
        // 0..255 → 0..1 and standardised: the same 8-bit image after normalisation.
        assert_eq!(a, segment(img.mapv(|v| v / 255.0).view(), &kw).unwrap());
        assert_eq!(
            a,
            segment(img.mapv(|v| (v - 128.0) / 64.0).view(), &kw).unwrap()
        );
        // Grey input works.
        let grey = img.index_axis(Axis(2), 0).insert_axis(Axis(2)).to_owned();
        check_segmentation(segment(grey.view(), &kw).unwrap().view()).unwrap();
        // A constant image is one segment.
        let flat = Array3::from_elem((9, 9, 3), 0.3);
        assert_eq!(
            segment(flat.view(), &kw).unwrap(),
            Array2::<i32>::zeros((9, 9))
        );
    }

    #[test]
    fn errors_name_the_problem_and_fix() {
        let (img, _) = discs(20, 20, &[(10.0, 10.0, 4.0)]);
        let bad = |kw: WatershedKwargs, field: &str| {
            let err = segment(img.view(), &kw).unwrap_err();
            assert!(
                matches!(&err, SegmentError::InvalidKwarg { field: f, .. } if f == field),
                "{err}"
            );
        };
        let d = WatershedKwargs::default;
        bad(
            WatershedKwargs {
                ms_spatial_radius: 0,
                ..d()
            },
            "ms_spatial_radius",
        );
        bad(
            WatershedKwargs {
                ms_spatial_radius: 33,
                ..d()
            },
            "ms_spatial_radius",
        );
        bad(
            WatershedKwargs {
                ms_color_radius: -1.0,
                ..d()
            },
            "ms_color_radius",
        );
        bad(
            WatershedKwargs {
                ms_color_radius: f64::NAN,
                ..d()
            },
            "ms_color_radius",
        );
        bad(
            WatershedKwargs {
                max_min_dist: 0,
                ..d()
            },
            "max_min_dist",
        );
        let empty = Array3::<f64>::zeros((0, 5, 3));
        assert!(matches!(
            segment(empty.view(), &d()),
            Err(SegmentError::EmptyImage { .. })
        ));
        let four = Array3::<f64>::zeros((5, 5, 4));
        assert_eq!(
            segment(four.view(), &d()).unwrap_err().to_string(),
            "the image has 4 channels; pass [H, W, 1] (grey) or [H, W, 3] (RGB), channels last"
        );
    }

    #[test]
    fn kwargs_serde_defaults() {
        let k: WatershedKwargs = serde_json::from_str("{}").unwrap();
        assert_eq!(k, WatershedKwargs::default());
        assert!(serde_json::from_str::<WatershedKwargs>(r#"{"min_distance": 3}"#).is_err());
    }
}
