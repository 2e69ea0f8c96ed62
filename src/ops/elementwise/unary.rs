//! Unary elementwise ops: `y = f(x)`, backward `dx = dy * f'(x)` (one fused kernel each way).
//!
//! | op | f(x) | f'(x) |
//! | --- | --- | --- |
//! | neg | -x | -1 |
//! | exp | e^x | e^x |
//! | log | ln x | 1/x |
//! | sqrt | sqrt x | 1/(2 sqrt x) |
//! | abs | abs x | sign x |
//! | relu | max(x, 0) | 1 if x > 0 else 0 |
//! | gelu | x Phi(x) (exact, erf form) | Phi(x) + x phi(x) |
//! | silu | x sigmoid(x) | s (1 + x (1 - s)) |
//! | tanh | tanh x | 1 - tanh^2 x |
//! | sigmoid | 1 / (1 + e^-x) | s (1 - s) |
//! | clamp(lo, hi) | min(max(x, lo), hi) | 1 inside [lo, hi], else 0 |
//! | powf(p) | x^p | p x^(p-1) |
//! | affine(a, b) | a x + b | a |

use kiln_kernels::launch::elementwise::{self as ew, UnaryOp};

use crate::error::Result;
use crate::tensor::{DType, Tensor};

impl Tensor {
    /// Apply a unary kernel and record its gradient rule.
    pub(crate) fn unary_op(
        &self,
        name: &'static str,
        op: UnaryOp,
        alpha: f32,
        beta: f32,
    ) -> Result<Tensor> {
        self.expect_f32(name)?;
        let gpu = self.gpu().clone();
        let shape = self.shape().to_vec();
        let out = Tensor::empty_on(&gpu, &shape, DType::F32)?;
        ew::unary(&gpu, op, &shape, self.strided(), out.strided(), alpha, beta)?;
        let x = self.clone();
        Ok(out.record(name, &[self], move |g| {
            let gx = Tensor::empty_on(x.gpu(), x.shape(), DType::F32)?;
            ew::unary_backward(
                x.gpu(),
                op,
                x.shape(),
                x.strided(),
                g.strided_as(x.shape()),
                gx.strided(),
                alpha,
                beta,
            )?;
            Ok(vec![Some(gx)])
        }))
    }

    /// `-x`
    pub fn neg(&self) -> Result<Tensor> {
        self.unary_op("neg", UnaryOp::Neg, 0.0, 0.0)
    }
    /// `e^x`
    pub fn exp(&self) -> Result<Tensor> {
        self.unary_op("exp", UnaryOp::Exp, 0.0, 0.0)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary_op("log", UnaryOp::Log, 0.0, 0.0)
    }
    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary_op("sqrt", UnaryOp::Sqrt, 0.0, 0.0)
    }
    /// `1 / sqrt(x)`
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary_op("rsqrt", UnaryOp::Rsqrt, 0.0, 0.0)
    }
    /// Absolute value.
    pub fn abs(&self) -> Result<Tensor> {
        self.unary_op("abs", UnaryOp::Abs, 0.0, 0.0)
    }
    /// `max(x, 0)`
    pub fn relu(&self) -> Result<Tensor> {
        self.unary_op("relu", UnaryOp::Relu, 0.0, 0.0)
    }
    /// GELU, exact (erf) form as PyTorch's default: `x * Phi(x)`.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary_op("gelu", UnaryOp::Gelu, 0.0, 0.0)
    }
    /// SiLU / swish: `x * sigmoid(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.unary_op("silu", UnaryOp::Silu, 0.0, 0.0)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary_op("tanh", UnaryOp::Tanh, 0.0, 0.0)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary_op("sigmoid", UnaryOp::Sigmoid, 0.0, 0.0)
    }
    /// Sine.
    pub fn sin(&self) -> Result<Tensor> {
        self.unary_op("sin", UnaryOp::Sin, 0.0, 0.0)
    }
    /// Cosine.
    pub fn cos(&self) -> Result<Tensor> {
        self.unary_op("cos", UnaryOp::Cos, 0.0, 0.0)
    }
    /// `x * x`
    pub fn square(&self) -> Result<Tensor> {
        self.unary_op("square", UnaryOp::Square, 0.0, 0.0)
    }
    /// `1 / x`
    pub fn recip(&self) -> Result<Tensor> {
        self.unary_op("recip", UnaryOp::Recip, 0.0, 0.0)
    }
    /// Sign (-1, 0, 1); zero gradient.
    pub fn sign(&self) -> Result<Tensor> {
        self.unary_op("sign", UnaryOp::Sign, 0.0, 0.0)
    }
    /// `min(max(x, lo), hi)`; the gradient is 1 inside `[lo, hi]`.
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Tensor> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return crate::error::arg_err("clamp", format!("needs lo <= hi, got lo {lo} hi {hi}"));
        }
        self.unary_op("clamp", UnaryOp::Clamp, lo, hi)
    }
    /// `x^p` for a scalar exponent (negative `x` only with integer `p`).
    pub fn powf(&self, p: f32) -> Result<Tensor> {
        self.unary_op("powf", UnaryOp::Pow, p, 0.0)
    }
    /// `a * x + b`.
    pub fn affine(&self, a: f32, b: f32) -> Result<Tensor> {
        self.unary_op("affine", UnaryOp::Affine, a, b)
    }
    /// `x + v`.
    pub fn add_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(1.0, v)
    }
    /// `x - v`.
    pub fn sub_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(1.0, -v)
    }
    /// `x * v`.
    pub fn mul_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(v, 0.0)
    }
    /// `x / v`.
    pub fn div_scalar(&self, v: f32) -> Result<Tensor> {
        self.affine(1.0 / v, 0.0)
    }
}
