//! Matrix product with `torch.matmul` semantics: `C[..., i, j] = sum_p A[..., i, p] B[..., p, j]`.
//!
//! Ranks:
//! - 1-D @ 1-D: dot product, a rank-0 result;
//! - 1-D @ N-D: the vector becomes a (1, K) row, and that dim is removed from the result;
//! - N-D @ 1-D: the vector becomes a (K, 1) column, and that dim is removed from the result;
//! - otherwise the last two dims are the matrices and the leading (batch) dims broadcast like
//!   NumPy: (2, 1, M, K) @ (3, K, N) -> (2, 3, M, N).
//!
//! Forward: the broadcast batch dims of A, B and C are collapsed into one batch index with one
//! stride per operand (0 where an operand is broadcast), and the kernel reads A and B through
//! their strides, so transposed or narrowed views and broadcast batches cost no copy. When the
//! batch dims cannot be collapsed that way (e.g. A broadcast over an inner batch dim and B over an
//! outer one), the cheaper operand (then, if still needed, the other) is expanded to the full batch
//! shape and materialised contiguous first.
//!
//! Backward, with g = dL/dC viewed as (batch..., M, N):
//! - dA = g @ B^T, summed back to A's batch shape with `sum_to` (then reshaped to A's shape);
//! - dB = A^T @ g, likewise.
//!
//! The transposes are strided views, not copies.
//!
//! Which kernel runs: [`Tensor::matmul`] asks the autotuner's cache
//! (`kiln_kernels::tune::matmul_choice`, a lookup that never measures) for the rung and tile
//! configuration chosen for this shape bucket on this adapter, and uses the default rung for
//! shapes never tuned (`kiln tune-kernels` fills the cache). Two f16 operands run the f16 rung
//! (f16 loads, f32 accumulation) and give an f16 result; their gradients are computed in f32 and
//! narrowed to f16.

use kiln_kernels::launch::elementwise::{collapse, contiguous_strides};
use kiln_kernels::launch::matmul::{self as mk, MatRef, MatmulConfig, MatmulDims, MatmulVariant};
use kiln_kernels::tune;

use super::broadcast_shapes;
use crate::error::{Result, shape_err};
use crate::show;
use crate::tensor::{DType, Tensor};

/// A tensor viewed as a stack of matrices: a 1-D `a` as a (1, K) row, a 1-D `b` as a (K, 1)
/// column, anything else as it is. A view of the same storage, without autograd.
fn as_matrix(t: &Tensor, is_left: bool) -> Tensor {
    if t.rank() != 1 {
        return t.detach();
    }
    let (n, s) = (t.shape()[0], t.strides()[0]);
    if is_left {
        t.with_view(vec![1, n], vec![0, s], t.offset())
    } else {
        t.with_view(vec![n, 1], vec![s, 0], t.offset())
    }
}

/// Strides of `t`'s batch dims (all but the last two), broadcast to `batch` (0 on new or
/// broadcast dims).
fn batch_strides(t: &Tensor, batch: &[usize]) -> Vec<usize> {
    let own = &t.shape()[..t.rank() - 2];
    let pad = batch.len() - own.len();
    let mut s = vec![0; batch.len()];
    for (k, &d) in own.iter().enumerate() {
        if d == batch[pad + k] {
            s[pad + k] = t.strides()[k];
        }
    }
    s
}

/// `t` (a matrix stack) expanded to `batch` and copied contiguous.
fn materialise(t: &Tensor, batch: &[usize]) -> Result<Tensor> {
    let r = t.rank();
    let mut shape = batch.to_vec();
    shape.extend_from_slice(&t.shape()[r - 2..]);
    let mut strides = batch_strides(t, batch);
    strides.extend_from_slice(&t.strides()[r - 2..]);
    t.with_view(shape, strides, t.offset()).copy_contiguous()
}

/// The kernel's view of a matrix stack `t` with one batch stride `bs`.
fn mat(t: &Tensor, bs: usize) -> MatRef<'_> {
    let r = t.rank();
    MatRef {
        buf: t.buffer(),
        offset: t.offset(),
        batch_stride: bs,
        row_stride: t.strides()[r - 2],
        col_stride: t.strides()[r - 1],
    }
}

/// The forward product without autograd, with `cfg` or (when `None`) the tuner's choice.
fn matmul_raw(a: &Tensor, b: &Tensor, cfg: Option<MatmulConfig>) -> Result<Tensor> {
    const OP: &str = "matmul";
    let f16 = a.dtype() == DType::F16 && b.dtype() == DType::F16;
    if !f16 {
        a.expect_f32(OP)?;
        b.expect_f32(OP)?;
    }
    a.same_device(OP, b)?;
    let out_dtype = if f16 { DType::F16 } else { DType::F32 };
    if let Some(c) = cfg.filter(|c| c.variant.f16_operands() != f16) {
        return crate::error::arg_err(
            OP,
            format!(
                "the {} rung takes {} operands, got {:?} and {:?}",
                c.variant.name(),
                if f16 { "f32" } else { "f16" },
                a.dtype(),
                b.dtype()
            ),
        );
    }
    let cannot = |why: String| {
        shape_err(
            OP,
            format!(
                "cannot multiply {} by {}: {why}",
                show::shape(a.shape()),
                show::shape(b.shape())
            ),
        )
    };
    if a.rank() == 0 || b.rank() == 0 {
        return cannot("both operands need at least one dim".into());
    }
    let (am, bm) = (as_matrix(a, true), as_matrix(b, false));
    let (ra, rb) = (am.rank(), bm.rank());
    let (m, k, kb, n) = (
        am.shape()[ra - 2],
        am.shape()[ra - 1],
        bm.shape()[rb - 2],
        bm.shape()[rb - 1],
    );
    if k != kb {
        return cannot(format!("inner dims {k} and {kb} differ"));
    }
    let (a_batch, b_batch) = (&am.shape()[..ra - 2], &bm.shape()[..rb - 2]);
    let Ok(batch) = broadcast_shapes(OP, a_batch, b_batch) else {
        return cannot(format!(
            "batch dims {} and {} do not broadcast",
            show::shape(a_batch),
            show::shape(b_batch)
        ));
    };
    let mut full = batch.clone();
    full.extend_from_slice(&[m, n]);
    let final_shape: Vec<usize> = match (a.rank(), b.rank()) {
        (1, 1) => vec![],
        (1, _) => [&batch[..], &[n]].concat(),
        (_, 1) => [&batch[..], &[m]].concat(),
        _ => full.clone(),
    };
    let gpu = a.gpu().clone();
    if full.iter().product::<usize>() == 0 {
        return Tensor::empty_on(&gpu, &final_shape, out_dtype);
    }
    if k == 0 {
        return Tensor::zeros_on(&gpu, &final_shape)?.to_dtype(out_dtype);
    }

    // One batch index with one stride per operand, materialising operands only if needed.
    let c_strides: Vec<usize> = contiguous_strides(&full)[..batch.len()].to_vec();
    let fold = |x: &Tensor, y: &Tensor| -> Option<(usize, usize)> {
        let (sx, sy) = (batch_strides(x, &batch), batch_strides(y, &batch));
        let (dims, st) = collapse(&batch, &[&sx, &sy, &c_strides]);
        match dims.len() {
            0 => Some((0, 0)),
            1 => Some((st[0][0], st[1][0])),
            _ => None,
        }
    };
    // Try the views as they are, then with the operand with fewer elements per matrix copied,
    // then the other, then both (contiguous operands always collapse).
    let a_first = am.shape()[ra - 2..].iter().product::<usize>()
        <= bm.shape()[rb - 2..].iter().product::<usize>();
    let plans = if a_first {
        [(false, false), (true, false), (false, true), (true, true)]
    } else {
        [(false, false), (false, true), (true, false), (true, true)]
    };
    let (mut a_copy, mut b_copy) = (None, None);
    let mut chosen = None;
    for (copy_a, copy_b) in plans {
        if copy_a && a_copy.is_none() {
            a_copy = Some(materialise(&am, &batch)?);
        }
        if copy_b && b_copy.is_none() {
            b_copy = Some(materialise(&bm, &batch)?);
        }
        let x = if copy_a { a_copy.as_ref() } else { Some(&am) };
        let y = if copy_b { b_copy.as_ref() } else { Some(&bm) };
        let (Some(x), Some(y)) = (x, y) else { continue };
        if let Some(s) = fold(x, y) {
            chosen = Some((x.clone(), y.clone(), s));
            break;
        }
    }
    let Some((am, bm, (sa, sb))) = chosen else {
        // Unreachable: contiguous batch dims always collapse to one.
        return crate::error::arg_err(OP, format!("batch dims {batch:?} did not collapse"));
    };

    let out = Tensor::empty_on(&gpu, &full, DType::F32)?;
    let dims = MatmulDims {
        batch: batch.iter().product(),
        m,
        n,
        k,
    };
    let (ra, rb) = (mat(&am, sa), mat(&bm, sb));
    let cfg = cfg.unwrap_or_else(|| tune::matmul_choice(&gpu, dims, ra.layout(), rb.layout(), f16));
    mk::matmul(&gpu, cfg, ra, rb, out.buffer(), 0, dims)?;
    let strides = contiguous_strides(&final_shape);
    // The f16 rungs accumulate and write f32; an f16 product is narrowed once at the end.
    out.with_view(final_shape, strides, 0).to_dtype(out_dtype)
}

impl Tensor {
    /// Matrix product with `torch.matmul` semantics (see the module notes): dot product for two
    /// vectors, matrix-vector products, and batched products with broadcast batch dims.
    ///
    /// ```
    /// use kiln::Tensor;
    /// let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// let b = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2])?;
    /// assert_eq!(a.matmul(&b)?.to_vec::<f32>()?, vec![4.0, 5.0, 10.0, 11.0]);
    /// // A transposed view costs no copy: (3, 2)^T @ (3, 2) = (2, 2).
    /// assert_eq!(b.t()?.matmul(&b)?.to_vec::<f32>()?, vec![2.0, 1.0, 1.0, 2.0]);
    /// # Ok::<(), kiln::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_with(other, None)
    }

    /// [`Tensor::matmul`] computed by a chosen rung of the kernel ladder (forward and backward),
    /// for tests and benchmarks. The f16 and coop rungs take two f16 tensors, the others f32.
    pub fn matmul_variant(&self, other: &Tensor, variant: MatmulVariant) -> Result<Tensor> {
        self.matmul_with(other, Some(MatmulConfig::default_for(variant)))
    }

    /// The product with `cfg`, or the autotuner's choice when `None`, recording the backward.
    fn matmul_with(&self, other: &Tensor, cfg: Option<MatmulConfig>) -> Result<Tensor> {
        let out = matmul_raw(self, other, cfg)?;
        if out.dtype() == DType::F16 {
            // Gradients in f32 (no f16 reductions exist), narrowed back to the inputs' dtype.
            let (a, b) = (self.clone(), other.clone());
            return Ok(out.record("matmul", &[self, other], move |g| {
                let (a32, b32) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
                let (ga, gb) = matmul_grads(&a32, &b32, &g.to_dtype(DType::F32)?, None, [true; 2])?;
                let narrow = |t: Option<Tensor>| t.map(|t| t.to_dtype(DType::F16)).transpose();
                Ok(vec![narrow(ga)?, narrow(gb)?])
            }));
        }
        let (a, b) = (self.clone(), other.clone());
        let need = [self.requires_grad_flag(), other.requires_grad_flag()];
        Ok(out.record("matmul", &[self, other], move |g| {
            let (ga, gb) = matmul_grads(&a, &b, g, cfg, need)?;
            Ok(vec![ga, gb])
        }))
    }
}

/// dA = g @ B^T and dB = A^T @ g (each when `need` says so), summed to the operands' shapes.
fn matmul_grads(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    cfg: Option<MatmulConfig>,
    need: [bool; 2],
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (am, bm) = (as_matrix(a, true), as_matrix(b, false));
    // g as (batch..., M, N): put back the dims that 1-D operands dropped.
    let mut g_shape = g.shape().to_vec();
    if b.rank() == 1 {
        g_shape.push(1);
    }
    if a.rank() == 1 {
        let at = g_shape.len() - usize::from(b.rank() != 1);
        g_shape.insert(at, 1);
    }
    let gm = g.reshape(&g_shape)?;
    let ga = if need[0] {
        let full = gm.matmul_with(&bm.t()?, cfg)?;
        Some(full.sum_to(am.shape())?.reshape(a.shape())?)
    } else {
        None
    };
    let gb = if need[1] {
        let full = am.t()?.matmul_with(&gm, cfg)?;
        Some(full.sum_to(bm.shape())?.reshape(b.shape())?)
    } else {
        None
    };
    Ok((ga, gb))
}
