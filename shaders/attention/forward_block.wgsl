// Fused attention forward, register-blocked: the same online softmax as forward.wgsl (see the
// recurrences there and in common/online_softmax.wgsl), but each invocation owns a block of 4
// query rows and walks the keys 4 at a time with vec4 loads, so every loaded value feeds 4
// multiply-adds and the scores of a (4 queries x 4 keys) block live in one mat4x4:
//
//   St[s]  = scale (q_{i0..i0+3} . k_{j+s})            (vec4 over the 4 queries, key j + s)
//          = sum_c transpose(Q_c) K_c                  (Q_c, K_c: 4 x 4 blocks of columns 4c..4c+3)
//   m'     = max(m, St[0..3]),  c = exp(m - m'),  P = exp(St - m') (0 where masked)
//   l'     = l c + sum_s P[s],  acc_c' = acc_c diag(c) + V_c Pᵀ
//
// On lavapipe a storage load from a per-invocation address is a loop over the SIMD lanes, so
// fewer, wider loads set the speed (as in matmul/vec4.wgsl). Needs D % 4 == 0 and 16-byte aligned
// q, k, v, o (the launcher checks; else it runs forward.wgsl). The loops over c have D / 4 trips
// with D a pipeline constant, so the driver can unroll them and keep the arrays in registers.
// Key chunks [c0, c1) per dispatch keep the loop budget, as in forward.wgsl.

// #include attention/forward_io.wgsl
// #include common/grid.wgsl

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn attn_fwd_block(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tq, 4u);
    if (!own.ok) { return; }
    var blk = start_block(own.bh, own.r0);
    let db = D / 4u;
    let kend = min(p.c1, p.tk);
    let jend = min(kend, u32(clamp(blk.lim.w + 1, 0, i32(p.tk))));
    let krow0 = own.bh * p.tk;
    let klast = p.tk - 1u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    for (var j = p.c0; j < jend; j += 4u) {
        let ka = array<u32, 4>((krow0 + min(j, klast)) * db, (krow0 + min(j + 1u, klast)) * db,
                               (krow0 + min(j + 2u, klast)) * db, (krow0 + min(j + 3u, klast)) * db);
        var st = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            st += blk.qt[c] * mat4x4<f32>(k4[ko + ka[0] + c], k4[ko + ka[1] + c],
                                      k4[ko + ka[2] + c], k4[ko + ka[3] + c]);
        }
        let step = online_step(&blk, st, own.b, j, kend);
        for (var c = 0u; c < db; c++) {
            let vc = mat4x4<f32>(v4[vo + ka[0] + c], v4[vo + ka[1] + c],
                                 v4[vo + ka[2] + c], v4[vo + ka[3] + c]);
            blk.acc[c] = accumulate(blk.acc[c], step, vc);
        }
    }
    let rows = min(4u, p.tq - own.r0);
    store_block(&blk, rows);
}
