//! The work of one captured dispatch, from its params block and key (for `kiln explain`).
//!
//! The launchers record their `#[repr(C)]` params; this reads them back per family and counts
//! FLOPs (a multiply-add is 2; integer work, index arithmetic and comparisons done to pick an
//! element are not FLOPs) and bytes moved (each operand read once, each output written once, 4
//! bytes an element, 2 for f16 operands). Sizes: R rows of length L (or D, or C classes), E
//! elements, `planes = N C`.
//!
//! | family | FLOPs | bytes |
//! |---|---|---|
//! | matmul (batch, M, N, K) | `2 batch M N K` | `batch (M K + K N + M N)` elements (+ `M N` when C accumulates) |
//! | conv2d, each pass | `2 N C_out OH OW (C_in / groups) KH KW` | input + weight + output |
//! | attention forward, keys `c0..c1` | `4 BH P D`, P = the (query, key) pairs of the chunk a query sees | q, o, lse once, k and v of the chunk |
//! | attention dQ pass | `6 BH P D` (`QK^T`, `dO V^T`, `dS K`) | q, dO, dq, k and v of the chunk |
//! | attention dK dV pass, queries `c0..c1` | `8 BH P D` (`QK^T`, `dO V^T`, `P^T dO`, `dS^T Q`) | k, v, dk, dv, q and dO of the chunk |
//! | attention prep (`dO . O`) | `2 BH Tq D` | dO, O, the row sums and lse |
//! | elementwise | one per output element | operands + output |
//! | reduce (`rows_*`, `arg_*`) on (R, L) | `R L` (one combine each; the mean's scale rides on the sum) | `R L + R` |
//! | softmax, log-softmax (`MODE` 0, 1) on (R, C) | `5 R C` (max, subtract, exp, sum, normalise) | `2 R C` |
//! | log-sum-exp (`MODE` 2) on (R, C) | `4 R C` | `R C + R` |
//! | cross_entropy forward on (N, C) | `4 N C + N` (online max and sum of exp, then `lse - x_t`) | `N C` + targets, loss, lse (`3 N`) |
//! | cross_entropy backward | `4 N C` (`x - lse`, exp, minus the one-hot, times `g scale`) | `2 N C` + targets, lse, g (`3 N`, g once when shared) |
//! | LayerNorm forward (R, D) | `8 R D` (mean 1, variance 3, normalise 2, affine 2) | x, y (`2 R D`), w, b (`2 D`), stats (`2 R`) |
//! | RMSNorm forward | `4 R D` (square-sum 2, scale 2) | x, y, w, stats |
//! | LayerNorm backward | `11 R D` (xhat 2, `g w` 1, two row sums 3, dx 4, `g xhat` 1) | x, g, dx, gxh (`4 R D`), w, stats |
//! | RMSNorm backward | `8 R D` (xhat 1, `g w` 1, one row sum 2, dx 3, `g xhat` 1) | as LayerNorm's |
//! | batch_norm (E = N C HW) `center_sq` / `forward` / `grad_xhat` | `2 E` / `4 E` / `3 E` | `2 E` / `2 E` / `3 E` + the channel rows read (`C` / `4 C` / `2 C`) |
//! | batch_norm `backward_dx`, training / eval | `7 E` / `2 E` | `3 E + 5 C` / `2 E + 2 C` |
//! | batch_norm `stats` / `stats_update` (C channels) | `2 C` / `9 C` | `2 C` / `7 C` (mean, var, running mean and var read; invstd, running mean and var written) |
//! | bias_gelu forward (R, N) | `8 R N` (bias 1, GELU 7: cube 2, polynomial 2, tanh or erf 1, `1 +` 1, `z/2 ·` 1) | x, y (`2 R N`), b (`N`) |
//! | bias_gelu backward | `16 R N` (bias 1, GELU' 14, times g 1) | x, g, dz (`3 R N`), b |
//! | dropout `bits`, `dropout_mask` on E | 0 (Philox is integer work; the mask is a select) | the output (`E`) |
//! | max pool forward (`max_forward*`) | `planes OH OW KH KW` (one compare per window element) | x, y and argmax (`planes (H W + 2 OH OW)`) |
//! | max pool backward (`max_backward*`) | `planes OH OW` (each output gradient added once) | g, argmax, gx |
//! | avg pool forward / backward | `planes OH OW (KH KW + 1)` / `planes OH OW KH KW` | x and y |
//! | adaptive avg pool forward / backward, A = window area summed over outputs | `planes (A + OH OW)` / `planes A` | x and y |
//! | index forward (gather, index_select) on (O, J, I) | 0: a copy | x read and out written (`2 O J I`) + idx (`J`, gather `O J I`) |
//! | index `scatter_column`, terms `j0..j1` (Jc of them) | `O Jc I` adds | g (`O Jc I`), gx read and written per term (`2 O Jc I`), idx |
//! | index `scatter_pull` | `O Jc I` adds | g and idx read per gx element (`2 O D Jc I`), gx read and written (`2 O D I`) |
//! | optim: Adam (`adam`, `adam4`) on n values | `12 n` | p, g, m, v read; p, m, v written (`7 n`) |
//! | optim: SGD (`sgd`, `sgd_momentum`) on n values | `2 n`, `4 n` with momentum | p, g (+ buf) read; p (+ buf) written |
//! | optim: 8-bit Adam (`adam8bit`) on n values | `18 n` (Adam 12, dequantise 2, requantise 2, block absmax 2) | p read and written (`8 n`), g (`4 n`), codes read and written (`4 n`, a byte each), block scales (`16 blocks`), code book (2 KiB) |
//! | nf4 forward / grad-input, reduction chunk `red_len` | `2 M N red_len`, N = out (forward) or in (grad-input) | input rows, W at 4 bits a value (block scales not counted), output (twice when it accumulates) |
//! | nf4 `dequantize_nf4` (out, in) | `out in` | W at 4 bits, the f32 matrix |
//!
//! Causal attention counts only the pairs a query sees: query `i` sees key `j` when
//! `j <= i + Tk - Tq` (end-aligned), so a whole causal self-attention (Tq = Tk = T) does
//! `4 BH D T (T + 1) / 2` FLOPs forward, a little over half the full `4 BH D T^2`; the padding
//! mask is not discounted. The kernels skip masked tiles, so the bytes stay those of the
//! operands. Families without a model (`rnn`, `cluster`, `itemsets`, `outlier`, the bench
//! probes) give `None`: `kiln explain` shows `-` for them.

use crate::capture::{Cost, DispatchRecord};
use crate::launch::attention::AttnParams;
use crate::launch::batch_norm::BatchNormParams;
use crate::launch::bias_gelu::BiasGeluParams;
use crate::launch::conv::ConvParams;
use crate::launch::cross_entropy::CrossEntropyParams;
use crate::launch::dropout::RandomParams;
use crate::launch::elementwise::ElementwiseParams;
use crate::launch::index::IndexParams;
use crate::launch::matmul::MatmulParams;
use crate::launch::nf4::Nf4Params;
use crate::launch::norm::NormParams;
use crate::launch::optim::q8_blocks;
use crate::launch::pool::{PoolParams, adaptive_window};
use crate::launch::reduce::RowsParams;

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
        "optim.wgsl" | "optim8bit.wgsl" => optim(r),
        "reduce.wgsl" => reduce(r),
        "softmax.wgsl" => softmax(r),
        "cross_entropy.wgsl" => cross_entropy(r),
        "norm.wgsl" => norm(r),
        "batch_norm.wgsl" => batch_norm(r),
        "bias_gelu.wgsl" => bias_gelu(r),
        "dropout.wgsl" => dropout(r),
        "pool.wgsl" => pool(r),
        "index.wgsl" => index(r),
        "nf4" => nf4(r),
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

/// The (query, key) pairs of one attention dispatch that its queries see: every pair of the
/// chunk, or under the causal mask only `j <= i + Tk - Tq` (see the module notes). `keys`: the
/// chunk `c0..c1` runs over keys (forward, dQ), else over queries (dK dV).
pub fn attention_pairs(p: &AttnParams, keys: bool) -> u64 {
    let (tq, tk) = (p.tq as i64, p.tk as i64);
    let chunk = (p.c0 as i64)..(p.c1 as i64);
    match (p.causal != 0, keys) {
        (false, true) => (tq * chunk.count() as i64) as u64,
        (false, false) => (tk * chunk.count() as i64) as u64,
        // Key j is seen by the queries i >= j + Tq - Tk.
        (true, true) => chunk
            .map(|j| (tq - (j + tq - tk).max(0)).max(0))
            .sum::<i64>() as u64,
        // Query i sees the keys j <= i + Tk - Tq.
        (true, false) => chunk.map(|i| (i + tk - tq + 1).clamp(0, tk)).sum::<i64>() as u64,
    }
}

/// FLOPs of one attention dispatch (`entry`, the sizes of its params, head dim `d`): see the
/// module notes.
pub fn attention_flops(entry: &str, p: &AttnParams, d: u64) -> u64 {
    let bh = p.bh as u64;
    if entry.starts_with("attn_fwd") {
        4 * bh * attention_pairs(p, true) * d
    } else if entry.starts_with("attn_bwd_dq") {
        6 * bh * attention_pairs(p, true) * d
    } else if entry.starts_with("attn_bwd_dkdv") {
        8 * bh * attention_pairs(p, false) * d
    } else {
        // attn_bwd_prep: dO . O per row.
        2 * bh * p.tq as u64 * d
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
        "adam8bit" => {
            let blocks = q8_blocks(n as usize) as u64;
            return Some(Cost {
                flops: 18 * n,
                bytes: 16 * n + 16 * blocks + 4 * 512,
            });
        }
        _ => return None,
    };
    Some(Cost {
        flops,
        bytes: 4 * elems,
    })
}

/// A cost of `flops` and `elems` 4-byte elements.
fn f32s(flops: u64, elems: u64) -> Option<Cost> {
    Some(Cost {
        flops,
        bytes: 4 * elems,
    })
}

fn reduce(r: &DispatchRecord) -> Option<Cost> {
    let p: RowsParams = read(r)?;
    let (rows, len) = (p.rows as u64, p.len as u64);
    f32s(rows * len, rows * len + rows)
}

fn softmax(r: &DispatchRecord) -> Option<Cost> {
    let p: RowsParams = read(r)?;
    let e = p.rows as u64 * p.len as u64;
    match constant(r, "MODE")? {
        2 => f32s(4 * e, e + p.rows as u64),
        _ => f32s(5 * e, 2 * e),
    }
}

fn cross_entropy(r: &DispatchRecord) -> Option<Cost> {
    let p: CrossEntropyParams = read(r)?;
    let (n, e) = (p.rows as u64, p.rows as u64 * p.classes as u64);
    if r.entry == "backward" {
        let g = if p.g_stride == 0 { 1 } else { n };
        f32s(4 * e, 2 * e + 2 * n + g)
    } else {
        f32s(4 * e + n, e + 3 * n)
    }
}

fn norm(r: &DispatchRecord) -> Option<Cost> {
    let p: NormParams = read(r)?;
    let (rows, d) = (p.rows as u64, p.d as u64);
    let e = rows * d;
    match r.entry {
        "ln_forward" => f32s(8 * e, 2 * e + 2 * d + 2 * rows),
        "rms_forward" => f32s(4 * e, 2 * e + d + 2 * rows),
        "ln_backward" => f32s(11 * e, 4 * e + d + 2 * rows),
        "rms_backward" => f32s(8 * e, 4 * e + d + 2 * rows),
        _ => None,
    }
}

fn batch_norm(r: &DispatchRecord) -> Option<Cost> {
    let p: BatchNormParams = read(r)?;
    let c = p.c as u64;
    let e = p.n as u64 * c * p.hw as u64;
    match r.entry {
        "stats" => f32s(2 * c, 2 * c),
        "stats_update" => f32s(9 * c, 7 * c),
        "center_sq" => f32s(2 * e, 2 * e + c),
        "forward" => f32s(4 * e, 2 * e + 4 * c),
        "grad_xhat" => f32s(3 * e, 3 * e + 2 * c),
        "backward_dx" if constant(r, "TRAINING")? != 0 => f32s(7 * e, 3 * e + 5 * c),
        "backward_dx" => f32s(2 * e, 2 * e + 2 * c),
        _ => None,
    }
}

fn bias_gelu(r: &DispatchRecord) -> Option<Cost> {
    let p: BiasGeluParams = read(r)?;
    let (n, e) = (p.n as u64, p.len as u64);
    match r.entry {
        "forward" => f32s(8 * e, 2 * e + n),
        _ => f32s(16 * e, 3 * e + n),
    }
}

fn dropout(r: &DispatchRecord) -> Option<Cost> {
    let p: RandomParams = read(r)?;
    f32s(0, p.numel as u64)
}

/// Window elements summed over the outputs of one plane of an adaptive pool.
pub fn adaptive_area(p: &PoolParams) -> u64 {
    let span = |len: u32, o_len: u32| -> u64 {
        (0..o_len as usize)
            .map(|o| {
                let (a, b) = adaptive_window(o, len as usize, o_len as usize);
                (b - a) as u64
            })
            .sum()
    };
    span(p.h, p.oh) * span(p.w, p.ow)
}

fn pool(r: &DispatchRecord) -> Option<Cost> {
    let p: PoolParams = read(r)?;
    let planes = p.planes as u64;
    let (x, y) = (
        planes * p.h as u64 * p.w as u64,
        planes * p.oh as u64 * p.ow as u64,
    );
    let window = (p.kh * p.kw) as u64;
    match r.entry {
        e if e.starts_with("max_forward") => f32s(y * window, x + 2 * y),
        e if e.starts_with("max_backward") => f32s(y, x + 2 * y),
        "avg_forward" => f32s(y * (window + 1), x + y),
        "avg_backward" => f32s(y * window, x + y),
        "adaptive_forward" => f32s(planes * adaptive_area(&p) + y, x + y),
        "adaptive_backward" => f32s(planes * adaptive_area(&p), x + y),
        _ => None,
    }
}

fn index(r: &DispatchRecord) -> Option<Cost> {
    let p: IndexParams = read(r)?;
    let gather = constant(r, "GATHER")? != 0;
    let (o, d, i) = (p.outer as u64, p.d as u64, p.inner as u64);
    let j = if r.entry == "forward" {
        p.j as u64
    } else {
        p.j_end.saturating_sub(p.j_begin) as u64
    };
    let idx = if gather { o * j * i } else { j };
    match r.entry {
        "forward" => f32s(0, 2 * o * j * i + idx),
        "scatter_column" => f32s(o * j * i, 3 * o * j * i + idx),
        "scatter_pull" => f32s(o * j * i, 2 * o * d * j * i + 2 * o * d * i),
        _ => None,
    }
}

fn nf4(r: &DispatchRecord) -> Option<Cost> {
    let p: Nf4Params = read(r)?;
    let (out, inp) = (p.out_f as u64, p.in_f as u64);
    if r.entry == "dequantize_nf4" {
        return Some(Cost {
            flops: out * inp,
            bytes: out * inp / 2 + 4 * out * inp,
        });
    }
    // The pass as a dense product: write n columns, reduce over red_len of the k.
    let (m, red) = (p.rows as u64, p.red_len as u64);
    let n = if r.entry.contains("grad_input") {
        inp
    } else {
        out
    };
    let y = m * n * (1 + u64::from(p.accumulate));
    Some(Cost {
        flops: 2 * m * n * red,
        bytes: 4 * (m * red + y) + n * red / 2,
    })
}
