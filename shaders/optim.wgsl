// Fused optimizer updates: one dispatch per parameter tensor updates the parameter and its state
// in place, one invocation per element (no loops). PyTorch semantics (torch.optim).
//
// sgd (plain, no state), sgd_momentum (momentum buffer `buf`, zero on the first step, so the
// first update sets buf = g as in PyTorch):
//
//   g   = grad + wd * p                             (L2 weight decay)
//   buf = mu * buf + g                              (dampening 0)
//   u   = NESTEROV ? g + mu * buf : buf             (plain sgd: u = g)
//   p   = p - lr * u
//
// adam (DECOUPLED = 0: Adam with L2 decay; DECOUPLED = 1: AdamW), step t >= 1:
//
//   p   = p * (1 - lr * wd)                         (AdamW only)
//   g   = grad + wd * p                             (Adam only)
//   m   = b1 * m + (1 - b1) * g                     (exp_avg)
//   v   = b2 * v + (1 - b2) * g^2                   (exp_avg_sq)
//   p   = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
//
// with the bias corrections bc1 = 1 - b1^t and bc2 = 1 - b2^t computed on the host.
//
// Bindings (every tensor contiguous f32 of n elements, at its own element offset):
//   sgd:          1 p (n) rw   2 grad (n)
//   sgd_momentum: 1 p (n) rw   2 grad (n)   3 buf (n) rw
//   adam:         1 p (n) rw   2 grad (n)   3 m (n) rw   4 v (n) rw
//   adam4:        the same as arrays of vec4 (n and every offset multiples of 4)
//
// The *_guarded entries (sgd_guarded, sgd_momentum_guarded, adam_guarded, adam4_guarded) are the
// same updates behind a skip flag: one more binding after the others (sgd 3, sgd_momentum 4,
// adam and adam4 5), a loss scaler's state (grad_scale.wgsl), whose word 0 (found_inf) set means
// the gradients overflowed: nothing is written, the parameter and its state stay as they were.
//
// adam4 is adam on 4 elements per invocation with 16-byte loads and stores. On a CPU driver
// (lavapipe) every storage access from a per-invocation address is a loop over the SIMD lanes,
// so a quarter of the accesses makes this memory-bound update up to 4x faster; on a GPU it is
// the usual vectorised elementwise kernel. The launcher picks it when the alignment allows.

// #include common/grid.wgsl
// #include common/adam.wgsl

struct SgdParams {
    n: u32,             // elements of p, grad and buf
    p_off: u32,         // element offset of p[0]
    g_off: u32,         // element offset of grad[0]
    buf_off: u32,       // element offset of buf[0] (sgd_momentum)
    lr: f32,            // learning rate
    momentum: f32,      // mu
    weight_decay: f32,  // L2 coefficient wd
    _pad: u32,
}

// 1 = Nesterov momentum (sgd_momentum).
override NESTEROV: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> S: SgdParams;
@group(0) @binding(0) var<uniform> A: AdamParams;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;    // (n) parameter
@group(0) @binding(2) var<storage, read> grad: array<f32>;       // (n) gradient
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;  // (n) momentum buffer
@group(0) @binding(3) var<storage, read_write> m: array<f32>;    // (n) exp_avg
@group(0) @binding(4) var<storage, read_write> v: array<f32>;    // (n) exp_avg_sq

// adam4: the same buffers seen as vec4 (offsets and n divided by 4).
@group(0) @binding(1) var<storage, read_write> p4: array<vec4<f32>>;    // (n / 4)
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;       // (n / 4)
@group(0) @binding(3) var<storage, read_write> m4: array<vec4<f32>>;    // (n / 4)
@group(0) @binding(4) var<storage, read_write> v4: array<vec4<f32>>;    // (n / 4)

// The guarded entries' skip flag (a loss scaler's state; word 0 != 0: skip), after the others.
@group(0) @binding(3) var<storage, read> skip3: array<u32>;  // sgd_guarded
@group(0) @binding(4) var<storage, read> skip4: array<u32>;  // sgd_momentum_guarded
@group(0) @binding(5) var<storage, read> skip5: array<u32>;  // adam_guarded, adam4_guarded

// Each *_at checks its bound, so that an entry is one line.
fn sgd_at(i: u32) {
    if (i >= S.n) { return; }
    let w = p[S.p_off + i];
    let g = grad[S.g_off + i] + S.weight_decay * w;
    p[S.p_off + i] = w - S.lr * g;
}

fn sgd_momentum_at(i: u32) {
    if (i >= S.n) { return; }
    let w = p[S.p_off + i];
    let g = grad[S.g_off + i] + S.weight_decay * w;
    let b = S.momentum * buf[S.buf_off + i] + g;
    buf[S.buf_off + i] = b;
    var u = b;
    if (NESTEROV == 1u) {
        u = g + S.momentum * b;
    }
    p[S.p_off + i] = w - S.lr * u;
}

fn adam_at(i: u32) {
    if (i >= A.n) { return; }
    let r = adam_element(A, p[A.p_off + i], grad[A.g_off + i], m[A.m_off + i], v[A.v_off + i]);
    m[A.m_off + i] = r.y;
    v[A.v_off + i] = r.z;
    p[A.p_off + i] = r.x;
}

fn adam4_at(i: u32) {
    if (i >= A.n / 4u) { return; }
    let pi = A.p_off / 4u + i;
    let mi = A.m_off / 4u + i;
    let vi = A.v_off / 4u + i;
    var w = p4[pi];
    var g = grad4[A.g_off / 4u + i];
    if (DECOUPLED == 1u) {
        w = w * (1.0 - A.lr * A.weight_decay);
    } else {
        g = g + A.weight_decay * w;
    }
    let m_new = A.beta1 * m4[mi] + (1.0 - A.beta1) * g;
    let v_new = A.beta2 * v4[vi] + (1.0 - A.beta2) * g * g;
    m4[mi] = m_new;
    v4[vi] = v_new;
    let denom = sqrt(v_new) / sqrt(A.bc2) + A.eps;
    p4[pi] = w - (A.lr / A.bc1) * (m_new / denom);
}

@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    sgd_at(grid_index(gid, nwg, WG));
}

@compute @workgroup_size(256)
fn sgd_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip3[0] == 0u) { sgd_at(grid_index(gid, nwg, WG)); }
}

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    sgd_momentum_at(grid_index(gid, nwg, WG));
}

@compute @workgroup_size(256)
fn sgd_momentum_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip4[0] == 0u) { sgd_momentum_at(grid_index(gid, nwg, WG)); }
}

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    adam_at(grid_index(gid, nwg, WG));
}

@compute @workgroup_size(256)
fn adam_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip5[0] == 0u) { adam_at(grid_index(gid, nwg, WG)); }
}

@compute @workgroup_size(256)
fn adam4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    adam4_at(grid_index(gid, nwg, WG));
}

@compute @workgroup_size(256)
fn adam4_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if (skip5[0] == 0u) { adam4_at(grid_index(gid, nwg, WG)); }
}
