// Linear invocation index over a 2-D grid of workgroups.
//
// Launchers split `ceil(n / WG)` workgroups into (x, y) with x <= 65535 (WebGPU's per-dimension
// limit); this undoes the split: i = gid.x + gid.y * (num_workgroups.x * WG).

fn grid_index(gid: vec3<u32>, nwg: vec3<u32>, wg_size: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg_size;
}
