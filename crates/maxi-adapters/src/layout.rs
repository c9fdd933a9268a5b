//! Where the channels of an image-like item are.

use maxi_core::{MaxiError, Result};

/// The axes of an image item: `[H, W]`, `[H, W, C]` or `[C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageAxes {
    /// Axis of the rows.
    pub height: usize,
    /// Axis of the columns.
    pub width: usize,
    /// Axis of the channels (`None` for a 2-D item).
    pub channel: Option<usize>,
}

impl ImageAxes {
    /// The axes of `shape`: 2-D is `[H, W]`; 3-D is `[H, W, C]` when the last axis has at
    /// most 4 entries (the layout of decoded images), else `[C, H, W]` when the first has.
    pub fn of(shape: &[usize], what: &str) -> Result<ImageAxes> {
        match shape {
            [_, _] => Ok(ImageAxes {
                height: 0,
                width: 1,
                channel: None,
            }),
            [_, _, c] if *c <= 4 => Ok(ImageAxes {
                height: 0,
                width: 1,
                channel: Some(2),
            }),
            [a, _, _] if *a <= 4 => Ok(ImageAxes {
                height: 1,
                width: 2,
                channel: Some(0),
            }),
            _ => Err(MaxiError::InvalidSetting {
                name: what.into(),
                message: format!(
                    "needs an image item ([H, W], [H, W, C] or [C, H, W] with at most 4 \
                     channels), but the item shape is {shape:?}"
                ),
            }),
        }
    }

    /// Rows and columns of `shape`.
    pub fn size(&self, shape: &[usize]) -> (usize, usize) {
        (shape[self.height], shape[self.width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_of_common_layouts() {
        assert_eq!(
            ImageAxes::of(&[28, 28, 1], "x").ok().map(|a| a.channel),
            Some(Some(2))
        );
        assert_eq!(
            ImageAxes::of(&[3, 224, 224], "x").ok().map(|a| a.channel),
            Some(Some(0))
        );
        assert_eq!(
            ImageAxes::of(&[8, 9], "x").ok().map(|a| a.size(&[8, 9])),
            Some((8, 9))
        );
        assert_eq!(
            ImageAxes::of(&[3, 3, 3], "x").ok().map(|a| a.channel),
            Some(Some(2))
        );
        assert!(ImageAxes::of(&[5, 6, 7], "x").is_err());
        assert!(ImageAxes::of(&[784], "x").is_err());
    }
}
