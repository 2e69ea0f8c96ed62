// Params shared by every matmul rung: C[z] = A[z] @ B[z] for z in 0..batch.
//
// Operands are strided views (element offsets and strides), so a transposed operand is just
// swapped row/column strides and a broadcast batch is batch stride 0:
//
//   A (batch, M, K):  a[a_off + z * a_batch + i * a_row + p * a_col]
//   B (batch, K, N):  b[b_off + z * b_batch + p * b_row + j * b_col]
//   C (batch, M, N):  c[c_off + z * c_batch + i * c_row + j]          (unit column stride)
//
// Grid: x over column tiles of C, y over row tiles, z over the batch.
//
// The launcher splits K into chunks (lavapipe ends an invocation's loops after 65,535 iterations
// in total); chunks after the first run with `accumulate = 1` and add into C.

struct MatmulParams {
    batch: u32,     // number of matrices (grid z)
    m: u32,         // rows of A and C
    n: u32,         // columns of B and C
    k: u32,         // columns of A = rows of B
    a_off: u32,     // element offset of A[0, 0, 0]
    a_batch: u32,   // elements between A[z] and A[z + 1] (0 = broadcast)
    a_row: u32,     // elements between A[z, i] and A[z, i + 1]
    a_col: u32,     // elements between A[z, i, p] and A[z, i, p + 1]
    b_off: u32,     // element offset of B[0, 0, 0]
    b_batch: u32,   // elements between B[z] and B[z + 1] (0 = broadcast)
    b_row: u32,     // elements between B[z, p] and B[z, p + 1]
    b_col: u32,     // elements between B[z, p, j] and B[z, p, j + 1]
    c_off: u32,     // element offset of C[0, 0, 0]
    c_batch: u32,   // elements between C[z] and C[z + 1]
    c_row: u32,     // elements between C[z, i] and C[z, i + 1]
    accumulate: u32, // 0: C = A @ B;  1: C += A @ B (the launcher's later chunks of K)
}

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;  // (batch, M, N), rows contiguous
// Each rung declares its A and B bindings (1 and 2, and more if it needs them).

// Write one output element (or add to it when accumulating over chunks of K).
fn store_c(at: u32, v: f32) {
    if (P.accumulate != 0u) {
        c[at] += v;
    } else {
        c[at] = v;
    }
}

// Element offsets of A[z, i0 .. i0+3, 0] and B[z, 0, j0 .. j0+3], the rows / columns clamped
// into the matrix (the register-blocked rungs compute the repeats and never store them).
fn a_rows4(z: u32, i0: u32) -> vec4<u32> {
    let i = min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(P.m - 1u));
    return vec4<u32>(P.a_off + z * P.a_batch) + i * P.a_row;
}
fn b_cols4(z: u32, j0: u32) -> vec4<u32> {
    let j = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(P.n - 1u));
    return vec4<u32>(P.b_off + z * P.b_batch) + j * P.b_col;
}

// Store the in-bounds part of a 4 x 4 block: acc_r = C[z, i0 + r, j0 .. j0 + 3].
fn store_block4(z: u32, i0: u32, j0: u32, acc0: vec4<f32>, acc1: vec4<f32>, acc2: vec4<f32>,
                acc3: vec4<f32>) {
    let c_base = P.c_off + z * P.c_batch + j0;
    store_row4(c_base + i0 * P.c_row, i0, j0, acc0);
    store_row4(c_base + (i0 + 1u) * P.c_row, i0 + 1u, j0, acc1);
    store_row4(c_base + (i0 + 2u) * P.c_row, i0 + 2u, j0, acc2);
    store_row4(c_base + (i0 + 3u) * P.c_row, i0 + 3u, j0, acc3);
}

// The in-bounds part of one block row: C[i, j0 .. j0 + 3] = v, starting at element `at`.
fn store_row4(at: u32, i: u32, j0: u32, v: vec4<f32>) {
    if (i >= P.m) { return; }
    for (var s = 0u; s < 4u; s++) {
        if (j0 + s < P.n) { store_c(at + s, v[s]); }
    }
}
