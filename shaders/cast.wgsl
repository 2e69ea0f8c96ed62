// Copies and dtype conversions between 32-bit types, on raw bits.
//
// Every buffer is bound as array<u32> so one binding layout serves all dtypes; f32 values are
// reinterpreted with bitcast. (Copying integer bits through an f32 load could flush small
// integers, which are f32 denormals, to zero; `copy_bits` never does.)
//
//   copy_bits:   out[i] = x[i]                      (any 32-bit dtype, strided -> strided)
//   f32_to_i32:  out[i] = i32(trunc(x[i]))          u32_to_f32: out[i] = f32(x[i])
//   f32_to_u32:  out[i] = u32(trunc(max(x[i], 0)))  i32_to_f32: out[i] = f32(x[i])

// #include common/strided.wgsl
// #include common/grid.wgsl

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn copy_bits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = x[o.x];
}

@compute @workgroup_size(256)
fn f32_to_i32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = bitcast<u32>(i32(bitcast<f32>(x[o.x])));
}

@compute @workgroup_size(256)
fn f32_to_u32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = u32(max(bitcast<f32>(x[o.x]), 0.0));
}

@compute @workgroup_size(256)
fn i32_to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = bitcast<u32>(f32(bitcast<i32>(x[o.x])));
}

@compute @workgroup_size(256)
fn u32_to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = bitcast<u32>(f32(x[o.x]));
}
