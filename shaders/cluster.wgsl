// Distance kernels for clustering (k-means, DBSCAN, silhouette; k-NN for LOF later).
//
// Squared Euclidean distances come from a GEMM, G = X Y^T, plus the squared row norms:
//   D[r, c] = max(xn[row0 + r] - 2 G[r, c] + yn[c], 0)
// (clamped at 0 because cancellation can make the expansion slightly negative).
//
// Entry points (one invocation per row unless noted):
//   sqnorm:         out[r] = sum_j x[r, j]^2                                x (rows, d)
//   assign:         label[r] = argmin_c D[r, c] (ties: smaller c), dist[r] = D[r, label]
//   sqdist:         G <- D in place                                          G (rows, cols)
//   count_within:   count[r] = #{c : D[r, c] <= eps2}                       D (rows, cols)
//   centroid_sums:  first half of a segmented reduction. One workgroup of 64 per block of
//                   P.cols rows; invocation t owns columns j = t, t + 64, ... of (d + 1) and walks
//                   the block's rows in order: partial[b, label[r], j] += x[r, j] (j < d), and
//                   partial[b, label[r], d] += 1 (the count). No two invocations touch one
//                   element, so there are no atomics and the order is fixed: deterministic. The
//                   launcher then sums partial over blocks with reduce.wgsl.
//
// Loops stay under Mesa llvmpipe's 65,535 iterations per invocation: the launcher checks d and
// cols (per-row loops) and the block size (centroid_sums).

// #include common/grid.wgsl

struct ClusterParams {
    rows: u32,      // rows of x / G / D
    cols: u32,      // columns of G / D (k for assign), d for sqnorm, rows per block for sums
    d: u32,         // features per point (centroid_sums)
    k: u32,         // clusters (centroid_sums)
    row0: u32,      // index into xn of row 0 (a block of rows)
    eps2: f32,      // squared radius (count_within)
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: ClusterParams;

// sqnorm
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (rows, d)
@group(0) @binding(2) var<storage, read_write> norms: array<f32>;    // (rows)

// assign / sqdist / count_within
@group(0) @binding(1) var<storage, read_write> g: array<f32>;        // (rows, cols)
@group(0) @binding(2) var<storage, read> xn: array<f32>;             // (row0 + rows)
@group(0) @binding(3) var<storage, read> yn: array<f32>;             // (cols)
@group(0) @binding(4) var<storage, read_write> label: array<u32>;    // (rows)
@group(0) @binding(5) var<storage, read_write> dist: array<f32>;     // (rows)

// count_within
@group(0) @binding(2) var<storage, read_write> count: array<u32>;    // (rows)

// centroid_sums
@group(0) @binding(2) var<storage, read> labels_in: array<u32>;      // (rows)
@group(0) @binding(3) var<storage, read_write> sums: array<f32>;     // (blocks, k, d + 1)

const SUMS_WG: u32 = 64u;

fn expand(r: u32, c: u32) -> f32 {
    return max(xn[P.row0 + r] - 2.0 * g[r * P.cols + c] + yn[c], 0.0);
}

@compute @workgroup_size(256)
fn sqnorm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    var acc = 0.0;
    for (var j = 0u; j < P.cols; j++) {
        let v = x[r * P.cols + j];
        acc += v * v;
    }
    norms[r] = acc;
}

@compute @workgroup_size(256)
fn assign(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    var best = expand(r, 0u);
    var bi = 0u;
    for (var c = 1u; c < P.cols; c++) {
        let v = expand(r, c);
        if (v < best) {
            best = v;
            bi = c;
        }
    }
    label[r] = bi;
    dist[r] = best;
}

@compute @workgroup_size(256)
fn sqdist(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    for (var c = 0u; c < P.cols; c++) {
        g[r * P.cols + c] = expand(r, c);
    }
}

@compute @workgroup_size(256)
fn count_within(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    var n = 0u;
    for (var c = 0u; c < P.cols; c++) {
        if (g[r * P.cols + c] <= P.eps2) { n += 1u; }
    }
    count[r] = n;
}

@compute @workgroup_size(64)
fn centroid_sums(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = wid.x + wid.y * nwg.x;        // block of P.cols rows
    let first = b * P.cols;
    if (first >= P.rows) { return; }
    let last = min(first + P.cols, P.rows);
    let w = P.d + 1u;
    let base = b * P.k * w;               // partial[b, 0, 0]
    for (var j = lid.x; j < w; j += SUMS_WG) {
        for (var c = 0u; c < P.k; c++) {
            sums[base + c * w + j] = 0.0;
        }
        for (var r = first; r < last; r++) {
            let at = base + labels_in[r] * w + j;
            if (j == P.d) {
                sums[at] += 1.0;
            } else {
                sums[at] += x[r * P.d + j];
            }
        }
    }
}
