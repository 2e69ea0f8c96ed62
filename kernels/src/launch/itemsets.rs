//! Launcher for `itemsets.wgsl`: support counts of candidate itemsets over a vertical bitset
//! layout (one bit per transaction per item; AND + popcount), and the host-side packing of
//! transactions into that layout.
//!
//! Math: with `bits[i]` the bitset of the transactions holding item i,
//! `count({i_1, .., i_len}) = popcount(bits[i_1] & .. & bits[i_len])`.
//!
//! Layout: `bits` is (items, words) u32 with `words = 4 ceil(n / 128)` (a multiple of 4: the
//! kernel loads 128 transactions at a time as a `vec4<u32>`); transaction t is bit `t % 32` of
//! word `t / 32`; bits past n are 0. Candidates are (candidates, len) u32 item
//! indices, all of one length. Every buffer is contiguous and starts at element 0.
//!
//! See also:
//! - shader: `shaders/itemsets.wgsl`
//! - CPU twin: [`crate::reference::itemsets`] (horizontal counts and a brute-force miner)
//! - library: `src/unsupervised/apriori.rs` (Apriori), `src/unsupervised/rules.rs`
//! - tests: `kernels/tests/kernels/itemsets.rs`, `tests/unsupervised/rules.rs`
//! - bench: `kernels/benches/itemsets.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::pipeline::KernelKey;

crate::kernel_params! {
    /// Params of `itemsets.wgsl:support`.
    pub struct ItemsetsParams in "itemsets.wgsl" as "ItemsetsParams" {
        /// Candidates in this dispatch.
        pub candidates: u32,
        /// Items per candidate (at least 1).
        pub len: u32,
        /// `vec4<u32>` per item bitset (the row stride of `bits`, `words / 4`).
        pub quads: u32,
        /// First quad of this dispatch's range.
        pub quad0: u32,
        /// One past the last quad of the range.
        pub quad1: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding to 16 bytes.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }
}

/// Invocations per workgroup (one workgroup per candidate).
pub const WG: usize = 64;

/// Longest per-invocation loop (Mesa llvmpipe ends an invocation's loops after 65,535
/// iterations, counting the inner loop's exit test too): an invocation of a range of words runs
/// `ceil(range / 64)` outer iterations of `len` inner ones (`len - 1` reads and the exit test),
/// plus the outer loop's own.
pub const MAX_LOOP: usize = 65_535;

/// Most items per candidate one launch takes.
pub const MAX_LEN: usize = 64;

/// u32 words per item bitset for `n` transactions: `4 ceil(n / 128)`.
pub fn words_for(n: usize) -> usize {
    4 * n.div_ceil(128)
}

/// Pack transactions into the vertical layout: (items, words) u32, bit t of item i set when
/// transaction t holds i. Each transaction lists item indices in `0..items` (duplicates are
/// harmless: a bit is set once). An index out of range is an error.
pub fn pack_bits(transactions: &[Vec<u32>], items: usize) -> Result<Vec<u32>> {
    let words = words_for(transactions.len());
    let mut bits = vec![0u32; items * words];
    for (t, row) in transactions.iter().enumerate() {
        for &i in row {
            if i as usize >= items {
                return Err(KernelError::launch(
                    "itemsets.wgsl:pack",
                    format!("transaction {t} holds item {i}, beyond the {items} items"),
                ));
            }
            bits[i as usize * words + t / 32] |= 1 << (t % 32);
        }
    }
    Ok(bits)
}

/// Quads (4 words) per dispatch so that each invocation loops at most [`MAX_LOOP`] times for
/// `len` items: `ceil(range / 64) * (len + 2)` iterations (a margin of one per outer iteration).
pub fn quads_per_range(len: usize) -> usize {
    (MAX_LOOP / (len + 2)) * WG
}

/// Support counts: `count[c] = popcount(AND of bits[cand[c, j]] over j < len)`, exact.
///
/// bits: (items, words) u32 with `words` a multiple of 4 ([`words_for`]); cand: (candidates,
/// len) u32 item indices below `items`;
/// count: (candidates) u32. Item indices are not checked on the GPU: the caller passes
/// candidates built from `0..items` (the CPU twin checks them).
pub fn support(
    gpu: &Gpu,
    bits: &GpuBuffer,
    words: usize,
    cand: &GpuBuffer,
    candidates: usize,
    len: usize,
    count: &GpuBuffer,
) -> Result<()> {
    let name = "itemsets.wgsl:support";
    if len == 0 || len > MAX_LEN {
        return Err(KernelError::launch(
            name,
            format!("len = {len} items per candidate (expected 1 to {MAX_LEN})"),
        ));
    }
    if !words.is_multiple_of(4) {
        return Err(KernelError::launch(
            name,
            format!("words = {words} per bitset: expected a multiple of 4 (see words_for)"),
        ));
    }
    if words > u32::MAX as usize || candidates.saturating_mul(len) > u32::MAX as usize {
        return Err(KernelError::launch(
            name,
            format!("{candidates} candidates of {len} items over {words} words exceed 2^32"),
        ));
    }
    let need = [
        (cand, 4 * candidates * len, "cand"),
        (count, 4 * candidates, "count"),
    ];
    for (buf, bytes, what) in need {
        if (buf.capacity() as usize) < bytes {
            return Err(KernelError::launch(
                name,
                format!("{what} holds {} bytes, needs {bytes}", buf.capacity()),
            ));
        }
    }
    if candidates == 0 {
        return Ok(());
    }
    let key = KernelKey::new("itemsets.wgsl", "support");
    let (quads, step) = (words / 4, quads_per_range(len));
    // No transactions: one empty range still stores the zero counts.
    let mut quad0 = 0;
    loop {
        let quad1 = (quad0 + step).min(quads);
        let p = ItemsetsParams {
            candidates: candidates as u32,
            len: len as u32,
            quads: quads as u32,
            quad0: quad0 as u32,
            quad1: quad1 as u32,
            ..Default::default()
        };
        gpu.dispatch(&key, &p, &[bits, cand, count], grid_1d(candidates, 1));
        quad0 = quad1;
        if quad0 >= quads {
            return Ok(());
        }
    }
}
