// Matmul rung 4, vec4: C[z, i, j] = sum_p A[z, i, p] * B[z, p, j].
//
// Improves on regblock by loading fewer, wider values per multiply-add:
// 1. a bigger register block: each invocation computes BM x BN = 16 x 16 outputs (BM is an
//    override; 8 and 4 also work), held as a 4 x 4
//    grid of mat4x4 accumulators. Per step of 4 in K it loads a 16 x 4 slab of A and a 4 x 16 slab
//    of B (as 4 x 4 blocks) and does `acc += b_block * a_block` for every pair: 1024 multiply-adds
//    from 128 loaded values, 8 per value (regblock: 2);
// 2. 16-byte loads: an operand that is contiguous and 16-byte aligned along one of its two dims is
//    read as vec4 along that dim (A along K or along M, B along N or along K; the launcher picks
//    the mode from the strides), so one load brings 4 values. A transposed operand is just the
//    other mode: the 4 x 4 block is transposed in registers.
// On lavapipe every storage load from a per-invocation address is a loop over the SIMD lanes,
// so the number of load instructions sets the speed; this rung issues 16x fewer per FMA than
// regblock when both operands vectorise, and 4x fewer when neither does.
//
// Edges: rows and columns past M and N are clamped or read as harmless extra values that only
// feed outputs that are not stored. K runs in steps of 4; a remainder of 1..3 is one more step
// whose values past K are zeroed.
//
//   a4 / a1: (batch, M, K), the same buffer seen as vec4 and as f32
//   b4 / b1: (batch, K, N), likewise
//   c: (batch, M, N), rows contiguous (declared in common/matmul.wgsl)
//   bias: (N), added to every row of C when BIAS = 1 (nn::Linear's bias fused into the store;
//         the launcher binds A again when there is none)
//   grid: (ceil(N / (WG_X * BN)), ceil(M / (WG_Y * BM)), batch)

// #include common/matmul.wgsl

@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;       // A, modes 1 and 2
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;       // B, modes 1 and 2
@group(0) @binding(4) var<storage, read> a1: array<f32>;             // A again, element loads
@group(0) @binding(5) var<storage, read> b1: array<f32>;             // B again, element loads
@group(0) @binding(6) var<storage, read> bias: array<f32>;           // (N), read when BIAS = 1

// Rows of C per invocation: 16 (4 blocks of 4, the default), 8 or 4. Fewer rows mean fewer
// accumulators and more invocations, a tile choice the autotuner makes (`kernels/src/tune.rs`);
// the accumulator array stays 16 long (an override cannot size it) and the unused part is dead.
override BM: u32 = 16u;
const BN: u32 = 16u;        // columns of C per invocation (4 blocks of 4)
override WG_X: u32 = 8u;    // invocations along N per workgroup
override WG_Y: u32 = 4u;    // invocations along M per workgroup
// How A is read: 0 element by element (any strides); 1 vec4 along K (a_col = 1); 2 vec4 along M
// (a_row = 1). Modes 1 and 2 need the offset and the other strides to be multiples of 4.
override A_MODE: u32 = 0u;
// How B is read: 0 element by element; 1 vec4 along N (b_col = 1); 2 vec4 along K (b_row = 1).
override B_MODE: u32 = 0u;
// 1: C = bias + A @ B, with bias[j] added to column j (on the first chunk of K only: later
// chunks add into C). The launcher keeps C's offset a multiple of N, so a dispatch's first
// column is `c_off % c_row`.
override BIAS: u32 = 0u;

// A[z, i, p] element by element, clamped into the matrix (`base` = offset of A[z]).
fn a_at(base: u32, i: u32, p: u32) -> f32 {
    return a1[base + min(i, P.m - 1u) * P.a_row + min(p, P.k - 1u) * P.a_col];
}

// B[z, p, j] element by element, clamped into the matrix.
fn b_at(base: u32, p: u32, j: u32) -> f32 {
    return b1[base + min(p, P.k - 1u) * P.b_row + min(j, P.n - 1u) * P.b_col];
}

// The 4 x 4 block of A at rows i .. i+3 and columns p0 .. p0+3, as a mat4x4 whose column r is
// A[z, i + r, p0 .. p0+3]. With `tail`, columns at or past K are zeroed.
fn a_block(base: u32, i: u32, p0: u32, tail: bool) -> mat4x4<f32> {
    var m: mat4x4<f32>;
    if (A_MODE == 1u) {
        // Rows clamped into the matrix; a row's 4 values are one vec4.
        let mx = P.m - 1u;
        let q = p0 / 4u;
        m = mat4x4<f32>(
            a4[(base + min(i, mx) * P.a_row) / 4u + q],
            a4[(base + min(i + 1u, mx) * P.a_row) / 4u + q],
            a4[(base + min(i + 2u, mx) * P.a_row) / 4u + q],
            a4[(base + min(i + 3u, mx) * P.a_row) / 4u + q],
        );
    } else if (A_MODE == 2u) {
        // A vec4 is A[z, i .. i+3, p] (values past row M only feed rows that are not stored):
        // four of them are the block's columns, so transpose.
        let v = (base + i) / 4u;
        let s = P.a_col / 4u;
        m = transpose(mat4x4<f32>(
            a4[v + p0 * s],
            a4[v + (p0 + 1u) * s],
            a4[v + (p0 + 2u) * s],
            a4[v + (p0 + 3u) * s],
        ));
    } else {
        for (var r = 0u; r < 4u; r++) {
            m[r] = vec4<f32>(
                a_at(base, i + r, p0),
                a_at(base, i + r, p0 + 1u),
                a_at(base, i + r, p0 + 2u),
                a_at(base, i + r, p0 + 3u),
            );
        }
    }
    if (tail) {
        let keep = vec4<u32>(p0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(P.k);
        for (var r = 0u; r < 4u; r++) {
            m[r] = select(vec4<f32>(0.0), m[r], keep);
        }
    }
    return m;
}

// The 4 x 4 block of B at rows p0 .. p0+3 and columns j .. j+3, as a mat4x4 whose column q is
// B[z, p0 + q, j .. j+3]. With `tail`, rows at or past K are zeroed.
fn b_block(base: u32, j: u32, p0: u32, tail: bool) -> mat4x4<f32> {
    var m: mat4x4<f32>;
    if (B_MODE == 1u) {
        // A vec4 is B[z, p, j .. j+3] (values past column N only feed columns not stored).
        let v = (base + j) / 4u;
        let s = P.b_row / 4u;
        let kx = select(0xffffffffu, P.k - 1u, tail);   // keep tail rows inside the matrix
        m = mat4x4<f32>(
            b4[v + min(p0, kx) * s],
            b4[v + min(p0 + 1u, kx) * s],
            b4[v + min(p0 + 2u, kx) * s],
            b4[v + min(p0 + 3u, kx) * s],
        );
    } else if (B_MODE == 2u) {
        // A vec4 is B[z, p0 .. p0+3, j] (a column's 4 values): transpose.
        let nx = P.n - 1u;
        let q = (base + p0) / 4u;
        m = transpose(mat4x4<f32>(
            b4[q + min(j, nx) * P.b_col / 4u],
            b4[q + min(j + 1u, nx) * P.b_col / 4u],
            b4[q + min(j + 2u, nx) * P.b_col / 4u],
            b4[q + min(j + 3u, nx) * P.b_col / 4u],
        ));
    } else {
        for (var q = 0u; q < 4u; q++) {
            m[q] = vec4<f32>(
                b_at(base, p0 + q, j),
                b_at(base, p0 + q, j + 1u),
                b_at(base, p0 + q, j + 2u),
                b_at(base, p0 + q, j + 3u),
            );
        }
    }
    if (tail) {
        for (var q = 0u; q < 4u; q++) {
            m[q] = select(vec4<f32>(0.0), m[q], p0 + q < P.k);
        }
    }
    return m;
}

// acc[4 g + h] += B block h (y_h) * A block g (x_g), for the invocation's 4 row blocks and
// 4 column blocks.
// (mat * mat: column r of the product is sum_q B[p0 + q, cols] * A[row r, p0 + q].)
fn step(acc: ptr<function, array<mat4x4<f32>, 16>>, a_base: u32, b_base: u32, i0: u32, j0: u32,
        p0: u32, tail: bool) {
    let y0 = b_block(b_base, j0, p0, tail);
    let y1 = b_block(b_base, j0 + 4u, p0, tail);
    let y2 = b_block(b_base, j0 + 8u, p0, tail);
    let y3 = b_block(b_base, j0 + 12u, p0, tail);
    let x0 = a_block(a_base, i0, p0, tail);
    (*acc)[0] += y0 * x0;  (*acc)[1] += y1 * x0;  (*acc)[2] += y2 * x0;  (*acc)[3] += y3 * x0;
    if (BM > 4u) {
        let x1 = a_block(a_base, i0 + 4u, p0, tail);
        (*acc)[4] += y0 * x1;  (*acc)[5] += y1 * x1;  (*acc)[6] += y2 * x1;  (*acc)[7] += y3 * x1;
    }
    if (BM > 8u) {
        let x2 = a_block(a_base, i0 + 8u, p0, tail);
        let x3 = a_block(a_base, i0 + 12u, p0, tail);
        (*acc)[8] += y0 * x2;  (*acc)[9] += y1 * x2;  (*acc)[10] += y2 * x2; (*acc)[11] += y3 * x2;
        (*acc)[12] += y0 * x3; (*acc)[13] += y1 * x3; (*acc)[14] += y2 * x3; (*acc)[15] += y3 * x3;
    }
}

// Store the in-bounds part of one accumulator: column r of `v` is C[z, i + r, j .. j+3].
fn store_block(c_base: u32, i: u32, j: u32, v: mat4x4<f32>) {
    var add = vec4<f32>(0.0);
    if (BIAS == 1u && P.accumulate == 0u) {
        let col = P.c_off % P.c_row + j;
        let last = P.c_off % P.c_row + P.n - 1u;
        add = vec4<f32>(bias[min(col, last)], bias[min(col + 1u, last)],
                        bias[min(col + 2u, last)], bias[min(col + 3u, last)]);
    }
    for (var r = 0u; r < 4u; r++) {
        if (i + r < P.m) {
            let row = c_base + (i + r) * P.c_row;
            let vals = v[r] + add;
            for (var s = 0u; s < 4u; s++) {
                if (j + s < P.n) { store_c(row + j + s, vals[s]); }
            }
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let z = gid.z;
    let i0 = gid.y * BM;   // first row of this block
    let j0 = gid.x * BN;   // first column
    if (i0 >= P.m || j0 >= P.n) { return; }
    let a_base = P.a_off + z * P.a_batch;
    let b_base = P.b_off + z * P.b_batch;
    var acc: array<mat4x4<f32>, 16>;
    let k4 = P.k & ~3u;
    for (var p0 = 0u; p0 < k4; p0 += 4u) {
        step(&acc, a_base, b_base, i0, j0, p0, false);
    }
    if (k4 < P.k) {
        step(&acc, a_base, b_base, i0, j0, k4, true);
    }
    let c_base = P.c_off + z * P.c_batch;
    store_block(c_base, i0, j0, acc[0]);
    store_block(c_base, i0, j0 + 4u, acc[1]);
    store_block(c_base, i0, j0 + 8u, acc[2]);
    store_block(c_base, i0, j0 + 12u, acc[3]);
    if (BM <= 4u) { return; }
    store_block(c_base, i0 + 4u, j0, acc[4]);
    store_block(c_base, i0 + 4u, j0 + 4u, acc[5]);
    store_block(c_base, i0 + 4u, j0 + 8u, acc[6]);
    store_block(c_base, i0 + 4u, j0 + 12u, acc[7]);
    if (BM <= 8u) { return; }
    store_block(c_base, i0 + 8u, j0, acc[8]);
    store_block(c_base, i0 + 8u, j0 + 4u, acc[9]);
    store_block(c_base, i0 + 8u, j0 + 8u, acc[10]);
    store_block(c_base, i0 + 8u, j0 + 12u, acc[11]);
    store_block(c_base, i0 + 12u, j0, acc[12]);
    store_block(c_base, i0 + 12u, j0 + 4u, acc[13]);
    store_block(c_base, i0 + 12u, j0 + 8u, acc[14]);
    store_block(c_base, i0 + 12u, j0 + 12u, acc[15]);
}
