//! Grid segmentation: the image is cut into square cells of `cell_size` × `cell_size` pixels,
//! labelled row-major (`label = (row / cell_size) · columns_of_cells + col / cell_size`); cells on
//! the right and bottom edges are smaller when the size does not divide the image. Pixel values
//! are not used (they must still be finite, as for every segmentation).
//!
//! Component name `grid`.
#![warn(missing_docs)]

use maxi_image_ops::check_image;
use ndarray::{Array2, ArrayView3};
use serde::{Deserialize, Serialize};

pub use maxi_image_ops::SegmentError;

/// This component's kwargs, under the name every segmentation crate uses.
pub type Kwargs = GridKwargs;

/// The component's registry name.
pub const NAME: &str = "grid";

/// The largest `cell_size` accepted.
pub const MAX_CELL_SIZE: u32 = 65_536;

fn default_cell_size() -> u32 {
    8
}

/// Kwargs of the grid segmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GridKwargs {
    /// Side of a square cell in pixels, 1..=65536 and at most the image's shorter side
    /// (cells on the right and bottom edges may be smaller). Default 8.
    #[serde(default = "default_cell_size")]
    pub cell_size: u32,
}

impl Default for GridKwargs {
    fn default() -> Self {
        Self {
            cell_size: default_cell_size(),
        }
    }
}

impl GridKwargs {
    /// Range-checks the kwargs; the error is `(field, message with the fix)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=MAX_CELL_SIZE).contains(&self.cell_size) {
            return Err((
                "cell_size".into(),
                format!(
                    "must be between 1 and {MAX_CELL_SIZE} pixels, got {}; 8 is the default",
                    self.cell_size
                ),
            ));
        }
        Ok(())
    }
}

/// Segments an `[H, W, C]` image (C = 1 or 3) into square cells; returns the `[H, W]` label map.
///
/// Errors: invalid kwargs, an empty image, C ∉ {1, 3}, a non-finite value, or an image whose
/// shorter side is smaller than `cell_size`.
pub fn segment(
    image: ArrayView3<'_, f64>,
    kwargs: &GridKwargs,
) -> Result<Array2<i32>, SegmentError> {
    kwargs.validate()?;
    let (h, w, _) = check_image(image)?;
    let cell = kwargs.cell_size as usize;
    if h < cell || w < cell {
        return Err(SegmentError::TooSmall {
            height: h,
            width: w,
            what: "cell",
            field: "cell_size",
            value: cell,
            max: h.min(w),
        });
    }
    let cols = w.div_ceil(cell);
    // At most h·w ≤ i32::MAX cells (checked by check_image), so the cast is exact.
    Ok(Array2::from_shape_fn((h, w), |(r, c)| {
        ((r / cell) * cols + c / cell) as i32
    }))
}

maxi_image_ops::segmentation_component!(Grid, GridKwargs, segment, NAME);
maxi_core::register_segmentation!(
    Grid,
    "grid",
    aliases = [],
    doc = "Square cells of cell_size × cell_size pixels",
);

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_image_ops::check_segmentation;
    use ndarray::{Array3, array};

    fn kw(cell_size: u32) -> GridKwargs {
        GridKwargs { cell_size }
    }

    #[test]
    fn exact_labels_with_smaller_edge_cells() {
        let img = Array3::<f64>::zeros((5, 7, 3));
        let labels = segment(img.view(), &kw(3)).unwrap();
        assert_eq!(
            labels,
            array![
                [0, 0, 0, 1, 1, 1, 2],
                [0, 0, 0, 1, 1, 1, 2],
                [0, 0, 0, 1, 1, 1, 2],
                [3, 3, 3, 4, 4, 4, 5],
                [3, 3, 3, 4, 4, 4, 5],
            ]
        );
        assert_eq!(check_segmentation(labels.view()), Ok(6));
    }

    #[test]
    fn quadrant_blocks_are_the_cells() {
        // 4 flat colour blocks of 8×8: with cell_size 8 every block is exactly one cell.
        let img = Array3::from_shape_fn((16, 16, 3), |(r, c, k)| {
            ((r / 8) * 2 + c / 8) as f64 * 50.0 + k as f64
        });
        let labels = segment(img.view(), &GridKwargs::default()).unwrap();
        for ((r, c), &l) in labels.indexed_iter() {
            assert_eq!(l as usize, (r / 8) * 2 + c / 8);
        }
    }

    #[test]
    fn values_do_not_matter_and_grey_is_fine() {
        let a = Array3::from_shape_fn((9, 9, 1), |(r, c, _)| (r * c) as f64);
        let b = a.mapv(|v| v / 255.0 - 3.0);
        let la = segment(a.view(), &kw(4)).unwrap();
        assert_eq!(la, segment(b.view(), &kw(4)).unwrap());
        assert_eq!(la, segment(a.view(), &kw(4)).unwrap());
        assert_eq!(check_segmentation(la.view()), Ok(9));
        // cell_size 1: every pixel its own segment.
        assert_eq!(
            check_segmentation(segment(a.view(), &kw(1)).unwrap().view()),
            Ok(81)
        );
    }

    #[test]
    fn errors_name_the_problem_and_fix() {
        let img = Array3::<f64>::zeros((6, 10, 3));
        let err = segment(img.view(), &kw(8)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the image (6×10) is smaller than one cell (`cell_size` = 8); use `cell_size` ≤ 6 or a larger image"
        );
        let err = segment(img.view(), &kw(0)).unwrap_err();
        assert!(
            matches!(&err, SegmentError::InvalidKwarg { field, .. } if field == "cell_size"),
            "{err}"
        );
        assert!(kw(MAX_CELL_SIZE + 1).validate().is_err());
        let empty = Array3::<f64>::zeros((0, 0, 3));
        assert!(matches!(
            segment(empty.view(), &kw(1)),
            Err(SegmentError::EmptyImage { .. })
        ));
    }

    #[test]
    fn kwargs_serde_defaults_and_unknown_fields() {
        let k: GridKwargs = serde_json::from_str("{}").unwrap();
        assert_eq!(k, GridKwargs::default());
        assert_eq!(k.cell_size, 8);
        assert!(serde_json::from_str::<GridKwargs>(r#"{"cellsize": 4}"#).is_err());
        assert!(serde_json::from_str::<GridKwargs>(r#"{"cell_size": -1}"#).is_err());
    }
}
