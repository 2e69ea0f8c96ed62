// Fused cross-entropy from logits x (N, C) and class indices t (N):
//
//   forward:   lse[r]   = log sum_j exp(x[r, j])                  (stable: common/online_softmax.wgsl)
//              loss[r]  = lse[r] - x[r, t[r]]
//   backward:  dx[r, j] = (exp(x[r, j] - lse[r]) - [j == t[r]]) * g[r] * scale
//
// x[r, j] = x[offset + r * row_stride + j * col_stride]; t[r] = t[t_offset + r * t_stride];
// g[r] = g[g_offset + r * g_stride] (g_stride 0: one upstream scalar for every row, as for a mean
// or sum; scale = 1/N for a mean). loss, lse: (N) contiguous; dx: (N, C) contiguous.
//
// A target t[r] >= C is never used as an index: loss[r] and row r of dx are NaN instead.
//
// forward_serial: one invocation per row (short rows: no barriers)
// forward_wg:     one workgroup of WG per row, (m, s) merged by a tree in shared memory
// backward:       one invocation per element of dx

// #include common/grid.wgsl
// #include common/online_softmax.wgsl

struct CrossEntropyParams {
    rows: u32,          // N
    classes: u32,       // C
    offset: u32,        // element offset of x[0, 0]
    row_stride: u32,    // elements between rows of x
    col_stride: u32,    // elements between classes in a row of x
    t_offset: u32,      // element offset of t[0]
    t_stride: u32,      // elements between targets
    g_offset: u32,      // element offset of g[0] (backward)
    g_stride: u32,      // elements between rows of g; 0 broadcasts one scalar (backward)
    scale: f32,         // multiplies g: 1/N for a mean, else 1 (backward)
    _pad0: u32,
    _pad1: u32,
}

// WG (invocations per workgroup) is declared in common/online_softmax.wgsl.

@group(0) @binding(0) var<uniform> P: CrossEntropyParams;
// binding 1: x (N, C), strided, declared in common/online_softmax.wgsl
@group(0) @binding(2) var<storage, read> t: array<u32>;              // (N), strided
// forward
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;     // (N)
@group(0) @binding(4) var<storage, read_write> lse_out: array<f32>;  // (N)
// backward
@group(0) @binding(3) var<storage, read> lse_in: array<f32>;         // (N)
@group(0) @binding(4) var<storage, read> g: array<f32>;              // (N), strided, or a scalar
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;       // (N, C)

fn at(r: u32, j: u32) -> f32 {
    return x[P.offset + r * P.row_stride + j * P.col_stride];
}

fn quiet_nan() -> f32 {
    let bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

fn finish_row(r: u32, ms: vec2<f32>) {
    let lse = ms.x + log(ms.y);
    let target_class = t[P.t_offset + r * P.t_stride];
    var l = quiet_nan();
    if (target_class < P.classes) {
        l = lse - at(r, target_class);
    }
    loss[r] = l;
    lse_out[r] = lse;
}

@compute @workgroup_size(WG)
fn forward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    finish_row(r, row_summary(P.offset + r * P.row_stride, P.col_stride, P.classes, 0u, 1u));
}

@compute @workgroup_size(WG)
fn forward_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    // One workgroup per row; the (x, y) grid only exceeds 65,535 rows in x.
    let r = wid.x + wid.y * nwg.x;
    let ms = row_summary_wg(r, P.rows, P.offset + r * P.row_stride, P.col_stride, P.classes, lid.x);
    if (lid.x == 0u && r < P.rows) {
        finish_row(r, ms);
    }
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.rows * P.classes) { return; }
    let r = i / P.classes;
    let j = i % P.classes;
    let target_class = t[P.t_offset + r * P.t_stride];
    let gr = g[P.g_offset + r * P.g_stride] * P.scale;
    var d = quiet_nan();
    if (target_class < P.classes) {
        d = (exp(at(r, j) - lse_in[r]) - select(0.0, 1.0, j == target_class)) * gr;
    }
    dx[i] = d;
}
