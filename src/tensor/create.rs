//! Creating tensors and reading them back.
//!
//! Every constructor has a form on the default device (`Tensor::zeros`) and one on an explicit
//! device (`Tensor::zeros_on`). Random tensors are generated on the host from a seeded ChaCha8
//! stream, so the same seed gives the same numbers on every device.

use std::sync::Arc;

use kiln_kernels::Gpu;
use kiln_kernels::launch::elementwise::{self as ew, Strided};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::{DType, Element, Tensor};
use crate::error::{Result, arg_err, shape_err};

impl Tensor {
    /// A tensor holding `data` in row-major order, on the default device.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Self::from_slice_on(&crate::device()?, data, shape)
    }

    /// A tensor holding `data` in row-major order, on `gpu`.
    pub fn from_slice_on<T: Element>(
        gpu: &Arc<Gpu>,
        data: &[T],
        shape: &[usize],
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return shape_err(
                "from_slice",
                format!(
                    "{} values do not fill shape {shape:?} ({n} elements)",
                    data.len()
                ),
            );
        }
        if T::DTYPE == DType::F16 && !gpu.has_f16() {
            return arg_err(
                "from_slice",
                format!(
                    "f16 storage needs SHADER_F16, which {:?} lacks",
                    gpu.info().name
                ),
            );
        }
        let t = Tensor::empty_on(gpu, shape, T::DTYPE)?;
        gpu.upload(t.buffer(), 0, bytemuck::cast_slice(data));
        Ok(t)
    }

    /// A scalar (rank-0) f32 tensor.
    pub fn scalar(value: f32) -> Result<Tensor> {
        Self::full(&[], value)
    }

    /// Filled with `value`, on the default device.
    pub fn full(shape: &[usize], value: f32) -> Result<Tensor> {
        Self::full_on(&crate::device()?, shape, value)
    }

    /// Filled with `value`, on `gpu`.
    pub fn full_on(gpu: &Arc<Gpu>, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Tensor::empty_on(gpu, shape, DType::F32)?;
        ew::fill(gpu, shape, t.strided(), value)?;
        Ok(t)
    }

    /// All zeros.
    pub fn zeros(shape: &[usize]) -> Result<Tensor> {
        Self::full(shape, 0.0)
    }

    /// All zeros on `gpu`.
    pub fn zeros_on(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
        Self::full_on(gpu, shape, 0.0)
    }

    /// All ones.
    pub fn ones(shape: &[usize]) -> Result<Tensor> {
        Self::full(shape, 1.0)
    }

    /// All ones on `gpu`.
    pub fn ones_on(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<Tensor> {
        Self::full_on(gpu, shape, 1.0)
    }

    /// Zeros with this tensor's shape and device (f32).
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros_on(self.gpu(), self.shape())
    }

    /// Ones with this tensor's shape and device (f32).
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones_on(self.gpu(), self.shape())
    }

    /// Filled with `value`, with this tensor's shape and device.
    pub fn full_like(&self, value: f32) -> Result<Tensor> {
        Self::full_on(self.gpu(), self.shape(), value)
    }

    /// `[start, start + step, ...)` up to (not including) `end`, as f32.
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Tensor> {
        Self::arange_on(&crate::device()?, start, end, step)
    }

    /// [`Tensor::arange`] on `gpu`.
    pub fn arange_on(gpu: &Arc<Gpu>, start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return arg_err(
                "arange",
                format!("bad range start {start} end {end} step {step}"),
            );
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let t = Tensor::empty_on(gpu, &[n], DType::F32)?;
        ew::arange(gpu, &[n], t.strided(), start, step)?;
        Ok(t)
    }

    /// Uniform samples in `[0, 1)` from a seeded stream.
    pub fn rand(shape: &[usize], seed: u64) -> Result<Tensor> {
        Self::rand_on(&crate::device()?, shape, seed)
    }

    /// [`Tensor::rand`] on `gpu`.
    pub fn rand_on(gpu: &Arc<Gpu>, shape: &[usize], seed: u64) -> Result<Tensor> {
        let n = super::check_fits(gpu, shape, DType::F32, "random tensor")?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
        Self::from_slice_on(gpu, &v, shape)
    }

    /// Standard normal samples from a seeded stream.
    pub fn randn(shape: &[usize], seed: u64) -> Result<Tensor> {
        Self::randn_on(&crate::device()?, shape, seed)
    }

    /// [`Tensor::randn`] on `gpu`.
    pub fn randn_on(gpu: &Arc<Gpu>, shape: &[usize], seed: u64) -> Result<Tensor> {
        let n = super::check_fits(gpu, shape, DType::F32, "random tensor")?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        Self::from_slice_on(gpu, &v, shape)
    }

    /// Copy the elements back to the host in row-major order.
    ///
    /// This waits for the GPU. Ask for the type that matches [`Tensor::dtype`].
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return arg_err(
                "to_vec",
                format!(
                    "asked for {:?} elements from a tensor of dtype {:?}",
                    T::DTYPE,
                    self.dtype()
                ),
            );
        }
        let t = self.contiguous()?;
        let size = self.dtype().size() as u64;
        let bytes = t.gpu().read(
            t.buffer(),
            t.offset() as u64 * size,
            t.numel() as u64 * size,
        )?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The single value of a one-element f32 tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return shape_err(
                "item",
                format!("needs one element, got shape {:?}", self.shape()),
            );
        }
        Ok(self.to_vec::<f32>()?[0])
    }

    /// Convert to another dtype (float -> int truncates toward zero; negative -> u32 gives 0).
    ///
    /// Not differentiable except f32 -> f32 (a copy).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        use ew::Cast;
        let from = self.dtype();
        if from == dtype {
            return Ok(self.clone());
        }
        let gpu = self.gpu().clone();
        let out = Tensor::empty_on(&gpu, self.shape(), dtype)?;
        let shape = self.shape().to_vec();
        let dst = out.strided();
        match (from, dtype) {
            (DType::F32, DType::BF16) | (DType::BF16, DType::F32) => self.convert_bf16(&out)?,
            (DType::BF16, _) | (_, DType::BF16) => {
                return self.to_dtype(DType::F32)?.to_dtype(dtype);
            }
            (DType::F32, DType::F16) => ew::cast_f16(&gpu, true, &shape, self.strided(), dst)?,
            (DType::F16, DType::F32) => ew::cast_f16(&gpu, false, &shape, self.strided(), dst)?,
            (DType::F16, _) | (_, DType::F16) => {
                return self.to_dtype(DType::F32)?.to_dtype(dtype);
            }
            (DType::F32, DType::I32) => {
                ew::cast(&gpu, Cast::F32ToI32, &shape, self.strided(), dst)?
            }
            (DType::F32, DType::U32) => {
                ew::cast(&gpu, Cast::F32ToU32, &shape, self.strided(), dst)?
            }
            (DType::I32, DType::F32) => {
                ew::cast(&gpu, Cast::I32ToF32, &shape, self.strided(), dst)?
            }
            (DType::U32, DType::F32) => {
                ew::cast(&gpu, Cast::U32ToF32, &shape, self.strided(), dst)?
            }
            // i32 <-> u32: reinterpret non-negative values; the bits are the same.
            (DType::I32, DType::U32) | (DType::U32, DType::I32) => {
                ew::cast(&gpu, Cast::CopyBits, &shape, self.strided(), dst)?
            }
            (a, b) => unreachable!("cast {a:?} -> {b:?} handled above"),
        }
        Ok(out)
    }

    /// f32 <-> bf16 into the fresh contiguous `out` (pack16.wgsl: two bf16 per u32 word, round
    /// to nearest even). A bf16 source must be contiguous from an even element (a word).
    fn convert_bf16(&self, out: &Tensor) -> Result<()> {
        use kiln_kernels::launch::pack16::{self as p16, Half};
        let (gpu, n) = (self.gpu(), self.numel());
        if self.dtype() == DType::F32 {
            let src = self.contiguous()?;
            let dst = kiln_kernels::Operand::new(out.buffer(), 0);
            p16::pack(gpu, Half::Bf16, n, src.operand(), dst)?;
            return Ok(());
        }
        if !self.is_contiguous() || !self.offset().is_multiple_of(2) {
            return arg_err(
                "to_dtype",
                format!(
                    "a bf16 tensor is packed storage: convert the whole contiguous tensor, not a \
                     view (shape {:?}, strides {:?}, offset {})",
                    self.shape(),
                    self.strides(),
                    self.offset()
                ),
            );
        }
        let src = kiln_kernels::Operand::new(self.buffer(), self.offset() / 2);
        p16::unpack(gpu, Half::Bf16, n, src, out.operand())?;
        Ok(())
    }

    /// A contiguous copy in a fresh buffer (never shares storage with `self`).
    pub(crate) fn copy_contiguous(&self) -> Result<Tensor> {
        let gpu = self.gpu().clone();
        let out = Tensor::empty_on(&gpu, self.shape(), self.dtype())?;
        let shape = self.shape().to_vec();
        match self.dtype() {
            DType::F16 | DType::BF16 => {
                let f = self.to_dtype(DType::F32)?;
                return f.to_dtype(self.dtype());
            }
            _ => ew::cast(
                &gpu,
                ew::Cast::CopyBits,
                &shape,
                self.strided(),
                out.strided(),
            )?,
        }
        Ok(out)
    }

    /// Copy `src` (broadcast to this view's shape) into this view, in place. No autograd.
    pub(crate) fn assign_from(&self, src: &Tensor) -> Result<()> {
        let shape = self.shape().to_vec();
        let dst = Strided::new(self.buffer(), self.offset(), self.strides());
        ew::cast(
            self.gpu(),
            ew::Cast::CopyBits,
            &shape,
            src.strided_as(&shape),
            dst,
        )?;
        Ok(())
    }
}
