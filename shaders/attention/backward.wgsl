// Fused attention backward from the saved log-sum-exp rows L (no (Tq x Tk) matrix is stored).
// With s_ij = scale q_i . k_j, P_ij = exp(s_ij - L_i) recomputed, delta_i = dO_i . O_i
// (backward_prep.wgsl, in `stats`) and masked pairs skipped:
//
//   dV_j = sum_i P_ij dO_i
//   dP_ij = dO_i . v_j,   dS_ij = P_ij (dP_ij - delta_i)
//   dQ_i = scale sum_j dS_ij k_j          (attn_bwd_dq: one invocation per query row)
//   dK_j = scale sum_i dS_ij q_i          (attn_bwd_dkdv: one invocation per key row)
//
// Two passes, each owning the rows it writes, so no float atomics are needed (WGSL has none);
// each recomputes P, which costs one more q . k per pair than a single pass would. The loop
// budget (65,535 iterations per invocation on lavapipe) is kept by chunking the inner dimension
// over dispatches, [c0, c1): the gradients accumulate in their output buffers between chunks.

// #include attention/params.wgsl
// #include common/grid.wgsl

override WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> q: array<f32>;               // (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> kt: array<f32>;              // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> vt: array<f32>;              // v (B, H, Tk, D)
@group(0) @binding(4) var<storage, read> keep: array<f32>;            // (B, Tk), 1 keeps a key
@group(0) @binding(5) var<storage, read> dout: array<f32>;            // dO (B, H, Tq, D)
@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;     // (B, H, Tq) (L, delta)
@group(0) @binding(7) var<storage, read_write> ga: array<f32>;        // dQ (B, H, Tq, D) or dK (B, H, Tk, D)
@group(0) @binding(8) var<storage, read_write> gb: array<f32>;        // dV (B, H, Tk, D)

@compute @workgroup_size(WG)
fn attn_bwd_dq(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);   // query row (b, h, i)
    let own = owned_rows(r, p.tq, 1u);
    if (!own.ok) { return; }
    let i = own.r0;
    var qr: array<f32, MAX_D>;
    var gr: array<f32, MAX_D>;
    var acc: array<f32, MAX_D>;
    for (var d = 0u; d < D; d++) {
        qr[d] = q[p.q_off + r * D + d] * p.scale;
        gr[d] = dout[r * D + d];
        if (p.first == 0u) {
            acc[d] = ga[r * D + d];
        }
    }
    let st = stats[r];
    let kend = min(p.c1, key_end(i));
    for (var j = p.c0; j < kend; j++) {
        if (p.has_mask != 0u && keep[p.m_off + own.b * p.tk + j] == 0.0) {
            continue;
        }
        let kb = p.k_off + (own.bh * p.tk + j) * D;
        let vb = p.v_off + (own.bh * p.tk + j) * D;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D; d++) {
            s += qr[d] * kt[kb + d];
            dp += gr[d] * vt[vb + d];
        }
        let ds = exp(s - st.x) * (dp - st.y) * p.scale;
        for (var d = 0u; d < D; d++) {
            acc[d] += ds * kt[kb + d];
        }
    }
    for (var d = 0u; d < D; d++) {
        ga[r * D + d] = acc[d];
    }
}

@compute @workgroup_size(WG)
fn attn_bwd_dkdv(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);   // key row (b, h, j)
    let own = owned_rows(r, p.tk, 1u);
    if (!own.ok) { return; }
    let j = own.r0;
    var kr: array<f32, MAX_D>;
    var vr: array<f32, MAX_D>;
    var dk: array<f32, MAX_D>;
    var dv: array<f32, MAX_D>;
    for (var d = 0u; d < D; d++) {
        kr[d] = kt[p.k_off + r * D + d] * p.scale;
        vr[d] = vt[p.v_off + r * D + d];
        if (p.first == 0u) {
            dk[d] = ga[r * D + d];
            dv[d] = gb[r * D + d];
        }
    }
    var istart = max(p.c0, query_start(j));
    if (p.has_mask != 0u && keep[p.m_off + own.b * p.tk + j] == 0.0) {
        istart = p.c1;   // a masked key gets no gradient
    }
    for (var i = istart; i < p.c1; i++) {
        let row = own.bh * p.tq + i;
        let qb = p.q_off + row * D;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D; d++) {
            s += kr[d] * q[qb + d];
            dp += vr[d] * dout[row * D + d];
        }
        let st = stats[row];
        let pij = exp(s - st.x);
        let ds = pij * (dp - st.y) * p.scale;
        for (var d = 0u; d < D; d++) {
            dv[d] += pij * dout[row * D + d];
            dk[d] += ds * q[qb + d];
        }
    }
    for (var d = 0u; d < D; d++) {
        ga[r * D + d] = dk[d];
        gb[r * D + d] = dv[d];
    }
}
