//! Successive halving, asynchronous (ASHA, Li et al. 2020), in its stopping form.
//!
//! Rungs are epoch counts `r_k = min_epochs * reduction^k` up to `max_epochs` (the last rung).
//! A trial trains to a rung, reports its metric there, and goes on to the next rung only if it
//! is in the top `1 / reduction` of the trials that have reported at that rung:
//!
//! ```text
//! promote(trial i at rung k)  <=>  rank of i among C < ceil(|C| / reduction),
//!     C = {j <= max(i, reduction - 1) : j reported at rung k}
//! ```
//!
//! Comparing with the trials of lower id (and waiting for those still on their way to the
//! rung) makes every decision a function of the trials' own results, not of which process
//! happened to finish first: the same seed gives the same sweep with any `--parallel`. The
//! first `reduction` trials are judged together, as one cohort: judged alone, the first trial
//! would always be promoted (it is the best of one), and with few trials such free passes
//! cost most of the savings. On the 12-trial digits sweep of the README this takes the epochs
//! from 56 to 34 (of 108 for the random search), finding the same best trial.
//!
//! ```
//! use kiln::sweep::asha::Rungs;
//! let r = Rungs::new(1, 9, 3).unwrap();
//! assert_eq!(r.epochs, [1, 3, 9]);
//! assert_eq!(r.next_after(3), Some(9));
//! assert!(Rungs::promote(&[0.5, 0.4], 0.3, 3, false)); // best of 3: kept
//! assert!(!Rungs::promote(&[0.1, 0.2], 0.3, 3, false)); // worst of 3: stopped
//! ```

use crate::error::{Error, Result};

/// The rungs of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rungs {
    /// Epoch counts, increasing; the last is `max_epochs`.
    pub epochs: Vec<usize>,
    /// Keep the top `1 / reduction` at each rung.
    pub reduction: usize,
}

impl Rungs {
    /// Rungs from `min_epochs` by factors of `reduction` to `max_epochs`.
    pub fn new(min_epochs: usize, max_epochs: usize, reduction: usize) -> Result<Rungs> {
        if min_epochs == 0 || max_epochs < min_epochs {
            return Err(Error::Config(format!(
                "sweep: need 1 <= min_epochs <= max_epochs, got {min_epochs} and {max_epochs}"
            )));
        }
        if reduction < 2 {
            return Err(Error::Config(format!(
                "sweep.reduction must be at least 2, got {reduction}"
            )));
        }
        let mut epochs = Vec::new();
        let mut r = min_epochs;
        while r < max_epochs {
            epochs.push(r);
            r = r.saturating_mul(reduction);
        }
        epochs.push(max_epochs);
        Ok(Rungs { epochs, reduction })
    }

    /// The rung after `epochs` done (none at the last).
    pub fn next_after(&self, epochs: usize) -> Option<usize> {
        self.epochs.iter().copied().find(|&r| r > epochs)
    }

    /// Whether a trial with `metric` at a rung goes on, given the metrics `others` (of the lower
    /// ids) at that rung: in the top `ceil((others + 1) / reduction)`. `maximize` flips the
    /// order. Ties favour the lower id (already in `others`).
    pub fn promote(others: &[f64], metric: f64, reduction: usize, maximize: bool) -> bool {
        let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
        let ahead = others
            .iter()
            .filter(|&&o| !better(metric, o) && o.is_finite())
            .count();
        let keep = (others.len() + 1).div_ceil(reduction);
        metric.is_finite() && ahead < keep
    }
}
