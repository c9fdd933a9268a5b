//! The variable space: what the optimiser's variable `v` is, and how it maps onto model inputs.
//!
//! The optimiser, the gradient method and the loss's bounds work on `v`; models see inputs. The
//! map is linear: every entry of `v` stands for a set of input entries (itself, for the
//! identity; the pixels of a segment, for superpixels). Losses use [`VariableSpace::expand`] to
//! turn a batch of variables into input-shaped fields before they build what the model sees.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD};

use crate::segmentation::Segmentation;

/// What one entry of the variable stands for, in reports ("34 of 784 pixels").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// One pixel of a one-channel image.
    Pixel,
    /// One entry of an input of any other layout.
    Entry,
    /// One segment (superpixel) of an image.
    Segment,
}

impl Unit {
    /// The plural noun, e.g. `pixels`.
    pub fn plural(self) -> &'static str {
        match self {
            Unit::Pixel => "pixels",
            Unit::Entry => "entries",
            Unit::Segment => "segments",
        }
    }
}

/// How [`VariableSpace::reduce`] combines the input entries of one variable entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Their mean (inverts [`VariableSpace::expand`] on the fields it makes).
    Mean,
    /// Their sum.
    Sum,
    /// Their minimum.
    Min,
    /// Their maximum.
    Max,
}

/// How the optimiser's variable maps onto model inputs (see the module docs).
pub trait VariableSpace: Send + Sync + std::fmt::Debug {
    /// Shape of the variable.
    fn shape(&self) -> &[usize];
    /// Shape of one model input.
    fn input_shape(&self) -> &[usize];
    /// What one entry of the variable stands for.
    fn unit(&self) -> Unit;
    /// True when the variable is the input itself ([`expand`](Self::expand) copies).
    fn is_identity(&self) -> bool {
        false
    }
    /// Writes, for each variable row of `v` (`[B, ...shape]`), the input-shaped field it
    /// stands for into `out` (`[B, ...input_shape]`).
    fn expand(&self, v: ArrayViewD<'_, f64>, out: ArrayViewMutD<'_, f64>);
    /// Maps one input-shaped field (no batch axis) back to the variable's shape, combining
    /// the entries each variable entry stands for (e.g. per-segment bounds from per-pixel
    /// ones).
    fn reduce(&self, field: ArrayViewD<'_, f64>, how: Reduce) -> ArrayD<f64>;
    /// The segmentation behind a per-segment space.
    fn segments(&self) -> Option<&Segmentation> {
        None
    }
}

/// The variable is the input itself: one variable entry per input entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    shape: Vec<usize>,
}

impl Identity {
    /// The identity space of inputs of `shape`.
    pub fn new(shape: &[usize]) -> Self {
        Identity {
            shape: shape.to_vec(),
        }
    }
}

/// `[H, W]` and `[H, W, 1]` items are one-channel images (their entries are pixels).
fn is_grey_image(shape: &[usize]) -> bool {
    matches!(shape, [h, w] | [h, w, 1] if *h > 1 && *w > 1)
}

impl VariableSpace for Identity {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn input_shape(&self) -> &[usize] {
        &self.shape
    }
    fn unit(&self) -> Unit {
        if is_grey_image(&self.shape) {
            Unit::Pixel
        } else {
            Unit::Entry
        }
    }
    fn is_identity(&self) -> bool {
        true
    }
    fn expand(&self, v: ArrayViewD<'_, f64>, mut out: ArrayViewMutD<'_, f64>) {
        out.assign(&v);
    }
    fn reduce(&self, field: ArrayViewD<'_, f64>, _how: Reduce) -> ArrayD<f64> {
        field.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn identity_copies_and_names_its_unit() {
        let s = Identity::new(&[28, 28, 1]);
        assert_eq!(s.unit(), Unit::Pixel);
        assert_eq!(Identity::new(&[3, 32, 32]).unit(), Unit::Entry);
        assert_eq!(Identity::new(&[64]).unit(), Unit::Entry);
        let v = ArrayD::from_shape_fn(vec![2, 3], |i| (i[0] * 3 + i[1]) as f64);
        let mut out = ArrayD::zeros(vec![2, 3]);
        Identity::new(&[3]).expand(v.view(), out.view_mut());
        assert_eq!(out, v);
    }
}
