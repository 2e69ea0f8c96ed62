// Fused attention backward, panel-blocked: the math of backward.wgsl (see there) with the
// blocking of forward_panel.wgsl. An invocation owns 16 output rows and walks the other side 16
// rows per step; the 16 x 16 blocks of scores and of dP (16 mat4x4 each) are read only at
// constant indices, so they stay in registers, and are overwritten in place by P and dS. The
// gradients are accumulated in place in their output buffers (each invocation owns its rows).
//
//   attn_bwd_dq_panel:   rows i..i+15 of dQ, keys 16 per step
//     S = Q Kᵀ, dP = dO Vᵀ, dS = P (dP - delta) scale with P = exp(S scale - L),  dQ += dS K
//   attn_bwd_dkdv_panel: rows j..j+15 of dK and dV, queries 16 per step
//     Sᵀ = K Qᵀ, dPᵀ = V dOᵀ, dV += Pᵀ dO, dK += dSᵀ Q
//
// Layout: blocks x[4a + e] pair row block a (4 owned rows) with block e (4 rows of the other
// side); in S and dP a column is one row of the other side and the components the owned rows.
// Rows past the end are clamped to the last row and never visible nor stored. Needs D % 4 == 0
// and 16-byte aligned q, k, v (the launcher checks). Chunks [c0, c1) of the other side per
// dispatch keep lavapipe's loop budget, as in backward_block.wgsl.

// #include attention/backward_io.wgsl
// #include common/grid.wgsl

override WG: u32 = 16u;

const LANE = vec4<u32>(0u, 1u, 2u, 3u);

alias Blocks = array<mat4x4<f32>, 16>;

// Column block c of 4 rows at vec4 offsets r (src 0 q, 1 k, 2 v, 3 dO): column t = row t.
fn rows_of(src: u32, r: vec4<u32>, c: u32) -> mat4x4<f32> {
    switch (src) {
        case 0u: { return mat4x4<f32>(q4[r.x + c], q4[r.y + c], q4[r.z + c], q4[r.w + c]); }
        case 1u: { return mat4x4<f32>(k4[r.x + c], k4[r.y + c], k4[r.z + c], k4[r.w + c]); }
        case 2u: { return mat4x4<f32>(v4[r.x + c], v4[r.y + c], v4[r.z + c], v4[r.w + c]); }
        default: { return mat4x4<f32>(do4[r.x + c], do4[r.y + c], do4[r.z + c], do4[r.w + c]); }
    }
}

// The same for the gradients: ga (dQ or dK) and gb (dV; only the dK / dV kernel binds it).
fn ga_rows(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(ga4[r.x + c], ga4[r.y + c], ga4[r.z + c], ga4[r.w + c]);
}

fn gb_rows(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(gb4[r.x + c], gb4[r.y + c], gb4[r.z + c], gb4[r.w + c]);
}

// Store the columns of x whose row index (i) is below n, to ga or gb.
fn store_a(r: vec4<u32>, i: vec4<u32>, n: u32, c: u32, x: mat4x4<f32>) {
    if (i.x < n) { ga4[r.x + c] = x[0]; }
    if (i.y < n) { ga4[r.y + c] = x[1]; }
    if (i.z < n) { ga4[r.z + c] = x[2]; }
    if (i.w < n) { ga4[r.w + c] = x[3]; }
}

fn store_b(r: vec4<u32>, i: vec4<u32>, n: u32, c: u32, x: mat4x4<f32>) {
    if (i.x < n) { gb4[r.x + c] = x[0]; }
    if (i.y < n) { gb4[r.y + c] = x[1]; }
    if (i.z < n) { gb4[r.z + c] = x[2]; }
    if (i.w < n) { gb4[r.w + c] = x[3]; }
}

// dQ side: one 4 x 4 block (column t = key j + t, component = query row; st = the rows' (L,
// delta), lim their last visible key) -> dS, transposed (column r = query row r), 0 where hidden.
fn dq_ds(s: mat4x4<f32>, dp: mat4x4<f32>, st: mat2x4<f32>, kv: vec4<bool>, j: u32,
         lim: vec4<i32>) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    let jj = i32(j);
    let g0 = select(z, exp(s[0] * p.scale - st[0]) * (dp[0] - st[1]) * p.scale,
                    vec4<bool>(kv.x) & (vec4<i32>(jj) <= lim));
    let g1 = select(z, exp(s[1] * p.scale - st[0]) * (dp[1] - st[1]) * p.scale,
                    vec4<bool>(kv.y) & (vec4<i32>(jj + 1) <= lim));
    let g2 = select(z, exp(s[2] * p.scale - st[0]) * (dp[2] - st[1]) * p.scale,
                    vec4<bool>(kv.z) & (vec4<i32>(jj + 2) <= lim));
    let g3 = select(z, exp(s[3] * p.scale - st[0]) * (dp[3] - st[1]) * p.scale,
                    vec4<bool>(kv.w) & (vec4<i32>(jj + 3) <= lim));
    return transpose(mat4x4<f32>(g0, g1, g2, g3));
}

// dK / dV side: one 4 x 4 block (column t = query i + t with stats (l[t], dl[t]), component =
// key row, vis its visibility) -> (P, dS) in place, transposed (column r = key row r).
fn kv_pds(s: ptr<function, Blocks>, dp: ptr<function, Blocks>, x: u32, l: vec4<f32>,
          dl: vec4<f32>, vis: array<vec4<bool>, 4>) {
    let z = vec4<f32>(0.0);
    let a = (*s)[x];
    let d = (*dp)[x];
    let p0 = select(z, exp(a[0] * p.scale - l.x), vis[0]);
    let p1 = select(z, exp(a[1] * p.scale - l.y), vis[1]);
    let p2 = select(z, exp(a[2] * p.scale - l.z), vis[2]);
    let p3 = select(z, exp(a[3] * p.scale - l.w), vis[3]);
    (*s)[x] = transpose(mat4x4<f32>(p0, p1, p2, p3));
    (*dp)[x] = transpose(mat4x4<f32>(p0 * (d[0] - dl.x) * p.scale, p1 * (d[1] - dl.y) * p.scale,
                                     p2 * (d[2] - dl.z) * p.scale, p3 * (d[3] - dl.w) * p.scale));
}

// Which (key row r, query i + t) pairs of a block are visible: key rows `keys` kept (kk), query
// t valid (qv), and causally key <= query + Tk - Tq.
fn kv_vis(keys: vec4<u32>, kk: vec4<bool>, i: u32, qv: vec4<bool>) -> array<vec4<bool>, 4> {
    var lim = vec4<i32>(i32(p.tk));
    if (p.causal != 0u) {
        lim = vec4<i32>(i32(i)) + vec4<i32>(LANE) + (i32(p.tk) - i32(p.tq));
    }
    let kj = vec4<i32>(keys);
    return array<vec4<bool>, 4>(kk & vec4<bool>(qv.x) & (kj <= vec4<i32>(lim.x)),
                                kk & vec4<bool>(qv.y) & (kj <= vec4<i32>(lim.y)),
                                kk & vec4<bool>(qv.z) & (kj <= vec4<i32>(lim.z)),
                                kk & vec4<bool>(qv.w) & (kj <= vec4<i32>(lim.w)));
}

@compute @workgroup_size(WG)
fn attn_bwd_dq_panel(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tq, 16u);
    if (!own.ok) { return; }
    let row0 = own.bh * p.tq;
    let db = D / 4u;
    let qlast = vec4<u32>(p.tq - 1u);
    let qo = p.q_off / 4u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    let shift = i32(p.tk) - i32(p.tq);
    // Per row block a: query indices, offsets in q and in dO / dQ, stats, last visible key.
    let iv0 = vec4<u32>(own.r0 + 0u) + LANE;
    let r0 = row0 + min(iv0, qlast);
    let rq0 = qo + r0 * db;
    let rd0 = r0 * db;
    let st0 = stats4(r0);
    var lim0 = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) { lim0 = vec4<i32>(iv0) + shift; }
    lim0 = select(vec4<i32>(-1), lim0, iv0 < vec4<u32>(p.tq));
    let iv1 = vec4<u32>(own.r0 + 4u) + LANE;
    let r1 = row0 + min(iv1, qlast);
    let rq1 = qo + r1 * db;
    let rd1 = r1 * db;
    let st1 = stats4(r1);
    var lim1 = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) { lim1 = vec4<i32>(iv1) + shift; }
    lim1 = select(vec4<i32>(-1), lim1, iv1 < vec4<u32>(p.tq));
    let iv2 = vec4<u32>(own.r0 + 8u) + LANE;
    let r2 = row0 + min(iv2, qlast);
    let rq2 = qo + r2 * db;
    let rd2 = r2 * db;
    let st2 = stats4(r2);
    var lim2 = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) { lim2 = vec4<i32>(iv2) + shift; }
    lim2 = select(vec4<i32>(-1), lim2, iv2 < vec4<u32>(p.tq));
    let iv3 = vec4<u32>(own.r0 + 12u) + LANE;
    let r3 = row0 + min(iv3, qlast);
    let rq3 = qo + r3 * db;
    let rd3 = r3 * db;
    let st3 = stats4(r3);
    var lim3 = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) { lim3 = vec4<i32>(iv3) + shift; }
    lim3 = select(vec4<i32>(-1), lim3, iv3 < vec4<u32>(p.tq));
    if (p.first != 0u) {
        let z = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            store_a(rd0, iv0, p.tq, c, z);
            store_a(rd1, iv1, p.tq, c, z);
            store_a(rd2, iv2, p.tq, c, z);
            store_a(rd3, iv3, p.tq, c, z);
        }
    }
    let lmax = max(max(max(lim0.x, lim0.y), max(lim0.z, lim0.w)),
                   max(max(max(lim1.x, lim1.y), max(lim1.z, lim1.w)),
                       max(max(max(lim2.x, lim2.y), max(lim2.z, lim2.w)),
                           max(max(lim3.x, lim3.y), max(lim3.z, lim3.w)))));
    let kend = min(p.c1, p.tk);
    let jend = min(kend, u32(clamp(lmax + 1, 0, i32(p.tk))));
    let krow0 = own.bh * p.tk;
    let klast = vec4<u32>(p.tk - 1u);
    for (var j = p.c0; j < jend; j += 16u) {
        let kr0 = (krow0 + min(vec4<u32>(j + 0u) + LANE, klast)) * db;
        let kv0 = kept4(own.b, j + 0u, kend);
        let kr1 = (krow0 + min(vec4<u32>(j + 4u) + LANE, klast)) * db;
        let kv1 = kept4(own.b, j + 4u, kend);
        let kr2 = (krow0 + min(vec4<u32>(j + 8u) + LANE, klast)) * db;
        let kv2 = kept4(own.b, j + 8u, kend);
        let kr3 = (krow0 + min(vec4<u32>(j + 12u) + LANE, klast)) * db;
        let kv3 = kept4(own.b, j + 12u, kend);
        var s: Blocks;
        var dp: Blocks;
        for (var c = 0u; c < db; c++) {
            let k0 = rows_of(1u, ko + kr0, c);
            let v0 = rows_of(2u, vo + kr0, c);
            let k1 = rows_of(1u, ko + kr1, c);
            let v1 = rows_of(2u, vo + kr1, c);
            let k2 = rows_of(1u, ko + kr2, c);
            let v2 = rows_of(2u, vo + kr2, c);
            let k3 = rows_of(1u, ko + kr3, c);
            let v3 = rows_of(2u, vo + kr3, c);
            let q0 = transpose(rows_of(0u, rq0, c));
            let o0 = transpose(rows_of(3u, rd0, c));
            s[0] += q0 * k0; s[1] += q0 * k1; s[2] += q0 * k2; s[3] += q0 * k3;
            dp[0] += o0 * v0; dp[1] += o0 * v1; dp[2] += o0 * v2; dp[3] += o0 * v3;
            let q1 = transpose(rows_of(0u, rq1, c));
            let o1 = transpose(rows_of(3u, rd1, c));
            s[4] += q1 * k0; s[5] += q1 * k1; s[6] += q1 * k2; s[7] += q1 * k3;
            dp[4] += o1 * v0; dp[5] += o1 * v1; dp[6] += o1 * v2; dp[7] += o1 * v3;
            let q2 = transpose(rows_of(0u, rq2, c));
            let o2 = transpose(rows_of(3u, rd2, c));
            s[8] += q2 * k0; s[9] += q2 * k1; s[10] += q2 * k2; s[11] += q2 * k3;
            dp[8] += o2 * v0; dp[9] += o2 * v1; dp[10] += o2 * v2; dp[11] += o2 * v3;
            let q3 = transpose(rows_of(0u, rq3, c));
            let o3 = transpose(rows_of(3u, rd3, c));
            s[12] += q3 * k0; s[13] += q3 * k1; s[14] += q3 * k2; s[15] += q3 * k3;
            dp[12] += o3 * v0; dp[13] += o3 * v1; dp[14] += o3 * v2; dp[15] += o3 * v3;
        }
        s[0] = dq_ds(s[0], dp[0], st0, kv0, j + 0u, lim0);
        s[1] = dq_ds(s[1], dp[1], st0, kv1, j + 4u, lim0);
        s[2] = dq_ds(s[2], dp[2], st0, kv2, j + 8u, lim0);
        s[3] = dq_ds(s[3], dp[3], st0, kv3, j + 12u, lim0);
        s[4] = dq_ds(s[4], dp[4], st1, kv0, j + 0u, lim1);
        s[5] = dq_ds(s[5], dp[5], st1, kv1, j + 4u, lim1);
        s[6] = dq_ds(s[6], dp[6], st1, kv2, j + 8u, lim1);
        s[7] = dq_ds(s[7], dp[7], st1, kv3, j + 12u, lim1);
        s[8] = dq_ds(s[8], dp[8], st2, kv0, j + 0u, lim2);
        s[9] = dq_ds(s[9], dp[9], st2, kv1, j + 4u, lim2);
        s[10] = dq_ds(s[10], dp[10], st2, kv2, j + 8u, lim2);
        s[11] = dq_ds(s[11], dp[11], st2, kv3, j + 12u, lim2);
        s[12] = dq_ds(s[12], dp[12], st3, kv0, j + 0u, lim3);
        s[13] = dq_ds(s[13], dp[13], st3, kv1, j + 4u, lim3);
        s[14] = dq_ds(s[14], dp[14], st3, kv2, j + 8u, lim3);
        s[15] = dq_ds(s[15], dp[15], st3, kv3, j + 12u, lim3);
        // dQ += dS K, column block by column block (column r of s[4a + e]: query row r).
        for (var c = 0u; c < db; c++) {
            let k0 = rows_of(1u, ko + kr0, c);
            let k1 = rows_of(1u, ko + kr1, c);
            let k2 = rows_of(1u, ko + kr2, c);
            let k3 = rows_of(1u, ko + kr3, c);
            store_a(rd0, iv0, p.tq, c, ga_rows(rd0, c)
                  + (k0 * s[0] + k1 * s[1]) + (k2 * s[2] + k3 * s[3]));
            store_a(rd1, iv1, p.tq, c, ga_rows(rd1, c)
                  + (k0 * s[4] + k1 * s[5]) + (k2 * s[6] + k3 * s[7]));
            store_a(rd2, iv2, p.tq, c, ga_rows(rd2, c)
                  + (k0 * s[8] + k1 * s[9]) + (k2 * s[10] + k3 * s[11]));
            store_a(rd3, iv3, p.tq, c, ga_rows(rd3, c)
                  + (k0 * s[12] + k1 * s[13]) + (k2 * s[14] + k3 * s[15]));
        }
    }
}

@compute @workgroup_size(WG)
fn attn_bwd_dkdv_panel(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tk, 16u);
    if (!own.ok) { return; }
    let j0 = own.r0;
    let db = D / 4u;
    let krow0 = own.bh * p.tk;
    let klast = vec4<u32>(p.tk - 1u);
    let qo = p.q_off / 4u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    // Per key block a: key indices, offsets in k, v and in dK / dV, kept (and real) keys.
    let jv0 = vec4<u32>(j0 + 0u) + LANE;
    let r0 = krow0 + min(jv0, klast);
    let rk0 = ko + r0 * db;
    let rv0 = vo + r0 * db;
    let rg0 = r0 * db;
    let kk0 = kept4(own.b, j0 + 0u, p.tk);
    let jv1 = vec4<u32>(j0 + 4u) + LANE;
    let r1 = krow0 + min(jv1, klast);
    let rk1 = ko + r1 * db;
    let rv1 = vo + r1 * db;
    let rg1 = r1 * db;
    let kk1 = kept4(own.b, j0 + 4u, p.tk);
    let jv2 = vec4<u32>(j0 + 8u) + LANE;
    let r2 = krow0 + min(jv2, klast);
    let rk2 = ko + r2 * db;
    let rv2 = vo + r2 * db;
    let rg2 = r2 * db;
    let kk2 = kept4(own.b, j0 + 8u, p.tk);
    let jv3 = vec4<u32>(j0 + 12u) + LANE;
    let r3 = krow0 + min(jv3, klast);
    let rk3 = ko + r3 * db;
    let rv3 = vo + r3 * db;
    let rg3 = r3 * db;
    let kk3 = kept4(own.b, j0 + 12u, p.tk);
    if (p.first != 0u) {
        let z = mat4x4<f32>();
        for (var c = 0u; c < db; c++) {
            store_a(rg0, jv0, p.tk, c, z);
            store_b(rg0, jv0, p.tk, c, z);
            store_a(rg1, jv1, p.tk, c, z);
            store_b(rg1, jv1, p.tk, c, z);
            store_a(rg2, jv2, p.tk, c, z);
            store_b(rg2, jv2, p.tk, c, z);
            store_a(rg3, jv3, p.tk, c, z);
            store_b(rg3, jv3, p.tk, c, z);
        }
    }
    // Queries that may see key j0 start at j0 + Tq - Tk (causal); this chunk's are [c0, c1).
    var istart = p.c0;
    if (p.causal != 0u) {
        istart = max(istart, u32(clamp(i32(j0) + i32(p.tq) - i32(p.tk), 0, i32(p.tq))));
    }
    let iend = min(p.c1, p.tq);
    let qrow0 = own.bh * p.tq;
    let qlast = vec4<u32>(p.tq - 1u);
    for (var i = istart; i < iend; i += 16u) {
        let qi0 = vec4<u32>(i + 0u) + LANE;
        let qr0 = qrow0 + min(qi0, qlast);
        let rq0 = qo + qr0 * db;
        let rd0 = qr0 * db;
        let st0 = stats4(qr0);
        let qv0 = qi0 < vec4<u32>(iend);
        let qi1 = vec4<u32>(i + 4u) + LANE;
        let qr1 = qrow0 + min(qi1, qlast);
        let rq1 = qo + qr1 * db;
        let rd1 = qr1 * db;
        let st1 = stats4(qr1);
        let qv1 = qi1 < vec4<u32>(iend);
        let qi2 = vec4<u32>(i + 8u) + LANE;
        let qr2 = qrow0 + min(qi2, qlast);
        let rq2 = qo + qr2 * db;
        let rd2 = qr2 * db;
        let st2 = stats4(qr2);
        let qv2 = qi2 < vec4<u32>(iend);
        let qi3 = vec4<u32>(i + 12u) + LANE;
        let qr3 = qrow0 + min(qi3, qlast);
        let rq3 = qo + qr3 * db;
        let rd3 = qr3 * db;
        let st3 = stats4(qr3);
        let qv3 = qi3 < vec4<u32>(iend);
        var s: Blocks;
        var dp: Blocks;
        for (var c = 0u; c < db; c++) {
            let q0 = rows_of(0u, rq0, c);
            let o0 = rows_of(3u, rd0, c);
            let q1 = rows_of(0u, rq1, c);
            let o1 = rows_of(3u, rd1, c);
            let q2 = rows_of(0u, rq2, c);
            let o2 = rows_of(3u, rd2, c);
            let q3 = rows_of(0u, rq3, c);
            let o3 = rows_of(3u, rd3, c);
            let k0 = transpose(rows_of(1u, rk0, c));
            let v0 = transpose(rows_of(2u, rv0, c));
            s[0] += k0 * q0; s[1] += k0 * q1; s[2] += k0 * q2; s[3] += k0 * q3;
            dp[0] += v0 * o0; dp[1] += v0 * o1; dp[2] += v0 * o2; dp[3] += v0 * o3;
            let k1 = transpose(rows_of(1u, rk1, c));
            let v1 = transpose(rows_of(2u, rv1, c));
            s[4] += k1 * q0; s[5] += k1 * q1; s[6] += k1 * q2; s[7] += k1 * q3;
            dp[4] += v1 * o0; dp[5] += v1 * o1; dp[6] += v1 * o2; dp[7] += v1 * o3;
            let k2 = transpose(rows_of(1u, rk2, c));
            let v2 = transpose(rows_of(2u, rv2, c));
            s[8] += k2 * q0; s[9] += k2 * q1; s[10] += k2 * q2; s[11] += k2 * q3;
            dp[8] += v2 * o0; dp[9] += v2 * o1; dp[10] += v2 * o2; dp[11] += v2 * o3;
            let k3 = transpose(rows_of(1u, rk3, c));
            let v3 = transpose(rows_of(2u, rv3, c));
            s[12] += k3 * q0; s[13] += k3 * q1; s[14] += k3 * q2; s[15] += k3 * q3;
            dp[12] += v3 * o0; dp[13] += v3 * o1; dp[14] += v3 * o2; dp[15] += v3 * o3;
        }
        kv_pds(&s, &dp, 0u, st0[0], st0[1], kv_vis(jv0, kk0, i + 0u, qv0));
        kv_pds(&s, &dp, 1u, st1[0], st1[1], kv_vis(jv0, kk0, i + 4u, qv1));
        kv_pds(&s, &dp, 2u, st2[0], st2[1], kv_vis(jv0, kk0, i + 8u, qv2));
        kv_pds(&s, &dp, 3u, st3[0], st3[1], kv_vis(jv0, kk0, i + 12u, qv3));
        kv_pds(&s, &dp, 4u, st0[0], st0[1], kv_vis(jv1, kk1, i + 0u, qv0));
        kv_pds(&s, &dp, 5u, st1[0], st1[1], kv_vis(jv1, kk1, i + 4u, qv1));
        kv_pds(&s, &dp, 6u, st2[0], st2[1], kv_vis(jv1, kk1, i + 8u, qv2));
        kv_pds(&s, &dp, 7u, st3[0], st3[1], kv_vis(jv1, kk1, i + 12u, qv3));
        kv_pds(&s, &dp, 8u, st0[0], st0[1], kv_vis(jv2, kk2, i + 0u, qv0));
        kv_pds(&s, &dp, 9u, st1[0], st1[1], kv_vis(jv2, kk2, i + 4u, qv1));
        kv_pds(&s, &dp, 10u, st2[0], st2[1], kv_vis(jv2, kk2, i + 8u, qv2));
        kv_pds(&s, &dp, 11u, st3[0], st3[1], kv_vis(jv2, kk2, i + 12u, qv3));
        kv_pds(&s, &dp, 12u, st0[0], st0[1], kv_vis(jv3, kk3, i + 0u, qv0));
        kv_pds(&s, &dp, 13u, st1[0], st1[1], kv_vis(jv3, kk3, i + 4u, qv1));
        kv_pds(&s, &dp, 14u, st2[0], st2[1], kv_vis(jv3, kk3, i + 8u, qv2));
        kv_pds(&s, &dp, 15u, st3[0], st3[1], kv_vis(jv3, kk3, i + 12u, qv3));
        // dV += Pᵀ dO and dK += dSᵀ Q (column r of s / dp[4a + e]: key row r).
        for (var c = 0u; c < db; c++) {
            let q0 = rows_of(0u, rq0, c);
            let o0 = rows_of(3u, rd0, c);
            let q1 = rows_of(0u, rq1, c);
            let o1 = rows_of(3u, rd1, c);
            let q2 = rows_of(0u, rq2, c);
            let o2 = rows_of(3u, rd2, c);
            let q3 = rows_of(0u, rq3, c);
            let o3 = rows_of(3u, rd3, c);
            store_b(rg0, jv0, p.tk, c, gb_rows(rg0, c)
                  + (o0 * s[0] + o1 * s[1]) + (o2 * s[2] + o3 * s[3]));
            store_a(rg0, jv0, p.tk, c, ga_rows(rg0, c)
                  + (q0 * dp[0] + q1 * dp[1]) + (q2 * dp[2] + q3 * dp[3]));
            store_b(rg1, jv1, p.tk, c, gb_rows(rg1, c)
                  + (o0 * s[4] + o1 * s[5]) + (o2 * s[6] + o3 * s[7]));
            store_a(rg1, jv1, p.tk, c, ga_rows(rg1, c)
                  + (q0 * dp[4] + q1 * dp[5]) + (q2 * dp[6] + q3 * dp[7]));
            store_b(rg2, jv2, p.tk, c, gb_rows(rg2, c)
                  + (o0 * s[8] + o1 * s[9]) + (o2 * s[10] + o3 * s[11]));
            store_a(rg2, jv2, p.tk, c, ga_rows(rg2, c)
                  + (q0 * dp[8] + q1 * dp[9]) + (q2 * dp[10] + q3 * dp[11]));
            store_b(rg3, jv3, p.tk, c, gb_rows(rg3, c)
                  + (o0 * s[12] + o1 * s[13]) + (o2 * s[14] + o3 * s[15]));
            store_a(rg3, jv3, p.tk, c, ga_rows(rg3, c)
                  + (q0 * dp[12] + q1 * dp[13]) + (q2 * dp[14] + q3 * dp[15]));
        }
    }
}
