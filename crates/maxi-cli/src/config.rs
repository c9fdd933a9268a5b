//! Config files (TOML or JSON): `[generator]`, `[loss]`, `[optimizer]`, `[gradient]`, and the
//! optional `[model]`, `[input]`, `[search]` and `[segmentation]` tables.

use std::path::{Path, PathBuf};

use maxi::serde_json::{self, Map, Value};

use crate::error::{CliError, CliResult};

/// Top-level tables a config may hold.
pub const TABLES: [&str; 8] = [
    "generator",
    "loss",
    "optimizer",
    "gradient",
    "model",
    "input",
    "search",
    "segmentation",
];
/// Keys of `[generator]`.
pub const GENERATOR_KEYS: [&str; 3] = ["num_iter", "save_freq", "seed"];
/// Keys of `[input]`.
pub const INPUT_KEYS: [&str; 4] = ["path", "pixel_range", "resize", "crop"];

/// A component table: `name` plus that component's kwargs.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSpec {
    /// Registry name (canonical or alias).
    pub name: String,
    /// Everything else in the table.
    pub kwargs: Map<String, Value>,
}

/// `[generator]` settings; `None` leaves the generator's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorSpec {
    /// Optimiser updates.
    pub num_iter: Option<usize>,
    /// Savepoint period.
    pub save_freq: Option<usize>,
    /// Seed of the run.
    pub seed: Option<u64>,
}

/// `[model]`: backend, path and the backend's other kwargs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSpec {
    /// Registry name of a model backend; default: by the file's extension.
    pub backend: Option<String>,
    /// Model file, relative to the config file.
    pub path: Option<String>,
    /// The backend's other kwargs (e.g. `threads`).
    pub kwargs: Map<String, Value>,
}

/// `[input]`: what to explain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputSpec {
    /// A `.npy`/`.png` path relative to the config file, or `mnist:N`.
    pub path: Option<String>,
    /// Values that PNG pixels 0 and 255 map to.
    pub pixel_range: Option<[f64; 2]>,
    /// Resize and centre crop of photos (`resize`, `crop`).
    pub photo: crate::photo::PhotoOptions,
}

/// A parsed config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file, as given.
    pub file: PathBuf,
    /// The folder relative paths in the file are resolved against.
    pub dir: PathBuf,
    /// `[generator]`.
    pub generator: GeneratorSpec,
    /// `[loss]`.
    pub loss: ComponentSpec,
    /// `[optimizer]`.
    pub optimizer: ComponentSpec,
    /// `[gradient]`.
    pub gradient: ComponentSpec,
    /// `[model]`.
    pub model: ModelSpec,
    /// `[input]`.
    pub input: InputSpec,
    /// `[search]`: the search settings, checked when the generator is built.
    pub search: Map<String, Value>,
    /// `[segmentation]`: one variable per segment of this segmentation (optional).
    pub segmentation: Option<ComponentSpec>,
}

impl Config {
    /// Reads and checks a config file; the format follows the extension (`.toml`, `.json`).
    pub fn load(file: &Path) -> CliResult<Config> {
        let shown = file.display();
        let text = std::fs::read_to_string(file).map_err(|e| {
            CliError::usage(format!(
                "cannot read config {shown}: {e}; check the path given to --config"
            ))
        })?;
        Self::from_text(&text, file)
    }

    /// Parses and checks the text of the config `file` (read by the caller); the format
    /// follows the extension (`.toml`, `.json`).
    pub fn from_text(text: &str, file: &Path) -> CliResult<Config> {
        let shown = file.display();
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let value: Value = match ext.as_str() {
            "toml" => {
                let table: toml::Table = toml::from_str(text).map_err(|e| {
                    CliError::usage(format!(
                        "config {shown} is not valid TOML: {}",
                        e.to_string().trim_end()
                    ))
                })?;
                toml_to_json(table, &shown.to_string())?
            }
            "json" => serde_json::from_str(text)
                .map_err(|e| CliError::usage(format!("config {shown} is not valid JSON: {e}")))?,
            other => {
                return Err(CliError::usage(format!(
                    "config {shown}: unknown format `.{other}`; name the file *.toml or *.json"
                )));
            }
        };
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::from_value(value, file, dir)
    }

    /// Checks the parsed document of `file`.
    pub fn from_value(value: Value, file: &Path, dir: PathBuf) -> CliResult<Config> {
        let shown = file.display().to_string();
        let Value::Object(top) = value else {
            return Err(CliError::usage(format!(
                "config {shown} must be a table of tables ([generator], [loss], [optimizer], [gradient])"
            )));
        };
        for key in top.keys() {
            if !TABLES.contains(&key.as_str()) {
                return Err(CliError::usage(format!(
                    "unknown table `{key}` in config {shown}; known tables: {} (component kwargs go inside [loss], [optimizer] or [gradient])",
                    TABLES.join(", ")
                )));
            }
        }
        let table = |name: &str| -> CliResult<Map<String, Value>> {
            match top.get(name) {
                None => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(other) => Err(CliError::usage(format!(
                    "`{name}` in config {shown} must be a table ([{name}] with its keys), got {other}"
                ))),
            }
        };
        let generator = parse_generator(table("generator")?, &shown)?;
        let component = |kind: &str, example: &str| -> CliResult<ComponentSpec> {
            if !top.contains_key(kind) {
                return Err(CliError::usage(format!(
                    "config {shown} has no [{kind}] table; add one with name = \"{example}\" and its kwargs (see `maxi list --kind {kind}`)"
                )));
            }
            let mut kwargs = table(kind)?;
            let name = match kwargs.remove("name") {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                Some(other) => {
                    return Err(CliError::usage(format!(
                        "`name` in [{kind}] of {shown} must be a component name string (e.g. \"{example}\"), got {other}"
                    )));
                }
                None => {
                    return Err(CliError::usage(format!(
                        "[{kind}] of {shown} has no `name`; add e.g. name = \"{example}\" (see `maxi list --kind {kind}`)"
                    )));
                }
            };
            Ok(ComponentSpec { name, kwargs })
        };
        let loss = component("loss", "cem")?;
        let optimizer = component("optimizer", "ao_exp_grad")?;
        let gradient = component("gradient", "urv")?;
        let model = parse_model(table("model")?, &shown)?;
        let input = parse_input(table("input")?, &shown)?;
        let search = table("search")?;
        let segmentation = if top.contains_key("segmentation") {
            Some(component("segmentation", "slic")?)
        } else {
            None
        };
        Ok(Config {
            file: file.to_path_buf(),
            dir,
            generator,
            loss,
            optimizer,
            gradient,
            model,
            input,
            search,
            segmentation,
        })
    }
}

/// Where a value sits in a TOML document: the top-level table (empty for a top-level key) and
/// the key path inside it, from path parts `name`, `.key` and `[index]`.
fn toml_place(path: &[String]) -> (String, String) {
    match path {
        [table, first, rest @ ..] if first.starts_with('.') => {
            (table.clone(), format!("{}{}", &first[1..], rest.concat()))
        }
        _ => (String::new(), path.concat()),
    }
}

fn toml_value(v: toml::Value, path: &mut Vec<String>, file: &str) -> CliResult<Value> {
    let fail = |path: &[String], value: String, problem: &str| {
        let (table, key) = toml_place(path);
        let place = if table.is_empty() {
            format!("at the top of {file}")
        } else {
            format!("in [{table}] of {file}")
        };
        CliError::usage(format!("`{key} = {value}` {place}: {problem}"))
    };
    Ok(match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Float(x) => match serde_json::Number::from_f64(x) {
            Some(n) if x.is_finite() => Value::Number(n),
            _ => {
                let shown = if x.is_nan() {
                    "nan".to_string()
                } else {
                    x.to_string()
                };
                return Err(fail(
                    path,
                    shown,
                    "not a finite number; every number maxi reads must be finite (leave the key out to use its default; `maxi list` shows the defaults)",
                ));
            }
        },
        toml::Value::Datetime(d) => {
            return Err(fail(
                path,
                d.to_string(),
                "a date-time, which no maxi setting takes; use a number or a string",
            ));
        }
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(toml_value(item, path, file)?);
                path.pop();
            }
            Value::Array(out)
        }
        toml::Value::Table(t) => toml_to_json_in(t, path, file)?,
    })
}

fn toml_to_json_in(t: toml::Table, path: &mut Vec<String>, file: &str) -> CliResult<Value> {
    let mut out = Map::new();
    for (key, v) in t {
        path.push(if path.is_empty() {
            key.clone()
        } else {
            format!(".{key}")
        });
        let value = toml_value(v, path, file)?;
        path.pop();
        out.insert(key, value);
    }
    Ok(Value::Object(out))
}

/// Converts a TOML document of `file` to JSON exactly: integers stay integers, finite floats
/// become JSON numbers; `nan`, `inf` and date-times are errors naming the table, key and file
/// (a blanket conversion would turn non-finite floats into `null`, i.e. silently into defaults).
///
/// No kwarg can take ±inf: kwargs travel as JSON, which has no infinity. Where infinity would
/// mean "unbounded" (the CEM loss's `lower`/`upper`), leave the kwarg out for the mode's
/// default box or give a bound far outside the data (e.g. `upper = 1e30`).
pub fn toml_to_json(table: toml::Table, file: &str) -> CliResult<Value> {
    toml_to_json_in(table, &mut Vec::new(), file)
}

fn whole(v: &Value, key: &str, table: &str, file: &str, min: u64) -> CliResult<u64> {
    match v.as_u64() {
        Some(n) if n >= min => Ok(n),
        Some(n) => Err(CliError::usage(format!(
            "invalid setting `{key}` = {n} in [{table}] of {file}: must be at least {min}"
        ))),
        None => Err(CliError::usage(format!(
            "`{key}` in [{table}] of {file} must be a whole number ≥ {min}, got {v}"
        ))),
    }
}

fn parse_generator(t: Map<String, Value>, file: &str) -> CliResult<GeneratorSpec> {
    let mut g = GeneratorSpec::default();
    for (key, v) in &t {
        match key.as_str() {
            // 0 is let through: the generator reports it with the setting's rules.
            "num_iter" => g.num_iter = Some(usize_of(whole(v, key, "generator", file, 0)?)),
            "save_freq" if v.is_null() => g.save_freq = None,
            "save_freq" => g.save_freq = Some(usize_of(whole(v, key, "generator", file, 0)?)),
            "seed" => g.seed = Some(whole(v, key, "generator", file, 0)?),
            _ => {
                return Err(CliError::usage(format!(
                    "unknown key `{key}` in [generator] of {file}; accepted keys: {}",
                    GENERATOR_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(g)
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn parse_model(mut t: Map<String, Value>, file: &str) -> CliResult<ModelSpec> {
    let mut string = |key: &str, what: &str| -> CliResult<Option<String>> {
        match t.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(CliError::usage(format!(
                "`{key}` in [model] of {file} must be a string ({what}), got {other}"
            ))),
        }
    };
    let backend = string(
        "backend",
        "a model backend name, see `maxi list --kind model`",
    )?;
    let path = string("path", "the model file, relative to the config file")?;
    Ok(ModelSpec {
        backend,
        path,
        kwargs: t,
    })
}

fn parse_input(t: Map<String, Value>, file: &str) -> CliResult<InputSpec> {
    let mut spec = InputSpec::default();
    for (key, v) in &t {
        match key.as_str() {
            "path" => match v {
                Value::String(s) => spec.path = Some(s.clone()),
                other => {
                    return Err(CliError::usage(format!(
                        "`path` in [input] of {file} must be a string (a .npy/.png file relative to the config file, or mnist:N), got {other}"
                    )));
                }
            },
            "pixel_range" => {
                let pair = v.as_array().and_then(|a| match a.as_slice() {
                    [lo, hi] => Some([lo.as_f64()?, hi.as_f64()?]),
                    _ => None,
                });
                match pair {
                    Some([lo, hi]) if lo.is_finite() && hi.is_finite() && lo < hi => {
                        spec.pixel_range = Some([lo, hi]);
                    }
                    _ => {
                        return Err(CliError::usage(format!(
                            "`pixel_range` in [input] of {file} must be [low, high] with low < high (e.g. [-0.5, 0.5]), got {v}"
                        )));
                    }
                }
            }
            "resize" | "crop" => spec.photo.set(key, v, file)?,
            _ => {
                return Err(CliError::usage(format!(
                    "unknown key `{key}` in [input] of {file}; accepted keys: {}",
                    INPUT_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxi::serde_json::json;

    fn parse(v: Value) -> CliResult<Config> {
        Config::from_value(v, Path::new("c.toml"), PathBuf::from("."))
    }

    fn minimal() -> Value {
        json!({
            "loss": {"name": "cem", "mode": "PP"},
            "optimizer": {"name": "ao_exp_grad"},
            "gradient": {"name": "urv"},
        })
    }

    #[test]
    fn minimal_config() {
        let c = parse(minimal()).expect("valid");
        assert_eq!(c.loss.name, "cem");
        assert_eq!(c.loss.kwargs.get("mode"), Some(&json!("PP")));
        assert_eq!(c.generator, GeneratorSpec::default());
        assert_eq!(c.model, ModelSpec::default());
    }

    #[test]
    fn errors_name_key_and_file() {
        let mut v = minimal();
        v["extra"] = json!({});
        let e = parse(v).expect_err("unknown table");
        assert!(
            e.message.contains("`extra`") && e.message.contains("c.toml"),
            "{e}"
        );

        let mut v = minimal();
        v["generator"] = json!({"num_iters": 3});
        let e = parse(v).expect_err("unknown key");
        assert!(
            e.message.contains("`num_iters`") && e.message.contains("[generator]"),
            "{e}"
        );

        let mut v = minimal();
        v["generator"] = json!({"num_iter": "ten"});
        let e = parse(v).expect_err("wrong type");
        assert!(e.message.contains("`num_iter`"), "{e}");

        let mut v = minimal();
        v["gradient"] = json!({"sample_num": 3});
        let e = parse(v).expect_err("no name");
        assert!(
            e.message.contains("`name`") && e.message.contains("[gradient]"),
            "{e}"
        );

        let mut v = minimal();
        v.as_object_mut().map(|m| m.remove("optimizer"));
        let e = parse(v).expect_err("no optimizer");
        assert!(e.message.contains("[optimizer]"), "{e}");

        let mut v = minimal();
        v["input"] = json!({"pixel_range": [1, 0]});
        let e = parse(v).expect_err("bad range");
        assert!(e.message.contains("pixel_range"), "{e}");
        assert_eq!(e.code, 2);
    }

    #[test]
    fn toml_is_converted_exactly() {
        let text = "a = 1\n[loss]\nx = 2.5\ny = [1, 2.0, \"s\", true]\n[loss.deep]\nz = 3\n";
        let table: toml::Table = toml::from_str(text).expect("toml");
        let v = toml_to_json(table, "c.toml").expect("convertible");
        assert_eq!(
            v,
            json!({"a": 1, "loss": {"x": 2.5, "y": [1, 2.0, "s", true], "deep": {"z": 3}}})
        );
        assert!(v["a"].is_i64() && v["loss"]["y"][1].is_f64());
        for (text, needle) in [
            (
                "top = nan",
                "`top = nan` at the top of c.toml: not a finite number",
            ),
            (
                "[loss]\nm = -inf",
                "`m = -inf` in [loss] of c.toml: not a finite number",
            ),
            (
                "[input]\npixel_range = [0, nan]",
                "`pixel_range[1] = nan` in [input]",
            ),
            (
                "[loss.deep]\nz = [[1.0, +inf]]",
                "`deep.z[0][1] = inf` in [loss]",
            ),
            ("arr = [nan]", "`arr[0] = nan` at the top"),
            (
                "[loss]\nwhen = 1979-05-27",
                "`when = 1979-05-27` in [loss] of c.toml: a date-time",
            ),
        ] {
            let e = Config::from_text(text, Path::new("c.toml")).expect_err(text);
            assert!(e.message.contains(needle), "{text}: {e}");
            assert_eq!(e.code, 2);
        }
    }

    #[test]
    fn model_and_input_tables() {
        let mut v = minimal();
        v["model"] = json!({"path": "m.onnx", "threads": 2, "backend": "onnx"});
        v["input"] = json!({"path": "mnist:1", "pixel_range": [-0.5, 0.5]});
        v["generator"] = json!({"num_iter": 5, "save_freq": 2, "seed": 7});
        let c = parse(v).expect("valid");
        assert_eq!(c.model.path.as_deref(), Some("m.onnx"));
        assert_eq!(c.model.backend.as_deref(), Some("onnx"));
        assert_eq!(c.model.kwargs.get("threads"), Some(&json!(2)));
        assert_eq!(c.input.pixel_range, Some([-0.5, 0.5]));
        assert_eq!(
            c.generator,
            GeneratorSpec {
                num_iter: Some(5),
                save_freq: Some(2),
                seed: Some(7)
            }
        );
    }
}
