// Memory ceiling: a plain copy in 16-byte words.
//
//   dst[i] = src[i]   for i in 0..P.n4   (vec4<f32> elements)
//
// One vec4 load and one vec4 store per invocation, unit stride, no index arithmetic beyond the
// grid: the most a kernel can expect to move. Bytes moved = 2 * 16 * n4.

// #include common/grid.wgsl

const WG: u32 = 256u;

struct CopyParams {
    n4: u32, // vec4 elements to copy
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> P: CopyParams;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;       // (n4,)
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>; // (n4,)

@compute @workgroup_size(256)
fn copy_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.n4) { return; }
    dst[i] = src[i];
}
