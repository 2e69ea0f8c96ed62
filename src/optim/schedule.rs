//! Learning-rate schedules: the learning rate at (0-based) optimizer step t from a base rate, as
//! a pure function, following `torch.optim.lr_scheduler`:
//!
//! | schedule | lr(t) |
//! | --- | --- |
//! | constant | base |
//! | step | base * gamma^floor(t / step_size) (StepLR) |
//! | exponential | base * gamma^t (ExponentialLR) |
//! | cosine | min + (base - min) (1 + cos(pi t / T)) / 2, then min for t >= T (CosineAnnealingLR) |
//! | warmup-cosine | base (t + 1) / W for t < W; then cosine from base at t = W to min at t = T |
//! | one-cycle | cosine from max/d up to max at t = pT - 1, down to max/(d f) at T - 1 (OneCycleLR) |
//!
//! (one-cycle: d = div_factor, f = final_div_factor, p = pct_start.)
//!
//! PyTorch's cosine keeps oscillating after T and its one-cycle errors after T; here both hold
//! their final rate. One-cycle ignores the base rate unless `max_lr` is `None`.
//!
//! ```
//! use kiln::optim::Schedule;
//! let s = Schedule::from_name("warmup-cosine", 100)?;  // warm-up 5 steps, cosine to 0
//! assert_eq!(s.lr_at(1.0, 0), 0.2);
//! assert_eq!(s.lr_at(1.0, 4), 1.0);
//! assert!(s.lr_at(1.0, 99) < 1e-3);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::f64::consts::PI;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, arg_err};

/// A learning-rate schedule (serde: `{ kind = "warmup-cosine", warmup_steps = 100, ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays (>= 1).
        step_size: u64,
        /// Decay factor (> 0).
        gamma: f32,
    },
    /// Multiply by `gamma` every step.
    Exponential {
        /// Decay factor per step (> 0).
        gamma: f32,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_steps`.
    Cosine {
        /// Steps to reach `min_lr` (>= 1).
        total_steps: u64,
        /// Final rate (>= 0).
        min_lr: f32,
    },
    /// Linear warm-up to the base rate over `warmup_steps`, then cosine annealing to `min_lr` at
    /// `total_steps`.
    WarmupCosine {
        /// Warm-up length (<= total_steps).
        warmup_steps: u64,
        /// Steps to reach `min_lr` (>= 1), warm-up included.
        total_steps: u64,
        /// Final rate (>= 0).
        min_lr: f32,
    },
    /// The one-cycle policy with cosine annealing (PyTorch's `OneCycleLR`, two phases).
    OneCycle {
        /// Length of the cycle (>= 1).
        total_steps: u64,
        /// Peak rate; `None` uses the base rate.
        #[serde(default)]
        max_lr: Option<f32>,
        /// Fraction of the cycle spent increasing, in (0, 1].
        pct_start: f32,
        /// Initial rate = max_lr / div_factor (> 0).
        div_factor: f32,
        /// Final rate = initial rate / final_div_factor (> 0).
        final_div_factor: f32,
    },
}

impl Schedule {
    /// The learning rate at 0-based optimizer step `step`, for base rate `base_lr`.
    pub fn lr_at(&self, base_lr: f32, step: u64) -> f32 {
        let base = base_lr as f64;
        let t = step as f64;
        let lr = match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => {
                let k = (step / step_size.max(1)).min(i32::MAX as u64) as i32;
                base * (gamma as f64).powi(k)
            }
            Schedule::Exponential { gamma } => base * (gamma as f64).powf(t),
            Schedule::Cosine {
                total_steps,
                min_lr,
            } => cosine(base, min_lr as f64, t, total_steps.max(1) as f64),
            Schedule::WarmupCosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                if step >= total_steps {
                    min_lr as f64
                } else if step < warmup_steps {
                    base * (t + 1.0) / warmup_steps as f64
                } else {
                    let w = warmup_steps as f64;
                    let span = (total_steps as f64 - w).max(1.0);
                    cosine(base, min_lr as f64, t - w, span)
                }
            }
            Schedule::OneCycle {
                total_steps,
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let max = max_lr.map_or(base, |m| m as f64);
                let initial = max / div_factor as f64;
                let min = initial / final_div_factor as f64;
                let last = total_steps.max(1) as f64 - 1.0;
                let t = t.min(last);
                let peak = pct_start as f64 * total_steps as f64 - 1.0;
                if t <= peak {
                    anneal(initial, max, t / peak)
                } else {
                    anneal(max, min, (t - peak) / (last - peak))
                }
            }
        };
        lr as f32
    }

    /// Check the fields; the error names the schedule and the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| arg_err("Schedule", msg);
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number > 0, got {v}"))
            }
        };
        let non_negative = |name: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be a finite number >= 0, got {v}"))
            }
        };
        let steps = |name: &str, v: u64| {
            if v >= 1 {
                Ok(())
            } else {
                bad(format!("{name} must be >= 1, got {v}"))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { step_size, gamma } => {
                steps("step: step_size", step_size)?;
                positive("step: gamma", gamma)
            }
            Schedule::Exponential { gamma } => positive("exponential: gamma", gamma),
            Schedule::Cosine {
                total_steps,
                min_lr,
            } => {
                steps("cosine: total_steps", total_steps)?;
                non_negative("cosine: min_lr", min_lr)
            }
            Schedule::WarmupCosine {
                warmup_steps,
                total_steps,
                min_lr,
            } => {
                steps("warmup-cosine: total_steps", total_steps)?;
                if warmup_steps > total_steps {
                    return bad(format!(
                        "warmup-cosine: warmup_steps ({warmup_steps}) must be <= total_steps \
                         ({total_steps})"
                    ));
                }
                non_negative("warmup-cosine: min_lr", min_lr)
            }
            Schedule::OneCycle {
                total_steps,
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                steps("one-cycle: total_steps", total_steps)?;
                if let Some(m) = max_lr {
                    positive("one-cycle: max_lr", m)?;
                }
                if !(pct_start > 0.0 && pct_start <= 1.0) {
                    return bad(format!(
                        "one-cycle: pct_start must be in (0, 1], got {pct_start}"
                    ));
                }
                positive("one-cycle: div_factor", div_factor)?;
                positive("one-cycle: final_div_factor", final_div_factor)
            }
        }
    }

    /// The schedule called `name` (see [`ScheduleKind`]) with defaults for a run of
    /// `total_steps` optimizer steps.
    pub fn from_name(name: &str, total_steps: u64) -> Result<Schedule> {
        Ok(name.parse::<ScheduleKind>()?.with_total_steps(total_steps))
    }

    /// The CLI name of this schedule's kind.
    pub fn kind(&self) -> ScheduleKind {
        match self {
            Schedule::Constant => ScheduleKind::Constant,
            Schedule::Step { .. } => ScheduleKind::Step,
            Schedule::Exponential { .. } => ScheduleKind::Exponential,
            Schedule::Cosine { .. } => ScheduleKind::Cosine,
            Schedule::WarmupCosine { .. } => ScheduleKind::WarmupCosine,
            Schedule::OneCycle { .. } => ScheduleKind::OneCycle,
        }
    }
}

/// min + (base - min) (1 + cos(pi t / span)) / 2, held at min for t >= span.
fn cosine(base: f64, min: f64, t: f64, span: f64) -> f64 {
    let x = (t / span).clamp(0.0, 1.0);
    min + (base - min) * (1.0 + (PI * x).cos()) / 2.0
}

/// PyTorch's `_annealing_cos`: from `start` at pct 0 to `end` at pct 1 (pct 0/0 counts as 1).
fn anneal(start: f64, end: f64, pct: f64) -> f64 {
    let pct = if pct.is_nan() {
        1.0
    } else {
        pct.clamp(0.0, 1.0)
    };
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

/// The schedule names of the CLI and config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScheduleKind {
    /// `constant`
    Constant,
    /// `step`
    Step,
    /// `exponential`
    Exponential,
    /// `cosine`
    Cosine,
    /// `warmup-cosine`
    WarmupCosine,
    /// `one-cycle`
    OneCycle,
}

impl ScheduleKind {
    /// Every kind, in CLI order.
    pub const ALL: [ScheduleKind; 6] = [
        ScheduleKind::Constant,
        ScheduleKind::Step,
        ScheduleKind::Exponential,
        ScheduleKind::Cosine,
        ScheduleKind::WarmupCosine,
        ScheduleKind::OneCycle,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Step => "step",
            ScheduleKind::Exponential => "exponential",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::WarmupCosine => "warmup-cosine",
            ScheduleKind::OneCycle => "one-cycle",
        }
    }

    /// This kind with defaults for a run of `total_steps` (T) optimizer steps:
    ///
    /// - `step`: decay by 0.1 every ceil(T / 3) steps (two drops within the run);
    /// - `exponential`: gamma = 0.01^(1/T), so the rate falls to 1% of the base at step T;
    /// - `cosine`: to 0 at step T;
    /// - `warmup-cosine`: warm-up over max(1, T / 20) steps (5%), then cosine to 0 at step T;
    /// - `one-cycle`: peak at the base rate, PyTorch's defaults pct_start 0.3, div_factor 25,
    ///   final_div_factor 1e4.
    pub fn with_total_steps(self, total_steps: u64) -> Schedule {
        let t = total_steps.max(1);
        match self {
            ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Step => Schedule::Step {
                step_size: t.div_ceil(3),
                gamma: 0.1,
            },
            ScheduleKind::Exponential => Schedule::Exponential {
                gamma: 0.01f64.powf(1.0 / t as f64) as f32,
            },
            ScheduleKind::Cosine => Schedule::Cosine {
                total_steps: t,
                min_lr: 0.0,
            },
            ScheduleKind::WarmupCosine => Schedule::WarmupCosine {
                warmup_steps: (t / 20).max(1),
                total_steps: t,
                min_lr: 0.0,
            },
            ScheduleKind::OneCycle => Schedule::OneCycle {
                total_steps: t,
                max_lr: None,
                pct_start: 0.3,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
        }
    }
}

impl FromStr for ScheduleKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<ScheduleKind> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        ScheduleKind::ALL
            .into_iter()
            .find(|k| k.name() == key)
            .map_or_else(
                || {
                    let names: Vec<&str> = ScheduleKind::ALL.iter().map(|k| k.name()).collect();
                    arg_err(
                        "schedule",
                        format!(
                            "unknown schedule `{s}`; expected one of {}",
                            names.join(", ")
                        ),
                    )
                },
                Ok,
            )
    }
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
