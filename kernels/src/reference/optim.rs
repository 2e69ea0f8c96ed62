//! CPU twin of `optim.wgsl` (the same updates, element by element, in any float type) and of
//! `optim8bit.wgsl` (8-bit Adam: block-wise dynamic quantisation of the moments, in f32) and of
//! `grad_scale.wgsl` (the loss scaler's unscale and update, in f32).

use num_traits::Float;

use crate::launch::optim::{
    AdamStep, Q8_BLOCK, Q8_CODES, Q8_PER_WORD, Q8_SIGNED_ZERO, SCALER_WORDS, ScaleUpdate, SgdStep,
    q8_blocks, q8_words,
};

fn c<T: Float>(v: f32) -> T {
    T::from(v).expect("an f32 fits any float type")
}

/// One SGD update in place; `buf` is the momentum buffer (zeros before the first step), given
/// exactly when `h.momentum != 0`.
pub fn sgd<T: Float>(h: &SgdStep, p: &mut [T], grad: &[T], mut buf: Option<&mut [T]>) {
    let (lr, mu, wd) = (c::<T>(h.lr), c::<T>(h.momentum), c::<T>(h.weight_decay));
    for i in 0..p.len() {
        let g = grad[i] + wd * p[i];
        let u = match buf.as_deref_mut() {
            Some(b) => {
                b[i] = mu * b[i] + g;
                if h.nesterov { g + mu * b[i] } else { b[i] }
            }
            None => g,
        };
        p[i] = p[i] - lr * u;
    }
}

/// One Adam / AdamW update in place; `m`, `v` are zeros before the first step.
pub fn adam<T: Float>(h: &AdamStep, p: &mut [T], grad: &[T], m: &mut [T], v: &mut [T]) {
    let (lr, b1, b2, eps, wd) = (
        c::<T>(h.lr),
        c::<T>(h.beta1),
        c::<T>(h.beta2),
        c::<T>(h.eps),
        c::<T>(h.weight_decay),
    );
    let (bc1, bc2) = (c::<T>(h.bc1), c::<T>(h.bc2));
    let one = T::one();
    for i in 0..p.len() {
        let mut g = grad[i];
        if h.decoupled {
            p[i] = p[i] * (one - lr * wd);
        } else {
            g = g + wd * p[i];
        }
        m[i] = b1 * m[i] + (one - b1) * g;
        v[i] = b2 * v[i] + (one - b2) * g * g;
        let denom = v[i].sqrt() / bc2.sqrt() + eps;
        p[i] = p[i] - (lr / bc1) * (m[i] / denom);
    }
}

/// The two dynamic 8-bit code books of 8-bit Adam, 512 f32: the signed book (first moment,
/// entries 0..256) then the unsigned one (second moment, 256..512), each ascending in [-1, 1]
/// or [0, 1].
///
/// Dynamic (tree) quantisation as described by Dettmers et al. (8-bit Optimizers via Block-wise
/// Quantization, 2022): a value is sign x 10^-e x f, the exponent e in 0..=6 chosen by the run of
/// leading zero bits and the fraction f linear in (0.1, 1) with the bits that remain. Our
/// construction, stated exactly: decade `j` in 0..7 (magnitudes 10^(j-6) x (0.1, 1)) holds `k_j`
/// fractions at the centres of `k_j` equal bins of (0.1, 1), `k_j = 2^j` per sign for the signed
/// book (127 magnitudes, both signs, plus 0 and 1: 256) and `k_j = 2^(j+1)` for the unsigned
/// one, which spends the sign bit on fraction (254 magnitudes plus 0 and 1). Small magnitudes
/// thus get a relative precision that large ones get only in absolute terms: the moments of one
/// block span several decades.
pub fn q8_code() -> Vec<f32> {
    let book = |signed: bool| {
        let mut v = vec![0.0f64, 1.0];
        for j in 0..7i32 {
            let k = 1usize << (j + (!signed) as i32);
            for b in 0..k {
                let x = 10f64.powi(j - 6) * (0.1 + 0.9 * (b as f64 + 0.5) / k as f64);
                v.push(x);
                if signed {
                    v.push(-x);
                }
            }
        }
        let mut v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        v.sort_by(f32::total_cmp);
        v
    };
    [book(true), book(false)].concat()
}

/// The index of the entry of the ascending 256-entry book `tab` nearest to `x` (ties to the
/// lower): a binary search for the last entry `<= x`, then the closer of it and the next. The
/// shader runs the same steps.
pub fn q8_nearest(tab: &[f32], x: f32) -> u32 {
    let mut lo = 0usize;
    let mut step = Q8_CODES / 2;
    while step > 0 {
        if tab[lo + step] <= x {
            lo += step;
        }
        step /= 2;
    }
    if lo + 1 < Q8_CODES && tab[lo + 1] - x < x - tab[lo] {
        lo += 1;
    }
    lo as u32
}

/// Code `i` of a packed code array (byte `i % 4` of word `i / 4`, low byte first).
pub fn q8_get(words: &[u32], i: usize) -> u32 {
    (words[i / Q8_PER_WORD] >> (8 * (i % Q8_PER_WORD))) & 0xff
}

/// The moments `(m, v)` of `n` values stored as codes `mq`, `vq` and block scales `scales`
/// (`[absmax of m per block..., absmax of v per block...]`), `code` from [`q8_code`].
pub fn q8_dequantise(
    code: &[f32],
    n: usize,
    mq: &[u32],
    vq: &[u32],
    scales: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let nb = q8_blocks(n);
    let m = (0..n)
        .map(|i| code[q8_get(mq, i) as usize] * scales[i / Q8_BLOCK])
        .collect();
    let v = (0..n)
        .map(|i| code[Q8_CODES + q8_get(vq, i) as usize] * scales[nb + i / Q8_BLOCK])
        .collect();
    (m, v)
}

/// One 8-bit Adam / AdamW update in place (`optim8bit.wgsl:adam8bit`), block by block: dequantise
/// the block's moments, run [`adam`] in f32 on them (the parameter moves with the fresh f32
/// moments), take the new absmax of m and of v as the block's scales and store each moment as
/// the nearest code of `m / absmax` (signed book) and `v / absmax` (unsigned book), except that
/// a positive v never stores code 0: it takes the smallest positive entry, so that a tiny
/// second moment never decodes to 0 and turns the next update into `m / eps`. A block of
/// zeros has scale 0. Codes past `n` in the last word are padding: the signed 0 and unsigned 0.
///
/// Shapes: `p`, `grad` (n); `mq`, `vq` ([`q8_words`]`(n)`); `scales` (2 [`q8_blocks`]`(n)`);
/// `code` (512, [`q8_code`]). Zeros everywhere before the first step.
pub fn adam8bit(
    h: &AdamStep,
    code: &[f32],
    p: &mut [f32],
    grad: &[f32],
    mq: &mut [u32],
    vq: &mut [u32],
    scales: &mut [f32],
) {
    let n = p.len();
    let nb = q8_blocks(n);
    let (m_all, v_all) = q8_dequantise(code, n, mq, vq, scales);
    for b in 0..nb {
        let r = b * Q8_BLOCK..((b + 1) * Q8_BLOCK).min(n);
        let (mut m, mut v) = (m_all[r.clone()].to_vec(), v_all[r.clone()].to_vec());
        adam(h, &mut p[r.clone()], &grad[r.clone()], &mut m, &mut v);
        let am = m.iter().fold(0.0f32, |a, x| a.max(x.abs()));
        let av = v.iter().fold(0.0f32, |a, &x| a.max(x));
        scales[b] = am;
        scales[nb + b] = av;
        for (j, i) in r.enumerate() {
            let x = if am > 0.0 { m[j] / am } else { 0.0 };
            let y = if av > 0.0 { v[j] / av } else { 0.0 };
            let cm = q8_nearest(&code[..Q8_CODES], x);
            let mut cv = q8_nearest(&code[Q8_CODES..], y);
            if cv == 0 && v[j] > 0.0 {
                cv = 1;
            }
            q8_set(mq, i, cm);
            q8_set(vq, i, cv);
        }
    }
    for i in n..q8_words(n) * Q8_PER_WORD {
        q8_set(mq, i, Q8_SIGNED_ZERO);
        q8_set(vq, i, 0);
    }
}

/// Store code `c` (< 256) as code `i` of a packed array.
fn q8_set(words: &mut [u32], i: usize, c: u32) {
    let shift = 8 * (i % Q8_PER_WORD);
    let w = &mut words[i / Q8_PER_WORD];
    *w = (*w & !(0xff << shift)) | (c << shift);
}

/// `grad_scale.wgsl:unscale`: `g *= 1 / scale` in place; `state[0] = 1` when a result is inf or
/// NaN.
pub fn unscale(grad: &mut [f32], scale: f32, state: &mut [u32; SCALER_WORDS]) {
    let inv = 1.0 / scale;
    for g in grad.iter_mut() {
        *g *= inv;
        if !g.is_finite() {
            state[0] = 1;
        }
    }
}

/// `grad_scale.wgsl:update`: back off and count a skip on overflow, else count a good step and
/// grow every `u.interval`; clear found_inf.
pub fn update_scale(u: &ScaleUpdate, scale: &mut f32, state: &mut [u32; SCALER_WORDS]) {
    if state[0] != 0 {
        *scale *= u.backoff;
        state[1] = 0;
        state[2] += 1;
    } else {
        state[1] += 1;
        if state[1] >= u.interval.max(1) {
            state[1] = 0;
            let grown = *scale * u.growth;
            if grown.is_finite() {
                *scale = grown;
            }
        }
    }
    state[0] = 0;
}
