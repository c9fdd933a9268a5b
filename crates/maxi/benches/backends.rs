//! Model backends under a real explanation: a 200-step CEM pertinent positive (URV, q = 100,
//! AO-ExpGrad) of MNIST test image 2953 on the bundled CNN, per backend and thread count, and
//! the same run with a trivial linear model (784 → 10) that isolates the framework's overhead.
//!
//! ```text
//! cargo bench -p maxi --bench backends                      # every configuration
//! cargo bench -p maxi --bench backends -- onnxruntime linear # names containing a filter
//! MAXI_BENCH_STEPS=20 MAXI_BENCH_REPEATS=1 cargo bench -p maxi --bench backends  # quick
//! MAXI_BENCH_BATCH_SIZE=16 cargo bench -p maxi --bench backends -- onnx  # batch_size kwarg
//! ```
//!
//! Configurations: `onnx-1`, `onnx-N` (tract on 1 thread and on all N cores), `onnxruntime-1`,
//! `onnxruntime-N` (skipped with the reason when the backend is not linked or ONNX Runtime is
//! not installed), `linear-1`. Models are built through the registry by backend name, as a
//! config file or the CLI would.
//!
//! Each configuration runs in a child process (this binary re-executed with
//! `MAXI_BENCH_CHILD=<configuration>`), so that its peak RSS (`VmHWM`) is its own. A child
//! loads the model once, runs the explanation `MAXI_BENCH_REPEATS` times (default 3) and
//! reports the run with the median wall time. Columns: wall time of the run, time inside the
//! model (`Explanation.model.seconds`), model rows and calls, rows per model-second,
//! the share of the wall time spent outside the model, the framework overhead per step
//! ((wall − model) / steps), peak RSS of the process, and the final objective and a hash of
//! the final candidate's bits (equal hashes: bit-identical explanations), and `bg%`: the CPU
//! that other processes used during the runs, as a share of the machine (from `/proc/stat`;
//! anything above a few percent means the timings of that line are disturbed).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use maxi::ndarray::{Array2, ArrayViewD};
use maxi::registry::ModelContext;
use maxi::serde_json::{self, Value, json};
use maxi::{ExplanationGenerator, Kwargs, MaxiError, Model, mnist, model_fn};

const CHILD_VAR: &str = "MAXI_BENCH_CHILD";
/// Optional `batch_size` kwarg for the ONNX backends (rows per call).
const BATCH_VAR: &str = "MAXI_BENCH_BATCH_SIZE";
const IMAGE: usize = 2953;

/// One benchmark configuration: a backend name (or `linear`) and a thread count.
#[derive(Clone, Debug)]
struct Config {
    backend: String,
    threads: usize,
}

impl Config {
    fn label(&self) -> String {
        format!("{}-{}", self.backend, self.threads)
    }

    fn parse(label: &str) -> Option<Config> {
        let (backend, threads) = label.rsplit_once('-')?;
        Some(Config {
            backend: backend.to_string(),
            threads: threads.parse().ok()?,
        })
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The trivial linear model 784 → 10 (the weights of the `step` benchmark).
fn linear() -> Arc<dyn Model> {
    let w = Array2::from_shape_fn((784, 10), |(i, j)| {
        ((i * 10 + j) as f64 * 0.37).sin() * 0.01
    });
    model_fn("linear", move |b: ArrayViewD<'_, f64>| {
        let n = b.shape()[0];
        let flat = b
            .to_shape((n, 784))
            .expect("linear model: items of 784 values")
            .to_owned();
        flat.dot(&w).into_dyn()
    })
}

/// Builds the CNN through the registry with the named backend, as a config would.
fn registry_model(backend: &str, threads: usize) -> maxi::Result<Arc<dyn Model>> {
    let path = mnist::bundled_fixtures_dir().join("mnist/mnist_cnn.onnx");
    let registry = maxi::registry::global()?;
    let component = registry.get::<maxi::ModelKind>(backend)?;
    drop(registry);
    let mut kwargs = Kwargs::new()
        .set("path", path.display().to_string())?
        .set("threads", threads)?;
    if let Some(rows) = std::env::var(BATCH_VAR)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        kwargs = kwargs.set("batch_size", rows)?;
    }
    component
        .prepare(&kwargs)?
        .build(&ModelContext { base_dir: None })
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU ticks (1/100 s) used so far by the whole machine and by this process (`/proc`).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest: Vec<&str> = own[own.rfind(')')? + 2..].split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the file, 12 and 13 after the command name.
    let me = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((busy, me))
}

/// FNV-1a over the bits of the final candidate.
fn bits_hash(values: impl Iterator<Item = f64>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for byte in v.to_bits().to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", h >> 32)
}

/// Runs one configuration in this process and returns its measurements as JSON.
fn child(config: &Config, steps: usize, repeats: usize) -> Result<Value, String> {
    let load_start = Instant::now();
    let model = if config.backend == "linear" {
        linear()
    } else {
        match registry_model(&config.backend, config.threads) {
            Ok(m) => m,
            Err(e @ MaxiError::UnknownComponent { .. }) => {
                return Ok(json!({"skipped": format!(
                    "{e} (is the backend's cargo feature on?)"
                )}));
            }
            Err(MaxiError::ModelLoad { message, .. }) => {
                return Ok(json!({"skipped": message}));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let load_s = load_start.elapsed().as_secs_f64();
    let x = mnist::test_image(IMAGE).map_err(|e| e.to_string())?;
    let kw = |v: Value| Kwargs::try_from(v).map_err(|e| e.to_string());
    let generator = ExplanationGenerator::builder()
        .loss(
            "cem",
            kw(json!({"mode": "PP", "c": 10.0, "K": 2.0, "gamma": 0.0, "no_info_val": -0.5}))?,
        )
        .optimizer("ao_exp_grad", kw(json!({"l1": 1.0, "l2": 0.0}))?)
        .gradient("urv", kw(json!({"sample_num": 100}))?)
        .num_iter(steps)
        .seed(0)
        .build()
        .map_err(|e| e.to_string())?;
    let mut runs = Vec::new();
    let ticks_before = cpu_ticks();
    let runs_start = Instant::now();
    for _ in 0..repeats {
        let e = generator
            .run(x.view(), model.clone())
            .map_err(|e| e.to_string())?;
        runs.push(e);
    }
    // CPU used by other processes while the runs went on, as a share of the machine.
    let background = match (ticks_before, cpu_ticks()) {
        (Some((b0, m0)), Some((b1, m1))) => Some(
            (b1 - b0).saturating_sub(m1 - m0) as f64
                / (runs_start.elapsed().as_secs_f64() * 100.0 * cores() as f64),
        ),
        _ => None,
    };
    runs.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let e = &runs[runs.len() / 2];
    let final_candidate = e.final_candidate().ok_or("the run produced no candidate")?;
    Ok(json!({
        "wall_s": e.wall_seconds,
        "model_s": e.model.seconds,
        "rows": e.model.rows,
        "calls": e.model.calls,
        "steps": e.history.len(),
        "objective": e.last_record().map(|r| r.objective),
        "hash": bits_hash(final_candidate.iter().copied()),
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "background": background,
        "walls": runs.iter().map(|r| r.wall_seconds).collect::<Vec<_>>(),
    }))
}

fn main() {
    let steps = env_usize("MAXI_BENCH_STEPS", 200);
    let repeats = env_usize("MAXI_BENCH_REPEATS", 3);
    if let Ok(label) = std::env::var(CHILD_VAR) {
        let result = Config::parse(&label)
            .ok_or_else(|| format!("bad configuration `{label}`"))
            .and_then(|c| child(&c, steps, repeats));
        match result {
            Ok(v) => println!("{v}"),
            Err(e) => {
                eprintln!("{label}: {e}");
                std::process::exit(1);
            }
        }
        return;
    }

    // `cargo bench` passes `--bench`; everything not starting with `-` is a filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n = cores();
    let mut configs = Vec::new();
    for backend in ["onnx", "onnxruntime"] {
        for threads in [1, n] {
            if threads == 1 || n > 1 {
                configs.push(Config {
                    backend: backend.to_string(),
                    threads,
                });
            }
        }
    }
    configs.push(Config {
        backend: "linear".into(),
        threads: 1,
    });
    configs.retain(|c| filters.is_empty() || filters.iter().any(|f| c.label().contains(f)));
    if configs.is_empty() {
        eprintln!(
            "no configuration matches {filters:?}; names: onnx-1, onnx-{n}, onnxruntime-1, \
             onnxruntime-{n}, linear-1"
        );
        std::process::exit(2);
    }

    println!(
        "CEM PP of MNIST test image {IMAGE}: urv q = 100, ao_exp_grad, {steps} steps; \
         median of {repeats} run(s) by wall time; {n} core(s)"
    );
    println!(
        "{:<15} {:>7} {:>8} {:>7} {:>6} {:>8} {:>9} {:>10} {:>8} {:>16} {:>9} {:>6}",
        "config",
        "wall s",
        "model s",
        "rows",
        "calls",
        "rows/s",
        "outside%",
        "ms/step",
        "RSS MB",
        "final objective",
        "hash",
        "bg%"
    );
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find this benchmark's executable: {e}");
            std::process::exit(1);
        }
    };
    let mut failed = false;
    for c in &configs {
        let out = Command::new(&exe)
            .env(CHILD_VAR, c.label())
            .env("MAXI_BENCH_STEPS", steps.to_string())
            .env("MAXI_BENCH_REPEATS", repeats.to_string())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                println!("{:<15} failed to start: {e}", c.label());
                failed = true;
                continue;
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<Value> = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok());
        let Some(v) = parsed.filter(|_| out.status.success()) else {
            println!(
                "{:<15} failed: {}",
                c.label(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            failed = true;
            continue;
        };
        if let Some(reason) = v["skipped"].as_str() {
            println!("{:<15} skipped: {reason}", c.label());
            continue;
        }
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let (wall, model) = (f("wall_s"), f("model_s"));
        let rows = v["rows"].as_u64().unwrap_or(0);
        let steps_done = v["steps"].as_u64().unwrap_or(steps as u64).max(1);
        println!(
            "{:<15} {:>7.3} {:>8.3} {:>7} {:>6} {:>8.0} {:>8.2}% {:>10.3} {:>8.1} {:>16.9e} {:>9} {:>5.0}%",
            c.label(),
            wall,
            model,
            rows,
            v["calls"].as_u64().unwrap_or(0),
            rows as f64 / model,
            100.0 * (wall - model) / wall,
            1e3 * (wall - model) / steps_done as f64,
            f("peak_rss_mb"),
            f("objective"),
            v["hash"].as_str().unwrap_or("?"),
            100.0 * f("background"),
        );
    }
    if failed {
        std::process::exit(1);
    }
}
