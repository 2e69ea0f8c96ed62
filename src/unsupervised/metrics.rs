//! Clustering scores: the silhouette (no labels needed), and the adjusted Rand index and
//! normalised mutual information against known labels.
//!
//! - silhouette of point i: `(b - a) / max(a, b)`, a the mean distance to the other points of
//!   its cluster, b the smallest mean distance to another cluster; 0 for a point alone in its
//!   cluster; the score is the mean over points. Noise (a negative label) is left out.
//! - ARI: the Rand index corrected for chance,
//!   `(sum_ij C(n_ij, 2) - E) / ((sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2 - E)`,
//!   `E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2)`.
//! - NMI: `I(A; B) / ((H(A) + H(B)) / 2)` (scikit-learn's arithmetic normalisation).
//!
//! ```
//! use kiln::unsupervised::metrics::{adjusted_rand_index, nmi};
//! // The same partition under other names scores 1.
//! assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 3, 3]) - 1.0).abs() < 1e-12);
//! assert!((nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
//! ```

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::distance::Points;
use crate::error::Result;

/// Most points the silhouette uses; above it, a seeded sample of this many.
pub const SILHOUETTE_SAMPLE: usize = 10_000;

/// The contingency table of two labelings: counts per (a, b) pair, and per a and per b.
fn contingency(a: &[i32], b: &[i32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut pairs: BTreeMap<(i32, i32), f64> = BTreeMap::new();
    let mut ra: BTreeMap<i32, f64> = BTreeMap::new();
    let mut rb: BTreeMap<i32, f64> = BTreeMap::new();
    for (&p, &q) in a.iter().zip(b) {
        *pairs.entry((p, q)).or_default() += 1.0;
        *ra.entry(p).or_default() += 1.0;
        *rb.entry(q).or_default() += 1.0;
    }
    (
        pairs.into_values().collect(),
        ra.into_values().collect(),
        rb.into_values().collect(),
    )
}

/// Adjusted Rand index of two labelings of the same points (1 = same partition, about 0 =
/// chance). Both trivial (one cluster each, or every point alone): 1.
pub fn adjusted_rand_index(a: &[i32], b: &[i32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let c2 = |v: &f64| v * (v - 1.0) / 2.0;
    let (pairs, ra, rb) = contingency(a, b);
    let index: f64 = pairs.iter().map(c2).sum();
    let (sa, sb): (f64, f64) = (ra.iter().map(c2).sum(), rb.iter().map(c2).sum());
    let expected = sa * sb / c2(&n).max(f64::MIN_POSITIVE);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < 1e-12 {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Normalised mutual information (arithmetic mean of the entropies). Both one cluster: 1.
pub fn nmi(a: &[i32], b: &[i32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let h = |counts: &[f64]| -> f64 { counts.iter().map(|&c| -(c / n) * (c / n).ln()).sum() };
    let (pairs, ra, rb) = contingency(a, b);
    let (ha, hb) = (h(&ra), h(&rb));
    if ha + hb < 1e-15 {
        return 1.0;
    }
    let hab = h(&pairs);
    let mi = (ha + hb - hab).max(0.0);
    mi / ((ha + hb) / 2.0)
}

/// Mean silhouette of x (n, d) under `labels` (negative = noise, left out), on the GPU
/// distance blocks. Needs 2 to n - 1 clusters, else `None`. Above [`SILHOUETTE_SAMPLE`]
/// points, a sample drawn with `seed`.
pub fn silhouette(x: &[f32], d: usize, labels: &[i32], seed: u64) -> Result<Option<f64>> {
    let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 0).collect();
    if rows.len() > SILHOUETTE_SAMPLE {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pick = rand::seq::index::sample(&mut rng, rows.len(), SILHOUETTE_SAMPLE).into_vec();
        pick.sort_unstable();
        rows = pick.into_iter().map(|i| rows[i]).collect();
    }
    // Dense cluster ids 0..m of the kept rows.
    let mut ids: BTreeMap<i32, usize> = BTreeMap::new();
    for &r in &rows {
        let next = ids.len();
        ids.entry(labels[r]).or_insert(next);
    }
    let m = ids.len();
    if m < 2 || m >= rows.len() {
        return Ok(None);
    }
    let lab: Vec<usize> = rows.iter().map(|&r| ids[&labels[r]]).collect();
    let sub: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
        .collect();
    let mut size = vec![0.0f64; m];
    for &l in &lab {
        size[l] += 1.0;
    }
    let pts = Points::new(&sub, d)?;
    let n = rows.len();
    let mut total = 0.0;
    pts.for_each_block(&pts, |r0, block| {
        for (i, row) in block.chunks(n).enumerate() {
            let own = lab[r0 + i];
            if size[own] <= 1.0 {
                continue; // alone in its cluster: 0
            }
            let mut sum = vec![0.0f64; m];
            for (j, &v) in row.iter().enumerate() {
                if j != r0 + i {
                    sum[lab[j]] += (v as f64).sqrt();
                }
            }
            let a = sum[own] / (size[own] - 1.0);
            let b = (0..m)
                .filter(|&c| c != own)
                .map(|c| sum[c] / size[c])
                .fold(f64::INFINITY, f64::min);
            let s = (b - a) / a.max(b);
            total += if s.is_finite() { s } else { 0.0 };
        }
        Ok(())
    })?;
    Ok(Some(total / n as f64))
}
