// Fused attention forward, flash-attention tiles (rung `Tiled`): the online softmax of
// forward_block.wgsl (same recurrences, same 4 query rows per invocation held as mat4x4 blocks),
// but a workgroup of WG invocations owns Br = 4 WG consecutive query rows of one head and streams
// the keys through workgroup memory in tiles of BC rows:
//
//   for each key tile [t0, t0 + BC) of this dispatch's chunk (skipping tiles past the causal
//   limit of the workgroup's last query):
//     every invocation copies its share of K[t0..t0+BC) and V[t0..t0+BC) into ta, tb  (vec4)
//     barrier
//     each invocation: for keys j = t0, t0+4, ..: St = sum_c transpose(Q_c) K_c  (4 x 4 block)
//       m' = max(m, St),  c = exp(m - m'),  P = exp(St - m'),  l' = l c + sum P,
//       acc_c' = acc_c diag(c) + V_c Pᵀ                    (K_c, V_c read from ta, tb)
//     barrier (the next copy must wait until every invocation is done with this tile)
//
// Each staged K / V value is then read by all WG invocations (4 WG query rows) instead of being
// fetched from global memory once per invocation, and the addresses into ta / tb are the same in
// every invocation (uniform), which a CPU driver can serve with one scalar load. Two barriers per
// tile: on lavapipe (~15 us each) big tiles (BC) pay, on a real GPU a larger Br does.
//
// Needs D % 4 == 0 and 16-byte aligned q, k, v (the launcher checks). Loop-budget chunks
// [c0, c1) of whole tiles per dispatch, with (m, l) and the unnormalised O carried in global
// memory between them, as in forward_block.wgsl.

// #include attention/forward_io.wgsl
// #include attention/tiles.wgsl

@compute @workgroup_size(WG)
fn attn_fwd_tiled(@builtin(workgroup_id) wid3: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let br = 4u * WG;
    // The workgroup's rows (uniform across it), then this invocation's 4.
    let own = owned_rows(wid3.x + wid3.y * nwg.x, p.tq, br);
    if (!own.ok) { return; }
    let tile0 = own.r0;
    let i0 = tile0 + 4u * lid;
    let db = D / 4u;
    var blk = start_block(own.bh, i0);
    let kend = min(p.c1, p.tk);
    // Keys past the last query of the workgroup's causal limit are skipped, whole tiles at once
    // (a uniform bound: every invocation runs the same tiles and reaches the same barriers).
    let wend = min(kend, key_end(min(tile0 + br, p.tq) - 1u));
    for (var t0 = p.c0; t0 < wend; t0 += BC) {
        stage_keys(own.bh, t0, lid);
        workgroupBarrier();
        let n = min(BC, wend - t0);
        for (var jj = 0u; jj < n; jj += 4u) {
            let j = t0 + jj;
            let a = jj * db;
            var st = mat4x4<f32>();
            for (var c = 0u; c < db; c++) {
                st += blk.qt[c] * tile_a(a, db, c);
            }
            let step = online_step(&blk, st, own.b, j, kend);
            for (var c = 0u; c < db; c++) {
                blk.acc[c] = accumulate(blk.acc[c], step, tile_b(a, db, c));
            }
        }
        workgroupBarrier();
    }
    let rows = min(4u, max(p.tq, i0) - i0);
    store_block(&blk, rows);
}
