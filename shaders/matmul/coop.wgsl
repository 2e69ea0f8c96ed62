// Matmul rung 7, cooperative matrix: C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// Hands the 16 x 16 x 16 multiply-add to the hardware's matrix units (tensor cores, simdgroup
// matrices) through wgpu's experimental cooperative-matrix extension: coop_mat16x16<f16> operands
// and a coop_mat16x16<f32> accumulator, so products are summed in f32. A cooperative matrix
// belongs to a whole subgroup, so a workgroup is one subgroup (WG must equal the subgroup size)
// and computes one 16 x 16 tile of C. Per step of 16 in K the workgroup stages the 16 x 16 tiles
// of A and B in workgroup memory as f16 (this is where strides, transposes and edges are handled:
// values outside the matrices are zero), loads them as cooperative matrices and accumulates. At
// the end the accumulator goes through workgroup memory to C, storing only in-bounds elements.
// Needs EXPERIMENTAL_COOPERATIVE_MATRIX and SHADER_F16.
//
//   a: (batch, M, K) f16, strided    b: (batch, K, N) f16, strided    c: (batch, M, N) f32
//   grid: (ceil(N / 16), ceil(M / 16), batch)

enable f16;
enable wgpu_cooperative_matrix;

// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a: array<f16>;        // (batch, M, K), strided
@group(0) @binding(2) var<storage, read> b: array<f16>;        // (batch, K, N), strided
// Binding 3, C, and store_c are in common/matmul.wgsl.

const T: u32 = 16u;         // tile edge (the cooperative matrix size)
override WG: u32 = 32u;     // invocations per workgroup = the subgroup size

var<workgroup> ta: array<f16, 256>;   // ta[r * T + q] = A[z, i0 + r, p0 + q], row-major
var<workgroup> tb: array<f16, 256>;   // tb[q * T + s] = B[z, p0 + q, j0 + s], row-major
var<workgroup> tc: array<f32, 256>;   // the finished C tile, row-major

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let z = wid.z;
    let i0 = wid.y * T;
    let j0 = wid.x * T;
    let a_base = P.a_off + z * P.a_batch;
    let b_base = P.b_off + z * P.b_batch;
    var acc = coop_mat16x16<f32, C>();
    for (var p0 = 0u; p0 < P.k; p0 += T) {
        for (var e = lid; e < T * T; e += WG) {
            let r = e / T;
            let q = e % T;
            let i = i0 + r;    // A[i, pa] goes to ta[e]
            let pa = p0 + q;
            let pb = p0 + r;   // B[pb, j] goes to tb[e]
            let j = j0 + q;
            var va = 0.0h;
            if (i < P.m && pa < P.k) { va = a[a_base + i * P.a_row + pa * P.a_col]; }
            var vb = 0.0h;
            if (pb < P.k && j < P.n) { vb = b[b_base + pb * P.b_row + j * P.b_col]; }
            ta[e] = va;
            tb[e] = vb;
        }
        workgroupBarrier();
        let ma = coopLoadT<coop_mat16x16<f16, A>>(&ta[0], T);
        let mb = coopLoadT<coop_mat16x16<f16, B>>(&tb[0], T);
        acc = coopMultiplyAdd(ma, mb, acc);
        workgroupBarrier();
    }
    coopStoreT(acc, &tc[0], T);
    workgroupBarrier();
    for (var e = lid; e < T * T; e += WG) {
        let i = i0 + e / T;
        let j = j0 + e % T;
        if (i < P.m && j < P.n) {
            store_c(P.c_off + z * P.c_batch + i * P.c_row + j, tc[e]);
        }
    }
}
