//! Progress on stderr (a bar on a terminal, plain lines otherwise, nothing when quiet) and the
//! Ctrl-C stop flag, as one generator [`Observer`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use maxi::{Observer, RunInfo, StepRecord};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing.
    Quiet,
    /// A line about every 10 % of the run.
    Lines,
    /// A live progress bar.
    Bar,
}

impl Mode {
    /// The bar on a terminal, lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Mode {
        use std::io::IsTerminal;
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

struct State {
    started: Instant,
    num_iter: usize,
    bar: Option<ProgressBar>,
    last: Option<StepRecord>,
}

/// Shows progress and stops the run when the stop flag is raised.
pub struct Progress {
    mode: Mode,
    stop: Arc<AtomicBool>,
    state: Mutex<State>,
}

impl Progress {
    /// A progress observer that stops the run once `stop` is true.
    pub fn new(mode: Mode, stop: Arc<AtomicBool>) -> Self {
        Progress {
            mode,
            stop,
            state: Mutex::new(State {
                started: Instant::now(),
                num_iter: 0,
                bar: None,
                last: None,
            }),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Ok(mut s) = self.state.lock()
            && let Some(bar) = s.bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

fn message(r: &StepRecord, secs: f64) -> String {
    let rate = if secs > 0.0 {
        r.model_rows as f64 / secs
    } else {
        0.0
    };
    let valid = match r.valid {
        Some(true) => "  valid",
        Some(false) => "  not valid",
        None => "",
    };
    format!(
        "attack loss {:.4}  l1 {:.2}{valid}  {:.0} rows/s",
        r.attack_loss, r.l1_norm, rate
    )
}

/// `round 2/9 (c = 5)` for a search round, empty otherwise.
fn round_label(info: &RunInfo) -> String {
    let Some(r) = &info.round else {
        return String::new();
    };
    let settings: Vec<String> = r
        .settings
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} = {v}")).collect())
        .unwrap_or_default();
    format!("round {}/{} ({})", r.index + 1, r.of, settings.join(", "))
}

impl Observer for Progress {
    fn on_start(&self, info: &RunInfo) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if info.round.as_ref().is_none_or(|r| r.index == 0) {
            // the rate counts every round's rows from the start of the run
            s.started = Instant::now();
        }
        s.num_iter = info.num_iter;
        let round = round_label(info);
        if self.mode == Mode::Lines && !round.is_empty() {
            let _ = writeln!(std::io::stderr().lock(), "{round}");
        }
        if self.mode == Mode::Bar {
            if let Some(old) = s.bar.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::with_draw_target(
                Some(info.num_iter as u64),
                ProgressDrawTarget::stderr(),
            );
            let template = format!(
                "{{spinner}} {}iteration {{pos}}/{{len}}  {{msg}}  [{{wide_bar}}] {{elapsed}}",
                if round.is_empty() {
                    String::new()
                } else {
                    format!("{round}  ")
                }
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("starting");
            s.bar = Some(bar);
        }
    }

    fn on_step(&self, r: &StepRecord) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let secs = s.started.elapsed().as_secs_f64();
        s.last = Some(*r);
        match self.mode {
            Mode::Quiet => {}
            Mode::Bar => {
                if let Some(bar) = &s.bar {
                    bar.set_position(r.iteration as u64);
                    bar.set_message(message(r, secs));
                }
            }
            Mode::Lines => {
                let every = (s.num_iter / 10).max(1);
                if r.iteration == 1
                    || r.iteration.is_multiple_of(every)
                    || r.iteration == s.num_iter
                {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "iteration {}/{}: {}",
                        r.iteration,
                        s.num_iter,
                        message(r, secs)
                    );
                }
            }
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}
