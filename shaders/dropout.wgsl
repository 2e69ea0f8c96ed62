// Counter-based random numbers (Philox4x32-10) and the dropout mask drawn from them.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
// generator behind cuRAND and PyTorch's CUDA dropout) maps a 128-bit counter and a 64-bit key to
// 128 random bits with ten rounds of
//
//   (hi0, lo0) = M0 * c0        (hi1, lo1) = M1 * c2          (32 x 32 -> 64-bit products)
//   c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
//   k = (k0 + W0, k1 + W1)      (between rounds)
//
// with M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85. It is a pure function of
// (key, counter): no state, so any element can be drawn by any invocation, in any order, and the
// CPU twin (kernels/src/reference/dropout.rs) gives the same bits.
//
// Element i of a stream uses word (i % 4) of philox(counter = (ctr0 + i / 4, ctr1, ctr2, ctr3),
// key = (key_lo, key_hi)). One invocation computes one counter and writes its four elements.
//
//   bits:         out_bits[i] = word i                                       (u32)
//   dropout_mask: out_mask[i] = word i < threshold ? 0 : scale               (f32)
//                 with threshold = floor(p * 2^32) and scale = 1 / (1 - p), so P(drop) = p.
//
// Bindings: 0 params; 1 the output, contiguous (numel).
// WGSL has no 32 x 32 -> 64-bit multiply: `mulhilo` builds the high word from 16-bit halves.

// #include common/grid.wgsl

struct RandomParams {
    numel: u32,      // elements to write
    threshold: u32,  // dropout_mask: drop where word < threshold
    scale: f32,      // dropout_mask: value of a kept element, 1 / (1 - p)
    _pad0: u32,
    key_lo: u32,     // Philox key (k0, k1)
    key_hi: u32,
    ctr0: u32,       // counter of element i: (ctr0 + i / 4, ctr1, ctr2, ctr3)
    ctr1: u32,
    ctr2: u32,
    ctr3: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: RandomParams;
@group(0) @binding(1) var<storage, read_write> out_bits: array<u32>;  // (numel), bits
@group(0) @binding(1) var<storage, read_write> out_mask: array<f32>;  // (numel), dropout_mask

// The 64-bit product a * b as (high word, low word).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let ll = a0 * b0;
    let lh = a0 * b1;
    let hl = a1 * b0;
    // Bits 16..47 of the product, before the carry into the high word (< 3 * 2^16).
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = a1 * b1 + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    // Ten rounds, unrolled by hand: no loop counts toward llvmpipe's iteration limit.
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    c = philox_round(c, k); k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    return philox_round(c, k);
}

fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    return vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
}

// The four words of counter block q (elements 4q .. 4q + 3).
fn block(q: u32) -> vec4<u32> {
    let counter = vec4<u32>(P.ctr0 + q, P.ctr1, P.ctr2, P.ctr3);
    return philox4x32_10(counter, vec2<u32>(P.key_lo, P.key_hi));
}

@compute @workgroup_size(256)
fn bits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = grid_index(gid, nwg, WG);
    let first = q * 4u;
    if (first >= P.numel) { return; }
    let w = block(q);
    for (var j = 0u; j < 4u; j++) {
        if (first + j < P.numel) { out_bits[first + j] = w[j]; }
    }
}

@compute @workgroup_size(256)
fn dropout_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let q = grid_index(gid, nwg, WG);
    let first = q * 4u;
    if (first >= P.numel) { return; }
    let w = block(q);
    for (var j = 0u; j < 4u; j++) {
        if (first + j < P.numel) {
            out_mask[first + j] = select(P.scale, 0.0, w[j] < P.threshold);
        }
    }
}
