// 8-bit Adam / AdamW (Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization): the
// two moments live as one byte per value, block-wise dynamically quantised, and one fused
// dispatch per parameter tensor dequantises them, runs the AdamW update of optim.wgsl:adam in f32
// and requantises. One workgroup per block of 256 values, one invocation per value:
//
//   m, v = code_s[cm] * absmax_m[blk], code_u[cv] * absmax_v[blk]     dequantise
//   p   = p * (1 - lr * wd)                     (AdamW only, DECOUPLED = 1)
//   g   = grad + wd * p                         (Adam only)
//   m   = b1 * m + (1 - b1) * g
//   v   = b2 * v + (1 - b2) * g^2
//   p   = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)             (fresh f32 moments)
//   absmax_m[blk], absmax_v[blk] = max |m|, max v over the block      (workgroup reduction)
//   cm, cv = nearest(code_s, m / absmax_m), nearest(code_u, v / absmax_v)
//
// with a positive v never stored as code 0 (it takes code 1, the smallest positive entry) and a
// block of zeros stored with scale 0. The code books are the two ascending 256-entry tables of
// kiln_kernels::reference::optim::q8_code (signed then unsigned), read once per workgroup into
// workgroup memory; "nearest" is a binary search for the last entry <= x, then the closer of it
// and the next (ties to the lower), exactly as the CPU twin.
//
// Bindings (p, grad: f32 at element offsets; codes: u32 words, four codes each, low byte first,
// at word offsets; scales: f32 at an element offset):
//   0 A (uniform)   1 p (n) rw   2 grad (n)   3 mq (ceil(n / 4)) rw   4 vq (ceil(n / 4)) rw
//   5 scales (2 * ceil(n / 256)) rw: absmax of m per block, then absmax of v per block
//   6 code (512): the signed then the unsigned code book
// Codes past n in the last word are written as padding (signed 0 = code 127, unsigned code 0).

struct Adam8bitParams {
    n: u32,             // elements of p and grad
    p_off: u32,         // element offset of p[0]
    g_off: u32,         // element offset of grad[0]
    m_off: u32,         // word offset of mq[0]
    v_off: u32,         // word offset of vq[0]
    s_off: u32,         // element offset of scales[0]
    lr: f32,            // learning rate
    beta1: f32,         // b1
    beta2: f32,         // b2
    eps: f32,           // added to the corrected sqrt(v)
    weight_decay: f32,  // wd (L2 for Adam, decoupled for AdamW)
    bc1: f32,           // 1 - b1^t
    bc2: f32,           // 1 - b2^t
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// 1 = decoupled weight decay (AdamW), 0 = L2 added to the gradient (Adam).
override DECOUPLED: u32 = 0u;
const BLOCK: u32 = 256u;
const SIGNED_ZERO: u32 = 127u;

@group(0) @binding(0) var<uniform> A: Adam8bitParams;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> mq: array<u32>;
@group(0) @binding(4) var<storage, read_write> vq: array<u32>;
@group(0) @binding(5) var<storage, read_write> scales: array<f32>;
@group(0) @binding(6) var<storage, read> code: array<f32>;

var<workgroup> book: array<f32, 512>;     // the code books
var<workgroup> red_m: array<f32, 256>;    // max |m| reduction
var<workgroup> red_v: array<f32, 256>;    // max v reduction
var<workgroup> qm: array<u32, 256>;       // the block's new codes of m
var<workgroup> qv: array<u32, 256>;       // and of v

// Index of the entry of book[base .. base + 256] nearest to x.
fn nearest(base: u32, x: f32) -> u32 {
    var lo = 0u;
    for (var step = 128u; step > 0u; step = step >> 1u) {
        if (book[base + lo + step] <= x) {
            lo = lo + step;
        }
    }
    if (lo < 255u && book[base + lo + 1u] - x < x - book[base + lo]) {
        lo = lo + 1u;
    }
    return lo;
}

// Code i of the tensor's first / second moment (byte i % 4 of its word i / 4).
fn code_m(i: u32) -> u32 {
    return (mq[A.m_off + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

fn code_v(i: u32) -> u32 {
    return (vq[A.v_off + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

@compute @workgroup_size(256)
fn adam8bit(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let blk = wid.x + wid.y * nwg.x;
    let nb = (A.n + BLOCK - 1u) / BLOCK;
    if (blk >= nb) { return; }
    book[lid] = code[lid];
    book[256u + lid] = code[256u + lid];
    workgroupBarrier();
    let i = blk * BLOCK + lid;
    let live = i < A.n;
    var m_new = 0.0;
    var v_new = 0.0;
    if (live) {
        let m_old = book[code_m(i)] * scales[A.s_off + blk];
        let v_old = book[256u + code_v(i)] * scales[A.s_off + nb + blk];
        var w = p[A.p_off + i];
        var g = grad[A.g_off + i];
        if (DECOUPLED == 1u) {
            w = w * (1.0 - A.lr * A.weight_decay);
        } else {
            g = g + A.weight_decay * w;
        }
        m_new = A.beta1 * m_old + (1.0 - A.beta1) * g;
        v_new = A.beta2 * v_old + (1.0 - A.beta2) * g * g;
        let denom = sqrt(v_new) / sqrt(A.bc2) + A.eps;
        p[A.p_off + i] = w - (A.lr / A.bc1) * (m_new / denom);
    }
    red_m[lid] = abs(m_new);
    red_v[lid] = v_new;
    workgroupBarrier();
    for (var s = BLOCK / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red_m[lid] = max(red_m[lid], red_m[lid + s]);
            red_v[lid] = max(red_v[lid], red_v[lid + s]);
        }
        workgroupBarrier();
    }
    let am = red_m[0];
    let av = red_v[0];
    var cm = SIGNED_ZERO;
    var cv = 0u;
    if (live) {
        var x = 0.0;
        var y = 0.0;
        if (am > 0.0) { x = m_new / am; }
        if (av > 0.0) { y = v_new / av; }
        cm = nearest(0u, x);
        cv = nearest(256u, y);
        if (cv == 0u && v_new > 0.0) { cv = 1u; }
    }
    qm[lid] = cm;
    qv[lid] = cv;
    workgroupBarrier();
    let w = blk * (BLOCK / 4u) + lid;   // word of the tensor's codes
    if (lid < BLOCK / 4u && w * 4u < A.n) {
        let j = lid * 4u;
        mq[A.m_off + w] = qm[j] | (qm[j + 1u] << 8u) | (qm[j + 2u] << 16u) | (qm[j + 3u] << 24u);
        vq[A.v_off + w] = qv[j] | (qv[j + 1u] << 8u) | (qv[j + 2u] << 16u) | (qv[j + 3u] << 24u);
    }
    if (lid == 0u) {
        scales[A.s_off + blk] = am;
        scales[A.s_off + nb + blk] = av;
    }
}
