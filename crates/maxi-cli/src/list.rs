//! `maxi list`: every registered component with its kwargs.

use std::io::Write;

use maxi::Kind;
use maxi::registry::Meta;
use maxi::serde_json::{self, Map, Value, json};

use crate::cli::ListArgs;
use crate::error::{CliError, CliResult};

/// Runs `maxi list`.
pub fn run(args: &ListArgs) -> CliResult<()> {
    let registry = maxi::registry::global()?;
    let mut sorted = registry.metas(args.kind);
    sorted.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    let text = if args.json {
        let mut arr: Vec<Value> = sorted.iter().map(|c| component_json(c)).collect();
        if args.kind.is_none_or(|k| k == Kind::Model) {
            arr.extend(crate::model_adapters::list_json());
        }
        let mut s = serde_json::to_string_pretty(&Value::Array(arr))
            .map_err(|e| CliError::runtime(format!("cannot format the list as JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        let mut text = human(&sorted, args.kind);
        if args.kind.is_none_or(|k| k == Kind::Model) {
            // right after the model backends (before the segmentations and the closing hint)
            let at = text
                .find("\nsegmentation (")
                .map(|i| i + 1)
                .or_else(|| text.rfind("Use a component"))
                .unwrap_or(text.len());
            text.insert_str(at, &crate::model_adapters::list_human());
        }
        text
    };
    print_stdout(&text)
}

/// Writes to stdout; a closed pipe (`maxi list | head`) is not an error.
pub fn print_stdout(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::runtime(format!("cannot write to stdout: {e}"))),
    }
}

/// The JSON object of one component.
pub fn component_json(c: &Meta) -> Value {
    json!({
        "kind": c.kind,
        "name": c.name,
        "aliases": c.aliases,
        "doc": c.doc,
        "origin": c.origin,
        "kwargs": c.accepted_kwargs(),
        "kwargs_schema": c.schema,
    })
}

fn human(components: &[&Meta], only: Option<Kind>) -> String {
    let mut s = String::new();
    for kind in Kind::ALL {
        if only.is_some_and(|k| k != kind) {
            continue;
        }
        let of_kind: Vec<_> = components.iter().filter(|c| c.kind == kind).collect();
        s.push_str(&format!("{kind} ({})\n", of_kind.len()));
        if of_kind.is_empty() {
            s.push_str("  (none registered)\n");
        }
        for c in of_kind {
            s.push_str(&format!("  {}", c.name));
            if !c.aliases.is_empty() {
                s.push_str(&format!("  (aliases: {})", c.aliases.join(", ")));
            }
            s.push('\n');
            s.push_str(&format!("      {}\n", one_line(&c.doc)));
            if c.origin != "built-in" && !c.origin.starts_with("crate ") {
                s.push_str(&format!("      from {}\n", c.origin));
            }
            let kwargs = kwargs_lines(&c.schema, &c.kwarg_aliases);
            if kwargs.is_empty() {
                s.push_str("      kwargs: none\n");
            } else {
                s.push_str("      kwargs:\n");
                for line in kwargs {
                    s.push_str(&format!("        {line}\n"));
                }
            }
        }
        s.push('\n');
    }
    s.push_str(
        "Use a component in a config as [loss] name = \"...\" plus its kwargs; \
         `maxi list --json` prints the full JSON schemas.\n",
    );
    s
}

pub(crate) fn one_line(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `name: type = default  doc` for every kwarg of a JSON schema.
pub(crate) fn kwargs_lines(schema: &Value, aliases: &[(String, String)]) -> Vec<String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object);
    props
        .iter()
        .map(|(name, p)| {
            let mut line = format!("{name}: {}", type_label(p, defs, 0));
            if let Some(d) = p.get("default") {
                line.push_str(&format!(" = {d}"));
            } else if required.contains(&name.as_str()) {
                line.push_str(" (required)");
            }
            let alias: Vec<&str> = aliases
                .iter()
                .filter(|(_, c)| c == name)
                .map(|(a, _)| a.as_str())
                .collect();
            if !alias.is_empty() {
                line.push_str(&format!(" (alias {})", alias.join(", ")));
            }
            if let Some(doc) = description(p, defs) {
                line.push_str(&format!("  — {}", one_line(&doc)));
            }
            line
        })
        .collect()
}

fn resolve<'a>(p: &'a Value, defs: Option<&'a Map<String, Value>>) -> Option<(&'a str, &'a Value)> {
    let r = p.get("$ref")?.as_str()?;
    let name = r.rsplit('/').next()?;
    Some((name, defs?.get(name)?))
}

fn description(p: &Value, defs: Option<&Map<String, Value>>) -> Option<String> {
    if let Some(d) = p.get("description").and_then(Value::as_str) {
        return Some(d.to_string());
    }
    resolve(p, defs)
        .and_then(|(_, d)| d.get("description"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A short type label of a schema: `number`, `integer?`, `"PP" | "PN"`, `array of number`, ...
fn type_label(p: &Value, defs: Option<&Map<String, Value>>, depth: usize) -> String {
    if depth > 4 {
        return "…".into();
    }
    if let Some((name, def)) = resolve(p, defs) {
        if name == "ModelRef" {
            return "model file".into();
        }
        let inner = type_label(def, defs, depth + 1);
        return if inner == "any" {
            name.to_string()
        } else {
            inner
        };
    }
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(c) = p.get("const") {
        return c.to_string();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = p.get(key).and_then(Value::as_array) {
            let mut nullable = false;
            let mut labels: Vec<String> = Vec::new();
            for a in alts {
                if a.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                } else {
                    let l = type_label(a, defs, depth + 1);
                    if !labels.contains(&l) {
                        labels.push(l);
                    }
                }
            }
            let mut s = labels.join(" | ");
            if nullable {
                s = if s.contains(" | ") {
                    format!("({s})?")
                } else {
                    format!("{s}?")
                };
            }
            return s;
        }
    }
    let base = |t: &str| -> String {
        match t {
            "array" => {
                let item = p
                    .get("items")
                    .map(|i| type_label(i, defs, depth + 1))
                    .unwrap_or_else(|| "any".into());
                match (p.get("minItems"), p.get("maxItems")) {
                    (Some(a), Some(b)) if a == b => format!("[{item}; {a}]"),
                    _ => format!("array of {item}"),
                }
            }
            other => other.to_string(),
        }
    };
    match p.get("type") {
        Some(Value::String(t)) => base(t),
        Some(Value::Array(ts)) => {
            let nullable = ts.iter().any(|t| t == "null");
            let parts: Vec<String> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .map(base)
                .collect();
            let s = parts.join(" | ");
            match (nullable, s.contains(" | ")) {
                (true, true) => format!("({s})?"),
                (true, false) => format!("{s}?"),
                _ => s,
            }
        }
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let schema = json!({
            "properties": {
                "a": {"type": "number", "default": 1.0, "description": "the a"},
                "b": {"type": ["integer", "null"]},
                "m": {"$ref": "#/$defs/Mode"},
                "r": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                "o": {"anyOf": [{"$ref": "#/$defs/Spec"}, {"type": "null"}]},
            },
            "required": ["m"],
            "$defs": {
                "Mode": {"oneOf": [{"const": "PP"}, {"const": "PN"}], "description": "which"},
                "Spec": {"anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
            }
        });
        let lines = kwargs_lines(&schema, &[("alpha".into(), "a".into())]);
        assert!(
            lines.contains(&"a: number = 1.0 (alias alpha)  — the a".to_string()),
            "{lines:?}"
        );
        assert!(lines.contains(&"b: integer?".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"m: \"PP\" | \"PN\" (required)  — which".to_string()),
            "{lines:?}"
        );
        assert!(lines.contains(&"r: [number; 2]?".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"o: (number | array of number)?".to_string()),
            "{lines:?}"
        );
    }
}
