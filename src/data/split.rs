//! Train/validation/test splits and seeded permutations.
//!
//! A permutation is a Fisher-Yates shuffle driven by ChaCha8 seeded with `seed` on stream
//! `stream`, so it is a pure function of `(n, seed, stream)`: the [`DataLoader`] uses the epoch as
//! the stream, and a resumed run sees the same order.
//!
//! A **stratified** split shuffles each class on its own, then sends the example at position `k`
//! of a class of `n_c` examples to train when `(k + 0.5) / n_c < train`, to validation when it is
//! below `train + val`, and to test otherwise. Each class's share of each split is therefore
//! within `1 / n_c` of the asked fraction (a class of one example goes to train). A **plain** split
//! (regression) shuffles all rows and cuts at `round(n * train)` and `round(n * (train + val))`.
//! The indices of each split come back sorted, in file order.
//!
//! [`DataLoader`]: super::DataLoader

use std::str::FromStr;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::{DataError, invalid};

/// `0..n` shuffled; a pure function of `(n, seed, stream)`.
///
/// ```
/// use kiln::data::permutation;
/// let p = permutation(10, 7, 0);
/// assert_eq!(p, permutation(10, 7, 0));
/// assert_ne!(p, permutation(10, 7, 1));
/// let mut s = p.clone();
/// s.sort();
/// assert_eq!(s, (0..10).collect::<Vec<_>>());
/// ```
pub fn permutation(n: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, seed, stream);
    idx
}

/// Fisher-Yates over `v`, seeded by `(seed, stream)`. Uses only ChaCha8's raw output (bounded by
/// a 128-bit multiply, bias below 2^-64 · n), so the order never depends on `rand`'s sampling code.
pub fn shuffle<T>(v: &mut [T], seed: u64, stream: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    for i in (1..v.len()).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
}

/// Fractions of the rows that go to train, validation and test; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    /// Share for training, in (0, 1].
    pub train: f64,
    /// Share for validation.
    pub val: f64,
    /// Share for test.
    pub test: f64,
}

impl SplitFractions {
    /// `train` and `val`, with the rest going to test. Fails unless all three are in [0, 1]
    /// and train is above 0.
    pub fn new(train: f64, val: f64) -> Result<Self, DataError> {
        let s = SplitFractions {
            train,
            val,
            test: 1.0 - train - val,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the fractions: each in [0, 1], train above 0, summing to 1 (within 1e-6).
    pub fn validate(&self) -> Result<(), DataError> {
        let ok = |f: f64| (0.0..=1.0).contains(&f);
        let sum = self.train + self.val + self.test;
        if !(ok(self.train) && ok(self.val) && ok(self.test + 1e-9) && self.train > 0.0)
            || (sum - 1.0).abs() > 1e-6
        {
            return invalid(format!(
                "split fractions train {}, val {}, test {} must each be in [0, 1], with train \
                 above 0, and sum to 1",
                self.train, self.val, self.test
            ));
        }
        Ok(())
    }
}

impl Default for SplitFractions {
    /// 70% train, 15% validation, 15% test.
    fn default() -> Self {
        SplitFractions {
            train: 0.7,
            val: 0.15,
            test: 0.15,
        }
    }
}

impl FromStr for SplitFractions {
    type Err = DataError;

    /// `"0.7,0.15,0.15"` (train, val, test) or `"0.8,0.2"` (train, val; no test).
    fn from_str(s: &str) -> Result<Self, DataError> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                DataError::Invalid(format!(
                    "split {s:?}: expected fractions like \"0.7,0.15,0.15\" (train, val, test)"
                ))
            })?;
        let f = match parts[..] {
            [train, val] => SplitFractions {
                train,
                val,
                test: 0.0,
            },
            [train, val, test] => SplitFractions { train, val, test },
            _ => {
                return invalid(format!(
                    "split {s:?}: expected two or three fractions (train, val[, test])"
                ));
            }
        };
        f.validate()?;
        Ok(f)
    }
}

/// Row indices of each part of a split, each sorted ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitIndices {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// A split that keeps each class's share in every part (see the module note for the rule).
/// `labels[i]` is the class of row `i`.
///
/// ```
/// use kiln::data::{stratified_split, SplitFractions};
/// let labels: Vec<u32> = (0..100).map(|i| (i % 4 == 0) as u32).collect(); // 25% class 1
/// let s = stratified_split(&labels, SplitFractions::new(0.6, 0.2)?, 3);
/// assert_eq!((s.train.len(), s.val.len(), s.test.len()), (60, 20, 20));
/// assert_eq!(s.test.iter().filter(|&&i| labels[i] == 1).count(), 5);
/// # Ok::<(), kiln::data::DataError>(())
/// ```
pub fn stratified_split(labels: &[u32], f: SplitFractions, seed: u64) -> SplitIndices {
    let k = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let mut out = SplitIndices::default();
    for (c, rows) in by_class.iter_mut().enumerate() {
        shuffle(rows, seed, c as u64);
        let n = rows.len() as f64;
        for (pos, &row) in rows.iter().enumerate() {
            let q = (pos as f64 + 0.5) / n;
            if q < f.train {
                out.train.push(row);
            } else if q < f.train + f.val {
                out.val.push(row);
            } else {
                out.test.push(row);
            }
        }
    }
    out.train.sort_unstable();
    out.val.sort_unstable();
    out.test.sort_unstable();
    out
}

/// A plain shuffled split of `n` rows (for regression): cuts at `round(n * train)` and
/// `round(n * (train + val))` of a seeded permutation.
pub fn shuffled_split(n: usize, f: SplitFractions, seed: u64) -> SplitIndices {
    let p = permutation(n, seed, 0);
    let a = ((n as f64 * f.train).round() as usize).min(n);
    let b = ((n as f64 * (f.train + f.val)).round() as usize).clamp(a, n);
    let mut out = SplitIndices {
        train: p[..a].to_vec(),
        val: p[a..b].to_vec(),
        test: p[b..].to_vec(),
    };
    out.train.sort_unstable();
    out.val.sort_unstable();
    out.test.sort_unstable();
    out
}
