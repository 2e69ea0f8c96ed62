// Matmul rung 5, subgroup: C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// Improves on regblock by sharing A through the subgroup instead of loading it per invocation.
// Every invocation of a workgroup works on the same BM = 4 rows of C (only the columns differ),
// so every lane of a subgroup needs the same A values, however the driver maps invocations to
// lanes. Per chunk of S = subgroup_size steps of K, lane l loads the 4 values A[i0 .. i0+3, p0 + l]
// (one load per row instead of S), and then for each q < S every lane takes lane q's values with
// subgroupShuffle and does 16 multiply-adds with its own row of 4 B values. No workgroup memory,
// no barriers: only register exchanges inside a subgroup, which CPU drivers do in SIMD registers.
// A workgroup covers BM x (WG * BN) outputs.
//
// Edges: indices are clamped into the matrices, so every lane runs the same loops (subgroup
// operations need all lanes); columns past N and rows past M are computed but not stored. In the
// last chunk of K only q < K - p0 is used, the same bound on every lane.
//
//   a: (batch, M, K) strided    b: (batch, K, N) strided    c: (batch, M, N), rows contiguous
//   grid: (ceil(N / (WG * BN)), ceil(M / BM), batch)

// WGSL spells this `enable subgroups;`, but naga 30 rejects that directive as not yet implemented
// and accepts the subgroup builtins without it (the device must have wgpu's SUBGROUP feature).

// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a: array<f32>;        // (batch, M, K), strided
@group(0) @binding(2) var<storage, read> b: array<f32>;        // (batch, K, N), strided
// Binding 3, C, and store_c are in common/matmul.wgsl.

const BM: u32 = 4u;         // rows of C per workgroup (the 4 accumulators)
const BN: u32 = 4u;         // columns of C per invocation (the vec4 width)
override WG: u32 = 64u;     // invocations per workgroup, all along N

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_size) sg: u32) {
    let z = wid.z;
    let i0 = wid.y * BM;   // first row of the workgroup's block
    let j0 = gid.x * BN;   // first column of this invocation's block
    // Start of A rows i0..i0+3 (clamped), walked along K by this lane's chunk position.
    let ra = a_rows4(z, i0);
    var cb = b_cols4(z, j0);
    var acc0 = vec4<f32>(0.0);   // C[i0 + 0, j0 .. j0 + 3]
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var p0 = 0u; p0 < P.k; p0 += sg) {
        // This lane's share of the chunk: A[i0 .. i0+3, p0 + lane], as one vec4.
        let pa = min(p0 + lane, P.k - 1u) * P.a_col;
        let mine = vec4<f32>(a[ra.x + pa], a[ra.y + pa], a[ra.z + pa], a[ra.w + pa]);
        let steps = min(sg, P.k - p0);
        for (var q = 0u; q < steps; q++) {
            let av = subgroupShuffle(mine, q);   // A[i0 .. i0+3, p0 + q]
            let bv = vec4<f32>(b[cb.x], b[cb.y], b[cb.z], b[cb.w]);
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
            cb += vec4<u32>(P.b_row);
        }
    }
    if (j0 >= P.n) { return; }
    store_block4(z, i0, j0, acc0, acc1, acc2, acc3);
}
