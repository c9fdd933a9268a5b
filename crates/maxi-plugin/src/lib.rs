//! SDK for third-party maxi components.
//!
//! A plugin author writes a component with the **same** traits and kwargs structs as maxi's
//! built-ins ([`Gradient`], [`Factory`]`<`[`GradientKind`]`>`, [`KwargsSpec`]), then ships it in
//! one of two ways:
//!
//! - **Static** (a Rust crate linked into the host): register it with
//!   [`register_gradient!`] (through `inventory`, like the built-ins). A host that depends on the
//!   crate names it once so the linker keeps the registration:
//!   `use your_plugin as _;`.
//! - **Dynamic** (a `cdylib` loaded at run time with `maxi --plugin lib….so`): export it with
//!   [`export_plugin!`], which generates the `maxi_plugin_entry` function of the versioned C ABI
//!   described in [`abi`].
//!
//! ```ignore
//! use maxi_plugin::prelude::*;
//!
//! pub struct MyFactory; // impl Factory<GradientKind> for MyFactory { ... }
//!
//! // dynamic: `crate-type = ["cdylib"]`
//! maxi_plugin::export_plugin! {
//!     gradient(MyFactory, "my_gradient", doc = "What it does");
//! }
//! // static: linked into a host that says `use my_plugin as _;`
//! maxi_plugin::register_gradient!(MyFactory, "my_gradient", aliases = [], doc = "What it does");
//! ```
//!
//! Inside a dynamic plugin, a gradient method receives an ordinary [`Problem`]: its loss forwards
//! every batched evaluation to the host through the ABI's loss callback, so the host keeps its
//! batching and parallelism, and the random generator is seeded from the host's run generator,
//! so runs stay reproducible. The problem's box comes from the host's loss; its start point is
//! zeros and it has no analytic gradient.
//!
//! The derive macros need the paths of the re-exported crates when the plugin does not depend
//! on `serde` and `schemars` itself:
//! `#[serde(crate = "maxi_plugin::serde")]` and `#[schemars(crate = "maxi_plugin::schemars")]`.
#![warn(missing_docs)]

pub mod abi;
pub mod export;

pub use maxi_core;
pub use maxi_core::{
    Bounds, Estimate, Factory, Gradient, GradientContext, GradientKind, Kind, KwargProblem,
    KwargsSpec, Loss, LossContext, LossKind, MaxiError, MaxiRng, Optimizer, OptimizerContext,
    OptimizerKind, Problem, Regularization, Request, Result, Valid, register_gradient,
    register_loss, register_optimizer, rng_from_seed,
};
pub use ndarray;
pub use rand;
pub use rand_distr;
pub use schemars;
pub use serde;
pub use serde_json;

pub use abi::MAXI_PLUGIN_ABI_VERSION;

/// Everything a component author usually needs, in one `use maxi_plugin::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Bounds, Estimate, Factory, Gradient, GradientContext, GradientKind, Kind, KwargProblem,
        KwargsSpec, Loss, LossContext, LossKind, MaxiError, MaxiRng, Optimizer, OptimizerContext,
        OptimizerKind, Problem, Regularization, Request, Result, Valid, rng_from_seed,
    };
    pub use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayViewD, Axis, IxDyn};
    pub use rand::{Rng, RngExt};
    pub use rand_distr::{Distribution, StandardNormal};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Exports components from a `cdylib` over the C ABI: generates
/// `#[no_mangle] extern "C" fn maxi_plugin_entry() -> *const abi::PluginDescriptor`.
///
/// One entry per component, `kind(Factory, "name", aliases = [..], doc = "..")`, separated by
/// `;` (`aliases` is optional). Supported kinds: `gradient`.
///
/// ```ignore
/// maxi_plugin::export_plugin! {
///     gradient(UrvTutorialFactory, "urv_tutorial", aliases = ["UrvTutorial"], doc = "...");
/// }
/// ```
///
/// Use it once per library. A crate that is also linked statically into hosts should put it
/// behind a cargo feature: two statically linked plugins would both define the symbol.
#[macro_export]
macro_rules! export_plugin {
    ($($kind:ident ( $factory:ty, $name:expr $(, aliases = [$($alias:expr),* $(,)?])?, doc = $doc:expr $(,)? ));+ $(;)?) => {
        /// The entry point of this maxi plugin (see `maxi_plugin::abi`).
        #[unsafe(no_mangle)]
        pub extern "C" fn maxi_plugin_entry() -> *const $crate::abi::PluginDescriptor {
            static DESCRIPTOR: $crate::export::DescriptorCell = $crate::export::DescriptorCell::new();
            DESCRIPTOR.get_or_build(|| {
                $crate::export::PluginExport::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
                    $(.$kind::<$factory>($name, &[$($($alias),*)?], $doc))+
            })
        }
    };
}
