// Fused attention backward, register-blocked: the same math as backward.wgsl (see there), but
// each invocation owns 4 output rows and walks the other side 8 rows (two 4 x 4 blocks) at a time
// with vec4 loads, so the (4 x 4) blocks of scores S, dP and dS live in mat4x4 values:
//
//   attn_bwd_dq_block:   rows i0..i0+3 of dQ, keys 8 at a time
//     S[s]  = transpose(Q_c) K_c summed over c     (vec4 over the 4 queries, key j + s)
//     dS[s] = P[s] (dP[s] - delta) scale,  dQ_c += K_c transpose(dS)
//   attn_bwd_dkdv_block: rows j0..j0+3 of dK and dV, queries 8 at a time
//     S[r]  = transpose(K_c) Q_c summed over c     (vec4 over the 4 keys, query i + r)
//     dV_c += dO_c transpose(P),  dK_c += Q_c transpose(dS)
//
// Written for a fast pipeline compile on lavapipe (LLVM): the private state is a few mat4x4
// values, with no per-invocation arrays; the loops over c (D / 4 column blocks) re-read q, dO
// (or k, v) from global memory and accumulate the gradients in place in their output buffers
// (each invocation owns its rows, so no atomics). Rows past the end are clamped to the last row
// and fully masked: their increments are 0 and the read-add-write of each row runs in order, so
// a repeated row adds nothing. The loops over c are not unrolled by the driver (the loop-limit
// test shows it): the compile stays about a second, and a step of 8 rows costs 2 D / 4 + 1 loop
// iterations. On lavapipe (B4 H4 T128 D32) this is ~5x the row kernels. Needs D % 4 == 0 and
// 16-byte aligned q, k, v, dO and gradients (the launcher checks; else it runs backward.wgsl).
// Chunks [c0, c1) per dispatch keep the loop budget (65,535 iterations per invocation on
// lavapipe), as in backward.wgsl.

// #include attention/backward_io.wgsl
// #include common/grid.wgsl

override WG: u32 = 64u;

const LANE = vec4<u32>(0u, 1u, 2u, 3u);

// Column block c of 4 rows (vec4 indices `at + rows`) of k, v, q or dO, one row per column.
fn rows_k(at: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(k4[at + rows.x], k4[at + rows.y], k4[at + rows.z], k4[at + rows.w]);
}

fn rows_v(at: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(v4[at + rows.x], v4[at + rows.y], v4[at + rows.z], v4[at + rows.w]);
}

fn rows_q(at: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(q4[at + rows.x], q4[at + rows.y], q4[at + rows.z], q4[at + rows.w]);
}

fn rows_do(at: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(do4[at + rows.x], do4[at + rows.y], do4[at + rows.z], do4[at + rows.w]);
}

// dS of 4 queries (s[k], dp[k]: vec4 over the queries, key j + k; st: their (L, delta)) against
// keys j..j+3, 0 where not visible (past kend, masked, or past the queries' limits `lim`),
// transposed: column r is query r over the 4 keys.
fn dq_ds(s: mat4x4<f32>, dp: mat4x4<f32>, st: mat2x4<f32>, b: u32, j: u32, kend: u32,
         lim: vec4<i32>) -> mat4x4<f32> {
    let jv = vec4<i32>(vec4<u32>(j) + LANE);
    let kv = kept4(b, j, kend);
    let g0 = grads(s[0], dp[0], st[0], st[1], vec4<bool>(kv.x) & (vec4<i32>(jv.x) <= lim));
    let g1 = grads(s[1], dp[1], st[0], st[1], vec4<bool>(kv.y) & (vec4<i32>(jv.y) <= lim));
    let g2 = grads(s[2], dp[2], st[0], st[1], vec4<bool>(kv.z) & (vec4<i32>(jv.z) <= lim));
    let g3 = grads(s[3], dp[3], st[0], st[1], vec4<bool>(kv.w) & (vec4<i32>(jv.w) <= lim));
    return transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0]));
}

@compute @workgroup_size(WG)
fn attn_bwd_dq_block(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tq, 4u);
    if (!own.ok) { return; }
    let rows = rows4(own.bh * p.tq, own.r0, p.tq);
    let db = D / 4u;
    let qa = rows * db;
    let qo = p.q_off / 4u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    if (p.first != 0u) {
        zero_ga(qa);
    }
    let st = stats4(rows);
    // Last visible key of each query (-1: a clamped row past Tq).
    var lim = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) {
        lim = vec4<i32>(vec4<u32>(own.r0) + LANE) + vec4<i32>(i32(p.tk) - i32(p.tq));
    }
    lim = select(vec4<i32>(-1), lim, vec4<u32>(own.r0) + LANE < vec4<u32>(p.tq));
    let lmax = max(max(lim.x, lim.y), max(lim.z, lim.w));
    let kend = min(p.c1, p.tk);
    let jend = min(kend, u32(clamp(lmax + 1, 0, i32(p.tk))));
    // 8 keys per step (two 4 x 4 blocks): each loaded query / dO / gradient value feeds 8 keys.
    for (var j = p.c0; j < jend; j += 8u) {
        let ka = rows4(own.bh * p.tk, j, p.tk) * db;
        let kb = rows4(own.bh * p.tk, j + 4u, p.tk) * db;
        var s0 = mat4x4<f32>();
        var dp0 = mat4x4<f32>();
        var s1 = mat4x4<f32>();
        var dp1 = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            let qm = transpose(mat4x4<f32>(q4[qo + qa.x + c], q4[qo + qa.y + c],
                                           q4[qo + qa.z + c], q4[qo + qa.w + c]));
            let gm = transpose(mat4x4<f32>(do4[qa.x + c], do4[qa.y + c],
                                           do4[qa.z + c], do4[qa.w + c]));
            s0 += qm * rows_k(ko + c, ka);
            dp0 += gm * rows_v(vo + c, ka);
            s1 += qm * rows_k(ko + c, kb);
            dp1 += gm * rows_v(vo + c, kb);
        }
        let d0 = dq_ds(s0, dp0, st, own.b, j, kend, lim);
        let d1 = dq_ds(s1, dp1, st, own.b, j + 4u, kend, lim);
        for (var c = 0u; c < db; c++) {
            let inc = rows_k(ko + c, ka) * d0 + rows_k(ko + c, kb) * d1;
            add_ga(qa, c, inc);
        }
    }
}

// Which of the keys j0..j0+3 (`kv`: inside Tk and kept) query i sees: i < iend, and causal
// j <= i + Tk - Tq.
fn seen(kv: vec4<bool>, i: u32, iend: u32, j0: u32) -> vec4<bool> {
    var ok = kv & vec4<bool>(i < iend);
    if (p.causal != 0u) {
        ok = ok & (vec4<i32>(vec4<u32>(j0) + LANE) <= vec4<i32>(i32(i) + i32(p.tk) - i32(p.tq)));
    }
    return ok;
}

// dS and P of 4 keys (s[r], dp[r]: vec4 over the keys, query i + r of global rows `rows`)
// against queries i..i+3, 0 where not visible, transposed: column k is key k over the queries.
struct KeyGrads {
    ds: mat4x4<f32>,
    pr: mat4x4<f32>,
}

fn dkv_grads(s: mat4x4<f32>, dp: mat4x4<f32>, rows: vec4<u32>, kv: vec4<bool>, i: u32,
             iend: u32, j0: u32) -> KeyGrads {
    let st = stats4(rows);
    let l = st[0];
    let dl = st[1];
    let g0 = grads(s[0], dp[0], vec4<f32>(l.x), vec4<f32>(dl.x), seen(kv, i, iend, j0));
    let g1 = grads(s[1], dp[1], vec4<f32>(l.y), vec4<f32>(dl.y), seen(kv, i + 1u, iend, j0));
    let g2 = grads(s[2], dp[2], vec4<f32>(l.z), vec4<f32>(dl.z), seen(kv, i + 2u, iend, j0));
    let g3 = grads(s[3], dp[3], vec4<f32>(l.w), vec4<f32>(dl.w), seen(kv, i + 3u, iend, j0));
    return KeyGrads(transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0])),
                    transpose(mat4x4<f32>(g0[1], g1[1], g2[1], g3[1])));
}

@compute @workgroup_size(WG)
fn attn_bwd_dkdv_block(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tk, 4u);
    if (!own.ok) { return; }
    let db = D / 4u;
    let ka = rows4(own.bh * p.tk, own.r0, p.tk) * db;
    let qo = p.q_off / 4u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    if (p.first != 0u) {
        zero_kv(ka);
    }
    // Which of the 4 keys take gradients: inside Tk and kept by the mask.
    let kv = kept4(own.b, own.r0, p.tk);
    let iend = min(p.c1, p.tq);
    var istart = max(p.c0, query_start(own.r0));
    if (!any(kv)) {
        istart = iend;
    }
    // 8 queries per step (two 4 x 4 blocks): each loaded k / v / gradient value feeds 8 queries.
    for (var i = istart; i < iend; i += 8u) {
        let qa = rows4(own.bh * p.tq, i, p.tq);
        let qb = rows4(own.bh * p.tq, i + 4u, p.tq);
        let qa4 = qa * db;
        let qb4 = qb * db;
        var s0 = mat4x4<f32>();
        var dp0 = mat4x4<f32>();
        var s1 = mat4x4<f32>();
        var dp1 = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            let km = transpose(rows_k(ko + c, ka));
            let vm = transpose(rows_v(vo + c, ka));
            s0 += km * rows_q(qo + c, qa4);
            dp0 += vm * rows_do(c, qa4);
            s1 += km * rows_q(qo + c, qb4);
            dp1 += vm * rows_do(c, qb4);
        }
        let g0 = dkv_grads(s0, dp0, qa, kv, i, iend, own.r0);
        let g1 = dkv_grads(s1, dp1, qb, kv, i + 4u, iend, own.r0);
        for (var c = 0u; c < db; c++) {
            let dk = rows_q(qo + c, qa4) * g0.ds + rows_q(qo + c, qb4) * g1.ds;
            let dv = rows_do(c, qa4) * g0.pr + rows_do(c, qb4) * g1.pr;
            add_kv(ka, c, dk, dv);
        }
    }
}
