//! Outlier detection: a score per row, higher = more anomalous, from four methods.
//!
//! | file | method | score |
//! | --- | --- | --- |
//! | `iforest.rs` | [`IsolationForest`] (trees built on the host, path lengths on the GPU) | `2^(-E[h] / c(psi))` |
//! | `lof.rs` | [`Lof`] (k nearest neighbours on the GPU) | local outlier factor |
//! | `stats.rs` | [`Mahalanobis`] (covariance by GEMM), [`RobustZ`] (median / MAD) | squared distance, largest robust z |
//! | `autoencoder.rs` | [`Autoencoder`] trained by kiln's [`Trainer`](crate::train::Trainer) | reconstruction MSE |
//!
//! This file: the checks every method shares, the rows flagged at a contamination, and the two
//! scores against known outliers, ROC-AUC and average precision. The kernels are
//! `shaders/outlier.wgsl` (launchers `kiln_kernels::launch::outlier`, CPU twin
//! `kiln_kernels::reference::outlier`); the command is `kiln outliers`.
//!
//! ```
//! use kiln::unsupervised::outlier::{average_precision, flag, roc_auc};
//! let scores = [0.1, 0.9, 0.2, 0.8];
//! let truth = [false, true, false, false];
//! assert_eq!(roc_auc(&scores, &truth), Some(1.0));
//! assert_eq!(average_precision(&scores, &truth), Some(1.0));
//! assert_eq!(flag(&scores, 0.5)?.0, [false, true, false, true]);
//! # Ok::<(), kiln::Error>(())
//! ```

pub mod autoencoder;
pub mod iforest;
pub mod lof;
pub mod stats;

pub use autoencoder::Autoencoder;
pub use iforest::{IsolationForest, IsolationForestFit};
pub use lof::{Knn, Lof, knn};
pub use stats::{Mahalanobis, RobustZ};

use super::distance::check_matrix;
use crate::error::{Result, arg_err};

/// Check that x (n, d) holds finite values and at least 2 rows; returns n.
pub fn check_rows(what: &'static str, x: &[f32], d: usize) -> Result<usize> {
    let n = check_matrix(what, x, d)?;
    if n < 2 {
        return arg_err(
            what,
            "1 row: outlier scores compare rows with each other, need at least 2",
        );
    }
    Ok(n)
}

/// Check that the expected share of outliers is in (0, 0.5].
pub fn check_contamination(c: f64) -> Result<()> {
    if !(c > 0.0 && c <= 0.5) {
        return arg_err(
            "contamination",
            format!("{c}: expected a share of outliers in (0, 0.5]"),
        );
    }
    Ok(())
}

/// The rows flagged as outliers at `contamination`: the `max(1, round(c n))` highest scores,
/// and every row tied with the last of them. Returns the flags and the threshold (the lowest
/// flagged score).
pub fn flag(scores: &[f64], contamination: f64) -> Result<(Vec<bool>, f64)> {
    check_contamination(contamination)?;
    if scores.is_empty() {
        return arg_err("contamination", "no scores to flag");
    }
    let m = ((contamination * scores.len() as f64).round() as usize).clamp(1, scores.len());
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let threshold = sorted[m - 1];
    Ok((scores.iter().map(|&s| s >= threshold).collect(), threshold))
}

/// Area under the ROC curve of `scores` against `truth` (true = outlier): the probability that
/// a random outlier scores above a random inlier, ties counted as one half (Mann-Whitney with
/// average ranks). `None` without both classes.
pub fn roc_auc(scores: &[f64], truth: &[bool]) -> Option<f64> {
    let pos = truth.iter().filter(|&&t| t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0; // average rank of the tie group, 1-based
        rank_sum += rank * order[i..=j].iter().filter(|&&r| truth[r]).count() as f64;
        i = j + 1;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Average precision of `scores` against `truth` (true = outlier), as scikit-learn defines it:
/// `sum_i (R_i - R_{i-1}) P_i` over the distinct scores taken as thresholds from the highest
/// down, tied rows entering together. `None` without outliers.
pub fn average_precision(scores: &[f64], truth: &[bool]) -> Option<f64> {
    let pos = truth.iter().filter(|&&t| t).count();
    if pos == 0 || truth.len() != scores.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        tp += order[i..=j].iter().filter(|&&r| truth[r]).count();
        seen += j + 1 - i;
        let recall = tp as f64 / pos as f64;
        ap += (recall - last_recall) * tp as f64 / seen as f64;
        last_recall = recall;
        i = j + 1;
    }
    Some(ap)
}
