// Fused row softmax, log-softmax and log-sum-exp over a strided (rows, C) matrix:
//
//   m[r] = max_j x[r, j]      s[r] = sum_j exp(x[r, j] - m[r])      lse[r] = m[r] + ln s[r]
//
//   MODE 0 softmax:      y[r, j] = exp(x[r, j] - m[r]) / s[r]
//   MODE 1 log_softmax:  y[r, j] = x[r, j] - lse[r]
//   MODE 2 logsumexp:    y[r]    = lse[r]
//
// x[r, j] = x[offset + r * row_stride + j * col_stride] (any dim of a tensor, moved last by the
// host as a view); y is contiguous (rows, C), or (rows) for MODE 2, from out_offset.
// (m, s) come from one online pass (common/online_softmax.wgsl); MODE 0/1 then make a second
// pass that writes y. Nothing overflows for finite inputs, however large. Both passes read four
// elements per loop iteration (llvmpipe's loop budget, see common/online_softmax.wgsl).
//
// Two strategies, picked by the launcher:
//   rows_serial: one invocation per row, plain loops (short rows: no barriers)
//   rows_wg:     one workgroup of WG per row: strided partial (m, s) per invocation, merged by a
//                tree in shared memory, then every invocation writes its strided share of y

// #include common/grid.wgsl
// #include common/online_softmax.wgsl
// #include common/rows.wgsl

override MODE: u32 = 0u;
// WG (invocations per workgroup) is declared in common/online_softmax.wgsl.

@group(0) @binding(0) var<uniform> P: RowsParams;  // y from out_offset; scale unused
// binding 1: x (rows, C), strided, declared in common/online_softmax.wgsl
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // (rows, C), or (rows) for MODE 2

fn at(r: u32, j: u32) -> f32 {
    return x[P.offset + r * P.row_stride + j * P.col_stride];
}

fn out_value(v: f32, ms: vec2<f32>, inv: f32, lse: f32) -> f32 {
    if (MODE == 0u) {
        return exp(v - ms.x) * inv;
    }
    return v - lse;
}

// y[r, j0], y[r, j0 + step], ... from the row's summary (m, s), four elements per iteration.
fn write_row(r: u32, j0: u32, step: u32, ms: vec2<f32>) {
    let row = P.out_offset + r * P.len;
    let inv = 1.0 / ms.y;
    let lse = ms.x + log(ms.y);
    var j = j0;
    for (; j + 3u * step < P.len; j += 4u * step) {
        y[row + j] = out_value(at(r, j), ms, inv, lse);
        y[row + j + step] = out_value(at(r, j + step), ms, inv, lse);
        y[row + j + 2u * step] = out_value(at(r, j + 2u * step), ms, inv, lse);
        y[row + j + 3u * step] = out_value(at(r, j + 3u * step), ms, inv, lse);
    }
    for (; j < P.len; j += step) {
        y[row + j] = out_value(at(r, j), ms, inv, lse);
    }
}

@compute @workgroup_size(WG)
fn rows_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = grid_index(gid, nwg, WG);
    if (r >= P.rows) { return; }
    let ms = row_summary(P.offset + r * P.row_stride, P.col_stride, P.len, 0u, 1u);
    if (MODE == 2u) {
        y[P.out_offset + r] = ms.x + log(ms.y);
    } else {
        write_row(r, 0u, 1u, ms);
    }
}

@compute @workgroup_size(WG)
fn rows_wg(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // One workgroup per row; the (x, y) grid only exceeds 65,535 rows in x.
    let r = wid.x + wid.y * nwg.x;
    let t = lid.x;
    let ms = row_summary_wg(r, P.rows, P.offset + r * P.row_stride, P.col_stride, P.len, t);
    if (r >= P.rows) { return; }
    if (MODE == 2u) {
        if (t == 0u) {
            y[P.out_offset + r] = ms.x + log(ms.y);
        }
    } else {
        write_row(r, t, WG, ms);
    }
}
