//! CPU twin of `batch_norm.wgsl`, on contiguous row-major (N, C, HW) data, written straight from
//! the textbook formulas (two-pass mean and biased variance).

use num_traits::Float;

use crate::launch::batch_norm::NormShape;

fn channel<T: Float>(s: NormShape, x: &[T], c: usize) -> impl Iterator<Item = T> + '_ {
    (0..s.n).flat_map(move |n| {
        x[(n * s.c + c) * s.hw..(n * s.c + c + 1) * s.hw]
            .iter()
            .copied()
    })
}

fn count<T: Float>(s: NormShape) -> T {
    T::from(s.per_channel()).expect("count")
}

/// Per-channel batch mean and biased variance of x.
pub fn batch_stats<T: Float>(s: NormShape, x: &[T]) -> (Vec<T>, Vec<T>) {
    let m = count::<T>(s);
    let mean: Vec<T> = (0..s.c)
        .map(|c| channel(s, x, c).fold(T::zero(), |a, v| a + v) / m)
        .collect();
    let var = (0..s.c)
        .map(|c| {
            channel(s, x, c)
                .map(|v| (v - mean[c]) * (v - mean[c]))
                .fold(T::zero(), |a, v| a + v)
                / m
        })
        .collect();
    (mean, var)
}

/// `y = (x - mean_c) / sqrt(var_c + eps) * w_c + b_c`.
pub fn normalize<T: Float>(
    s: NormShape,
    x: &[T],
    mean: &[T],
    var: &[T],
    weight: &[T],
    bias: &[T],
    eps: T,
) -> Vec<T> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / s.hw) % s.c;
            (v - mean[c]) / (var[c] + eps).sqrt() * weight[c] + bias[c]
        })
        .collect()
}

/// Training-mode forward: (y, batch mean, biased batch variance).
pub fn batch_norm_train<T: Float>(
    s: NormShape,
    x: &[T],
    weight: &[T],
    bias: &[T],
    eps: T,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (mean, var) = batch_stats(s, x);
    let y = normalize(s, x, &mean, &var, weight, bias, eps);
    (y, mean, var)
}

/// Gradients (dx, dw, db) of `sum(y * g)`, with `mean`/`var` the statistics the forward used.
/// Training: the batch statistics depend on x; eval: they are constants.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: Float>(
    s: NormShape,
    training: bool,
    g: &[T],
    x: &[T],
    mean: &[T],
    var: &[T],
    weight: &[T],
    eps: T,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let invstd: Vec<T> = var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
    let xhat = |i: usize| {
        let c = (i / s.hw) % s.c;
        (x[i] - mean[c]) * invstd[c]
    };
    let mut db = vec![T::zero(); s.c];
    let mut dw = vec![T::zero(); s.c];
    for (i, &gi) in g.iter().enumerate() {
        let c = (i / s.hw) % s.c;
        db[c] = db[c] + gi;
        dw[c] = dw[c] + gi * xhat(i);
    }
    let m = count::<T>(s);
    let dx = (0..x.len())
        .map(|i| {
            let c = (i / s.hw) % s.c;
            let k = weight[c] * invstd[c];
            if training {
                k / m * (m * g[i] - db[c] - xhat(i) * dw[c])
            } else {
                k * g[i]
            }
        })
        .collect();
    (dx, dw, db)
}

/// The running-statistics update of `stats_update`: `run = (1 - m) run + m batch`, with the
/// variance made unbiased (times M / (M - 1)). Updates `run_mean` and `run_var` in place.
pub fn update_running<T: Float>(
    s: NormShape,
    momentum: T,
    mean: &[T],
    var: &[T],
    run_mean: &mut [T],
    run_var: &mut [T],
) {
    let m = count::<T>(s);
    let k = T::one() - momentum;
    for c in 0..s.c {
        run_mean[c] = k * run_mean[c] + momentum * mean[c];
        run_var[c] = k * run_var[c] + momentum * var[c] * m / (m - T::one());
    }
}
