//! CPU twin of `norm.wgsl`: LayerNorm and RMSNorm over the last dim of row-major (R, D) data,
//! straight from the formulas (two-pass mean and biased variance).

use num_traits::Float;

use crate::launch::norm::NormKind;

/// Forward: (y, per-row `[mean, rstd]` flattened to (R, 2)). `b` is ignored for RMSNorm.
pub fn norm_forward<T: Float>(
    kind: NormKind,
    d: usize,
    x: &[T],
    w: &[T],
    b: &[T],
    eps: T,
) -> (Vec<T>, Vec<T>) {
    let dn = T::from(d).expect("d");
    let mut y = Vec::with_capacity(x.len());
    let mut stats = Vec::new();
    for row in x.chunks(d) {
        let mean = match kind {
            NormKind::LayerNorm => row.iter().fold(T::zero(), |a, &v| a + v) / dn,
            NormKind::RmsNorm => T::zero(),
        };
        let var = row
            .iter()
            .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
            / dn;
        let rstd = T::one() / (var + eps).sqrt();
        for (i, &v) in row.iter().enumerate() {
            let shift = match kind {
                NormKind::LayerNorm => b[i],
                NormKind::RmsNorm => T::zero(),
            };
            y.push((v - mean) * rstd * w[i] + shift);
        }
        stats.push(mean);
        stats.push(rstd);
    }
    (y, stats)
}

/// Gradients (dx, dw, db) of `sum(y * g)` (db is zeros for RMSNorm).
pub fn norm_backward<T: Float>(
    kind: NormKind,
    d: usize,
    x: &[T],
    w: &[T],
    g: &[T],
    eps: T,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (_, stats) = norm_forward(kind, d, x, w, w, eps);
    let dn = T::from(d).expect("d");
    let mut dx = Vec::with_capacity(x.len());
    let mut dw = vec![T::zero(); d];
    let mut db = vec![T::zero(); d];
    for (r, (xr, gr)) in x.chunks(d).zip(g.chunks(d)).enumerate() {
        let (mean, rstd) = (stats[2 * r], stats[2 * r + 1]);
        let xhat: Vec<T> = xr.iter().map(|&v| (v - mean) * rstd).collect();
        let gw: Vec<T> = gr.iter().zip(w).map(|(&a, &b)| a * b).collect();
        let m_gw = match kind {
            NormKind::LayerNorm => gw.iter().fold(T::zero(), |a, &v| a + v) / dn,
            NormKind::RmsNorm => T::zero(),
        };
        let m_gwx = gw
            .iter()
            .zip(&xhat)
            .fold(T::zero(), |a, (&p, &q)| a + p * q)
            / dn;
        for i in 0..d {
            dx.push(rstd * (gw[i] - m_gw - xhat[i] * m_gwx));
            dw[i] = dw[i] + gr[i] * xhat[i];
            if kind == NormKind::LayerNorm {
                db[i] = db[i] + gr[i];
            }
        }
    }
    (dx, dw, db)
}
