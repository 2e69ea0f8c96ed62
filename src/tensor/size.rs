//! Sizes checked before anything is allocated.
//!
//! A shape read from a flag or a checkpoint can be absurd (`--max-tokens 18446744073709551615`,
//! a hidden size of 4e9 in a checkpoint's metadata). Multiplying its dimensions in `usize`
//! overflows (a panic in debug builds, a wrong small number in release), and a large but
//! representable product makes the host allocate gigabytes before the GPU refuses the buffer.
//! [`tensor_bytes`] multiplies with checked arithmetic and [`check_fits`] compares the result
//! with the adapter's limit for one storage buffer, so such requests become errors at once.
//!
//! ```
//! use kiln::DType;
//! use kiln::tensor::tensor_bytes;
//! assert_eq!(tensor_bytes(&[3, 4], DType::F32, "w").unwrap(), 48);
//! assert!(tensor_bytes(&[usize::MAX, 2], DType::F32, "w").is_err());
//! ```

use kiln_kernels::Gpu;

use super::DType;
use crate::error::{Error, Result};

/// The number of elements of `shape`, or an error naming `what` when the product overflows.
pub fn numel_checked(shape: &[usize], what: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| too_large(what, format!("shape {shape:?} has more elements than fit")))
}

/// The bytes a tensor of `shape` and `dtype` takes, or an error naming `what` on overflow.
pub fn tensor_bytes(shape: &[usize], dtype: DType, what: &str) -> Result<u64> {
    let n = numel_checked(shape, what)?;
    (n as u64)
        .checked_mul(dtype.size() as u64)
        .ok_or_else(|| too_large(what, format!("shape {shape:?} overflows a byte count")))
}

/// The largest buffer `gpu` can bind as one storage buffer, in bytes.
pub fn buffer_limit(gpu: &Gpu) -> u64 {
    let l = gpu.limits();
    l.max_storage_buffer_binding_size.min(l.max_buffer_size)
}

/// Check that a tensor of `shape` and `dtype` fits in one buffer of `gpu` before anything is
/// allocated; returns its element count. The error names `what` and both sizes.
pub fn check_fits(gpu: &Gpu, shape: &[usize], dtype: DType, what: &str) -> Result<usize> {
    let bytes = tensor_bytes(shape, dtype, what)?;
    let limit = buffer_limit(gpu);
    if bytes > limit {
        return Err(too_large(
            what,
            format!(
                "shape {shape:?} needs {} but the adapter's largest buffer is {}",
                human_bytes(bytes),
                human_bytes(limit)
            ),
        ));
    }
    Ok(bytes as usize / dtype.size())
}

/// `bytes` in a unit a person reads at a glance (`4.00 GB`).
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{:.2} TB", b / 1e12)
    } else if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} MB", b / 1e6)
    } else {
        format!("{bytes} bytes")
    }
}

fn too_large(what: &str, msg: String) -> Error {
    Error::Config(format!("{what}: too large: {msg}"))
}
