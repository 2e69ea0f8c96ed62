//! Scaled dot-product attention: `O = softmax(Q Kᵀ · scale + mask) V`.
//!
//! Shapes: q (B, H, Tq, D), k and v (B, H, Tk, D) -> O (B, H, Tq, D). `scale` defaults to
//! `1 / sqrt(D)`. Masks (both optional, combined):
//! - causal, aligned to the end: query `i` sees key `j` iff `j <= i + Tk - Tq` (with Tq = Tk the
//!   usual lower triangle; with Tq = 1 a KV-cache decode step sees every key);
//! - key padding (B, Tk), u32 / i32 / f32: nonzero keeps key `j` of batch `b`, 0 masks it.
//!
//! A query row whose keys are **all** masked outputs 0 (not NaN, as a plain softmax over only
//! `-inf` would), and its gradient is 0.
//!
//! [`attention_composed`] builds this from primitives (matmul, where, softmax), materialising the
//! (B, H, Tq, Tk) scores: it is the reference the fused version is tested against, and its
//! gradient comes free from autograd.
//!
//! [`scaled_dot_product_attention`] is fused (`shaders/attention/`, launchers in
//! `kiln_kernels::launch::attention`) and never stores a (Tq x Tk) matrix, so its memory grows
//! linearly in T. With `s_ij = scale q_i . k_j` over the visible keys:
//!
//! ```text
//! forward (online softmax, one pass over the keys, per query row i):
//!   m' = max(m, s_ij)   c = e^(m - m')   p = e^(s_ij - m')
//!   l' = l c + p        acc' = acc c + p v_j            (m = -FLT_MAX, l = 0, acc = 0 at start)
//!   O_i = acc / l       L_i = m + ln l                  (l = 0: O_i = 0, L_i = -inf)
//! backward (from the saved L (B, H, Tq); P recomputed, never stored):
//!   P_ij = e^(s_ij - L_i)      delta_i = dO_i . O_i     (= sum_j P_ij dP_ij)
//!   dP_ij = dO_i . v_j         dS_ij = P_ij (dP_ij - delta_i)
//!   dV_j = sum_i P_ij dO_i     dK_j = scale sum_i dS_ij q_i     dQ_i = scale sum_j dS_ij k_j
//! ```
//!
//! The backward is three fused kernels: delta (and L) per query row; dQ with one invocation per
//! query row walking the keys; dK and dV with one invocation per key row walking the queries (each
//! output row has one owner, so no float atomics). With D % 4 == 0 those two are the
//! register-blocked kernels (`backward_block.wgsl`: 4 owned rows per invocation, 8 rows of the
//! other side per step; ~5x the one-row kernels on lavapipe). The rung actually run is the
//! adapter's tuned choice for the shape bucket (`kiln_kernels::tune::attention_choice`: row,
//! block, or the flash-attention `Tiled` rung that streams K / V tiles through workgroup memory),
//! else block; tuning happens only in `kiln tune-kernels`, never here. Kernels read contiguous
//! rows: strided views (e.g. a (B, T, H, D) projection transposed to (B, H, T, D)) are copied
//! once; the copies, O and L are what the backward keeps (all O(B H T D)). Head sizes above 128
//! use the composition.

use kiln_kernels::launch::attention::{self as ak, AttnInputs, AttnShape, AttnVariant, MAX_D};
use kiln_kernels::tune;

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::{DType, Tensor};

/// Options of [`scaled_dot_product_attention`]. Default: no mask, scale `1 / sqrt(D)`.
#[derive(Debug, Clone, Default)]
pub struct AttentionOptions {
    /// Causal mask aligned to the end: query `i` sees keys `j <= i + Tk - Tq`.
    pub causal: bool,
    /// Multiplier of `Q Kᵀ`; `None` means `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// (B, Tk) u32, i32 or f32: nonzero keeps a key, 0 masks it.
    pub key_padding_mask: Option<Tensor>,
}

/// The checked sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    tq: usize,
    tk: usize,
    d: usize,
}

/// Check q (B, H, Tq, D), k / v (B, H, Tk, D), the mask (B, Tk) and dtypes; return the sizes.
fn check(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &AttentionOptions,
) -> Result<Dims> {
    for t in [q, k, v] {
        t.expect_f32(op)?;
        t.same_device(op, q)?;
        if t.rank() != 4 {
            return shape_err(
                op,
                format!(
                    "q, k and v must be (B, H, T, D); got q {:?}, k {:?}, v {:?}",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            );
        }
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if ks != vs || qs[0] != ks[0] || qs[1] != ks[1] || qs[3] != ks[3] {
        return shape_err(
            op,
            format!(
                "q (B, H, Tq, D) = {qs:?} needs k and v of shape (B, H, Tk, D) with the same B, H \
                 and D; got k {ks:?}, v {vs:?}"
            ),
        );
    }
    let dims = Dims {
        b: qs[0],
        h: qs[1],
        tq: qs[2],
        tk: ks[2],
        d: qs[3],
    };
    if let Some(m) = &o.key_padding_mask {
        m.same_device(op, q)?;
        if m.shape() != [dims.b, dims.tk] {
            return shape_err(
                op,
                format!(
                    "key_padding_mask must be (B, Tk) = [{}, {}] for q {qs:?} and k {ks:?}; got {:?}",
                    dims.b,
                    dims.tk,
                    m.shape()
                ),
            );
        }
        if m.dtype() == DType::F16 {
            return arg_err(op, "key_padding_mask must be u32, i32 or f32, got f16");
        }
    }
    if let Some(s) = o.scale
        && !s.is_finite()
    {
        return arg_err(op, format!("scale must be finite, got {s}"));
    }
    Ok(dims)
}

/// The scale actually used: the option, else `1 / sqrt(D)`.
fn scale_of(o: &AttentionOptions, d: usize) -> f32 {
    o.scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt())
}

/// The key padding mask as a (B, Tk) f32 tensor of 1.0 (keep) / 0.0 (masked).
fn keep_mask_f32(m: &Tensor) -> Result<Tensor> {
    let _g = crate::no_grad();
    let f = m.to_dtype(DType::F32)?;
    f.ne(&Tensor::zeros_on(m.gpu(), &[])?)
}

/// The launchers' inputs: contiguous q, k, v and the f32 key mask.
fn inputs<'a>(qkv: &'a [Tensor; 3], keep: &'a Option<Tensor>) -> AttnInputs<'a> {
    AttnInputs {
        q: qkv[0].operand(),
        k: qkv[1].operand(),
        v: qkv[2].operand(),
        keep: keep.as_ref().map(Tensor::operand),
    }
}

/// Scaled dot-product attention from primitives: `softmax(Q Kᵀ · scale + mask) V`, materialising
/// the (B, H, Tq, Tk) scores. Same contract as [`scaled_dot_product_attention`] (fully masked rows
/// give 0); differentiable in q, k and v through the primitives' own gradients.
pub fn attention_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let op = "attention_composed";
    let dm = check(op, q, k, v, opts)?;
    let gpu = q.gpu().clone();
    // (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
    let s = q
        .matmul(&k.transpose(-2, -1)?)?
        .mul_scalar(scale_of(opts, dm.d))?;
    // keep (1 or B, 1, Tq or 1, Tk): 1.0 where the key is visible.
    let mut keep: Option<Tensor> = None;
    if opts.causal {
        let shift = dm.tk as i64 - dm.tq as i64;
        let host: Vec<f32> = (0..dm.tq)
            .flat_map(|i| (0..dm.tk).map(move |j| f32::from(j as i64 <= i as i64 + shift)))
            .collect();
        keep = Some(Tensor::from_slice_on(&gpu, &host, &[1, 1, dm.tq, dm.tk])?);
    }
    if let Some(m) = &opts.key_padding_mask {
        let pad = keep_mask_f32(m)?.reshape(&[dm.b, 1, 1, dm.tk])?;
        keep = Some(match keep {
            Some(c) => c.mul(&pad)?,
            None => pad,
        });
    }
    let p = match &keep {
        None => s.softmax(-1)?,
        Some(keep) => {
            // Masked scores get a large finite negative (exp underflows to exactly 0); a fully
            // masked row would then be uniform, so P is multiplied by keep: such rows become 0.
            let fill = Tensor::full_on(&gpu, &[], -1.0e30)?;
            Tensor::where_cond(keep, &s, &fill)?
                .softmax(-1)?
                .mul(keep)?
        }
    };
    // (B, H, Tq, Tk) @ (B, H, Tk, D) -> (B, H, Tq, D)
    p.matmul(v)
}

/// Scaled dot-product attention, `softmax(Q Kᵀ · scale + mask) V` (see the module notes):
/// q (B, H, Tq, D), k and v (B, H, Tk, D) -> (B, H, Tq, D). A query row whose keys are all masked
/// outputs 0. Differentiable in q, k and v (fused backward from the saved log-sum-exp rows).
///
/// Runs the fused kernels for head sizes up to [`MAX_D`] (128) and [`attention_composed`] above.
///
/// ```
/// use kiln::{Tensor, ops::{AttentionOptions, scaled_dot_product_attention}};
/// // One query, two keys with scores 0 and ln 3 (scale 1): weights 1/4 and 3/4.
/// let q = Tensor::from_slice(&[1.0f32], &[1, 1, 1, 1])?;
/// let k = Tensor::from_slice(&[0.0f32, 3.0f32.ln()], &[1, 1, 2, 1])?;
/// let v = Tensor::from_slice(&[4.0f32, 8.0], &[1, 1, 2, 1])?;
/// let opts = AttentionOptions { scale: Some(1.0), ..Default::default() };
/// let o = scaled_dot_product_attention(&q, &k, &v, &opts)?.to_vec::<f32>()?;
/// assert!((o[0] - 7.0).abs() < 1e-5);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let op = "scaled_dot_product_attention";
    let dm = check(op, q, k, v, opts)?;
    if dm.d > MAX_D {
        return attention_composed(q, k, v, opts);
    }
    let gpu = q.gpu().clone();
    let shape = AttnShape {
        batch: dm.b,
        heads: dm.h,
        tq: dm.tq,
        tk: dm.tk,
        d: dm.d,
        scale: scale_of(opts, dm.d),
        causal: opts.causal,
    };
    // Kernels read contiguous rows: views are copied once here (and kept for the backward).
    let qkv = [q.dense()?, k.dense()?, v.dense()?];
    let keep = match &opts.key_padding_mask {
        Some(m) => Some(keep_mask_f32(m)?.contiguous()?),
        None => None,
    };
    let o = Tensor::empty_on(&gpu, q.shape(), DType::F32)?;
    let lse = Tensor::empty_on(&gpu, &[dm.b, dm.h, dm.tq], DType::F32)?;
    // The tuner is consulted here, in the op layer, once for the forward and backward.
    let cfg = tune::attention_config(&gpu, &shape, AttnVariant::Auto);
    ak::forward(
        &gpu,
        &shape,
        cfg,
        inputs(&qkv, &keep),
        (o.buffer(), lse.buffer()),
        0,
    )?;
    let saved_o = o.detach();
    Ok(
        o.record("scaled_dot_product_attention", &[q, k, v], move |g| {
            let gpu = g.gpu().clone();
            // dO must be contiguous from element 0 of its buffer.
            let g = g.dense()?;
            let dq = Tensor::empty_on(&gpu, qkv[0].shape(), DType::F32)?;
            let dk = Tensor::empty_on(&gpu, qkv[1].shape(), DType::F32)?;
            let dv = Tensor::empty_on(&gpu, qkv[2].shape(), DType::F32)?;
            ak::backward(
                &gpu,
                &shape,
                cfg,
                inputs(&qkv, &keep),
                g.buffer(),
                (saved_o.buffer(), lse.buffer()),
                (dq.buffer(), dk.buffer(), dv.buffer()),
                0,
            )?;
            Ok(vec![Some(dq), Some(dk), Some(dv)])
        }),
    )
}

impl Tensor {
    /// [`scaled_dot_product_attention`] with `self` as the queries (B, H, Tq, D).
    pub fn attention(&self, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        scaled_dot_product_attention(self, k, v, opts)
    }
}
