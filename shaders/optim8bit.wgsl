// 8-bit Adam / AdamW (Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization): the
// two moments live as one byte per value, block-wise dynamically quantised, and one fused
// dispatch per parameter tensor dequantises them, runs the AdamW update of optim.wgsl:adam in f32
// and requantises. One workgroup of 256 invocations per block of 2048 values (the paper's block
// size), 8 consecutive values (two words of codes) per invocation:
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
// kiln_kernels::reference::optim::q8_code (signed then unsigned), read from their storage buffer
// (on lavapipe a copy into workgroup memory measured slower); "nearest" is a binary search (8
// reads) for the last entry <= x, then the closer of it
// and the next (ties to the lower), exactly as the CPU twin.
//
// Bindings (p, grad: f32 at element offsets; codes: u32 words, four codes each, low byte first,
// at word offsets; scales: f32 at an element offset):
//   0 A (uniform)   1 p (n) rw   2 grad (n)   3 mq (ceil(n / 4)) rw   4 vq (ceil(n / 4)) rw
//   5 scales (2 * ceil(n / 2048)) rw: absmax of m per block, then absmax of v per block
//   6 code (512): the signed then the unsigned code book
// Codes past n in the last word are written as padding (signed 0 = code 127, unsigned code 0).
//
// 8 values per invocation: a workgroup per 2048 values pays the absmax reduction's barriers once
// per 2048 values (the two-level reduction needs 2 barriers, not 8). On lavapipe the kernel is
// bound by the two binary searches per value (dependent gathers): about 0.6 us per value on 2
// shared cores against 0.05 for the f32 Adam kernel (BENCHMARKS.md); on a GPU both are
// memory-bound and the 8-bit one moves 16 bytes per value against 28.

struct Adam8bitParams {
    a: AdamParams,      // common/adam.wgsl; m_off and v_off are word offsets of the codes
    s_off: u32,         // element offset of scales[0]
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const BLOCK: u32 = 2048u;      // values per block (one scale per moment)
const PER_INV: u32 = 8u;       // values per invocation: BLOCK / 256, two words of codes
const SIGNED_ZERO: u32 = 127u;

@group(0) @binding(0) var<uniform> Q: Adam8bitParams;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> mq: array<u32>;
@group(0) @binding(4) var<storage, read_write> vq: array<u32>;
@group(0) @binding(5) var<storage, read_write> scales: array<f32>;
@group(0) @binding(6) var<storage, read> code: array<f32>;

var<workgroup> red_m: array<f32, 256>;    // max |m| reduction
var<workgroup> red_v: array<f32, 256>;    // max v reduction
var<workgroup> top_m: array<f32, 16>;     // its second level
var<workgroup> top_v: array<f32, 16>;

// #include common/adam.wgsl

// Index of the entry of code[base .. base + 256] nearest to x.
fn nearest(base: u32, x: f32) -> u32 {
    var lo = 0u;
    for (var step = 128u; step > 0u; step = step >> 1u) {
        if (code[base + lo + step] <= x) {
            lo = lo + step;
        }
    }
    if (lo < 255u && code[base + lo + 1u] - x < x - code[base + lo]) {
        lo = lo + 1u;
    }
    return lo;
}

// Code i of the tensor's first / second moment (byte i % 4 of its word i / 4).
fn code_m(i: u32) -> u32 {
    return (mq[Q.a.m_off + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

fn code_v(i: u32) -> u32 {
    return (vq[Q.a.v_off + i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

@compute @workgroup_size(256)
fn adam8bit(@builtin(local_invocation_index) lid: u32,
            @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let A = Q.a;
    let blk = wid.x + wid.y * nwg.x;
    let nb = (A.n + BLOCK - 1u) / BLOCK;
    if (blk >= nb) { return; }
    let i0 = blk * BLOCK + lid * PER_INV;    // this invocation's first value
    let am_old = scales[Q.s_off + blk];
    let av_old = scales[Q.s_off + nb + blk];
    var ms: array<f32, PER_INV>;
    var vs: array<f32, PER_INV>;
    var mmax = 0.0;
    var vmax = 0.0;
    for (var j = 0u; j < PER_INV; j = j + 1u) {
        let i = i0 + j;
        ms[j] = 0.0;
        vs[j] = 0.0;
        if (i < A.n) {
            let m_old = code[code_m(i)] * am_old;
            let v_old = code[256u + code_v(i)] * av_old;
            let r = adam_element(A, p[A.p_off + i], grad[A.g_off + i], m_old, v_old);
            p[A.p_off + i] = r.x;
            let m_new = r.y;
            let v_new = r.z;
            ms[j] = m_new;
            vs[j] = v_new;
            mmax = max(mmax, abs(m_new));
            vmax = max(vmax, v_new);
        }
    }
    // Block absmax in two levels (3 barriers, not log2(256) = 8: see the note at the top):
    // 16 invocations each fold 16 partial maxima, then every invocation folds those 16.
    red_m[lid] = mmax;
    red_v[lid] = vmax;
    workgroupBarrier();
    if (lid < 16u) {
        var a = 0.0;
        var b = 0.0;
        for (var k = 0u; k < 16u; k = k + 1u) {
            a = max(a, red_m[lid * 16u + k]);
            b = max(b, red_v[lid * 16u + k]);
        }
        top_m[lid] = a;
        top_v[lid] = b;
    }
    workgroupBarrier();
    var am = 0.0;
    var av = 0.0;
    for (var k = 0u; k < 16u; k = k + 1u) {
        am = max(am, top_m[k]);
        av = max(av, top_v[k]);
    }
    // Requantise and pack: value i0 + j is byte j % 4 of word (i0 + j) / 4.
    var wm = array<u32, 2>(0u, 0u);
    var wv = array<u32, 2>(0u, 0u);
    for (var j = 0u; j < PER_INV; j = j + 1u) {
        var cm = SIGNED_ZERO;
        var cv = 0u;
        if (i0 + j < A.n) {
            var x = 0.0;
            var y = 0.0;
            if (am > 0.0) { x = ms[j] / am; }
            if (av > 0.0) { y = vs[j] / av; }
            cm = nearest(0u, x);
            cv = nearest(256u, y);
            if (cv == 0u && vs[j] > 0.0) { cv = 1u; }
        }
        wm[j / 4u] = wm[j / 4u] | (cm << (8u * (j % 4u)));
        wv[j / 4u] = wv[j / 4u] | (cv << (8u * (j % 4u)));
    }
    for (var k = 0u; k < PER_INV / 4u; k = k + 1u) {
        let w = i0 / 4u + k;
        if (w * 4u < A.n) {
            mq[A.m_off + w] = wm[k];
            vq[A.v_off + w] = wv[k];
        }
    }
    if (lid == 0u) {
        scales[Q.s_off + blk] = am;
        scales[Q.s_off + nb + blk] = av;
    }
}
