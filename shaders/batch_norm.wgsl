// Fused BatchNorm2d over NCHW f32: per-channel statistics, the normalise-scale-shift forward, and
// the fused backward. x, g, y, dx, p are (N, C, HW); M = N * HW values per channel.
//
// Per-channel values live in one buffer ch of (7, C) rows (the host fills weight and bias, the
// reduce launcher writes the means and sums):
//   row 0 mean_c        row 1 var_c (biased)      row 2 invstd_c = 1 / sqrt(var_c + eps)
//   row 3 w_c           row 4 b_c                 row 5 sum_g_c      row 6 sum_gxhat_c
//
//   stats:        invstd_c = inverseSqrt(var_c + eps)                   one invocation per channel
//   stats_update: stats, and the running statistics in place (momentum m, unbiased variance):
//                 run_mean_c = (1 - m) run_mean_c + m mean_c
//                 run_var_c  = (1 - m) run_var_c  + m var_c M / (M - 1)
//   center_sq:    p = (x - mean_c)^2                (its channel mean is the biased variance)
//   forward:      y = (x - mean_c) * invstd_c * w_c + b_c
//   grad_xhat:    p = g * xhat,  xhat = (x - mean_c) * invstd_c   (summed into sum_gxhat_c)
//   backward_dx:  TRAINING:  dx = w_c * invstd_c / M * (M g - sum_g_c - xhat * sum_gxhat_c)
//                 else:      dx = w_c * invstd_c * g          (eval: mean and invstd are constants)
//
// The per-channel sums (mean, var, sum_g, sum_gxhat) come from the reduce launcher in two passes
// (over HW, then over N), which already splits long rows for llvmpipe's loop limit; every entry
// here runs a fixed amount of work per invocation, with no barriers.

// #include common/grid.wgsl

struct BatchNormParams {
    n: u32,           // N
    c: u32,           // C
    hw: u32,          // H * W
    x_offset: u32,    // element offset of x[0, 0, 0] (stats_update: of run_mean[0])
    g_offset: u32,    // element offset of g[0, 0, 0] (stats_update: of run_var[0])
    eps: f32,         // added to the variance
    inv_m: f32,       // 1 / (N * HW)
    momentum: f32,    // stats_update: weight of the batch in the running statistics
}

override TRAINING: bool = true;
const WG: u32 = 256u;

const MEAN: u32 = 0u;
const VAR: u32 = 1u;
const INVSTD: u32 = 2u;
const WEIGHT: u32 = 3u;
const BIAS: u32 = 4u;
const SUM_G: u32 = 5u;
const SUM_GXHAT: u32 = 6u;

@group(0) @binding(0) var<uniform> P: BatchNormParams;

// stats
@group(0) @binding(1) var<storage, read_write> ch_rw: array<f32>;  // (7, C)

// stats_update (ch_rw at binding 1)
@group(0) @binding(2) var<storage, read_write> run_mean: array<f32>; // (C)
@group(0) @binding(3) var<storage, read_write> run_var: array<f32>;  // (C)

// center_sq, forward, grad_xhat, backward_dx
@group(0) @binding(1) var<storage, read> x: array<f32>;            // (N, C, HW)
@group(0) @binding(2) var<storage, read> ch: array<f32>;           // (7, C)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // (N, C, HW): p, y or dx
@group(0) @binding(4) var<storage, read> g: array<f32>;            // (N, C, HW), grad_xhat/backward_dx

fn at(row: u32, c: u32) -> f32 {
    return ch[row * P.c + c];
}

// Channel of element t of (N, C, HW).
fn channel(t: u32) -> u32 {
    return (t / P.hw) % P.c;
}

// xhat = (x - mean) * invstd of element t, in channel c.
fn xhat_at(t: u32, c: u32) -> f32 {
    return (x[P.x_offset + t] - at(MEAN, c)) * at(INVSTD, c);
}

@compute @workgroup_size(256)
fn stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = grid_index(gid, nwg, WG);
    if (c >= P.c) { return; }
    ch_rw[INVSTD * P.c + c] = inverseSqrt(ch_rw[VAR * P.c + c] + P.eps);
}

@compute @workgroup_size(256)
fn stats_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = grid_index(gid, nwg, WG);
    if (c >= P.c) { return; }
    let v = ch_rw[VAR * P.c + c];
    ch_rw[INVSTD * P.c + c] = inverseSqrt(v + P.eps);
    let m = f32(P.n * P.hw);
    let k = 1.0 - P.momentum;
    let rm = P.x_offset + c;
    let rv = P.g_offset + c;
    run_mean[rm] = k * run_mean[rm] + P.momentum * ch_rw[MEAN * P.c + c];
    run_var[rv] = k * run_var[rv] + P.momentum * (v * (m / (m - 1.0)));
}

@compute @workgroup_size(256)
fn center_sq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.n * P.c * P.hw) { return; }
    let d = x[P.x_offset + t] - at(MEAN, channel(t));
    out[t] = d * d;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.n * P.c * P.hw) { return; }
    let c = channel(t);
    out[t] = xhat_at(t, c) * at(WEIGHT, c) + at(BIAS, c);
}

@compute @workgroup_size(256)
fn grad_xhat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.n * P.c * P.hw) { return; }
    out[t] = g[P.g_offset + t] * xhat_at(t, channel(t));
}

@compute @workgroup_size(256)
fn backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.n * P.c * P.hw) { return; }
    let c = channel(t);
    let xhat = xhat_at(t, c);
    var d = g[P.g_offset + t];
    if (TRAINING) {
        d = d - (at(SUM_G, c) + xhat * at(SUM_GXHAT, c)) * P.inv_m;
    }
    out[t] = at(WEIGHT, c) * at(INVSTD, c) * d;
}
