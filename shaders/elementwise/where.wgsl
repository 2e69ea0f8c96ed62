// Ternary select: out[i] = cond[i] != 0 ? a[i] : b[i]   (all three broadcast, strided).
// masked_fill(x, mask, v) is where(mask, v, x) with v a broadcast scalar.
// Backward (host side): ga = where(cond, g, 0), gb = where(cond, 0, g).

// #include common/strided.wgsl
// #include common/grid.wgsl

const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> cond: array<f32>;       // operand 0
@group(0) @binding(2) var<storage, read> a: array<f32>;          // operand 1
@group(0) @binding(3) var<storage, read> b: array<f32>;          // operand 2
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = select(b[o.z], a[o.y], cond[o.x] != 0.0);
}
