//! 2-D and 1-D convolution (NCHW, cross-correlation as in PyTorch), with stride, zero padding,
//! dilation and groups:
//!
//! `out[n, co, oh, ow] = b[co] + sum_{ci, r, s} w[co, ci, r, s] x[n, g C_in/G + ci, ih, iw]`,
//! `ih = oh stride - pad + r dil` (likewise iw), g = co / (C_out / G); taps in the padding read 0.
//!
//! Shapes: x (N, C_in, H, W), w (C_out, C_in / G, KH, KW), b (C_out) -> (N, C_out, OH, OW) with
//! `OH = (H + 2 pad - dil (KH - 1) - 1) / stride + 1`.
//!
//! Backward, with g = dL/d(out), each a kernel of `kiln_kernels::launch::conv`:
//! - dx = the transposed convolution of g with w: `dx[n, c, ih, iw] = sum g[n, co, oh, ow]
//!   w[co, c, r, s]` over the (co, r, s) whose tap lands on (ih, iw) (a gather, no atomics);
//! - dw = `sum over (n, oh, ow) of g[n, co, oh, ow] x[n, c, ih, iw]` (split-K over n, oh, ow);
//! - db = g summed over (n, oh, ow): in the implicit-GEMM rung, by the weight-gradient pass
//!   itself (the bias is a weight column whose input is always 1).
//!
//! conv1d is conv2d on (N, C, 1, L) views with a (1, K) kernel: no kernels of its own.
//!
//! ```
//! use kiln::{Tensor, ops::Conv2dOptions};
//! // A 3x3 input and a 2x2 kernel of ones: each output sums one 2x2 window.
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1, 1, 3, 3])?;
//! let w = Tensor::ones(&[1, 1, 2, 2])?.requires_grad();
//! let y = x.conv2d(&w, None, Conv2dOptions::default())?;
//! assert_eq!(y.to_vec::<f32>()?, [12.0, 16.0, 24.0, 28.0]);
//! y.sum()?.backward()?;
//! assert_eq!(w.grad().unwrap().to_vec::<f32>()?, [12.0, 16.0, 24.0, 28.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvConfig, ConvVariant};

use crate::error::{Result, arg_err, shape_err};
use crate::show;
use crate::tensor::{DType, Tensor};

/// Options of [`Tensor::conv2d`], each as (height, width). Default: stride 1, padding 0,
/// dilation 1, groups 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows, at least 1.
    pub stride: (usize, usize),
    /// Zeros added on both sides.
    pub padding: (usize, usize),
    /// Spacing between kernel taps, at least 1.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels are split into this many independent
    /// convolutions (`groups = C_in` is a depthwise convolution).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// Options of [`Tensor::conv1d`]. Default: stride 1, padding 0, dilation 1, groups 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Step between windows, at least 1.
    pub stride: usize,
    /// Zeros added on both sides.
    pub padding: usize,
    /// Spacing between kernel taps, at least 1.
    pub dilation: usize,
    /// Channel groups (see [`Conv2dOptions::groups`]).
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

impl Conv1dOptions {
    /// The same convolution on (N, C, 1, L) views.
    fn as_2d(self) -> Conv2dOptions {
        Conv2dOptions {
            stride: (1, self.stride),
            padding: (0, self.padding),
            dilation: (1, self.dilation),
            groups: self.groups,
        }
    }
}

/// Check x, w, bias and the options of a conv with `dims` spatial dims (1 or 2; for 1, `opts`
/// is already the 2-D form) and return the kernel-level shape.
fn conv_shape(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    opts: Conv2dOptions,
    dims: usize,
) -> Result<Conv2dShape> {
    x.expect_f32(op)?;
    w.expect_f32(op)?;
    x.same_device(op, w)?;
    let rank = dims + 2;
    let layout = if dims == 2 {
        "(N, C, H, W) and (C_out, C_in / groups, KH, KW)"
    } else {
        "(N, C, L) and (C_out, C_in / groups, K)"
    };
    if x.rank() != rank || w.rank() != rank {
        return shape_err(
            op,
            format!(
                "input {} and weight {} must be {layout}",
                show::shape(x.shape()),
                show::shape(w.shape())
            ),
        );
    }
    let (xs, ws) = (x.shape(), w.shape());
    let Conv2dOptions {
        stride,
        padding,
        dilation,
        groups,
    } = opts;
    if groups == 0 || stride.0 == 0 || stride.1 == 0 || dilation.0 == 0 || dilation.1 == 0 {
        return arg_err(
            op,
            format!("stride, dilation and groups must be at least 1, got {opts:?}"),
        );
    }
    if ws[1] * groups != xs[1] {
        return shape_err(
            op,
            format!(
                "input channels {} do not match weight {} x groups {groups}",
                xs[1],
                show::shape(ws)
            ),
        );
    }
    if !ws[0].is_multiple_of(groups) {
        return shape_err(
            op,
            format!(
                "output channels {} of weight {} are not a multiple of groups {groups}",
                ws[0],
                show::shape(ws)
            ),
        );
    }
    if let Some(b) = bias {
        b.expect_f32(op)?;
        x.same_device(op, b)?;
        if b.shape() != [ws[0]] {
            return shape_err(
                op,
                format!(
                    "bias {} must be ({},) for weight {}",
                    show::shape(b.shape()),
                    ws[0],
                    show::shape(ws)
                ),
            );
        }
    }
    let (h, kh) = if dims == 2 { (xs[2], ws[2]) } else { (1, 1) };
    let s = Conv2dShape {
        n: xs[0],
        c_in: xs[1],
        h,
        w: xs[rank - 1],
        c_out: ws[0],
        kh,
        kw: ws[rank - 1],
        stride,
        padding,
        dilation,
        groups,
    };
    if let Some(p) = s.problem() {
        return shape_err(
            op,
            format!(
                "input {} with weight {}: {p}",
                show::shape(xs),
                show::shape(ws)
            ),
        );
    }
    Ok(s)
}

impl Tensor {
    /// 2-D convolution of `self` (N, C_in, H, W) with `weight` (C_out, C_in / groups, KH, KW)
    /// plus an optional `bias` (C_out): (N, C_out, OH, OW), as `torch.nn.functional.conv2d`.
    /// Differentiable w.r.t. all three. Any views are accepted (copied contiguous first).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv2dOptions,
    ) -> Result<Tensor> {
        // The autotuner's cached choice for this layer shape (rung, channel blocking, split-K;
        // a lookup, never a measurement); an invalid shape gets the default, and
        // conv2d_variant reports what is wrong.
        let cfg = conv_shape("conv2d", self, weight, bias, opts, 2)
            .map(|s| kiln_kernels::tune::conv_choice(self.gpu(), &s))
            .unwrap_or_default();
        self.conv2d_variant(weight, bias, opts, cfg)
    }

    /// [`Tensor::conv2d`] computed by a chosen rung of the kernel ladder (forward and backward),
    /// for tests and benchmarks: a [`ConvVariant`] (with the heuristic blocking) or a full
    /// [`ConvConfig`].
    pub fn conv2d_variant(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv2dOptions,
        variant: impl Into<ConvConfig>,
    ) -> Result<Tensor> {
        let variant: ConvConfig = variant.into();
        let s = conv_shape("conv2d", self, weight, bias, opts, 2)?;
        let gpu = self.gpu().clone();
        let (x, w) = (self.dense()?, weight.dense()?);
        let b = bias.map(Tensor::dense).transpose()?;
        let out = Tensor::empty_on(&gpu, &s.output_shape(), DType::F32)?;
        ck::conv2d_forward(
            &gpu,
            variant,
            &s,
            x.buffer(),
            w.buffer(),
            b.as_ref().map(|b| b.buffer()),
            out.buffer(),
        )?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let need: Vec<bool> = inputs.iter().map(|t| t.requires_grad_flag()).collect();
        Ok(out.record("conv2d", &inputs, move |g| {
            let g = g.dense()?;
            let gpu = g.gpu();
            let dx = if need[0] {
                let dx = Tensor::empty_on(gpu, &s.input_shape(), DType::F32)?;
                ck::conv2d_grad_input(gpu, variant, &s, w.buffer(), g.buffer(), dx.buffer())?;
                Some(dx)
            } else {
                None
            };
            let need_db = need.len() == 3 && need[2];
            // The implicit-GEMM rung sums db in the weight-gradient pass (one more tap).
            let fuse_db = need[1] && need_db && variant.variant == ConvVariant::ImplicitGemm;
            let mut db = None;
            let dw = if need[1] {
                let dw = Tensor::empty_on(gpu, &s.weight_shape(), DType::F32)?;
                if fuse_db {
                    let b = Tensor::empty_on(gpu, &[s.c_out], DType::F32)?;
                    ck::conv2d_grad_weight_bias(
                        gpu,
                        variant,
                        &s,
                        x.buffer(),
                        g.buffer(),
                        dw.buffer(),
                        Some(b.buffer()),
                    )?;
                    db = Some(b);
                } else {
                    ck::conv2d_grad_weight(gpu, variant, &s, x.buffer(), g.buffer(), dw.buffer())?;
                }
                Some(dw)
            } else {
                None
            };
            if need_db && db.is_none() {
                db = Some(g.sum_dims(&[0, 2, 3], false)?);
            }
            let mut grads = vec![dx, dw];
            if need.len() == 3 {
                grads.push(db);
            }
            Ok(grads)
        }))
    }

    /// 1-D convolution of `self` (N, C_in, L) with `weight` (C_out, C_in / groups, K) plus an
    /// optional `bias` (C_out): (N, C_out, OL), as `torch.nn.functional.conv1d`. Computed as
    /// [`Tensor::conv2d`] on (N, C, 1, L) views; differentiable w.r.t. all three.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv1dOptions,
    ) -> Result<Tensor> {
        self.conv1d_variant(weight, bias, opts, ConvVariant::default())
    }

    /// [`Tensor::conv1d`] computed by a chosen rung of the kernel ladder (a [`ConvVariant`] or
    /// a full [`ConvConfig`]).
    pub fn conv1d_variant(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: Conv1dOptions,
        variant: impl Into<ConvConfig>,
    ) -> Result<Tensor> {
        conv_shape("conv1d", self, weight, bias, opts.as_2d(), 1)?;
        let x = self.unsqueeze(2)?;
        let w = weight.unsqueeze(2)?;
        x.conv2d_variant(&w, bias, opts.as_2d(), variant)?
            .squeeze(2)
    }
}
