//! Shared helpers of the kernel tests: the device, seeded random inputs, awkward sizes, and
//! buffer upload / readback on kiln-kernels' own API (no tensors).
#![allow(dead_code)]

mod shared;
pub mod skip;

pub use kiln_kernels::reference::Tolerance;
use kiln_kernels::{Gpu, GpuBuffer};
pub use shared::*;
pub use skip::skip;

/// f32 values in a fresh buffer (f32 only, so that a literal `&[1.0; 8]` is not taken as f64).
pub fn upload(g: &Gpu, v: &[f32]) -> GpuBuffer {
    upload_pod(g, v)
}

/// u32 words (codes, indices, masks) in a fresh buffer.
pub fn upload_u32(g: &Gpu, v: &[u32]) -> GpuBuffer {
    upload_pod(g, v)
}

/// Any Pod slice in a fresh buffer (at least 4 bytes, so an empty `v` works).
pub fn upload_pod<T: bytemuck::Pod>(g: &Gpu, v: &[T]) -> GpuBuffer {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let b = g.alloc((bytes.len() as u64).max(4), "test").unwrap();
    g.upload(&b, 0, bytes);
    b
}

/// `n` f32 values from the start of `b`.
pub fn read(g: &Gpu, b: &GpuBuffer, n: usize) -> Vec<f32> {
    read_at(g, b, 0, n)
}

/// `n` values of `T` from element `offset` of `b`.
pub fn read_at<T: bytemuck::Pod>(g: &Gpu, b: &GpuBuffer, offset: usize, n: usize) -> Vec<T> {
    let size = std::mem::size_of::<T>() as u64;
    bytemuck::pod_collect_to_vec(&g.read(b, offset as u64 * size, n as u64 * size).unwrap())
}

/// `v` in f64 (the CPU twins' precision).
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// f32 data stored inside a larger buffer, after some other values: the kernels must honour
/// operand offsets and leave the neighbours alone.
pub struct Shifted {
    /// The buffer: `offset` values, the data, then any tail.
    pub buf: GpuBuffer,
    /// Element offset of the data.
    pub offset: usize,
    /// Elements of data.
    pub len: usize,
    /// Elements in all.
    pub total: usize,
}

impl Shifted {
    /// `data` at element offset 3, behind three sentinels (9.0).
    pub fn new(g: &Gpu, data: &[f32]) -> Self {
        Shifted::between(g, &[9.0; 3], data, &[])
    }

    /// `data` between `before` and `after`.
    pub fn between(g: &Gpu, before: &[f32], data: &[f32], after: &[f32]) -> Self {
        let v = [before, data, after].concat();
        Shifted {
            buf: upload(g, &v),
            offset: before.len(),
            len: data.len(),
            total: v.len(),
        }
    }

    /// The data as a launcher operand.
    pub fn operand(&self) -> kiln_kernels::Operand<'_> {
        kiln_kernels::Operand::new(&self.buf, self.offset)
    }

    /// The data read back.
    pub fn read(&self, g: &Gpu) -> Vec<f32> {
        read_at(g, &self.buf, self.offset, self.len)
    }

    /// The whole buffer read back (neighbours included).
    pub fn read_all(&self, g: &Gpu) -> Vec<f32> {
        read(g, &self.buf, self.total)
    }
}

/// The message of the error `r` must be.
pub fn err_text<T: std::fmt::Debug>(r: kiln_kernels::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}
