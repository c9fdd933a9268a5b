//! One line of `results.jsonl` per input, and the summary over them (shared by `maxi batch`
//! and `maxi merge`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use maxi::serde_json::{self, Map, Value, json};

use crate::error::{CliError, CliResult};

/// `status` of a finished input with a valid explanation (or one the loss cannot judge).
pub const OK: &str = "ok";
/// `status` of a finished input whose run found no valid explanation.
pub const NO_VALID: &str = "no_valid";
/// `status` of an input that could not be explained.
pub const ERROR: &str = "error";

/// The result line of an input whose outputs are complete, from its `report.json`.
pub fn line_from_report(head: Map<String, Value>, report: &Value) -> Value {
    let valid = report.get("valid").cloned().unwrap_or(Value::Null);
    let status = if valid == Value::Bool(false) {
        NO_VALID
    } else {
        OK
    };
    let mut line = head;
    line.insert("status".into(), json!(status));
    line.insert("verdict".into(), report["verdict"].clone());
    line.insert("valid".into(), valid);
    line.insert("class_before".into(), report["original_class"].clone());
    line.insert("class_after".into(), report["explanation_class"].clone());
    line.insert("size".into(), report["nonzero"].clone());
    line.insert("rows".into(), report["model_rows"].clone());
    line.insert("wall_s".into(), report["wall_s"].clone());
    line.insert("seed".into(), report["seed"].clone());
    line.insert("error".into(), Value::Null);
    line.insert("reason".into(), Value::Null);
    Value::Object(line)
}

/// The result line of an input that failed: `reason` groups failures in the summary.
pub fn error_line(head: Map<String, Value>, reason: &str, message: &str) -> Value {
    let mut line = head;
    line.insert("status".into(), json!(ERROR));
    for k in [
        "verdict",
        "valid",
        "class_before",
        "class_after",
        "size",
        "rows",
        "wall_s",
        "seed",
    ] {
        line.insert(k.into(), Value::Null);
    }
    line.insert("error".into(), json!(message));
    line.insert("reason".into(), json!(reason));
    Value::Object(line)
}

/// Writes `lines` as JSON Lines to `path` atomically (a temporary file renamed over it).
pub fn write_jsonl<I: IntoIterator<Item = Value>>(path: &Path, lines: I) -> CliResult<()> {
    let tmp = path.with_extension(format!("jsonl.tmp-{}", std::process::id()));
    let fail =
        |e: std::io::Error| CliError::runtime(format!("cannot write {}: {e}", tmp.display()));
    let file = std::fs::File::create(&tmp).map_err(fail)?;
    let mut w = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(w, "{line}").map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| fail(e.into_error()))?
        .sync_all()
        .map_err(fail)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))
}

/// Writes `text` to `path` atomically.
pub fn write_atomic(path: &Path, text: &str) -> CliResult<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))
}

/// Reads a `results.jsonl` (a last line cut short by a crash is skipped).
pub fn read_jsonl(path: &Path) -> CliResult<Vec<Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect())
}

/// Figures over the result lines of a batch.
#[derive(Debug, Default)]
pub struct Summary {
    inputs: usize,
    ok: usize,
    no_valid: usize,
    valid: usize,
    judged: usize,
    sizes: Vec<f64>,
    rows: Vec<f64>,
    walls: Vec<f64>,
    failures: BTreeMap<String, (usize, String, String)>,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

impl Summary {
    /// Counts one result line.
    pub fn add(&mut self, line: &Value) {
        self.inputs += 1;
        let num = |k: &str| line.get(k).and_then(Value::as_f64);
        match line.get("status").and_then(Value::as_str) {
            Some(ERROR) => {
                let reason = line["reason"].as_str().unwrap_or("error").to_string();
                let entry = self.failures.entry(reason).or_insert_with(|| {
                    (
                        0,
                        line["id"].as_str().unwrap_or_default().to_string(),
                        line["error"].as_str().unwrap_or_default().to_string(),
                    )
                });
                entry.0 += 1;
                return;
            }
            Some(NO_VALID) => self.no_valid += 1,
            _ => self.ok += 1,
        }
        if let Some(v) = line.get("valid").and_then(Value::as_bool) {
            self.judged += 1;
            self.valid += usize::from(v);
        }
        if let Some(s) = num("size") {
            self.sizes.push(s);
        }
        if let Some(r) = num("rows") {
            self.rows.push(r);
        }
        if let Some(w) = num("wall_s") {
            self.walls.push(w);
        }
    }

    /// Inputs that failed.
    pub fn errors(&self) -> usize {
        self.failures.values().map(|f| f.0).sum()
    }

    /// Inputs counted.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The summary as JSON (`extra` is merged in).
    pub fn to_json(&mut self, extra: Map<String, Value>) -> Value {
        let failures: Map<String, Value> = self
            .failures
            .iter()
            .map(|(k, (n, id, msg))| {
                (
                    k.clone(),
                    json!({"count": n, "first_id": id, "first_error": msg}),
                )
            })
            .collect();
        let mut m = Map::new();
        m.insert("inputs".into(), json!(self.inputs));
        m.insert("explained".into(), json!(self.ok + self.no_valid));
        m.insert("no_valid".into(), json!(self.no_valid));
        m.insert("errors".into(), json!(self.errors()));
        m.insert(
            "valid_rate".into(),
            json!((self.judged > 0).then(|| self.valid as f64 / self.judged as f64)),
        );
        m.insert("median_size".into(), json!(median(&mut self.sizes)));
        m.insert("median_rows".into(), json!(median(&mut self.rows)));
        m.insert("median_wall_s".into(), json!(median(&mut self.walls)));
        m.insert("failures".into(), Value::Object(failures));
        m.extend(extra);
        Value::Object(m)
    }
}

/// The summary in a few lines for stdout.
pub fn summary_text(s: &Value) -> String {
    let f = |k: &str| match s.get(k) {
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        }
        _ => "—".into(),
    };
    let rate = s["valid_rate"]
        .as_f64()
        .map_or("—".into(), |r| format!("{:.1} %", 100.0 * r));
    let mut text = format!(
        "{} inputs: {} explained ({} without a valid explanation), {} failed; valid rate {rate}\nmedians: size {}, model rows {}, wall {} s\n",
        f("inputs"),
        f("explained"),
        f("no_valid"),
        f("errors"),
        f("median_size"),
        f("median_rows"),
        f("median_wall_s"),
    );
    if let Some(m) = s["failures"].as_object() {
        for (reason, v) in m {
            text.push_str(&format!(
                "failed ({reason}): {} input(s), e.g. {}: {}\n",
                v["count"],
                v["first_id"].as_str().unwrap_or(""),
                v["first_error"].as_str().unwrap_or("")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_medians() {
        let head = |id: &str| {
            let mut m = Map::new();
            m.insert("id".into(), json!(id));
            m
        };
        let report = |valid: bool, size: u64| {
            json!({"valid": valid, "verdict": "v", "nonzero": size, "model_rows": 100,
                   "wall_s": 0.5, "seed": 1, "original_class": 7, "explanation_class": 7})
        };
        let mut s = Summary::default();
        s.add(&line_from_report(head("a"), &report(true, 4)));
        s.add(&line_from_report(head("b"), &report(true, 10)));
        s.add(&line_from_report(head("c"), &report(false, 7)));
        s.add(&error_line(head("d"), "bad input", "corrupt"));
        s.add(&error_line(head("e"), "bad input", "missing"));
        let v = s.to_json(Map::new());
        assert_eq!(v["inputs"], 5);
        assert_eq!(v["explained"], 3);
        assert_eq!(v["errors"], 2);
        assert_eq!(v["valid_rate"].as_f64(), Some(2.0 / 3.0));
        assert_eq!(v["median_size"].as_f64(), Some(7.0));
        assert_eq!(v["failures"]["bad input"]["count"], 2);
        assert_eq!(v["failures"]["bad input"]["first_id"], "d");
        let text = summary_text(&v);
        assert!(text.contains("valid rate 66.7 %"), "{text}");
    }
}
