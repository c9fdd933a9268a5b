//! A reader for the MNIST IDX files (gzipped or raw), and the bundled MNIST test set.
//!
//! The models in `fixtures/mnist/` take NHWC items `[28, 28, 1]` scaled as `pixel/255 − 0.5`,
//! so in `[-0.5, 0.5]`; [`image_for_model`] produces exactly that.
//!
//! ```no_run
//! # fn main() -> maxi::Result<()> {
//! let x = maxi::mnist::test_image(2953)?; // [28, 28, 1], label 3, the CNN predicts 5
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use maxi_core::{MaxiError, Result};
use ndarray::{Array1, Array3, ArrayBase, ArrayD, Data, Ix3, IxDyn};

/// Magic number of an IDX3 file of unsigned bytes (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX1 file of unsigned bytes (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// File name of the MNIST test images in [`bundled_fixtures_dir`]`/mnist`.
pub const TEST_IMAGES_FILE: &str = "t10k-images-idx3-ubyte.gz";
/// File name of the MNIST test labels in [`bundled_fixtures_dir`]`/mnist`.
pub const TEST_LABELS_FILE: &str = "t10k-labels-idx1-ubyte.gz";

fn bad(path: &Path, message: impl Into<String>) -> MaxiError {
    MaxiError::input(path.display().to_string(), message)
}

/// The file's bytes, gunzipped when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| {
        bad(
            path,
            format!("cannot read the MNIST file ({e}); check the path"),
        )
    })?;
    gunzip_if_needed(path, raw)
}

/// `raw` gunzipped when it starts with the gzip magic (`path` names it in errors).
fn gunzip_if_needed(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                bad(
                    path,
                    format!("corrupt gzip data ({e}); download the file again"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Checks the IDX header (magic and `dims` big-endian sizes) and the payload length; returns
/// the sizes and the payload.
fn parse_idx<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    what: &str,
    ndims: usize,
) -> Result<(Vec<usize>, &'a [u8])> {
    let header_len = 4 * (1 + ndims);
    if bytes.len() < header_len {
        return Err(bad(
            path,
            format!(
                "too short for an IDX {what} file ({} bytes, the header alone is {header_len})",
                bytes.len()
            ),
        ));
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let found = word(0);
    if found != magic {
        return Err(bad(
            path,
            format!(
                "not an IDX {what} file: magic number 0x{found:08x}, expected 0x{magic:08x} \
                 (images are *-images-idx3-ubyte, labels *-labels-idx1-ubyte)"
            ),
        ));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, format!("IDX sizes {dims:?} overflow")))?;
    let payload = &bytes[header_len..];
    if payload.len() != expected {
        return Err(bad(
            path,
            format!(
                "the header announces {dims:?} = {expected} bytes of data but the file holds {}; \
                 the file is truncated or corrupt",
                payload.len()
            ),
        ));
    }
    Ok((dims, payload))
}

/// Reads an IDX3 image file (gzipped or raw): `[n, rows, cols]` pixels, 0 = background,
/// 255 = ink.
///
/// Errors ([`MaxiError::InvalidInput`]): unreadable file, bad gzip data, wrong magic number
/// (must be `0x00000803`), or a payload whose length disagrees with the header.
pub fn load_images(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let path = path.as_ref();
    images_from_bytes(path, read_maybe_gz(path)?)
}

fn images_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Array3<u8>> {
    let bytes = gunzip_if_needed(path, bytes)?;
    let (dims, payload) = parse_idx(path, &bytes, IMAGES_MAGIC, "images (idx3-ubyte)", 3)?;
    Array3::from_shape_vec((dims[0], dims[1], dims[2]), payload.to_vec())
        .map_err(|e| MaxiError::Other(format!("internal: MNIST image array: {e}")))
}

/// Reads an IDX1 label file (gzipped or raw): `n` labels.
///
/// Errors ([`MaxiError::InvalidInput`]): unreadable file, bad gzip data, wrong magic number
/// (must be `0x00000801`), or a payload whose length disagrees with the header.
pub fn load_labels(path: impl AsRef<Path>) -> Result<Array1<u8>> {
    let path = path.as_ref();
    labels_from_bytes(path, read_maybe_gz(path)?)
}

fn labels_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Array1<u8>> {
    let bytes = gunzip_if_needed(path, bytes)?;
    let (_, payload) = parse_idx(path, &bytes, LABELS_MAGIC, "labels (idx1-ubyte)", 1)?;
    Ok(Array1::from(payload.to_vec()))
}

/// Image `index` (0-based, file order) of `images` as a model input: shape `[rows, cols, 1]`
/// (`[28, 28, 1]` for MNIST), values `pixel/255 − 0.5` in `[-0.5, 0.5]`.
pub fn image_for_model<S: Data<Elem = u8>>(
    images: &ArrayBase<S, Ix3>,
    index: usize,
) -> Result<ArrayD<f64>> {
    let (n, rows, cols) = images.dim();
    if index >= n {
        return Err(MaxiError::input(
            "index",
            format!(
                "image index {index} is out of range; the file holds {n} images (0..={})",
                n.saturating_sub(1)
            ),
        ));
    }
    let img = images.index_axis(ndarray::Axis(0), index);
    let values: Vec<f64> = img.iter().map(|&p| f64::from(p) / 255.0 - 0.5).collect();
    ArrayD::from_shape_vec(IxDyn(&[rows, cols, 1]), values)
        .map_err(|e| MaxiError::Other(format!("internal: MNIST image shape: {e}")))
}

/// The `fixtures/` folder of the maxi source tree (MNIST files and pretrained ONNX models).
///
/// This is a compile-time path into the source checkout; it exists for tests and examples run
/// from the workspace, not in an installed binary.
pub fn bundled_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

static TEST_IMAGES: OnceLock<Array3<u8>> = OnceLock::new();
static TEST_LABELS: OnceLock<Array1<u8>> = OnceLock::new();

fn bundled_test_images() -> Result<&'static Array3<u8>> {
    if let Some(images) = TEST_IMAGES.get() {
        return Ok(images);
    }
    let images = images_from_bytes(
        Path::new(concat!("<bundled>/", "mnist/t10k-images-idx3-ubyte.gz")),
        crate::bundled::MNIST_TEST_IMAGES_GZ.to_vec(),
    )?;
    Ok(TEST_IMAGES.get_or_init(|| images))
}

fn bundled_test_labels() -> Result<&'static Array1<u8>> {
    if let Some(labels) = TEST_LABELS.get() {
        return Ok(labels);
    }
    let labels = labels_from_bytes(
        Path::new(concat!("<bundled>/", "mnist/t10k-labels-idx1-ubyte.gz")),
        crate::bundled::MNIST_TEST_LABELS_GZ.to_vec(),
    )?;
    Ok(TEST_LABELS.get_or_init(|| labels))
}

/// MNIST test image `index` (0..10000, file order, as `data.test_data[i]` in the IBM CEM code)
/// from the bundled `t10k` file, ready for the bundled models: `[28, 28, 1]` in `[-0.5, 0.5]`.
/// The file is read once and kept in memory.
pub fn test_image(index: usize) -> Result<ArrayD<f64>> {
    image_for_model(bundled_test_images()?, index)
}

/// Label (0..=9) of MNIST test image `index` from the bundled `t10k` labels file.
pub fn test_label(index: usize) -> Result<u8> {
    let labels = bundled_test_labels()?;
    labels.get(index).copied().ok_or_else(|| {
        MaxiError::input(
            "index",
            format!(
                "label index {index} is out of range; the file holds {} labels",
                labels.len()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mnist_dir() -> PathBuf {
        bundled_fixtures_dir().join("mnist")
    }

    /// Minimal reader for the IBM reference `.npy` files: little-endian float32, C order.
    fn read_f32_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let (header_len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            _ => (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            ),
        };
        let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
        assert!(header.contains("'descr': '<f4'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        let shape_str = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap();
        let shape: Vec<usize> = shape_str
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let data: Vec<f32> = bytes[start + header_len..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(data.len(), shape.iter().product::<usize>());
        (shape, data)
    }

    #[test]
    fn reads_the_bundled_test_set() {
        let images = load_images(mnist_dir().join(TEST_IMAGES_FILE)).unwrap();
        let labels = load_labels(mnist_dir().join(TEST_LABELS_FILE)).unwrap();
        assert_eq!(images.dim(), (10000, 28, 28));
        assert_eq!(labels.len(), 10000);
        assert!(labels.iter().all(|&l| l <= 9));
        assert_eq!(labels[2953], 3);
        assert_eq!(labels[340], 5);
        assert_eq!(test_label(2953).unwrap(), 3);
        assert_eq!(test_label(340).unwrap(), 5);
        // The well-known first test label is 7.
        assert_eq!(labels[0], 7);
    }

    #[test]
    fn test_images_match_the_ibm_reference() {
        for (index, file) in [
            (2953, "PP_ID2953_Gamma_100.0/Orig_original5.npy"),
            (340, "PN_ID340_Gamma_100.0/Orig_original3.npy"),
        ] {
            let x = test_image(index).unwrap();
            assert_eq!(x.shape(), &[28, 28, 1]);
            assert!(x.iter().all(|v| (-0.5..=0.5).contains(v)));
            let (shape, reference) =
                read_f32_npy(&mnist_dir().join("ibm_cem_reference").join(file));
            assert_eq!(shape, vec![1, 28, 28, 1]);
            let max_diff = x
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - f64::from(*b)).abs())
                .fold(0.0, f64::max);
            assert!(max_diff < 1e-6, "image {index}: max |diff| = {max_diff}");
        }
    }

    #[test]
    fn image_for_model_scales_and_checks_the_index() {
        let images =
            Array3::from_shape_fn(
                (2, 2, 3),
                |(n, r, c)| if n == 1 && r == 0 && c == 2 { 255 } else { 0 },
            );
        let x = image_for_model(&images, 1).unwrap();
        assert_eq!(x.shape(), &[2, 3, 1]);
        assert_eq!(x[[0, 2, 0]], 0.5);
        assert_eq!(x[[1, 1, 0]], -0.5);
        assert!(matches!(
            image_for_model(&images.view(), 2),
            Err(MaxiError::InvalidInput { .. })
        ));
        assert!(matches!(
            test_image(10_000),
            Err(MaxiError::InvalidInput { .. })
        ));
        assert!(matches!(
            test_label(10_000),
            Err(MaxiError::InvalidInput { .. })
        ));
    }

    #[test]
    fn raw_files_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("maxi-mnist-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A raw (not gzipped) IDX3 file with 2 images of 2x3.
        let mut raw = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        raw.extend(0u8..12);
        std::fs::write(dir.join("raw-idx3"), &raw).unwrap();
        let images = load_images(dir.join("raw-idx3")).unwrap();
        assert_eq!(images.dim(), (2, 2, 3));
        assert_eq!(images[[1, 1, 2]], 11);
        // Truncated payload.
        std::fs::write(dir.join("short-idx3"), &raw[..raw.len() - 1]).unwrap();
        let err = load_images(dir.join("short-idx3")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Labels file read as images, images file read as labels: wrong magic.
        let err = load_images(mnist_dir().join(TEST_LABELS_FILE)).unwrap_err();
        assert!(err.to_string().contains("0x00000801"), "{err}");
        let err = load_labels(dir.join("raw-idx3")).unwrap_err();
        assert!(err.to_string().contains("0x00000803"), "{err}");
        // Too short, missing, corrupt gzip.
        std::fs::write(dir.join("tiny"), [0u8, 0, 8]).unwrap();
        assert!(matches!(
            load_images(dir.join("tiny")),
            Err(MaxiError::InvalidInput { .. })
        ));
        assert!(matches!(
            load_labels(dir.join("missing")),
            Err(MaxiError::InvalidInput { .. })
        ));
        std::fs::write(dir.join("bad.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
        let err = load_images(dir.join("bad.gz")).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
