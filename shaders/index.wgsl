// Indexing along one dim, and its gradient (a scatter-add).
//
// Every tensor is viewed as (O, D, I) around the indexed dim: O = product of the dims before it,
// D = its size, I = product of the dims after it. The output and its gradient g are (O, J, I).
//
//   GATHER = false (index_select):  out[o, j, i] = x[o, idx[j], i]           idx: (J)
//   GATHER = true  (gather):        out[o, j, i] = x[o, idx[o, j, i], i]     idx: (O, J, I)
//
// Backward adds into gx (O, D, I), which the caller zeroes first (or which holds a gradient to
// add to):
//   gx[o, idx[..j..], i] += g[o, j, i]      for j = 0, 1, ..., J-1, in that order.
//
// WGSL has no float atomics, and float addition is not associative, so the order of the adds is
// part of the result. Both scatter entries make it deterministic and race-free: every element of
// gx is written by exactly one invocation, which adds its terms in increasing j.
//   scatter_column: one invocation per (o, i) column; it walks j and adds g[o, j, i] into
//                   gx[o, idx, i]. Only it touches column (o, :, i). Work O*J*I.
//   scatter_pull:   one invocation per gx element (o, d, i); it walks every j and adds the terms
//                   whose index is d. Work O*D*J*I: the naive rung, kept as a cross-check.
// Both start from the value already in gx and add the same terms in the same order, so they agree
// bit for bit with each other, with a sequential f32 loop on the CPU, and with every other run.
//
// The scatter's loop over j is cut into dispatches of at most 16,384 terms ([j_begin, j_end)):
// Mesa's llvmpipe ends an invocation's loops after 65,535 iterations, and each dispatch starts
// from the gx the previous one left, so the order of the adds (and every bit) is unchanged.
//
// Out-of-range indices (>= D) never touch memory out of bounds: the forward writes 0 for that
// element and the scatter skips the term. The host does not check indices (that would need a
// device sync).
//
// The forward moves 32-bit words (`array<u32>`), so it serves f32, i32 and u32 alike (0u is 0.0).

// #include common/grid.wgsl

struct IndexParams {
    outer: u32,       // O
    d: u32,           // D: size of the indexed dim of x and gx
    inner: u32,       // I
    j: u32,           // J: size of the indexed dim of out, g (and of idx)
    src_offset: u32,  // element offset of src[0, 0, 0] (x in the forward, g in the scatter)
    src_so: u32,      // src strides over (O, D or J, I), in elements
    src_sm: u32,
    src_si: u32,
    idx_offset: u32,  // element offset of idx[0]; idx is contiguous
    dst_offset: u32,  // element offset of dst[0, 0, 0] (out or gx); dst is contiguous
    j_begin: u32,     // scatter: this dispatch adds the terms j_begin <= j < j_end
    j_end: u32,
}

override GATHER: bool = false;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: IndexParams;
@group(0) @binding(2) var<storage, read> idx: array<u32>;          // (J) or (O, J, I)

// forward
@group(0) @binding(1) var<storage, read> x: array<u32>;            // (O, D, I), strided, 32-bit words
@group(0) @binding(3) var<storage, read_write> out: array<u32>;    // (O, J, I)

// scatter_*
@group(0) @binding(1) var<storage, read> g: array<f32>;            // (O, J, I), strided
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;     // (O, D, I)

// The index used by output element (o, j, i).
fn index_at(o: u32, j: u32, i: u32) -> u32 {
    if (GATHER) {
        return idx[P.idx_offset + (o * P.j + j) * P.inner + i];
    }
    return idx[P.idx_offset + j];
}

// Element offset of src[o, m, i].
fn src_at(o: u32, m: u32, i: u32) -> u32 {
    return P.src_offset + o * P.src_so + m * P.src_sm + i * P.src_si;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.outer * P.j * P.inner) { return; }
    let i = t % P.inner;
    let j = (t / P.inner) % P.j;
    let o = t / (P.inner * P.j);
    let k = index_at(o, j, i);
    var v = 0u;
    if (k < P.d) {
        v = x[src_at(o, k, i)];
    }
    out[P.dst_offset + t] = v;
}

@compute @workgroup_size(256)
fn scatter_column(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.outer * P.inner) { return; }
    let i = t % P.inner;
    let o = t / P.inner;
    for (var j = P.j_begin; j < P.j_end; j++) {
        let k = index_at(o, j, i);
        if (k < P.d) {
            let w = P.dst_offset + (o * P.d + k) * P.inner + i;
            gx[w] = gx[w] + g[src_at(o, j, i)];
        }
    }
}

@compute @workgroup_size(256)
fn scatter_pull(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.outer * P.d * P.inner) { return; }
    let i = t % P.inner;
    let k = (t / P.inner) % P.d;
    let o = t / (P.inner * P.d);
    var acc = gx[P.dst_offset + t];
    for (var j = P.j_begin; j < P.j_end; j++) {
        if (index_at(o, j, i) == k) {
            acc = acc + g[src_at(o, j, i)];
        }
    }
    gx[P.dst_offset + t] = acc;
}
