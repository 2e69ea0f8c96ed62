// Support counting for frequent itemsets (Apriori), over a vertical bitset layout.
//
// Each item has a bitset over the n transactions: bit t of item i is set when transaction t
// holds item i, stored as `words = 4 ceil(n / 128)` u32 words per item (bits past n are 0), read
// here as `words / 4` vec4<u32> ("quads": 128 transactions per load). The
// support count of a candidate itemset {i_1, ..., i_len} is
//   count = sum_w popcount(bits[i_1, w] & bits[i_2, w] & ... & bits[i_len, w]).
//
// Entry point:
//   support:  one workgroup of 64 per candidate; invocation t walks quads quad0 + t, + 64, ...
//             below quad1, ANDs the candidate's len bitsets and popcounts; the workgroup adds
//             its invocations' counts (integer atomics on workgroup memory: exact, and the
//             total does not depend on the order). For quad0 = 0 the total is stored, for a
//             later range of quads it is added to the stored count (the launcher splits the
//             quads into ranges that keep each invocation's loops under Mesa llvmpipe's
//             65,535 iterations; the ranges run in dispatch order).
//
// Buffers: bits (items, quads) vec4<u32>; cand (candidates, len) u32 item indices;
// count (candidates) u32.

struct ItemsetsParams {
    candidates: u32,  // candidates in this dispatch
    len: u32,         // items per candidate (>= 1)
    quads: u32,       // vec4<u32> per item bitset (the row stride of bits)
    quad0: u32,       // first quad of this dispatch's range
    quad1: u32,       // one past its last quad
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> P: ItemsetsParams;
@group(0) @binding(1) var<storage, read> bits: array<vec4<u32>>;      // (items, quads)
@group(0) @binding(2) var<storage, read> cand: array<u32>;            // (candidates, len)
@group(0) @binding(3) var<storage, read_write> count: array<u32>;     // (candidates)

var<workgroup> total: atomic<u32>;

@compute @workgroup_size(64)
fn support(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;        // the candidate: uniform across the workgroup
    if (c >= P.candidates) { return; }
    if (lid.x == 0u) { atomicStore(&total, 0u); }
    workgroupBarrier();
    let base = c * P.len;
    var n = 0u;
    for (var q = P.quad0 + lid.x; q < P.quad1; q += WG) {
        var acc = bits[cand[base] * P.quads + q];
        for (var j = 1u; j < P.len; j++) {
            acc &= bits[cand[base + j] * P.quads + q];
        }
        let ones = countOneBits(acc);
        n += ones.x + ones.y + ones.z + ones.w;
    }
    atomicAdd(&total, n);
    workgroupBarrier();
    if (lid.x == 0u) {
        let t = atomicLoad(&total);
        if (P.quad0 == 0u) {
            count[c] = t;
        } else {
            count[c] += t;
        }
    }
}
