// Fused per-step gate math of the recurrent cells (RNN tanh, LSTM, GRU), forward and backward.
//
// The host precomputes, per layer, gi = x W_ih^T + b_ih for all steps (one matmul) and, per step,
// gh = h_{t-1} W_hh^T (one matmul). These kernels do everything else of one step, one
// invocation per (b, j) with j < H, gate blocks in PyTorch order (G = 1, 4, 3):
//
//   RNN   h = tanh(gi + gh + b_hh)
//   LSTM  i, f, g, o = sig, sig, tanh, sig of (gi_k + gh_k + b_hh_k)
//         c = f * c_prev + i * g        h = o * tanh(c)
//   GRU   r = sig(gi_r + gh_r + b_hr)   z = sig(gi_z + gh_z + b_hz)
//         hn = gh_n + b_hn              n = tanh(gi_n + r * hn)
//         h = (1 - z) * n + z * h_prev
//
// Layouts (contiguous, each from its own element offset, PyTorch order):
//   gi, dgi, dgh  (B, T, G*H)     gh (B, G*H)     b_hh (G*H)
//   state         (B, T + 1, S*H) slot 0 = initial state, slot t + 1 = state after step t;
//                                 S = 2 for LSTM ([h | c]), else 1
//   gates         (B, T, 4*H)     saved for backward: LSTM i, f, g, o; GRU r, z, n, hn
//   g             (B, T + 1, S*H) upstream gradient of state
//   dhrec, carry  (B, H)          dhrec = dgh_{t+1} W_hh (matmul by the host);
//                                 carry = dc (LSTM) or z * dh (GRU) from step t + 1
//
// Backward of step t (dh, dc: total gradient of h_t, c_t; the *_pre are gradients of the
// pre-activations, written to dgi, and to dgh where the recurrent path differs):
//   RNN   a_pre = dh * (1 - h^2)
//   LSTM  dc += dh * o * (1 - tanh(c)^2)
//         i_pre = dc * g * i (1 - i)     f_pre = dc * c_prev * f (1 - f)
//         g_pre = dc * i * (1 - g^2)     o_pre = dh * tanh(c) * o (1 - o)     carry = dc * f
//   GRU   n_pre = dh * (1 - z) * (1 - n^2)    z_pre = dh * (h_prev - n) * z (1 - z)
//         r_pre = n_pre * hn * r (1 - r)      carry = dh * z
//         dgi = (r_pre, z_pre, n_pre)         dgh = (r_pre, z_pre, n_pre * r)
//
// No loops: each invocation does a fixed amount of work, so llvmpipe's loop budget never bites;
// the launcher spreads B*H invocations over a 2-D grid (common/grid.wgsl).

// #include common/grid.wgsl
// #include common/math.wgsl

struct RnnParams {
    batch: u32,    // B
    steps: u32,    // T
    hidden: u32,   // H
    t: u32,        // the step, 0 <= t < T
    o1: u32,       // element offset of the buffer at binding 1
    o2: u32,       // ... binding 2
    o3: u32,       // ... binding 3
    o4: u32,       // ... binding 4
    o5: u32,       // ... binding 5
    o6: u32,       // ... binding 6
    o7: u32,       // ... binding 7
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> P: RnnParams;

// Forward bindings.
@group(0) @binding(1) var<storage, read> gi: array<f32>;           // (B, T, G*H)
@group(0) @binding(2) var<storage, read> gh: array<f32>;           // (B, G*H)
@group(0) @binding(3) var<storage, read> bhh: array<f32>;          // (G*H)
@group(0) @binding(4) var<storage, read_write> state: array<f32>;  // (B, T + 1, S*H)
@group(0) @binding(5) var<storage, read_write> gates: array<f32>;  // (B, T, 4*H)

// Backward bindings.
@group(0) @binding(1) var<storage, read> g: array<f32>;              // (B, T + 1, S*H)
@group(0) @binding(2) var<storage, read> st: array<f32>;             // (B, T + 1, S*H)
@group(0) @binding(3) var<storage, read> dhrec: array<f32>;          // (B, H)
@group(0) @binding(4) var<storage, read_write> dgi: array<f32>;      // (B, T, G*H)
@group(0) @binding(5) var<storage, read_write> carry: array<f32>;    // (B, H)
@group(0) @binding(6) var<storage, read> saved: array<f32>;          // (B, T, 4*H)
@group(0) @binding(7) var<storage, read_write> dgh: array<f32>;      // (B, T, G*H)

// (b, j) of this invocation, or b = B when out of range.
fn unit(gid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.batch * P.hidden) {
        return vec2<u32>(P.batch, 0u);
    }
    return vec2<u32>(i / P.hidden, i % P.hidden);
}

// Pre-activation of gate block k (forward): gi + gh + b_hh.
fn pre(b: u32, k: u32, j: u32, G: u32) -> f32 {
    let H = P.hidden;
    let gi_i = P.o1 + (b * P.steps + P.t) * G * H + k * H + j;
    let gh_i = P.o2 + b * G * H + k * H + j;
    return gi[gi_i] + gh[gh_i] + bhh[P.o3 + k * H + j];
}

// Index of state slot `s` (0..=T), part `p` (0 = h, 1 = c), unit j of batch row b.
fn slot(off: u32, b: u32, s: u32, p: u32, j: u32, S: u32) -> u32 {
    return off + (b * (P.steps + 1u) + s) * S * P.hidden + p * P.hidden + j;
}

// Index of gate block k, unit j at (b, t) in a (B, T, W*H) buffer.
fn at_bt(off: u32, b: u32, k: u32, j: u32, W: u32) -> u32 {
    return off + (b * P.steps + P.t) * W * P.hidden + k * P.hidden + j;
}

@compute @workgroup_size(WG)
fn rnn_tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    state[slot(P.o4, b, P.t + 1u, 0u, j, 1u)] = tanh_stable(pre(b, 0u, j, 1u));
}

@compute @workgroup_size(WG)
fn lstm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    let i = sigmoid(pre(b, 0u, j, 4u));
    let f = sigmoid(pre(b, 1u, j, 4u));
    let gg = tanh_stable(pre(b, 2u, j, 4u));
    let o = sigmoid(pre(b, 3u, j, 4u));
    let c_prev = state[slot(P.o4, b, P.t, 1u, j, 2u)];
    let c = f * c_prev + i * gg;
    state[slot(P.o4, b, P.t + 1u, 0u, j, 2u)] = o * tanh_stable(c);
    state[slot(P.o4, b, P.t + 1u, 1u, j, 2u)] = c;
    gates[at_bt(P.o5, b, 0u, j, 4u)] = i;
    gates[at_bt(P.o5, b, 1u, j, 4u)] = f;
    gates[at_bt(P.o5, b, 2u, j, 4u)] = gg;
    gates[at_bt(P.o5, b, 3u, j, 4u)] = o;
}

@compute @workgroup_size(WG)
fn gru_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    let H = P.hidden;
    let r = sigmoid(pre(b, 0u, j, 3u));
    let z = sigmoid(pre(b, 1u, j, 3u));
    let hn = gh[P.o2 + b * 3u * H + 2u * H + j] + bhh[P.o3 + 2u * H + j];
    let n = tanh_stable(gi[P.o1 + (b * P.steps + P.t) * 3u * H + 2u * H + j] + r * hn);
    let h_prev = state[slot(P.o4, b, P.t, 0u, j, 1u)];
    state[slot(P.o4, b, P.t + 1u, 0u, j, 1u)] = (1.0 - z) * n + z * h_prev;
    gates[at_bt(P.o5, b, 0u, j, 4u)] = r;
    gates[at_bt(P.o5, b, 1u, j, 4u)] = z;
    gates[at_bt(P.o5, b, 2u, j, 4u)] = n;
    gates[at_bt(P.o5, b, 3u, j, 4u)] = hn;
}

// dh of step t from outside the recurrence matmul: upstream g on h_t plus dhrec.
fn dh_in(b: u32, j: u32, S: u32) -> f32 {
    return g[slot(P.o1, b, P.t + 1u, 0u, j, S)] + dhrec[P.o3 + b * P.hidden + j];
}

@compute @workgroup_size(WG)
fn rnn_tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    let h = st[slot(P.o2, b, P.t + 1u, 0u, j, 1u)];
    dgi[at_bt(P.o4, b, 0u, j, 1u)] = dh_in(b, j, 1u) * (1.0 - h * h);
}

@compute @workgroup_size(WG)
fn lstm_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    let dh = dh_in(b, j, 2u);
    let ci = P.o5 + b * P.hidden + j;
    let c = st[slot(P.o2, b, P.t + 1u, 1u, j, 2u)];
    let c_prev = st[slot(P.o2, b, P.t, 1u, j, 2u)];
    let i = saved[at_bt(P.o6, b, 0u, j, 4u)];
    let f = saved[at_bt(P.o6, b, 1u, j, 4u)];
    let gg = saved[at_bt(P.o6, b, 2u, j, 4u)];
    let o = saved[at_bt(P.o6, b, 3u, j, 4u)];
    let tc = tanh_stable(c);
    let dc = g[slot(P.o1, b, P.t + 1u, 1u, j, 2u)] + carry[ci] + dh * o * (1.0 - tc * tc);
    dgi[at_bt(P.o4, b, 0u, j, 4u)] = dc * gg * i * (1.0 - i);
    dgi[at_bt(P.o4, b, 1u, j, 4u)] = dc * c_prev * f * (1.0 - f);
    dgi[at_bt(P.o4, b, 2u, j, 4u)] = dc * i * (1.0 - gg * gg);
    dgi[at_bt(P.o4, b, 3u, j, 4u)] = dh * tc * o * (1.0 - o);
    carry[ci] = dc * f;
}

@compute @workgroup_size(WG)
fn gru_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let u = unit(gid, nwg);
    let b = u.x;
    let j = u.y;
    if (b >= P.batch) { return; }
    let ci = P.o5 + b * P.hidden + j;
    let dh = dh_in(b, j, 1u) + carry[ci];
    let r = saved[at_bt(P.o6, b, 0u, j, 4u)];
    let z = saved[at_bt(P.o6, b, 1u, j, 4u)];
    let n = saved[at_bt(P.o6, b, 2u, j, 4u)];
    let hn = saved[at_bt(P.o6, b, 3u, j, 4u)];
    let h_prev = st[slot(P.o2, b, P.t, 0u, j, 1u)];
    let n_pre = dh * (1.0 - z) * (1.0 - n * n);
    let z_pre = dh * (h_prev - n) * z * (1.0 - z);
    let r_pre = n_pre * hn * r * (1.0 - r);
    dgi[at_bt(P.o4, b, 0u, j, 3u)] = r_pre;
    dgi[at_bt(P.o4, b, 1u, j, 3u)] = z_pre;
    dgi[at_bt(P.o4, b, 2u, j, 3u)] = n_pre;
    dgh[at_bt(P.o7, b, 0u, j, 3u)] = r_pre;
    dgh[at_bt(P.o7, b, 1u, j, 3u)] = z_pre;
    dgh[at_bt(P.o7, b, 2u, j, 3u)] = n_pre * r;
    carry[ci] = dh * z;
}
