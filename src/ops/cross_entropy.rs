//! Cross-entropy from logits and class indices, fused both ways (`cross_entropy.wgsl`).
//!
//! For logits `x` (N, C) and targets `t` (N) of class indices:
//!
//! ```text
//! forward:   lse_i  = ln sum_j e^(x_ij)           (stable: max subtracted first)
//!            loss_i = lse_i - x_i,t_i             (= -log_softmax(x)_i,t_i)
//!            Mean: (1/N) sum_i loss_i    Sum: sum_i loss_i    None: the (N) losses
//! backward:  dx_ij  = (e^(x_ij - lse_i) - [j == t_i]) * g_i
//!            g_i = g / N (Mean), g (Sum), g_i (None)
//! ```
//!
//! The forward kernel saves `lse` (N) so the backward kernel is one elementwise pass that needs no
//! softmax buffer. Mean and Sum reduce the per-row losses with `reduce.wgsl`.
//!
//! A target `t_i >= C` is never used as an index (checking on the host would wait for the GPU):
//! `loss_i` is NaN, so a Mean or Sum is NaN too, and row i of the gradient is NaN.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::Tensor;
//! let x = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 3])?;
//! let t = Tensor::from_slice(&[0u32, 2], &[2])?;
//! let loss = x.cross_entropy(&t)?.item()?;
//! let l0 = (2.0f32.exp() + 2.0).ln() - 2.0;
//! let l1 = (2.0 + 1.0f32.exp()).ln() - 1.0;
//! assert!((loss - (l0 + l1) / 2.0).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

use kiln_kernels::launch::cross_entropy as sk;
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::Vector;

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

/// How per-row losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The mean over rows (a scalar).
    #[default]
    Mean,
    /// The sum over rows (a scalar).
    Sum,
    /// No reduction: one loss per row, shape (N).
    None,
}

/// The logits as a kernel (N, C) view.
fn rows_of(x: &Tensor) -> Rows<'_> {
    Rows {
        buf: x.buffer(),
        offset: x.offset(),
        rows: x.shape()[0],
        len: x.shape()[1],
        row_stride: x.strides()[0],
        col_stride: x.strides()[1],
    }
}

/// A rank-1 tensor (or a scalar, stride 0) as a kernel vector.
fn vector_of(t: &Tensor) -> Vector<'_> {
    Vector {
        buf: t.buffer(),
        offset: t.offset(),
        stride: t.strides().first().copied().unwrap_or(0),
    }
}

impl Tensor {
    /// Mean cross-entropy of logits `self` (N, C) against class indices `targets` (N, u32):
    /// `mean_i (logsumexp(x_i) - x_i[t_i])`. Differentiable in the logits.
    pub fn cross_entropy(&self, targets: &Tensor) -> Result<Tensor> {
        self.cross_entropy_with(targets, Reduction::Mean)
    }

    /// Cross-entropy of logits `self` (N, C) against class indices `targets` (N, u32), reduced
    /// as `reduction` says: a scalar for [`Reduction::Mean`] / [`Reduction::Sum`], the (N) losses
    /// for [`Reduction::None`]. A target >= C gives a NaN loss for its row (see the module docs).
    pub fn cross_entropy_with(&self, targets: &Tensor, reduction: Reduction) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        self.expect_f32(OP)?;
        self.expect_rank(OP, "logits", 2, "(N, C)")?;
        targets.expect_dtype(OP, DType::U32, "u32 class indices for targets")?;
        let n = self.shape()[0];
        targets.expect_len(OP, "targets", n, ("logits", self))?;
        self.expect_nonempty(OP, "logits")?;
        self.same_device(OP, targets)?;

        let gpu = self.gpu().clone();
        let loss = Tensor::empty_on(&gpu, &[n], DType::F32)?;
        let lse = Tensor::empty_on(&gpu, &[n], DType::F32)?;
        sk::cross_entropy_forward(
            &gpu,
            ReduceStrategy::Auto,
            rows_of(self),
            vector_of(targets),
            loss.buffer(),
            lse.buffer(),
        )?;
        let (out, scale) = match reduction {
            Reduction::None => (loss, 1.0),
            Reduction::Mean | Reduction::Sum => {
                let scale = if reduction == Reduction::Mean {
                    1.0 / n as f32
                } else {
                    1.0
                };
                let total = Tensor::empty_on(&gpu, &[], DType::F32)?;
                let all = Rows {
                    buf: loss.buffer(),
                    offset: 0,
                    rows: 1,
                    len: n,
                    row_stride: 0,
                    col_stride: 1,
                };
                rk::reduce_rows(
                    &gpu,
                    ReduceOp::Sum,
                    ReduceStrategy::Auto,
                    all,
                    total.buffer(),
                    0,
                    scale,
                )?;
                (total, scale)
            }
        };
        let (x, t) = (self.clone(), targets.clone());
        Ok(out.record(OP, &[self], move |g| {
            // dx_ij = (e^(x_ij - lse_i) - [j == t_i]) * g_i * scale (g is a scalar for Mean/Sum).
            let dx = Tensor::empty_on(x.gpu(), x.shape(), DType::F32)?;
            sk::cross_entropy_backward(
                x.gpu(),
                rows_of(&x),
                vector_of(&t),
                lse.buffer(),
                vector_of(g),
                scale,
                dx.buffer(),
            )?;
            Ok(vec![Some(dx)])
        }))
    }
}

pub use crate::dtype::IGNORE_INDEX;

impl Tensor {
    /// Mean cross-entropy of logits `self` (N, C) over the rows whose host label in `labels`
    /// (N) is not [`IGNORE_INDEX`]; ignored rows add nothing to the loss or the gradient. Composed
    /// from [`Tensor::cross_entropy_with`] ([`Reduction::None`]) and a 0/1 weight per row:
    /// `sum_i w_i loss_i / max(1, sum_i w_i)`, where ignored labels are replaced by class 0 so
    /// no NaN appears. A label in `C..IGNORE_INDEX` is an error.
    ///
    /// ```
    /// # fn main() -> kiln::Result<()> {
    /// use kiln::{Tensor, ops::IGNORE_INDEX};
    /// let x = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 3])?;
    /// let loss = x.cross_entropy_masked(&[0, IGNORE_INDEX])?.item()?;
    /// assert!((loss - ((2.0f32.exp() + 2.0).ln() - 2.0)).abs() < 1e-6);
    /// # Ok(())
    /// # }
    /// ```
    pub fn cross_entropy_masked(&self, labels: &[u32]) -> Result<Tensor> {
        const OP: &str = "cross_entropy_masked";
        if self.rank() != 2 || self.shape()[0] != labels.len() {
            return shape_err(
                OP,
                format!(
                    "logits must be (N, C) with N = {} labels, got shape {:?}",
                    labels.len(),
                    self.shape()
                ),
            );
        }
        let c = self.shape()[1];
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l != IGNORE_INDEX && l as usize >= c)
        {
            return crate::error::arg_err(
                OP,
                format!("label {l} at row {i} is not a class of {c} (nor IGNORE_INDEX)"),
            );
        }
        let safe: Vec<u32> = labels
            .iter()
            .map(|&l| if l == IGNORE_INDEX { 0 } else { l })
            .collect();
        let weights: Vec<f32> = labels
            .iter()
            .map(|&l| if l == IGNORE_INDEX { 0.0 } else { 1.0 })
            .collect();
        let count = weights.iter().filter(|&&w| w > 0.0).count().max(1);
        let gpu = self.gpu();
        let t = Tensor::from_slice_on(gpu, &safe, &[labels.len()])?;
        let w = Tensor::from_slice_on(gpu, &weights, &[labels.len()])?;
        self.cross_entropy_with(&t, Reduction::None)?
            .mul(&w)?
            .sum()?
            .mul_scalar(1.0 / count as f32)
    }
}
