// 2-D pooling over NCHW f32, forward and backward.
//
// x and gx are (N, C, H, W); y and g are (N, C, OH, OW); argmax is (N, C, OH, OW) u32. N and C are
// folded into one "plane" index p = n * C + c; every plane is pooled on its own.
//
// Windowed pools (kernel KH x KW, stride SH x SW, zero padding PH x PW):
//   window of output (oh, ow): rows oh*SH - PH .. oh*SH - PH + KH - 1, cols likewise
//   max_forward:  y = max over the window (padding counts as -inf; NaN propagates);
//                 argmax = ih * W + iw of the first maximum in row-major window order
//   avg_forward:  y = sum over the window of x (padding counts as 0) / (KH * KW)
//                 (count_include_pad = true, PyTorch's default)
// Adaptive average pool to (OH, OW), PyTorch's windows:
//   rows floor(oh * H / OH) .. ceil((oh + 1) * H / OH) - 1, cols likewise
//   adaptive_forward: y = mean over the window
//
// Backward entries run one invocation per INPUT element and gather the outputs whose window
// contains it, in increasing (oh, ow): every gx element is written once by one invocation, so
// there are no atomics, no races, and the bits are the same on every run. They overwrite gx.
//   max_backward:      gx[ih, iw] = sum of g[oh, ow] over windows with argmax == ih * W + iw
//   avg_backward:      gx[ih, iw] = sum of g[oh, ow] over windows containing (ih, iw) / (KH * KW)
//   adaptive_backward: gx[ih, iw] = sum of g[oh, ow] / area(oh, ow) over windows containing it
//
// The windows containing input row ih are oh in [ceil((ih + PH - KH + 1) / SH), (ih + PH) / SH]
// (clamped to 0..OH), and for the adaptive pool oh in [ih * OH / H, ceil((ih + 1) * OH / H) - 1].
//
// Loop trip counts are bounded by the launcher (Mesa's llvmpipe ends an invocation's loops after
// 65,535 iterations in total and silently returns what it has).

// #include common/grid.wgsl

struct PoolParams {
    planes: u32,      // N * C
    h: u32,           // H, W: input size
    w: u32,
    oh: u32,          // OH, OW: output size
    ow: u32,
    kh: u32,          // KH, KW: window size (windowed pools)
    kw: u32,
    sh: u32,          // SH, SW: stride
    sw: u32,
    ph: u32,          // PH, PW: padding on each side
    pw: u32,
    src_offset: u32,  // element offset of x[0, 0, 0, 0] (forward) or g[0, 0, 0, 0] (backward)
}

const WG: u32 = 256u;
const NEG_INF: f32 = -3.4028235e38;

@group(0) @binding(0) var<uniform> P: PoolParams;

// max_forward
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (N, C, H, W)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (N, C, OH, OW)
@group(0) @binding(3) var<storage, read_write> arg_out: array<u32>; // (N, C, OH, OW)

// max_backward (g at binding 1, gx at binding 3)
@group(0) @binding(1) var<storage, read> g: array<f32>;             // (N, C, OH, OW)
@group(0) @binding(2) var<storage, read> arg_in: array<u32>;        // (N, C, OH, OW)
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;      // (N, C, H, W)

// avg_backward, adaptive_backward (g at binding 1)
@group(0) @binding(2) var<storage, read_write> gx2: array<f32>;     // (N, C, H, W)

@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.oh * P.ow) { return; }
    let ow = t % P.ow;
    let oh = (t / P.ow) % P.oh;
    let base = P.src_offset + (t / (P.ow * P.oh)) * P.h * P.w;
    var best = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = 0u; i < P.kh; i++) {
        let ih = i32(oh * P.sh + i) - i32(P.ph);
        if (ih < 0 || ih >= i32(P.h)) { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let iw = i32(ow * P.sw + j) - i32(P.pw);
            if (iw < 0 || iw >= i32(P.w)) { continue; }
            let k = u32(ih) * P.w + u32(iw);
            let v = x[base + k];
            // The first element always wins; a NaN wins and then stays (v > NaN is false).
            if (bi == 0xffffffffu || v > best || (v != v && best == best)) {
                best = v;
                bi = k;
            }
        }
    }
    y[t] = best;
    arg_out[t] = bi;
}

// First output index whose window (start o * s - p, size k) reaches input index i, and one past
// the last whose window starts at or before it, clamped to 0..o_len.
fn window_range(i: u32, k: u32, s: u32, p: u32, o_len: u32) -> vec2<u32> {
    let hi = min((i + p) / s + 1u, o_len);
    var lo = 0u;
    if (i + p + 1u > k) {
        lo = (i + p + 1u - k + s - 1u) / s;
    }
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.h * P.w) { return; }
    let iw = t % P.w;
    let ih = (t / P.w) % P.h;
    let obase = (t / (P.w * P.h)) * P.oh * P.ow;
    let me = ih * P.w + iw;
    let rh = window_range(ih, P.kh, P.sh, P.ph, P.oh);
    let rw = window_range(iw, P.kw, P.sw, P.pw, P.ow);
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh++) {
        for (var ow = rw.x; ow < rw.y; ow++) {
            let o = obase + oh * P.ow + ow;
            if (arg_in[o] == me) {
                acc = acc + g[P.src_offset + o];
            }
        }
    }
    gx[t] = acc;
}

// Tiled max pool: stride = kernel and no padding, so the windows tile the input (rows and columns
// past OH * KH, OW * KW belong to no window). The grid is (positions of a plane / WG_T, planes
// folded into (y, z)): a lane finds its (oh, ow) with one small division and no other index
// division (u32 division by a runtime value is scalarised on lavapipe and dominates the generic
// entries). KH, KW are constants so the window loops unroll.
//   max_forward_tiled:  as max_forward
//   max_backward_tiled: each lane writes its whole window: g at the argmax, 0 elsewhere. Only
//                       when H = OH * KH and W = OW * KW (then every gx element is in exactly
//                       one window and is written once).
override KH: u32 = 2u;
override KW: u32 = 2u;
const WG_T: u32 = 64u;

// floor(p / d) for p < 2^24 (checked by the launcher): the correctly rounded f32 quotient is
// within one of the answer, and one step each way fixes it.
fn div_small(p: u32, d: u32) -> u32 {
    var q = u32(f32(p) / f32(d));
    if (q * d > p) { q -= 1u; }
    if ((q + 1u) * d <= p) { q += 1u; }
    return q;
}

@compute @workgroup_size(64)
fn max_forward_tiled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pos = gid.x;
    if (pos >= P.oh * P.ow) { return; }
    let plane = gid.y + gid.z * nwg.y;
    if (plane >= P.planes) { return; }
    let oh = div_small(pos, P.ow);
    let ow = pos - oh * P.ow;
    let base = P.src_offset + plane * P.h * P.w;
    let k0 = oh * KH * P.w + ow * KW;
    var best = NEG_INF;
    var bi = 0xffffffffu;
    for (var i = 0u; i < KH; i++) {
        for (var j = 0u; j < KW; j++) {
            let k = k0 + i * P.w + j;
            let v = x[base + k];
            // The first element always wins; a NaN wins and then stays (v > NaN is false).
            if (bi == 0xffffffffu || v > best || (v != v && best == best)) {
                best = v;
                bi = k;
            }
        }
    }
    let t = plane * P.oh * P.ow + pos;
    y[t] = best;
    arg_out[t] = bi;
}

@compute @workgroup_size(64)
fn max_backward_tiled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pos = gid.x;
    if (pos >= P.oh * P.ow) { return; }
    let plane = gid.y + gid.z * nwg.y;
    if (plane >= P.planes) { return; }
    let oh = div_small(pos, P.ow);
    let ow = pos - oh * P.ow;
    let o = plane * P.oh * P.ow + pos;
    let gv = g[P.src_offset + o];
    let am = arg_in[o];
    let base = plane * P.h * P.w;
    let k0 = oh * KH * P.w + ow * KW;
    for (var i = 0u; i < KH; i++) {
        for (var j = 0u; j < KW; j++) {
            let k = k0 + i * P.w + j;
            gx[base + k] = select(0.0, gv, k == am);
        }
    }
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.oh * P.ow) { return; }
    let ow = t % P.ow;
    let oh = (t / P.ow) % P.oh;
    let base = P.src_offset + (t / (P.ow * P.oh)) * P.h * P.w;
    var acc = 0.0;
    for (var i = 0u; i < P.kh; i++) {
        let ih = i32(oh * P.sh + i) - i32(P.ph);
        if (ih < 0 || ih >= i32(P.h)) { continue; }
        for (var j = 0u; j < P.kw; j++) {
            let iw = i32(ow * P.sw + j) - i32(P.pw);
            if (iw < 0 || iw >= i32(P.w)) { continue; }
            acc = acc + x[base + u32(ih) * P.w + u32(iw)];
        }
    }
    y[t] = acc / f32(P.kh * P.kw);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.h * P.w) { return; }
    let iw = t % P.w;
    let ih = (t / P.w) % P.h;
    let obase = P.src_offset + (t / (P.w * P.h)) * P.oh * P.ow;
    let rh = window_range(ih, P.kh, P.sh, P.ph, P.oh);
    let rw = window_range(iw, P.kw, P.sw, P.pw, P.ow);
    var acc = 0.0;
    for (var oh = rh.x; oh < rh.y; oh++) {
        for (var ow = rw.x; ow < rw.y; ow++) {
            acc = acc + g[obase + oh * P.ow + ow];
        }
    }
    gx2[t] = acc / f32(P.kh * P.kw);
}

// Adaptive window of output index o over an input of length n pooled to o_len: [start, end).
fn adaptive_window(o: u32, n: u32, o_len: u32) -> vec2<u32> {
    return vec2<u32>((o * n) / o_len, ((o + 1u) * n + o_len - 1u) / o_len);
}

@compute @workgroup_size(256)
fn adaptive_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.oh * P.ow) { return; }
    let ow = t % P.ow;
    let oh = (t / P.ow) % P.oh;
    let base = P.src_offset + (t / (P.ow * P.oh)) * P.h * P.w;
    let rh = adaptive_window(oh, P.h, P.oh);
    let rw = adaptive_window(ow, P.w, P.ow);
    var acc = 0.0;
    for (var ih = rh.x; ih < rh.y; ih++) {
        for (var iw = rw.x; iw < rw.y; iw++) {
            acc = acc + x[base + ih * P.w + iw];
        }
    }
    y[t] = acc / f32((rh.y - rh.x) * (rw.y - rw.x));
}

@compute @workgroup_size(256)
fn adaptive_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = grid_index(gid, nwg, WG);
    if (t >= P.planes * P.h * P.w) { return; }
    let iw = t % P.w;
    let ih = (t / P.w) % P.h;
    let obase = P.src_offset + (t / (P.w * P.h)) * P.oh * P.ow;
    // Outputs whose adaptive window contains ih: [ih * OH / H, ceil((ih + 1) * OH / H)).
    let oh_lo = (ih * P.oh) / P.h;
    let oh_hi = ((ih + 1u) * P.oh + P.h - 1u) / P.h;
    let ow_lo = (iw * P.ow) / P.w;
    let ow_hi = ((iw + 1u) * P.ow + P.w - 1u) / P.w;
    var acc = 0.0;
    for (var oh = oh_lo; oh < oh_hi; oh++) {
        let rh = adaptive_window(oh, P.h, P.oh);
        for (var ow = ow_lo; ow < ow_hi; ow++) {
            let rw = adaptive_window(ow, P.w, P.ow);
            acc = acc + g[obase + oh * P.ow + ow] / f32((rh.y - rh.x) * (rw.y - rw.x));
        }
    }
    gx2[t] = acc;
}
