// Support counting for frequent itemsets (Apriori), over a vertical bitset layout.
//
// Each item has a bitset over the n transactions: bit t of item i is set when transaction t
// holds item i, stored as `words = ceil(n / 32)` u32 words per item (bits past n are 0). The
// support count of a candidate itemset {i_1, ..., i_len} is
//   count = sum_w popcount(bits[i_1, w] & bits[i_2, w] & ... & bits[i_len, w]).
//
// Entry point:
//   support:  one workgroup of 64 per candidate; invocation t walks words word0 + t, + 64, ...
//             below word1, ANDs the candidate's len bitsets and popcounts; the workgroup adds
//             its invocations' counts (integer atomics on workgroup memory: exact, and the
//             total does not depend on the order). For word0 = 0 the total is stored, for a
//             later range of words it is added to the stored count (the launcher splits the
//             words into ranges that keep each invocation's loop under Mesa llvmpipe's
//             65,535 iterations; the ranges run in dispatch order).
//
// Buffers: bits (items, words) u32; cand (candidates, len) u32 item indices; count (candidates).

struct ItemsetsParams {
    candidates: u32,  // candidates in this dispatch
    len: u32,         // items per candidate (>= 1)
    words: u32,       // u32 words per item bitset (the row stride of bits)
    word0: u32,       // first word of this dispatch's range
    word1: u32,       // one past its last word
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> P: ItemsetsParams;
@group(0) @binding(1) var<storage, read> bits: array<u32>;            // (items, words)
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
    for (var w = P.word0 + lid.x; w < P.word1; w += WG) {
        var acc = bits[cand[base] * P.words + w];
        for (var j = 1u; j < P.len; j++) {
            acc &= bits[cand[base + j] * P.words + w];
        }
        n += countOneBits(acc);
    }
    atomicAdd(&total, n);
    workgroupBarrier();
    if (lid.x == 0u) {
        let t = atomicLoad(&total);
        if (P.word0 == 0u) {
            count[c] = t;
        } else {
            count[c] += t;
        }
    }
}
