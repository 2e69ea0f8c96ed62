//! NF4 linear map with a frozen 4-bit base weight (QLoRA): `y = x W^T + b`, W stored as NF4.
//!
//! [`Nf4Weight`] holds W (out, in) quantised on the CPU (blocks of 64 values with an absmax each,
//! NF4 code book, absmaxes double-quantised to int8 in groups of 256; the format and its error
//! bound are in [`kiln_kernels::reference::nf4`]): about 4.13 bits per value, 0.129 x f32.
//!
//! [`nf4_linear`] runs one fused kernel that dequantises W in registers; the dequantised W is
//! never written to GPU memory. Shapes: x (..., in), W (out, in), b (out), y (..., out).
//!
//! Gradients: W is frozen and gets none. With g = dL/dy flattened to (M, out):
//! `dx = g W` (a second fused kernel, `matmul_nf4_grad_input`) and `db = sum over rows of g` when
//! the bias requires grad.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::ops::nf4::{Nf4Weight, nf4_linear};
//! // Values NF4 stores exactly: code book entries (-1, 0, 1) times the block absmax 2.
//! let w = kiln::Tensor::from_slice(&[2.0f32, -2.0, 0.0, 2.0, 0.0, -2.0], &[2, 3])?;
//! let q = Nf4Weight::quantize(&w)?;
//! let x = kiln::Tensor::from_slice(&[1.0f32, 1.0, 1.0], &[1, 3])?;
//! let y = nf4_linear(&x, &q, None)?.to_vec::<f32>()?;
//! assert_eq!(y, [0.0, 0.0]);
//! assert!(q.bytes() < 4 * 6 * 2); // 3 small arrays, padded to words
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

pub use kiln_kernels::launch::nf4::Nf4Compute;
use kiln_kernels::launch::nf4::{self as k, Nf4Buffers, Nf4Pass};
use kiln_kernels::reference::nf4::{self as cpu};
pub use kiln_kernels::reference::nf4::{Nf4Quantized, QuantError};
use kiln_kernels::tune;
use kiln_kernels::{Gpu, GpuBuffer};

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::{DType, Tensor};

struct Inner {
    gpu: Arc<Gpu>,
    codes: GpuBuffer,
    scales: GpuBuffer,
    stats: GpuBuffer,
    out_features: usize,
    in_features: usize,
    bytes: usize,
    error: QuantError,
}

/// A frozen weight W (out, in) in NF4 with double-quantised scales, on the GPU.
///
/// Cheap to clone (the buffers are shared).
#[derive(Clone)]
pub struct Nf4Weight {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Nf4Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Nf4Weight({}, {}; {} bytes)",
            self.inner.out_features, self.inner.in_features, self.inner.bytes
        )
    }
}

impl Nf4Weight {
    /// Quantise a (out, in) f32 tensor (read back to the host; the quantiser runs on the CPU).
    pub fn quantize(w: &Tensor) -> Result<Self> {
        w.expect_f32("Nf4Weight::quantize")?;
        let data = w.detach().to_vec::<f32>()?;
        Self::quantize_slice(w.gpu(), &data, w.shape())
    }

    /// Quantise row-major host data of shape `[out, in]` and upload it to `gpu`.
    pub fn quantize_slice(gpu: &Arc<Gpu>, data: &[f32], shape: &[usize]) -> Result<Self> {
        let &[out_f, in_f] = shape else {
            return shape_err(
                "Nf4Weight::quantize",
                format!("expected a weight of shape (out, in), got {shape:?}"),
            );
        };
        if out_f == 0 || in_f == 0 || data.len() != out_f * in_f {
            return shape_err(
                "Nf4Weight::quantize",
                format!(
                    "shape {shape:?} must be non-empty and match the {} values given",
                    data.len()
                ),
            );
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return arg_err(
                "Nf4Weight::quantize",
                format!("value {i} of the weight {shape:?} is {}", data[i]),
            );
        }
        let q = cpu::quantize(data, out_f, in_f);
        let error = cpu::quant_error(data, &q);
        Self::upload(gpu, &q, error)
    }

    /// Upload an already quantised weight (its error is unknown here and reported as 0).
    pub fn from_quantized(gpu: &Arc<Gpu>, q: &Nf4Quantized) -> Result<Self> {
        let zero = QuantError {
            mean_abs: 0.0,
            max_abs: 0.0,
            rel_frobenius: 0.0,
        };
        Self::upload(gpu, q, zero)
    }

    fn upload(gpu: &Arc<Gpu>, q: &Nf4Quantized, error: QuantError) -> Result<Self> {
        let put = |what: &str, words: &[u8]| -> Result<GpuBuffer> {
            let buf = gpu.alloc(words.len().max(4) as u64, what)?;
            gpu.upload(&buf, 0, words);
            Ok(buf)
        };
        let codes = put("nf4 codes", bytemuck::cast_slice(&q.codes))?;
        let scales = put("nf4 scales", bytemuck::cast_slice(&q.scale_words()))?;
        let stats = put("nf4 stats", bytemuck::cast_slice(&q.stats))?;
        Ok(Nf4Weight {
            inner: Arc::new(Inner {
                gpu: gpu.clone(),
                codes,
                scales,
                stats,
                out_features: q.out_features,
                in_features: q.in_features,
                bytes: q.bytes(),
                error,
            }),
        })
    }

    /// Rows of W (output features).
    pub fn out_features(&self) -> usize {
        self.inner.out_features
    }

    /// Columns of W (input features).
    pub fn in_features(&self) -> usize {
        self.inner.in_features
    }

    /// `[out, in]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.inner.out_features, self.inner.in_features]
    }

    /// The device holding the buffers.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.inner.gpu
    }

    /// Bytes of the packed data (codes, int8 scales, f32 stats), before the pool rounds buffers
    /// up to its size classes.
    pub fn bytes(&self) -> usize {
        self.inner.bytes
    }

    /// Bytes the same weight takes in f32.
    pub fn f32_bytes(&self) -> usize {
        4 * self.inner.out_features * self.inner.in_features
    }

    /// Quantisation error against the weight it was made from (zeros for
    /// [`Nf4Weight::from_quantized`]).
    pub fn error(&self) -> QuantError {
        self.inner.error
    }

    /// W (out, in) dequantised to f32 on the GPU (for tests and for merging an adapter).
    pub fn dequantize(&self) -> Result<Tensor> {
        let w = Tensor::empty_on(&self.inner.gpu, &self.shape(), DType::F32)?;
        k::dequantize_nf4(&self.inner.gpu, self.buffers(), w.buffer())?;
        Ok(w)
    }

    fn buffers(&self) -> Nf4Buffers<'_> {
        Nf4Buffers {
            codes: &self.inner.codes,
            scales: &self.inner.scales,
            stats: &self.inner.stats,
            out_features: self.inner.out_features,
            in_features: self.inner.in_features,
        }
    }
}

/// `y = x W^T + bias` with W in NF4, compute chosen by [`Nf4Compute::Auto`] (the kernel
/// configuration, f32 or f16, measured fastest for this shape on this adapter by
/// `kiln_kernels::tune`; the f32 block rung when the shape was never tuned). Differentiable in
/// x (and in `bias` if it requires grad), never in W.
pub fn nf4_linear(x: &Tensor, w: &Nf4Weight, bias: Option<&Tensor>) -> Result<Tensor> {
    nf4_linear_with(x, w, bias, Nf4Compute::Auto)
}

/// [`nf4_linear`] with an explicit compute precision (F32 is the exact twin of
/// "dequantise, then matmul"; F16 forces the f16 kernel, an error without `SHADER_F16`).
pub fn nf4_linear_with(
    x: &Tensor,
    w: &Nf4Weight,
    bias: Option<&Tensor>,
    compute: Nf4Compute,
) -> Result<Tensor> {
    const OP: &str = "nf4_linear";
    let [out_f, in_f] = w.shape();
    check_operand(OP, ("x", x), w, ("in_features", in_f))?;
    let bias = match bias {
        Some(b) => {
            b.expect_f32(OP)?;
            x.same_device(OP, b)?;
            if b.shape() != [out_f] {
                return shape_err(
                    OP,
                    format!("bias {:?} must be (out_features) = ({out_f})", b.shape()),
                );
            }
            Some(b)
        }
        None => None,
    };
    let m = x.numel() / in_f;
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = out_f;
    let gpu = x.gpu().clone();
    let y = Tensor::empty_on(&gpu, &out_shape, DType::F32)?;
    if m > 0 {
        let _g = crate::no_grad();
        let xc = x.detach().contiguous()?;
        let bc = match bias {
            Some(b) if b.is_contiguous() && b.offset() == 0 => Some(b.detach()),
            Some(b) => Some(b.detach().copy_contiguous()?),
            None => None,
        };
        let dims = (m, out_f, in_f);
        let cfg = tune::nf4_choice(&gpu, Nf4Pass::Forward, dims, xc.offset(), compute);
        k::matmul_nf4(
            &gpu,
            cfg,
            w.buffers(),
            xc.buffer(),
            xc.offset(),
            m,
            bc.as_ref().map(|b| b.buffer()),
            y.buffer(),
        )?;
    }
    let x_shape = x.shape().to_vec();
    let w2 = w.clone();
    let has_bias = bias.is_some();
    let mut inputs = vec![x];
    inputs.extend(bias);
    Ok(y.record(OP, &inputs, move |g| {
        let gc = g.contiguous()?;
        let mut grads = vec![Some(nf4_grad_input_shaped(&gc, &w2, compute, &x_shape)?)];
        if has_bias {
            grads.push(Some(gc.reshape(&[m, out_f])?.sum_dims(&[0], false)?));
        }
        Ok(grads)
    }))
}

/// `dx = g W'` for g (..., out) -> (..., in): the input gradient of [`nf4_linear`] as a plain
/// (unrecorded) op, for callers that fuse their own backward (LoRA on an NF4 base).
pub fn nf4_grad_input(g: &Tensor, w: &Nf4Weight, compute: Nf4Compute) -> Result<Tensor> {
    const OP: &str = "nf4_grad_input";
    let [out_f, in_f] = w.shape();
    check_operand(OP, ("g", g), w, ("out_features", out_f))?;
    let mut x_shape = g.shape().to_vec();
    *x_shape.last_mut().expect("rank >= 1") = in_f;
    let _g = crate::no_grad();
    nf4_grad_input_shaped(&g.detach().contiguous()?, w, compute, &x_shape)
}

/// Error unless the operand `t` (named `name`: x or g) is f32, ends in `features` (`dim`:
/// in_features or out_features) and lives on the NF4 weight's device.
fn check_operand(
    op: &'static str,
    (name, t): (&str, &Tensor),
    w: &Nf4Weight,
    (dim, features): (&str, usize),
) -> Result<()> {
    t.expect_f32(op)?;
    if t.shape().last() != Some(&features) {
        return shape_err(
            op,
            format!("{name} {:?} must end in {dim} = {features}", t.shape()),
        );
    }
    if !Arc::ptr_eq(t.gpu(), w.gpu()) {
        return arg_err(
            op,
            format!("{name} and the NF4 weight are on different devices"),
        );
    }
    Ok(())
}

/// `g W'` into a fresh tensor of `x_shape`, g contiguous.
fn nf4_grad_input_shaped(
    gc: &Tensor,
    w: &Nf4Weight,
    compute: Nf4Compute,
    x_shape: &[usize],
) -> Result<Tensor> {
    let dx = Tensor::empty_on(gc.gpu(), x_shape, DType::F32)?;
    let m = gc.numel() / w.out_features();
    if m > 0 {
        let dims = (m, w.out_features(), w.in_features());
        let cfg = tune::nf4_choice(gc.gpu(), Nf4Pass::GradInput, dims, gc.offset(), compute);
        k::matmul_nf4_grad_input(
            gc.gpu(),
            cfg,
            w.buffers(),
            gc.buffer(),
            gc.offset(),
            m,
            dx.buffer(),
        )?;
    }
    Ok(dx)
}
