//! Inputs to explain: `.npy` arrays, PNG images and the bundled MNIST test images.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::ImageDecoder;

use maxi::ndarray::{ArrayD, Axis, IxDyn};

use crate::error::{CliError, CliResult};
use crate::npy::{self, NpyError};
use crate::render::{Layout, layout};

/// Most pixels of a PNG input (e.g. 4096×4096): checked from the header, before decoding.
pub const MAX_PNG_PIXELS: u64 = 1 << 24;

/// Where an input comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Test image `N` of the bundled MNIST set (`mnist:N`).
    Mnist(usize),
    /// A `.npy` or `.png` file.
    File(PathBuf),
}

impl Source {
    /// Parses `mnist:N` or a path; a relative path is resolved against `base`.
    pub fn parse(s: &str, base: Option<&Path>) -> CliResult<Source> {
        if let Some(rest) = s.strip_prefix("mnist:") {
            let n: usize = rest.trim().parse().map_err(|_| {
                CliError::usage(format!(
                    "input `{s}`: expected mnist:N with N a test image index 0..=9999 (e.g. mnist:2953)"
                ))
            })?;
            return Ok(Source::Mnist(n));
        }
        let p = Path::new(s);
        Ok(Source::File(match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        }))
    }

    /// How the source is shown in messages and the report.
    pub fn describe(&self) -> String {
        match self {
            Source::Mnist(n) => format!("mnist:{n}"),
            Source::File(p) => p.display().to_string(),
        }
    }
}

/// Loads the input for a model whose item shape is `model_shape` (when known); PNG pixels map
/// linearly from `[0, max]` to `pixel_range`. Checks the shape and that every entry is finite.
pub fn load(
    source: &Source,
    model_shape: Option<&[usize]>,
    pixel_range: [f64; 2],
    photo: &crate::photo::PhotoOptions,
) -> CliResult<ArrayD<f64>> {
    let shown = source.describe();
    let x = match source {
        Source::Mnist(n) => {
            let x = maxi::mnist::test_image(*n)?;
            match model_shape {
                // same pixels in another layout of one channel: [28, 28], [1, 28, 28], [784]
                Some(s) if s != x.shape() && s.iter().product::<usize>() == x.len() => x
                    .into_shape_with_order(IxDyn(s))
                    .map_err(|e| CliError::runtime(format!("internal: reshape: {e}")))?,
                _ => x,
            }
        }
        Source::File(path) => {
            if !path.is_file() {
                return Err(CliError::usage(format!(
                    "input {shown} not found; check the path (--input is relative to the current folder, [input] path to the config file), or use mnist:N"
                )));
            }
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            match ext.as_str() {
                "npy" => load_npy(path)?,
                "png" if photo.is_empty() => load_png(path, model_shape, pixel_range)?,
                "png" | "jpg" | "jpeg" => {
                    crate::photo::load(path, model_shape, pixel_range, photo)?
                }
                other => {
                    return Err(CliError::usage(format!(
                        "input {shown}: unsupported file type `.{other}`; give a .npy (float32/float64), .png or .jpg file"
                    )));
                }
            }
        }
    };
    checked(x, model_shape, &shown)
}

/// Checks a loaded input (`shown` in messages): the model's item shape (or it with a leading
/// batch axis of 1), at least one entry, every entry finite.
pub fn checked(
    x: ArrayD<f64>,
    model_shape: Option<&[usize]>,
    shown: &str,
) -> CliResult<ArrayD<f64>> {
    let x = fit_shape(x, model_shape, shown)?;
    if let Some((i, v)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let index = unravel(i, x.shape());
        return Err(CliError::usage(format!(
            "input {shown} contains {v} at index {index:?}; every entry must be a finite number — clean the input"
        )));
    }
    if x.is_empty() {
        return Err(CliError::usage(format!("input {shown} has no entries")));
    }
    Ok(x)
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Accepts the model's item shape, or it with a leading batch axis of 1.
fn fit_shape(x: ArrayD<f64>, model_shape: Option<&[usize]>, shown: &str) -> CliResult<ArrayD<f64>> {
    let Some(s) = model_shape else {
        return Ok(x);
    };
    if x.shape() == s {
        return Ok(x);
    }
    if x.ndim() == s.len() + 1 && x.shape()[0] == 1 && &x.shape()[1..] == s {
        return Ok(x.index_axis_move(Axis(0), 0));
    }
    Err(CliError::usage(format!(
        "input {shown} has shape {:?} but the model takes items of shape {s:?} (a leading batch axis of 1, {:?}, is also accepted); reshape or resize the input",
        x.shape(),
        std::iter::once(1)
            .chain(s.iter().copied())
            .collect::<Vec<_>>()
    )))
}

fn load_npy(path: &Path) -> CliResult<ArrayD<f64>> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read input {shown}: {e}")))?;
    npy::read_f64(&bytes).map_err(|e| match e {
        NpyError::NotFloat(d) => CliError::usage(format!(
            "input {shown} holds {d} values; save it as float32 or float64 (e.g. x.astype(numpy.float32))"
        )),
        NpyError::Malformed(problem) => CliError::usage(format!(
            "input {shown} is not a usable .npy file: {problem}; save a float32 or float64 array with numpy.save"
        )),
    })
}

/// The layout an image input is read into: the model's (an error when the model does not take
/// images), else the image's own `h`×`w`×`channels`, channels last.
pub(crate) fn image_target(
    model_shape: Option<&[usize]>,
    shown: &str,
    h: usize,
    w: usize,
    channels: usize,
) -> CliResult<Layout> {
    match model_shape {
        None => Ok(Layout {
            height: h,
            width: w,
            channels,
            channels_first: false,
        }),
        Some(s) => layout(s).ok_or_else(|| {
            CliError::usage(format!(
                "input {shown} is an image but the model takes items of shape {s:?}, not an image; give a .npy input"
            ))
        }),
    }
}

fn load_png(
    path: &Path,
    model_shape: Option<&[usize]>,
    [lo, hi]: [f64; 2],
) -> CliResult<ArrayD<f64>> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read input {shown}: {e}")))?;
    decode_png(&bytes, &shown.to_string(), model_shape, [lo, hi])
}

/// Decodes the PNG file `shown` (its whole `bytes`) for a model whose item shape is
/// `model_shape` (when known); pixels map linearly from `[0, max]` to `[lo, hi]`. The image
/// size is checked from the header before anything is decoded.
pub fn decode_png(
    bytes: &[u8],
    shown: &str,
    model_shape: Option<&[usize]>,
    [lo, hi]: [f64; 2],
) -> CliResult<ArrayD<f64>> {
    let unreadable =
        |e: image::ImageError| CliError::usage(format!("input {shown} is not a readable PNG: {e}"));
    // The header is read first: the size is checked before any pixel is decoded, so a small
    // file claiming a huge image costs nothing.
    let decoder = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png)
        .into_decoder()
        .map_err(unreadable)?;
    let (w32, h32) = decoder.dimensions();
    if u64::from(w32) * u64::from(h32) > MAX_PNG_PIXELS {
        return Err(CliError::usage(format!(
            "input {shown} is {w32}×{h32} pixels, more than the {MAX_PNG_PIXELS} pixels (e.g. 4096×4096) maxi reads from a PNG; resize the image"
        )));
    }
    let (w, h) = (w32 as usize, h32 as usize);
    let is_grey = !decoder.color_type().has_color();
    let channels = if is_grey { 1 } else { 3 };
    let target = image_target(model_shape, shown, h, w, channels)?;
    if (target.height, target.width) != (h, w) {
        return Err(CliError::usage(format!(
            "input {shown} is {w}×{h} pixels but the model takes {}×{} images; resize the image",
            target.width, target.height
        )));
    }
    let img = image::DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    // values in [0, 1], HWC
    let values: Vec<f64> = if is_grey {
        let g = img.to_luma16();
        g.pixels().map(|p| f64::from(p.0[0]) / 65535.0).collect()
    } else {
        let c = img.to_rgb16();
        c.pixels()
            .flat_map(|p| p.0.map(|v| f64::from(v) / 65535.0))
            .collect()
    };
    // adapt channels: RGB → grey (luma) or grey → RGB (copies)
    let pixel = |i: usize| -> Vec<f64> {
        let px = &values[i * channels..(i + 1) * channels];
        match (channels, target.channels) {
            (1, 3) => vec![px[0]; 3],
            (3, 1) => vec![0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]],
            _ => px.to_vec(),
        }
    };
    let c = target.channels;
    let mut hwc = Vec::with_capacity(h * w * c);
    for i in 0..h * w {
        hwc.extend(pixel(i).into_iter().map(|v| lo + v * (hi - lo)));
    }
    let arranged = if target.channels_first {
        let mut chw = vec![0.0; h * w * c];
        for i in 0..h * w {
            for k in 0..c {
                chw[k * h * w + i] = hwc[i * c + k];
            }
        }
        chw
    } else {
        hwc
    };
    let shape: Vec<usize> = match model_shape {
        Some(s) => s.to_vec(),
        None => vec![h, w, c],
    };
    ArrayD::from_shape_vec(IxDyn(&shape), arranged)
        .map_err(|e| CliError::runtime(format!("internal: PNG input shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            Source::parse("mnist:12", None).ok(),
            Some(Source::Mnist(12))
        );
        assert!(Source::parse("mnist:x", None).is_err());
        assert_eq!(
            Source::parse("a.npy", Some(Path::new("cfg"))).ok(),
            Some(Source::File(PathBuf::from("cfg/a.npy")))
        );
        assert_eq!(
            Source::parse("/abs/a.npy", Some(Path::new("cfg"))).ok(),
            Some(Source::File(PathBuf::from("/abs/a.npy")))
        );
    }

    #[test]
    fn shapes() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[1, 2, 3]));
        assert_eq!(
            fit_shape(x.clone(), Some(&[2, 3]), "x")
                .expect("batch of 1")
                .shape(),
            &[2, 3]
        );
        assert_eq!(
            fit_shape(x.clone(), None, "x").expect("unknown").shape(),
            &[1, 2, 3]
        );
        let e = fit_shape(x, Some(&[3, 2]), "x").expect_err("wrong");
        assert!(e.message.contains("[3, 2]"), "{e}");
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
    }
}
