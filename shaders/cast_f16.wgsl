// f16 storage <-> f32 compute. Needs the adapter feature SHADER_F16.
//
//   f32_to_f16: out16[i] = f16(x32[i])     (x strided, out contiguous at off_out)
//   f16_to_f32: out32[i] = f32(x16[i])     (x strided, out strided)

enable f16;

// #include common/strided.wgsl
// #include common/grid.wgsl

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> x32: array<f32>;
@group(0) @binding(2) var<storage, read_write> out16: array<f16>;

@group(0) @binding(1) var<storage, read> x16: array<f16>;
@group(0) @binding(2) var<storage, read_write> out32: array<f32>;

@compute @workgroup_size(256)
fn f32_to_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out16[o.w] = f16(x32[o.x]);
}

@compute @workgroup_size(256)
fn f16_to_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out32[o.w] = f32(x16[o.x]);
}
