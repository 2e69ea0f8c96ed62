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
