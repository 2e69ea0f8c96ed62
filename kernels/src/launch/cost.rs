//! The work of one captured dispatch, from its params block and key (for `kiln explain`).
//!
//! The launchers record their `#[repr(C)]` params; this reads them back per family and counts
//! FLOPs (a multiply-add is 2) and bytes moved (each operand read once, each output written
//! once, 4 bytes an element, 2 for f16 operands):
//!
//! | family | FLOPs | bytes |
//! |---|---|---|
//! | matmul (batch, M, N, K) | `2 batch M N K` | `batch (M K + K N + M N)` elements (+ `M N` when C accumulates) |
//! | conv2d, each pass | `2 N C_out OH OW (C_in / groups) KH KW` | input + weight + output |
//! | attention forward, keys `c0..c1` | `4 BH Tq (c1 - c0) D` (`QK^T`, then `P V`) | q, o once, k and v of the chunk |
//! | attention dQ pass | `6 BH Tq (c1 - c0) D` (`QK^T`, `dO V^T`, `dS K`) | q, dO, dq, k and v of the chunk |
//! | attention dK dV pass, queries `c0..c1` | `8 BH (c1 - c0) Tk D` (`QK^T`, `dO V^T`, `P^T dO`, `dS^T Q`) | k, v, dk, dv, q and dO of the chunk |
//! | elementwise | one per output element | operands + output |
//! | optim: Adam (`adam`, `adam4`) on n values | `12 n` | p, g, m, v read; p, m, v written (`7 n`) |
//! | optim: SGD (`sgd`, `sgd_momentum`) on n values | `2 n`, `4 n` with momentum | p, g (+ buf) read; p (+ buf) written |
//!
//! Causal masks are not discounted (the kernels skip masked tiles, so causal attention does
//! about half the counted work). Other families have no model (`None`): `kiln explain` shows
//! their bytes bound instead.

use crate::capture::{Cost, DispatchRecord};
use crate::launch::attention::AttnParams;
use crate::launch::conv::ConvParams;
use crate::launch::elementwise::ElementwiseParams;
use crate::launch::matmul::MatmulParams;

fn read<P: bytemuck::Pod>(r: &DispatchRecord) -> Option<P> {
    let n = std::mem::size_of::<P>();
    (r.params.len() >= n).then(|| bytemuck::pod_read_unaligned(&r.params[..n]))
}

fn constant(r: &DispatchRecord, name: &str) -> Option<u64> {
    r.constants
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v as u64)
}

/// FLOPs and bytes of `r` where its family has a model (see the module notes).
pub fn of(r: &DispatchRecord) -> Option<Cost> {
    let family = r.shader.split('/').next().unwrap_or("");
    match family {
        "matmul" => matmul(r),
        "conv" => conv(r),
        "attention" => attention(r),
        "elementwise" => elementwise(r),
        "optim.wgsl" => optim(r),
        _ => None,
    }
}

/// `2 batch M N K` FLOPs for a product of (batch, M, K) by (batch, K, N).
pub fn matmul_flops(batch: u64, m: u64, n: u64, k: u64) -> u64 {
    2 * batch * m * n * k
}

fn matmul(r: &DispatchRecord) -> Option<Cost> {
    let p: MatmulParams = read(r)?;
    let (b, m, n, k) = (p.batch as u64, p.m as u64, p.n as u64, p.k as u64);
    let ab = if r.label.contains("f16") || r.shader.contains("coop") {
        2
    } else {
        4
    };
    let c = 4 * b * m * n * (1 + u64::from(p.accumulate));
    Some(Cost {
        flops: matmul_flops(b, m, n, k),
        bytes: ab * b * (m * k + k * n) + c,
    })
}

/// `2 N C_out OH OW (C_in / groups) KH KW`: the multiply-adds of one conv pass (forward, grad
/// input and grad weight do the same products).
pub fn conv_flops(p: &ConvParams) -> u64 {
    let per_out = (p.c_in / p.groups.max(1)) as u64 * p.kh as u64 * p.kw as u64;
    2 * p.n as u64 * p.c_out as u64 * p.oh as u64 * p.ow as u64 * per_out
}

fn conv(r: &DispatchRecord) -> Option<Cost> {
    let p: ConvParams = read(r)?;
    let x = p.n as u64 * p.c_in as u64 * p.h as u64 * p.w as u64;
    let w = p.c_out as u64 * (p.c_in / p.groups.max(1)) as u64 * p.kh as u64 * p.kw as u64;
    let y = p.n as u64 * p.c_out as u64 * p.oh as u64 * p.ow as u64;
    Some(Cost {
        flops: conv_flops(&p),
        bytes: 4 * (x + w + y),
    })
}

/// FLOPs of one attention dispatch (`entry`, the sizes of its params, head dim `d`): see the
/// module notes.
pub fn attention_flops(entry: &str, p: &AttnParams, d: u64) -> u64 {
    let (bh, tq, tk) = (p.bh as u64, p.tq as u64, p.tk as u64);
    let chunk = p.c1.saturating_sub(p.c0) as u64;
    if entry.starts_with("attn_fwd") {
        4 * bh * tq * chunk * d
    } else if entry.starts_with("attn_bwd_dq") {
        6 * bh * tq * chunk * d
    } else if entry.starts_with("attn_bwd_dkdv") {
        8 * bh * chunk * tk * d
    } else {
        // attn_bwd_prep: dO . O per row.
        2 * bh * tq * d
    }
}

fn attention(r: &DispatchRecord) -> Option<Cost> {
    let p: AttnParams = read(r)?;
    let d = constant(r, "D")?;
    let (bh, tq, tk) = (p.bh as u64, p.tq as u64, p.tk as u64);
    let chunk = p.c1.saturating_sub(p.c0) as u64;
    let elems = if r.entry.starts_with("attn_fwd") {
        bh * d * (2 * tq + 2 * chunk) + bh * tq
    } else if r.entry.starts_with("attn_bwd_dq") {
        bh * d * (3 * tq + 2 * chunk)
    } else if r.entry.starts_with("attn_bwd_dkdv") {
        bh * d * (4 * tk + 2 * chunk)
    } else {
        bh * tq * (2 * d + 2)
    };
    Some(Cost {
        flops: attention_flops(r.entry, &p, d),
        bytes: 4 * elems,
    })
}

fn elementwise(r: &DispatchRecord) -> Option<Cost> {
    let p: ElementwiseParams = read(r)?;
    let n = p.numel as u64;
    let operands = match (r.shader, r.entry) {
        ("elementwise/fill.wgsl", _) => 1,
        ("elementwise/where.wgsl", _) => 4,
        ("elementwise/binary.wgsl", _) => 3,
        (_, "backward") => 3,
        _ => 2,
    };
    Some(Cost {
        flops: n,
        bytes: 4 * n * operands,
    })
}

fn optim(r: &DispatchRecord) -> Option<Cost> {
    // Every optimizer params struct starts with the element count `n`.
    let n = read::<u32>(r)? as u64;
    let (flops, elems) = match r.entry {
        "adam" | "adam4" => (12 * n, 7 * n),
        "sgd" => (2 * n, 3 * n),
        "sgd_momentum" => (4 * n, 5 * n),
        _ => return None,
    };
    Some(Cost {
        flops,
        bytes: 4 * elems,
    })
}
