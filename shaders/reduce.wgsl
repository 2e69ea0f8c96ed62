// Row reductions: out[r] = reduce_j x[off + r * row_stride + j * col_stride],  j in 0..len.
//
// Reducing any set of axes becomes this after the host permutes the kept axes to the front and the
// reduced ones to the back (copying only if they cannot be expressed as one stride each).
//
// OP: 0 sum (times `scale`, so mean is sum with scale 1/len)   1 max   2 min
// Arg entries write the index (u32) of the first max/min: OP 1 argmax, 2 argmin.
//
// Loops are unrolled by 4: Mesa's llvmpipe/lavapipe ends an invocation's loops after 65,535
// iterations in total, which would silently cut a long row short. Unrolled, one invocation reads
// up to 262,140 elements (serial) and one workgroup up to 67M (the launcher keeps within that).
//
// Two strategies, picked by the launcher:
//   *_serial: one invocation per row, a plain loop   (many rows, or short rows; no barriers)
//   *_wg:     one workgroup of 256 per row, strided partial results then a tree in shared memory

// #include common/grid.wgsl
// #include common/rows.wgsl

override OP: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: RowsParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // (rows, len), strided
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (rows)
@group(0) @binding(2) var<storage, read_write> idx: array<u32>; // (rows), arg entries

var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;

fn identity() -> f32 {
    switch OP {
        case 1u: { return -3.4028235e38; }
        case 2u: { return 3.4028235e38; }
        default: { return 0.0; }
    }
}

fn combine(a: f32, b: f32) -> f32 {
    switch OP {
        case 1u: { return max(a, b); }
        case 2u: { return min(a, b); }
        default: { return a + b; }
    }
}

// True when value v at index i beats (w, j) for argmax/argmin; ties go to the smaller index.
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
    if (v == w) { return i < j; }
    if (OP == 2u) { return v < w; }
    return v > w;
}

fn finish(acc: f32) -> f32 {
    if (OP == 0u) { return acc * P.scale; }
    return acc;
}

fn at(r: u32, j: u32) -> f32 {
    return x[P.offset + r * P.row_stride + j * P.col_stride];
}

// combine over j = first, first + step, ... < len, four per loop iteration.
fn fold(r: u32, first: u32, step: u32) -> f32 {
    var acc = identity();
    var j = first;
    while (j + 3u * step < P.len) {
        let a = combine(at(r, j), at(r, j + step));
        let b = combine(at(r, j + 2u * step), at(r, j + 3u * step));
        acc = combine(acc, combine(a, b));
        j += 4u * step;
    }
    while (j < P.len) {
        acc = combine(acc, at(r, j));
        j += step;
    }
    return acc;
}

// Keep (best, bi) if element jj of row r does not beat it.
fn consider(r: u32, jj: u32, best: ptr<function, f32>, bi: ptr<function, u32>) {
    if (jj < P.len) {
        let v = at(r, jj);
        if (*bi == 0xffffffffu || better(v, jj, *best, *bi)) {
            *best = v;
            *bi = jj;
        }
    }
}

// (value bits, index) of the best element over j = first, first + step, ... (index 0xffffffff
// if none), four per loop iteration in index order.
fn fold_arg(r: u32, first: u32, step: u32) -> vec2<u32> {
    var best = identity();
    var bi = 0xffffffffu;
    var j = first;
    while (j < P.len) {
        consider(r, j, &best, &bi);
        consider(r, j + step, &best, &bi);
        consider(r, j + 2u * step, &best, &bi);
        consider(r, j + 3u * step, &best, &bi);
        j += 4u * step;
    }
    return vec2<u32>(bitcast<u32>(best), bi);
}

@compute @workgroup_size(256)
fn rows_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    out[P.out_offset + r] = finish(fold(r, 0u, 1u));
}

@compute @workgroup_size(256)
fn rows_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let t = lid.x;
    var acc = identity();
    if (r < P.rows) {
        acc = fold(r, t, WG);
    }
    sv[t] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            sv[t] = combine(sv[t], sv[t + s]);
        }
        workgroupBarrier();
    }
    if (t == 0u && r < P.rows) {
        out[P.out_offset + r] = finish(sv[0]);
    }
}

@compute @workgroup_size(256)
fn arg_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    idx[P.out_offset + r] = fold_arg(r, 0u, 1u).y;
}

@compute @workgroup_size(256)
fn arg_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let t = lid.x;
    var found = vec2<u32>(bitcast<u32>(identity()), 0xffffffffu);
    if (r < P.rows) {
        found = fold_arg(r, t, WG);
    }
    sv[t] = bitcast<f32>(found.x);
    si[t] = found.y;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            let j = si[t + s];
            if (j != 0xffffffffu && (si[t] == 0xffffffffu || better(sv[t + s], j, sv[t], si[t]))) {
                sv[t] = sv[t + s];
                si[t] = j;
            }
        }
        workgroupBarrier();
    }
    if (t == 0u && r < P.rows) {
        idx[P.out_offset + r] = si[0];
    }
}
