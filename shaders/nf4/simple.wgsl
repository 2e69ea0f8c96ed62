// NF4 matmuls that dequantise W in registers (QLoRA's frozen base weight), compute in `elem`:
//
//   matmul_nf4:             y (M, out) = x (M, in) @ W^T + bias     (W never written out)
//   matmul_nf4_grad_input:  dx (M, in) = dy (M, out) @ W             (W gets no gradient)
//   dequantize_nf4:         W (out, in) as f32, the baseline and for merging adapters
//
// W's format is in common/nf4.wgsl. Both matmuls are register-blocked and barrier-free (like
// matmul/regblock.wgsl): an invocation owns a small block of outputs and walks the reduction,
// decoding each W value it needs from its nibble and block absmax. With ALIGNED (in % 8 == 0,
// set by the launcher) every 8 values along a row of W are one u32 word inside one block, so a
// step decodes a whole word with one absmax; otherwise values are decoded one by one.
//
// elem = f32 (default): every product is one fused multiply-add into f32 accumulators.
// elem = f16 (the launcher's f16 rung, adapters with SHADER_F16): x / dy are rounded to f16 as
// they are read, W is dequantised to f16 (code book entry times the f16 block absmax), and
// products (and, forward, dot products of 4 to 8 terms) are formed in f16; every such partial
// sum is added into f32 accumulators, and outputs are f32.
//
// The reduction runs over [red0, red0 + red_len): the launcher splits it into chunks (lavapipe
// stops an invocation's loops after 65,535 iterations) and later chunks add into `out`.
//
//   x / dy: inp, (M, in) / (M, out) contiguous from inp_off, read as vec4 (binding 5)
//   bias:   (out) (binding 6, forward only; ignored unless has_bias)
//   grid (forward):    (ceil(out / (WG_X * 4)), ceil(M / (WG_Y * 4)))
//   grid (grad-input): (ceil(in / (WG_X * 8)), ceil(M / (WG_Y * 4)))
//   grid (dequantize): grid_1d over ceil(n / 8) words, WG_X * WG_Y per group

// #type elem = f32
// #include common/nf4.wgsl

override WG_X: u32 = 8u;        // invocations along the output columns
override WG_Y: u32 = 8u;        // invocations along M
override ALIGNED: bool = false; // in % 8 == 0 and inp_off % 4 == 0: decode whole words

// Element e of x / dy (a scalar out of the vec4 array), as elem.
fn inp_at(e: u32) -> elem {
    return elem(inp[e >> 2u][e & 3u]);
}

// The dequantised value of flat element e of W, as elem.
fn w_at(e: u32) -> elem {
    return elem(nf4_at(e));
}

// acc + x * w. f32: one fused multiply-add. f16: the product rounded to f16 (what the f16 rung
// measures), then added in f32. ELEM_BYTES is a constant, so the branch compiles away.
fn mad(x: vec4<elem>, w: vec4<elem>, acc: vec4<f32>) -> vec4<f32> {
    if (ELEM_BYTES == 2u) { return acc + vec4<f32>(x * w); }
    return fma(vec4<f32>(x), vec4<f32>(w), acc);
}

// Forward: a 4 x 4 block y[i0 .. i0+3, j0 .. j0+3]; acc_r[c] = y[i0 + r, j0 + c].
@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= P.rows || j0 >= P.out_f) { return; }
    let mx = P.rows - 1u;
    let nx = P.out_f - 1u;
    let k = P.in_f;
    // Clamped starts of the 4 rows of x and the 4 rows of W (out-of-range ones are not stored).
    let xr = vec4<u32>(min(i0, mx), min(i0 + 1u, mx), min(i0 + 2u, mx), min(i0 + 3u, mx)) * k
        + vec4<u32>(P.inp_off);
    let wr = vec4<u32>(min(j0, nx), min(j0 + 1u, nx), min(j0 + 2u, nx), min(j0 + 3u, nx)) * k;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let end = P.red0 + P.red_len;
    if (ALIGNED) {
        for (var p = P.red0; p < end; p += 8u) {
            // Column c of lo / hi holds W[j0 + c, p .. p+3] / W[j0 + c, p+4 .. p+7].
            let w0 = codes[(wr.x + p) >> 3u];
            let w1 = codes[(wr.y + p) >> 3u];
            let w2 = codes[(wr.z + p) >> 3u];
            let w3 = codes[(wr.w + p) >> 3u];
            let s = vec4<elem>(vec4<f32>(nf4_absmax((wr.x + p) >> 6u),
                nf4_absmax((wr.y + p) >> 6u), nf4_absmax((wr.z + p) >> 6u),
                nf4_absmax((wr.w + p) >> 6u)));
            let lo = mat4x4<elem>(vec4<elem>(nf4_lo(w0)) * s.x, vec4<elem>(nf4_lo(w1)) * s.y,
                                  vec4<elem>(nf4_lo(w2)) * s.z, vec4<elem>(nf4_lo(w3)) * s.w);
            let hi = mat4x4<elem>(vec4<elem>(nf4_hi(w0)) * s.x, vec4<elem>(nf4_hi(w1)) * s.y,
                                  vec4<elem>(nf4_hi(w2)) * s.z, vec4<elem>(nf4_hi(w3)) * s.w);
            // vec * mat: component c is dot(x row, column c), formed in elem, summed in f32.
            let q = vec4<u32>(xr + vec4<u32>(p)) >> vec4<u32>(2u);
            acc0 += dot8(q.x, lo, hi);
            acc1 += dot8(q.y, lo, hi);
            acc2 += dot8(q.z, lo, hi);
            acc3 += dot8(q.w, lo, hi);
        }
    } else {
        for (var p = P.red0; p < end; p++) {
            let wv = vec4<elem>(w_at(wr.x + p), w_at(wr.y + p), w_at(wr.z + p), w_at(wr.w + p));
            acc0 = mad(vec4<elem>(inp_at(xr.x + p)), wv, acc0);
            acc1 = mad(vec4<elem>(inp_at(xr.y + p)), wv, acc1);
            acc2 = mad(vec4<elem>(inp_at(xr.z + p)), wv, acc2);
            acc3 = mad(vec4<elem>(inp_at(xr.w + p)), wv, acc3);
        }
    }
    let b = bias4(j0);
    put_row4(i0, j0, acc0 + b);
    put_row4(i0 + 1u, j0, acc1 + b);
    put_row4(i0 + 2u, j0, acc2 + b);
    put_row4(i0 + 3u, j0, acc3 + b);
}

// The 8 products of x / dy words q, q + 1 (elements 8 of one row) with the 8 rows of (lo; hi):
// two vec * mat in elem, their sum in f32.
fn dot8(q: u32, lo: mat4x4<elem>, hi: mat4x4<elem>) -> vec4<f32> {
    return vec4<f32>(vec4<elem>(inp[q]) * lo) + vec4<f32>(vec4<elem>(inp[q + 1u]) * hi);
}

// Grad-input: a 4 x 8 block dx[i0 .. i0+3, k0 .. k0+7] as (lo_r, hi_r) = columns 0..3, 4..7.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4_grad_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let k0 = gid.x * 8u;
    let k = P.in_f;
    if (i0 >= P.rows || k0 >= k) { return; }
    let mx = P.rows - 1u;
    let kx = k - 1u;
    // Clamped starts of the 4 rows of dy (length out).
    let dr = vec4<u32>(min(i0, mx), min(i0 + 1u, mx), min(i0 + 2u, mx), min(i0 + 3u, mx))
        * P.out_f + vec4<u32>(P.inp_off);
    var lo0 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    let end = P.red0 + P.red_len;
    for (var o = P.red0; o < end; o++) {
        // W[o, k0 .. k0+7]: one word when aligned, else value by value (clamped into the row).
        let e = o * k + k0;
        var wl: vec4<elem>;
        var wh: vec4<elem>;
        if (ALIGNED) {
            let w = codes[e >> 3u];
            let s = elem(nf4_absmax(e >> 6u));
            wl = vec4<elem>(nf4_lo(w)) * s;
            wh = vec4<elem>(nf4_hi(w)) * s;
        } else {
            let r = o * k;
            wl = vec4<elem>(w_at(e), w_at(r + min(k0 + 1u, kx)), w_at(r + min(k0 + 2u, kx)),
                            w_at(r + min(k0 + 3u, kx)));
            wh = vec4<elem>(w_at(r + min(k0 + 4u, kx)), w_at(r + min(k0 + 5u, kx)),
                            w_at(r + min(k0 + 6u, kx)), w_at(r + min(k0 + 7u, kx)));
        }
        let g = vec4<elem>(inp_at(dr.x + o), inp_at(dr.y + o), inp_at(dr.z + o), inp_at(dr.w + o));
        lo0 = mad(vec4<elem>(g.x), wl, lo0);
        hi0 = mad(vec4<elem>(g.x), wh, hi0);
        lo1 = mad(vec4<elem>(g.y), wl, lo1);
        hi1 = mad(vec4<elem>(g.y), wh, hi1);
        lo2 = mad(vec4<elem>(g.z), wl, lo2);
        hi2 = mad(vec4<elem>(g.z), wh, hi2);
        lo3 = mad(vec4<elem>(g.w), wl, lo3);
        hi3 = mad(vec4<elem>(g.w), wh, hi3);
    }
    store8(i0, k0, lo0, hi0);
    store8(i0 + 1u, k0, lo1, hi1);
    store8(i0 + 2u, k0, lo2, hi2);
    store8(i0 + 3u, k0, lo3, hi3);
}

// dx[i, k0 .. k0+7] = (lo, hi), the in-bounds part.
fn store8(i: u32, k0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (i >= P.rows) { return; }
    let at = i * P.in_f + k0;
    for (var c = 0u; c < 4u; c++) {
        if (k0 + c < P.in_f) { put(at + c, lo[c]); }
        if (k0 + 4u + c < P.in_f) { put(at + 4u + c, hi[c]); }
    }
}

// Dequantise: one invocation per code word writes W[8 t .. 8 t + 7] (flat, row-major), the
// values that exist.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn dequantize_nf4(@builtin(local_invocation_index) li: u32,
                  @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = (wid.x + wid.y * nwg.x) * (WG_X * WG_Y) + li;
    let n = P.out_f * P.in_f;
    let e0 = t * 8u;
    if (e0 >= n) { return; }
    let w = codes[t];
    let s = nf4_absmax(e0 >> 6u);
    let lo = nf4_lo(w) * s;
    let hi = nf4_hi(w) * s;
    for (var c = 0u; c < 4u; c++) {
        if (e0 + c < n) { out[e0 + c] = lo[c]; }
        if (e0 + 4u + c < n) { out[e0 + 4u + c] = hi[c]; }
    }
}
