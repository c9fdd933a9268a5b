//! The component registry: names → typed kwargs → built components.
//!
//! Built-in and statically linked plugins submit a [`StaticComponent`] through `inventory`
//! (see [`register_loss!`](crate::register_loss) and friends); dynamically loaded plugins add
//! [`Component`]s at run time with [`register`].

use std::any::Any;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};

use ndarray::ArrayViewD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Kind, MaxiError, Result};
use crate::gradient::Gradient;
use crate::kwargs::{Kwargs, ModelResolver};
use crate::loss::{Bounds, Loss};
use crate::model::Model;
use crate::optimizer::Optimizer;

/// A problem with one kwarg found by [`KwargsSpec::validate`].
#[derive(Debug, Clone)]
pub struct KwargProblem {
    /// The kwarg's name.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl KwargProblem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        KwargProblem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A component's typed kwargs: deserialised with `deny_unknown_fields` and defaults, described
/// by a JSON schema, and checked for valid ranges.
pub trait KwargsSpec:
    DeserializeOwned + Serialize + schemars::JsonSchema + Send + Sync + 'static
{
    /// Alternative spellings accepted by serde (`alias → canonical`), listed among accepted keys.
    const ALIASES: &'static [(&'static str, &'static str)] = &[];

    /// Range and consistency checks beyond the types.
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        Ok(())
    }
}

/// Kwargs that have been parsed and validated, with their concrete type erased.
pub trait ParsedKwargs: Send + Sync {
    /// The concrete kwargs struct.
    fn as_any(&self) -> &dyn Any;
    /// The kwargs with every default filled in.
    fn to_json(&self) -> Value;
    /// See [`KwargsSpec::validate`].
    fn validate(&self) -> std::result::Result<(), KwargProblem>;
}

impl<K: KwargsSpec> ParsedKwargs for K {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn validate(&self) -> std::result::Result<(), KwargProblem> {
        KwargsSpec::validate(self)
    }
}

/// What a loss is built from.
pub struct LossContext<'a> {
    /// The input to explain (item shape, no batch axis).
    pub x: ArrayViewD<'a, f64>,
    /// The model being explained (counted and checked).
    pub model: Arc<dyn Model>,
    /// Resolves model-valued kwargs.
    pub models: &'a ModelResolver,
}

/// What a gradient method is built from.
pub struct GradientContext<'a> {
    /// Item shape of the variable.
    pub shape: &'a [usize],
}

/// What an optimiser is built from.
pub struct OptimizerContext<'a> {
    /// Start point.
    pub start: ArrayViewD<'a, f64>,
    /// Box constraints.
    pub bounds: &'a Bounds,
}

/// What a model backend is built from.
pub struct ModelContext<'a> {
    /// Folder that relative paths are resolved against.
    pub base_dir: Option<&'a Path>,
}

impl ModelContext<'_> {
    /// `path` as given when absolute or when there is no base folder, else joined onto it.
    pub fn resolve_path(&self, path: &str) -> std::path::PathBuf {
        let given = Path::new(path);
        match self.base_dir {
            Some(base) if given.is_relative() => base.join(given),
            _ => given.to_path_buf(),
        }
    }
}

/// A loss component: typed kwargs and a constructor.
pub trait LossFactory: 'static {
    /// The kwargs struct.
    type Kwargs: KwargsSpec;
    /// Builds the loss for one run.
    fn build(kwargs: &Self::Kwargs, ctx: &LossContext<'_>) -> Result<Box<dyn Loss>>;
}

/// A gradient component: typed kwargs and a constructor.
pub trait GradientFactory: 'static {
    /// The kwargs struct.
    type Kwargs: KwargsSpec;
    /// Builds the gradient method for one run.
    fn build(kwargs: &Self::Kwargs, ctx: &GradientContext<'_>) -> Result<Box<dyn Gradient>>;
}

/// An optimiser component: typed kwargs and a constructor.
pub trait OptimizerFactory: 'static {
    /// The kwargs struct.
    type Kwargs: KwargsSpec;
    /// Builds the optimiser for one run.
    fn build(kwargs: &Self::Kwargs, ctx: &OptimizerContext<'_>) -> Result<Box<dyn Optimizer>>;
}

/// A model backend component: typed kwargs and a constructor.
pub trait ModelFactory: 'static {
    /// The kwargs struct.
    type Kwargs: KwargsSpec;
    /// File extensions (without dot) this backend opens by default.
    const EXTENSIONS: &'static [&'static str] = &[];
    /// Loads the model.
    fn build(kwargs: &Self::Kwargs, ctx: &ModelContext<'_>) -> Result<Arc<dyn Model>>;
}

/// Deserialises kwargs into a typed, validated value.
pub type ParseFn = Arc<
    dyn Fn(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> std::result::Result<Box<dyn ParsedKwargs>, erased_serde::Error>
        + Send
        + Sync,
>;

/// Builds a loss from parsed kwargs.
pub type LossBuildFn =
    Arc<dyn Fn(&dyn ParsedKwargs, &LossContext<'_>) -> Result<Box<dyn Loss>> + Send + Sync>;
/// Builds a gradient method from parsed kwargs.
pub type GradientBuildFn =
    Arc<dyn Fn(&dyn ParsedKwargs, &GradientContext<'_>) -> Result<Box<dyn Gradient>> + Send + Sync>;
/// Builds an optimiser from parsed kwargs.
pub type OptimizerBuildFn = Arc<
    dyn Fn(&dyn ParsedKwargs, &OptimizerContext<'_>) -> Result<Box<dyn Optimizer>> + Send + Sync,
>;
/// Builds a model from parsed kwargs.
pub type ModelBuildFn =
    Arc<dyn Fn(&dyn ParsedKwargs, &ModelContext<'_>) -> Result<Arc<dyn Model>> + Send + Sync>;

/// The constructor of a component, by kind.
#[derive(Clone)]
pub enum Builder {
    /// A loss.
    Loss(LossBuildFn),
    /// A gradient method.
    Gradient(GradientBuildFn),
    /// An optimiser.
    Optimizer(OptimizerBuildFn),
    /// A model backend, with the file extensions it opens.
    Model(ModelBuildFn, Vec<String>),
}

impl Builder {
    fn kind(&self) -> Kind {
        match self {
            Builder::Loss(_) => Kind::Loss,
            Builder::Gradient(_) => Kind::Gradient,
            Builder::Optimizer(_) => Kind::Optimizer,
            Builder::Model(..) => Kind::Model,
        }
    }
}

/// One registered component: its names, documentation, kwargs schema and constructor.
#[derive(Clone)]
pub struct Component {
    /// Canonical name.
    pub name: String,
    /// Other accepted names (e.g. MAXi's class names).
    pub aliases: Vec<String>,
    /// One-line description.
    pub doc: String,
    /// JSON schema of the kwargs (types, defaults, docs).
    pub schema: Value,
    /// Alternative kwarg spellings (`alias → canonical`).
    pub kwarg_aliases: Vec<(String, String)>,
    /// Where the component comes from (crate or plugin file).
    pub origin: String,
    parse: ParseFn,
    builder: Builder,
}

fn schema_of<K: KwargsSpec>() -> Value {
    serde_json::to_value(schemars::schema_for!(K)).unwrap_or(Value::Null)
}

fn parse_typed<K: KwargsSpec>(
    de: &mut dyn erased_serde::Deserializer<'_>,
) -> std::result::Result<Box<dyn ParsedKwargs>, erased_serde::Error> {
    let k: K = erased_serde::deserialize(de)?;
    Ok(Box::new(k))
}

fn downcast<'a, K: 'static>(kw: &'a dyn ParsedKwargs, name: &str) -> Result<&'a K> {
    kw.as_any().downcast_ref::<K>().ok_or_else(|| {
        MaxiError::Other(format!("internal: kwargs of `{name}` have the wrong type"))
    })
}

impl Component {
    fn typed<K: KwargsSpec>(name: &str, aliases: &[&str], doc: &str, builder: Builder) -> Self {
        Component {
            name: name.to_string(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            doc: doc.to_string(),
            schema: schema_of::<K>(),
            kwarg_aliases: K::ALIASES
                .iter()
                .map(|(a, c)| (a.to_string(), c.to_string()))
                .collect(),
            origin: "built-in".to_string(),
            parse: Arc::new(parse_typed::<K>),
            builder,
        }
    }

    /// A loss component from its factory.
    pub fn loss<F: LossFactory>(name: &'static str, aliases: &[&str], doc: &str) -> Self {
        let build: LossBuildFn =
            Arc::new(move |kw, ctx| F::build(downcast::<F::Kwargs>(kw, name)?, ctx));
        Self::typed::<F::Kwargs>(name, aliases, doc, Builder::Loss(build))
    }

    /// A gradient component from its factory.
    pub fn gradient<F: GradientFactory>(name: &'static str, aliases: &[&str], doc: &str) -> Self {
        let build: GradientBuildFn =
            Arc::new(move |kw, ctx| F::build(downcast::<F::Kwargs>(kw, name)?, ctx));
        Self::typed::<F::Kwargs>(name, aliases, doc, Builder::Gradient(build))
    }

    /// An optimiser component from its factory.
    pub fn optimizer<F: OptimizerFactory>(name: &'static str, aliases: &[&str], doc: &str) -> Self {
        let build: OptimizerBuildFn =
            Arc::new(move |kw, ctx| F::build(downcast::<F::Kwargs>(kw, name)?, ctx));
        Self::typed::<F::Kwargs>(name, aliases, doc, Builder::Optimizer(build))
    }

    /// A model backend component from its factory.
    pub fn model<F: ModelFactory>(name: &'static str, aliases: &[&str], doc: &str) -> Self {
        let build: ModelBuildFn =
            Arc::new(move |kw, ctx| F::build(downcast::<F::Kwargs>(kw, name)?, ctx));
        let exts = F::EXTENSIONS.iter().map(|s| s.to_string()).collect();
        Self::typed::<F::Kwargs>(name, aliases, doc, Builder::Model(build, exts))
    }

    /// A component assembled by hand (used by the dynamic plugin host).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: String,
        aliases: Vec<String>,
        doc: String,
        schema: Value,
        origin: String,
        parse: ParseFn,
        builder: Builder,
    ) -> Self {
        Component {
            name,
            aliases,
            doc,
            schema,
            kwarg_aliases: Vec::new(),
            origin,
            parse,
            builder,
        }
    }

    /// Sets where the component comes from.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = origin.into();
        self
    }

    /// The component's kind.
    pub fn kind(&self) -> Kind {
        self.builder.kind()
    }

    /// The constructor.
    pub fn builder(&self) -> &Builder {
        &self.builder
    }

    /// Every kwarg name accepted (schema properties and aliases), sorted.
    pub fn accepted_kwargs(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        keys.extend(self.kwarg_aliases.iter().map(|(a, _)| a.clone()));
        keys.sort();
        keys.dedup();
        keys
    }

    /// Parses and validates kwargs: unknown keys, wrong types and invalid values are errors that
    /// name the kwarg.
    pub fn parse_kwargs(&self, kwargs: &Kwargs) -> Result<Box<dyn ParsedKwargs>> {
        let has_props = self
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some();
        if has_props || self.schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            let accepted = self.accepted_kwargs();
            for key in kwargs.values().keys() {
                if !accepted.contains(key) {
                    return Err(MaxiError::UnknownKwarg {
                        kind: self.kind(),
                        component: self.name.clone(),
                        key: key.clone(),
                        accepted,
                    });
                }
            }
        }
        let value = Value::Object(kwargs.values().clone());
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(&value, &mut track);
        let mut erased = <dyn erased_serde::Deserializer>::erase(de);
        let parsed = (self.parse)(&mut erased);
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                let path = track.path().to_string();
                let message = e.to_string();
                let field = if path.is_empty() || path == "." {
                    field_from_message(&message).unwrap_or_else(|| "?".to_string())
                } else {
                    path
                };
                return Err(MaxiError::InvalidKwarg {
                    kind: self.kind(),
                    component: self.name.clone(),
                    field,
                    message,
                });
            }
        };
        parsed.validate().map_err(|p| MaxiError::InvalidKwarg {
            kind: self.kind(),
            component: self.name.clone(),
            field: p.field,
            message: p.message,
        })?;
        Ok(parsed)
    }

    fn matches(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }

    fn all_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// serde reports a missing field as "missing field `x`" with an empty path.
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_string())
}

/// A component submitted at link time through `inventory`.
pub struct StaticComponent {
    /// Builds the component record.
    pub make: fn() -> Component,
}

inventory::collect!(StaticComponent);

/// A set of components, looked up by kind and name.
#[derive(Clone, Default)]
pub struct Registry {
    components: Vec<Arc<Component>>,
}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every component linked into this binary through `inventory`.
    pub fn from_inventory() -> Result<Self> {
        let mut r = Self::empty();
        let mut statics: Vec<Component> = inventory::iter::<StaticComponent>
            .into_iter()
            .map(|s| (s.make)())
            .collect();
        statics.sort_by(|a, b| (a.kind(), &a.name).cmp(&(b.kind(), &b.name)));
        for c in statics {
            r.add(c)?;
        }
        Ok(r)
    }

    /// Adds a component; a name or alias already taken within its kind is an error.
    pub fn add(&mut self, c: Component) -> Result<()> {
        for existing in self.components.iter().filter(|e| e.kind() == c.kind()) {
            if let Some(name) = c.all_names().find(|n| existing.matches(n)) {
                return Err(MaxiError::DuplicateComponent {
                    kind: c.kind(),
                    name: name.to_string(),
                    first: existing.origin.clone(),
                    second: c.origin.clone(),
                });
            }
        }
        self.components.push(Arc::new(c));
        Ok(())
    }

    /// Components of one kind (or all), in registration order.
    pub fn components(&self, kind: Option<Kind>) -> Vec<Arc<Component>> {
        self.components
            .iter()
            .filter(|c| kind.is_none_or(|k| c.kind() == k))
            .cloned()
            .collect()
    }

    /// The component of `kind` called `name` (canonical name or alias; case-insensitive when
    /// unambiguous).
    pub fn get(&self, kind: Kind, name: &str) -> Result<Arc<Component>> {
        let of_kind = || self.components.iter().filter(move |c| c.kind() == kind);
        if let Some(c) = of_kind().find(|c| c.matches(name)) {
            return Ok(c.clone());
        }
        let lower = name.to_lowercase();
        let ci: Vec<_> = of_kind()
            .filter(|c| c.all_names().any(|n| n.to_lowercase() == lower))
            .collect();
        if ci.len() == 1 {
            return Ok(ci[0].clone());
        }
        let mut known: Vec<(f64, String)> = of_kind()
            .map(|c| {
                let score = c
                    .all_names()
                    .map(|n| strsim::normalized_damerau_levenshtein(&n.to_lowercase(), &lower))
                    .fold(0.0, f64::max);
                let label = if c.aliases.is_empty() {
                    c.name.clone()
                } else {
                    format!("{} (alias {})", c.name, c.aliases.join(", "))
                };
                (score, label)
            })
            .collect();
        known.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Err(MaxiError::UnknownComponent {
            kind,
            name: name.to_string(),
            known: known.into_iter().map(|(_, l)| l).collect(),
        })
    }

    /// The model backend that opens files with this extension.
    pub fn model_for_extension(&self, ext: &str) -> Option<Arc<Component>> {
        self.components
            .iter()
            .find(|c| match &c.builder {
                Builder::Model(_, exts) => exts.iter().any(|e| e.eq_ignore_ascii_case(ext)),
                _ => false,
            })
            .cloned()
    }
}

static GLOBAL: OnceLock<std::result::Result<RwLock<Registry>, MaxiError>> = OnceLock::new();

fn global_lock() -> Result<&'static RwLock<Registry>> {
    GLOBAL
        .get_or_init(|| Registry::from_inventory().map(RwLock::new))
        .as_ref()
        .map_err(Clone::clone)
}

/// The process-wide registry: every linked component plus those added with [`register`].
pub fn global() -> Result<RwLockReadGuard<'static, Registry>> {
    global_lock()?
        .read()
        .map_err(|_| MaxiError::Other("component registry lock poisoned".into()))
}

/// Adds a component to the process-wide registry.
pub fn register(c: Component) -> Result<()> {
    global_lock()?
        .write()
        .map_err(|_| MaxiError::Other("component registry lock poisoned".into()))?
        .add(c)
}

/// Loads a model file with the backend registered for its extension.
pub fn load_model_file(path: &Path) -> Result<Arc<dyn Model>> {
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(MaxiError::ModelLoad {
            path: shown,
            message: "no such file; check the path (relative paths in a config are relative to the config file)".into(),
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_string();
    let registry = global()?;
    let component = registry.model_for_extension(&ext).ok_or_else(|| {
        let backends: Vec<String> = registry
            .components(Some(Kind::Model))
            .iter()
            .map(|c| c.name.clone())
            .collect();
        MaxiError::ModelLoad {
            path: shown.clone(),
            message: format!(
                "no model backend opens `.{ext}` files (backends: {}); link one, e.g. the `maxi` crate for ONNX",
                if backends.is_empty() { "none".to_string() } else { backends.join(", ") }
            ),
        }
    })?;
    drop(registry);
    let kwargs = Kwargs::new().set("path", path.display().to_string())?;
    let parsed = component.parse_kwargs(&kwargs)?;
    match component.builder() {
        Builder::Model(build, _) => build(parsed.as_ref(), &ModelContext { base_dir: None }),
        _ => Err(MaxiError::Other(
            "internal: model backend has a non-model builder".into(),
        )),
    }
}

/// Registers a loss factory under a name: `register_loss!(MyLoss, "name", aliases = ["Alias"], doc = "...")`.
#[macro_export]
macro_rules! register_loss {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(loss, $factory, $name, [$($alias),*], $doc);
    };
}

/// Registers a gradient factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_gradient {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(gradient, $factory, $name, [$($alias),*], $doc);
    };
}

/// Registers an optimiser factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_optimizer {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(optimizer, $factory, $name, [$($alias),*], $doc);
    };
}

/// Registers a model backend factory under a name (see [`register_loss!`]).
#[macro_export]
macro_rules! register_model {
    ($factory:ty, $name:literal, aliases = [$($alias:literal),* $(,)?], doc = $doc:literal $(,)?) => {
        $crate::__register!(model, $factory, $name, [$($alias),*], $doc);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($kind:ident, $factory:ty, $name:literal, [$($alias:literal),*], $doc:literal) => {
        const _: () = {
            fn __maxi_make() -> $crate::registry::Component {
                $crate::registry::Component::$kind::<$factory>($name, &[$($alias),*], $doc)
                    .with_origin(concat!("crate ", env!("CARGO_PKG_NAME")))
            }
            $crate::inventory::submit! {
                $crate::registry::StaticComponent { make: __maxi_make }
            }
        };
    };
}
