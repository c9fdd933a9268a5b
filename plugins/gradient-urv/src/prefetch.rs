//! The background thread that draws the next call's directions while the model evaluates the
//! current batch.
//!
//! Handing a job to a sleeping thread costs the caller a wake-up (a futex call, and on a
//! virtual machine an interrupt to an idle CPU: 20–35 µs measured on the 2-core test machine,
//! a sixth of the estimator's own work per update). When calls come at least
//! [`DOZE_MIN_PERIOD`] apart (a real model), the thread does not wait to be woken: it dozes
//! until a quarter period after the next job is due and picks it up then, while the model
//! still runs; the caller only leaves the job in a slot. If the thread has not picked a job up
//! by the time its result is needed, the caller takes it back and draws it itself. For quick
//! calls (trivial models) the thread sleeps until woken, as a plain channel would.
//!
//! Who draws does not change what is drawn: a job carries its own sampler, so the directions
//! are the same bits on either path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use maxi_directions::normal::NormalSampler;

use crate::Directions;

/// Calls at least this far apart let the thread doze instead of being woken.
pub(crate) const DOZE_MIN_PERIOD: Duration = Duration::from_millis(1);

/// A job: a sampler, a buffer to fill, `q` and `d`.
struct Job {
    sampler: Box<NormalSampler>,
    dirs: Directions,
    q: usize,
    d: usize,
}

/// The job handed over and not yet picked up, and when jobs are handed over.
#[derive(Default)]
struct Slot {
    job: Option<Job>,
    /// When the last job was handed over.
    last: Option<Instant>,
    /// The time between the last two hand-overs.
    period: Option<Duration>,
}

impl Job {
    fn draw(mut self) -> Directions {
        self.dirs.draw(self.q, self.d, &mut self.sampler);
        self.dirs
    }
}

/// What the caller and the thread share.
struct Shared {
    slot: Mutex<Slot>,
    /// The thread waits to be woken (no deadline): the caller must unpark it.
    asleep: AtomicBool,
    /// The caller is gone: the thread ends.
    closed: AtomicBool,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // a job is plain data: a panic elsewhere leaves it usable
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a job's result came back (counted for the tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paths {
    /// Drawn by the thread.
    pub(crate) picked_up: u64,
    /// Taken back and drawn by the caller.
    pub(crate) taken_back: u64,
}

/// A background thread that draws the next call's directions.
pub(crate) struct Prefetcher {
    shared: Arc<Shared>,
    done: Receiver<Directions>,
    worker: Option<JoinHandle<()>>,
    /// A job was handed over and its result not yet taken.
    busy: bool,
    paths: Paths,
}

impl Prefetcher {
    /// Starts the thread; `None` when the system refuses one (directions are then drawn in
    /// line).
    pub(crate) fn start() -> Option<Self> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            asleep: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let (finished, done) = channel();
        let theirs = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("maxi-urv-directions".into())
            .spawn(move || {
                while let Some(job) = next_job(&theirs) {
                    if finished.send(job.draw()).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Prefetcher {
            shared,
            done,
            worker: Some(worker),
            busy: false,
            paths: Paths::default(),
        })
    }

    /// Hands over the drawing of `q` directions of `d` entries from `sampler` into `dirs`.
    pub(crate) fn send(
        &mut self,
        sampler: Box<NormalSampler>,
        dirs: Directions,
        q: usize,
        d: usize,
    ) {
        {
            let mut slot = self.shared.slot();
            let now = Instant::now();
            slot.period = slot.last.map(|l| now.saturating_duration_since(l));
            slot.last = Some(now);
            slot.job = Some(Job {
                sampler,
                dirs,
                q,
                d,
            });
        }
        self.busy = true;
        if self.shared.asleep.load(Ordering::SeqCst)
            && let Some(w) = &self.worker
        {
            w.thread().unpark();
        }
    }

    /// The directions of the job handed over last (`None` when there is none): from the
    /// thread, or drawn here when the thread has not picked the job up.
    pub(crate) fn take(&mut self) -> Option<Directions> {
        if !std::mem::take(&mut self.busy) {
            return None;
        }
        let unclaimed = self.shared.slot().job.take();
        if let Some(job) = unclaimed {
            self.paths.taken_back += 1;
            return Some(job.draw());
        }
        self.paths.picked_up += 1;
        self.done.recv().ok()
    }

    /// How the results so far came back.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> Paths {
        self.paths
    }
}

/// The thread's wait for its next job (`None`: the caller is gone). When jobs come at least
/// [`DOZE_MIN_PERIOD`] apart, it dozes until a quarter period after the next one is due,
/// looks, and looks again every eighth of a period until one period after it was due; then
/// (and for quick calls) it sleeps until woken.
fn next_job(shared: &Shared) -> Option<Job> {
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            return None;
        }
        let (last, period) = {
            let mut slot = shared.slot();
            if let Some(job) = slot.job.take() {
                return Some(job);
            }
            (slot.last, slot.period)
        };
        let (Some(last), Some(period)) = (last, period) else {
            break;
        };
        if period < DOZE_MIN_PERIOD {
            break;
        }
        let now = Instant::now();
        let look = last + period + period / 4;
        if now < look {
            std::thread::park_timeout(look - now);
        } else if now < last + 2 * period {
            std::thread::park_timeout(period / 8);
        } else {
            break;
        }
    }
    shared.asleep.store(true, Ordering::SeqCst);
    let job = loop {
        if let Some(job) = shared.slot().job.take() {
            break Some(job);
        }
        if shared.closed.load(Ordering::SeqCst) {
            break None;
        }
        std::thread::park();
    };
    shared.asleep.store(false, Ordering::SeqCst);
    job
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxi_core::{MaxiRng, rng_from_seed};

    fn empty() -> Directions {
        Directions {
            z: Vec::new(),
            inv_norm: Vec::new(),
        }
    }

    /// Hands over `jobs` jobs `gap` apart and takes each result `wait` after handing it
    /// over; every result must equal the same sampler's draw in line.
    fn run(p: &mut Prefetcher, rng: &mut MaxiRng, jobs: usize, gap: Duration, wait: Duration) {
        let (q, d) = (7, 33);
        for _ in 0..jobs {
            let start = Instant::now();
            let mut twin = rng.clone();
            let sampler = NormalSampler::new(rng);
            let mut expected = empty();
            expected.draw(q, d, &mut NormalSampler::new(&mut twin));
            p.send(Box::new(sampler), empty(), q, d);
            std::thread::sleep(wait);
            let got = p.take().expect("a job was handed over");
            assert_eq!(got.z, expected.z);
            assert_eq!(got.inv_norm, expected.inv_norm);
            if let Some(rest) = gap.checked_sub(start.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    #[test]
    fn results_are_the_in_line_draws_whoever_draws_them() {
        let mut rng = rng_from_seed(11);
        let mut p = Prefetcher::start().expect("a thread");
        // quick calls: the thread sleeps until woken and draws the job before it is needed
        run(
            &mut p,
            &mut rng,
            20,
            Duration::ZERO,
            Duration::from_micros(300),
        );
        let quick = p.paths();
        assert!(quick.picked_up >= 10, "{quick:?}");
        // calls 4 ms apart, each result needed at once: the thread dozes; the caller takes
        // the jobs back
        run(
            &mut p,
            &mut rng,
            20,
            Duration::from_millis(4),
            Duration::ZERO,
        );
        let eager = p.paths();
        assert!(eager.taken_back - quick.taken_back >= 10, "{eager:?}");
        // calls 4 ms apart, results needed 3 ms later: the thread wakes by itself a quarter
        // period after a job is due and draws it
        run(
            &mut p,
            &mut rng,
            20,
            Duration::from_millis(4),
            Duration::from_millis(3),
        );
        let slow = p.paths();
        assert!(slow.picked_up - eager.picked_up >= 10, "{slow:?}");
        assert!(p.take().is_none());
    }

    #[test]
    fn dropping_it_ends_the_thread_dozing_or_asleep() {
        let mut rng = rng_from_seed(3);
        for gap in [Duration::ZERO, Duration::from_millis(4)] {
            let mut p = Prefetcher::start().expect("a thread");
            run(&mut p, &mut rng, 3, gap, Duration::from_millis(1));
            let start = Instant::now();
            drop(p);
            assert!(start.elapsed() < Duration::from_secs(5));
        }
    }
}
