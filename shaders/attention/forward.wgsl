// Fused attention forward, flash-attention style with one invocation per query row:
//
//   O_i = sum_j softmax_j(s_ij) v_j,  s_ij = scale q_i . k_j,  L_i = logsumexp_j s_ij
//
// over the visible keys j (causal / padding masks). Each invocation keeps q_i and an unnormalised
// accumulator acc (D values) in registers and streams the keys once with the online softmax
// (common/online_softmax.wgsl): for a running summary (m, l) and a new score s,
//
//   m' = max(m, s),  c = exp(m - m'),  pj = exp(s - m'),  l' = l c + pj,  acc' = acc c + pj v_j
//
// and at the end O_i = acc / l, L_i = m + ln l. The (Tq x Tk) score matrix is never stored.
// K and V are read straight from global memory: the invocations of a workgroup walk the same keys
// in step, so on a CPU (lavapipe) they hit the cache, and no workgroup barrier is paid.
//
// Mesa's lavapipe ends an invocation's loops after 65,535 iterations in total, so the launcher
// splits the keys into chunks [c0, c1) of one dispatch each; between chunks the running (m, l)
// lives in `state` and acc in `o`. A row with no visible key writes O = 0 and L = -inf.

// #include attention/params.wgsl
// #include common/online_softmax.wgsl
// #include common/grid.wgsl

// binding 1: x = q (B, H, Tq, D), declared by common/online_softmax.wgsl
@group(0) @binding(2) var<storage, read> kt: array<f32>;             // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> vt: array<f32>;             // v (B, H, Tk, D)
@group(0) @binding(4) var<storage, read> keep: array<f32>;           // (B, Tk), 1 keeps a key
@group(0) @binding(5) var<storage, read_write> o: array<f32>;        // (B, H, Tq, D)
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;      // L (B, H, Tq)
@group(0) @binding(7) var<storage, read_write> state: array<vec2<f32>>; // (B, H, Tq) running (m, l)

@compute @workgroup_size(WG)
fn attn_fwd(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);   // row (b, h, i) of q
    let own = owned_rows(r, p.tq, 1u);
    if (!own.ok) { return; }
    let i = own.r0;
    var qr: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    for (var d = 0u; d < D; d++) {
        qr[d] = x[p.q_off + r * D + d] * p.scale;
    }
    var ms = lse_empty();
    if (p.first == 0u) {
        ms = state[r];
        for (var d = 0u; d < D; d++) {
            acc[d] = o[r * D + d];
        }
    }
    let kend = min(p.c1, key_end(i));
    for (var j = p.c0; j < kend; j++) {
        if (p.has_mask != 0u && keep[p.m_off + own.b * p.tk + j] == 0.0) {
            continue;
        }
        let kb = p.k_off + (own.bh * p.tk + j) * D;
        var s = 0.0;
        for (var d = 0u; d < D; d++) {
            s += qr[d] * kt[kb + d];
        }
        let next = lse_push(ms, s);
        let c = exp(ms.x - next.x);
        let pj = exp(s - next.x);
        ms = next;
        let vb = p.v_off + (own.bh * p.tk + j) * D;
        for (var d = 0u; d < D; d++) {
            acc[d] = acc[d] * c + pj * vt[vb + d];
        }
    }
    if (p.last == 0u) {
        state[r] = ms;
        for (var d = 0u; d < D; d++) {
            o[r * D + d] = acc[d];
        }
        return;
    }
    // No visible key: l = 0, so O = 0 and L = ln 0 = -inf.
    let inv = select(0.0, 1.0 / ms.y, ms.y > 0.0);
    for (var d = 0u; d < D; d++) {
        o[r * D + d] = acc[d] * inv;
    }
    lse[r] = select(bitcast<f32>(0xff800000u), ms.x + log(ms.y), ms.y > 0.0);
}
