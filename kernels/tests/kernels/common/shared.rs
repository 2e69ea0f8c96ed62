//! What the test suites of both crates share (the root crate's tests/common/mod.rs includes this
//! file by path): the test device, seeded random inputs and awkward sizes.

use std::sync::Arc;

use kiln_kernels::Gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The test device (the process-wide one). Fails loudly, with the fix, when there is no adapter.
pub fn gpu() -> Arc<Gpu> {
    match Gpu::global() {
        Ok(g) => g,
        Err(e) => panic!(
            "GPU tests need an adapter: {e}\n\
             On Linux without a GPU: apt-get install -y mesa-vulkan-drivers"
        ),
    }
}

/// A private device, for tests that read pool or encoder counters (the global device is shared
/// by tests running in parallel).
pub fn private_gpu() -> Arc<Gpu> {
    Gpu::new().expect("a second device on the same adapter")
}

/// Sizes that are 1, prime, and one past powers of two: never a multiple of a tile or workgroup.
pub const AWKWARD: &[usize] = &[1, 7, 17, 129, 257];

/// A seed from a tag (FNV-1a), so each call site sees its own numbers.
pub fn seed(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in tag.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h
}

/// `n` uniform values in `[lo, hi)` (never all zeros).
pub fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values with |v| in `[lo, hi)` and random sign.
pub fn rand_signed_away_from_zero(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let m = rng.random_range(lo..hi);
            if rng.random::<bool>() { m } else { -m }
        })
        .collect()
}

/// `n` random indices in `0..bound`.
pub fn rand_indices(n: usize, seed: u64, bound: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..bound)).collect()
}
