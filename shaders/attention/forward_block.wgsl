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
const MAX_DB: u32 = MAX_D / 4u;

// Which of the 4 queries (limits `lim`: last visible key of each) see key j.
fn visible(b: u32, j: u32, kend: u32, lim: vec4<i32>) -> vec4<bool> {
    var ok = j < kend;
    if (ok && p.has_mask != 0u) {
        ok = keep[p.m_off + b * p.tk + j] != 0.0;
    }
    return vec4<bool>(ok) & (vec4<i32>(i32(j)) <= lim);
}

@compute @workgroup_size(WG)
fn attn_fwd_block(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.tq + 3u) / 4u;
    let t = grid_index(gid, nwg, WG);
    if (t >= p.bh * blocks) {
        return;
    }
    let bh = t / blocks;
    let i0 = (t % blocks) * 4u;
    let b = bh / p.heads;
    let db = D / 4u;
    // vec4 index of row r of this block (rows past Tq clamped: computed, never stored).
    let row0 = bh * p.tq;
    let last = p.tq - 1u;
    let qa = array<u32, 4>((row0 + min(i0, last)) * db, (row0 + min(i0 + 1u, last)) * db,
                           (row0 + min(i0 + 2u, last)) * db, (row0 + min(i0 + 3u, last)) * db);
    let qo = p.q_off / 4u;
    var qt: array<mat4x4<f32>, MAX_DB>;
    var acc: array<mat4x4<f32>, MAX_DB>;
    for (var c = 0u; c < db; c++) {
        qt[c] = transpose(mat4x4<f32>(q4[qo + qa[0] + c], q4[qo + qa[1] + c],
                                      q4[qo + qa[2] + c], q4[qo + qa[3] + c])) * p.scale;
    }
    var m = vec4<f32>(NEG);
    var l = vec4<f32>(0.0);
    if (p.first == 0u) {
        let s0 = state[qa[0] / db];
        let s1 = state[qa[1] / db];
        let s2 = state[qa[2] / db];
        let s3 = state[qa[3] / db];
        m = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
        l = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
        for (var c = 0u; c < db; c++) {
            acc[c] = mat4x4<f32>(o4[qa[0] + c], o4[qa[1] + c], o4[qa[2] + c], o4[qa[3] + c]);
        }
    }
    // Last visible key of each query: causal (end-aligned) or Tk - 1.
    var lim = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) {
        lim = vec4<i32>(i32(i0)) + vec4<i32>(0, 1, 2, 3) + vec4<i32>(i32(p.tk) - i32(p.tq));
    }
    let kend = min(p.c1, p.tk);
    let jend = min(kend, u32(clamp(lim.w + 1, 0, i32(p.tk))));
    let krow0 = bh * p.tk;
    let klast = p.tk - 1u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    for (var j = p.c0; j < jend; j += 4u) {
        let ka = array<u32, 4>((krow0 + min(j, klast)) * db, (krow0 + min(j + 1u, klast)) * db,
                               (krow0 + min(j + 2u, klast)) * db, (krow0 + min(j + 3u, klast)) * db);
        var st = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            st += qt[c] * mat4x4<f32>(k4[ko + ka[0] + c], k4[ko + ka[1] + c],
                                      k4[ko + ka[2] + c], k4[ko + ka[3] + c]);
        }
        let v0 = visible(b, j, kend, lim);
        let v1 = visible(b, j + 1u, kend, lim);
        let v2 = visible(b, j + 2u, kend, lim);
        let v3 = visible(b, j + 3u, kend, lim);
        let s0 = select(vec4<f32>(NEG), st[0], v0);
        let s1 = select(vec4<f32>(NEG), st[1], v1);
        let s2 = select(vec4<f32>(NEG), st[2], v2);
        let s3 = select(vec4<f32>(NEG), st[3], v3);
        let mx = max(m, max(max(s0, s1), max(s2, s3)));
        let cf = exp(m - mx);
        let pt = mat4x4<f32>(select(vec4<f32>(0.0), exp(s0 - mx), v0),
                             select(vec4<f32>(0.0), exp(s1 - mx), v1),
                             select(vec4<f32>(0.0), exp(s2 - mx), v2),
                             select(vec4<f32>(0.0), exp(s3 - mx), v3));
        l = l * cf + (pt[0] + pt[1]) + (pt[2] + pt[3]);
        m = mx;
        let pm = transpose(pt);   // pm[r] = P of query i0 + r over keys j .. j+3
        for (var c = 0u; c < db; c++) {
            let a = acc[c];
            let vc = mat4x4<f32>(v4[vo + ka[0] + c], v4[vo + ka[1] + c],
                                 v4[vo + ka[2] + c], v4[vo + ka[3] + c]);
            acc[c] = mat4x4<f32>(a[0] * cf.x, a[1] * cf.y, a[2] * cf.z, a[3] * cf.w) + vc * pm;
        }
    }
    let rows = min(4u, p.tq - i0);
    if (p.last == 0u) {
        for (var r = 0u; r < rows; r++) {
            state[qa[r] / db] = vec2<f32>(m[r], l[r]);
            for (var c = 0u; c < db; c++) {
                o4[qa[r] + c] = acc[c][r];
            }
        }
        return;
    }
    // No visible key: l = 0, so O = 0 and L = ln 0 = -inf.
    let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    let ls = select(vec4<f32>(bitcast<f32>(0xff800000u)), m + log(l), l > vec4<f32>(0.0));
    for (var r = 0u; r < rows; r++) {
        lse[qa[r] / db] = ls[r];
        for (var c = 0u; c < db; c++) {
            o4[qa[r] + c] = acc[c][r] * inv[r];
        }
    }
}
