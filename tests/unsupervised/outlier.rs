//! Outlier detection: the `outlier.wgsl` kernels against their CPU twin at awkward sizes, each
//! method's scores on small data against a direct CPU computation, the ranking scores, and bad
//! input. The CLI end to end is in `outlier_cli.rs`.

use crate::common;

use common::*;
use kiln::unsupervised::outlier::{
    Autoencoder, IsolationForest, Lof, Mahalanobis, RobustZ, average_precision, flag, knn, roc_auc,
};
use kiln::unsupervised::{Points, outlier};
use kiln_kernels::launch::outlier as ok;
use kiln_kernels::reference::cluster as cluster_twin;
use kiln_kernels::reference::outlier as twin;

/// Mean path lengths: a sum of up to 100 f32 depths on the GPU against f64 on the host.
const PATH: Tolerance = Tolerance::new(1e-5, 1e-5, "f32 sum of integer depths + c(m)");
/// Squared distances from the GEMM expansion against direct f64.
const DIST: Tolerance = Tolerance::new(1e-4, 1e-3, "f32 GEMM expansion of squared distances");

/// `n` rows of `d` features: clusters of random points, a constant column when `constant`,
/// every third row a duplicate of the one before.
fn rows(n: usize, d: usize, tag: &str, constant: bool) -> Vec<f32> {
    let mut x = rand_vec(n * d, seed(tag), -3.0, 3.0);
    for i in 0..n {
        if i % 3 == 2 {
            let (a, b) = x.split_at_mut(i * d);
            b[..d].copy_from_slice(&a[(i - 1) * d..]);
        }
        if constant && d > 1 {
            x[i * d + 1] = 0.75;
        }
    }
    x
}

#[test]
fn iforest_path_kernel_matches_cpu_twin_at_awkward_sizes() {
    // (rows, features, trees, rows per tree); the rows scored are fresh ones, not the sample.
    for &(n, d, trees, psi, constant) in &[
        (2usize, 1usize, 1usize, 2usize, false),
        (7, 3, 5, 7, true),
        (257, 5, 100, 256, false),
        (1000, 2, 3, 256, true),
        (300, 1, 600, 3, false),
    ] {
        let x = rows(n, d, &format!("if{n}"), constant);
        let fit = IsolationForest::new()
            .trees(trees)
            .max_samples(psi)
            .seed(n as u64)
            .fit(&x, d)
            .unwrap();
        assert_eq!(fit.forest.trees(), trees);
        assert!(fit.forest.depth <= (psi.min(n) as f64).log2().ceil() as usize);
        let fresh = rows(n + 3, d, &format!("if-fresh{n}"), constant);
        let got = fit.path_lengths(&fresh).unwrap();
        let want = twin::path_lengths(&fit.forest, &fresh, d);
        PATH.assert_close(&format!("path n={n} d={d} trees={trees}"), &got, &want);
        // The rows themselves too (duplicates and the constant column included).
        let got = fit.path_lengths(&x).unwrap();
        PATH.assert_close(
            "path on the sample",
            &got,
            &twin::path_lengths(&fit.forest, &x, d),
        );
        // One row alone.
        let one = &fresh[..d];
        let got = fit.path_lengths(one).unwrap();
        PATH.assert_close("one row", &got, &twin::path_lengths(&fit.forest, one, d));
    }
}

/// The knn kernel alone on an uploaded distance matrix: exactly the twin's choice.
fn knn_on(d2: &[f32], rows: usize, cols: usize, k: usize, row0: usize, skip: bool) {
    let g = gpu();
    let t = tensor(d2, &[rows * cols]);
    let nd = g.alloc(4 * (rows * k) as u64, "nn_dist").unwrap();
    let ni = g.alloc(4 * (rows * k) as u64, "nn_idx").unwrap();
    ok::knn(&g, t.operand().buf, rows, cols, k, row0, skip, &nd, &ni).unwrap();
    let got_d: Vec<f32> =
        bytemuck::cast_slice(&g.read(&nd, 0, 4 * (rows * k) as u64).unwrap()).to_vec();
    let got_i: Vec<u32> =
        bytemuck::cast_slice(&g.read(&ni, 0, 4 * (rows * k) as u64).unwrap()).to_vec();
    let (want_d, want_i) = twin::knn(d2, cols, k, row0, skip);
    let what = format!("knn rows={rows} cols={cols} k={k} row0={row0}");
    assert_eq!(got_i, want_i, "{what}: indices");
    assert_eq!(got_d, want_d, "{what}: distances");
}

#[test]
fn knn_kernel_matches_cpu_twin_on_a_given_distance_matrix() {
    let chunk = ok::knn_chunk(30).unwrap();
    for &(rows, cols, k, row0, skip) in &[
        (1usize, 1usize, 1usize, 0usize, false),
        (5, 5, 4, 0, true),               // k = n - 1
        (7, 7, 7, 0, false),              // k = n, the row itself kept
        (3, 17, 5, 11, true),             // a block of rows in the middle
        (33, 257, 1, 200, true),          // k = 1
        (4, chunk + 70, 30, chunk, true), // two chunks, the row itself in the second
    ] {
        // Values on a coarse grid: many exact ties, which must go to the lower column.
        let d2: Vec<f32> = rand_indices(rows * cols, seed(&format!("kn{rows}{cols}")), 9)
            .iter()
            .map(|&v| v as f32 * 0.5)
            .collect();
        knn_on(&d2, rows, cols, k, row0, skip);
    }
    let g = gpu();
    let t = tensor(&[1.0, 2.0], &[2]);
    let b = g.alloc(8, "b").unwrap();
    let err = ok::knn(&g, t.operand().buf, 1, 2, 2, 0, true, &b, &b).unwrap_err();
    assert!(
        err.to_string().contains("k = 2 neighbours among 2 columns"),
        "{err}"
    );
    assert!(ok::knn_chunk(0).is_err());
}

#[test]
fn knn_on_points_matches_direct_distances() {
    for &(n, d, k) in &[
        (2usize, 1usize, 1usize),
        (9, 3, 8),
        (300, 4, 20),
        (129, 2, 5),
    ] {
        let x = rows(n, d, &format!("kp{n}"), d > 2);
        let got = knn(&Points::new(&x, d).unwrap(), k).unwrap();
        let (want_d2, want_i) = twin::knn_points(&x, d, k);
        // Squared: the square root would magnify the GEMM's rounding at duplicates (0).
        let got_d2: Vec<f32> = got.dist.iter().map(|v| v * v).collect();
        DIST.assert_close(&format!("knn distances n={n}"), &got_d2, &want_d2);
        // Indices may differ only between neighbours at (nearly) the same distance.
        for (i, (&a, &b)) in got.idx.iter().zip(&want_i).enumerate() {
            if a != b {
                let r = i / k;
                let da = cluster_twin::sq_dist(&x[r * d..(r + 1) * d], &x[a as usize * d..][..d]);
                let db = cluster_twin::sq_dist(&x[r * d..(r + 1) * d], &x[b as usize * d..][..d]);
                assert!(DIST.close(da, db), "row {r}: neighbour {a} vs {b}");
            }
        }
    }
}

/// LOF by its definition, from the twin's neighbours (direct f64 distances).
fn lof_direct(x: &[f32], d: usize, k: usize) -> Vec<f64> {
    let (d2, idx) = twin::knn_points(x, d, k);
    let n = x.len() / d;
    let dist = |a: usize, j: usize| d2[a * k + j].sqrt();
    let kdist: Vec<f64> = (0..n).map(|a| dist(a, k - 1)).collect();
    let lrd: Vec<f64> = (0..n)
        .map(|a| {
            let m = (0..k)
                .map(|j| kdist[idx[a * k + j] as usize].max(dist(a, j)))
                .sum::<f64>()
                / k as f64;
            1.0 / (m + 1e-10)
        })
        .collect();
    (0..n)
        .map(|a| (0..k).map(|j| lrd[idx[a * k + j] as usize]).sum::<f64>() / k as f64 / lrd[a])
        .collect()
}

#[test]
fn lof_matches_its_definition_and_finds_isolated_points() {
    // No duplicates here: with duplicates lrd is 1e10 and tiny distance errors are magnified.
    let (n, d, k) = (200, 3, 10);
    let mut x = rand_vec(n * d, seed("lof"), -1.0, 1.0);
    x.extend([6.0, 6.0, 6.0, -5.0, 4.0, 0.0]);
    let got = Lof::new(k).fit_score(&x, d).unwrap();
    Tolerance::new(1e-3, 1e-3, "LOF from f32 GEMM distances").assert_close(
        "lof",
        &got,
        &lof_direct(&x, d, k),
    );
    let top = |s: &[f64]| {
        let mut o: Vec<usize> = (0..s.len()).collect();
        o.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        o
    };
    let order = top(&got);
    assert_eq!(
        order[..2]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [n, n + 1].into()
    );
    // Duplicates: LOF stays finite.
    let dup = rows(60, 2, "lofdup", false);
    assert!(
        Lof::new(3)
            .fit_score(&dup, 2)
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    );
}

#[test]
fn isolation_forest_scores_outliers_high_and_is_deterministic() {
    let (n, d) = (500, 4);
    let mut x = rows(n, d, "ifs", true);
    x.extend([30.0, 0.75, -30.0, 30.0]); // far away, on the constant column's value
    let m = IsolationForest::new().seed(3);
    let a = m.fit_score(&x, d).unwrap();
    assert_eq!(a, m.fit_score(&x, d).unwrap(), "same seed, same scores");
    assert!(a.iter().all(|&s| s > 0.0 && s <= 1.0));
    let (best, _) = a
        .iter()
        .enumerate()
        .fold((0, 0.0), |b, (i, &s)| if s > b.1 { (i, s) } else { b });
    assert_eq!(best, n);
    assert!(a[n] > 0.7, "{}", a[n]);
    // Every feature constant: one leaf per tree, every row the same score.
    let flat = vec![2.0f32; 40];
    let s = IsolationForest::new().fit_score(&flat, 2).unwrap();
    assert!(s.iter().all(|&v| v == s[0]));
}

#[test]
fn mahalanobis_and_robust_z_match_direct_computations() {
    // Correlated 2-D data plus a constant column (left out: a zero eigenvalue).
    let n = 101;
    let a = rand_vec(n, seed("ma"), -2.0, 2.0);
    let b = rand_vec(n, seed("mb"), -0.5, 0.5);
    let x: Vec<f32> = (0..n)
        .flat_map(|i| [a[i], 3.0, 0.8 * a[i] + b[i]])
        .collect();
    let got = Mahalanobis.fit_score(&x, 3).unwrap();
    // Direct: the 2 x 2 covariance of columns 0 and 2 (divisor n - 1), inverted in f64.
    let col = |j: usize| (0..n).map(|i| x[i * 3 + j] as f64).collect::<Vec<_>>();
    let (u, v) = (col(0), col(2));
    let mean = |c: &[f64]| c.iter().sum::<f64>() / n as f64;
    let (mu, mv) = (mean(&u), mean(&v));
    let cov = |p: &[f64], mp: f64, q: &[f64], mq: f64| {
        (0..n).map(|i| (p[i] - mp) * (q[i] - mq)).sum::<f64>() / (n - 1) as f64
    };
    let (suu, suv, svv) = (
        cov(&u, mu, &u, mu),
        cov(&u, mu, &v, mv),
        cov(&v, mv, &v, mv),
    );
    let det = suu * svv - suv * suv;
    let want: Vec<f64> = (0..n)
        .map(|i| {
            let (p, q) = (u[i] - mu, v[i] - mv);
            (svv * p * p - 2.0 * suv * p * q + suu * q * q) / det
        })
        .collect();
    Tolerance::new(1e-3, 1e-3, "f32 covariance GEMM, Jacobi, projection").assert_close(
        "mahalanobis",
        &got,
        &want,
    );
    // Robust z: median 3, MAD 1 on the first column (values 1..5 and 100).
    let x = [
        1.0f32, 7.0, 2.0, 7.0, 3.0, 7.0, 4.0, 7.0, 5.0, 7.0, 100.0, 7.0,
    ];
    let z = RobustZ.fit_score(&x, 2).unwrap();
    let med = 3.5;
    let mad = 1.5; // |x - 3.5| = 2.5 1.5 .5 .5 1.5 96.5: median 1.5
    for (i, &v) in [1.0f64, 2.0, 3.0, 4.0, 5.0, 100.0].iter().enumerate() {
        assert!(
            (z[i] - 0.6745 * (v - med).abs() / mad).abs() < 1e-9,
            "row {i}"
        );
    }
}

#[test]
fn autoencoder_trained_by_the_trainer_scores_off_pattern_rows_high() {
    // 96 rows on a random plane in 6-D (x = z A), and 4 random rows off it.
    let (n, d) = (96, 6);
    let z = rand_vec(2 * n, seed("aez"), -1.0, 1.0);
    let a = rand_vec(2 * d, seed("aea"), -1.0, 1.0);
    let mut x: Vec<f32> = (0..n * d)
        .map(|i| z[i / d * 2] * a[i % d] + z[i / d * 2 + 1] * a[d + i % d])
        .collect();
    x.extend(rand_vec(4 * d, seed("aeo"), -1.0, 1.0));
    let ae = Autoencoder {
        hidden: vec![16, 4, 16],
        epochs: 60,
        lr: 1e-2,
        batch_size: 16,
        ..Autoencoder::default()
    };
    let s = ae.fit_score(&x, d).unwrap();
    assert_eq!(s.len(), n + 4);
    let typical = s[..n].iter().sum::<f64>() / n as f64;
    let off = s[n..].iter().sum::<f64>() / 4.0;
    assert!(off > 3.0 * typical, "{typical} {s:?}");
    assert_eq!(s, ae.fit_score(&x, d).unwrap(), "seeded: same scores");
}

#[test]
fn ranking_scores_match_scikit_learn() {
    // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75,
    // average_precision_score(same) = 0.8333333333333333.
    let t = [false, false, true, true];
    let s = [0.1, 0.4, 0.35, 0.8];
    assert!((roc_auc(&s, &t).unwrap() - 0.75).abs() < 1e-12);
    assert!((average_precision(&s, &t).unwrap() - 0.833_333_333_333_333_3).abs() < 1e-12);
    // Ties: roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) = 0.875;
    // average_precision_score(same) = 0.8333333333333333.
    let t = [false, true, false, true];
    let s = [0.5, 0.5, 0.2, 0.9];
    assert!((roc_auc(&s, &t).unwrap() - 0.875).abs() < 1e-12);
    assert!((average_precision(&s, &t).unwrap() - 0.833_333_333_333_333_3).abs() < 1e-12);
    assert_eq!(roc_auc(&s, &[false; 4]), None);
    // Flagging: round(c n) top rows, ties with the last included.
    let (f, thr) = flag(&[1.0, 5.0, 3.0, 5.0, 2.0], 0.2).unwrap();
    assert_eq!((f, thr), (vec![false, true, false, true, false], 5.0));
}

#[test]
fn bad_input_is_a_clear_error() {
    let x = rows(10, 2, "bad", false);
    let msg = |r: kiln::Result<Vec<f64>>| r.unwrap_err().to_string();
    for c in [0.0, -0.1, 0.51, f64::NAN] {
        let e = flag(&[1.0, 2.0], c).unwrap_err().to_string();
        assert!(e.contains("(0, 0.5]"), "{c}: {e}");
    }
    assert!(msg(Lof::new(10).fit_score(&x, 2)).contains("k = 10"));
    assert!(msg(Lof::new(0).fit_score(&x, 2)).contains("k = 0"));
    let one = [1.0f32, 2.0];
    for e in [
        msg(Lof::new(1).fit_score(&one, 2)),
        msg(IsolationForest::new().fit_score(&one, 2)),
        msg(Mahalanobis.fit_score(&one, 2)),
        msg(RobustZ.fit_score(&one, 2)),
        msg(Autoencoder::default().fit_score(&one, 2)),
    ] {
        assert!(e.contains("1 row"), "{e}");
    }
    let flat = vec![1.5f32; 12];
    assert!(msg(Mahalanobis.fit_score(&flat, 3)).contains("every feature is constant"));
    assert!(msg(RobustZ.fit_score(&flat, 3)).contains("every feature is constant"));
    assert!(msg(IsolationForest::new().max_samples(1).fit_score(&x, 2)).contains("max_samples"));
    assert!(msg(IsolationForest::new().trees(0).fit_score(&x, 2)).contains("0 trees"));
    assert!(msg(Lof::new(1).fit_score(&[1.0, f32::NAN], 1)).contains("row 1"));
    let e = Autoencoder {
        hidden: vec![],
        ..Autoencoder::default()
    }
    .fit_score(&x, 2);
    assert!(msg(e).contains("hidden"));
    assert!(outlier::check_rows("t", &x, 3).is_err());
}
