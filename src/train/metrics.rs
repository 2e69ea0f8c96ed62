//! Evaluation metrics, computed on the host from predictions and targets.
//!
//! Classification (C classes, predictions = argmax of the logits):
//! - accuracy = correct / N
//! - per class c: precision = TP / (TP + FP), recall = TP / (TP + FN),
//!   F1 = 2 P R / (P + R) (0 when the denominator is 0, as scikit-learn's `zero_division=0`)
//! - macro averages: the unweighted mean over classes of P, R and F1
//! - confusion matrix: `matrix[true][predicted]` counts
//!
//! Regression: MSE = mean (y - ŷ)^2, MAE = mean |y - ŷ|, R^2 = 1 - SS_res / SS_tot
//! (SS_tot = sum (y - mean y)^2; with constant targets R^2 is 1 for an exact fit, else 0).

use serde::{Deserialize, Serialize};

/// Classification metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Fraction correct.
    pub accuracy: f64,
    /// Macro-averaged precision.
    pub macro_precision: f64,
    /// Macro-averaged recall.
    pub macro_recall: f64,
    /// Macro-averaged F1.
    pub macro_f1: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

/// Regression metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

/// Metrics of `pred` against `target`, both class indices in `0..num_classes`.
pub fn classification(pred: &[u32], target: &[u32], num_classes: usize) -> ClassificationMetrics {
    assert_eq!(pred.len(), target.len(), "one prediction per target");
    let mut confusion = vec![vec![0u64; num_classes]; num_classes];
    for (&p, &t) in pred.iter().zip(target) {
        if (t as usize) < num_classes && (p as usize) < num_classes {
            confusion[t as usize][p as usize] += 1;
        }
    }
    let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
    let n = pred.len().max(1) as f64;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (mut p_sum, mut r_sum, mut f_sum) = (0.0, 0.0, 0.0);
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c];
        let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
        let actual: u64 = row.iter().sum();
        let p = ratio(tp, predicted);
        let r = ratio(tp, actual);
        let f = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        p_sum += p;
        r_sum += r;
        f_sum += f;
    }
    let k = num_classes.max(1) as f64;
    ClassificationMetrics {
        accuracy: correct as f64 / n,
        macro_precision: p_sum / k,
        macro_recall: r_sum / k,
        macro_f1: f_sum / k,
        confusion,
    }
}

/// Regression metrics of `pred` against `target` (same length, flattened).
pub fn regression(pred: &[f32], target: &[f32]) -> RegressionMetrics {
    assert_eq!(pred.len(), target.len(), "one prediction per target");
    let n = pred.len().max(1) as f64;
    let mean = target.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(target) {
        let d = t as f64 - p as f64;
        se += d * d;
        ae += d.abs();
        tot += (t as f64 - mean).powi(2);
    }
    RegressionMetrics {
        mse: se / n,
        mae: ae / n,
        r2: r2(se, tot),
    }
}

/// R^2 = 1 - SS_res / SS_tot; with constant targets (SS_tot = 0) it is 1 for an exact fit, else 0.
fn r2(ss_res: f64, ss_tot: f64) -> f64 {
    if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// The confusion matrix as aligned text, rows = true class, columns = predicted.
pub fn confusion_table(confusion: &[Vec<u64>], names: &[String]) -> String {
    let width = confusion
        .iter()
        .flatten()
        .map(|v| v.to_string().len())
        .chain(names.iter().map(|n| n.len().min(10)))
        .max()
        .unwrap_or(1)
        .max(3);
    let label = |i: usize| -> String {
        names
            .get(i)
            .map(|n| n.chars().take(10).collect())
            .unwrap_or_else(|| i.to_string())
    };
    let lw = (0..confusion.len())
        .map(|i| label(i).len())
        .max()
        .unwrap_or(1)
        .max(6);
    let mut s = format!("{:>lw$} ", "true \\ pred");
    for j in 0..confusion.len() {
        s += &format!(" {:>width$}", label(j));
    }
    s.push('\n');
    for (i, row) in confusion.iter().enumerate() {
        s += &format!("{:>lw$} ", label(i), lw = lw.max(11));
        for v in row {
            s += &format!(" {v:>width$}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_hand_computation() {
        // true: 0 0 1 1 2 2, pred: 0 1 1 1 2 0
        let m = classification(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 3);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // class 0: P = 1/2, R = 1/2; class 1: P = 2/3, R = 1; class 2: P = 1, R = 1/2
        let p = (0.5 + 2.0 / 3.0 + 1.0) / 3.0;
        let r = (0.5 + 1.0 + 0.5) / 3.0;
        let f1 = |p: f64, r: f64| 2.0 * p * r / (p + r);
        let f = (f1(0.5, 0.5) + f1(2.0 / 3.0, 1.0) + f1(1.0, 0.5)) / 3.0;
        assert!((m.macro_precision - p).abs() < 1e-12);
        assert!((m.macro_recall - r).abs() < 1e-12);
        assert!((m.macro_f1 - f).abs() < 1e-12);
        assert_eq!(
            m.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]
        );
    }

    #[test]
    fn regression_metrics_match_hand_computation() {
        let m = regression(&[1.0, 2.0, 4.0], &[1.0, 3.0, 5.0]);
        assert!((m.mse - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.mae - 2.0 / 3.0).abs() < 1e-12);
        // mean 3, SS_tot = 4 + 0 + 4 = 8, SS_res = 2
        assert!((m.r2 - 0.75).abs() < 1e-12);
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0]).r2, 1.0);
    }
}
