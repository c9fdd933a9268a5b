//! Shared image helpers of maxi's segmentation crates (`slic`, `watershed`, `quickshift`, `grid`).
//!
//! - [`check_image`]: the input contract every segmentation shares — an `[H, W, C]` array with
//!   `C` = 1 (grey) or 3 (RGB), at least one pixel, finite values.
//! - [`normalize_min_max`]: the value scaling they share — the image's own minimum maps to 0 and
//!   its maximum to a chosen top (1 or 255), over all channels together, so 0..1, 0..255 and
//!   standardised inputs of the same picture segment identically.
//! - [`rgb_to_lab`]: sRGB (D65) to CIELAB with scikit-image's constants (`skimage.color.rgb2lab`).
//! - [`relabel_connected`], [`merge_small_segments`]: turn any label map into the output
//!   contract — labels `0..n-1` in raster order of first appearance, every label used, every
//!   segment 4-connected — optionally folding fragments into a neighbour as OpenCV's
//!   `SuperpixelSLIC::enforceLabelConnectivity` does.
//! - [`check_segmentation`]: verifies that contract (for tests and callers).
//! - [`SegmentError`]: the error type of every `segment` function.
#![warn(missing_docs)]

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis};
use std::collections::VecDeque;

/// Why a segmentation could not run; each message names the problem and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    /// A kwarg is out of range.
    #[error("invalid `{field}`: {message}")]
    InvalidKwarg {
        /// The kwarg's name.
        field: String,
        /// What is wrong and what to use instead.
        message: String,
    },
    /// The image has no pixels.
    #[error("the image is empty ({height}×{width} pixels); pass an [H, W, C] image with H, W ≥ 1")]
    EmptyImage {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// The image has more pixels than a label map can number.
    #[error(
        "the image has {pixels} pixels, more than the {max} this segmentation supports; downscale it"
    )]
    TooLarge {
        /// Pixels in the image.
        pixels: usize,
        /// The most pixels supported.
        max: usize,
    },
    /// The channel count is neither 1 nor 3.
    #[error(
        "the image has {channels} channels; pass [H, W, 1] (grey) or [H, W, 3] (RGB), channels last"
    )]
    BadChannels {
        /// Channels found (the last axis).
        channels: usize,
    },
    /// A colour-only algorithm was given a grey image.
    #[error("{algorithm} needs an RGB image [H, W, 3] but got {channels} channel(s); {fix}")]
    NeedsColor {
        /// The segmentation's name.
        algorithm: &'static str,
        /// Channels found.
        channels: usize,
        /// How to proceed.
        fix: &'static str,
    },
    /// A pixel value is NaN or infinite.
    #[error(
        "pixel (row {row}, column {col}, channel {channel}) is {value}; replace NaN and infinite values before segmenting"
    )]
    NonFinite {
        /// Row of the first bad value.
        row: usize,
        /// Column of the first bad value.
        col: usize,
        /// Channel of the first bad value.
        channel: usize,
        /// The value.
        value: f64,
    },
    /// The image is smaller than one segment of the requested size.
    #[error(
        "the image ({height}×{width}) is smaller than one {what} (`{field}` = {value}); use `{field}` ≤ {max} or a larger image"
    )]
    TooSmall {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// What a segment is called ("cell", "superpixel").
        what: &'static str,
        /// The kwarg that sets the size.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The largest value that fits the image.
        max: usize,
    },
}

impl From<(String, String)> for SegmentError {
    /// Wraps the `(field, message)` pair returned by a kwargs struct's `validate`.
    fn from((field, message): (String, String)) -> Self {
        SegmentError::InvalidKwarg { field, message }
    }
}

/// The most pixels an image may have: labels are `i32`.
pub const MAX_PIXELS: usize = i32::MAX as usize;

/// Checks the shared input contract and returns `(height, width, channels)`.
///
/// `[H, W, C]` with H, W ≥ 1, C ∈ {1, 3}, at most [`MAX_PIXELS`] pixels, every value finite.
pub fn check_image(image: ArrayView3<'_, f64>) -> Result<(usize, usize, usize), SegmentError> {
    let (height, width, channels) = image.dim();
    if height == 0 || width == 0 {
        return Err(SegmentError::EmptyImage { height, width });
    }
    if channels != 1 && channels != 3 {
        return Err(SegmentError::BadChannels { channels });
    }
    let pixels = height.saturating_mul(width);
    if pixels > MAX_PIXELS {
        return Err(SegmentError::TooLarge {
            pixels,
            max: MAX_PIXELS,
        });
    }
    if let Some(((row, col, channel), &value)) = image.indexed_iter().find(|(_, v)| !v.is_finite())
    {
        return Err(SegmentError::NonFinite {
            row,
            col,
            channel,
            value,
        });
    }
    Ok((height, width, channels))
}

/// Rejects a grey image for an algorithm that needs colour.
pub fn require_rgb(
    image: ArrayView3<'_, f64>,
    algorithm: &'static str,
    fix: &'static str,
) -> Result<(), SegmentError> {
    let channels = image.len_of(Axis(2));
    if channels == 3 {
        Ok(())
    } else {
        Err(SegmentError::NeedsColor {
            algorithm,
            channels,
            fix,
        })
    }
}

/// Maps the image's minimum to 0 and its maximum to `top`, over all channels together
/// (OpenCV's `normalize(..., NORM_MINMAX)`). A constant image maps to all zeros.
///
/// Values must be finite ([`check_image`]).
pub fn normalize_min_max(image: ArrayView3<'_, f64>, top: f64) -> Array3<f64> {
    let (lo, hi) = image
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if range > 0.0 && range.is_finite() {
        image.mapv(|v| ((v - lo) / range * top).clamp(0.0, top))
    } else if range > 0.0 {
        // The range overflows f64 (values near ±f64::MAX): scale before subtracting.
        let (lo_s, range_s) = (lo / 2.0, hi / 2.0 - lo / 2.0);
        image.mapv(|v| ((v / 2.0 - lo_s) / range_s * top).clamp(0.0, top))
    } else {
        Array3::zeros(image.raw_dim())
    }
}

/// Converts one sRGB colour with components in `[0, 1]` to CIELAB (D65 white, 2° observer):
/// `L` in `[0, 100]`, `a` and `b` roughly in `[-128, 127]`. Same constants as
/// `skimage.color.rgb2lab`.
pub fn srgb_to_lab([r, g, b]: [f64; 3]) -> [f64; 3] {
    fn linear(c: f64) -> f64 {
        if c > 0.04045 {
            ((c + 0.055) / 1.055).powf(2.4)
        } else {
            c / 12.92
        }
    }
    fn f(t: f64) -> f64 {
        if t > 0.008856 {
            t.cbrt()
        } else {
            7.787 * t + 16.0 / 116.0
        }
    }
    let (r, g, b) = (linear(r), linear(g), linear(b));
    // sRGB → XYZ, divided by the D65 white point (0.95047, 1.0, 1.08883).
    let x = (0.412453 * r + 0.357580 * g + 0.180423 * b) / 0.95047;
    let y = 0.212671 * r + 0.715160 * g + 0.072169 * b;
    let z = (0.019334 * r + 0.119193 * g + 0.950227 * b) / 1.08883;
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Converts an `[H, W, 3]` sRGB image with values in `[0, 1]` to CIELAB ([`srgb_to_lab`]).
pub fn rgb_to_lab(rgb: ArrayView3<'_, f64>) -> Result<Array3<f64>, SegmentError> {
    require_rgb(
        rgb,
        "CIELAB conversion",
        "pass an RGB image or turn the conversion off",
    )?;
    let (h, w, _) = rgb.dim();
    let mut lab = Array3::zeros((h, w, 3));
    ndarray::Zip::from(lab.lanes_mut(Axis(2)))
        .and(rgb.lanes(Axis(2)))
        .for_each(|mut out, px| {
            let v = srgb_to_lab([px[0], px[1], px[2]]);
            out[0] = v[0];
            out[1] = v[1];
            out[2] = v[2];
        });
    Ok(lab)
}

/// The 4-neighbours of `(r, c)` inside an `h × w` grid, as flat indices.
fn neighbours4(r: usize, c: usize, h: usize, w: usize) -> impl Iterator<Item = usize> {
    let up = (r > 0).then(|| (r - 1) * w + c);
    let left = (c > 0).then(|| r * w + c - 1);
    let right = (c + 1 < w).then(|| r * w + c + 1);
    let down = (r + 1 < h).then(|| (r + 1) * w + c);
    [up, left, right, down].into_iter().flatten()
}

/// Connected components of equal labels (4-connectivity): component ids `0..n` in raster order
/// of each component's first pixel, flat (row-major), with the component sizes.
fn components(labels: ArrayView2<'_, i32>) -> (Vec<usize>, Vec<usize>) {
    let (h, w) = labels.dim();
    let flat: Vec<i32> = labels.iter().copied().collect();
    let mut comp = vec![usize::MAX; h * w];
    let mut sizes = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..h * w {
        if comp[start] != usize::MAX {
            continue;
        }
        let id = sizes.len();
        let label = flat[start];
        comp[start] = id;
        queue.push_back(start);
        let mut size = 0;
        while let Some(p) = queue.pop_front() {
            size += 1;
            for q in neighbours4(p / w, p % w, h, w) {
                if comp[q] == usize::MAX && flat[q] == label {
                    comp[q] = id;
                    queue.push_back(q);
                }
            }
        }
        sizes.push(size);
    }
    (comp, sizes)
}

/// Relabels a label map so each 4-connected region of equal labels is one segment, numbered
/// `0..n-1` in raster order of its first pixel. Disconnected pieces of one input label become
/// separate segments.
pub fn relabel_connected(labels: ArrayView2<'_, i32>) -> Array2<i32> {
    let (comp, _) = components(labels);
    let ids = comp.into_iter().map(|c| c as i32).collect();
    // The shape matches the input, so this cannot fail.
    Array2::from_shape_vec(labels.raw_dim(), ids).unwrap_or_else(|_| Array2::zeros(labels.dim()))
}

/// Like [`relabel_connected`], but first folds every 4-connected fragment of at most `min_size`
/// pixels into a neighbouring segment, as OpenCV's `enforceLabelConnectivity` does: fragments are
/// visited in raster order of their first pixel and join the segment just above that pixel (or,
/// on the top row, just left of it); the fragment holding pixel (0, 0) joins the first
/// neighbour found. Every output segment is connected; `min_size = 0` only splits.
pub fn merge_small_segments(labels: ArrayView2<'_, i32>, min_size: usize) -> Array2<i32> {
    let (h, w) = labels.dim();
    let (comp, sizes) = components(labels);
    let n = sizes.len();
    // Union-find over components; every union joins two adjacent components, so every group
    // stays connected.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut first_pixel = vec![usize::MAX; n];
    for (p, &c) in comp.iter().enumerate() {
        if first_pixel[c] == usize::MAX {
            first_pixel[c] = p;
        }
    }
    for c in 0..n {
        if sizes[c] > min_size || n == 1 {
            continue;
        }
        let p = first_pixel[c];
        let (r, col) = (p / w, p % w);
        let target = if r > 0 {
            Some(comp[p - w])
        } else if col > 0 {
            Some(comp[p - 1])
        } else {
            // Pixel (0, 0): the first pixel of this fragment touching another component.
            comp.iter()
                .enumerate()
                .filter(|&(_, &k)| k == c)
                .find_map(|(q, _)| {
                    neighbours4(q / w, q % w, h, w)
                        .map(|x| comp[x])
                        .find(|&k| k != c)
                })
        };
        if let Some(t) = target {
            let (a, b) = (find(&mut parent, c), find(&mut parent, t));
            if a != b {
                parent[a] = b;
            }
        }
    }
    let merged: Vec<i32> = comp.iter().map(|&c| find(&mut parent, c) as i32).collect();
    let merged = Array2::from_shape_vec((h, w), merged).unwrap_or_else(|_| Array2::zeros((h, w)));
    relabel_connected(merged.view())
}

/// Checks the output contract of a segmentation and returns the number of segments: labels are
/// `0..n-1`, every label is used, and every segment is 4-connected. The error says which rule
/// failed where.
pub fn check_segmentation(labels: ArrayView2<'_, i32>) -> Result<usize, String> {
    let (h, w) = labels.dim();
    if h == 0 || w == 0 {
        return Err("the label map is empty".into());
    }
    let mut max = -1i64;
    for ((r, c), &l) in labels.indexed_iter() {
        if l < 0 {
            return Err(format!("label {l} at ({r}, {c}) is negative"));
        }
        max = max.max(i64::from(l));
    }
    let n = usize::try_from(max + 1).map_err(|e| e.to_string())?;
    let (_, sizes) = components(labels);
    if sizes.len() < n {
        let mut used = vec![false; n];
        for &l in labels {
            used[l as usize] = true;
        }
        let missing = used.iter().position(|u| !u).unwrap_or(0);
        return Err(format!("label {missing} is unused (labels must be 0..{n})"));
    }
    if sizes.len() > n {
        let relabelled = relabel_connected(labels);
        let mut seen = std::collections::HashMap::new();
        for (&l, &k) in labels.iter().zip(relabelled.iter()) {
            if let Some(&other) = seen.get(&l)
                && other != k
            {
                return Err(format!("segment {l} is not connected"));
            }
            seen.insert(l, k);
        }
    }
    Ok(n)
}

/// The error of segmentation `component` as maxi's error: a kwarg out of range names the
/// kwarg, anything else is a problem with the input image.
pub fn to_maxi_error(component: &str, e: SegmentError) -> maxi_core::MaxiError {
    match e {
        SegmentError::InvalidKwarg { field, message } => maxi_core::MaxiError::InvalidKwarg {
            kind: maxi_core::Kind::Segmentation,
            component: component.to_string(),
            field,
            message,
        },
        other => maxi_core::MaxiError::input("x", format!("segmentation `{component}`: {other}")),
    }
}

#[doc(hidden)]
pub use maxi_core as __core;

/// Makes a segmentation crate's `segment` function and kwargs a registry component: the kwargs
/// get `KwargsSpec` (their `validate` as the range check) and `$component` implements
/// `Segmenter` and `Factory<SegmentationKind>`. The crate then adds one
/// `maxi_core::register_segmentation!` line.
#[macro_export]
macro_rules! segmentation_component {
    ($component:ident, $kwargs:ty, $segment:path, $name:expr) => {
        impl $crate::__core::KwargsSpec for $kwargs {
            fn validate(&self) -> ::std::result::Result<(), $crate::__core::KwargProblem> {
                <$kwargs>::validate(self)
                    .map_err(|(field, message)| $crate::__core::KwargProblem::new(field, message))
            }
        }

        /// This segmentation as a registry component (kwargs checked).
        pub struct $component($crate::__core::Valid<$kwargs>);

        impl $crate::__core::Segmenter for $component {
            fn segment(
                &self,
                image: ::ndarray::ArrayView3<'_, f64>,
            ) -> $crate::__core::Result<::ndarray::Array2<i32>> {
                $segment(image, &self.0).map_err(|e| $crate::to_maxi_error($name, e))
            }
        }

        impl $crate::__core::Factory<$crate::__core::SegmentationKind> for $component {
            type Kwargs = $kwargs;
            fn build(
                kwargs: &$crate::__core::Valid<$kwargs>,
                _ctx: &$crate::__core::SegmentationContext,
            ) -> $crate::__core::Result<Box<dyn $crate::__core::Segmenter>> {
                Ok(Box::new($component(kwargs.clone())))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    #[test]
    fn lab_matches_known_values() {
        // skimage.color.rgb2lab outputs (scikit-image 0.26), rounded to 5 decimals; its matrix
        // does not map white exactly onto D65, hence the tiny a, b of neutral greys.
        let cases = [
            ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            ([1.0, 0.0, 0.0], [53.24059, 80.09231, 67.20275]),
            ([0.0, 1.0, 0.0], [87.7351, -86.18303, 83.1797]),
            ([0.0, 0.0, 1.0], [32.29567, 79.18559, -107.8573]),
            ([1.0, 1.0, 1.0], [100.0, -0.00245, 0.00465]),
            ([0.5, 0.5, 0.5], [53.38896, -0.00147, 0.00278]),
            ([0.2, 0.7, 0.4], [64.72476, -51.64174, 29.35536]),
        ];
        for (rgb, want) in cases {
            let got = srgb_to_lab(rgb);
            for k in 0..3 {
                assert!(
                    (got[k] - want[k]).abs() < 1e-4,
                    "{rgb:?}: got {got:?}, want {want:?}"
                );
            }
        }
    }

    #[test]
    fn lab_image_and_grey_rejected() {
        let img = Array3::from_elem((2, 3, 3), 1.0);
        let lab = rgb_to_lab(img.view()).unwrap();
        assert!((lab[[1, 2, 0]] - 100.0).abs() < 1e-3);
        let grey = Array3::<f64>::zeros((2, 3, 1));
        assert!(matches!(
            rgb_to_lab(grey.view()),
            Err(SegmentError::NeedsColor { channels: 1, .. })
        ));
    }

    #[test]
    fn normalize_is_scale_free() {
        let a = Array3::from_shape_fn((2, 2, 3), |(r, c, k)| (r * 6 + c * 3 + k) as f64 / 11.0);
        let b = a.mapv(|v| v * 255.0 - 40.0);
        let na = normalize_min_max(a.view(), 255.0);
        let nb = normalize_min_max(b.view(), 255.0);
        assert!(na.iter().zip(nb.iter()).all(|(x, y)| (x - y).abs() < 1e-9));
        assert_eq!(na[[0, 0, 0]], 0.0);
        assert!((na[[1, 1, 2]] - 255.0).abs() < 1e-12);
        let flat = Array3::from_elem((2, 2, 1), 7.0);
        assert!(
            normalize_min_max(flat.view(), 1.0)
                .iter()
                .all(|&v| v == 0.0)
        );
        let huge = array![[[-f64::MAX], [f64::MAX]]];
        let n = normalize_min_max(huge.view(), 1.0);
        assert_eq!((n[[0, 0, 0]], n[[0, 1, 0]]), (0.0, 1.0));
    }

    #[test]
    fn check_image_errors() {
        let empty = Array3::<f64>::zeros((0, 4, 3));
        assert!(matches!(
            check_image(empty.view()),
            Err(SegmentError::EmptyImage { .. })
        ));
        let two = Array3::<f64>::zeros((4, 4, 2));
        assert!(matches!(
            check_image(two.view()),
            Err(SegmentError::BadChannels { channels: 2 })
        ));
        let mut nan = Array3::<f64>::zeros((4, 4, 3));
        nan[[2, 1, 0]] = f64::NAN;
        let err = check_image(nan.view()).unwrap_err();
        assert!(err.to_string().contains("row 2, column 1"), "{err}");
        assert_eq!(
            check_image(Array3::<f64>::zeros((4, 5, 1)).view()),
            Ok((4, 5, 1))
        );
    }

    #[test]
    fn relabel_splits_disconnected_and_orders_by_raster() {
        let labels = array![[5, 5, 9], [7, 5, 9], [5, 7, 7]];
        let out = relabel_connected(labels.view());
        assert_eq!(out, array![[0, 0, 1], [2, 0, 1], [3, 4, 4]]);
        assert_eq!(check_segmentation(out.view()), Ok(5));
        // Diagonal neighbours are not connected.
        let diag = array![[1, 0], [0, 1]];
        assert_eq!(relabel_connected(diag.view()), array![[0, 1], [2, 3]]);
    }

    #[test]
    fn merge_folds_fragments_into_the_segment_above() {
        // A 1-pixel fragment (label 3) inside segment 1 and a 2-pixel one on the top row.
        let labels = array![
            [0, 0, 2, 2, 1, 1],
            [1, 1, 1, 1, 1, 1],
            [1, 1, 3, 1, 1, 1],
            [1, 1, 1, 1, 1, 1],
        ];
        let out = merge_small_segments(labels.view(), 2);
        // (0,0)'s fragment {0,0} joins the first neighbour found (segment 1 below), the "2"s on
        // the top row join their left neighbour, the 3 joins what is above it.
        assert_eq!(out, Array2::<i32>::zeros((4, 6)));
        let kept = merge_small_segments(labels.view(), 0);
        assert_eq!(check_segmentation(kept.view()), Ok(4));
        // min_size 1 folds only the single pixel.
        let one = merge_small_segments(labels.view(), 1);
        assert_eq!(
            one,
            array![
                [0, 0, 1, 1, 2, 2],
                [2, 2, 2, 2, 2, 2],
                [2, 2, 2, 2, 2, 2],
                [2, 2, 2, 2, 2, 2],
            ]
        );
        assert_eq!(check_segmentation(one.view()), Ok(3));
    }

    #[test]
    fn check_segmentation_reports_each_rule() {
        assert!(
            check_segmentation(array![[0, 2]].view())
                .unwrap_err()
                .contains("label 1 is unused")
        );
        assert!(
            check_segmentation(array![[0, 1, 0]].view())
                .unwrap_err()
                .contains("segment 0 is not connected")
        );
        assert!(
            check_segmentation(array![[0, -1]].view())
                .unwrap_err()
                .contains("negative")
        );
        assert_eq!(check_segmentation(array![[0, 0], [1, 1]].view()), Ok(2));
    }

    #[test]
    fn kwarg_error_message() {
        let e: SegmentError = ("cell_size".to_string(), "must be ≥ 1".to_string()).into();
        assert_eq!(e.to_string(), "invalid `cell_size`: must be ≥ 1");
    }
}
