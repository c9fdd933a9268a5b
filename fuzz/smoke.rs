//! The stable fuzz driver of the workspace's `fuzz_smoke` tests (CI runs them; cargo-fuzz and
//! nightly are for deep fuzzing by hand). For one target it
//! 1. replays every file of the committed corpus `fuzz/corpus/<target>/` through the target's
//!    check (`checks/<target>.rs`, the body of the cargo-fuzz target), then
//! 2. feeds the check seeded random mutations of the corpus (bit flips, byte and integer
//!    overwrites, insertions, deletions, copies, splices of two entries) for
//!    `MAXI_FUZZ_SECONDS` seconds (default 10).
//!
//! `MAXI_FUZZ_SEED` (decimal or `0x` hex) picks the mutation sequence: the same seed tries the
//! same inputs in the same order, only how far it gets depends on the machine. The seed and the
//! number of inputs tried go straight to stdout (past the harness's capture). A check that
//! panics fails the test; an input that runs longer than 10 s aborts the test binary (a hang
//! cannot be interrupted). Either way the input is printed as hex and saved, ready for the
//! corpus.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds of mutations per target.
pub const SECONDS_VAR: &str = "MAXI_FUZZ_SECONDS";
/// The mutation sequence's seed.
pub const SEED_VAR: &str = "MAXI_FUZZ_SEED";
const DEFAULT_SECONDS: f64 = 10.0;
/// "maxifuzz" in ASCII.
const DEFAULT_SEED: u64 = 0x6d61_7869_6675_7a7a;
/// Longest time one input may take (libFuzzer's `-timeout=10` in the old CI step).
const INPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Mutants grow up to this many times the longest corpus entry (at least 4 KiB).
const GROWTH: usize = 4;

/// Replays the corpus in `corpus_dir` through `check`, then runs the seeded mutation loop
/// (see the module docs); panics with the failing input when `check` does.
pub fn run(target: &str, corpus_dir: &Path, check: fn(&[u8])) {
    let seconds = env_or(SECONDS_VAR, DEFAULT_SECONDS, |s| {
        s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    });
    let seed = env_or(SEED_VAR, DEFAULT_SEED, parse_seed);
    let corpus = read_corpus(corpus_dir);
    let watchdog = Watchdog::start(target);

    for (name, data) in &corpus {
        watchdog.run(data.clone(), Origin::Corpus(name.clone()), check);
    }

    let pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, data)| data).collect();
    let max_len = GROWTH * pool.iter().map(Vec::len).max().unwrap_or(0).max(1024);
    let mut recent: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng(seed);
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(seconds);
    let mut mutants = 0u64;
    while start.elapsed() < deadline {
        // mostly a corpus entry, sometimes an earlier mutant (deeper chains), rarely nothing
        let mut input = match rng.below(32) {
            0..8 if !recent.is_empty() => recent[rng.below(recent.len())].clone(),
            8 => Vec::new(),
            _ => pool[rng.below(pool.len())].clone(),
        };
        mutate(&mut rng, &mut input, &pool, max_len);
        mutants += 1;
        let input = watchdog.run(input, Origin::Mutant(mutants, seed), check);
        if rng.below(8) == 0 {
            if recent.len() < 256 {
                recent.push(input);
            } else {
                let k = rng.below(recent.len());
                recent[k] = input;
            }
        }
    }
    let elapsed = start.elapsed();
    say(&format!(
        "fuzz smoke {target}: replayed {} corpus files, then {mutants} mutated inputs in {:.1} s ({:.0}/s); {SEED_VAR}={seed:#x} {SECONDS_VAR}={seconds}",
        pool.len(),
        elapsed.as_secs_f64(),
        mutants as f64 / elapsed.as_secs_f64().max(1e-9),
    ));
    watchdog.stop();
}

/// The value of `var`, or `default` when unset; a value `parse` rejects fails the test.
fn env_or<T>(var: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> T {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => default,
        Ok(s) => parse(s.trim()).unwrap_or_else(|| panic!("{var}={s:?} is not valid")),
        Err(e) => panic!("{var}: {e}"),
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Every file of `dir` (sorted by name); an empty or missing corpus fails the test.
fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus folder {}: {e}", dir.display()));
    let mut corpus: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    corpus.sort();
    assert!(!corpus.is_empty(), "no corpus files in {}", dir.display());
    corpus
}

/// A line on stdout past the test harness's capture, so passing tests show it too.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where an input comes from.
enum Origin {
    /// The corpus file of this name.
    Corpus(String),
    /// The n-th mutant of a seed.
    Mutant(u64, u64),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Corpus(name) => write!(f, "corpus file {name}"),
            Origin::Mutant(n, seed) => write!(f, "mutant {n} of {SEED_VAR}={seed:#x}"),
        }
    }
}

/// Writes the failing `data` to the test's tmp folder and describes it (`what` it is, `why` it
/// fails) for the report.
fn describe_failure(target: &str, what: &Origin, why: &str, data: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let file = dir.join(format!("{target}-{:016x}", fnv1a(data)));
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, data))
        .map_or_else(
            |e| format!("(not saved: {e})"),
            |()| format!("saved as {}", file.display()),
        );
    format!(
        "fuzz smoke {target}: {what} {why}; {} bytes, {saved}; add it to the corpus with\n  cp {} fuzz/corpus/{target}/\nor from its hex with `xxd -r -p`:\n{}",
        data.len(),
        file.display(),
        hex(data)
    )
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The input being checked, since when, and where it comes from: shared with the thread that
/// watches for hangs.
type Current = Mutex<Option<(Instant, Arc<Vec<u8>>, Origin)>>;

/// Runs checks and aborts the process when one input takes longer than [`INPUT_TIMEOUT`].
struct Watchdog {
    target: String,
    current: Arc<Current>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(target: &str) -> Watchdog {
        let current: Arc<Current> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (current, done, target) = (current.clone(), done.clone(), target.to_string());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    let guard = current.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((since, data, what)) = guard.as_ref()
                        && since.elapsed() > INPUT_TIMEOUT
                    {
                        let why = format!("runs longer than {INPUT_TIMEOUT:?} (aborting)");
                        let report = describe_failure(&target, what, &why, data);
                        // stderr is unbuffered and not captured: the report survives the abort
                        let _ = writeln!(std::io::stderr().lock(), "{report}");
                        std::process::abort();
                    }
                }
            })
        };
        Watchdog {
            target: target.to_string(),
            current,
            done,
            thread,
        }
    }

    /// Runs `check(data)` and gives `data` back; panics with a description of `data` when the
    /// check panics.
    fn run(&self, data: Vec<u8>, origin: Origin, check: fn(&[u8])) -> Vec<u8> {
        let data = Arc::new(data);
        *self.current.lock().unwrap() = Some((Instant::now(), data.clone(), origin));
        let result = catch_unwind(AssertUnwindSafe(|| check(&data)));
        let (_, _, origin) = self.current.lock().unwrap().take().expect("current input");
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            let why = format!("fails the check: {message}");
            panic!("{}", describe_failure(&self.target, &origin, &why, &data));
        }
        Arc::try_unwrap(data).unwrap_or_else(|shared| shared.to_vec())
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().expect("watchdog thread");
    }
}

/// splitmix64: small, fast, and the same sequence everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Any byte, or (half the time) printable ASCII, which keeps text formats valid UTF-8.
    fn byte(&mut self) -> u8 {
        let r = self.next();
        if r & 1 == 0 {
            (r >> 8) as u8
        } else {
            b' ' + ((r >> 8) % 95) as u8
        }
    }

    /// A length in `1..=n`, short ones more likely.
    fn len_up_to(&mut self, n: usize) -> usize {
        let cap = 1 + self.below(n.max(1));
        1 + self.below(cap)
    }
}

/// Bytes that matter to the parsers: boundaries, digits, and TOML/JSON/`.npy` punctuation.
const INTERESTING_BYTES: &[u8] = b"\x00\x01\x7f\x80\xff09-+.eE\"'[]{}=:,\n\t #<>|";
/// Integers that sit on size and sign boundaries, written little or big endian.
const INTERESTING_INTS: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// Applies 1, 2, 4 or 8 random edits to `data` (libFuzzer-style "havoc"), drawing splices
/// from `pool`, and keeps it at most `max_len` bytes long.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], max_len: usize) {
    for _ in 0..1 << rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            // flip one bit
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            // overwrite a byte with a random or an interesting one
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = if rng.below(2) == 0 {
                    rng.byte()
                } else {
                    INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                };
            }
            // add a small delta to a byte (counters, lengths, ASCII digits)
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(rng.below(33) as u8).wrapping_sub(16);
            }
            // overwrite 2, 4 or 8 bytes with an interesting integer (±1), either endianness
            3 => {
                let width = 2 << rng.below(3);
                if len >= width {
                    let v = INTERESTING_INTS[rng.below(INTERESTING_INTS.len())]
                        .wrapping_add(rng.below(3) as u64)
                        .wrapping_sub(1);
                    let bytes = if rng.below(2) == 0 {
                        v.to_le_bytes()
                    } else {
                        (v << (64 - 8 * width)).to_be_bytes()
                    };
                    let i = rng.below(len - width + 1);
                    data[i..i + width].copy_from_slice(&bytes[..width]);
                }
            }
            // insert random bytes, or one byte repeated
            4 => {
                let n = rng.len_up_to(16);
                let i = rng.below(len + 1);
                let bytes: Vec<u8> = if rng.below(2) == 0 {
                    (0..n).map(|_| rng.byte()).collect()
                } else {
                    vec![INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]; n]
                };
                data.splice(i..i, bytes);
            }
            // delete a range
            5 if len > 0 => {
                let n = rng.len_up_to(len);
                let i = rng.below(len - n + 1);
                data.drain(i..i + n);
            }
            // copy a range of the input over, or into, another place of it
            6 if len > 0 => {
                let n = rng.len_up_to(len);
                let from = rng.below(len - n + 1);
                let chunk = data[from..from + n].to_vec();
                let to = rng.below(len + 1);
                if rng.below(2) == 0 {
                    data.splice(to..to, chunk);
                } else {
                    let end = (to + n).min(len);
                    data.splice(to..end, chunk);
                }
            }
            // splice: this input's head with another entry's tail
            7 => {
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            // insert a range of another entry
            _ => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let n = rng.len_up_to(other.len());
                    let from = rng.below(other.len() - n + 1);
                    let to = rng.below(len + 1);
                    data.splice(to..to, other[from..from + n].iter().copied());
                }
            }
        }
    }
    data.truncate(max_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_reproducible_and_bounded() {
        let pool = vec![b"abc".to_vec(), vec![0u8; 40]];
        let run = |seed| {
            let mut rng = Rng(seed);
            (0..2000)
                .map(|k| {
                    let mut d = pool[k % 2].clone();
                    mutate(&mut rng, &mut d, &pool, 64);
                    assert!(d.len() <= 64);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn seeds_parse_in_decimal_and_hex() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed("0x2a"), Some(42));
        assert_eq!(parse_seed("x"), None);
    }
}
