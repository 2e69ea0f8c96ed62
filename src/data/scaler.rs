//! [`Scaler`]: per-column scaling of numeric features, fitted on the training rows.
//!
//! - standard: `y = (x - mean) / std`, with the population std (divide by n, as scikit-learn's
//!   `StandardScaler`); a constant column (std 0) divides by 1, so it becomes all zeros.
//! - min-max: `y = (x - min) / (max - min)`, in [0, 1] on the training rows; a range of 0 divides
//!   by 1. New values outside the training range are not clipped.
//!
//! ```
//! use kiln::data::{Scaler, Scaling};
//! let s = Scaler::fit(Scaling::Standard, &[1.0, 2.0, 3.0, 4.0]);
//! assert_eq!(s, Scaler::Standard { mean: 2.5, std: 1.25f64.sqrt() });
//! assert!((s.apply(4.0) - 1.3416407864998738).abs() < 1e-12);
//! let m = Scaler::fit(Scaling::MinMax, &[2.0, 6.0]);
//! assert_eq!((m.apply(2.0), m.apply(4.0), m.apply(8.0)), (0.0, 0.5, 1.5));
//! assert_eq!(Scaler::fit(Scaling::Standard, &[5.0, 5.0]).apply(5.0), 0.0);
//! ```

use serde::{Deserialize, Serialize};

use super::options::Scaling;

/// A fitted scaling of one numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scaler {
    /// `(x - mean) / std`; `std` is already 1 where the column was constant.
    Standard {
        /// Training mean.
        mean: f64,
        /// Training population std (1 when it was 0).
        std: f64,
    },
    /// `(x - min) / range`; `range` is already 1 where the column was constant.
    MinMax {
        /// Training minimum.
        min: f64,
        /// Training max - min (1 when it was 0).
        range: f64,
    },
    /// `x` unchanged.
    Identity,
}

impl Scaler {
    /// Fit on the training values of a column (an empty column gives the identity's numbers:
    /// mean 0, std 1 / min 0, range 1).
    pub fn fit(kind: Scaling, values: &[f64]) -> Scaler {
        let n = values.len() as f64;
        let one_if_zero = |v: f64| if v > 0.0 && v.is_finite() { v } else { 1.0 };
        match kind {
            Scaling::None => Scaler::Identity,
            Scaling::Standard => {
                let mean = if values.is_empty() {
                    0.0
                } else {
                    values.iter().sum::<f64>() / n
                };
                let var = if values.is_empty() {
                    0.0
                } else {
                    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
                };
                Scaler::Standard {
                    mean,
                    std: one_if_zero(var.sqrt()),
                }
            }
            Scaling::MinMax => {
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if values.is_empty() {
                    Scaler::MinMax {
                        min: 0.0,
                        range: 1.0,
                    }
                } else {
                    Scaler::MinMax {
                        min,
                        range: one_if_zero(max - min),
                    }
                }
            }
        }
    }

    /// Scale one value.
    pub fn apply(&self, x: f64) -> f64 {
        match *self {
            Scaler::Standard { mean, std } => (x - mean) / std,
            Scaler::MinMax { min, range } => (x - min) / range,
            Scaler::Identity => x,
        }
    }

    /// Undo [`apply`](Self::apply).
    pub fn invert(&self, y: f64) -> f64 {
        match *self {
            Scaler::Standard { mean, std } => y * std + mean,
            Scaler::MinMax { min, range } => y * range + min,
            Scaler::Identity => y,
        }
    }

    /// A short description for reports, e.g. `standardised (mean 43.9, std 5.46)`.
    pub fn describe(&self) -> String {
        match *self {
            Scaler::Standard { mean, std } => {
                format!("standardised (mean {}, std {})", short(mean), short(std))
            }
            Scaler::MinMax { min, range } => {
                format!("min-max (min {}, max {})", short(min), short(min + range))
            }
            Scaler::Identity => "not scaled".into(),
        }
    }
}

/// A number in at most 4 significant digits for reports.
pub(crate) fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    format!("{v:.digits$}")
}
