//! The output folder, written atomically: every file goes into a hidden sibling folder that
//! replaces `--out` only when the whole run has succeeded. Hidden folders left behind by a run
//! that was killed (`.NAME.maxi-tmp-PID`, `.NAME.maxi-old-PID` with PID no longer running) are
//! removed by the next run with the same `--out`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};
use crate::list::print_stdout;

/// Prints the closing summary of a run whose outputs are already in `--out`. The outputs are
/// complete at that point, so a stdout that cannot be written (e.g. `> /dev/full`) does not fail
/// the run: the problem is reported on stderr and the exit code stays 0.
pub fn print_summary(text: &str, out: &Path) {
    if let Err(e) = print_stdout(text) {
        let _ = writeln!(
            std::io::stderr(),
            "maxi: warning: {e}; the outputs in {} are complete",
            out.display()
        );
    }
}

/// True for the names of files `maxi explain` writes.
pub fn is_maxi_output(name: &str) -> bool {
    if matches!(
        name,
        "report.json"
            | "explanation.png"
            | "explanation.npy"
            | "heatmap.png"
            | "segments.npy"
            | "segments.png"
            | "weights.npy"
            | "weights.png"
    ) {
        return true;
    }
    let Some(rest) = name.strip_prefix("iter_") else {
        return false;
    };
    let stem = rest
        .strip_suffix(".npy")
        .or_else(|| rest.strip_suffix(".png"));
    stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks that `out` can be replaced: absent, an empty folder, or a folder of earlier maxi
/// outputs only.
pub fn check_out_dir(out: &Path) -> CliResult<()> {
    let shown = out.display();
    let Ok(meta) = std::fs::symlink_metadata(out) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(CliError::usage(format!(
            "--out {shown} exists and is not a folder; choose another --out"
        )));
    }
    let entries = std::fs::read_dir(out).map_err(|e| {
        CliError::usage(format!(
            "cannot read the --out folder {shown}: {e}; choose another --out"
        ))
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            CliError::usage(format!(
                "cannot read the --out folder {shown}: {e}; choose another --out"
            ))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !is_maxi_output(&name) {
            return Err(CliError::usage(format!(
                "--out {shown} holds `{name}`, which maxi did not write; maxi replaces the whole folder, so choose a new or empty --out (or move that file)"
            )));
        }
    }
    Ok(())
}

/// A hidden folder next to `--out` that collects the outputs; removed unless committed.
pub struct Staging {
    tmp: PathBuf,
    out: PathBuf,
    /// Folders created for `out`'s parent, deepest first (removed again when discarded).
    created: Vec<PathBuf>,
    committed: bool,
    written: Vec<String>,
}

fn absolute(p: &Path) -> CliResult<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::runtime(format!("cannot find the current folder: {e}")))?;
    Ok(cwd.join(p))
}

/// Is the process `pid` running? (True when that cannot be told, so nothing of a running
/// process is ever removed.)
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        if pid <= 0 {
            return true;
        }
        // SAFETY: signal 0 sends nothing; it only asks whether `pid` exists.
        let found = unsafe { libc::kill(pid, 0) } == 0;
        found || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The PID in a staging folder's name `.NAME.maxi-TAG-PID` of `out`'s `NAME`, with the tag.
fn staging_pid<'a>(entry: &'a str, name: &str) -> Option<(&'a str, u32)> {
    let rest = entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".maxi-")?;
    let (tag, pid) = rest.split_once('-')?;
    if !matches!(tag, "tmp" | "old") || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((tag, pid.parse().ok()?))
}

/// Removes the staging folders of `out` left by runs that are no longer running (killed, or
/// quit with a second Ctrl-C). A backup of the previous outputs (`maxi-old`) is put back as
/// `out` when a run was killed between moving `out` aside and putting the new one in place.
fn remove_stale(out: &Path) {
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some((tag, pid)) = staging_pid(&file_name, &name) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if tag == "old" && std::fs::symlink_metadata(out).is_err() {
            let _ = std::fs::rename(&path, out);
        } else {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn sibling(out: &Path, tag: &str) -> CliResult<PathBuf> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            CliError::usage(format!(
                "--out {} has no folder name; give a folder such as maxi-out",
                out.display()
            ))
        })?;
    let parent = out.parent().unwrap_or(Path::new("/"));
    Ok(parent.join(format!(".{name}.maxi-{tag}-{}", std::process::id())))
}

impl Staging {
    /// Creates the staging folder for `out` (and `out`'s parent folders).
    pub fn new(out: &Path) -> CliResult<Staging> {
        let out = absolute(out)?;
        // `out` may be `.` or `..`: name it by its real path
        let out = match std::fs::canonicalize(&out) {
            Ok(real) => real,
            Err(_) => out,
        };
        let tmp = sibling(&out, "tmp")?;
        remove_stale(&out);
        let cant = |e: std::io::Error| {
            CliError::usage(format!(
                "cannot create {}: {e}; choose an --out in a writable folder",
                tmp.display()
            ))
        };
        let mut created = Vec::new();
        let mut missing = tmp.parent();
        while let Some(dir) = missing
            && !dir.exists()
        {
            created.push(dir.to_path_buf());
            missing = dir.parent();
        }
        let staging = Staging {
            tmp: tmp.clone(),
            out,
            created,
            committed: false,
            written: Vec::new(),
        };
        if let Some(parent) = tmp.parent() {
            std::fs::create_dir_all(parent).map_err(cant)?;
        }
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(cant)?;
        }
        std::fs::create_dir(&tmp).map_err(cant)?;
        Ok(staging)
    }

    /// Writes one file.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> CliResult<()> {
        let path = self.tmp.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", path.display())))?;
        self.written.push(name.to_string());
        Ok(())
    }

    /// Names of the files written so far.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// Replaces `out` with the staged folder.
    pub fn commit(mut self) -> CliResult<PathBuf> {
        let out = self.out.clone();
        let fail = |e: std::io::Error, what: &str| {
            CliError::runtime(format!("cannot {what} {}: {e}", out.display()))
        };
        if std::fs::symlink_metadata(&out).is_ok() {
            check_out_dir(&out)?;
            let old = sibling(&out, "old")?;
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(|e| fail(e, "clear the backup of"))?;
            }
            std::fs::rename(&out, &old).map_err(|e| fail(e, "move aside the old"))?;
            if let Err(e) = std::fs::rename(&self.tmp, &out) {
                let _ = std::fs::rename(&old, &out);
                return Err(fail(e, "create"));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.tmp, &out).map_err(|e| fail(e, "create"))?;
        }
        self.committed = true;
        Ok(out)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
            for dir in &self.created {
                // only empty folders go: anything else put there meanwhile stays
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names() {
        for ok in [
            "report.json",
            "iter_1.npy",
            "iter_199.png",
            "heatmap.png",
            "explanation.png",
            "segments.npy",
            "weights.png",
        ] {
            assert!(is_maxi_output(ok), "{ok}");
        }
        for bad in [
            "notes.txt",
            "iter_.npy",
            "iter_a.png",
            "iter_1.json",
            "report.json.bak",
        ] {
            assert!(!is_maxi_output(bad), "{bad}");
        }
    }

    #[test]
    fn staging_names() {
        assert_eq!(staging_pid(".out.maxi-tmp-123", "out"), Some(("tmp", 123)));
        assert_eq!(staging_pid(".out.maxi-old-9", "out"), Some(("old", 9)));
        for other in [
            ".out.maxi-tmp-",
            ".out.maxi-tmp-12a",
            ".out.maxi-new-1",
            ".other.maxi-tmp-1",
            "out.maxi-tmp-1",
            ".out.maxi-tmp-99999999999",
        ] {
            assert_eq!(staging_pid(other, "out"), None, "{other}");
        }
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn stale_staging_of_dead_runs_is_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("out");
        // a process that has ended: its PID is free (and not reused within this test)
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(dead));
        let alive = std::os::unix::process::parent_id(); // whoever started this test
        let stale = root.path().join(format!(".out.maxi-tmp-{dead}"));
        let old = root.path().join(format!(".out.maxi-old-{dead}"));
        let running = root.path().join(format!(".out.maxi-tmp-{alive}"));
        let unrelated = root.path().join(format!(".other.maxi-tmp-{dead}"));
        for d in [&stale, &old, &running, &unrelated] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::write(old.join("report.json"), b"{}").expect("write");
        remove_stale(&out);
        assert!(!stale.exists(), "a dead run's staging folder is removed");
        // the backup of a run killed while swapping comes back as `out`
        assert!(!old.exists() && out.join("report.json").is_file());
        assert!(running.exists() && unrelated.exists());
    }

    #[test]
    fn staging_replaces_or_discards() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("out");
        // discarded: nothing appears, not even the parent folders it created
        {
            let mut s = Staging::new(&root.path().join("a/b/out")).expect("staging");
            s.write("report.json", b"{}").expect("write");
            assert!(root.path().join("a/b").is_dir());
        }
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(root.path()).expect("dir").count(), 0);
        // committed: appears; a second commit replaces stale files
        let mut s = Staging::new(&out).expect("staging");
        s.write("iter_5.npy", b"x").expect("write");
        s.commit().expect("commit");
        assert!(out.join("iter_5.npy").is_file());
        let mut s = Staging::new(&out).expect("staging");
        s.write("iter_7.npy", b"y").expect("write");
        s.commit().expect("commit");
        assert!(out.join("iter_7.npy").is_file() && !out.join("iter_5.npy").exists());
        assert_eq!(std::fs::read_dir(root.path()).expect("dir").count(), 1);
        // foreign files are refused
        std::fs::write(out.join("notes.txt"), b"mine").expect("write");
        assert_eq!(check_out_dir(&out).expect_err("foreign").code, 2);
    }
}
