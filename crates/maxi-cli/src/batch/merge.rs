//! `maxi merge DIR... --out DIR`: one `results.jsonl` and summary from the folders of the
//! shards of one batch, reporting inputs that are missing or present more than once.

use std::collections::HashMap;
use std::path::Path;

use maxi::serde_json::{self, Map, Value, json};

use super::results::{self, Summary};
use super::{BATCH_JSON, RESULTS, SUMMARY, read_json};
use crate::cli::MergeArgs;
use crate::error::{CliError, CliResult};

/// What must agree between the shards of one batch.
const SAME: [&str; 5] = ["config_file", "config_fingerprint", "seed", "inputs", "ids"];

/// Runs `maxi merge`; returns 0, or fails (exit 1) when inputs are missing or duplicated —
/// after writing what there is.
pub fn run(args: &MergeArgs) -> CliResult<u8> {
    let mut first: Option<(String, Value)> = None;
    let mut shards_seen: HashMap<usize, Vec<String>> = HashMap::new();
    let mut shard_count: Option<usize> = None;
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut duplicates: Vec<(String, Vec<String>)> = Vec::new();
    // id → (which folder argument, its name)
    let mut found_in: HashMap<String, (usize, String)> = HashMap::new();
    for (k, dir) in args.dirs.iter().enumerate() {
        let shown = dir.display().to_string();
        let Some(desc) = read_json(&dir.join(BATCH_JSON)) else {
            return Err(CliError::usage(format!(
                "{shown} is not the output of maxi batch (no readable {BATCH_JSON}); give the --out folders of the shards"
            )));
        };
        match &first {
            None => first = Some((shown.clone(), desc.clone())),
            Some((other, d)) => {
                if let Some(k) = SAME.iter().find(|k| d.get(**k) != desc.get(**k)) {
                    return Err(CliError::usage(format!(
                        "{shown} and {other} are not shards of one batch: their `{k}` differs ({BATCH_JSON}); merge the folders of one run"
                    )));
                }
            }
        }
        match desc["shard"]
            .as_array()
            .map(|a| (a[0].as_u64(), a[1].as_u64()))
        {
            Some((Some(i), Some(n))) => {
                if shard_count.is_some_and(|c| c != n as usize) {
                    return Err(CliError::usage(format!(
                        "{shown} is shard {i}/{n} but another folder was split into {} shards; merge the folders of one split",
                        shard_count.unwrap_or_default()
                    )));
                }
                shard_count = Some(n as usize);
                shards_seen
                    .entry(i as usize)
                    .or_default()
                    .push(shown.clone());
            }
            _ => {
                shard_count.get_or_insert(1);
                shards_seen.entry(0).or_default().push(shown.clone());
            }
        }
        let path = dir.join(RESULTS);
        let lines = if path.is_file() {
            results::read_jsonl(&path)?
        } else {
            Vec::new()
        };
        for mut line in lines {
            let Some(id) = line["id"].as_str().map(String::from) else {
                continue;
            };
            if let Some(d) = line.get("dir").and_then(Value::as_str) {
                let joined = Path::new(dir).join(d).display().to_string();
                line["dir"] = json!(joined);
            }
            if found_in.get(&id).is_some_and(|(j, _)| *j == k) {
                // a shard's live lines from runs that were killed: the later line wins
                by_id.insert(id, line);
                continue;
            }
            if let Some((_, prev)) = found_in.get(&id) {
                match duplicates.iter_mut().find(|(d, _)| *d == id) {
                    Some((_, dirs)) => dirs.push(shown.clone()),
                    None => duplicates.push((id.clone(), vec![prev.clone(), shown.clone()])),
                }
                continue;
            }
            found_in.insert(id.clone(), (k, shown.clone()));
            by_id.insert(id, line);
        }
    }
    let Some((_, desc)) = first else {
        return Err(CliError::usage("maxi merge needs at least one folder"));
    };
    let ids: Vec<&str> = desc["ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let count = shard_count.unwrap_or(1);
    let missing_shards: Vec<usize> = (0..count)
        .filter(|i| !shards_seen.contains_key(i))
        .collect();
    let twice: Vec<String> = shards_seen
        .iter()
        .filter(|(_, d)| d.len() > 1)
        .map(|(i, d)| format!("shard {i}/{count} in {}", d.join(" and ")))
        .collect();
    let mut summary = Summary::default();
    let mut missing: Vec<&str> = Vec::new();
    let mut merged = Vec::with_capacity(ids.len());
    for id in &ids {
        match by_id.remove(*id) {
            Some(line) => {
                summary.add(&line);
                merged.push(line);
            }
            None => missing.push(id),
        }
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| CliError::usage(format!("cannot create --out {}: {e}", args.out.display())))?;
    results::write_jsonl(&args.out.join(RESULTS), merged)?;
    let mut extra = Map::new();
    extra.insert("merged_from".into(), json!(args.dirs));
    extra.insert("shards".into(), json!(count));
    extra.insert("missing_shards".into(), json!(missing_shards));
    extra.insert("missing".into(), json!(missing));
    extra.insert(
        "duplicates".into(),
        json!(
            duplicates
                .iter()
                .map(|(id, d)| json!({"id": id, "dirs": d}))
                .collect::<Vec<_>>()
        ),
    );
    let summary = summary.to_json(extra);
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| CliError::runtime(format!("cannot encode {SUMMARY}: {e}")))?;
    results::write_atomic(&args.out.join(SUMMARY), &(text + "\n"))?;
    if !args.quiet {
        let mut text = results::summary_text(&summary);
        text.push_str(&format!(
            "merged {} of {} inputs from {} folder(s) into {}/{RESULTS}\n",
            summary["inputs"],
            ids.len(),
            args.dirs.len(),
            args.out.display()
        ));
        crate::output::print_summary(&text, &args.out);
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let shards = if missing_shards.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = missing_shards
                .iter()
                .map(|i| format!("{i}/{count}"))
                .collect();
            format!("; shard(s) {} not among the folders", names.join(", "))
        };
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        problems.push(format!(
            "{} of {} inputs missing (e.g. {}){shards}",
            missing.len(),
            ids.len(),
            shown.join(", ")
        ));
    }
    if !duplicates.is_empty() {
        let shown: Vec<String> = duplicates
            .iter()
            .take(5)
            .map(|(id, d)| format!("{id} in {}", d.join(" and ")))
            .collect();
        problems.push(format!(
            "{} input(s) present more than once (kept the first): {}",
            duplicates.len(),
            shown.join("; ")
        ));
    }
    if !twice.is_empty() {
        problems.push(format!("folders of the same shard: {}", twice.join("; ")));
    }
    if problems.is_empty() {
        Ok(0)
    } else {
        Err(CliError::runtime(format!(
            "merge: {}; rerun the missing shards (maxi batch resumes) and merge again",
            problems.join("; ")
        )))
    }
}
