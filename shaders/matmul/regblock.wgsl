// Matmul rungs 3 (register-blocked, elem = f32) and 6 (f16 operands, elem = f16):
// C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// Improves on tiled by keeping data in registers instead of workgroup memory, with no barriers:
// each invocation computes a BM x BN (4 x 4) block of C. Per step of p it loads a column of 4
// A values and a row of 4 B values and does 16 multiply-adds into 4 vec4 accumulators, so each
// loaded value is used 4 times (naive uses it once) and nothing waits for the rest of the
// workgroup. On a CPU driver (lavapipe) barriers split the shader into resumable pieces; this
// rung avoids them entirely. A workgroup covers (WG_Y * BM) x (WG_X * BN) outputs.
//
// With elem = f16 (the f16 rung, adapter feature SHADER_F16), A and B are stored as f16 (half
// the bytes of f32, so half the memory traffic per value) and widened to f32 as they are loaded;
// products are summed in f32 and C is written in f32, so the only rounding beyond the f32 rungs
// is that of the operands themselves (the caller narrows C to f16 if it wants f16 output).
//
// Edges: indices are clamped into the matrix, so the loads never branch; the block's rows and
// columns outside C are computed from repeated data and simply not stored.
//
//   a: (batch, M, K) elem, strided    b: (batch, K, N) elem, strided
//   c: (batch, M, N) f32, rows contiguous
//   grid: (ceil(N / (WG_X * BN)), ceil(M / (WG_Y * BM)), batch)

// #type elem = f32
// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a: array<elem>;       // (batch, M, K), strided
@group(0) @binding(2) var<storage, read> b: array<elem>;       // (batch, K, N), strided
// Binding 3, C (f32), and store_c are in common/matmul.wgsl.

const BM: u32 = 4u;         // rows of C per invocation (the 4 accumulators)
const BN: u32 = 4u;         // columns of C per invocation (the vec4 width)
override WG_X: u32 = 16u;   // invocations along N per workgroup
override WG_Y: u32 = 16u;   // invocations along M per workgroup

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = gid.z;
    let i0 = gid.y * BM;   // first row of this block
    let j0 = gid.x * BN;   // first column
    if (i0 >= P.m || j0 >= P.n) { return; }
    // Start of A rows i0..i0+3 and B columns j0..j0+3, clamped into the matrix.
    var ra = a_rows4(z, i0);
    var cb = b_cols4(z, j0);
    var acc0 = vec4<f32>(0.0);   // C[i0 + 0, j0 .. j0 + 3]
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var p = 0u; p < P.k; p++) {
        let bv = vec4<f32>(vec4<elem>(b[cb.x], b[cb.y], b[cb.z], b[cb.w]));
        let av = vec4<f32>(vec4<elem>(a[ra.x], a[ra.y], a[ra.z], a[ra.w]));
        acc0 = fma(vec4<f32>(av.x), bv, acc0);
        acc1 = fma(vec4<f32>(av.y), bv, acc1);
        acc2 = fma(vec4<f32>(av.z), bv, acc2);
        acc3 = fma(vec4<f32>(av.w), bv, acc3);
        ra += vec4<u32>(P.a_col);
        cb += vec4<u32>(P.b_row);
    }
    store_block4(z, i0, j0, acc0, acc1, acc2, acc3);
}
