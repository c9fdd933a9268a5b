//! `region`: explain the rectangle `(x, y, w, h)` of a larger image (MAXi's
//! `SelectiveRegionProcessor`). The adapter is a model whose items are the rectangle: each
//! row is pasted into a copy of the full image before the inner model sees it, so the
//! explanation's input is the crop and everything outside it stays as in the image.

use std::sync::Arc;

use maxi_core::ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Axis, Slice};
use maxi_core::{KwargProblem, KwargsSpec, MaxiError, Model, Result, Valid};
use serde::{Deserialize, Serialize};

use crate::chunks::{rows_per_call, stacked};
use crate::layout::ImageAxes;

/// Kwargs of the `region` adapter: the rectangle, in pixels of the image being explained
/// (after the input's own resize and crop); `[x, y, w, h]` or `{ x, y, w, h }` in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionKwargs {
    /// Left column of the rectangle (0 is the image's left edge).
    pub x: usize,
    /// Top row of the rectangle (0 is the image's top edge).
    pub y: usize,
    /// Width in pixels (≥ 1).
    pub w: usize,
    /// Height in pixels (≥ 1).
    pub h: usize,
}

impl KwargsSpec for RegionKwargs {
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        if self.w == 0 || self.h == 0 {
            return Err(KwargProblem::new(
                "region",
                format!(
                    "(x, y, w, h) = ({}, {}, {}, {}) is empty; width and height must be at least 1",
                    self.x, self.y, self.w, self.h
                ),
            ));
        }
        Ok(())
    }
}

/// A model over the rectangle of a fixed image (see the module docs).
pub struct Region {
    inner: Arc<dyn Model>,
    image: ArrayD<f64>,
    axes: ImageAxes,
    rect: RegionKwargs,
    crop_shape: Vec<usize>,
}

impl Region {
    /// Wraps `inner` around `image` (shaped like the inner model's item); errors when the
    /// rectangle does not lie inside the image.
    pub fn new(
        inner: Arc<dyn Model>,
        image: ArrayD<f64>,
        rect: &Valid<RegionKwargs>,
    ) -> Result<Self> {
        if let Some(s) = inner.input_shape()
            && s != image.shape()
        {
            return Err(MaxiError::input(
                "region",
                format!(
                    "the image has shape {:?} but the model takes {s:?}",
                    image.shape()
                ),
            ));
        }
        let axes = ImageAxes::of(image.shape(), "[model] region")?;
        let (height, width) = axes.size(image.shape());
        let r = **rect;
        let fits = r.x.checked_add(r.w).is_some_and(|e| e <= width)
            && r.y.checked_add(r.h).is_some_and(|e| e <= height);
        if !fits {
            return Err(MaxiError::InvalidSetting {
                name: "[model] region".into(),
                message: format!(
                    "(x, y, w, h) = ({}, {}, {}, {}) reaches column {} and row {}, outside the \
                     {width}×{height} image (columns 0..{width}, rows 0..{height}); choose \
                     x + w ≤ {width} and y + h ≤ {height}",
                    r.x,
                    r.y,
                    r.w,
                    r.h,
                    r.x.saturating_add(r.w),
                    r.y.saturating_add(r.h)
                ),
            });
        }
        let mut crop_shape = image.shape().to_vec();
        crop_shape[axes.height] = r.h;
        crop_shape[axes.width] = r.w;
        Ok(Region {
            inner,
            image,
            axes,
            rect: r,
            crop_shape,
        })
    }

    /// The window of the rectangle in an item-shaped array (axes shifted by `offset`).
    fn window<'a>(&self, a: ArrayViewMutD<'a, f64>, offset: usize) -> ArrayViewMutD<'a, f64> {
        let mut a = a;
        a.slice_axis_inplace(
            Axis(self.axes.height + offset),
            Slice::from(self.rect.y..self.rect.y + self.rect.h),
        );
        a.slice_axis_inplace(
            Axis(self.axes.width + offset),
            Slice::from(self.rect.x..self.rect.x + self.rect.w),
        );
        a
    }

    /// The rectangle of the image: the input to explain.
    pub fn crop(&self) -> ArrayD<f64> {
        self.crop_of(self.image.view())
    }

    /// The rectangle of any image shaped like the full one.
    pub fn crop_of(&self, full: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let mut v = full;
        v.slice_axis_inplace(
            Axis(self.axes.height),
            Slice::from(self.rect.y..self.rect.y + self.rect.h),
        );
        v.slice_axis_inplace(
            Axis(self.axes.width),
            Slice::from(self.rect.x..self.rect.x + self.rect.w),
        );
        v.to_owned()
    }

    /// `full` (shaped like the image) with `crop` (shaped like the rectangle) pasted in.
    pub fn paste(&self, full: &ArrayD<f64>, crop: ArrayViewD<'_, f64>) -> ArrayD<f64> {
        let mut out = full.clone();
        self.window(out.view_mut(), 0).assign(&crop);
        out
    }

    /// The full image.
    pub fn image(&self) -> &ArrayD<f64> {
        &self.image
    }

    /// The rectangle.
    pub fn rect(&self) -> RegionKwargs {
        self.rect
    }
}

impl Model for Region {
    fn predict(&self, batch: ArrayViewD<'_, f64>) -> Result<ArrayD<f64>> {
        let shape = batch.shape();
        if shape.len() != self.crop_shape.len() + 1 || shape[1..] != self.crop_shape[..] {
            return Err(MaxiError::input(
                "batch",
                format!(
                    "the region takes batches [B, {:?}], got {shape:?}",
                    self.crop_shape
                ),
            ));
        }
        let b = shape[0];
        stacked(b, rows_per_call(self.image.len()), |start, end| {
            let rows = batch.slice_axis(Axis(0), Slice::from(start..end));
            let full = self.image.view().insert_axis(Axis(0));
            let mut shown = full
                .broadcast(
                    std::iter::once(end - start)
                        .chain(self.image.shape().iter().copied())
                        .collect::<Vec<_>>(),
                )
                .ok_or_else(|| MaxiError::Other("cannot repeat the image".into()))?
                .to_owned();
            self.window(shown.view_mut(), 1).assign(&rows);
            self.inner.predict(shown.view())
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn input_shape(&self) -> Option<Vec<usize>> {
        Some(self.crop_shape.clone())
    }
}
