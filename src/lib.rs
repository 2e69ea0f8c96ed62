//! # kiln
//!
//! A deep-learning training engine on wgpu: tensors with views and broadcasting, define-by-run
//! reverse-mode autodiff, and WGSL kernels that run on any Vulkan, Metal, DX12 or OpenGL GPU
//! (including Mesa's software lavapipe).
//!
//! ```no_run
//! use kiln::Tensor;
//! let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0], &[3])?.requires_grad();
//! let y = x.relu()?.mul(&x)?.sum()?;      // sum(relu(x) * x)
//! y.backward()?;
//! assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0, 0.0, 6.0]);
//! # Ok::<(), kiln::Error>(())
//! ```
//!
//! Layout: [`tensor`] (storage, views, creation), [`autograd`] (graph, backward, `no_grad`),
//! [`ops`] (one file per op, forward and backward side by side). The GPU side lives in the
//! `kiln-kernels` crate.

#![warn(missing_docs)]

pub mod autograd;
#[cfg(feature = "cli")]
pub mod cli;
pub mod data;
pub mod dist;
pub mod dtype;
pub mod error;
pub mod io;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod show;
pub mod sweep;
pub mod tensor;
pub mod train;
pub mod unsupervised;

/// The README's examples, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The book's chapters (`docs/book/`) with Rust code blocks, compiled and run as doctests.
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../docs/book/01-tensors.md")]
    mod book_tensors {}
    #[doc = include_str!("../docs/book/02-autodiff.md")]
    mod book_autodiff {}
    #[doc = include_str!("../docs/book/05-attention.md")]
    mod book_attention {}
    #[doc = include_str!("../docs/book/06-optimizers.md")]
    mod book_optimizers {}
    #[doc = include_str!("../docs/book/07-lora-nf4.md")]
    mod book_lora_nf4 {}
}

pub use autograd::{NoGradGuard, is_grad_enabled, no_grad};
pub use error::{Error, Result};
pub use kiln_kernels::Gpu;
pub use kiln_kernels::launch::matmul::MatmulVariant;
/// The memory ledger's categories, scopes and sizes (`kiln::memory::scope(Category::Weights)`).
pub use kiln_kernels::memory;
pub use ops::Reduction;
pub use tensor::{DType, Element, Tensor};

/// The default GPU: this thread's device when [`with_device`] set one (a data-parallel
/// replica), otherwise the process-wide one (opened on first use; `KILN_DEVICE` /
/// `KILN_BACKEND` choose it).
pub fn device() -> Result<std::sync::Arc<Gpu>> {
    match THREAD_DEVICE.with(|d| d.borrow().clone()) {
        Some(g) => Ok(g),
        None => Ok(Gpu::global()?),
    }
}

thread_local! {
    /// The device [`with_device`] set for this thread.
    static THREAD_DEVICE: std::cell::RefCell<Option<std::sync::Arc<Gpu>>> =
        const { std::cell::RefCell::new(None) };
}

/// Run `f` with `gpu` as this thread's default device ([`device`] returns it inside `f`, and
/// everything that allocates on "the default device" uses it); the previous one is restored
/// after, also when `f` panics. Data parallelism runs each replica's thread inside one.
pub fn with_device<T>(gpu: &std::sync::Arc<Gpu>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<std::sync::Arc<Gpu>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            THREAD_DEVICE.with(|d| *d.borrow_mut() = prev);
        }
    }
    let prev = THREAD_DEVICE.with(|d| d.borrow_mut().replace(gpu.clone()));
    let _restore = Restore(prev);
    f()
}
