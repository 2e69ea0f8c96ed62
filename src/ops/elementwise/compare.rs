//! Comparisons (results are 1.0 / 0.0 f32 masks, not differentiable) and selection.
//!
//! `where_cond(c, a, b) = c != 0 ? a : b`, with gradients `da = g [c != 0]`, `db = g [c = 0]`
//! (each summed back over broadcast dims). `masked_fill(mask, v)` is `where_cond(mask, v, x)`.

use kiln_kernels::launch::elementwise::{self as ew, BinaryOp};

use super::binary::{binary_raw, when};
use crate::error::Result;
use crate::ops::broadcast_shapes;
use crate::tensor::{DType, Tensor};

/// The comparisons: method, kernel op and the relation in the rustdoc.
macro_rules! comparisons {
    ($($name:ident $op:ident $rel:literal),* $(,)?) => {
        impl Tensor {
            $(
                #[doc = concat!("`self ", $rel, " other` as 1.0 / 0.0 (broadcasting).")]
                pub fn $name(&self, other: &Tensor) -> Result<Tensor> {
                    binary_raw(stringify!($name), BinaryOp::$op, self, other)
                }
            )*
        }
    };
}

comparisons! { eq Eq "==", ne Ne "!=", lt Lt "<", le Le "<=", gt Gt ">", ge Ge ">=" }

impl Tensor {
    /// `self > v` as 1.0 / 0.0.
    pub fn gt_scalar(&self, v: f32) -> Result<Tensor> {
        self.gt(&Tensor::full_on(self.gpu(), &[], v)?)
    }
    /// `self < v` as 1.0 / 0.0.
    pub fn lt_scalar(&self, v: f32) -> Result<Tensor> {
        self.lt(&Tensor::full_on(self.gpu(), &[], v)?)
    }
    /// `self == v` as 1.0 / 0.0.
    pub fn eq_scalar(&self, v: f32) -> Result<Tensor> {
        self.eq(&Tensor::full_on(self.gpu(), &[], v)?)
    }

    /// `cond != 0 ? a : b`, all three broadcast together.
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let name = "where";
        for t in [cond, a, b] {
            t.expect_f32(name)?;
            t.same_device(name, cond)?;
        }
        let shape = broadcast_shapes(name, cond.shape(), a.shape())?;
        let shape = broadcast_shapes(name, &shape, b.shape())?;
        let gpu = cond.gpu().clone();
        let out = Tensor::empty_on(&gpu, &shape, DType::F32)?;
        ew::where_select(
            &gpu,
            &shape,
            cond.strided_as(&shape),
            a.strided_as(&shape),
            b.strided_as(&shape),
            out.strided(),
        )?;
        let (c, sa, sb) = (cond.detach(), a.shape().to_vec(), b.shape().to_vec());
        let need = [a.requires_grad_flag(), b.requires_grad_flag()];
        Ok(out.record(name, &[a, b], move |g| {
            let zero = Tensor::zeros_on(g.gpu(), &[])?;
            Ok(vec![
                when(need[0], || Tensor::where_cond(&c, g, &zero)?.sum_to(&sa))?,
                when(need[1], || Tensor::where_cond(&c, &zero, g)?.sum_to(&sb))?,
            ])
        }))
    }

    /// `mask != 0 ? value : self` (mask broadcasts to this tensor's shape).
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let v = Tensor::full_on(self.gpu(), &[], value)?;
        let out = Tensor::where_cond(mask, &v, self)?;
        if out.shape() != self.shape() {
            return crate::error::shape_err(
                "masked_fill",
                format!(
                    "mask of shape {:?} does not broadcast to {:?}",
                    mask.shape(),
                    self.shape()
                ),
            );
        }
        Ok(out)
    }
}
