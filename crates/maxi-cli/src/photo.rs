//! Photos as inputs: PNG and JPEG files, optionally resized (shorter side to `resize`) and
//! centre-cropped (`crop` × `crop`) as ImageNet models expect — `[input] resize = 256`,
//! `crop = 224` — then laid out as the model's item (`[H, W, C]` or `[C, H, W]`) with pixel
//! values 0..255 mapped linearly onto `pixel_range`.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};
use maxi::ndarray::{ArrayD, IxDyn};
use maxi::serde_json::Value;

use crate::error::{CliError, CliResult};
use crate::input::image_target;

/// The largest `resize` or `crop` accepted (pixels per side).
pub const MAX_SIDE: u32 = 4096;

/// `[input]` resize and centre crop of photos.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhotoOptions {
    /// Resize so that the shorter side has this many pixels (aspect ratio kept; bilinear).
    pub resize: Option<u32>,
    /// Then cut the centre `crop` × `crop` square.
    pub crop: Option<u32>,
}

impl PhotoOptions {
    /// True when neither option is set.
    pub fn is_empty(&self) -> bool {
        self.resize.is_none() && self.crop.is_none()
    }

    /// Reads `resize` or `crop` from `[input]` of `file`.
    pub fn set(&mut self, key: &str, v: &Value, file: &str) -> CliResult<()> {
        let n = match v.as_u64() {
            Some(n) if (1..=u64::from(MAX_SIDE)).contains(&n) => n as u32,
            _ => {
                return Err(CliError::usage(format!(
                    "`{key}` in [input] of {file} must be a whole number of pixels from 1 to \
                     {MAX_SIDE} (e.g. resize = 256, crop = 224), got {v}"
                )));
            }
        };
        match key {
            "resize" => self.resize = Some(n),
            _ => self.crop = Some(n),
        }
        Ok(())
    }

    /// The image resized and cropped as set.
    pub fn apply(&self, img: DynamicImage, shown: &str) -> CliResult<DynamicImage> {
        let mut img = img;
        if let Some(side) = self.resize {
            let (w, h) = img.dimensions();
            let short = w.min(h).max(1);
            // the longer side scaled and truncated, as torchvision's Resize(int) does
            let scale = |v: u32| {
                (u64::from(v) * u64::from(side) / u64::from(short))
                    .clamp(1, u64::from(MAX_SIDE) * 4) as u32
            };
            let (nw, nh) = if w <= h {
                (side, scale(h))
            } else {
                (scale(w), side)
            };
            img = img.resize_exact(nw, nh, FilterType::Triangle);
        }
        if let Some(side) = self.crop {
            let (w, h) = img.dimensions();
            if side > w || side > h {
                return Err(CliError::usage(format!(
                    "input {shown}: cannot crop {side}×{side} from a {w}×{h} image; set [input] \
                     crop ≤ {} (or resize first, e.g. resize = {side})",
                    w.min(h)
                )));
            }
            // the centre, offsets rounded half up
            img = img.crop_imm((w - side).div_ceil(2), (h - side).div_ceil(2), side, side);
        }
        Ok(img)
    }
}

/// Loads a PNG or JPEG file for a model whose item shape is `model_shape` (when known).
pub fn load(
    path: &Path,
    model_shape: Option<&[usize]>,
    [lo, hi]: [f64; 2],
    opts: &PhotoOptions,
) -> CliResult<ArrayD<f64>> {
    let shown = path.display().to_string();
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| CliError::usage(format!("cannot read input {shown}: {e}")))?
        .decode()
        .map_err(|e| {
            CliError::usage(format!(
                "input {shown} is not a readable PNG or JPEG image: {e}"
            ))
        })?;
    let img = opts.apply(img, &shown)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let channels = if img.color().has_color() { 3 } else { 1 };
    let target = image_target(model_shape, &shown, h, w, channels)?;
    if (target.height, target.width) != (h, w) {
        return Err(CliError::usage(format!(
            "input {shown} is {w}×{h} pixels (after resize/crop) but the model takes {}×{} \
             images; set [input] resize and crop (e.g. resize = 256, crop = 224) or resize the \
             file",
            target.width, target.height
        )));
    }
    let c = target.channels;
    let values: Vec<f64> = if c == 1 {
        img.to_luma8().pixels().map(|p| f64::from(p.0[0])).collect()
    } else {
        img.to_rgb8()
            .pixels()
            .flat_map(|p| p.0.map(f64::from))
            .collect()
    };
    let value = |v: f64| lo + v / 255.0 * (hi - lo);
    let mut out = vec![0.0; h * w * c];
    for i in 0..h * w {
        for k in 0..c {
            let at = if target.channels_first {
                k * h * w + i
            } else {
                i * c + k
            };
            out[at] = value(values[i * c + k]);
        }
    }
    let shape: Vec<usize> = match model_shape {
        Some(s) => s.to_vec(),
        None => vec![h, w, c],
    };
    ArrayD::from_shape_vec(IxDyn(&shape), out)
        .map_err(|e| CliError::runtime(format!("internal: image input shape: {e}")))
}

#[cfg(test)]
mod tests;
