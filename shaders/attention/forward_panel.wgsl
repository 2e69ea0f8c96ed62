// Fused attention forward, panel-blocked: each invocation owns 16 query rows and walks the keys
// 32 at a time, so one step is two 16 x 32 x D products, held like matmul/vec4.wgsl holds its
// output block (32 mat4x4 at constant indices, so they stay in registers; the probabilities
// overwrite the scores in place, which halves the live registers and measured faster):
//
//   S      = scale Q_i K_jᵀ                 (16 x 32: 32 blocks of 4 queries x 4 keys)
//   m'     = max(m, rowmax S),  c = exp(m - m'),  P = exp(S - m') (0 where masked)
//   l'     = l c + rowsum P,    O' = diag(c) O + P V_j     (O read and written in place)
//   O_i    = O / l,  L_i = m + ln l                        (after the last chunk)
//
// Why this shape on a CPU driver (lavapipe): a load or store whose address differs per
// invocation costs a loop over the SIMD lanes, and so does every access to a private array at a
// loop-variable index (it lives in scratch memory). The block rung (forward_block.wgsl) keeps Q
// and O in such arrays and does 4 x 4 x 4 FMAs per 32 loaded floats. Here nothing is indexed by
// a loop variable: per 4 columns of D a step loads 4 x 48 floats of Q and K for 2,048 FMAs, and
// 4 x 32 of V plus 4 x 16 of O in and out for another 2,048; the running output O stays in the
// output buffer (rows this invocation owns, so no other invocation touches them).
//
// Shapes: q, o (B, H, Tq, D), k, v (B, H, Tk, D) as vec4 rows (D % 4 == 0, 16-byte aligned: the
// launcher checks); keep (B, Tk); lse, state (B, H, Tq). Invocation t owns head t / blocks and
// rows 16 (t % blocks) .. + 16, blocks = ceil(Tq / 16); rows past Tq are computed from row
// Tq - 1 and never stored; keys past the end are computed from key Tk - 1 and masked.
// Keys [c0, c1) per dispatch keep the loop budget; (m, l) carry over in `state` between chunks
// and the unnormalised O in `o`, as in forward_block.wgsl.

// #include attention/forward_io.wgsl
// #include common/grid.wgsl

override WG: u32 = 16u;

// Columns 4c..4c+3 of 4 q rows (vec4 indices `r`), transposed: column e = component e of each row.
fn q_block(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(q4[r.x + c], q4[r.y + c], q4[r.z + c], q4[r.w + c]));
}

// Columns 4c..4c+3 of 4 k rows: column t = key t.
fn k_block(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(k4[r.x + c], k4[r.y + c], k4[r.z + c], k4[r.w + c]);
}

// Columns 4c..4c+3 of 4 v rows: column t = key t.
fn v_block(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(v4[r.x + c], v4[r.y + c], v4[r.z + c], v4[r.w + c]);
}

// Whether key j is in this chunk and kept by the key mask.
fn kept(b: u32, j: u32, kend: u32) -> bool {
    var ok = j < kend;
    if (ok && p.has_mask != 0u) {
        ok = keep[p.m_off + b * p.tk + j] != 0.0;
    }
    return ok;
}

// Keys j .. j + 3 seen by the chunk and mask.
fn kept4(b: u32, j: u32, kend: u32) -> vec4<bool> {
    return vec4<bool>(kept(b, j, kend), kept(b, j + 1u, kend), kept(b, j + 2u, kend),
                      kept(b, j + 3u, kend));
}

// A 4 x 4 score block (column t = key j + t, component = query row) scaled, with hidden keys
// (chunk, mask, or past a row's causal limit `lim`) set to NEG.
fn masked(s: mat4x4<f32>, kv: vec4<bool>, j: u32, lim: vec4<i32>) -> mat4x4<f32> {
    let jj = i32(j);
    return mat4x4<f32>(
        select(vec4<f32>(NEG), s[0] * p.scale, vec4<bool>(kv.x) & (vec4<i32>(jj) <= lim)),
        select(vec4<f32>(NEG), s[1] * p.scale, vec4<bool>(kv.y) & (vec4<i32>(jj + 1) <= lim)),
        select(vec4<f32>(NEG), s[2] * p.scale, vec4<bool>(kv.z) & (vec4<i32>(jj + 2) <= lim)),
        select(vec4<f32>(NEG), s[3] * p.scale, vec4<bool>(kv.w) & (vec4<i32>(jj + 3) <= lim)));
}

fn colmax(x: mat4x4<f32>) -> vec4<f32> {
    return max(max(x[0], x[1]), max(x[2], x[3]));
}

// exp(x - m) per column, 0 where x is masked; transposed so column r = query row r.
fn probs(x: mat4x4<f32>, m: vec4<f32>) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    return transpose(mat4x4<f32>(
        select(z, exp(x[0] - m), x[0] > vec4<f32>(NEG)),
        select(z, exp(x[1] - m), x[1] > vec4<f32>(NEG)),
        select(z, exp(x[2] - m), x[2] > vec4<f32>(NEG)),
        select(z, exp(x[3] - m), x[3] > vec4<f32>(NEG))));
}

// Row sums of a transposed probability block (column r = row r).
fn rowsum(pt: mat4x4<f32>) -> vec4<f32> {
    let one = vec4<f32>(1.0);
    return vec4<f32>(dot(pt[0], one), dot(pt[1], one), dot(pt[2], one), dot(pt[3], one));
}

// The online-softmax step of the 4-row block `a` over 32 keys: masks and scales its score
// blocks s[8a ..] (keys j + 4e .., kept `kv[e]`, row limits `lim`), updates (m, l), writes the
// transposed probabilities over them in place, returns c = exp(m - m').
fn online(s: ptr<function, array<mat4x4<f32>, 32>>, a: u32,
          kv: ptr<function, array<vec4<bool>, 8>>, j: u32, lim: vec4<i32>,
          m: ptr<function, vec4<f32>>, l: ptr<function, vec4<f32>>) -> vec4<f32> {
    let x0 = masked((*s)[8u * a], (*kv)[0], j, lim);
    let x1 = masked((*s)[8u * a + 1u], (*kv)[1], j + 4u, lim);
    let x2 = masked((*s)[8u * a + 2u], (*kv)[2], j + 8u, lim);
    let x3 = masked((*s)[8u * a + 3u], (*kv)[3], j + 12u, lim);
    let x4 = masked((*s)[8u * a + 4u], (*kv)[4], j + 16u, lim);
    let x5 = masked((*s)[8u * a + 5u], (*kv)[5], j + 20u, lim);
    let x6 = masked((*s)[8u * a + 6u], (*kv)[6], j + 24u, lim);
    let x7 = masked((*s)[8u * a + 7u], (*kv)[7], j + 28u, lim);
    let mx = max(*m, max(max(max(colmax(x0), colmax(x1)), max(colmax(x2), colmax(x3))),
                         max(max(colmax(x4), colmax(x5)), max(colmax(x6), colmax(x7)))));
    let cf = exp(*m - mx);
    (*s)[8u * a] = probs(x0, mx);
    (*s)[8u * a + 1u] = probs(x1, mx);
    (*s)[8u * a + 2u] = probs(x2, mx);
    (*s)[8u * a + 3u] = probs(x3, mx);
    (*s)[8u * a + 4u] = probs(x4, mx);
    (*s)[8u * a + 5u] = probs(x5, mx);
    (*s)[8u * a + 6u] = probs(x6, mx);
    (*s)[8u * a + 7u] = probs(x7, mx);
    let sum = ((rowsum((*s)[8u * a]) + rowsum((*s)[8u * a + 1u]))
            + (rowsum((*s)[8u * a + 2u]) + rowsum((*s)[8u * a + 3u])))
            + ((rowsum((*s)[8u * a + 4u]) + rowsum((*s)[8u * a + 5u]))
            + (rowsum((*s)[8u * a + 6u]) + rowsum((*s)[8u * a + 7u])));
    *l = *l * cf + sum;
    *m = mx;
    return cf;
}

// Columns 4c..4c+3 of 4 rows of O (vec4 indices `r`): column r = row r.
fn o_load(r: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(o4[r.x + c], o4[r.y + c], o4[r.z + c], o4[r.w + c]);
}

// Store the rows of `x` whose query index (i) is below Tq.
fn o_store(r: vec4<u32>, i: vec4<u32>, c: u32, x: mat4x4<f32>) {
    if (i.x < p.tq) { o4[r.x + c] = x[0]; }
    if (i.y < p.tq) { o4[r.y + c] = x[1]; }
    if (i.z < p.tq) { o4[r.z + c] = x[2]; }
    if (i.w < p.tq) { o4[r.w + c] = x[3]; }
}

fn scale_cols(x: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(x[0] * f.x, x[1] * f.y, x[2] * f.z, x[3] * f.w);
}

// O' = diag(c) O + P V for the 4-row block `a` (O columns = rows; pt[8a + e] column r = row r's
// probabilities of keys 4e ..; vb[e] column t = value row of key 4e + t).
fn o_update(o: mat4x4<f32>, cf: vec4<f32>, vb: ptr<function, array<mat4x4<f32>, 8>>,
            pt: ptr<function, array<mat4x4<f32>, 32>>, a: u32) -> mat4x4<f32> {
    let pv = ((*vb)[0] * (*pt)[8u * a] + (*vb)[1] * (*pt)[8u * a + 1u])
           + ((*vb)[2] * (*pt)[8u * a + 2u] + (*vb)[3] * (*pt)[8u * a + 3u])
           + ((*vb)[4] * (*pt)[8u * a + 4u] + (*vb)[5] * (*pt)[8u * a + 5u])
           + ((*vb)[6] * (*pt)[8u * a + 6u] + (*vb)[7] * (*pt)[8u * a + 7u]);
    return scale_cols(o, cf) + pv;
}

fn state_store(ri: vec4<u32>, i: vec4<u32>, m: vec4<f32>, l: vec4<f32>) {
    if (i.x < p.tq) { state[ri.x] = vec2<f32>(m.x, l.x); }
    if (i.y < p.tq) { state[ri.y] = vec2<f32>(m.y, l.y); }
    if (i.z < p.tq) { state[ri.z] = vec2<f32>(m.z, l.z); }
    if (i.w < p.tq) { state[ri.w] = vec2<f32>(m.w, l.w); }
}

fn lse_store(ri: vec4<u32>, i: vec4<u32>, m: vec4<f32>, l: vec4<f32>) {
    // No visible key: l = 0, so L = ln 0 = -inf.
    let ls = select(vec4<f32>(bitcast<f32>(0xff800000u)), m + log(l), l > vec4<f32>(0.0));
    if (i.x < p.tq) { lse[ri.x] = ls.x; }
    if (i.y < p.tq) { lse[ri.y] = ls.y; }
    if (i.z < p.tq) { lse[ri.z] = ls.z; }
    if (i.w < p.tq) { lse[ri.w] = ls.w; }
}

fn state_load(ri: vec4<u32>, m: ptr<function, vec4<f32>>, l: ptr<function, vec4<f32>>) {
    let s0 = state[ri.x];
    let s1 = state[ri.y];
    let s2 = state[ri.z];
    let s3 = state[ri.w];
    *m = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
    *l = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
}

@compute @workgroup_size(WG)
fn attn_fwd_panel(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let own = owned_rows(grid_index(gid, nwg, WG), p.tq, 16u);
    if (!own.ok) { return; }
    let lane = vec4<u32>(0u, 1u, 2u, 3u);
    let db = D / 4u;
    // Query indices of the 4 row blocks, their (clamped) rows and vec4 offsets in q and o.
    let i_0 = vec4<u32>(own.r0) + lane;
    let i_1 = i_0 + 4u;
    let i_2 = i_0 + 8u;
    let i_3 = i_0 + 12u;
    let last = vec4<u32>(p.tq - 1u);
    let row0 = own.bh * p.tq;
    let ri0 = row0 + min(i_0, last);
    let ri1 = row0 + min(i_1, last);
    let ri2 = row0 + min(i_2, last);
    let ri3 = row0 + min(i_3, last);
    let qo = p.q_off / 4u;
    let rq0 = qo + ri0 * db;
    let rq1 = qo + ri1 * db;
    let rq2 = qo + ri2 * db;
    let rq3 = qo + ri3 * db;
    let ro0 = ri0 * db;
    let ro1 = ri1 * db;
    let ro2 = ri2 * db;
    let ro3 = ri3 * db;
    var m0 = vec4<f32>(NEG);
    var m1 = m0;
    var m2 = m0;
    var m3 = m0;
    var l0 = vec4<f32>(0.0);
    var l1 = l0;
    var l2 = l0;
    var l3 = l0;
    if (p.first == 0u) {
        state_load(ri0, &m0, &l0);
        state_load(ri1, &m1, &l1);
        state_load(ri2, &m2, &l2);
        state_load(ri3, &m3, &l3);
    }
    // Last visible key of each row: causal (end-aligned) or Tk - 1; the walk ends after the
    // last one of the invocation's last real row.
    let shift = i32(p.tk) - i32(p.tq);
    var lim0 = vec4<i32>(i32(p.tk) - 1);
    var lim1 = lim0;
    var lim2 = lim0;
    var lim3 = lim0;
    var top = i32(p.tk) - 1;
    if (p.causal != 0u) {
        lim0 = vec4<i32>(i_0) + shift;
        lim1 = vec4<i32>(i_1) + shift;
        lim2 = vec4<i32>(i_2) + shift;
        lim3 = vec4<i32>(i_3) + shift;
        top = i32(min(own.r0 + 15u, p.tq - 1u)) + shift;
    }
    let kend = min(p.c1, p.tk);
    let jend = min(kend, u32(clamp(top + 1, 0, i32(p.tk))));
    let krow0 = own.bh * p.tk;
    let klast = vec4<u32>(p.tk - 1u);
    let ko = p.k_off / 4u;
    let vo = p.v_off / 4u;
    var kr: array<vec4<u32>, 8>;
    var kv: array<vec4<bool>, 8>;
    var vb: array<mat4x4<f32>, 8>;
    for (var j = p.c0; j < jend; j += 32u) {
        // Row offsets of keys j .. j + 31 (clamped at the end: computed, then masked) and
        // whether the chunk and mask keep them.
        kr[0] = (krow0 + min(vec4<u32>(j + 0u) + lane, klast)) * db;
        kr[1] = (krow0 + min(vec4<u32>(j + 4u) + lane, klast)) * db;
        kr[2] = (krow0 + min(vec4<u32>(j + 8u) + lane, klast)) * db;
        kr[3] = (krow0 + min(vec4<u32>(j + 12u) + lane, klast)) * db;
        kr[4] = (krow0 + min(vec4<u32>(j + 16u) + lane, klast)) * db;
        kr[5] = (krow0 + min(vec4<u32>(j + 20u) + lane, klast)) * db;
        kr[6] = (krow0 + min(vec4<u32>(j + 24u) + lane, klast)) * db;
        kr[7] = (krow0 + min(vec4<u32>(j + 28u) + lane, klast)) * db;
        kv[0] = kept4(own.b, j + 0u, kend);
        kv[1] = kept4(own.b, j + 4u, kend);
        kv[2] = kept4(own.b, j + 8u, kend);
        kv[3] = kept4(own.b, j + 12u, kend);
        kv[4] = kept4(own.b, j + 16u, kend);
        kv[5] = kept4(own.b, j + 20u, kend);
        kv[6] = kept4(own.b, j + 24u, kend);
        kv[7] = kept4(own.b, j + 28u, kend);
        // S: s[8a + e] = rows 4a.. x keys 4e.. (column = key, component = row).
        var s: array<mat4x4<f32>, 32>;
        for (var c = 0u; c < db; c++) {
            let k0 = k_block(ko + kr[0], c);
            let k1 = k_block(ko + kr[1], c);
            let k2 = k_block(ko + kr[2], c);
            let k3 = k_block(ko + kr[3], c);
            let k4 = k_block(ko + kr[4], c);
            let k5 = k_block(ko + kr[5], c);
            let k6 = k_block(ko + kr[6], c);
            let k7 = k_block(ko + kr[7], c);
            let q0 = q_block(rq0, c);
            s[0] += q0 * k0;  s[1] += q0 * k1;  s[2] += q0 * k2;  s[3] += q0 * k3;
            s[4] += q0 * k4;  s[5] += q0 * k5;  s[6] += q0 * k6;  s[7] += q0 * k7;
            let q1 = q_block(rq1, c);
            s[8] += q1 * k0;  s[9] += q1 * k1;  s[10] += q1 * k2;  s[11] += q1 * k3;
            s[12] += q1 * k4;  s[13] += q1 * k5;  s[14] += q1 * k6;  s[15] += q1 * k7;
            let q2 = q_block(rq2, c);
            s[16] += q2 * k0;  s[17] += q2 * k1;  s[18] += q2 * k2;  s[19] += q2 * k3;
            s[20] += q2 * k4;  s[21] += q2 * k5;  s[22] += q2 * k6;  s[23] += q2 * k7;
            let q3 = q_block(rq3, c);
            s[24] += q3 * k0;  s[25] += q3 * k1;  s[26] += q3 * k2;  s[27] += q3 * k3;
            s[28] += q3 * k4;  s[29] += q3 * k5;  s[30] += q3 * k6;  s[31] += q3 * k7;
        }
        let cf0 = online(&s, 0u, &kv, j, lim0, &m0, &l0);
        let cf1 = online(&s, 1u, &kv, j, lim1, &m1, &l1);
        let cf2 = online(&s, 2u, &kv, j, lim2, &m2, &l2);
        let cf3 = online(&s, 3u, &kv, j, lim3, &m3, &l3);
        // O' = diag(c) O + P V, 4 columns at a time; O starts at 0 on the first step.
        let fresh = p.first != 0u && j == p.c0;
        for (var c = 0u; c < db; c++) {
            vb[0] = v_block(vo + kr[0], c);
            vb[1] = v_block(vo + kr[1], c);
            vb[2] = v_block(vo + kr[2], c);
            vb[3] = v_block(vo + kr[3], c);
            vb[4] = v_block(vo + kr[4], c);
            vb[5] = v_block(vo + kr[5], c);
            vb[6] = v_block(vo + kr[6], c);
            vb[7] = v_block(vo + kr[7], c);
            var o0 = mat4x4<f32>();
            var o1 = mat4x4<f32>();
            var o2 = mat4x4<f32>();
            var o3 = mat4x4<f32>();
            if (!fresh) {
                o0 = o_load(ro0, c);
                o1 = o_load(ro1, c);
                o2 = o_load(ro2, c);
                o3 = o_load(ro3, c);
            }
            o_store(ro0, i_0, c, o_update(o0, cf0, &vb, &s, 0u));
            o_store(ro1, i_1, c, o_update(o1, cf1, &vb, &s, 1u));
            o_store(ro2, i_2, c, o_update(o2, cf2, &vb, &s, 2u));
            o_store(ro3, i_3, c, o_update(o3, cf3, &vb, &s, 3u));
        }
    }
    // O holds data if a step ran here or an earlier chunk wrote it; else it is still unset.
    let have = jend > p.c0 || p.first == 0u;
    if (p.last == 0u) {
        state_store(ri0, i_0, m0, l0);
        state_store(ri1, i_1, m1, l1);
        state_store(ri2, i_2, m2, l2);
        state_store(ri3, i_3, m3, l3);
        if (!have) {
            for (var c = 0u; c < db; c++) {
                let z = mat4x4<f32>();
                o_store(ro0, i_0, c, z);
                o_store(ro1, i_1, c, z);
                o_store(ro2, i_2, c, z);
                o_store(ro3, i_3, c, z);
            }
        }
        return;
    }
    lse_store(ri0, i_0, m0, l0);
    lse_store(ri1, i_1, m1, l1);
    lse_store(ri2, i_2, m2, l2);
    lse_store(ri3, i_3, m3, l3);
    // O = O / l (0 for a row with no visible key).
    let z = vec4<f32>(0.0);
    let n0 = select(z, 1.0 / l0, l0 > z);
    let n1 = select(z, 1.0 / l1, l1 > z);
    let n2 = select(z, 1.0 / l2, l2 > z);
    let n3 = select(z, 1.0 / l3, l3 > z);
    for (var c = 0u; c < db; c++) {
        var o0 = mat4x4<f32>();
        var o1 = mat4x4<f32>();
        var o2 = mat4x4<f32>();
        var o3 = mat4x4<f32>();
        if (have) {
            o0 = o_load(ro0, c);
            o1 = o_load(ro1, c);
            o2 = o_load(ro2, c);
            o3 = o_load(ro3, c);
        }
        o_store(ro0, i_0, c, scale_cols(o0, n0));
        o_store(ro1, i_1, c, scale_cols(o1, n1));
        o_store(ro2, i_2, c, scale_cols(o2, n2));
        o_store(ro3, i_3, c, scale_cols(o3, n3));
    }
}
