//! The list of inputs of `maxi batch`: `mnist:START..END`, a folder of images, a `.npy` stack
//! `[N, ...]`, or a CSV/JSONL list of files (optional `id`, `label`, `target` per row).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use maxi::ndarray::{ArrayD, IxDyn};
use maxi::serde_json::{self, Value};

use crate::error::{CliError, CliResult};
use crate::input::Source;
use crate::npy;

/// One input of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Unique name: the input's folder in `--out/inputs/` and its key in results.jsonl.
    pub id: String,
    /// Where the input comes from.
    pub source: ItemSource,
    /// The row's label (any JSON value), copied into its result line.
    pub label: Option<Value>,
    /// The row's target class: the CEM loss's `pn_target` for this input.
    pub target: Option<u64>,
}

/// Where an item's values are read from.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemSource {
    /// A bundled MNIST image or a file (as `maxi explain --input`).
    Input(Source),
    /// Row `row` of a `.npy` stack.
    NpyRow(PathBuf, usize),
}

impl ItemSource {
    /// As shown in results and messages.
    pub fn describe(&self) -> String {
        match self {
            ItemSource::Input(s) => s.describe(),
            ItemSource::NpyRow(p, r) => format!("{}[{r}]", p.display()),
        }
    }
}

/// The parsed manifest.
#[derive(Debug)]
pub struct Manifest {
    /// What `--inputs` said.
    pub spec: String,
    /// Every input, in manifest order.
    pub items: Vec<Item>,
    /// For a `.npy` stack: its header (to read one row at a time).
    pub stack: Option<npy::NpyHeader>,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "npy"];

/// A folder name made of `s`: letters, digits, `.`, `_`, `-`; anything else becomes `_`.
fn folder_name(s: &str) -> String {
    let mut id: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.starts_with('.') || id.is_empty() {
        id.insert(0, '_');
    }
    id
}

impl Manifest {
    /// Reads `--inputs`.
    pub fn parse(spec: &str) -> CliResult<Manifest> {
        let mut stack = None;
        let items = if spec.starts_with("mnist:") {
            let range = crate::eval::parse_range(spec)?;
            let width = digits(range.end);
            range
                .map(|i| Item {
                    id: format!("mnist-{i:0width$}"),
                    source: ItemSource::Input(Source::Mnist(i)),
                    label: maxi::mnist::test_label(i).ok().map(Value::from),
                    target: None,
                })
                .collect()
        } else {
            let path = Path::new(spec);
            if path.is_dir() {
                folder(path)?
            } else if !path.is_file() {
                return Err(CliError::usage(format!(
                    "--inputs {spec} not found; give mnist:START..END, a folder of images, a .npy stack or a .csv/.jsonl list"
                )));
            } else {
                match extension(path).as_str() {
                    "npy" => {
                        let (header, items) = npy_stack(path)?;
                        stack = Some(header);
                        items
                    }
                    "csv" => csv(path)?,
                    "jsonl" | "ndjson" => jsonl(path)?,
                    other => {
                        return Err(CliError::usage(format!(
                            "--inputs {spec}: unsupported manifest type `.{other}`; give mnist:START..END, a folder of images, a .npy stack [N, ...] or a .csv/.jsonl list of files"
                        )));
                    }
                }
            }
        };
        if items.is_empty() {
            return Err(CliError::usage(format!(
                "--inputs {spec} holds no inputs; a folder needs .png/.jpg/.npy files, a list at least one row"
            )));
        }
        check_unique(&items, spec)?;
        Ok(Manifest {
            spec: spec.to_string(),
            items,
            stack,
        })
    }

    /// Loads row `row` of the `.npy` stack (reading only that row).
    pub fn load_row(&self, path: &Path, row: usize) -> CliResult<ArrayD<f64>> {
        let Some(h) = &self.stack else {
            return Err(CliError::runtime("internal: no .npy stack"));
        };
        let shown = path.display();
        let size = if h.descr.ends_with('8') { 8 } else { 4 };
        let item_shape = &h.shape[1..];
        let n: usize = item_shape.iter().product();
        let mut buf = vec![0u8; n * size];
        let offset = h.data_offset as u64 + (row as u64) * (n * size) as u64;
        let mut f = std::fs::File::open(path)
            .map_err(|e| CliError::usage(format!("cannot read {shown}: {e}")))?;
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| CliError::usage(format!("cannot read row {row} of {shown}: {e}")))?;
        let big = h.descr.starts_with('>');
        let values: Vec<f64> = if size == 8 {
            buf.chunks_exact(8)
                .map(|c| {
                    let b: [u8; 8] = c.try_into().unwrap_or_default();
                    if big {
                        f64::from_be_bytes(b)
                    } else {
                        f64::from_le_bytes(b)
                    }
                })
                .collect()
        } else {
            buf.chunks_exact(4)
                .map(|c| {
                    let b: [u8; 4] = c.try_into().unwrap_or_default();
                    f64::from(if big {
                        f32::from_be_bytes(b)
                    } else {
                        f32::from_le_bytes(b)
                    })
                })
                .collect()
        };
        ArrayD::from_shape_vec(IxDyn(item_shape), values)
            .map_err(|e| CliError::runtime(format!("internal: row shape: {e}")))
    }
}

fn digits(n: usize) -> usize {
    n.saturating_sub(1).max(1).to_string().len()
}

fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn check_unique(items: &[Item], spec: &str) -> CliResult<()> {
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(j) = seen.insert(item.id.as_str(), i) {
            return Err(CliError::usage(format!(
                "--inputs {spec}: inputs {j} and {i} have the same id `{}`; ids name the output folders and must be unique (give an `id` column)",
                item.id
            )));
        }
    }
    Ok(())
}

fn folder(dir: &Path) -> CliResult<Vec<Item>> {
    let shown = dir.display();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| CliError::usage(format!("cannot read the --inputs folder {shown}: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            CliError::usage(format!("cannot read the --inputs folder {shown}: {e}"))
        })?;
        let path = entry.path();
        if path.is_file() && IMAGE_EXTENSIONS.contains(&extension(&path).as_str()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|p| Item {
            id: folder_name(&p.file_name().unwrap_or_default().to_string_lossy()),
            source: ItemSource::Input(Source::File(p)),
            label: None,
            target: None,
        })
        .collect())
}

fn npy_stack(path: &Path) -> CliResult<(npy::NpyHeader, Vec<Item>)> {
    let shown = path.display();
    let mut head = vec![0u8; 65_536 + 16];
    let mut f = std::fs::File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read --inputs {shown}: {e}")))?;
    let mut got = 0;
    loop {
        let n = f
            .read(&mut head[got..])
            .map_err(|e| CliError::usage(format!("cannot read --inputs {shown}: {e}")))?;
        got += n;
        if n == 0 || got == head.len() {
            break;
        }
    }
    head.truncate(got);
    let bad = |what: String| {
        CliError::usage(format!(
            "--inputs {shown} is not a usable .npy stack: {what}; save a float32/float64 array [N, ...] with numpy.save"
        ))
    };
    let h = npy::parse_header(&head).map_err(|e| bad(format!("{e:?}")))?;
    let size: u64 = match h.descr.trim_start_matches(['<', '>', '=', '|']) {
        "f4" => 4,
        "f8" => 8,
        other => return Err(bad(format!("it holds `{other}` values"))),
    };
    if h.fortran_order {
        return Err(bad("it is stored in Fortran order".into()));
    }
    if h.shape.len() < 2 || h.shape[0] == 0 {
        return Err(bad(format!(
            "its shape {:?} is not [N, ...] with N ≥ 1 inputs",
            h.shape
        )));
    }
    let len = f
        .metadata()
        .map_err(|e| CliError::usage(format!("cannot read --inputs {shown}: {e}")))?
        .len();
    let needed = h
        .shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d as u64));
    if needed != Some(len.saturating_sub(h.data_offset as u64)) {
        return Err(bad(format!(
            "its header claims shape {:?} but the file holds {} bytes of data (truncated or corrupt)",
            h.shape,
            len.saturating_sub(h.data_offset as u64)
        )));
    }
    let n = h.shape[0];
    let width = digits(n);
    let items = (0..n)
        .map(|i| Item {
            id: format!("row-{i:0width$}"),
            source: ItemSource::NpyRow(path.to_path_buf(), i),
            label: None,
            target: None,
        })
        .collect();
    Ok((h, items))
}

/// A row of a list: the path (relative to the list's folder), then the optional fields.
fn list_item(
    base: &Path,
    path: &str,
    id: Option<String>,
    label: Option<Value>,
    target: Option<u64>,
) -> CliResult<Item> {
    let source = Source::parse(path, Some(base))?;
    let id = folder_name(&id.unwrap_or_else(|| {
        Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
    }));
    Ok(Item {
        id,
        source: ItemSource::Input(source),
        label,
        target,
    })
}

fn read_list(path: &Path) -> CliResult<(String, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read --inputs {}: {e}", path.display())))?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((text, base))
}

fn target_of(s: &str, at: &str) -> CliResult<Option<u64>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        CliError::usage(format!(
            "{at}: target `{s}` is not a class index (a whole number ≥ 0)"
        ))
    })
}

fn csv(path: &Path) -> CliResult<Vec<Item>> {
    let (text, base) = read_list(path)?;
    let shown = path.display();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| cols.iter().position(|c| c == name);
    let Some(path_col) = col("path") else {
        return Err(CliError::usage(format!(
            "--inputs {shown}: the first line must name the columns, with a `path` column (optional: id, label, target); found `{header}`"
        )));
    };
    let (id_col, label_col, target_col) = (col("id"), col("label"), col("target"));
    let mut items = Vec::new();
    for (n, line) in lines {
        let at = format!("--inputs {shown} line {}", n + 1);
        if line.contains('"') {
            return Err(CliError::usage(format!(
                "{at}: quoted fields are not supported; use plain comma-separated values or a .jsonl list"
            )));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols.len() {
            return Err(CliError::usage(format!(
                "{at}: {} fields where the header names {}",
                fields.len(),
                cols.len()
            )));
        }
        let get = |c: Option<usize>| c.map(|c| fields[c]).filter(|s| !s.is_empty());
        let label = get(label_col).map(|s| {
            s.parse::<i64>()
                .map_or_else(|_| Value::from(s), Value::from)
        });
        let target = target_of(get(target_col).unwrap_or_default(), &at)?;
        let p = fields[path_col];
        if p.is_empty() {
            return Err(CliError::usage(format!("{at}: empty path")));
        }
        items.push(list_item(
            &base,
            p,
            get(id_col).map(String::from),
            label,
            target,
        )?);
    }
    Ok(items)
}

fn jsonl(path: &Path) -> CliResult<Vec<Item>> {
    let (text, base) = read_list(path)?;
    let shown = path.display();
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("--inputs {shown} line {}", n + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| CliError::usage(format!("{at}: not JSON: {e}")))?;
        let Some(obj) = v.as_object() else {
            return Err(CliError::usage(format!(
                "{at}: expected an object such as {{\"path\": \"img.png\", \"label\": 3}}"
            )));
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "path" | "id" | "label" | "target"))
        {
            return Err(CliError::usage(format!(
                "{at}: unknown key `{k}`; keys: path, id, label, target"
            )));
        }
        let Some(p) = obj
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        else {
            return Err(CliError::usage(format!(
                "{at}: needs a non-empty string `path`"
            )));
        };
        let id = match obj.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let target = match obj.get("target") {
            None | Some(Value::Null) => None,
            Some(t) => Some(t.as_u64().ok_or_else(|| {
                CliError::usage(format!(
                    "{at}: target {t} is not a class index (a whole number ≥ 0)"
                ))
            })?),
        };
        let label = obj.get("label").filter(|l| !l.is_null()).cloned();
        items.push(list_item(&base, p, id, label, target)?);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_ranges_and_names() {
        let m = Manifest::parse("mnist:8..12").expect("range");
        let ids: Vec<&str> = m.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["mnist-08", "mnist-09", "mnist-10", "mnist-11"]);
        assert_eq!(m.items[0].source, ItemSource::Input(Source::Mnist(8)));
        assert!(Manifest::parse("mnist:3..3").is_err());
        assert_eq!(folder_name("a b/c.png"), "a_b_c.png");
        assert_eq!(folder_name(".."), "_..");
    }

    #[test]
    fn csv_and_jsonl_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv_path = dir.path().join("list.csv");
        std::fs::write(&csv_path, "path,label,target\na.png,3,\nsub/b.npy,cat,5\n").expect("w");
        let m = Manifest::parse(&csv_path.display().to_string()).expect("csv");
        assert_eq!(m.items.len(), 2);
        assert_eq!(m.items[0].label, Some(Value::from(3)));
        assert_eq!(m.items[1].label, Some(Value::from("cat")));
        assert_eq!((m.items[0].target, m.items[1].target), (None, Some(5)));
        assert_eq!(
            m.items[1].source,
            ItemSource::Input(Source::File(dir.path().join("sub/b.npy")))
        );
        std::fs::write(&csv_path, "file\na.png\n").expect("w");
        let e = Manifest::parse(&csv_path.display().to_string()).expect_err("no path column");
        assert!(e.message.contains("`path` column"), "{}", e.message);
        std::fs::write(&csv_path, "path\na.png\na.png\n").expect("w");
        let e = Manifest::parse(&csv_path.display().to_string()).expect_err("duplicate");
        assert!(e.message.contains("same id `a.png`"), "{}", e.message);

        let jl = dir.path().join("list.jsonl");
        std::fs::write(
            &jl,
            "{\"path\": \"mnist:4\", \"id\": \"four\", \"target\": 9}\n\n{\"path\": \"x.png\"}\n",
        )
        .expect("w");
        let m = Manifest::parse(&jl.display().to_string()).expect("jsonl");
        assert_eq!(m.items[0].id, "four");
        assert_eq!(m.items[0].source, ItemSource::Input(Source::Mnist(4)));
        assert_eq!(m.items[0].target, Some(9));
        std::fs::write(&jl, "{\"path\": \"a.png\", \"lable\": 1}\n").expect("w");
        let e = Manifest::parse(&jl.display().to_string()).expect_err("typo");
        assert!(
            e.message.contains("line 1: unknown key `lable`"),
            "{}",
            e.message
        );
    }
}
