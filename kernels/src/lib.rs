//! # kiln-kernels
//!
//! kiln's GPU layer: a wgpu device with the adapter's real limits, a caching buffer pool, a
//! pipeline cache, a batching encoder, and one launcher per WGSL entry point, each beside a naive
//! CPU twin in [`reference`](mod@reference) that tests use as the oracle.
//!
//! This crate knows buffers, shapes and dispatches, nothing of autodiff or training, so it can be
//! used on its own to benchmark kernels:
//!
//! ```no_run
//! use kiln_kernels::{Gpu, launch::elementwise::{self, Strided}};
//! let gpu = Gpu::new()?;
//! let x = gpu.alloc(4 * 3, "x")?;
//! gpu.upload(&x, 0, bytemuck::cast_slice(&[1.0f32, -2.0, 3.0]));
//! let y = gpu.alloc(4 * 3, "y")?;
//! elementwise::unary(&gpu, elementwise::UnaryOp::Relu, &[3], Strided::contiguous(&x, &[3]),
//!                    Strided::contiguous(&y, &[3]), 0.0, 0.0)?;
//! let out: Vec<f32> = bytemuck::cast_slice(&gpu.read(&y, 0, 12)?).to_vec();
//! assert_eq!(out, [1.0, 0.0, 3.0]);
//! # Ok::<(), kiln_kernels::KernelError>(())
//! ```

#![warn(missing_docs)]

mod buffer;
pub mod buffer_pool;
pub mod capture;
pub mod encoder;
pub mod error;
pub mod gpu;
pub mod launch;
pub mod memory;
mod operand;
pub mod pipeline;
pub mod profile;
pub mod reference;
pub mod shaders;
pub mod tune;

pub use buffer_pool::GpuBuffer;
pub use error::{KernelError, Result};
pub use gpu::{AdapterSummary, Gpu};
pub use operand::Operand;
pub use pipeline::KernelKey;

/// Re-export of wgpu for code that needs raw types (benchmarks, `kiln devices`).
pub use wgpu;
