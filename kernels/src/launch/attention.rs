//! Launchers of the fused attention kernels (`shaders/attention/`): forward with the online
//! softmax, and the backward from the saved log-sum-exp rows.
//!
//! Every tensor is contiguous row-major: q, dO, O (B, H, Tq, D); k, v (B, H, Tk, D);
//! keep (B, Tk) f32 of 1.0 / 0.0; L (B, H, Tq). No workgroup barriers (lavapipe pays about 15 us
//! per barrier) and no float atomics: each invocation owns its output rows and walks the other
//! side serially, reading it from global memory.
//!
//! | kernel | one invocation owns | walks |
//! | --- | --- | --- |
//! | `forward.wgsl` (rung [`AttnVariant::Row`]) | one query row | keys one at a time, scalar loads |
//! | `forward_block.wgsl` ([`AttnVariant::Block`], default) | 4 query rows | keys 4 at a time, vec4 loads |
//! | `backward_prep.wgsl` | one query row: (L, dO . O) | D |
//! | `backward.wgsl` `attn_bwd_dq` (rung `Row`) | one query row of dQ | keys |
//! | `backward.wgsl` `attn_bwd_dkdv` (rung `Row`) | one key row of dK and dV | queries |
//! | `backward_block.wgsl` `attn_bwd_dq_block` (`Block`, default) | 4 query rows of dQ | keys 8 at a time, vec4 loads |
//! | `backward_block.wgsl` `attn_bwd_dkdv_block` (`Block`, default) | 4 key rows of dK, dV | queries 8 at a time, vec4 loads |
//!
//! Mesa's lavapipe ends an invocation's loops after 65,535 iterations in total, silently. A row
//! visited costs `2 D + 1` loop iterations in the row kernels (at most `2 D / 4 + 9` per 4 rows in
//! the block kernels), so the walk is split into chunks of at most [`chunk_len`] /
//! [`chunk_len_block`] rows, one dispatch each, with the running state (forward: `(m, l)` and the
//! unnormalised output; backward: the gradients) carried in global memory between them.

use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::{ParamsLayout, grid_1d, layout_of};
use crate::pipeline::KernelKey;
use crate::pool::GpuBuffer;

/// Invocations per workgroup (WGSL `override WG`).
pub const WG: u32 = 64;

/// Largest head size D the kernels take (WGSL `MAX_D`: the per-invocation arrays).
pub const MAX_D: usize = 128;

/// Loop iterations one invocation may spend (lavapipe stops at 65,535; the rest is slack).
pub const LOOP_BUDGET: usize = 60_000;

crate::kernel_params! {
    /// Params of every attention kernel (`shaders/attention/params.wgsl`).
    pub struct AttnParams in "attention/forward.wgsl" as "AttnParams" {
        /// B * H.
        pub bh: u32,
        /// H.
        pub heads: u32,
        /// Tq, queries per head.
        pub tq: u32,
        /// Tk, keys per head.
        pub tk: u32,
        /// Multiplier of `q . k`.
        pub scale: f32,
        /// 1: query i sees keys `j <= i + Tk - Tq`.
        pub causal: u32,
        /// 1: the keep mask (B, Tk) is read.
        pub has_mask: u32,
        /// First key (forward, dQ) or query (dK / dV) of this dispatch.
        pub c0: u32,
        /// End of this dispatch's chunk (exclusive).
        pub c1: u32,
        /// 1 on the first chunk.
        pub first: u32,
        /// 1 on the last chunk.
        pub last: u32,
        /// Element offset of q.
        pub q_off: u32,
        /// Element offset of k.
        pub k_off: u32,
        /// Element offset of v.
        pub v_off: u32,
        /// Element offset of the keep mask.
        pub m_off: u32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

/// Params layouts of this family, for the layout test.
pub fn params_layouts() -> Vec<ParamsLayout> {
    vec![layout_of::<AttnParams>()]
}

/// Sizes and options of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnShape {
    /// B.
    pub batch: usize,
    /// H.
    pub heads: usize,
    /// Tq.
    pub tq: usize,
    /// Tk.
    pub tk: usize,
    /// D, the head size (1..=[`MAX_D`]).
    pub d: usize,
    /// Multiplier of `q . k` (usually `1 / sqrt(D)`).
    pub scale: f32,
    /// Causal mask aligned to the end: query i sees keys `j <= i + Tk - Tq`.
    pub causal: bool,
}

/// A buffer and the element offset of a tensor's first element in it.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element offset.
    pub offset: usize,
}

/// Most keys (or queries) one invocation visits per dispatch at head size `d` in the row kernels
/// (`forward.wgsl`, `backward.wgsl`): each costs `2 d + 1` loop iterations, plus `3 d` for loading
/// and storing its rows.
pub fn chunk_len(d: usize) -> usize {
    ((LOOP_BUDGET - 3 * d) / (2 * d + 1)).max(1)
}

/// Most keys one invocation of `forward_block.wgsl` visits per dispatch (and rows of the other
/// side in `backward_block.wgsl`, whose steps cost at most as much): a step of 4 keys costs
/// at most `2 D / 4 + 9` loop iterations (none when the driver unrolls the loops over D / 4),
/// plus `6 D / 4 + 32` around the walk.
pub fn chunk_len_block(d: usize) -> usize {
    let db = d.div_ceil(4);
    4 * ((LOOP_BUDGET - 6 * db - 32) / (2 * db + 9)).max(1)
}

/// Which kernels run, forward and backward (the rungs of the ladder; both tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttnVariant {
    /// The block kernels where they apply (D % 4 == 0, 16-byte aligned q, k, v), else `Row`.
    #[default]
    Auto,
    /// `forward.wgsl`, `backward.wgsl`: one invocation per output row, scalar loads; any D up
    /// to [`MAX_D`].
    Row,
    /// `forward_block.wgsl`, `backward_block.wgsl`: 4 output rows per invocation, 4 rows of the
    /// other side per step, vec4 loads. Falls back to `Row` when D or an offset is not a
    /// multiple of 4.
    Block,
}

impl AttnVariant {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [AttnVariant; 3] = [AttnVariant::Auto, AttnVariant::Row, AttnVariant::Block];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            AttnVariant::Auto => "auto",
            AttnVariant::Row => "row",
            AttnVariant::Block => "block",
        }
    }
}

fn launch_err(key: &KernelKey, message: String) -> KernelError {
    KernelError::Launch {
        kernel: key.label(),
        message,
    }
}

/// Check sizes against the kernels' limits and the buffers' capacities.
fn check(key: &KernelKey, s: &AttnShape, bufs: &[(&str, &GpuBuffer, usize)]) -> Result<()> {
    if s.d == 0 || s.d > MAX_D {
        return Err(launch_err(
            key,
            format!("head size D = {} is outside 1..={MAX_D}", s.d),
        ));
    }
    let big = s.batch * s.heads * s.tq.max(s.tk) * s.d;
    if big > u32::MAX as usize / 2 {
        return Err(launch_err(
            key,
            format!("{s:?} exceeds the u32 index range"),
        ));
    }
    for (name, buf, elems) in bufs {
        if (*elems as u64) * 4 > buf.capacity() {
            return Err(launch_err(
                key,
                format!(
                    "{name} needs {elems} f32 but its buffer holds {} bytes",
                    buf.capacity()
                ),
            ));
        }
    }
    Ok(())
}

/// True when `variant` runs the block kernels: D % 4 == 0 and q, k, v 16-byte aligned.
fn uses_block(variant: AttnVariant, s: &AttnShape, q: At, k: At, v: At) -> bool {
    variant != AttnVariant::Row
        && s.d.is_multiple_of(4)
        && [q.offset, k.offset, v.offset]
            .iter()
            .all(|o| o.is_multiple_of(4))
}

/// Rows walked per dispatch: the request (0 = as many as the loop budget allows), capped by the
/// budget, in whole 4-row steps for the block kernels.
fn chunk_for(block: bool, d: usize, chunk: usize) -> usize {
    let limit = if block {
        chunk_len_block(d)
    } else {
        chunk_len(d)
    };
    let c = if chunk == 0 { limit } else { chunk.min(limit) };
    if block {
        c.next_multiple_of(4).min(limit)
    } else {
        c
    }
}

/// Params for chunk `[c0, c1)` of a walk of length `n`.
fn params(
    s: &AttnShape,
    q: At,
    k: At,
    v: At,
    keep: Option<At>,
    (c0, c1, n): (usize, usize, usize),
) -> AttnParams {
    AttnParams {
        bh: (s.batch * s.heads) as u32,
        heads: s.heads as u32,
        tq: s.tq as u32,
        tk: s.tk as u32,
        scale: s.scale,
        causal: u32::from(s.causal),
        has_mask: u32::from(keep.is_some()),
        c0: c0 as u32,
        c1: c1 as u32,
        first: u32::from(c0 == 0),
        last: u32::from(c1 >= n),
        q_off: q.offset as u32,
        k_off: k.offset as u32,
        v_off: v.offset as u32,
        m_off: keep.map_or(0, |m| m.offset as u32),
        _pad: 0,
    }
}

/// Chunks `[c0, c1)` covering `0..n` (one empty chunk when n = 0).
fn chunks(n: usize, chunk: usize) -> Vec<(usize, usize, usize)> {
    let c = chunk.max(1);
    let count = n.div_ceil(c).max(1);
    (0..count)
        .map(|t| (t * c, ((t + 1) * c).min(n), n))
        .collect()
}

/// Fused forward: q (B, H, Tq, D), k / v (B, H, Tk, D), keep (B, Tk) or none ->
/// o (B, H, Tq, D) and lse (B, H, Tq), both contiguous from element 0 (a row with no visible key
/// gets O = 0 and L = -inf). `chunk` caps the keys per dispatch (0 = the loop budget's
/// [`chunk_len`] / [`chunk_len_block`]; tests use small values to exercise the chunked path).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    s: &AttnShape,
    variant: AttnVariant,
    q: At,
    k: At,
    v: At,
    keep: Option<At>,
    o: &GpuBuffer,
    lse: &GpuBuffer,
    chunk: usize,
) -> Result<()> {
    let block = uses_block(variant, s, q, k, v);
    let key = if block {
        KernelKey::new("attention/forward_block.wgsl", "attn_fwd_block")
    } else {
        KernelKey::new("attention/forward.wgsl", "attn_fwd")
    }
    .with("WG", WG)
    .with("D", s.d as u32);
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    check(
        &key,
        s,
        &[
            ("q", q.buf, q.offset + rows * s.d),
            ("k", k.buf, k.offset + krows * s.d),
            ("v", v.buf, v.offset + krows * s.d),
            ("o", o, rows * s.d),
            ("lse", lse, rows),
        ],
    )?;
    if rows == 0 {
        return Ok(());
    }
    let state = gpu.alloc(8 * rows as u64, "attention running (max, sum)")?;
    let dummy;
    let keep_buf = match keep {
        Some(m) => m.buf,
        None => {
            dummy = gpu.alloc(4, "attention: no key mask")?;
            &dummy
        }
    };
    let invocations = if block {
        s.batch * s.heads * s.tq.div_ceil(4)
    } else {
        rows
    };
    let chunk = chunk_for(block, s.d, chunk);
    for c in chunks(s.tk, chunk) {
        let p = params(s, q, k, v, keep, c);
        gpu.dispatch(
            &key,
            &p,
            &[q.buf, k.buf, v.buf, keep_buf, o, lse, &state],
            grid_1d(invocations, WG),
        );
    }
    Ok(())
}

/// Fused backward from the forward's `o` and `lse`: given dO (B, H, Tq, D, contiguous from 0),
/// writes dq (B, H, Tq, D) and dk, dv (B, H, Tk, D), all contiguous from element 0 and
/// overwritten (not accumulated). `variant` and `chunk` as in [`forward`].
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    s: &AttnShape,
    variant: AttnVariant,
    q: At,
    k: At,
    v: At,
    keep: Option<At>,
    o: &GpuBuffer,
    lse: &GpuBuffer,
    dout: &GpuBuffer,
    (dq, dk, dv): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    chunk: usize,
) -> Result<()> {
    let d = s.d as u32;
    let prep = KernelKey::new("attention/backward_prep.wgsl", "attn_bwd_prep")
        .with("WG", WG)
        .with("D", d);
    let block = uses_block(variant, s, q, k, v);
    let (file, eq, ekv) = if block {
        (
            "attention/backward_block.wgsl",
            "attn_bwd_dq_block",
            "attn_bwd_dkdv_block",
        )
    } else {
        ("attention/backward.wgsl", "attn_bwd_dq", "attn_bwd_dkdv")
    };
    let kq = KernelKey::new(file, eq).with("WG", WG).with("D", d);
    let kkv = KernelKey::new(file, ekv).with("WG", WG).with("D", d);
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    check(
        &kkv,
        s,
        &[
            ("q", q.buf, q.offset + rows * s.d),
            ("k", k.buf, k.offset + krows * s.d),
            ("v", v.buf, v.offset + krows * s.d),
            ("o", o, rows * s.d),
            ("lse", lse, rows),
            ("dout", dout, rows * s.d),
            ("dq", dq, rows * s.d),
            ("dk", dk, krows * s.d),
            ("dv", dv, krows * s.d),
        ],
    )?;
    let dummy;
    let keep_buf = match keep {
        Some(m) => m.buf,
        None => {
            dummy = gpu.alloc(4, "attention: no key mask")?;
            &dummy
        }
    };
    let chunk = chunk_for(block, s.d, chunk);
    let (qinv, kinv) = if block {
        (
            s.batch * s.heads * s.tq.div_ceil(4),
            s.batch * s.heads * s.tk.div_ceil(4),
        )
    } else {
        (rows, krows)
    };
    let stats = gpu.alloc(8 * rows.max(1) as u64, "attention (lse, dO . O) rows")?;
    if rows > 0 {
        let p = params(s, q, k, v, keep, (0, 0, 0));
        gpu.dispatch(&prep, &p, &[dout, o, lse, &stats], grid_1d(rows, WG));
        for c in chunks(s.tk, chunk) {
            let p = params(s, q, k, v, keep, c);
            gpu.dispatch(
                &kq,
                &p,
                &[q.buf, k.buf, v.buf, keep_buf, dout, &stats, dq],
                grid_1d(qinv, WG),
            );
        }
    }
    if krows > 0 {
        for c in chunks(s.tq, chunk) {
            let p = params(s, q, k, v, keep, c);
            gpu.dispatch(
                &kkv,
                &p,
                &[q.buf, k.buf, v.buf, keep_buf, dout, &stats, dk, dv],
                grid_1d(kinv, WG),
            );
        }
    }
    Ok(())
}
