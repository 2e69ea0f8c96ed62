// Fused LayerNorm and RMSNorm over the last dim of a contiguous (R, D) f32 block, forward and
// backward. One invocation owns one row: no barriers, which is what llvmpipe rewards, and each
// row's sums are plain serial loops (deterministic).
//
// LayerNorm, per row x (D):
//   mean = sum_d x_d / D
//   rstd = 1 / sqrt(sum_d (x_d - mean)^2 / D + eps)          (two-pass, biased as PyTorch)
//   xhat = (x - mean) * rstd
//   y    = xhat * w + b
// backward, with gw = g * w:
//   dx   = rstd * (gw - mean_d(gw) - xhat * mean_d(gw * xhat))
//   gxh  = g * xhat                (summed over rows by the host into dw; db = sum over rows of g)
//
// RMSNorm (mean is taken as 0, no bias):
//   rstd = 1 / sqrt(sum_d x_d^2 / D + eps),  xhat = x * rstd,  y = xhat * w
//   dx   = rstd * (gw - xhat * mean_d(gw * xhat)),  gxh = g * xhat
//
// stats is (R, 2): [mean, rstd] per row, written by the forward and read by the backward.
// Loop trips per invocation: 3 D (forward) and 2 D (backward); the launcher keeps D small enough
// for llvmpipe's 65,535-iteration limit.

// #include common/grid.wgsl

struct NormParams {
    rows: u32,       // R
    d: u32,          // D
    x_offset: u32,   // element offset of x[0, 0]
    g_offset: u32,   // element offset of g[0, 0] (backward)
    eps: f32,        // added to the variance / mean square
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> P: NormParams;

// ln_forward: x, w, b, y, stats;  rms_forward: x, w, y (binding 3), stats (binding 4)
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (R, D) at x_offset
@group(0) @binding(2) var<storage, read> w: array<f32>;              // (D)
@group(0) @binding(3) var<storage, read> b: array<f32>;              // (D), ln_forward
@group(0) @binding(4) var<storage, read_write> y: array<f32>;        // (R, D), ln_forward
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;    // (R, 2), ln_forward

@group(0) @binding(3) var<storage, read_write> y_rms: array<f32>;    // (R, D), rms_forward
@group(0) @binding(4) var<storage, read_write> stats_rms: array<f32>; // (R, 2), rms_forward

// ln_backward / rms_backward: x, w, g, stats, dx, gxh
@group(0) @binding(3) var<storage, read> g: array<f32>;              // (R, D) at g_offset
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;       // (R, 2)
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;       // (R, D)
@group(0) @binding(6) var<storage, read_write> gxh: array<f32>;      // (R, D): g * xhat

@compute @workgroup_size(64)
fn ln_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    let base = P.x_offset + r * P.d;
    let inv_d = 1.0 / f32(P.d);
    var s = 0.0;
    for (var i = 0u; i < P.d; i++) { s += x[base + i]; }
    let mean = s * inv_d;
    var v = 0.0;
    for (var i = 0u; i < P.d; i++) { let c = x[base + i] - mean; v += c * c; }
    let rstd = inverseSqrt(v * inv_d + P.eps);
    let out = r * P.d;
    for (var i = 0u; i < P.d; i++) {
        y[out + i] = (x[base + i] - mean) * rstd * w[i] + b[i];
    }
    stats[2u * r] = mean;
    stats[2u * r + 1u] = rstd;
}

@compute @workgroup_size(64)
fn rms_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    let base = P.x_offset + r * P.d;
    var s = 0.0;
    for (var i = 0u; i < P.d; i++) { let v = x[base + i]; s += v * v; }
    let rstd = inverseSqrt(s / f32(P.d) + P.eps);
    let out = r * P.d;
    for (var i = 0u; i < P.d; i++) {
        y_rms[out + i] = x[base + i] * rstd * w[i];
    }
    stats_rms[2u * r] = 0.0;
    stats_rms[2u * r + 1u] = rstd;
}

// Shared backward: `centered` selects LayerNorm (subtract mean(gw)) or RMSNorm.
fn backward_row(r: u32, centered: bool) {
    let xb = P.x_offset + r * P.d;
    let gb = P.g_offset + r * P.d;
    let mean = stats_in[2u * r];
    let rstd = stats_in[2u * r + 1u];
    var sum_gw = 0.0;
    var sum_gwx = 0.0;
    for (var i = 0u; i < P.d; i++) {
        let gw = g[gb + i] * w[i];
        sum_gw += gw;
        sum_gwx += gw * (x[xb + i] - mean) * rstd;
    }
    let inv_d = 1.0 / f32(P.d);
    let m_gw = select(0.0, sum_gw * inv_d, centered);
    let m_gwx = sum_gwx * inv_d;
    let out = r * P.d;
    for (var i = 0u; i < P.d; i++) {
        let gi = g[gb + i];
        let xhat = (x[xb + i] - mean) * rstd;
        dx[out + i] = rstd * (gi * w[i] - m_gw - xhat * m_gwx);
        gxh[out + i] = gi * xhat;
    }
}

@compute @workgroup_size(64)
fn ln_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    backward_row(r, true);
}

@compute @workgroup_size(64)
fn rms_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    backward_row(r, false);
}
