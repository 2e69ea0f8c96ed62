//! Binary elementwise ops with NumPy broadcasting: `out = a (op) b`.
//!
//! Gradients (then summed back over broadcast dims with [`Tensor::sum_to`]):
//!
//! | op | da | db |
//! | --- | --- | --- |
//! | add | g | g |
//! | sub | g | -g |
//! | mul | g b | g a |
//! | div | g / b | -g a / b^2 = -g out / b |
//! | pow | g b a^(b-1) | g out ln a |
//! | maximum | g [a > b] + g/2 [a = b] | g [b > a] + g/2 [a = b] |
//! | minimum | g [a < b] + g/2 [a = b] | g [b < a] + g/2 [a = b] |

use kiln_kernels::launch::elementwise::{self as ew, BinaryOp};

use crate::error::Result;
use crate::ops::broadcast_shapes;
use crate::tensor::{DType, Tensor};

/// Forward of a binary kernel without autograd.
pub(crate) fn binary_raw(
    name: &'static str,
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
    a.expect_f32(name)?;
    b.expect_f32(name)?;
    a.same_device(name, b)?;
    let shape = broadcast_shapes(name, a.shape(), b.shape())?;
    let out = Tensor::empty_on(a.gpu(), &shape, DType::F32)?;
    ew::binary(
        a.gpu(),
        op,
        &shape,
        a.strided_as(&shape),
        b.strided_as(&shape),
        out.strided(),
        0.0,
    )?;
    Ok(out)
}

/// `Some(grad())` when the operand needs a gradient, else `None` (nothing computed).
pub(crate) fn when(need: bool, grad: impl FnOnce() -> Result<Tensor>) -> Result<Option<Tensor>> {
    need.then(grad).transpose()
}

impl Tensor {
    fn binary_grad(
        &self,
        other: &Tensor,
        name: &'static str,
        op: BinaryOp,
        rule: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor, [bool; 2]) -> Result<[Option<Tensor>; 2]>
        + Send
        + Sync
        + 'static,
    ) -> Result<Tensor> {
        let out = binary_raw(name, op, self, other)?;
        let (a, b, o) = (self.clone(), other.clone(), out.detach());
        let need = [self.requires_grad_flag(), other.requires_grad_flag()];
        Ok(out.record(name, &[self, other], move |g| {
            let [ga, gb] = rule(g, &a, &b, &o, need)?;
            Ok(vec![
                ga.map(|t| t.sum_to(a.shape())).transpose()?,
                gb.map(|t| t.sum_to(b.shape())).transpose()?,
            ])
        }))
    }

    /// `self + other` (broadcasting).
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_grad(other, "add", BinaryOp::Add, |g, _, _, _, n| {
            Ok([when(n[0], || Ok(g.clone()))?, when(n[1], || Ok(g.clone()))?])
        })
    }

    /// `self - other` (broadcasting).
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_grad(other, "sub", BinaryOp::Sub, |g, _, _, _, n| {
            Ok([when(n[0], || Ok(g.clone()))?, when(n[1], || g.neg())?])
        })
    }

    /// `self * other` (broadcasting).
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_grad(other, "mul", BinaryOp::Mul, |g, a, b, _, n| {
            Ok([when(n[0], || g.mul(b))?, when(n[1], || g.mul(a))?])
        })
    }

    /// `self / other` (broadcasting).
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_grad(other, "div", BinaryOp::Div, |g, _, b, o, n| {
            Ok([
                when(n[0], || g.div(b))?,
                when(n[1], || g.mul(o)?.div(b)?.neg())?,
            ])
        })
    }

    /// `self ^ other` elementwise (broadcasting).
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_grad(other, "pow", BinaryOp::Pow, |g, a, b, o, n| {
            Ok([
                when(n[0], || g.mul(b)?.mul(&a.pow(&b.sub_scalar(1.0)?)?))?,
                when(n[1], || g.mul(o)?.mul(&a.log()?))?,
            ])
        })
    }

    /// Elementwise maximum (ties split the gradient evenly).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.extremum(other, "maximum", BinaryOp::Maximum, Tensor::gt)
    }

    /// Elementwise minimum (ties split the gradient evenly).
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.extremum(other, "minimum", BinaryOp::Minimum, Tensor::lt)
    }

    /// Maximum or minimum: `wins(a, b)` is 1.0 where `a` is kept. The gradient goes to the kept
    /// operand, half to each on a tie: `da = g ([wins(a, b)] + [a = b] / 2)`, `db` likewise.
    fn extremum(
        &self,
        other: &Tensor,
        name: &'static str,
        op: BinaryOp,
        wins: fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        self.binary_grad(other, name, op, move |g, a, b, _, n| {
            let tie = a.eq(b)?.mul_scalar(0.5)?;
            Ok([
                when(n[0], || g.mul(&wins(a, b)?.add(&tie)?))?,
                when(n[1], || g.mul(&wins(b, a)?.add(&tie)?))?,
            ])
        })
    }

    /// `self += other` in place, without autograd (optimizer updates, accumulation).
    pub fn add_assign(&self, other: &Tensor) -> Result<()> {
        self.axpy_assign(1.0, other)
    }

    /// `self += alpha * other` in place, without autograd.
    pub fn axpy_assign(&self, alpha: f32, other: &Tensor) -> Result<()> {
        self.expect_f32("axpy_assign")?;
        other.expect_f32("axpy_assign")?;
        let shape = broadcast_shapes("axpy_assign", self.shape(), other.shape())?;
        if shape != self.shape() {
            return crate::error::shape_err(
                "axpy_assign",
                format!(
                    "cannot add shape {:?} into shape {:?} in place",
                    other.shape(),
                    self.shape()
                ),
            );
        }
        ew::binary_inplace(
            self.gpu(),
            BinaryOp::Axpy,
            &shape,
            self.strided(),
            other.strided_as(&shape),
            alpha,
        )?;
        Ok(())
    }

    /// Overwrite this tensor's elements with `src` (broadcast), in place, without autograd.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if self.dtype() != src.dtype() {
            return crate::error::arg_err(
                "copy_from",
                format!("dtype {:?} into {:?}", src.dtype(), self.dtype()),
            );
        }
        broadcast_shapes("copy_from", self.shape(), src.shape())?;
        self.assign_from(src)
    }
}
