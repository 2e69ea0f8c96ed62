// Row reductions: out[r] = reduce_j x[off + r * row_stride + j * col_stride],  j in 0..len.
//
// Reducing any set of axes becomes this after the host permutes the kept axes to the front and the
// reduced ones to the back (copying only if they cannot be expressed as one stride each).
//
// OP: 0 sum (times `scale`, so mean is sum with scale 1/len)   1 max   2 min
// Arg entries write the index (u32) of the first max/min: OP 1 argmax, 2 argmin.
//
// Two strategies, picked by the launcher:
//   *_serial: one invocation per row, a plain loop   (many rows, or short rows; no barriers)
//   *_wg:     one workgroup of 256 per row, strided partial results then a tree in shared memory

// #include common/grid.wgsl

struct ReduceParams {
    rows: u32,          // number of outputs
    len: u32,           // elements reduced into each output
    offset: u32,        // element offset of x[0, 0]
    row_stride: u32,    // elements between rows
    col_stride: u32,    // elements between neighbours in a row
    out_offset: u32,    // element offset of out[0]
    scale: f32,         // multiplies a sum (1/len for mean)
    _pad: u32,
}

override OP: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: ReduceParams;
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

@compute @workgroup_size(256)
fn rows_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    var acc = identity();
    for (var j = 0u; j < P.len; j++) {
        acc = combine(acc, at(r, j));
    }
    out[P.out_offset + r] = finish(acc);
}

@compute @workgroup_size(256)
fn rows_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let t = lid.x;
    var acc = identity();
    if (r < P.rows) {
        for (var j = t; j < P.len; j += WG) {
            acc = combine(acc, at(r, j));
        }
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
    var best = at(r, 0u);
    var bi = 0u;
    for (var j = 1u; j < P.len; j++) {
        let v = at(r, j);
        if (better(v, j, best, bi)) {
            best = v;
            bi = j;
        }
    }
    idx[P.out_offset + r] = bi;
}

@compute @workgroup_size(256)
fn arg_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    let t = lid.x;
    var best = identity();
    var bi = 0xffffffffu;
    if (r < P.rows) {
        for (var j = t; j < P.len; j += WG) {
            let v = at(r, j);
            if (bi == 0xffffffffu || better(v, j, best, bi)) {
                best = v;
                bi = j;
            }
        }
    }
    sv[t] = best;
    si[t] = bi;
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
