// Fused attention backward, flash-attention tiles (rung `Tiled`): the math of backward.wgsl
// (P recomputed from the saved L, dS = P (dP - delta), no (Tq x Tk) buffer), with the other side
// streamed through workgroup memory in tiles of BC rows, as forward_tiled.wgsl does:
//
//   attn_bwd_dq_tiled:   a workgroup owns 4 WG query rows (each invocation 4); tiles of K and V
//     are staged.
//     S[s] = transpose(Q_c) K_c summed over c,  dP[s] = transpose(dO_c) V_c summed over c
//     dS = P (dP - delta) scale,  dQ_c += K_c transpose(dS)
//   attn_bwd_dkdv_tiled: a workgroup owns 4 WG key rows (each invocation 4); tiles of Q, dO and
//     the (L, delta) rows are staged.
//     S[r] = transpose(K_c) Q_c,  dP[r] = transpose(V_c) dO_c,  dV_c += dO_c transpose(P),
//     dK_c += Q_c transpose(dS)
//
// Two barriers per tile; the tile loops have uniform bounds (every invocation of a workgroup
// reaches the same barriers), causal tiles that no row of the workgroup sees are skipped, and the
// rest is masked per row. As in backward_block.wgsl (and for the same reason: per-invocation
// arrays of D / 4 blocks made lavapipe's pipeline compile take minutes) the private state is a
// few mat4x4 values: the owned rows' q, dO (or k, v) are re-read per step and the gradients are
// accumulated in place in their output buffers (zeroed on the first loop-budget chunk [c0, c1)).
// Rows past the end are clamped to the last row and masked (zero increments); an invocation
// owning no real row writes nothing. Needs D % 4 == 0 and 16-byte aligned q, k, v (the launcher
// checks).

// #include attention/backward_io.wgsl
// #include attention/tiles.wgsl

@compute @workgroup_size(WG)
fn attn_bwd_dq_tiled(@builtin(workgroup_id) wid3: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let br = 4u * WG;
    // The workgroup's rows (uniform across it), then this invocation's 4.
    let own = owned_rows(wid3.x + wid3.y * nwg.x, p.tq, br);
    if (!own.ok) { return; }
    let tile0 = own.r0;
    let i0 = tile0 + 4u * lid;
    let db = D / 4u;
    let rows = rows4(own.bh * p.tq, i0, p.tq);
    let qa = rows * db;
    let qo = p.q_off / 4u;
    // Only real rows are written (an invocation wholly past Tq would race with the owner of the
    // row it is clamped to).
    let mine = i0 < p.tq;
    if (p.first != 0u && mine) {
        zero_ga(qa);
    }
    let s0 = stats[rows.x];
    let s1 = stats[rows.y];
    let s2 = stats[rows.z];
    let s3 = stats[rows.w];
    let lr = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
    let dl = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
    // Last visible key of each query (-1: a clamped row past Tq).
    var lim = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) {
        lim = vec4<i32>(vec4<u32>(i0) + lane()) + vec4<i32>(i32(p.tk) - i32(p.tq));
    }
    lim = select(vec4<i32>(-1), lim, vec4<u32>(i0) + lane() < vec4<u32>(p.tq));
    let kend = min(p.c1, p.tk);
    let wend = min(kend, key_end(min(tile0 + br, p.tq) - 1u));
    for (var t0 = p.c0; t0 < wend; t0 += BC) {
        stage_keys(own.bh, t0, lid);
        workgroupBarrier();
        let n = min(BC, wend - t0);
        for (var jj = 0u; jj < n; jj += 4u) {
            let j = t0 + jj;
            let a = jj * db;
            var s = mat4x4<f32>();
            var dp = mat4x4<f32>();
            for (var c = 0u; c < db; c++) {
                let qm = transpose(mat4x4<f32>(q4[qo + qa.x + c], q4[qo + qa.y + c],
                                               q4[qo + qa.z + c], q4[qo + qa.w + c]));
                let gm = transpose(mat4x4<f32>(do4[qa.x + c], do4[qa.y + c], do4[qa.z + c],
                                               do4[qa.w + c]));
                s += qm * tile_a(a, db, c);
                dp += gm * tile_b(a, db, c);
            }
            // Visibility of key j + k for the 4 queries, then dS (columns: keys) transposed so
            // column r is query r over the 4 keys.
            let jv = vec4<i32>(vec4<u32>(j) + lane());
            let kv = kept4(own.b, j, kend);
            let g0 = grads(s[0], dp[0], lr, dl, vec4<bool>(kv.x) & (vec4<i32>(jv.x) <= lim));
            let g1 = grads(s[1], dp[1], lr, dl, vec4<bool>(kv.y) & (vec4<i32>(jv.y) <= lim));
            let g2 = grads(s[2], dp[2], lr, dl, vec4<bool>(kv.z) & (vec4<i32>(jv.z) <= lim));
            let g3 = grads(s[3], dp[3], lr, dl, vec4<bool>(kv.w) & (vec4<i32>(jv.w) <= lim));
            let ds = transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0]));
            if (mine) {
                for (var c = 0u; c < db; c++) {
                    let inc = tile_a(a, db, c) * ds;
                    add_ga(qa, c, inc);
                }
            }
        }
        workgroupBarrier();
    }
}

// Which of the keys `jl` (`kv`: inside Tk and kept) query i sees: i inside this chunk (< iend)
// and, causal, j <= i + Tk - Tq.
fn seen(kv: vec4<bool>, jl: vec4<i32>, i: u32, iend: u32) -> vec4<bool> {
    var ok = kv & vec4<bool>(i < iend);
    if (p.causal != 0u) {
        ok = ok & (jl <= vec4<i32>(i32(i) + i32(p.tk) - i32(p.tq)));
    }
    return ok;
}

@compute @workgroup_size(WG)
fn attn_bwd_dkdv_tiled(@builtin(workgroup_id) wid3: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let br = 4u * WG;
    // The workgroup's rows (uniform across it), then this invocation's 4.
    let own = owned_rows(wid3.x + wid3.y * nwg.x, p.tk, br);
    if (!own.ok) { return; }
    let tile0 = own.r0;
    let j0 = tile0 + 4u * lid;
    let db = D / 4u;
    let ka = rows4(own.bh * p.tk, j0, p.tk) * db;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    let qo = p.q_off / 4u;
    let mine = j0 < p.tk;
    if (p.first != 0u && mine) {
        zero_kv(ka);
    }
    // Which of the 4 keys take gradients: inside Tk and kept by the mask.
    let kv = kept4(own.b, j0, p.tk);
    let jl = vec4<i32>(vec4<u32>(j0) + lane());
    let iend = min(p.c1, p.tq);
    // Tiles start at c0 + n BC; skip those wholly before the first query that sees the
    // workgroup's first key (uniform).
    let wstart = max(p.c0, query_start(tile0));
    let tstart = p.c0 + (wstart - p.c0) / BC * BC;
    let qrow0 = own.bh * p.tq;
    let qlast = p.tq - 1u;
    for (var t0 = tstart; t0 < iend; t0 += BC) {
        for (var e = lid; e < BC * db; e += WG) {
            let r = (qrow0 + min(t0 + e / db, qlast)) * db + e % db;
            ta[e] = q4[qo + r];
            tb[e] = do4[r];
        }
        let sto = BC * db;   // (L, delta) rows after the dO tile
        for (var e = lid; e < BC; e += WG) {
            tb[sto + e] = vec4<f32>(stats[qrow0 + min(t0 + e, qlast)], 0.0, 0.0);
        }
        workgroupBarrier();
        let n = min(BC, iend - t0);
        for (var ii = 0u; ii < n; ii += 4u) {
            let i = t0 + ii;
            let a = ii * db;
            var s = mat4x4<f32>();
            var dp = mat4x4<f32>();
            for (var c = 0u; c < db; c++) {
                let km = transpose(mat4x4<f32>(k4[ko + ka.x + c], k4[ko + ka.y + c],
                                               k4[ko + ka.z + c], k4[ko + ka.w + c]));
                let vm = transpose(mat4x4<f32>(v4[vo + ka.x + c], v4[vo + ka.y + c],
                                               v4[vo + ka.z + c], v4[vo + ka.w + c]));
                s += km * tile_a(a, db, c);
                dp += vm * tile_b(a, db, c);
            }
            // s[r]: vec4 over the 4 keys, query i + r.
            let sa = tb[sto + ii];
            let sb = tb[sto + ii + 1u];
            let sc = tb[sto + ii + 2u];
            let sd = tb[sto + ii + 3u];
            let g0 = grads(s[0], dp[0], vec4<f32>(sa.x), vec4<f32>(sa.y), seen(kv, jl, i, iend));
            let g1 = grads(s[1], dp[1], vec4<f32>(sb.x), vec4<f32>(sb.y),
                           seen(kv, jl, i + 1u, iend));
            let g2 = grads(s[2], dp[2], vec4<f32>(sc.x), vec4<f32>(sc.y),
                           seen(kv, jl, i + 2u, iend));
            let g3 = grads(s[3], dp[3], vec4<f32>(sd.x), vec4<f32>(sd.y),
                           seen(kv, jl, i + 3u, iend));
            let ds = transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0]));
            let pr = transpose(mat4x4<f32>(g0[1], g1[1], g2[1], g3[1]));
            if (mine) {
                for (var c = 0u; c < db; c++) {
                    let dk = tile_a(a, db, c) * ds;
                    let dv = tile_b(a, db, c) * pr;
                    add_kv(ka, c, dk, dv);
                }
            }
        }
        workgroupBarrier();
    }
}
