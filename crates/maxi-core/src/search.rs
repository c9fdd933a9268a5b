//! Searches over a setting of the pipeline: several runs (rounds) of the executor that share
//! one model-row budget, each changing one kwarg as the previous rounds suggest.
//!
//! - `c`: the CEM paper's binary search over the loss's `c` (IBM's reference code): after a
//!   round that ends valid, `upper = min(upper, c)` and, once `upper < 10⁹`,
//!   `c = (lower + upper)/2`; after a failing round, `lower = max(lower, c)` and
//!   `c = (lower + upper)/2` once bracketed, else `c ×= 10`.
//! - `l1`: MAXi's parameter search: halve the optimiser's `l1` and `l2` after a failing round,
//!   stop after the first round that succeeds.
//!
//! A round *succeeds* when its last iterate is a valid explanation (a loss that cannot tell
//! validity: when its last loss value is negative, MAXi's rule). maxi's pertinent positives
//! start from the input itself, which is valid, so "some iterate was valid" would say nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::spec::{KwargProblem, KwargsSpec};

/// What a search varies.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SearchMethod {
    /// One run, no search.
    #[default]
    None,
    /// Binary search over the loss's `c` (CEM paper).
    C,
    /// Halve the optimiser's `l1` and `l2` until a round succeeds (MAXi).
    L1,
}

fn nine() -> usize {
    9
}
fn yes() -> bool {
    true
}

/// Most rounds a search may run.
pub const MAX_STEPS: usize = 64;

/// Settings of a search (the `[search]` table of a config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchKwargs {
    /// `none` (one run), `c` (binary search over the loss's `c`) or `l1` (halve the
    /// optimiser's `l1` and `l2` until a round succeeds).
    #[serde(default)]
    pub method: SearchMethod,
    /// Most rounds (1..=64); each runs at most `[generator] num_iter` updates.
    #[serde(default = "nine")]
    pub steps: usize,
    /// Rows the explained model may receive for the whole explanation, all rounds together
    /// (`null`: no limit). No update starts that could cross it.
    #[serde(default)]
    pub budget_rows: Option<u64>,
    /// End a round once it has a valid iterate and its best one has not improved for this
    /// many updates (`null`: never).
    #[serde(default)]
    pub patience: Option<usize>,
    /// End a round that has not found a single valid iterate after this many updates
    /// (`null`: never).
    #[serde(default)]
    pub give_up: Option<usize>,
    /// Continue a round that follows a failed one from that round's last iterate instead of
    /// the loss's start point (a round that follows a success always starts afresh: from a
    /// valid point the attack term is flat and gives the optimiser nothing to go on).
    #[serde(default = "yes")]
    pub warm_start: bool,
}

impl Default for SearchKwargs {
    fn default() -> Self {
        SearchKwargs {
            method: SearchMethod::None,
            steps: nine(),
            budget_rows: None,
            patience: None,
            give_up: None,
            warm_start: true,
        }
    }
}

impl KwargsSpec for SearchKwargs {
    fn validate(&self) -> Result<(), KwargProblem> {
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(KwargProblem::new(
                "steps",
                format!("must be 1..={MAX_STEPS}, got {}", self.steps),
            ));
        }
        if self.budget_rows == Some(0) {
            return Err(KwargProblem::new(
                "budget_rows",
                "must be at least 1 (or null for no limit)",
            ));
        }
        if self.give_up == Some(0) {
            return Err(KwargProblem::new(
                "give_up",
                "must be at least 1 (or null to never give a round up)",
            ));
        }
        if self.patience == Some(0) {
            return Err(KwargProblem::new(
                "patience",
                "must be at least 1 (or null to never stop a round early)",
            ));
        }
        Ok(())
    }
}

impl SearchKwargs {
    /// Rounds to run at most.
    pub fn rounds(&self) -> usize {
        match self.method {
            SearchMethod::None => 1,
            _ => self.steps,
        }
    }
}

/// Where a search stands: the value(s) it varies and its bracket.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchState {
    /// No search.
    None,
    /// Binary search over `c` with its bracket.
    C {
        /// The next round's `c`.
        c: f64,
        /// Largest `c` known to fail.
        lower: f64,
        /// Smallest `c` known to succeed (`1e10`: none yet).
        upper: f64,
    },
    /// Halving `l1` and `l2`.
    L1 {
        /// The next round's `l1`.
        l1: f64,
        /// The next round's `l2`.
        l2: f64,
        /// A round succeeded: the search is over.
        done: bool,
    },
}

/// IBM's initial upper end of the `c` bracket.
const C_UNBOUNDED: f64 = 1e10;

impl SearchState {
    /// The state before the first round, from the starting values.
    pub fn start(method: SearchMethod, c: f64, l1: f64, l2: f64) -> Self {
        match method {
            SearchMethod::None => SearchState::None,
            SearchMethod::C => SearchState::C {
                c,
                lower: 0.0,
                upper: C_UNBOUNDED,
            },
            SearchMethod::L1 => SearchState::L1 {
                l1,
                l2,
                done: false,
            },
        }
    }

    /// The kwargs the next round changes (loss kwargs for `c`, optimiser kwargs for `l1`).
    pub fn settings(&self) -> Value {
        match self {
            SearchState::None => json!({}),
            SearchState::C { c, .. } => json!({ "c": c }),
            SearchState::L1 { l1, l2, .. } => json!({ "l1": l1, "l2": l2 }),
        }
    }

    /// Moves on after a round that succeeded or not.
    pub fn advance(&mut self, success: bool) {
        match self {
            SearchState::None => {}
            SearchState::C { c, lower, upper } => {
                if success {
                    *upper = upper.min(*c);
                    if *upper < 1e9 {
                        *c = (*lower + *upper) / 2.0;
                    }
                } else {
                    *lower = lower.max(*c);
                    if *upper < 1e9 {
                        *c = (*lower + *upper) / 2.0;
                    } else {
                        *c *= 10.0;
                    }
                }
            }
            SearchState::L1 { l1, l2, done } => {
                if success {
                    *done = true;
                } else {
                    *l1 /= 2.0;
                    *l2 /= 2.0;
                }
            }
        }
    }

    /// True when no further round is wanted.
    pub fn finished(&self) -> bool {
        matches!(self, SearchState::None | SearchState::L1 { done: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_search_raises_tenfold_until_bracketed_then_bisects() {
        // a loss that is valid exactly when c ≥ 37
        let threshold = 37.0;
        let mut s = SearchState::start(SearchMethod::C, 1.0, 0.0, 0.0);
        let mut tried = Vec::new();
        for _ in 0..12 {
            let SearchState::C { c, .. } = s else {
                unreachable!("c search")
            };
            tried.push(c);
            s.advance(c >= threshold);
        }
        assert_eq!(&tried[..3], &[1.0, 10.0, 100.0]);
        // bracketed by 10 (fails) and 100 (succeeds): bisection from there
        assert_eq!(tried[3], 55.0);
        let SearchState::C { lower, upper, .. } = s else {
            unreachable!("c search")
        };
        assert!(lower < threshold && threshold <= upper, "{lower} {upper}");
        // 3 expansions, then 9 halvings of [10, 100]: a bracket of 90/2⁹
        assert!(
            (upper - lower - 90.0 / 512.0).abs() < 1e-9,
            "bracket [{lower}, {upper}]"
        );
    }

    #[test]
    fn l1_search_halves_until_success() {
        let mut s = SearchState::start(SearchMethod::L1, 0.0, 1.0, 0.5);
        s.advance(false);
        assert_eq!(s.settings(), json!({"l1": 0.5, "l2": 0.25}));
        assert!(!s.finished());
        s.advance(true);
        assert!(s.finished());
        assert_eq!(s.settings(), json!({"l1": 0.5, "l2": 0.25}));
    }

    #[test]
    fn kwargs_are_checked() {
        for (field, k) in [
            (
                "steps",
                SearchKwargs {
                    steps: 0,
                    ..SearchKwargs::default()
                },
            ),
            (
                "budget_rows",
                SearchKwargs {
                    budget_rows: Some(0),
                    ..SearchKwargs::default()
                },
            ),
            (
                "patience",
                SearchKwargs {
                    patience: Some(0),
                    ..SearchKwargs::default()
                },
            ),
        ] {
            assert_eq!(k.validate().unwrap_err().field, field);
        }
    }
}
