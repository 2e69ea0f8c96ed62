//! 2-D pooling over (N, C, H, W): max, average and adaptive average, forward and backward.
//!
//! With a window of kernel (KH, KW), stride (SH, SW) and padding (PH, PW), the output is
//! (N, C, OH, OW) with `OH = (H + 2 PH - KH) / SH + 1` (floor, PyTorch's default), and output
//! (oh, ow) pools input rows `oh*SH - PH .. oh*SH - PH + KH` and the matching columns:
//!
//! - max:  `y = max over the window` (padding counts as -inf); the kernel also saves the argmax
//!   (`ih * W + iw`) and the gradient goes to that element only: `dx[argmax] += g`.
//! - avg:  `y = sum over the window / (KH * KW)`: padding counts as 0 *and* in the divisor
//!   (PyTorch's default `count_include_pad = true`); `dx = sum of g / (KH * KW)` over the windows
//!   containing the element.
//! - adaptive avg to (OH, OW): window rows `floor(oh * H / OH) .. ceil((oh + 1) * H / OH)` (and
//!   likewise columns), `y = mean over the window`, `dx = sum of g / area` over the windows
//!   containing the element. `adaptive_avg_pool2d((1, 1))` is global average pooling.
//!
//! Backward kernels gather per input element, so the gradient is deterministic without atomics.
//!
//! ```
//! use kiln::Tensor;
//! let x = Tensor::from_slice(&[1.0f32, 5.0, 2.0, 0.0, 3.0, 4.0, 8.0, 6.0, 7.0], &[1, 1, 3, 3])?
//!     .requires_grad();
//! let y = x.max_pool2d((2, 2), (1, 1), (0, 0))?;
//! assert_eq!(y.to_vec::<f32>()?, [5.0, 5.0, 8.0, 7.0]);
//! y.sum()?.backward()?;                   // the 5 is the maximum of two windows
//! assert_eq!(x.grad().unwrap().to_vec::<f32>()?, [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::pool::{self as pk, PoolShape, Window};
use kiln_kernels::{Gpu, GpuBuffer, Operand};

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::{DType, Tensor};

/// Error unless `x` is an f32 (N, C, H, W) tensor.
fn check_input(op: &'static str, x: &Tensor) -> Result<()> {
    x.expect_f32(op)?;
    x.expect_rank(op, "input", 4, "(N, C, H, W)")
}

/// The window of (height, width) `kernel`, `stride` and `padding`, checked against the input,
/// and the pooled shape (PyTorch's rules).
fn window_shape(
    op: &'static str,
    x: &Tensor,
    (kernel, stride, padding): ((usize, usize), (usize, usize), (usize, usize)),
) -> Result<(Window, PoolShape)> {
    check_input(op, x)?;
    let win = Window {
        kernel,
        stride,
        padding,
    };
    if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
        return arg_err(
            op,
            format!("kernel {kernel:?} and stride {stride:?} must be positive"),
        );
    }
    if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
        return arg_err(
            op,
            format!("padding {padding:?} must be at most half of kernel {kernel:?}"),
        );
    }
    let s = x.shape();
    let shape = win.shape(s[0], s[1], s[2], s[3]);
    let shape = shape.ok_or_else(|| crate::Error::Shape {
        op,
        msg: format!(
            "kernel {kernel:?} is larger than the padded input ({}, {}) (input shape {s:?}, \
             padding {padding:?})",
            s[2] + 2 * padding.0,
            s[3] + 2 * padding.1
        ),
    })?;
    Ok((win, shape))
}

fn out_shape(s: PoolShape) -> [usize; 4] {
    [s.n, s.c, s.oh, s.ow]
}

/// Run a pooling kernel of `x` (N, C, H, W) to (N, C, OH, OW) = `shape`'s output and record
/// its backward: `forward(gpu, x, y)` fills y; `backward(gpu, g, gx)` writes the input gradient
/// gx (N, C, H, W) from the output gradient g (written once for the three pools).
fn pooled(
    op: &'static str,
    x: &Tensor,
    shape: PoolShape,
    forward: impl FnOnce(&Gpu, Operand<'_>, &GpuBuffer) -> kiln_kernels::Result<()>,
    backward: impl Fn(&Gpu, Operand<'_>, &GpuBuffer) -> kiln_kernels::Result<()> + Send + Sync + 'static,
) -> Result<Tensor> {
    let xd = x.dense()?;
    let gpu = x.gpu().clone();
    let y = Tensor::empty_on(&gpu, &out_shape(shape), DType::F32)?;
    forward(&gpu, xd.operand(), y.buffer())?;
    let x_shape = x.shape().to_vec();
    Ok(y.record(op, &[x], move |g| {
        let g = g.dense()?;
        let gx = Tensor::empty_on(g.gpu(), &x_shape, DType::F32)?;
        backward(g.gpu(), g.operand(), gx.buffer())?;
        Ok(vec![Some(gx)])
    }))
}

impl Tensor {
    /// 2-D max pooling of an (N, C, H, W) tensor with the given (height, width) kernel, stride and
    /// padding (at most half the kernel; it counts as -inf). Differentiable: the gradient goes to
    /// the first maximum of each window.
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "max_pool2d";
        let (win, shape) = window_shape(OP, self, (kernel, stride, padding))?;
        let argmax = Tensor::empty_on(self.gpu(), &out_shape(shape), DType::U32)?;
        let am = argmax.clone();
        pooled(
            OP,
            self,
            shape,
            |gpu, x, y| pk::max_pool2d(gpu, shape, win, x, y, argmax.buffer()),
            move |gpu, g, gx| pk::max_pool2d_backward(gpu, shape, win, g, am.buffer(), gx),
        )
    }

    /// 2-D average pooling of an (N, C, H, W) tensor with the given (height, width) kernel, stride
    /// and padding (at most half the kernel). Padding counts as zeros and in the divisor: every
    /// window divides by KH * KW (PyTorch's default `count_include_pad = true`).
    pub fn avg_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "avg_pool2d";
        let (win, shape) = window_shape(OP, self, (kernel, stride, padding))?;
        pooled(
            OP,
            self,
            shape,
            |gpu, x, y| pk::avg_pool2d(gpu, shape, win, x, y),
            move |gpu, g, gx| pk::avg_pool2d_backward(gpu, shape, win, g, gx),
        )
    }

    /// Adaptive average pooling of an (N, C, H, W) tensor to (N, C, OH, OW) = `out`, with
    /// PyTorch's windows (rows `floor(i*H/OH) .. ceil((i+1)*H/OH)`); `(1, 1)` is global average
    /// pooling. Differentiable.
    pub fn adaptive_avg_pool2d(&self, out: (usize, usize)) -> Result<Tensor> {
        const OP: &str = "adaptive_avg_pool2d";
        check_input(OP, self)?;
        let s = self.shape();
        if out.0 == 0 || out.1 == 0 || s[2] == 0 || s[3] == 0 {
            return shape_err(
                OP,
                format!("output size {out:?} and input size must be positive (input shape {s:?})"),
            );
        }
        let shape = PoolShape {
            n: s[0],
            c: s[1],
            h: s[2],
            w: s[3],
            oh: out.0,
            ow: out.1,
        };
        if pk::adaptive_loops(shape) > pk::MAX_LOOP {
            if out == (1, 1) {
                // One huge window: a reduction handles any length.
                return self.mean_dims(&[2, 3], true);
            }
            return shape_err(
                OP,
                format!(
                    "windows of input shape {s:?} pooled to {out:?} are too large for one \
                     invocation; pool in two steps"
                ),
            );
        }
        pooled(
            OP,
            self,
            shape,
            |gpu, x, y| pk::adaptive_avg_pool2d(gpu, shape, x, y),
            move |gpu, g, gx| pk::adaptive_avg_pool2d_backward(gpu, shape, g, gx),
        )
    }
}
