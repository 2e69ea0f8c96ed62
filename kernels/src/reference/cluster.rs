//! CPU twin of `cluster.wgsl`, and the one Lloyd (k-means) loop that both the GPU path and the
//! CPU twin run: only the step (assignment + centroid sums) differs between them.
//!
//! Distances here are computed directly, `sum_j (x_j - y_j)^2` in f64, not through the GEMM
//! expansion the kernels use, so a test compares two independent routes.

/// Squared Euclidean distance of two rows.
pub fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| {
            let t = p as f64 - q as f64;
            t * t
        })
        .sum()
}

/// Squared distances of every row of x (n, d) to every row of y (m, d): (n, m).
pub fn sq_dists(x: &[f32], y: &[f32], d: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for a in x.chunks(d) {
        out.extend(y.chunks(d).map(|b| sq_dist(a, b)));
    }
    out
}

/// Squared row norms of x (n, d).
pub fn sq_norms(x: &[f32], d: usize) -> Vec<f64> {
    x.chunks(d)
        .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum())
        .collect()
}

/// Nearest centroid of each row (ties: the smaller index) and its squared distance.
/// x: (n, d); c: (k, d).
pub fn assign(x: &[f32], c: &[f32], d: usize) -> (Vec<u32>, Vec<f64>) {
    let mut labels = Vec::new();
    let mut dist = Vec::new();
    for a in x.chunks(d) {
        let (mut bi, mut best) = (0usize, f64::INFINITY);
        for (j, b) in c.chunks(d).enumerate() {
            let v = sq_dist(a, b);
            if v < best {
                (bi, best) = (j, v);
            }
        }
        labels.push(bi as u32);
        dist.push(best);
    }
    (labels, dist)
}

/// Per cluster, the sum of its rows and (last column) their count: (k, d + 1).
pub fn centroid_sums(x: &[f32], labels: &[u32], d: usize, k: usize) -> Vec<f64> {
    let mut s = vec![0.0f64; k * (d + 1)];
    for (r, &l) in x.chunks(d).zip(labels) {
        let row = &mut s[l as usize * (d + 1)..(l as usize + 1) * (d + 1)];
        for (o, &v) in row.iter_mut().zip(r) {
            *o += v as f64;
        }
        row[d] += 1.0;
    }
    s
}

/// Neighbours of each row within squared radius `eps2` (itself included). x: (n, d).
pub fn count_within(x: &[f32], d: usize, eps2: f64) -> Vec<u32> {
    x.chunks(d)
        .map(|a| x.chunks(d).filter(|b| sq_dist(a, b) <= eps2).count() as u32)
        .collect()
}

/// One assignment step of Lloyd's algorithm against some centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Nearest centroid per row: (n).
    pub labels: Vec<u32>,
    /// Squared distance to it: (n).
    pub d2: Vec<f32>,
    /// Per cluster the sum of its rows and their count: (k, d + 1).
    pub sums: Vec<f32>,
}

/// The step of the CPU twin: [`assign`] then [`centroid_sums`], in f64, rounded to f32.
pub fn cpu_step(x: &[f32], c: &[f32], d: usize) -> Step {
    let k = c.len() / d;
    let (labels, d2) = assign(x, c, d);
    let sums = centroid_sums(x, &labels, d, k);
    Step {
        labels,
        d2: d2.iter().map(|&v| v as f32).collect(),
        sums: sums.iter().map(|&v| v as f32).collect(),
    }
}

/// New centroids from a step: the mean of each cluster's rows. An empty cluster takes the row
/// farthest from its own centroid (largest `d2`, ties: the lower row), each row at most once,
/// empty clusters served in index order (scikit-learn relocates the same way).
///
/// x: (n, d); old: (k, d); returns (k, d) and the indices of the relocated clusters.
pub fn update_centroids(step: &Step, x: &[f32], old: &[f32], d: usize) -> (Vec<f32>, Vec<usize>) {
    let k = old.len() / d;
    let mut c = old.to_vec();
    let mut empty = Vec::new();
    for j in 0..k {
        let row = &step.sums[j * (d + 1)..(j + 1) * (d + 1)];
        let count = row[d];
        if count > 0.0 {
            for (o, &s) in c[j * d..(j + 1) * d].iter_mut().zip(row) {
                *o = s / count;
            }
        } else {
            empty.push(j);
        }
    }
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..step.d2.len()).collect();
        far.sort_by(|&a, &b| step.d2[b].total_cmp(&step.d2[a]).then(a.cmp(&b)));
        for (&j, &r) in empty.iter().zip(&far) {
            c[j * d..(j + 1) * d].copy_from_slice(&x[r * d..(r + 1) * d]);
        }
    }
    (c, empty)
}

/// What Lloyd's algorithm ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct Lloyd {
    /// Final centroids: (k, d).
    pub centroids: Vec<f32>,
    /// The last step, against the final centroids (labels, squared distances, sums).
    pub step: Step,
    /// Sum of squared distances to the nearest centroid, in f64.
    pub inertia: f64,
    /// Centroid updates made.
    pub iterations: usize,
    /// True when the centroids moved by at most `tol` (sum of squared shifts) before
    /// `max_iter` ran out.
    pub converged: bool,
    /// Empty clusters relocated, over all iterations.
    pub relocated: usize,
}

/// Lloyd's algorithm from `init` (k, d): assign, update, until the squared centroid shift is at
/// most `tol` or after `max_iter` updates. `step` assigns rows to centroids and sums them (the
/// GPU kernels or [`cpu_step`]); x (n, d) is needed on the host to relocate empty clusters.
pub fn lloyd<E>(
    x: &[f32],
    init: &[f32],
    d: usize,
    max_iter: usize,
    tol: f64,
    mut step: impl FnMut(&[f32]) -> Result<Step, E>,
) -> Result<Lloyd, E> {
    let mut c = init.to_vec();
    let mut s = step(&c)?;
    let (mut iterations, mut converged, mut relocated) = (0, false, 0);
    while iterations < max_iter {
        let (next, empty) = update_centroids(&s, x, &c, d);
        relocated += empty.len();
        let shift: f64 = sq_dist(&next, &c);
        c = next;
        iterations += 1;
        s = step(&c)?;
        if shift <= tol {
            converged = true;
            break;
        }
    }
    let inertia = s.d2.iter().map(|&v| v as f64).sum();
    Ok(Lloyd {
        centroids: c,
        step: s,
        inertia,
        iterations,
        converged,
        relocated,
    })
}
