//! maxi explains the predictions of black-box classifiers by optimisation: pertinent positives
//! and negatives (CEM) found with zero-order gradient estimates (URV, USRV) and
//! exponentiated-gradient optimisers (AO-ExpGrad, AdaExpGrad). Any model that can be queried can
//! be explained: an ONNX file, a Rust closure, a plugin.
//!
//! This facade re-exports [`maxi_core`] and links every built-in component, so that
//! `maxi::registry::global()` finds them by name:
//!
//! ```no_run
//! use maxi::{ExplanationGenerator, Kwargs};
//! # fn main() -> maxi::Result<()> {
//! let generator = ExplanationGenerator::builder()
//!     .loss("cem", Kwargs::try_from(maxi::serde_json::json!({"mode": "PP", "c": 1.0}))?)
//!     .optimizer("ao_exp_grad", Kwargs::try_from(maxi::serde_json::json!({"l1": 0.1}))?)
//!     .gradient("urv", Kwargs::try_from(maxi::serde_json::json!({"sample_num": 100}))?)
//!     .num_iter(200)
//!     .build()?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub use maxi_core::*;
pub use maxi_onnx::OnnxModel;
#[cfg(feature = "onnxruntime")]
pub use maxi_onnxruntime::OrtModel;

pub mod bundled;
pub mod mnist;
pub mod summary;

// inventory drops the registrations of crates nothing names: name each built-in once, here.
use maxi_gradient_lime as _;
use maxi_gradient_urv as _;
use maxi_gradient_usrv as _;
use maxi_loss_cem as _;
use maxi_loss_lime as _;
use maxi_onnx as _;
#[cfg(feature = "onnxruntime")]
use maxi_onnxruntime as _;
use maxi_optimizer_ada_exp_grad as _;
use maxi_optimizer_ada_exp_grad_p as _;
use maxi_optimizer_ao_exp_grad as _;
use maxi_optimizer_spectral_ao_exp_grad as _;
use maxi_segmentation_grid as _;
use maxi_segmentation_quickshift as _;
use maxi_segmentation_slic as _;
use maxi_segmentation_watershed as _;

/// The built-in components, for direct (non-registry) use.
pub mod components {
    pub use maxi_gradient_urv::{Urv, UrvKwargs};
    pub use maxi_gradient_usrv::{Usrv, UsrvKwargs};
    pub use maxi_loss_cem::{CemKwargs, CemLoss, CemMode};
    pub use maxi_loss_lime::{LimeKwargs, LimeLoss, Sampling};
    pub use maxi_optimizer_ada_exp_grad::{AdaExpGrad, AdaExpGradKwargs};
    pub use maxi_optimizer_ada_exp_grad_p::{AdaExpGradP, AdaExpGradPKwargs};
    pub use maxi_optimizer_ao_exp_grad::{AoExpGrad, AoExpGradKwargs};
    pub use maxi_optimizer_spectral_ao_exp_grad::{SpectralAoExpGrad, SpectralAoExpGradKwargs};
}
