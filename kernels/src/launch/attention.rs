//! Launchers of the fused attention kernels (`shaders/attention/`): forward with the online
//! softmax, and the backward from the saved log-sum-exp rows.
//!
//! Every tensor is contiguous row-major: q, dO, O (B, H, Tq, D); k, v (B, H, Tk, D);
//! keep (B, Tk) f32 of 1.0 / 0.0; L (B, H, Tq). No float atomics: each invocation owns its output
//! rows and walks the other side serially. The row and block rungs have no workgroup barriers
//! (lavapipe pays about 15 us per barrier) and read the other side from global memory; the tiled
//! rung stages it in workgroup memory, two barriers per tile.
//!
//! | kernel | one invocation owns | walks |
//! | --- | --- | --- |
//! | `forward.wgsl` (rung [`AttnVariant::Row`]) | one query row | keys one at a time, scalar loads |
//! | `forward_block.wgsl` ([`AttnVariant::Block`]; default when Tq < 16) | 4 query rows | keys 4 at a time, vec4 loads |
//! | `forward_panel.wgsl` ([`AttnVariant::Panel`]; default when Tq >= 16) | 16 query rows | keys 32 at a time, the 16 x 32 scores in registers, O in place |
//! | `backward_prep.wgsl` | one query row: (L, dO . O) | D |
//! | `backward.wgsl` `attn_bwd_dq` (rung `Row`) | one query row of dQ | keys |
//! | `backward.wgsl` `attn_bwd_dkdv` (rung `Row`) | one key row of dK and dV | queries |
//! | `backward_block.wgsl` `attn_bwd_dq_block` (`Block`) | 4 query rows of dQ | keys 8 at a time, vec4 loads |
//! | `backward_block.wgsl` `attn_bwd_dkdv_block` (`Block`) | 4 key rows of dK, dV | queries 8 at a time, vec4 loads |
//! | `backward_panel.wgsl` `attn_bwd_dq_panel` (`Panel`) | 16 query rows of dQ | keys 16 at a time, S and dP blocks in registers |
//! | `backward_panel.wgsl` `attn_bwd_dkdv_panel` (`Panel`) | 16 key rows of dK, dV | queries 16 at a time, S and dP blocks in registers |
//! | `forward_tiled.wgsl` ([`AttnVariant::Tiled`]) | 4 query rows; a workgroup 4 WG rows | key tiles of BC rows staged in workgroup memory |
//! | `backward_tiled.wgsl` `attn_bwd_dq_tiled` (`Tiled`) | 4 query rows of dQ | key / value tiles in workgroup memory |
//! | `backward_tiled.wgsl` `attn_bwd_dkdv_tiled` (`Tiled`) | 4 key rows of dK, dV | query / dO tiles in workgroup memory |
//!
//! The `Tiled` rung is flash-attention proper: the rows a workgroup owns share every K / V (or
//! Q / dO) value it stages, at the price of two workgroup barriers per tile. Its tile sizes
//! ([`AttnTiles`]) and the rung itself are picked per adapter by measurement
//! ([`AttnVariant::Auto`], resolved by the op layer through [`crate::tune::attention_config`]).
//!
//! Mesa's lavapipe ends an invocation's loops after 65,535 iterations in total, silently. A row
//! visited costs `2 D + 1` loop iterations in the row kernels (at most `2 D / 4 + 9` per 4 rows in
//! the block kernels), so the walk is split into chunks of at most [`chunk_len`] /
//! [`chunk_len_block`] rows, one dispatch each, with the running state (forward: `(m, l)` and the
//! unnormalised output; backward: the gradients) carried in global memory between them.
//!
//! See also:
//! - shaders: `shaders/attention/`
//! - CPU twin: [`crate::reference::attention`]
//! - op: `src/ops/attention.rs`; tuner: [`crate::tune::attention_config`]
//! - tests: `kernels/tests/kernels/attention.rs` (every rung against the twin), the op's in
//!   `tests/ops/attention.rs`; benchmark: `benches/attention.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

mod config;
pub use config::{AttnConfig, AttnTiles, AttnVariant};

/// Invocations per workgroup (WGSL `override WG`).
pub const WG: u32 = 64;

/// Invocations per workgroup of the panel kernels (16 rows each).
pub const PANEL_WG: u32 = 16;

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

/// Check sizes against the kernels' limits and the buffers' capacities.
fn check(key: &KernelKey, s: &AttnShape, bufs: &[(&str, &GpuBuffer, usize)]) -> Result<()> {
    if s.d == 0 || s.d > MAX_D {
        return Err(KernelError::launch(
            key,
            format!("head size D = {} is outside 1..={MAX_D}", s.d),
        ));
    }
    let big = s.batch * s.heads * s.tq.max(s.tk) * s.d;
    if big > u32::MAX as usize / 2 {
        return Err(KernelError::launch(
            key,
            format!("{s:?} exceeds the u32 index range"),
        ));
    }
    for (name, buf, elems) in bufs {
        if (*elems as u64) * 4 > buf.capacity() {
            return Err(KernelError::launch(
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

/// The kernels one call runs, after the fallbacks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Row,
    Block,
    Tiled(AttnTiles),
    Panel,
}

/// The kernels `cfg` runs here: the vec4 rungs need D % 4 == 0 and q, k, v 16-byte aligned (else
/// `Row`); `Tiled` needs its tiles to fit the adapter (else `Block`). `Auto` here means `Block`
/// (the op layer resolves `Auto` with the tuner before launching).
fn kind(gpu: &Gpu, cfg: AttnConfig, s: &AttnShape, x: AttnInputs<'_>) -> Kind {
    let vec4 = s.d.is_multiple_of(4)
        && [x.q.offset, x.k.offset, x.v.offset]
            .iter()
            .all(|o| o.is_multiple_of(4));
    match cfg.variant {
        AttnVariant::Row => Kind::Row,
        _ if !vec4 => Kind::Row,
        AttnVariant::Tiled => cfg.tiles.fitted(gpu, s.d).map_or(Kind::Block, Kind::Tiled),
        AttnVariant::Auto | AttnVariant::Block => Kind::Block,
        AttnVariant::Panel => Kind::Panel,
    }
}

/// Most rows of the other side one invocation of the tiled kernels walks per dispatch, in whole
/// tiles: a tile costs its copy (`BC D / 4 / WG + BC / WG` loop iterations) and `BC / 4` steps of
/// at most `2 D / 4 + 12` iterations each, plus `8 D / 4 + 32` around the walk.
pub fn chunk_len_tiled(d: usize, tiles: AttnTiles) -> usize {
    let db = d.div_ceil(4);
    let (bc, wg) = (tiles.bc as usize, tiles.wg as usize);
    let per_tile = bc / 4 * (2 * db + 12) + (bc * db).div_ceil(wg) + bc.div_ceil(wg) + 4;
    bc * ((LOOP_BUDGET - 8 * db - 32) / per_tile).max(1)
}

/// Rows walked per dispatch: the request (0 = as many as the loop budget allows), capped by the
/// budget, in whole 4-row steps for the block kernels and whole tiles for the tiled ones.
fn chunk_for(kind: Kind, d: usize, chunk: usize) -> usize {
    let (limit, step) = match kind {
        Kind::Row => (chunk_len(d), 1),
        Kind::Block | Kind::Panel => (chunk_len_block(d), 4),
        Kind::Tiled(t) => (chunk_len_tiled(d, t), t.bc as usize),
    };
    let c = if chunk == 0 { limit } else { chunk.min(limit) };
    c.next_multiple_of(step).min(limit)
}

/// Specialise a key for `kind` at head size `d`.
fn specialise(key: KernelKey, kind: Kind, d: usize) -> KernelKey {
    match kind {
        Kind::Tiled(t) => key
            .with("WG", t.wg)
            .with("BC", t.bc)
            .with("TILE", t.tile_vec4s(d))
            .with("D", d as u32),
        Kind::Panel => key.with("WG", PANEL_WG).with("D", d as u32),
        _ => key.with("WG", WG).with("D", d as u32),
    }
}

/// Invocations of a dispatch owning `n` rows per head (4 per invocation in the vec4 rungs, whole
/// workgroups of 4 WG rows per head in the tiled ones).
fn invocations(kind: Kind, bh: usize, n: usize) -> (usize, u32) {
    match kind {
        Kind::Row => (bh * n, WG),
        Kind::Block => (bh * n.div_ceil(4), WG),
        Kind::Panel => (bh * n.div_ceil(16), PANEL_WG),
        Kind::Tiled(t) => {
            let wg = t.wg as usize;
            (bh * n.div_ceil(4 * wg) * wg, t.wg)
        }
    }
}

/// Params for chunk `[c0, c1)` of a walk of length `n`.
fn params(s: &AttnShape, x: AttnInputs<'_>, (c0, c1, n): (usize, usize, usize)) -> AttnParams {
    AttnParams {
        bh: (s.batch * s.heads) as u32,
        heads: s.heads as u32,
        tq: s.tq as u32,
        tk: s.tk as u32,
        scale: s.scale,
        causal: u32::from(s.causal),
        has_mask: u32::from(x.keep.is_some()),
        c0: c0 as u32,
        c1: c1 as u32,
        first: u32::from(c0 == 0),
        last: u32::from(c1 >= n),
        q_off: x.q.offset as u32,
        k_off: x.k.offset as u32,
        v_off: x.v.offset as u32,
        m_off: x.keep.map_or(0, |m| m.offset as u32),
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

/// The inputs of one attention call: q (B, H, Tq, D), k and v (B, H, Tk, D), each contiguous
/// from its offset, and the key mask keep (B, Tk) of 1.0 / 0.0, or none (every key kept).
#[derive(Debug, Clone, Copy)]
pub struct AttnInputs<'a> {
    /// Queries (B, H, Tq, D).
    pub q: Operand<'a>,
    /// Keys (B, H, Tk, D).
    pub k: Operand<'a>,
    /// Values (B, H, Tk, D).
    pub v: Operand<'a>,
    /// Key mask (B, Tk); none: every key is kept.
    pub keep: Option<Operand<'a>>,
}

impl<'a> AttnInputs<'a> {
    /// q, k and v with the elements they need at `s` (for [`check`]).
    fn needs(&self, s: &AttnShape) -> [(&'static str, &'a GpuBuffer, usize); 3] {
        let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
        [
            ("q", self.q.buf, self.q.offset + rows * s.d),
            ("k", self.k.buf, self.k.offset + krows * s.d),
            ("v", self.v.buf, self.v.offset + krows * s.d),
        ]
    }

    /// The mask's buffer; without a mask, a 4-byte stand-in put in `spare` (the kernels bind
    /// it but never read it).
    fn keep_buf<'b>(&self, gpu: &Gpu, spare: &'b mut Option<GpuBuffer>) -> Result<&'b GpuBuffer>
    where
        'a: 'b,
    {
        match self.keep {
            Some(m) => Ok(m.buf),
            None => Ok(spare.insert(gpu.alloc(4, "attention: no key mask")?)),
        }
    }
}

/// Fused forward with configuration `cfg` (rung and tile sizes; `Auto` runs `Block`, the op
/// layer resolves it first with [`crate::tune`]'s lookup): inputs `x` (q, k, v, keep) ->
/// `(o, lse)`, o (B, H, Tq, D) and lse (B, H, Tq), both contiguous from element 0 (a row with no
/// visible key gets O = 0 and L = -inf). `chunk` caps the keys per dispatch (0 = the loop
/// budget's [`chunk_len`] / [`chunk_len_block`] / [`chunk_len_tiled`]; tests use small values to
/// exercise the chunked path).
pub fn forward(
    gpu: &Gpu,
    s: &AttnShape,
    cfg: AttnConfig,
    x: AttnInputs<'_>,
    (o, lse): (&GpuBuffer, &GpuBuffer),
    chunk: usize,
) -> Result<()> {
    let kind = kind(gpu, cfg, s, x);
    let key = match kind {
        Kind::Row => KernelKey::new("attention/forward.wgsl", "attn_fwd"),
        Kind::Block => KernelKey::new("attention/forward_block.wgsl", "attn_fwd_block"),
        Kind::Tiled(_) => KernelKey::new("attention/forward_tiled.wgsl", "attn_fwd_tiled"),
        Kind::Panel => KernelKey::new("attention/forward_panel.wgsl", "attn_fwd_panel"),
    };
    let key = specialise(key, kind, s.d);
    let rows = s.batch * s.heads * s.tq;
    let outs = [("o", o, rows * s.d), ("lse", lse, rows)];
    check(&key, s, &[&x.needs(s)[..], &outs].concat())?;
    if rows == 0 {
        return Ok(());
    }
    let state = gpu.alloc(8 * rows as u64, "attention running (max, sum)")?;
    let mut spare = None;
    let keep_buf = x.keep_buf(gpu, &mut spare)?;
    let (invocations, wg) = invocations(kind, s.batch * s.heads, s.tq);
    let chunk = chunk_for(kind, s.d, chunk);
    for c in chunks(s.tk, chunk) {
        gpu.dispatch(
            &key,
            &params(s, x, c),
            &[x.q.buf, x.k.buf, x.v.buf, keep_buf, o, lse, &state],
            grid_1d(invocations, wg),
        );
    }
    Ok(())
}

/// Fused backward: given dO (B, H, Tq, D, contiguous from 0) and the forward's `(o, lse)`,
/// writes dq (B, H, Tq, D) and dk, dv (B, H, Tk, D), all contiguous from element 0 and
/// overwritten (not accumulated). `x`, `cfg` and `chunk` as in [`forward`].
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    s: &AttnShape,
    cfg: AttnConfig,
    x: AttnInputs<'_>,
    dout: &GpuBuffer,
    (o, lse): (&GpuBuffer, &GpuBuffer),
    (dq, dk, dv): (&GpuBuffer, &GpuBuffer, &GpuBuffer),
    chunk: usize,
) -> Result<()> {
    let prep = KernelKey::new("attention/backward_prep.wgsl", "attn_bwd_prep")
        .with("WG", WG)
        .with("D", s.d as u32);
    let kind = kind(gpu, cfg, s, x);
    let (file, eq, ekv) = match kind {
        Kind::Row => ("attention/backward.wgsl", "attn_bwd_dq", "attn_bwd_dkdv"),
        Kind::Block => (
            "attention/backward_block.wgsl",
            "attn_bwd_dq_block",
            "attn_bwd_dkdv_block",
        ),
        Kind::Panel => (
            "attention/backward_panel.wgsl",
            "attn_bwd_dq_panel",
            "attn_bwd_dkdv_panel",
        ),
        Kind::Tiled(_) => (
            "attention/backward_tiled.wgsl",
            "attn_bwd_dq_tiled",
            "attn_bwd_dkdv_tiled",
        ),
    };
    let kq = specialise(KernelKey::new(file, eq), kind, s.d);
    let kkv = specialise(KernelKey::new(file, ekv), kind, s.d);
    let (rows, krows) = (s.batch * s.heads * s.tq, s.batch * s.heads * s.tk);
    let rest = [
        ("o", o, rows * s.d),
        ("lse", lse, rows),
        ("dout", dout, rows * s.d),
        ("dq", dq, rows * s.d),
        ("dk", dk, krows * s.d),
        ("dv", dv, krows * s.d),
    ];
    check(&kkv, s, &[&x.needs(s)[..], &rest].concat())?;
    let mut spare = None;
    let keep_buf = x.keep_buf(gpu, &mut spare)?;
    let chunk = chunk_for(kind, s.d, chunk);
    let bh = s.batch * s.heads;
    let (qinv, qwg) = invocations(kind, bh, s.tq);
    let (kinv, kwg) = invocations(kind, bh, s.tk);
    let stats = gpu.alloc(8 * rows.max(1) as u64, "attention (lse, dO . O) rows")?;
    if rows > 0 {
        let p = params(s, x, (0, 0, 0));
        gpu.dispatch(&prep, &p, &[dout, o, lse, &stats], grid_1d(rows, WG));
        for c in chunks(s.tk, chunk) {
            gpu.dispatch(
                &kq,
                &params(s, x, c),
                &[x.q.buf, x.k.buf, x.v.buf, keep_buf, dout, &stats, dq],
                grid_1d(qinv, qwg),
            );
        }
    }
    if krows > 0 {
        for c in chunks(s.tq, chunk) {
            gpu.dispatch(
                &kkv,
                &params(s, x, c),
                &[x.q.buf, x.k.buf, x.v.buf, keep_buf, dout, &stats, dk, dv],
                grid_1d(kinv, kwg),
            );
        }
    }
    Ok(())
}
