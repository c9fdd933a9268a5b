//! `[model]` keys that are not the backend's kwargs: the model adapters (`preprocess`,
//! `quantizer`, `region`; see `maxi-adapters`) and `labels`, a file of class names for the
//! verdict and the report.

use std::path::Path;
use std::sync::Arc;

use maxi::ndarray::ArrayD;
use maxi::serde_json::{Map, Value, json};
use maxi::{MaxiError, Model};
use maxi_adapters::{AdapterSpec, Region};

use crate::error::{CliError, CliResult};

/// The largest labels file read (bytes).
const MAX_LABELS_BYTES: u64 = 16 << 20;

/// Adapters and class names of the `[model]` table.
#[derive(Default)]
pub struct ModelExtras {
    /// The adapters.
    pub adapters: AdapterSpec,
    /// Class names, when `labels` is set.
    pub labels: Option<ClassNames>,
    /// The region adapter, once the input is known.
    pub region: Option<Arc<Region>>,
    labels_path: Option<String>,
}

fn in_model(e: MaxiError, file: &str) -> CliError {
    CliError::from_maxi_in(
        e,
        &format!("in [model] of {file}; see `maxi list --kind model` for the adapters' keys"),
    )
}

impl ModelExtras {
    /// Takes the adapter keys and `labels` out of the `[model]` kwargs of `file` (folder
    /// `dir`), leaving the backend's kwargs.
    pub fn take(kwargs: &mut Map<String, Value>, dir: &Path, file: &str) -> CliResult<Self> {
        let adapters = AdapterSpec::take_from(kwargs).map_err(|e| in_model(e, file))?;
        let (labels, labels_path) = match kwargs.remove("labels") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(p)) => {
                let path = dir.join(&p);
                (Some(ClassNames::load(&path, file)?), Some(p))
            }
            Some(other) => {
                return Err(CliError::usage(format!(
                    "`labels` in [model] of {file} must be a file of class names (one per line, \
                     `index,name` or `name`), relative to the config file; got {other}"
                )));
            }
        };
        Ok(ModelExtras {
            adapters,
            labels,
            region: None,
            labels_path,
        })
    }

    /// Wraps the backend's model with the preprocessing chain and the quantizer.
    pub fn wrap(&self, model: Arc<dyn Model>, file: &str) -> CliResult<Arc<dyn Model>> {
        self.adapters.wrap(model).map_err(|e| in_model(e, file))
    }

    /// With a region set: replaces `model` by the region adapter around it and returns the
    /// crop of `x` to explain; otherwise returns `x`.
    pub fn focus(
        &mut self,
        model: &mut Arc<dyn Model>,
        x: ArrayD<f64>,
        file: &str,
    ) -> CliResult<ArrayD<f64>> {
        let Some(region) = self
            .adapters
            .region(model.clone(), x.clone())
            .map_err(|e| in_model(e, file))?
        else {
            return Ok(x);
        };
        let region = Arc::new(region);
        let crop = region.crop();
        *model = region.clone();
        self.region = Some(region);
        Ok(crop)
    }

    /// The adapters' and labels' settings, for the report's resolved `[model]`.
    pub fn config(&self) -> Map<String, Value> {
        let mut m = self.adapters.config();
        if let Some(p) = &self.labels_path {
            m.insert("labels".into(), json!(p));
        }
        m
    }

    /// How the verdict names class `c`: `'bull mastiff'` with labels, `class 243` without.
    pub fn class(&self, c: usize) -> String {
        match self.labels.as_ref().and_then(|l| l.name(c)) {
            Some(name) => format!("'{name}'"),
            None => format!("class {c}"),
        }
    }

    /// Like [`ModelExtras::class`], but a bare number without labels (`into 5`).
    pub fn class_short(&self, c: usize) -> String {
        match self.labels.as_ref().and_then(|l| l.name(c)) {
            Some(name) => format!("'{name}'"),
            None => c.to_string(),
        }
    }

    /// Adds the names of the report's classes (`original_class`, `explanation_class`) as
    /// `original_class_name`, `explanation_class_name`.
    pub fn annotate(&self, report: &mut Map<String, Value>) {
        let Some(labels) = &self.labels else {
            return;
        };
        for key in ["original_class", "explanation_class"] {
            if let Some(name) = report
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|c| labels.name(c as usize))
            {
                report.insert(format!("{key}_name"), json!(name));
            }
        }
    }
}

impl ModelExtras {
    /// With a region: writes `region.png` into `staging`, the full image (left) and the full
    /// image with the final explanation in the rectangle (right: PP shows the kept part,
    /// PN the perturbed input), drawn in the display range `[lo, hi]`.
    pub fn write_region_picture(
        &self,
        staging: &mut crate::output::Staging,
        e: &maxi::Explanation,
        crop: &ArrayD<f64>,
        [lo, hi]: [f64; 2],
    ) -> CliResult<()> {
        use crate::render;
        let (Some(region), Some(last)) = (&self.region, e.final_candidate()) else {
            return Ok(());
        };
        let full = region.image();
        let Some(l) = render::layout(full.shape()) else {
            return Ok(());
        };
        let shown = match e.description.shown {
            maxi::Shown::InputPlusCandidate => crop + last,
            _ => last.clone(),
        };
        let pasted = region.paste(full, shown.view());
        let scale = render::display_scale(&l);
        let to_unit = |v: f64| (v - lo) / (hi - lo);
        let mut left = render::picture(&render::hwc(full, &l), &l, scale, to_unit);
        let right = render::picture(&render::hwc(&pasted, &l), &l, scale, to_unit);
        // the rectangle's outline on the left panel
        let r = region.rect();
        let (x0, y0) = (r.x as u32 * scale, r.y as u32 * scale);
        let (x1, y1) = (
            ((r.x + r.w) as u32 * scale).saturating_sub(1),
            ((r.y + r.h) as u32 * scale).saturating_sub(1),
        );
        for (x, y) in (x0..=x1)
            .flat_map(|x| [(x, y0), (x, y1)])
            .chain((y0..=y1).flat_map(|y| [(x0, y), (x1, y)]))
        {
            if x < left.width() && y < left.height() {
                left.put_pixel(x, y, image::Rgb([255, 200, 0]));
            }
        }
        let bytes = render::png_bytes(&render::side_by_side(&[left, right]))
            .map_err(|err| CliError::runtime(format!("cannot encode PNG: {err}")))?;
        staging.write("region.png", &bytes)
    }
}

/// Class names by index.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassNames(Vec<String>);

impl ClassNames {
    /// Reads one class per line: `index,name` (indices 0, 1, 2, ... in order) or just `name`.
    pub fn load(path: &Path, file: &str) -> CliResult<Self> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| {
                CliError::usage(format!(
                    "labels file {shown} (from [model] labels in {file}) cannot be read: {e}; \
                     the path is relative to the config file"
                ))
            })?
            .len();
        if size > MAX_LABELS_BYTES {
            return Err(CliError::usage(format!(
                "labels file {shown} has {size} bytes; a file of class names is expected (at most {MAX_LABELS_BYTES} bytes)"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("labels file {shown} cannot be read: {e}")))?;
        Self::parse(&text).map_err(|m| CliError::usage(format!("labels file {shown}: {m}")))
    }

    /// Parses the text of a labels file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut names = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let name = match line.split_once(',') {
                Some((index, rest)) if index.trim().parse::<usize>().is_ok() => {
                    let index: usize = index.trim().parse().unwrap_or(usize::MAX);
                    if index != names.len() {
                        return Err(format!(
                            "line {} has index {index} but {} was expected; list the classes \
                             in order from 0",
                            i + 1,
                            names.len()
                        ));
                    }
                    rest.trim()
                }
                _ => line,
            };
            names.push(name.to_string());
        }
        if names.is_empty() {
            return Err("has no class names; write one per line".into());
        }
        Ok(ClassNames(names))
    }

    /// The name of class `c`.
    pub fn name(&self, c: usize) -> Option<&str> {
        self.0.get(c).map(String::as_str)
    }

    /// Number of classes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no classes.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The adapters as `maxi list` shows them (after the model backends).
pub fn list_human() -> String {
    let mut s =
        String::from("model adapters (keys of [model], wrapped around the backend's model)\n");
    for a in maxi_adapters::catalog() {
        s.push_str(&format!(
            "  {}\n      {}\n",
            a.key,
            crate::list::one_line(a.doc)
        ));
        for line in crate::list::kwargs_lines(&a.schema, &[]) {
            s.push_str(&format!("        {line}\n"));
        }
    }
    s.push_str(
        "  labels\n      a file of class names (`index,name` or `name` per line) used in the verdict\n  \
         output, squeeze\n      kwargs of the onnx/onnxruntime backends: pick an output by name or \
         position; drop trailing axes of size 1\n\n",
    );
    s
}

/// The adapters as `maxi list --json` shows them.
pub fn list_json() -> Vec<Value> {
    maxi_adapters::catalog()
        .into_iter()
        .map(|a| {
            json!({
                "kind": "model_adapter",
                "name": a.key,
                "aliases": [],
                "doc": a.doc,
                "origin": "crate maxi-adapters",
                "kwargs": a.schema.get("properties").and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
                "kwargs_schema": a.schema,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_files_with_or_without_indices() {
        let l = ClassNames::parse("0,tench, Tinca tinca\n1,goldfish\n\n2,great white shark\n")
            .expect("valid");
        assert_eq!(
            (l.len(), l.name(0), l.name(2)),
            (3, Some("tench, Tinca tinca"), Some("great white shark"))
        );
        assert_eq!(
            ClassNames::parse("cat\ndog\n").expect("plain").name(1),
            Some("dog")
        );
        let e = ClassNames::parse("0,a\n2,b\n").expect_err("gap");
        assert!(e.contains("line 2 has index 2 but 1 was expected"), "{e}");
        assert!(ClassNames::parse("\n").is_err());
    }

    #[test]
    fn the_bundled_imagenet_labels() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/imagenet/imagenet_labels.txt");
        let l = ClassNames::load(&path, "test").expect("labels");
        assert_eq!(l.len(), 1000);
        assert_eq!(l.name(243), Some("bull mastiff"));
        let extras = ModelExtras {
            labels: Some(l),
            ..ModelExtras::default()
        };
        assert_eq!(extras.class(243), "'bull mastiff'");
        assert_eq!(extras.class(5000), "class 5000");
        assert_eq!(ModelExtras::default().class(3), "class 3");
        assert_eq!(ModelExtras::default().class_short(3), "3");
    }

    #[test]
    fn adapter_and_labels_keys_leave_the_backend_kwargs() {
        let mut kw = json!({"threads": 2, "quantizer": "identity", "labels": null, "output": "x"});
        let kw = kw.as_object_mut().expect("table");
        let extras = ModelExtras::take(kw, Path::new("."), "c.toml").expect("valid");
        assert!(extras.adapters.quantizer.is_some());
        assert_eq!(kw.keys().collect::<Vec<_>>(), ["output", "threads"]);
        let mut bad = json!({"labels": 3});
        let e = ModelExtras::take(bad.as_object_mut().expect("t"), Path::new("."), "c.toml")
            .err()
            .expect("accepted");
        assert!(e.message.contains("`labels` in [model] of c.toml"), "{e}");
        let mut bad = json!({"region": [1, 2]});
        let e = ModelExtras::take(bad.as_object_mut().expect("t"), Path::new("."), "c.toml")
            .err()
            .expect("accepted");
        assert!(
            e.message.contains("[model] region") && e.message.contains("c.toml"),
            "{e}"
        );
    }
}
