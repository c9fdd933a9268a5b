//! The component registry: names → typed kwargs → built components, one table per kind.
//!
//! Built-in and statically linked plugins submit their entries through `inventory` (see
//! [`register_loss!`](crate::register_loss) and friends); dynamically loaded plugins add entries
//! at run time with [`update`]. The process-wide registry is shared as an immutable snapshot
//! ([`global`] returns an `Arc`): adding components swaps in a new snapshot, so holding one never
//! blocks anybody.

mod entry;
mod kinds;

use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

pub use entry::{Entry, Meta, ParseFailure, ParseFn};
pub use kinds::{
    ComponentKind, Factory, GradientContext, GradientKind, LossContext, LossKind, ModelContext,
    ModelKind, OptimizerContext, OptimizerKind, Prepared, SegmentationContext, SegmentationKind,
};

use crate::error::{Kind, MaxiError, Result};
use crate::kwargs::Kwargs;
use crate::model::Model;

/// The entries of one kind, in registration order.
pub struct Table<K: ComponentKind> {
    entries: Vec<Arc<Entry<K>>>,
}

impl<K: ComponentKind> Clone for Table<K> {
    fn clone(&self) -> Self {
        Table {
            entries: self.entries.clone(),
        }
    }
}

impl<K: ComponentKind> Default for Table<K> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
        }
    }
}

impl<K: ComponentKind> Table<K> {
    fn add(&mut self, entry: Entry<K>) -> Result<()> {
        for existing in &self.entries {
            if let Some(name) = entry.meta.all_names().find(|n| existing.meta.matches(n)) {
                return Err(MaxiError::DuplicateComponent {
                    kind: K::KIND,
                    name: name.to_string(),
                    first: existing.meta.origin.clone(),
                    second: entry.meta.origin.clone(),
                });
            }
        }
        self.entries.push(Arc::new(entry));
        Ok(())
    }

    /// The entries, in registration order.
    pub fn entries(&self) -> &[Arc<Entry<K>>] {
        &self.entries
    }

    /// The entry called `name` (canonical name or alias; case-insensitive when unambiguous).
    pub fn get(&self, name: &str) -> Result<Arc<Entry<K>>> {
        if let Some(e) = self.entries.iter().find(|e| e.meta.matches(name)) {
            return Ok(e.clone());
        }
        let lower = name.to_lowercase();
        let ci: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.meta.all_names().any(|n| n.to_lowercase() == lower))
            .collect();
        if let [only] = ci.as_slice() {
            return Ok((*only).clone());
        }
        let mut known: Vec<(f64, String)> = self
            .entries
            .iter()
            .map(|e| {
                let score = e
                    .meta
                    .all_names()
                    .map(|n| strsim::normalized_damerau_levenshtein(&n.to_lowercase(), &lower))
                    .fold(0.0, f64::max);
                let label = if e.meta.aliases.is_empty() {
                    e.meta.name.clone()
                } else {
                    format!("{} (alias {})", e.meta.name, e.meta.aliases.join(", "))
                };
                (score, label)
            })
            .collect();
        known.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Err(MaxiError::UnknownComponent {
            kind: K::KIND,
            name: name.to_string(),
            known: known.into_iter().map(|(_, l)| l).collect(),
        })
    }
}

/// Selects a kind's table in a [`Registry`].
pub trait InRegistry: ComponentKind {
    /// The table of this kind.
    fn table(registry: &Registry) -> &Table<Self>;
    /// The table of this kind, to add to.
    fn table_mut(registry: &mut Registry) -> &mut Table<Self>;
}

macro_rules! tables {
    ($($kind:ident => $field:ident),+ $(,)?) => {
        /// A set of components, one typed table per kind.
        #[derive(Clone, Default)]
        pub struct Registry {
            $($field: Table<$kind>,)+
        }

        $(impl InRegistry for $kind {
            fn table(registry: &Registry) -> &Table<Self> {
                &registry.$field
            }
            fn table_mut(registry: &mut Registry) -> &mut Table<Self> {
                &mut registry.$field
            }
        })+

        /// An entry of any kind, as submitted for registration.
        pub enum AnyEntry {
            $(
                #[doc = concat!("An entry of kind `", stringify!($kind), "`.")]
                $kind(Entry<$kind>),
            )+
        }

        $(impl From<Entry<$kind>> for AnyEntry {
            fn from(e: Entry<$kind>) -> Self {
                AnyEntry::$kind(e)
            }
        })+

        impl AnyEntry {
            /// What the entry shows in listings and messages.
            pub fn meta(&self) -> &Meta {
                match self {
                    $(AnyEntry::$kind(e) => &e.meta,)+
                }
            }
        }

        impl Registry {
            /// Adds an entry of any kind; a name or alias already taken within its kind is an
            /// error.
            pub fn add(&mut self, entry: impl Into<AnyEntry>) -> Result<()> {
                match entry.into() {
                    $(AnyEntry::$kind(e) => self.$field.add(e),)+
                }
            }

            /// What every component of `kind` (or of every kind) shows, kinds in display order.
            pub fn metas(&self, kind: Option<Kind>) -> Vec<&Meta> {
                let mut all: Vec<&Meta> = Vec::new();
                $(all.extend(self.$field.entries.iter().map(|e| &e.meta));)+
                all.retain(|m| kind.is_none_or(|k| m.kind == k));
                all.sort_by_key(|m| Kind::ALL.iter().position(|k| *k == m.kind));
                all
            }
        }
    };
}

tables! {
    LossKind => losses,
    GradientKind => gradients,
    OptimizerKind => optimizers,
    ModelKind => models,
    SegmentationKind => segmentations,
}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every component linked into this binary through `inventory`.
    pub fn from_inventory() -> Result<Self> {
        let mut r = Self::empty();
        let mut statics: Vec<AnyEntry> = inventory::iter::<StaticComponent>
            .into_iter()
            .map(|s| (s.make)())
            .collect();
        // link order is not stable: sort, so listings and duplicate messages are
        statics
            .sort_by(|a, b| (a.meta().kind, &a.meta().name).cmp(&(b.meta().kind, &b.meta().name)));
        for e in statics {
            r.add(e)?;
        }
        Ok(r)
    }

    /// The table of kind `K`.
    pub fn table<K: InRegistry>(&self) -> &Table<K> {
        K::table(self)
    }

    /// The component of kind `K` called `name` (see [`Table::get`]).
    pub fn get<K: InRegistry>(&self, name: &str) -> Result<Arc<Entry<K>>> {
        K::table(self).get(name)
    }

    /// The model backend that opens files with this extension.
    pub fn model_for_extension(&self, ext: &str) -> Option<Arc<Entry<ModelKind>>> {
        self.models
            .entries
            .iter()
            .find(|e| {
                e.meta
                    .extensions
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(ext))
            })
            .cloned()
    }

    /// The model backend registered for `path`'s extension, or an error naming the file, the
    /// extension and the backends there are.
    pub fn model_backend_for(&self, path: &Path) -> Result<Arc<Entry<ModelKind>>> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_string();
        self.model_for_extension(&ext).ok_or_else(|| {
            let backends: Vec<&str> = self
                .models
                .entries
                .iter()
                .map(|e| e.meta.name.as_str())
                .collect();
            MaxiError::ModelLoad {
                path: path.display().to_string(),
                message: format!(
                    "no model backend opens `.{ext}` files (backends: {}); link one, e.g. the `maxi` crate",
                    if backends.is_empty() {
                        "none".to_string()
                    } else {
                        backends.join(", ")
                    }
                ),
            }
        })
    }

    /// Loads a model file with the backend registered for its extension.
    pub fn load_model_file(&self, path: &Path) -> Result<Arc<dyn Model>> {
        self.open_model(path, None, Kwargs::new())
    }

    /// Loads a model file with the backend called `backend` (else the one registered for its
    /// extension) and `kwargs` besides its `path`.
    pub fn open_model(
        &self,
        path: &Path,
        backend: Option<&str>,
        kwargs: Kwargs,
    ) -> Result<Arc<dyn Model>> {
        if !path.is_file() {
            return Err(MaxiError::ModelLoad {
                path: path.display().to_string(),
                message: "no such file; check the path (relative paths in a config are relative to the config file)".into(),
            });
        }
        let entry = match backend {
            Some(name) => self.get::<ModelKind>(name)?,
            None => self.model_backend_for(path)?,
        };
        let kwargs = kwargs.set("path", path.display().to_string())?;
        entry
            .prepare(&kwargs)?
            .build(&ModelContext { base_dir: None })
    }
}

/// A component submitted at link time through `inventory`.
pub struct StaticComponent {
    /// Builds the entry.
    pub make: fn() -> AnyEntry,
}

inventory::collect!(StaticComponent);

type Shared = RwLock<Arc<Registry>>;

static GLOBAL: OnceLock<std::result::Result<Shared, MaxiError>> = OnceLock::new();

fn shared() -> Result<&'static Shared> {
    GLOBAL
        .get_or_init(|| Registry::from_inventory().map(|r| RwLock::new(Arc::new(r))))
        .as_ref()
        .map_err(Clone::clone)
}

/// A snapshot of the process-wide registry: every linked component plus those added with
/// [`register`] or [`update`] so far. Holding it blocks nobody.
pub fn global() -> Result<Arc<Registry>> {
    let lock = shared()?;
    let guard = lock
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(guard.clone())
}

/// Changes the process-wide registry as one step: `change` works on a copy, which replaces the
/// registry only if `change` succeeds (so a plugin's components are added all or none).
pub fn update(change: impl FnOnce(&mut Registry) -> Result<()>) -> Result<()> {
    let lock = shared()?;
    let mut guard = lock
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut next = Registry::clone(&guard);
    change(&mut next)?;
    *guard = Arc::new(next);
    Ok(())
}

/// Adds an entry to the process-wide registry.
pub fn register(entry: impl Into<AnyEntry>) -> Result<()> {
    let entry = entry.into();
    update(|r| r.add(entry))
}

/// Loads a model file with the backend the process-wide registry has for its extension.
pub fn load_model_file(path: &Path) -> Result<Arc<dyn Model>> {
    global()?.load_model_file(path)
}

/// Registers a loss factory under a name:
/// `register_loss!(MyFactory, "name", aliases = ["Alias"], doc = "...")`.
#[macro_export]
macro_rules! register_loss {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(LossKind, $factory, $name, [$($alias),*], $doc, []);
    };
}

/// Registers a gradient factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_gradient {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(GradientKind, $factory, $name, [$($alias),*], $doc, []);
    };
}

/// Registers an optimiser factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_optimizer {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(OptimizerKind, $factory, $name, [$($alias),*], $doc, []);
    };
}

/// Registers a segmentation factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_segmentation {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(SegmentationKind, $factory, $name, [$($alias),*], $doc, []);
    };
}

/// Registers a model backend factory under a name, with the file extensions it opens by
/// default: `register_model!(F, "onnx", aliases = [], extensions = ["onnx"], doc = "...")`.
#[macro_export]
macro_rules! register_model {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], extensions = [$($ext:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(ModelKind, $factory, $name, [$($alias),*], $doc, [$($ext),*]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($kind:ident, $factory:ty, $name:literal, [$($alias:literal),*], $doc:literal, [$($ext:literal),*]) => {
        const _: () = {
            fn __maxi_make() -> $crate::registry::AnyEntry {
                $crate::registry::Entry::<$crate::registry::$kind>::of::<$factory>(
                    $name,
                    &[$($alias),*],
                    $doc,
                )
                .with_extensions(&[$($ext),*])
                .with_origin(concat!("crate ", env!("CARGO_PKG_NAME")))
                .into()
            }
            $crate::inventory::submit! {
                $crate::registry::StaticComponent { make: __maxi_make }
            }
        };
    };
}
