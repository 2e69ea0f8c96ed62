// Binary elementwise ops with NumPy broadcasting (broadcast dims have stride 0).
//
//   forward: out[i] = a[i] (op) b[i]
//   inplace: out[i] = out[i] (op) b[i]   (gradient accumulation, optimizer updates)
//
// OP:  0 add  1 sub  2 mul  3 div  4 pow  5 maximum  6 minimum
//      7 eq   8 ne   9 lt  10 le  11 gt  12 ge        (comparisons give 1.0 or 0.0)
//     13 axpy: a + alpha * b
// Gradients are composed from these ops on the host (see src/ops/binary.rs).

// #include common/strided.wgsl
// #include common/math.wgsl
// #include common/grid.wgsl

override OP: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> a: array<f32>;          // operand 0
@group(0) @binding(2) var<storage, read> b: array<f32>;          // operand 1
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // output

// `inplace` binds the destination first and reads it.
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;

fn apply(u: f32, v: f32) -> f32 {
    switch OP {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return pow_any(u, v); }
        case 5u: { return max(u, v); }
        case 6u: { return min(u, v); }
        case 7u: { return select(0.0, 1.0, u == v); }
        case 8u: { return select(0.0, 1.0, u != v); }
        case 9u: { return select(0.0, 1.0, u < v); }
        case 10u: { return select(0.0, 1.0, u <= v); }
        case 11u: { return select(0.0, 1.0, u > v); }
        case 12u: { return select(0.0, 1.0, u >= v); }
        case 13u: { return u + P.alpha * v; }
        default: { return u; }
    }
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = apply(a[o.x], b[o.y]);
}

@compute @workgroup_size(256)
fn inplace(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    acc[o.w] = apply(acc[o.w], b[o.y]);
}
