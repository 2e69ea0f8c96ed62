//! CPU twin of the fused attention kernels (`shaders/attention/`), on contiguous row-major data.
//!
//! Textbook form: the full score row, its max and log-sum-exp, then the weighted sum, so a test
//! also checks the kernels' online rescaling. The backward uses the same formulas as the kernels
//! (`dV = Pᵀ dO`, `dS = P ∘ (dO Vᵀ - rowsum(dO ∘ O))`, `dQ = scale dS K`, `dK = scale dSᵀ Q`),
//! but from the full P matrix of each head.

use num_traits::Float;

use crate::launch::attention::AttnShape;

/// True when query `i` may see key `j` (causal aligned to the end, then the keep mask (B, Tk)).
fn visible<T: Float>(s: &AttnShape, keep: Option<&[T]>, b: usize, i: usize, j: usize) -> bool {
    let causal_ok = !s.causal || (j as i64) <= i as i64 + s.tk as i64 - s.tq as i64;
    let kept = keep.is_none_or(|m| m[b * s.tk + j] != T::zero());
    causal_ok && kept
}

/// The (Tq, Tk) probabilities of head `bh` (0 where masked; a row with no visible key is all 0)
/// and the (Tq) log-sum-exp rows (-inf for such a row).
fn probs<T: Float>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    keep: Option<&[T]>,
    bh: usize,
) -> (Vec<T>, Vec<T>) {
    let (tq, tk, d) = (s.tq, s.tk, s.d);
    let b = bh / s.heads;
    let scale = T::from(s.scale).unwrap();
    let mut p = vec![T::zero(); tq * tk];
    let mut lse = vec![T::neg_infinity(); tq];
    for i in 0..tq {
        let qi = &q[(bh * tq + i) * d..][..d];
        let mut row = vec![T::neg_infinity(); tk];
        for (j, r) in row.iter_mut().enumerate() {
            if visible(s, keep, b, i, j) {
                let kj = &k[(bh * tk + j) * d..][..d];
                *r = qi.iter().zip(kj).fold(T::zero(), |a, (&x, &y)| a + x * y) * scale;
            }
        }
        let m = row.iter().fold(T::neg_infinity(), |a, &v| a.max(v));
        if m == T::neg_infinity() {
            continue;
        }
        let sum = row.iter().fold(T::zero(), |a, &v| a + (v - m).exp());
        lse[i] = m + sum.ln();
        for j in 0..tk {
            p[i * tk + j] = (row[j] - lse[i]).exp();
        }
    }
    (p, lse)
}

/// Forward: q (B, H, Tq, D), k / v (B, H, Tk, D), keep (B, Tk) -> `(o (B, H, Tq, D),
/// lse (B, H, Tq))`.
pub fn forward<T: Float>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    let (tq, tk, d) = (s.tq, s.tk, s.d);
    let bhs = s.batch * s.heads;
    let mut o = vec![T::zero(); bhs * tq * d];
    let mut lse = Vec::with_capacity(bhs * tq);
    for bh in 0..bhs {
        let (p, l) = probs(s, q, k, keep, bh);
        lse.extend(l);
        for i in 0..tq {
            for j in 0..tk {
                let w = p[i * tk + j];
                for c in 0..d {
                    o[(bh * tq + i) * d + c] =
                        o[(bh * tq + i) * d + c] + w * v[(bh * tk + j) * d + c];
                }
            }
        }
    }
    (o, lse)
}

/// Backward: given dO (B, H, Tq, D), returns `(dq, dk, dv)` shaped like q, k, v.
pub fn backward<T: Float>(
    s: &AttnShape,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
    dout: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (tq, tk, d) = (s.tq, s.tk, s.d);
    let bhs = s.batch * s.heads;
    let scale = T::from(s.scale).unwrap();
    let (mut dq, mut dk, mut dv) = (
        vec![T::zero(); q.len()],
        vec![T::zero(); k.len()],
        vec![T::zero(); v.len()],
    );
    let dot = |a: &[T], b: &[T]| a.iter().zip(b).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for bh in 0..bhs {
        let (p, _) = probs(s, q, k, keep, bh);
        for i in 0..tq {
            let qrow = (bh * tq + i) * d;
            let g = &dout[qrow..][..d];
            // dP_ij = dO_i . v_j; delta_i = sum_j P_ij dP_ij (= dO_i . O_i)
            let dp: Vec<T> = (0..tk)
                .map(|j| dot(g, &v[(bh * tk + j) * d..][..d]))
                .collect();
            let delta = (0..tk).fold(T::zero(), |a, j| a + p[i * tk + j] * dp[j]);
            for j in 0..tk {
                let pij = p[i * tk + j];
                let ds = pij * (dp[j] - delta) * scale;
                let krow = (bh * tk + j) * d;
                for c in 0..d {
                    dv[krow + c] = dv[krow + c] + pij * g[c];
                    dq[qrow + c] = dq[qrow + c] + ds * k[krow + c];
                    dk[krow + c] = dk[krow + c] + ds * q[qrow + c];
                }
            }
        }
    }
    (dq, dk, dv)
}
