// Fused attention forward, flash-attention tiles (rung `Tiled`): the online softmax of
// forward_block.wgsl (same recurrences, same 4 query rows per invocation held as mat4x4 blocks),
// but a workgroup of WG invocations owns Br = 4 WG consecutive query rows of one head and streams
// the keys through workgroup memory in tiles of BC rows:
//
//   for each key tile [t0, t0 + BC) of this dispatch's chunk (skipping tiles past the causal
//   limit of the workgroup's last query):
//     every invocation copies its share of K[t0..t0+BC) and V[t0..t0+BC) into kt, vt  (vec4)
//     barrier
//     each invocation: for keys j = t0, t0+4, ..: St = sum_c transpose(Q_c) K_c  (4 x 4 block)
//       m' = max(m, St),  c = exp(m - m'),  P = exp(St - m'),  l' = l c + sum P,
//       acc_c' = acc_c diag(c) + V_c Pᵀ                    (K_c, V_c read from kt, vt)
//     barrier (the next copy must wait until every invocation is done with this tile)
//
// Each staged K / V value is then read by all WG invocations (4 WG query rows) instead of being
// fetched from global memory once per invocation, and the addresses into kt / vt are the same in
// every invocation (uniform), which a CPU driver can serve with one scalar load. Two barriers per
// tile: on lavapipe (~15 us each) big tiles (BC) pay, on a real GPU a larger Br does.
//
// Needs D % 4 == 0 and 16-byte aligned q, k, v (the launcher checks). Loop-budget chunks
// [c0, c1) of whole tiles per dispatch, with (m, l) and the unnormalised O carried in global
// memory between them, as in forward_block.wgsl.

// #include attention/forward_io.wgsl

override WG: u32 = 16u;      // invocations per workgroup; each owns 4 query rows
override BC: u32 = 64u;      // keys per tile (a multiple of 4)
override TILE: u32 = 512u;   // vec4 per staged tile: BC * D / 4 (set by the launcher)
const MAX_DB: u32 = MAX_D / 4u;

var<workgroup> kt: array<vec4<f32>, TILE>;   // (BC, D) keys t0 .. t0 + BC of this head
var<workgroup> vt: array<vec4<f32>, TILE>;   // (BC, D) values

// Which of the 4 queries (limits `lim`: last visible key of each) see key j.
fn visible(b: u32, j: u32, kend: u32, lim: vec4<i32>) -> vec4<bool> {
    var ok = j < kend;
    if (ok && p.has_mask != 0u) {
        ok = keep[p.m_off + b * p.tk + j] != 0.0;
    }
    return vec4<bool>(ok) & (vec4<i32>(i32(j)) <= lim);
}

@compute @workgroup_size(WG)
fn attn_fwd_tiled(@builtin(workgroup_id) wid3: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let br = 4u * WG;
    let qtiles = (p.tq + br - 1u) / br;
    let wid = wid3.x + wid3.y * nwg.x;   // uniform across the workgroup
    if (wid >= p.bh * qtiles) {
        return;
    }
    let bh = wid / qtiles;
    let tile0 = (wid % qtiles) * br;
    let i0 = tile0 + 4u * lid;
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
    // Keys past the last query of the workgroup's causal limit are skipped, whole tiles at once
    // (a uniform bound: every invocation runs the same tiles and reaches the same barriers).
    var wend = kend;
    if (p.causal != 0u) {
        let wlast = i32(min(tile0 + br, p.tq)) - 1 + i32(p.tk) - i32(p.tq);
        wend = min(kend, u32(clamp(wlast + 1, 0, i32(p.tk))));
    }
    let krow0 = bh * p.tk;
    let klast = p.tk - 1u;
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    for (var t0 = p.c0; t0 < wend; t0 += BC) {
        // Stage keys t0 .. t0 + BC (clamped to the last key: masked below, never used).
        for (var e = lid; e < BC * db; e += WG) {
            let r = (krow0 + min(t0 + e / db, klast)) * db + e % db;
            kt[e] = k4[ko + r];
            vt[e] = v4[vo + r];
        }
        workgroupBarrier();
        let n = min(BC, wend - t0);
        for (var jj = 0u; jj < n; jj += 4u) {
            let j = t0 + jj;
            let a = jj * db;
            var st = mat4x4<f32>();
            for (var c = 0u; c < db; c++) {
                st += qt[c] * mat4x4<f32>(kt[a + c], kt[a + db + c], kt[a + 2u * db + c],
                                          kt[a + 3u * db + c]);
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
                let ac = acc[c];
                let vc = mat4x4<f32>(vt[a + c], vt[a + db + c], vt[a + 2u * db + c],
                                     vt[a + 3u * db + c]);
                acc[c] = mat4x4<f32>(ac[0] * cf.x, ac[1] * cf.y, ac[2] * cf.z, ac[3] * cf.w)
                    + vc * pm;
            }
        }
        workgroupBarrier();
    }
    let rows = min(4u, max(p.tq, i0) - i0);
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
