// Attention backward, step 1 of 3: per query row, the saved L_i and delta_i = dO_i . O_i
// (= sum_j P_ij dP_ij, the row term of the softmax gradient), packed as stats (L_i, delta_i).

// #include attention/params.wgsl
// #include common/grid.wgsl

override WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> dout: array<f32>;            // dO (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> o: array<f32>;               // O (B, H, Tq, D)
@group(0) @binding(3) var<storage, read> lse: array<f32>;             // L (B, H, Tq)
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>; // (B, H, Tq)

@compute @workgroup_size(WG)
fn attn_bwd_prep(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= p.bh * p.tq) {
        return;
    }
    var delta = 0.0;
    for (var d = 0u; d < D; d++) {
        delta += dout[r * D + d] * o[r * D + d];
    }
    stats[r] = vec2<f32>(lse[r], delta);
}
