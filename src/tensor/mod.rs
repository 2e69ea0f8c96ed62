//! `Tensor`: shared GPU storage plus a strided view (shape, strides, offset), a dtype, and an
//! optional autograd node.
//!
//! A view (reshape, transpose, narrow, expand, ...) shares storage and only changes
//! shape/strides/offset; `contiguous()` copies when needed. Strides and offsets are in elements.
//! Cloning a `Tensor` is cheap (an `Arc`).

mod create;
mod host;
mod size;
mod view;

pub use crate::dtype::{DType, Element};
pub use size::{buffer_limit, check_fits, human_bytes, numel_checked, tensor_bytes};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_kernels::launch::elementwise::{Strided, contiguous_strides};
use kiln_kernels::memory::Category;
use kiln_kernels::{Gpu, GpuBuffer, Operand};

use crate::autograd::Node;
use crate::error::{Error, Result};

/// GPU memory behind one or more tensors.
pub(crate) struct Storage {
    pub(crate) buf: GpuBuffer,
    /// Elements allocated (the logical length, not the pool capacity).
    #[allow(dead_code)]
    pub(crate) len: usize,
}

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) offset: usize,
    pub(crate) requires_grad: std::sync::atomic::AtomicBool,
    pub(crate) grad: Mutex<Option<Tensor>>,
    /// True after a deferred `zero_grad`: `grad` holds stale values that count as zeros (see
    /// `autograd`); read and written only while `grad` is locked.
    pub(crate) grad_zeroed: std::sync::atomic::AtomicBool,
    pub(crate) node: Option<Arc<Node>>,
}

/// An n-dimensional array on the GPU, with autograd.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) inner: Arc<Inner>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?}", self.shape(), self.dtype())?;
        if let Some(n) = &self.inner.node {
            write!(f, ", grad_fn={}", n.name)?;
        } else if self.requires_grad_flag() {
            write!(f, ", requires_grad")?;
        }
        write!(f, ")")
    }
}

impl Tensor {
    /// A tensor over `storage` with the given view and no autograd node.
    pub(crate) fn from_parts(
        gpu: Arc<Gpu>,
        storage: Arc<Storage>,
        dtype: DType,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
    ) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                gpu,
                storage,
                dtype,
                shape,
                strides,
                offset,
                requires_grad: std::sync::atomic::AtomicBool::new(false),
                grad: Mutex::new(None),
                grad_zeroed: std::sync::atomic::AtomicBool::new(false),
                node: None,
            }),
        }
    }

    /// A fresh contiguous tensor with uninitialised contents.
    ///
    /// The memory ledger counts it in the open [`kiln_kernels::memory::scope`]'s category, else
    /// as activations while autograd records (outside `no_grad`) and as workspace otherwise.
    pub(crate) fn empty_on(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let what = format!("tensor of shape {shape:?} ({dtype:?})");
        let n = numel_checked(shape, &what)?;
        let bytes = tensor_bytes(shape, dtype, &what)?.max(dtype.size() as u64);
        let default = if crate::autograd::is_grad_enabled() {
            Category::Activations
        } else {
            Category::Workspace
        };
        let buf = gpu.alloc_as(bytes, &what, default)?;
        Ok(Self::from_parts(
            gpu.clone(),
            Arc::new(Storage { buf, len: n }),
            dtype,
            shape.to_vec(),
            contiguous_strides(shape),
            0,
        ))
    }

    /// Same view of the same storage, as a new tensor with its own identity (no grad).
    pub(crate) fn with_view(
        &self,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
    ) -> Tensor {
        Self::from_parts(
            self.inner.gpu.clone(),
            self.inner.storage.clone(),
            self.inner.dtype,
            shape,
            strides,
            offset,
        )
    }

    /// The shape, outermost dim first.
    pub fn shape(&self) -> &[usize] {
        &self.inner.shape
    }

    /// The strides in elements.
    pub fn strides(&self) -> &[usize] {
        &self.inner.strides
    }

    /// Element offset of this view into its storage.
    pub fn offset(&self) -> usize {
        self.inner.offset
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.inner.shape.len()
    }

    /// Size of dim `d` (negative counts from the end).
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.inner.shape[self.norm_dim("dim", d)?])
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.inner.shape.iter().product()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The device this tensor lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.inner.gpu
    }

    /// A process-unique id (used by autograd).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// True when the elements are laid out row-major without gaps (offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1;
        for k in (0..self.rank()).rev() {
            if self.inner.shape[k] != 1 && self.inner.strides[k] != expect {
                return false;
            }
            expect *= self.inner.shape[k];
        }
        true
    }

    /// Count this tensor's storage (every view of it) as `category` in the memory ledger
    /// ([`Gpu::memory_stats`]); a parameter is counted as weights, a `.grad` as gradients.
    pub fn set_memory_category(&self, category: Category) {
        self.inner.storage.buf.set_category(category)
    }

    /// The memory-ledger category of this tensor's storage.
    pub fn memory_category(&self) -> Category {
        self.inner.storage.buf.category()
    }

    /// True when two tensors share storage.
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner.storage, &other.inner.storage)
    }

    /// The kernel-level view of this tensor (buffer, element offset, strides), for code that
    /// calls `kiln-kernels` launchers directly (benchmarks, tests, custom kernels).
    pub fn kernel_view(&self) -> Strided<'_> {
        self.strided()
    }

    /// This tensor's buffer and element offset, for launchers that read or write a contiguous
    /// run ([`Operand`]). Only meaningful for a contiguous tensor: see [`Tensor::is_contiguous`]
    /// (the ops make one with `dense()` first).
    pub fn operand(&self) -> Operand<'_> {
        Operand::new(&self.inner.storage.buf, self.inner.offset)
    }

    /// The kernel-level view of this tensor.
    pub(crate) fn strided(&self) -> Strided<'_> {
        Strided::new(
            &self.inner.storage.buf,
            self.inner.offset,
            &self.inner.strides,
        )
    }

    /// The kernel-level view, with strides broadcast to `shape` (which must be a valid broadcast).
    pub(crate) fn strided_as(&self, shape: &[usize]) -> Strided<'_> {
        let pad = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for k in 0..self.rank() {
            strides[pad + k] = if self.inner.shape[k] == 1 && shape[pad + k] != 1 {
                0
            } else {
                self.inner.strides[k]
            };
        }
        Strided::new(&self.inner.storage.buf, self.inner.offset, &strides)
    }

    /// The underlying buffer.
    pub(crate) fn buffer(&self) -> &GpuBuffer {
        &self.inner.storage.buf
    }

    /// Normalise a possibly negative dim.
    pub(crate) fn norm_dim(&self, op: &'static str, d: isize) -> Result<usize> {
        norm_dim(op, d, self.rank())
    }

    /// Error unless the dtype is f32.
    pub(crate) fn expect_f32(&self, op: &'static str) -> Result<()> {
        self.expect_dtype(op, DType::F32, "f32")
    }

    /// Error unless `self` has dtype `dtype`; `expected` says what `op` wanted ("u32 ids").
    pub(crate) fn expect_dtype(
        &self,
        op: &'static str,
        dtype: DType,
        expected: &'static str,
    ) -> Result<()> {
        if self.dtype() != dtype {
            return Err(Error::DType {
                op,
                expected,
                got: self.dtype(),
            });
        }
        Ok(())
    }

    /// Error unless `self` (the argument `what` of `op`) has the shape of `of.1` (called `of.0`
    /// in the message) and sits on its device: a target, a gradient, a loaded state tensor.
    pub(crate) fn expect_shape_of(
        &self,
        op: &'static str,
        what: &str,
        of: (&str, &Tensor),
    ) -> Result<()> {
        of.1.same_device(op, self)?;
        if self.shape() != of.1.shape() {
            let (got, want) = (self.shape(), of.1.shape());
            return crate::error::shape_err(
                op,
                format!(
                    "{what} has shape {got:?}, which differs from the shape {want:?} of {}",
                    of.0
                ),
            );
        }
        Ok(())
    }

    /// Error unless `self` (the argument `what` of `op`) has at least one element.
    pub(crate) fn expect_nonempty(&self, op: &'static str, what: &str) -> Result<()> {
        if self.numel() == 0 {
            let got = self.shape();
            return crate::error::shape_err(
                op,
                format!("{what} of shape {got:?} is empty (every dim must be >= 1)"),
            );
        }
        Ok(())
    }

    /// Error unless `self` has rank `rank`: the argument `what` of `op`, whose expected
    /// `layout` (`"(N, C, H, W)"`) the message names next to the shape it got.
    pub(crate) fn expect_rank(
        &self,
        op: &'static str,
        what: &str,
        rank: usize,
        layout: &str,
    ) -> Result<()> {
        if self.rank() != rank {
            let got = self.shape();
            return crate::error::shape_err(
                op,
                format!("{what} must be {layout}, got shape {got:?}"),
            );
        }
        Ok(())
    }

    /// Error unless `self` holds 32-bit words (f32, i32 or u32): the ops that copy elements.
    pub(crate) fn expect_32bit(&self, op: &'static str) -> Result<()> {
        if self.dtype() == DType::F16 {
            return Err(Error::DType {
                op,
                expected: "f32, i32 or u32",
                got: self.dtype(),
            });
        }
        Ok(())
    }

    /// Error unless `self` has shape (`len`) and sits on the device of `of.1`: the per-row or
    /// per-channel argument `what` of an op whose tensor `of.1` (called `of.0` in the message,
    /// e.g. "input") fixes that length. The dtype is the caller's to check.
    pub(crate) fn expect_len(
        &self,
        op: &'static str,
        what: &str,
        len: usize,
        of: (&str, &Tensor),
    ) -> Result<()> {
        of.1.same_device(op, self)?;
        if self.shape() != [len] {
            return crate::error::shape_err(
                op,
                format!(
                    "{what} must have shape ({len}) for {} of shape {:?}, got shape {:?}",
                    of.0,
                    of.1.shape(),
                    self.shape()
                ),
            );
        }
        Ok(())
    }

    /// Error unless both tensors are on the same device.
    pub(crate) fn same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if !Arc::ptr_eq(&self.inner.gpu, &other.inner.gpu) {
            return crate::error::arg_err(op, "tensors are on different devices");
        }
        Ok(())
    }
}

/// Normalise dim `d` of a rank-`rank` tensor (negative counts from the end).
pub(crate) fn norm_dim(op: &'static str, d: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let k = if d < 0 { d + r } else { d };
    if k < 0 || k >= r.max(1) || (rank == 0) {
        return crate::error::arg_err(
            op,
            format!("dim {d} is out of range for a tensor of rank {rank}"),
        );
    }
    Ok(k as usize)
}
