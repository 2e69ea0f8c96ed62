// Strided element addressing shared by every elementwise kernel.
//
// A tensor view is (offset, shape, strides) in *elements*. All operands of one elementwise kernel
// have been broadcast to the output shape on the host (a broadcast dim has stride 0), so one
// linear index i over the output shape gives every operand's element:
//
//   i = sum_k c_k * prod_{j>k} shape_j          (row-major coordinates c_k)
//   offset_x(i) = off_x + sum_k c_k * stride_x_k
//
// Up to 8 dims, packed as two vec4 per array (uniform arrays need a 16-byte element stride).

struct ElementwiseParams {
    rank: u32,              // number of dims in use (<= 8)
    numel: u32,             // prod(shape)
    off0: u32,              // element offset of operand 0
    off1: u32,              // element offset of operand 1
    off2: u32,              // element offset of operand 2
    off_out: u32,           // element offset of the output
    alpha: f32,             // scalar argument (clamp min, pow exponent, fill value, ...)
    beta: f32,              // second scalar argument (clamp max, affine shift, ...)
    shape: array<vec4<u32>, 2>,
    s0: array<vec4<u32>, 2>,   // strides of operand 0
    s1: array<vec4<u32>, 2>,   // strides of operand 1
    s2: array<vec4<u32>, 2>,   // strides of operand 2
    so: array<vec4<u32>, 2>,   // strides of the output
}

@group(0) @binding(0) var<uniform> P: ElementwiseParams;

// 1 when the launcher found every operand contiguous (the shape collapsed to one dim of stride
// 1): offsets are then `off + i` with no index arithmetic. Integer division is the costliest part
// of the strided path on CPU adapters (lavapipe scalarises it), so plain contiguous ops skip it.
override CONTIG: u32 = 0u;

// Element offsets (operand 0, operand 1, operand 2, output) of linear output index i.
fn strided_offsets(i: u32) -> vec4<u32> {
    if (CONTIG == 1u) {
        return vec4<u32>(P.off0, P.off1, P.off2, P.off_out) + vec4<u32>(i);
    }
    var rem = i;
    var o = vec4<u32>(P.off0, P.off1, P.off2, P.off_out);
    var d = P.rank;
    while (d > 0u) {
        d = d - 1u;
        let q = d / 4u;
        let r = d % 4u;
        let n = P.shape[q][r];
        let c = rem % n;
        rem = rem / n;
        o += c * vec4<u32>(P.s0[q][r], P.s1[q][r], P.s2[q][r], P.so[q][r]);
    }
    return o;
}
