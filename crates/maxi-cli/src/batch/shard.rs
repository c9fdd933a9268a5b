//! Which share of a manifest this process explains: `--shard i/N`, else Slurm's array
//! variables, else Kubernetes' `JOB_COMPLETION_INDEX` with a count from `--shard-count` or
//! `MAXI_SHARD_COUNT`.

use crate::error::{CliError, CliResult};

/// Most shards of one manifest.
pub const MAX_SHARDS: usize = 1_000_000;

/// Share `index` of `count`: the inputs at positions `p` with `p % count == index` (round
/// robin, so neighbouring inputs of similar cost spread over the shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This share, `0..count`.
    pub index: usize,
    /// Number of shares.
    pub count: usize,
}

impl Shard {
    /// Does this shard take the input at `position`?
    pub fn takes(self, position: usize) -> bool {
        position % self.count == self.index
    }

    fn new(index: usize, count: usize, from: &str) -> CliResult<Shard> {
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(CliError::usage(format!(
                "{from}: shard {index} of {count} does not exist; shards are 0..N-1 with 1 ≤ N ≤ {MAX_SHARDS}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `i/N`.
    pub fn parse(s: &str) -> CliResult<Shard> {
        let bad = || {
            CliError::usage(format!(
                "--shard `{s}`: expected i/N with 0 ≤ i < N (e.g. 0/4 for the first of 4 shares)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n, "--shard")
    }

    /// The shard from `--shard`, else from the environment (`var` reads a variable); `None`:
    /// the whole manifest.
    pub fn resolve(
        flag: Option<&str>,
        count_flag: Option<usize>,
        var: impl Fn(&str) -> Option<String>,
    ) -> CliResult<Option<Shard>> {
        if let Some(s) = flag {
            return Shard::parse(s).map(Some);
        }
        let number = |name: &str| -> CliResult<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    CliError::usage(format!("{name}=`{v}` is not a whole number ≥ 0"))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let from = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT";
            let count = count_flag
                .or(number("SLURM_ARRAY_TASK_COUNT")?)
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT; pass --shard {id}/N or --shard-count N"
                    ))
                })?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                CliError::usage(format!(
                    "{from}: task {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?;
            return Shard::new(index, count, from).map(Some).map_err(|mut e| {
                e.message.push_str(
                    " (an array with a step, e.g. --array=0-15:2, does not number its tasks 0..N-1: pass --shard i/N)",
                );
                e
            });
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count_flag.or(number("MAXI_SHARD_COUNT")?).ok_or_else(|| {
                CliError::usage(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of shards; pass --shard-count N or set MAXI_SHARD_COUNT to the Job's completions",
                )
            })?;
            return Shard::new(index, count, "JOB_COMPLETION_INDEX").map(Some);
        }
        if let Some(n) = count_flag {
            return Err(CliError::usage(format!(
                "--shard-count {n} without a shard index; pass --shard i/{n}, or run under a Slurm array or Kubernetes Indexed Job"
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flag_slurm_and_kubernetes() {
        let s = |i, n| Some(Shard { index: i, count: n });
        assert_eq!(
            Shard::resolve(Some("1/4"), None, env(&[])).expect("flag"),
            s(1, 4)
        );
        assert!(Shard::resolve(Some("4/4"), None, env(&[])).is_err());
        assert!(Shard::resolve(Some("1"), None, env(&[])).is_err());
        assert_eq!(Shard::resolve(None, None, env(&[])).expect("none"), None);
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(
            Shard::resolve(None, None, env(&slurm)).expect("slurm"),
            s(3, 4)
        );
        // the flag wins over the environment
        assert_eq!(
            Shard::resolve(Some("0/2"), None, env(&slurm)).expect("f"),
            s(0, 2)
        );
        let offset = [
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
        ];
        assert_eq!(
            Shard::resolve(None, None, env(&offset)).expect("min"),
            s(2, 4)
        );
        let e = Shard::resolve(None, None, env(&[("SLURM_ARRAY_TASK_ID", "1")])).expect_err("n");
        assert!(
            e.message.contains("SLURM_ARRAY_TASK_COUNT"),
            "{}",
            e.message
        );
        let k8s = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(
            Shard::resolve(None, Some(5), env(&k8s)).expect("k8s"),
            s(2, 5)
        );
        let k8s_env = [("JOB_COMPLETION_INDEX", "2"), ("MAXI_SHARD_COUNT", "3")];
        assert_eq!(
            Shard::resolve(None, None, env(&k8s_env)).expect("k8s"),
            s(2, 3)
        );
        let e = Shard::resolve(None, None, env(&k8s)).expect_err("count");
        assert!(e.message.contains("--shard-count"), "{}", e.message);
        assert!(Shard::resolve(None, Some(3), env(&[])).is_err());
        // shards cover every position exactly once
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for p in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.takes(p)).count(), 1);
        }
    }
}
