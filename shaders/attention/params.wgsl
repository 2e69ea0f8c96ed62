// Shared by the attention kernels: the params struct, the head-size constant and the masks.
//
// Layout: q, dO, O (B, H, Tq, D); k, v (B, H, Tk, D); keep (B, Tk) of 1.0 / 0.0; L (B, H, Tq).
// Every tensor is contiguous; the offsets below are in elements.

struct AttnParams {
    bh: u32,        // B * H
    heads: u32,     // H
    tq: u32,        // Tq, queries per head
    tk: u32,        // Tk, keys per head
    scale: f32,     // multiplier of q . k
    causal: u32,    // 1: query i sees keys j <= i + Tk - Tq
    has_mask: u32,  // 1: keep (B, Tk) masks keys
    c0: u32,        // first key (forward, dQ) or query (dK, dV) of this dispatch's chunk
    c1: u32,        // end of that chunk (exclusive)
    first: u32,     // 1: the first chunk (start the running state)
    last: u32,      // 1: the last chunk (finish the output)
    q_off: u32,     // element offset of q[0, 0, 0, 0]
    k_off: u32,     // element offset of k[0, 0, 0, 0]
    v_off: u32,     // element offset of v[0, 0, 0, 0]
    m_off: u32,     // element offset of keep[0, 0]
    _pad: u32,
}

// D, the head size (a pipeline constant, so the per-row loops have a fixed trip count).
override D: u32 = 64u;
// Longest head size the per-invocation arrays hold; the launcher refuses D above it.
const MAX_D: u32 = 128u;

@group(0) @binding(0) var<uniform> p: AttnParams;

// End (exclusive) of the keys query i may see: all Tk, or i + Tk - Tq + 1 clamped to [0, Tk].
fn key_end(i: u32) -> u32 {
    if (p.causal == 0u) {
        return p.tk;
    }
    return u32(clamp(i32(i) + i32(p.tk) - i32(p.tq) + 1, 0, i32(p.tk)));
}

// The rows work item t owns, in a grid that gives each of the B H heads ceil(n / size) runs of
// `size` rows (n = Tq for query rows, Tk for key rows): head `bh`, its batch `b`, first row `r0`;
// `ok` is false for an item past the last head (t >= B H ceil(n / size)).
struct Owned {
    bh: u32,
    b: u32,
    r0: u32,
    ok: bool,
}

fn owned_rows(t: u32, n: u32, size: u32) -> Owned {
    let runs = (n + size - 1u) / size;
    let bh = t / runs;
    return Owned(bh, bh / p.heads, (t % runs) * size, bh < p.bh);
}

// First query that may see key j: 0, or j + Tq - Tk clamped to [0, Tq].
fn query_start(j: u32) -> u32 {
    if (p.causal == 0u) {
        return 0u;
    }
    return u32(clamp(i32(j) + i32(p.tq) - i32(p.tk), 0, i32(p.tq)));
}
