// NF4 matmuls with f16 compute (adapters with SHADER_F16): the same two products as nf4/simple.wgsl,
//
//   matmul_nf4:             y (M, out) = x (M, in) @ W^T + bias
//   matmul_nf4_grad_input:  dx (M, in) = dy (M, out) @ W
//
// but x / dy are rounded to f16 as they are read, W is dequantised to f16 (code book entry times
// the f16 block absmax), and products (and, forward, dot products of 4 to 8 terms) are formed in
// f16; every such partial sum is added into f32 accumulators, and outputs are f32. Same
// bindings, grids, chunking and ALIGNED fast path as nf4/simple.wgsl (see there for the layout).

enable f16;

// #include common/nf4.wgsl

@group(0) @binding(5) var<storage, read> inp: array<vec4<f32>>;  // x or dy, contiguous
@group(0) @binding(6) var<storage, read> bias: array<f32>;       // (out)

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
override ALIGNED: bool = false;

fn inp_at(e: u32) -> f16 {
    return f16(inp[e >> 2u][e & 3u]);
}

fn w16(e: u32) -> f16 {
    return f16(nf4_at(e));
}

fn put(at: u32, v: f32) {
    if (P.accumulate != 0u) {
        out[at] += v;
    } else {
        out[at] = v;
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= P.rows || j0 >= P.out_f) { return; }
    let mx = P.rows - 1u;
    let nx = P.out_f - 1u;
    let k = P.in_f;
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
            let w0 = codes[(wr.x + p) >> 3u];
            let w1 = codes[(wr.y + p) >> 3u];
            let w2 = codes[(wr.z + p) >> 3u];
            let w3 = codes[(wr.w + p) >> 3u];
            let s = vec4<f16>(vec4<f32>(nf4_absmax((wr.x + p) >> 6u), nf4_absmax((wr.y + p) >> 6u),
                              nf4_absmax((wr.z + p) >> 6u), nf4_absmax((wr.w + p) >> 6u)));
            let lo = mat4x4<f16>(vec4<f16>(nf4_lo(w0)) * s.x, vec4<f16>(nf4_lo(w1)) * s.y,
                                 vec4<f16>(nf4_lo(w2)) * s.z, vec4<f16>(nf4_lo(w3)) * s.w);
            let hi = mat4x4<f16>(vec4<f16>(nf4_hi(w0)) * s.x, vec4<f16>(nf4_hi(w1)) * s.y,
                                 vec4<f16>(nf4_hi(w2)) * s.z, vec4<f16>(nf4_hi(w3)) * s.w);
            let q = vec4<u32>(xr + vec4<u32>(p)) >> vec4<u32>(2u);
            acc0 += vec4<f32>(vec4<f16>(inp[q.x]) * lo) + vec4<f32>(vec4<f16>(inp[q.x + 1u]) * hi);
            acc1 += vec4<f32>(vec4<f16>(inp[q.y]) * lo) + vec4<f32>(vec4<f16>(inp[q.y + 1u]) * hi);
            acc2 += vec4<f32>(vec4<f16>(inp[q.z]) * lo) + vec4<f32>(vec4<f16>(inp[q.z + 1u]) * hi);
            acc3 += vec4<f32>(vec4<f16>(inp[q.w]) * lo) + vec4<f32>(vec4<f16>(inp[q.w + 1u]) * hi);
        }
    } else {
        for (var p = P.red0; p < end; p++) {
            let wv = vec4<f16>(w16(wr.x + p), w16(wr.y + p), w16(wr.z + p), w16(wr.w + p));
            acc0 += vec4<f32>(inp_at(xr.x + p) * wv);
            acc1 += vec4<f32>(inp_at(xr.y + p) * wv);
            acc2 += vec4<f32>(inp_at(xr.z + p) * wv);
            acc3 += vec4<f32>(inp_at(xr.w + p) * wv);
        }
    }
    var b = vec4<f32>(0.0);
    if (P.has_bias != 0u && P.accumulate == 0u) {
        b = vec4<f32>(bias[min(j0, nx)], bias[min(j0 + 1u, nx)], bias[min(j0 + 2u, nx)],
                      bias[min(j0 + 3u, nx)]);
    }
    store4(i0, j0, acc0 + b);
    store4(i0 + 1u, j0, acc1 + b);
    store4(i0 + 2u, j0, acc2 + b);
    store4(i0 + 3u, j0, acc3 + b);
}

fn store4(i: u32, j0: u32, v: vec4<f32>) {
    if (i >= P.rows) { return; }
    let at = i * P.out_f + j0;
    for (var c = 0u; c < 4u; c++) {
        if (j0 + c < P.out_f) { put(at + c, v[c]); }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4_grad_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let k0 = gid.x * 8u;
    let k = P.in_f;
    if (i0 >= P.rows || k0 >= k) { return; }
    let mx = P.rows - 1u;
    let kx = k - 1u;
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
        let e = o * k + k0;
        var wl: vec4<f16>;
        var wh: vec4<f16>;
        if (ALIGNED) {
            let w = codes[e >> 3u];
            let s = f16(nf4_absmax(e >> 6u));
            wl = vec4<f16>(nf4_lo(w)) * s;
            wh = vec4<f16>(nf4_hi(w)) * s;
        } else {
            let r = o * k;
            wl = vec4<f16>(w16(e), w16(r + min(k0 + 1u, kx)), w16(r + min(k0 + 2u, kx)),
                           w16(r + min(k0 + 3u, kx)));
            wh = vec4<f16>(w16(r + min(k0 + 4u, kx)), w16(r + min(k0 + 5u, kx)),
                           w16(r + min(k0 + 6u, kx)), w16(r + min(k0 + 7u, kx)));
        }
        let g = vec4<f16>(inp_at(dr.x + o), inp_at(dr.y + o), inp_at(dr.z + o), inp_at(dr.w + o));
        lo0 += vec4<f32>(g.x * wl);
        hi0 += vec4<f32>(g.x * wh);
        lo1 += vec4<f32>(g.y * wl);
        hi1 += vec4<f32>(g.y * wh);
        lo2 += vec4<f32>(g.z * wl);
        hi2 += vec4<f32>(g.z * wh);
        lo3 += vec4<f32>(g.w * wl);
        hi3 += vec4<f32>(g.w * wh);
    }
    store8(i0, k0, lo0, hi0);
    store8(i0 + 1u, k0, lo1, hi1);
    store8(i0 + 2u, k0, lo2, hi2);
    store8(i0 + 3u, k0, lo3, hi3);
}

fn store8(i: u32, k0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (i >= P.rows) { return; }
    let at = i * P.in_f + k0;
    for (var c = 0u; c < 4u; c++) {
        if (k0 + c < P.in_f) { put(at + c, lo[c]); }
        if (k0 + 4u + c < P.in_f) { put(at + 4u + c, hi[c]); }
    }
}
