//! Superpixels: the [`Segmenter`] contract of segmentation components, the checked label map
//! ([`Segmentation`]) and the variable space of one weight per segment ([`SegmentSpace`]).
//!
//! A segmentation turns the input image `[H, W, C]` into a label map `[H, W]` with labels
//! `0..n`; the optimiser then works on `n` weights, and [`SegmentSpace::expand`] paints each
//! segment's pixels (every channel) with its weight — MAXi's `generate_img_from_weight_vector`
//! once a loss multiplies that field with the input (see the `cem` and `lime` losses).

use ndarray::{Array2, ArrayD, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMutD, Ix3, IxDyn};

use crate::error::{MaxiError, Result};
use crate::space::{Reduce, Unit, VariableSpace};

/// A segmentation component: an image `[H, W, C]` (channels last, C = 1 or 3) → a label map
/// `[H, W]` with labels `0..n`.
pub trait Segmenter: Send + Sync {
    /// Segments one image.
    fn segment(&self, image: ArrayView3<'_, f64>) -> Result<Array2<i32>>;
}

/// An input seen as an image `[H, W, C]`: `[H, W]` gets one channel, `[H, W, C]` is taken as
/// it is (channels last); other shapes are an error naming the fix.
pub fn image_view<'a>(x: &'a ArrayViewD<'a, f64>) -> Result<ArrayView3<'a, f64>> {
    let shape = x.shape();
    let bad = || {
        MaxiError::input(
            "x",
            format!(
                "a segmentation needs an image input [H, W] or [H, W, C] (channels last); got shape {shape:?}; remove [segmentation] or give the model channels-last images (e.g. [model] preprocess with a layout step)"
            ),
        )
    };
    match shape {
        [h, w] => x
            .view()
            .into_shape_with_order((*h, *w, 1))
            .map_err(|_| bad()),
        [_, _, _] => x.view().into_dimensionality::<Ix3>().map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A checked label map: labels `0..n` all used, `2 ≤ n ≤ pixels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    labels: Array2<i32>,
    count: usize,
}

impl Segmentation {
    /// Checks a label map produced by `segmenter` (named in messages) for an `[H, W]` image.
    pub fn new(labels: Array2<i32>, height: usize, width: usize, segmenter: &str) -> Result<Self> {
        let err = |m: String| MaxiError::InvalidSetting {
            name: "segmentation".into(),
            message: format!("segmentation `{segmenter}` {m}"),
        };
        if labels.dim() != (height, width) {
            return Err(err(format!(
                "returned a label map of shape {:?} for a {height}×{width} image; a segmenter must label every pixel",
                labels.shape()
            )));
        }
        let pixels = height * width;
        let mut max = -1i64;
        for ((r, c), &l) in labels.indexed_iter() {
            if l < 0 {
                return Err(err(format!(
                    "gave pixel ({r}, {c}) the negative label {l}; labels must be 0..n"
                )));
            }
            max = max.max(i64::from(l));
        }
        let count = usize::try_from(max + 1).unwrap_or(usize::MAX);
        if count > pixels {
            return Err(err(format!(
                "yields {count} segments (largest label {max}) but the image has only {pixels} pixels; a segment needs at least one pixel"
            )));
        }
        let mut used = vec![false; count];
        for &l in &labels {
            used[l as usize] = true;
        }
        if let Some(missing) = used.iter().position(|u| !u) {
            return Err(err(format!(
                "leaves label {missing} unused (labels must be 0..{count}, each used)"
            )));
        }
        if count < 2 {
            return Err(err(format!(
                "yields a single segment on this {height}×{width} image, so an explanation could say nothing; use smaller segments (e.g. slic region_size, grid cell_size) or another segmentation"
            )));
        }
        Ok(Segmentation { labels, count })
    }

    /// The label map `[H, W]`.
    pub fn labels(&self) -> ArrayView2<'_, i32> {
        self.labels.view()
    }

    /// Number of segments `n`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Pixels per segment.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.count];
        for &l in &self.labels {
            sizes[l as usize] += 1;
        }
        sizes
    }
}

/// One weight per segment: the variable is `[n]`, the input `[H, W, ...]` whose pixels take
/// their segment's weight in every channel.
#[derive(Debug, Clone)]
pub struct SegmentSpace {
    segmentation: Segmentation,
    /// Label of each pixel, row-major.
    flat: Vec<usize>,
    shape: [usize; 1],
    input_shape: Vec<usize>,
    /// Entries per pixel (channels).
    channels: usize,
    sizes: Vec<usize>,
}

impl SegmentSpace {
    /// The space of `segmentation` over inputs of `input_shape` (`[H, W]` or `[H, W, C]` with
    /// the label map's `H, W`).
    pub fn new(segmentation: Segmentation, input_shape: &[usize]) -> Result<Self> {
        let (h, w) = segmentation.labels.dim();
        if input_shape.len() < 2 || input_shape[0] != h || input_shape[1] != w {
            return Err(MaxiError::input(
                "x",
                format!(
                    "shape {input_shape:?} does not match the {h}×{w} label map of the segmentation"
                ),
            ));
        }
        let channels = input_shape[2..].iter().product();
        let flat = segmentation.labels.iter().map(|&l| l as usize).collect();
        let sizes = segmentation.sizes();
        Ok(SegmentSpace {
            shape: [segmentation.count],
            flat,
            input_shape: input_shape.to_vec(),
            channels,
            sizes,
            segmentation,
        })
    }

    /// The segmentation.
    pub fn segmentation(&self) -> &Segmentation {
        &self.segmentation
    }
}

impl VariableSpace for SegmentSpace {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    fn unit(&self) -> Unit {
        Unit::Segment
    }
    fn segments(&self) -> Option<&Segmentation> {
        Some(&self.segmentation)
    }
    fn expand(&self, v: ArrayViewD<'_, f64>, mut out: ArrayViewMutD<'_, f64>) {
        let n = self.shape[0];
        let c = self.channels;
        let item = self.flat.len() * c;
        let b = v.shape().first().copied().unwrap_or(0);
        let v = v.as_standard_layout();
        let Some(vs) = v.as_slice() else { return };
        let fill = |row: &[f64], dst: &mut [f64]| {
            for (px, &l) in dst.chunks_exact_mut(c.max(1)).zip(&self.flat) {
                px.fill(row[l]);
            }
        };
        match out.as_slice_mut() {
            Some(os) => {
                for (row, dst) in vs.chunks_exact(n).zip(os.chunks_exact_mut(item)) {
                    fill(row, dst);
                }
            }
            None => {
                let mut tmp = vec![0.0; item];
                for (i, row) in vs.chunks_exact(n).enumerate().take(b) {
                    fill(row, &mut tmp);
                    let mut dst = out.index_axis_mut(ndarray::Axis(0), i);
                    for (d, s) in dst.iter_mut().zip(&tmp) {
                        *d = *s;
                    }
                }
            }
        }
    }
    fn reduce(&self, field: ArrayViewD<'_, f64>, how: Reduce) -> ArrayD<f64> {
        let n = self.shape[0];
        let init = match how {
            Reduce::Mean | Reduce::Sum => 0.0,
            Reduce::Min => f64::INFINITY,
            Reduce::Max => f64::NEG_INFINITY,
        };
        let mut acc = vec![init; n];
        let c = self.channels.max(1);
        for (i, &v) in field.iter().enumerate() {
            let l = self.flat[(i / c).min(self.flat.len() - 1)];
            acc[l] = match how {
                Reduce::Mean | Reduce::Sum => acc[l] + v,
                Reduce::Min => acc[l].min(v),
                Reduce::Max => acc[l].max(v),
            };
        }
        if how == Reduce::Mean {
            for (a, s) in acc.iter_mut().zip(&self.sizes) {
                *a /= (s * c) as f64;
            }
        }
        ArrayD::from_shape_vec(IxDyn(&[n]), acc).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&[n])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    fn quadrants() -> Segmentation {
        let labels = Array2::from_shape_fn((4, 6), |(r, c)| ((r / 2) * 2 + c / 3) as i32);
        Segmentation::new(labels, 4, 6, "test").unwrap()
    }

    #[test]
    fn weights_to_image_and_back() {
        let space = SegmentSpace::new(quadrants(), &[4, 6, 3]).unwrap();
        assert_eq!(space.shape(), &[4]);
        assert_eq!(space.unit(), Unit::Segment);
        let v = array![[0.5, -1.0, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0]].into_dyn();
        let mut img = ArrayD::zeros(IxDyn(&[2, 4, 6, 3]));
        space.expand(v.view(), img.view_mut());
        // pixel (3, 1) is in segment 2, pixel (0, 5) in segment 1, in every channel
        for k in 0..3 {
            assert_eq!(img[[0, 3, 1, k]], 2.0);
            assert_eq!(img[[0, 0, 5, k]], -1.0);
            assert_eq!(img[[1, 1, 4, k]], 2.0);
        }
        // image → weights: the mean over each segment's pixels gives the weights back
        for b in 0..2 {
            let back = space.reduce(img.index_axis(ndarray::Axis(0), b), Reduce::Mean);
            assert_eq!(back, v.index_axis(ndarray::Axis(0), b));
        }
        let field = Array3::from_shape_fn((4, 6, 3), |(r, c, k)| (r * 18 + c * 3 + k) as f64);
        let sum = space.reduce(field.view().into_dyn(), Reduce::Sum);
        let mean = space.reduce(field.view().into_dyn(), Reduce::Mean);
        assert_eq!(sum, mean * 18.0);
        let lo = space.reduce(field.view().into_dyn(), Reduce::Min);
        let hi = space.reduce(field.view().into_dyn(), Reduce::Max);
        assert_eq!(lo.as_slice().unwrap(), &[0.0, 9.0, 36.0, 45.0]);
        assert_eq!(hi.as_slice().unwrap(), &[26.0, 35.0, 62.0, 71.0]);
    }

    #[test]
    fn grey_inputs_and_views() {
        let space = SegmentSpace::new(quadrants(), &[4, 6]).unwrap();
        let v = array![[1.0, 2.0, 3.0, 4.0]].into_dyn();
        let mut img = ArrayD::zeros(IxDyn(&[1, 4, 6]));
        space.expand(v.view(), img.view_mut());
        assert_eq!(img[[0, 3, 5]], 4.0);
        let x = ArrayD::<f64>::zeros(IxDyn(&[4, 6]));
        let xv = x.view();
        assert_eq!(image_view(&xv).unwrap().dim(), (4, 6, 1));
        let bad = ArrayD::<f64>::zeros(IxDyn(&[784]));
        let bv = bad.view();
        assert!(image_view(&bv).unwrap_err().to_string().contains("[H, W]"));
        assert!(SegmentSpace::new(quadrants(), &[5, 6, 3]).is_err());
    }

    #[test]
    fn bad_label_maps_are_named() {
        let one = Array2::<i32>::zeros((3, 3));
        let e = Segmentation::new(one, 3, 3, "slic")
            .unwrap_err()
            .to_string();
        assert!(e.contains("single segment"), "{e}");
        let too_many = array![[0, 1], [2, 7]];
        let e = Segmentation::new(too_many, 2, 2, "mine")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8 segments") && e.contains("only 4 pixels"),
            "{e}"
        );
        let gap = array![[0, 2], [2, 0]];
        let e = Segmentation::new(gap, 2, 2, "mine")
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 1 unused"), "{e}");
        let neg = array![[0, -1], [1, 0]];
        assert!(Segmentation::new(neg, 2, 2, "m").is_err());
        let e = Segmentation::new(array![[0, 1]], 2, 2, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("label every pixel"), "{e}");
    }
}
