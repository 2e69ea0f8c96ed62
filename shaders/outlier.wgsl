// Outlier-detection kernels: Isolation Forest path lengths and k-nearest neighbours (for LOF).
//
// iforest_path (one invocation per row r of x (rows, d)):
//   path[r] = (1 / trees) sum_t (depth_t(x_r) + c(size of the leaf x_r reaches in tree t))
//   A forest is one u32 array of nodes, 3 words each: [feature, value bits, left child].
//   feature == LEAF: a leaf, value = c(leaf size) (the expected depth still to go).
//   Otherwise an internal node: x[feature] < value goes to `left`, else to `left + 1`.
//   roots[t] is tree t's root node. The walk stops after P.depth + 1 steps at most, so a
//   malformed forest cannot hang the device.
//
// knn (one invocation per row r of a block of squared distances D (rows, cols)):
//   the k smallest D[r, c] over the columns c in [c0, c1), merged into the running sorted lists
//   nn_dist[r, 0..k] (ascending) and nn_idx[r, 0..k]; ties keep the smaller column. The
//   column c == row0 + r (the row itself) is skipped when P.skip_self != 0. The lists are
//   reset when c0 == 0; the launcher splits the columns into chunks, one dispatch each, so an
//   invocation stays under llvmpipe's 65,535 loop iterations (k + (c1 - c0) (k + 1) at most).

// #include common/grid.wgsl

struct OutlierParams {
    rows: u32,      // rows of x / D
    d: u32,         // features per row (iforest_path)
    trees: u32,     // trees in the forest (iforest_path)
    depth: u32,     // deepest leaf of any tree (iforest_path)
    cols: u32,      // columns of D (knn)
    k: u32,         // neighbours kept (knn)
    c0: u32,        // first column of this chunk (knn)
    c1: u32,        // one past the last column of this chunk (knn)
    row0: u32,      // global index of row 0 of the block (knn)
    skip_self: u32, // 1: skip column row0 + r (knn)
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
const LEAF: u32 = 0xffffffffu;
const NONE: u32 = 0xffffffffu;
const BIG: f32 = 3.4028235e38;

@group(0) @binding(0) var<uniform> P: OutlierParams;

// iforest_path
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (rows, d)
@group(0) @binding(2) var<storage, read> nodes: array<u32>;          // (nodes, 3)
@group(0) @binding(3) var<storage, read> roots: array<u32>;          // (trees)
@group(0) @binding(4) var<storage, read_write> path: array<f32>;     // (rows)

// knn
@group(0) @binding(1) var<storage, read> dd: array<f32>;             // (rows, cols)
@group(0) @binding(2) var<storage, read_write> nn_dist: array<f32>;  // (rows, k)
@group(0) @binding(3) var<storage, read_write> nn_idx: array<u32>;   // (rows, k)

@compute @workgroup_size(256)
fn iforest_path(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    var total = 0.0;
    for (var t = 0u; t < P.trees; t++) {
        var node = roots[t];
        var depth = 0.0;
        for (var step = 0u; step <= P.depth; step++) {
            let f = nodes[3u * node];
            let v = bitcast<f32>(nodes[3u * node + 1u]);
            if (f == LEAF) {
                depth += v;
                break;
            }
            let left = nodes[3u * node + 2u];
            node = select(left + 1u, left, x[r * P.d + f] < v);
            depth += 1.0;
        }
        total += depth;
    }
    path[r] = total / f32(P.trees);
}

@compute @workgroup_size(256)
fn knn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    let base = r * P.k;
    if (P.c0 == 0u) {
        for (var i = 0u; i < P.k; i++) {
            nn_dist[base + i] = BIG;
            nn_idx[base + i] = NONE;
        }
    }
    let own = P.row0 + r;
    let last = base + P.k - 1u;
    for (var c = P.c0; c < P.c1; c++) {
        if (P.skip_self != 0u && c == own) { continue; }
        let v = dd[r * P.cols + c];
        // Strictly smaller only: an equal distance found later (a larger column) stays out.
        if (!(v < nn_dist[last])) { continue; }
        var i = P.k - 1u;
        loop {
            if (i == 0u) { break; }
            if (nn_dist[base + i - 1u] <= v) { break; }
            nn_dist[base + i] = nn_dist[base + i - 1u];
            nn_idx[base + i] = nn_idx[base + i - 1u];
            i -= 1u;
        }
        nn_dist[base + i] = v;
        nn_idx[base + i] = c;
    }
}
