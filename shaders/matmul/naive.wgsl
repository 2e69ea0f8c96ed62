// Matmul rung 1, naive: C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// One invocation per output element; each runs the whole K-long dot product straight from global
// memory, so every A and B element is loaded M or N times. The baseline the other rungs beat.
//
//   a: (batch, M, K) strided    b: (batch, K, N) strided    c: (batch, M, N), rows contiguous
//   grid: (ceil(N / WG_X), ceil(M / WG_Y), batch)

// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a: array<f32>;        // (batch, M, K), strided
@group(0) @binding(2) var<storage, read> b: array<f32>;        // (batch, K, N), strided
// Binding 3, C, and store_c are in common/matmul.wgsl.

override WG_X: u32 = 16u;   // invocations along N per workgroup
override WG_Y: u32 = 16u;   // invocations along M per workgroup

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    let z = gid.z;
    if (i >= P.m || j >= P.n) { return; }
    var ia = P.a_off + z * P.a_batch + i * P.a_row;   // walks A[z, i, :]
    var ib = P.b_off + z * P.b_batch + j * P.b_col;   // walks B[z, :, j]
    var acc = 0.0;
    for (var p = 0u; p < P.k; p++) {
        acc = fma(a[ia], b[ib], acc);
        ia += P.a_col;
        ib += P.b_row;
    }
    store_c(P.c_off + z * P.c_batch + i * P.c_row + j, acc);
}
