// Copies and dtype conversions: out[i] = dst(x[i]), for every pair of dtypes kiln stores.
//
// One source for all of them: the launcher sets the element types `src` and `dst` (see the
// `// #type` prelude in kernels/src/shaders.rs), so each pair is its own module:
//
//   copy (bit copy of any 32-bit dtype):  src = dst = u32  (the default)
//   f32 <-> i32, u32 -> f32:              convert, src / dst the two types
//   f32 -> u32:                           convert_nonneg: u32(trunc(max(x[i], 0)))
//   f32 <-> f16 (needs SHADER_F16):       convert; f16 offsets and strides count f16 elements
//
// A bit copy goes through u32, never f32: copying integer bits through an f32 load could flush
// small integers, which are f32 denormals, to zero.

// #type src = u32
// #type dst = u32
// #include common/strided.wgsl
// #include common/grid.wgsl

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> x: array<src>;
@group(0) @binding(2) var<storage, read_write> out: array<dst>;

@compute @workgroup_size(256)
fn convert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = dst(x[o.x]);
}

// Negative values (and -0) become 0 before the conversion to an unsigned type.
@compute @workgroup_size(256)
fn convert_nonneg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = dst(max(x[o.x], src(0)));
}
