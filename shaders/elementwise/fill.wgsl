// Fill a strided view with a constant, or with an arithmetic sequence.
//
//   fill:   out[i] = alpha
//   arange: out[i] = alpha + beta * i      (i = linear index over the view)

// #include common/strided.wgsl
// #include common/grid.wgsl

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    out[strided_offsets(i).w] = P.alpha;
}

@compute @workgroup_size(256)
fn arange(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    out[strided_offsets(i).w] = P.alpha + P.beta * f32(i);
}
