//! Pictures of arrays: candidates, composites and the |δ| heatmap, as PNG bytes.

use std::io::Cursor;

use image::{Rgb, RgbImage};
use maxi::ndarray::{ArrayD, ArrayView2};

/// Changes at most this large are drawn as no change (the support threshold of inputs whose
/// values span about 1, like the bundled MNIST models').
const NONZERO_THRESHOLD: f64 = 1e-3;

/// How an item shape is read as an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `[C, H, W]` rather than `[H, W, C]` (only for 3 channels; one channel has the same order
    /// either way).
    pub channels_first: bool,
}

/// The image layout of an item shape: `[H, W]`, `[H, W, 1|3]` or `[1|3, H, W]`, with any
/// leading axes of size 1; `None` when the shape is not an image.
pub fn layout(shape: &[usize]) -> Option<Layout> {
    let mut s = shape;
    while s.len() > 2 && s[0] == 1 {
        s = &s[1..];
    }
    let l = match *s {
        [h, w] => Layout {
            height: h,
            width: w,
            channels: 1,
            channels_first: false,
        },
        [h, w, c] if c == 1 || c == 3 => Layout {
            height: h,
            width: w,
            channels: c,
            channels_first: false,
        },
        [c, h, w] if c == 3 => Layout {
            height: h,
            width: w,
            channels: c,
            channels_first: true,
        },
        _ => return None,
    };
    (l.height >= 2 && l.width >= 2).then_some(l)
}

/// Nearest-neighbour upscaling factor that makes the larger side at least 224 pixels (≤ 16).
pub fn display_scale(l: &Layout) -> u32 {
    let side = l.height.max(l.width).max(1);
    u32::try_from(224usize.div_ceil(side).clamp(1, 16)).unwrap_or(1)
}

/// The entries of `a` in `[H, W, C]` order.
pub fn hwc(a: &ArrayD<f64>, l: &Layout) -> Vec<f64> {
    let flat: Vec<f64> = a.iter().copied().collect();
    if !l.channels_first {
        return flat;
    }
    let (h, w, c) = (l.height, l.width, l.channels);
    let mut out = vec![0.0; flat.len()];
    for k in 0..c {
        for i in 0..h * w {
            out[i * c + k] = flat[k * h * w + i];
        }
    }
    out
}

/// An image of `values` (`[H, W, C]`) with each entry mapped to `[0, 1]` by `to_unit`
/// (clamped), upscaled by `scale`.
pub fn picture(values: &[f64], l: &Layout, scale: u32, to_unit: impl Fn(f64) -> f64) -> RgbImage {
    let byte = |v: f64| (to_unit(v).clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut img = RgbImage::new(dim_u32(l.width), dim_u32(l.height));
    for (i, px) in img.pixels_mut().enumerate() {
        let p = &values[i * l.channels..(i + 1) * l.channels];
        *px = if l.channels == 1 {
            let g = byte(p[0]);
            Rgb([g, g, g])
        } else {
            Rgb([byte(p[0]), byte(p[1]), byte(p[2])])
        };
    }
    upscale(&img, scale)
}

fn dim_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `√(|δ| / max |δ|)` per pixel (`|δ|` averaged over channels): 0 = unchanged, 1 = the largest
/// change. The square root keeps changes a tenth of the largest visible (≈ 0.3); changes of at
/// most [`NONZERO_THRESHOLD`] (those not counted as part of an explanation) are drawn as 0.
pub fn stretched_change(delta: &[f64], l: &Layout) -> Vec<f64> {
    let c = l.channels;
    let per_pixel: Vec<f64> = delta
        .chunks(c)
        .map(|px| px.iter().map(|v| v.abs()).sum::<f64>() / c as f64)
        .collect();
    let max = per_pixel.iter().fold(0.0f64, |m, v| m.max(*v));
    let inv = if max > 0.0 { 1.0 / max } else { 0.0 };
    per_pixel
        .iter()
        .map(|v| {
            if *v > NONZERO_THRESHOLD {
                (v * inv).sqrt()
            } else {
                0.0
            }
        })
        .collect()
}

/// The change `delta` (`[H, W, C]`) in grey, stretched so that the largest change is white.
pub fn change_picture(delta: &[f64], l: &Layout, scale: u32) -> RgbImage {
    let grey = Layout {
        channels: 1,
        channels_first: false,
        ..*l
    };
    picture(&stretched_change(delta, l), &grey, scale, |v| v)
}

/// One pixel's channels (mapped to `[0, 1]` by `to_unit`) as a grey level in `[0, 255·dim]`.
fn dimmed_grey(pixel: &[f64], to_unit: &impl Fn(f64) -> f64, dim: f64) -> f64 {
    pixel
        .iter()
        .map(|v| to_unit(*v).clamp(0.0, 1.0))
        .sum::<f64>()
        / pixel.len() as f64
        * dim
        * 255.0
}

/// `base` (`[H, W, C]`, mapped to `[0, 1]` by `to_unit`) in grey scaled by `dim`, blended
/// towards `colour` where `delta` changes it (in proportion to the stretched change).
pub fn overlay(
    base: &[f64],
    delta: &[f64],
    l: &Layout,
    scale: u32,
    dim: f64,
    colour: [u8; 3],
    to_unit: impl Fn(f64) -> f64,
) -> RgbImage {
    let c = l.channels;
    let a = stretched_change(delta, l);
    let mut img = RgbImage::new(dim_u32(l.width), dim_u32(l.height));
    for (i, px) in img.pixels_mut().enumerate() {
        let g = dimmed_grey(&base[i * c..(i + 1) * c], &to_unit, dim);
        let mix = |k: usize| ((1.0 - a[i]) * g + a[i] * f64::from(colour[k])).round() as u8;
        *px = Rgb([mix(0), mix(1), mix(2)]);
    }
    upscale(&img, scale)
}

/// Nearest-neighbour upscaling.
pub fn upscale(img: &RgbImage, scale: u32) -> RgbImage {
    if scale <= 1 {
        return img.clone();
    }
    RgbImage::from_fn(img.width() * scale, img.height() * scale, |x, y| {
        *img.get_pixel(x / scale, y / scale)
    })
}

/// Panels side by side, separated by grey bars.
pub fn side_by_side(panels: &[RgbImage]) -> RgbImage {
    const GAP: u32 = 6;
    let height = panels.iter().map(RgbImage::height).max().unwrap_or(1);
    let width = panels.iter().map(RgbImage::width).sum::<u32>()
        + GAP * u32::try_from(panels.len().saturating_sub(1)).unwrap_or(0);
    let mut out = RgbImage::from_pixel(width.max(1), height, Rgb([128, 128, 128]));
    let mut x0 = 0;
    for p in panels {
        for (x, y, px) in p.enumerate_pixels() {
            out.put_pixel(x0 + x, y, *px);
        }
        x0 += p.width() + GAP;
    }
    out
}

/// The heatmap of `delta` (`[H, W, C]`): |δ| → rescaled to [0, 1] by its maximum → grey (mean
/// over channels) → Gaussian blur σ = 0.75 → rescaled to [0, 1] again → colour map (inferno:
/// black = no change, yellow-white = the largest change), upscaled by `scale`.
pub fn heatmap(delta: &[f64], l: &Layout, scale: u32) -> RgbImage {
    let (h, w, c) = (l.height, l.width, l.channels);
    let max = delta.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let inv = if max > 0.0 { 1.0 / max } else { 0.0 };
    let grey: Vec<f64> = (0..h * w)
        .map(|i| {
            delta[i * c..(i + 1) * c]
                .iter()
                .map(|v| v.abs() * inv)
                .sum::<f64>()
                / c as f64
        })
        .collect();
    let blurred = gaussian_blur(&grey, h, w, 0.75);
    let bmax = blurred.iter().fold(0.0f64, |m, v| m.max(*v));
    let binv = if bmax > 0.0 { 1.0 / bmax } else { 0.0 };
    let mut img = RgbImage::new(dim_u32(w), dim_u32(h));
    for (i, px) in img.pixels_mut().enumerate() {
        *px = Rgb(inferno(blurred[i] * binv));
    }
    upscale(&img, scale)
}

/// `base` (`[H, W, C]`, mapped to `[0, 1]` by `to_unit`) upscaled by `scale`, with the
/// boundaries between segments of `labels` (`[H, W]`) drawn as thin yellow lines (MAXi's
/// `res2contours` of a segmentation).
pub fn boundaries(
    base: &[f64],
    labels: ArrayView2<'_, i32>,
    l: &Layout,
    scale: u32,
    to_unit: impl Fn(f64) -> f64,
) -> RgbImage {
    let mut img = upscale(&picture(base, l, 1, to_unit), scale);
    mark_boundaries(&mut img, labels, scale, [255, 220, 0]);
    img
}

/// Draws, on an image upscaled by `scale` from `labels`' grid, the last row and column of
/// display pixels of every pixel whose right or lower neighbour is in another segment.
fn mark_boundaries(img: &mut RgbImage, labels: ArrayView2<'_, i32>, scale: u32, colour: [u8; 3]) {
    let (h, w) = labels.dim();
    let s = scale.max(1) as usize;
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (c, r) = (x as usize / s, y as usize / s);
        if r >= h || c >= w {
            continue;
        }
        let edge_x = x as usize % s == s - 1 && c + 1 < w && labels[[r, c + 1]] != labels[[r, c]];
        let edge_y = y as usize % s == s - 1 && r + 1 < h && labels[[r + 1, c]] != labels[[r, c]];
        if edge_x || edge_y {
            *px = Rgb(colour);
        }
    }
}

/// The weight of each segment (`weights[label]`) as a heat map over the dimmed grey `base`:
/// red for positive weights, blue for negative, opacity by |weight| relative to the largest
/// (MAXi's `res2heatmap` per segment); with `outline`, segment boundaries in thin dark lines.
pub fn segment_heatmap(
    base: &[f64],
    labels: ArrayView2<'_, i32>,
    weights: &[f64],
    (l, scale, outline): (&Layout, u32, bool),
    to_unit: impl Fn(f64) -> f64,
) -> RgbImage {
    let c = l.channels;
    let max = weights.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let inv = if max > 0.0 { 1.0 / max } else { 0.0 };
    let flat: Vec<i32> = labels.iter().copied().collect();
    let mut img = RgbImage::new(dim_u32(l.width), dim_u32(l.height));
    for (i, px) in img.pixels_mut().enumerate() {
        let g = dimmed_grey(&base[i * c..(i + 1) * c], &to_unit, 0.6);
        let label = flat.get(i).copied().unwrap_or(0);
        let wv = weights.get(label as usize).copied().unwrap_or(0.0) * inv;
        let colour = if wv >= 0.0 {
            [230.0, 30.0, 30.0]
        } else {
            [30.0, 80.0, 230.0]
        };
        let a = wv.abs().clamp(0.0, 1.0) * 0.85;
        let mix = |k: usize| ((1.0 - a) * g + a * colour[k]).round() as u8;
        *px = Rgb([mix(0), mix(1), mix(2)]);
    }
    let mut img = upscale(&img, scale);
    if outline {
        mark_boundaries(&mut img, labels, scale, [40, 40, 40]);
    }
    img
}

/// Separable Gaussian blur of an `h × w` grey image (edges repeated).
pub fn gaussian_blur(img: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    let clampi = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut rows = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            rows[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(j, k)| k * img[y * w + clampi(x as isize + j as isize - radius, w)])
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = kernel
                .iter()
                .enumerate()
                .map(|(j, k)| k * rows[clampi(y as isize + j as isize - radius, h) * w + x])
                .sum();
        }
    }
    out
}

/// The inferno colour map (matplotlib), linearly interpolated between 9 stops.
pub fn inferno(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 9] = [
        [0.0, 0.0, 4.0],
        [31.0, 12.0, 72.0],
        [85.0, 15.0, 109.0],
        [136.0, 34.0, 106.0],
        [186.0, 54.0, 85.0],
        [227.0, 89.0, 51.0],
        [249.0, 140.0, 10.0],
        [249.0, 201.0, 50.0],
        [252.0, 255.0, 164.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let mix = |k: usize| (STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// PNG bytes of an image.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)?;
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxi::ndarray::IxDyn;

    #[test]
    fn layouts() {
        let l = |s: &[usize]| layout(s).map(|l| (l.height, l.width, l.channels, l.channels_first));
        assert_eq!(l(&[28, 28, 1]), Some((28, 28, 1, false)));
        assert_eq!(l(&[1, 28, 28]), Some((28, 28, 1, false)));
        assert_eq!(l(&[1, 1, 28, 28]), Some((28, 28, 1, false)));
        assert_eq!(l(&[3, 32, 30]), Some((32, 30, 3, true)));
        assert_eq!(l(&[32, 30, 3]), Some((32, 30, 3, false)));
        assert_eq!(l(&[10]), None);
        assert_eq!(l(&[5, 7, 9]), None);
        assert_eq!(l(&[1, 10]), None);
    }

    #[test]
    fn channels_first_to_hwc() {
        let a = ArrayD::from_shape_vec(IxDyn(&[3, 2, 2]), (0..12).map(f64::from).collect())
            .expect("shape");
        let l = layout(a.shape()).expect("image");
        assert_eq!(hwc(&a, &l)[..6], [0.0, 4.0, 8.0, 1.0, 5.0, 9.0]);
    }

    #[test]
    fn blur_keeps_mass_and_spreads() {
        let mut img = vec![0.0; 49];
        img[24] = 1.0;
        let b = gaussian_blur(&img, 7, 7, 0.75);
        assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(b[24] < 1.0 && b[24] > b[23] && b[23] > 0.0);
        assert!((b[23] - b[25]).abs() < 1e-12 && (b[17] - b[31]).abs() < 1e-12);
    }

    #[test]
    fn colour_map_ends() {
        assert_eq!(inferno(0.0), [0, 0, 4]);
        assert_eq!(inferno(1.0), [252, 255, 164]);
        assert_eq!(inferno(f64::NAN), [0, 0, 4]);
    }

    #[test]
    fn pictures_and_png() {
        let l = layout(&[2, 3]).expect("image");
        let img = picture(&[0.0, 0.5, 1.0, 1.0, 0.5, 0.0], &l, 2, |v| v);
        assert_eq!((img.width(), img.height()), (6, 4));
        assert_eq!(img.get_pixel(5, 0), &Rgb([255, 255, 255]));
        let both = side_by_side(&[img.clone(), img]);
        assert_eq!(both.width(), 18);
        let bytes = png_bytes(&both).expect("png");
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(display_scale(&layout(&[28, 28]).expect("image")), 8);
        let ch = change_picture(&[0.0, -0.5, 0.125, 0.0, 0.0, 0.0], &l, 1);
        assert_eq!(ch.get_pixel(1, 0), &Rgb([255, 255, 255]));
        assert_eq!(ch.get_pixel(2, 0), &Rgb([128, 128, 128]));
        assert_eq!(ch.get_pixel(0, 0), &Rgb([0, 0, 0]));
        let tiny = change_picture(&[1e-4, 0.5, 0.0, 0.0, 0.0, 0.0], &l, 1);
        assert_eq!(tiny.get_pixel(0, 0), &Rgb([0, 0, 0]));
        let ov = overlay(
            &[1.0; 6],
            &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            &l,
            1,
            0.5,
            [255, 0, 0],
            |v| v,
        );
        assert_eq!(ov.get_pixel(0, 0), &Rgb([128, 128, 128]));
        assert_eq!(ov.get_pixel(1, 0), &Rgb([255, 0, 0]));
    }
}
