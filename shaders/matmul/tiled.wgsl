// Matmul rung 2, tiled: C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// Improves on naive by sharing loads: a TILE x TILE workgroup computes a TILE x TILE block of C,
// stepping through K one TILE at a time. Each step the workgroup copies a TILE x TILE tile of A and
// one of B into workgroup memory (one element each per invocation), waits at a barrier, and every
// invocation reads its row / column from there. Global loads drop by a factor of TILE; the price
// is two barriers per step (cheap on GPUs, costly on CPU drivers such as lavapipe).
//
// Edges: loads are clamped into the matrices; rows of B past K are zeroed (so the clamped repeats
// of A's last column add nothing) and outputs outside C are not written, so any M, N, K works
// without padding.
//
//   a: (batch, M, K) strided    b: (batch, K, N) strided    c: (batch, M, N), rows contiguous
//   grid: (ceil(N / TILE), ceil(M / TILE), batch)

// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a: array<f32>;        // (batch, M, K), strided
@group(0) @binding(2) var<storage, read> b: array<f32>;        // (batch, K, N), strided
// Binding 3, C, and store_c are in common/matmul.wgsl.

override TILE: u32 = 16u;   // workgroup is TILE x TILE; tiles are TILE x TILE

var<workgroup> ta: array<f32, TILE * TILE>;   // ta[r * TILE + q] = A[z, i0 + r, p0 + q]
var<workgroup> tb: array<f32, TILE * TILE>;   // tb[q * TILE + s] = B[z, p0 + q, j0 + s]

@compute @workgroup_size(TILE, TILE, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z;
    let i = wid.y * TILE + lid.y;   // output row of this invocation
    let j = wid.x * TILE + lid.x;   // output column
    let a_base = P.a_off + z * P.a_batch;
    let b_base = P.b_off + z * P.b_batch;
    // Clamped indices keep every load inside the matrices.
    let ic = min(i, P.m - 1u);
    let jc = min(j, P.n - 1u);
    var acc = 0.0;
    for (var p0 = 0u; p0 < P.k; p0 += TILE) {
        let pa = p0 + lid.x;   // column of A this invocation loads
        let pb = p0 + lid.y;   // row of B this invocation loads
        let va = a[a_base + ic * P.a_row + min(pa, P.k - 1u) * P.a_col];
        let vb = b[b_base + min(pb, P.k - 1u) * P.b_row + jc * P.b_col];
        ta[lid.y * TILE + lid.x] = va;
        tb[lid.y * TILE + lid.x] = select(0.0, vb, pb < P.k);
        workgroupBarrier();
        for (var q = 0u; q < TILE; q++) {
            acc = fma(ta[lid.y * TILE + q], tb[q * TILE + lid.x], acc);
        }
        workgroupBarrier();
    }
    if (i < P.m && j < P.n) {
        store_c(P.c_off + z * P.c_batch + i * P.c_row + j, acc);
    }
}
