// Conv rung 2, implicit GEMM: the convolution as the matrix product of its GEMM view (see
// common/conv.wgsl), with the im2col matrix never stored: each of its elements is computed on
// the fly from the input (index arithmetic plus a padding check). Each invocation keeps a block
// of outputs in vec4 accumulators (like matmul/regblock.wgsl): per step of the reduction it
// loads one value per block row and column and does rows x columns multiply-adds, and no
// invocation waits for another (no barriers, which are costly on lavapipe). Block rows and
// columns past the edge are computed from clamped indices and not stored.
//
//   forward      lhs = w (C_out, CIg, KH, KW)   rhs = x (N, C_in, H, W)
//                dst = out (N, C_out, OH, OW)   bias (C_out) (read only when has_bias = 1)
//                block: 4 * QUADS (<= 16) output channels x 4 output pixels of one image
//                grid: (pixel blocks / WG_U, groups * channel blocks, N): weight loads are
//                uniform across a workgroup
//   grad_input   lhs = w (C_out, CIg, KH, KW)   rhs = dy (N, C_out, OH, OW)
//                dst = dx (N, C_in, H, W)       block: 4 * QUADS (<= 16) input channels x 4
//                input pixels (a gather over (co, r, s) with the stride's divisibility check:
//                no atomics)
//                grid: (pixel blocks / WG_U, groups * channel blocks, N): weight loads uniform
//   grad_weight  lhs = dy (N, C_out, OH, OW)    rhs = x (N, C_in, H, W)
//                dst = partial (splits, C_out, CIg * KH * KW): a block of 4 * QUADS (<= 16)
//                output channels x 4 taps k, summed over this split's `chunk` terms of (n, oh, ow) (split-K keeps
//                every invocation's loop short; the launcher sums the splits)
//                grid: (tap blocks / WG_U, groups * channel blocks, splits): dy loads uniform
//                With has_bias = 1 the taps run to k = K inclusive, where tap K is the constant 1
//                (db[co] = sum dy[n, co, p] is the column of a bias input that is always 1): its
//                sums go to partial_b (splits, C_out), stored after the (splits, C_out, K) block.

// #include common/conv.wgsl
// #include common/grid.wgsl

@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const WG: u32 = 64u;
const B: u32 = 4u;    // block edge: 4 pixels (or taps) per invocation, the vec4 width
const BC: u32 = 16u;  // forward: most output channels per invocation (the accumulator array)
// Channels per invocation (output channels; input channels in grad_input), in quads of 4
// (1..4): the launcher picks fewer for narrow layers, and the pipeline compiles the rest away.
override QUADS: u32 = 4u;
override WG_U: u32 = 8u;   // forward, grad weight: invocations per workgroup (uniform layout)
// grad_input: 1 when both strides are 1, so the gather needs no division (a vector integer
// division by a runtime value is scalarised on lavapipe; two per tap dominated the loop).
override UNIT_STRIDE: u32 = 0u;

const LANES = vec4<u32>(0u, 1u, 2u, 3u);

// rhs at four indices, or 0 where `keep` is false (padding taps).
fn rhs4(idx: vec4<u32>, keep: vec4<bool>) -> vec4<f32> {
    let i = select(vec4<u32>(0u), idx, keep);
    return select(vec4<f32>(0.0), vec4<f32>(rhs[i.x], rhs[i.y], rhs[i.z], rhs[i.w]), keep);
}

// dst[base + q] = v[q] + add for the lanes q with q0 + q < len.
fn store4(base: u32, q0: u32, len: u32, v: vec4<f32>, add: f32) {
    if (q0 < len) { dst[base + q0] = v.x + add; }
    if (q0 + 1u < len) { dst[base + q0 + 1u] = v.y + add; }
    if (q0 + 2u < len) { dst[base + q0 + 2u] = v.z + add; }
    if (q0 + 3u < len) { dst[base + q0 + 3u] = v.w + add; }
}

// Row j of a block (when j < rows): store4 at base + j * stride. Called with a constant j and
// acc[j] for each row, never in a loop over j: an accumulator array indexed by a variable is
// kept in memory by lavapipe (a load and a store per multiply-add), a constant index keeps it
// in registers.
fn put(j: u32, rows: u32, base: u32, stride: u32, q0: u32, len: u32, v: vec4<f32>, add: f32) {
    if (j < rows) { store4(base + j * stride, q0, len, v, add); }
}

// Forward: a block of 4 * QUADS (up to 16) output channels x 4 output pixels per invocation. The
// channel block, the group and the image come from the workgroup id, so every lane of a
// workgroup reads the same weights (uniform addresses: lavapipe loads each once for all lanes);
// only the 4 input values per step are per-lane gathers, each feeding 4 * QUADS channels.
@compute @workgroup_size(WG_U)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let ohw = P.oh * P.ow;
    let cig = cin_g();
    let cog = cout_g();
    let bc = 4u * QUADS;                  // channels per invocation
    let cblocks = (cog + bc - 1u) / bc;
    let p0 = (wid.x * WG_U + lid.x) * B;   // first output pixel of the block (may be past the end)
    let cl0 = (wid.y % cblocks) * bc;     // first output channel, within the group
    let g = wid.y / cblocks;
    let n = wid.z;
    let kl = k_len();
    // Weight rows of the 16 channels (clamped into the group) and input corners of the 4 pixels.
    let last = vec4<u32>(cog - 1u);
    let wa = (vec4<u32>(g * cog) + min(vec4<u32>(cl0) + LANES, last)) * kl;
    let wb = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 4u) + LANES, last)) * kl;
    let wc = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 8u) + LANES, last)) * kl;
    let wd = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 12u) + LANES, last)) * kl;
    let pv = min(vec4<u32>(p0) + LANES, vec4<u32>(ohw - 1u));
    let ih0 = vec4<i32>((pv / P.ow) * P.stride_h) - i32(P.pad_h);
    let iw0 = vec4<i32>((pv % P.ow) * P.stride_w) - i32(P.pad_w);
    let hw = P.h * P.w;
    var xc = (n * P.c_in + g * cig) * hw;   // x[n, channel of ci, 0, 0]
    var wk = 0u;                            // k = (ci, r, s), the column of W
    var acc: array<vec4<f32>, BC>;          // acc[j]: channel cl0 + j, pixels p0 .. p0 + 3
    for (var ci = 0u; ci < cig; ci++) {
        for (var r = 0u; r < P.kh; r++) {
            let ih = ih0 + vec4<i32>(i32(r * P.dil_h));
            let vh = (ih >= vec4<i32>(0)) & (ih < vec4<i32>(i32(P.h)));
            let row = vec4<u32>(ih * i32(P.w)) + vec4<u32>(xc);
            for (var s = 0u; s < P.kw; s++) {
                let iw = iw0 + vec4<i32>(i32(s * P.dil_w));
                let keep = vh & (iw >= vec4<i32>(0)) & (iw < vec4<i32>(i32(P.w)));
                let xv = rhs4(row + vec4<u32>(iw), keep);
                acc[0] = fma(vec4<f32>(lhs[wa.x + wk]), xv, acc[0]);
                acc[1] = fma(vec4<f32>(lhs[wa.y + wk]), xv, acc[1]);
                acc[2] = fma(vec4<f32>(lhs[wa.z + wk]), xv, acc[2]);
                acc[3] = fma(vec4<f32>(lhs[wa.w + wk]), xv, acc[3]);
                if (QUADS > 1u) {
                    acc[4] = fma(vec4<f32>(lhs[wb.x + wk]), xv, acc[4]);
                    acc[5] = fma(vec4<f32>(lhs[wb.y + wk]), xv, acc[5]);
                    acc[6] = fma(vec4<f32>(lhs[wb.z + wk]), xv, acc[6]);
                    acc[7] = fma(vec4<f32>(lhs[wb.w + wk]), xv, acc[7]);
                }
                if (QUADS > 2u) {
                    acc[8] = fma(vec4<f32>(lhs[wc.x + wk]), xv, acc[8]);
                    acc[9] = fma(vec4<f32>(lhs[wc.y + wk]), xv, acc[9]);
                    acc[10] = fma(vec4<f32>(lhs[wc.z + wk]), xv, acc[10]);
                    acc[11] = fma(vec4<f32>(lhs[wc.w + wk]), xv, acc[11]);
                }
                if (QUADS > 3u) {
                    acc[12] = fma(vec4<f32>(lhs[wd.x + wk]), xv, acc[12]);
                    acc[13] = fma(vec4<f32>(lhs[wd.y + wk]), xv, acc[13]);
                    acc[14] = fma(vec4<f32>(lhs[wd.z + wk]), xv, acc[14]);
                    acc[15] = fma(vec4<f32>(lhs[wd.w + wk]), xv, acc[15]);
                }
                wk++;
            }
        }
        xc += hw;
    }
    if (p0 >= ohw) { return; }
    let co = g * cog + cl0;
    let base = (n * P.c_out + co) * ohw;
    let has = P.has_bias == 1u;
    for (var j = 0u; j < bc; j++) {
        if (cl0 + j < cog) {
            store4(base + j * ohw, p0, ohw, acc[j], select(0.0, bias[co + j], has));
        }
    }
}

// Grad input: a block of 4 * QUADS (up to 16) input channels x 4 input pixels per invocation,
// laid out like the forward: the channel block, group and image come from the workgroup id, so
// the weight loads are uniform and only the 4 dy values per step are per-lane gathers.
@compute @workgroup_size(WG_U)
fn grad_input(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let hw = P.h * P.w;
    let ohw = P.oh * P.ow;
    let cig = cin_g();
    let cog = cout_g();
    let khw = P.kh * P.kw;
    let bc = 4u * QUADS;                  // channels per invocation
    let cblocks = (cig + bc - 1u) / bc;
    let q0 = (wid.x * WG_U + lid.x) * B;   // first input pixel of the block (may be past the end)
    let cl0 = (wid.y % cblocks) * bc;     // first input channel, within the group
    let g = wid.y / cblocks;
    let n = wid.z;
    // Offsets of W[., ci, 0, 0] for the 16 channels, and ih + pad, iw + pad of the 4 pixels.
    let last = vec4<u32>(cig - 1u);
    let wa = min(vec4<u32>(cl0) + LANES, last) * khw;
    let wb = min(vec4<u32>(cl0 + 4u) + LANES, last) * khw;
    let wc = min(vec4<u32>(cl0 + 8u) + LANES, last) * khw;
    let wd = min(vec4<u32>(cl0 + 12u) + LANES, last) * khw;
    let qv = min(vec4<u32>(q0) + LANES, vec4<u32>(hw - 1u));
    let th0 = vec4<i32>(qv / P.w + P.pad_h);
    let tw0 = vec4<i32>(qv % P.w + P.pad_w);
    let sh = i32(P.stride_h);
    let sw = i32(P.stride_w);
    var yb = (n * P.c_out + g * cog) * ohw;   // dy[n, co, 0, 0]
    var wco = g * cog * cig * khw;            // w[co, 0, 0, 0]
    var acc: array<vec4<f32>, BC>;            // acc[j]: channel cl0 + j, pixels q0 .. q0 + 3
    for (var j = 0u; j < cog; j++) {
        for (var r = 0u; r < P.kh; r++) {
            // oh = (ih + pad - r * dil) / stride when that divides exactly and lands inside.
            let th = th0 - vec4<i32>(i32(r * P.dil_h));
            var oh = th;
            var vh = (th >= vec4<i32>(0)) & (oh < vec4<i32>(i32(P.oh)));
            if (UNIT_STRIDE == 0u) {
                oh = th / vec4<i32>(sh);
                vh = (th >= vec4<i32>(0)) & (th % vec4<i32>(sh) == vec4<i32>(0))
                    & (oh < vec4<i32>(i32(P.oh)));
            }
            let row = vec4<u32>(oh * i32(P.ow)) + vec4<u32>(yb);
            for (var s = 0u; s < P.kw; s++) {
                let tw = tw0 - vec4<i32>(i32(s * P.dil_w));
                var ow = tw;
                var keep = vh & (tw >= vec4<i32>(0)) & (ow < vec4<i32>(i32(P.ow)));
                if (UNIT_STRIDE == 0u) {
                    ow = tw / vec4<i32>(sw);
                    keep = vh & (tw >= vec4<i32>(0)) & (tw % vec4<i32>(sw) == vec4<i32>(0))
                        & (ow < vec4<i32>(i32(P.ow)));
                }
                let yv = rhs4(row + vec4<u32>(ow), keep);
                let wo = wco + r * P.kw + s;
                acc[0] = fma(vec4<f32>(lhs[wo + wa.x]), yv, acc[0]);
                acc[1] = fma(vec4<f32>(lhs[wo + wa.y]), yv, acc[1]);
                acc[2] = fma(vec4<f32>(lhs[wo + wa.z]), yv, acc[2]);
                acc[3] = fma(vec4<f32>(lhs[wo + wa.w]), yv, acc[3]);
                if (QUADS > 1u) {
                    acc[4] = fma(vec4<f32>(lhs[wo + wb.x]), yv, acc[4]);
                    acc[5] = fma(vec4<f32>(lhs[wo + wb.y]), yv, acc[5]);
                    acc[6] = fma(vec4<f32>(lhs[wo + wb.z]), yv, acc[6]);
                    acc[7] = fma(vec4<f32>(lhs[wo + wb.w]), yv, acc[7]);
                }
                if (QUADS > 2u) {
                    acc[8] = fma(vec4<f32>(lhs[wo + wc.x]), yv, acc[8]);
                    acc[9] = fma(vec4<f32>(lhs[wo + wc.y]), yv, acc[9]);
                    acc[10] = fma(vec4<f32>(lhs[wo + wc.z]), yv, acc[10]);
                    acc[11] = fma(vec4<f32>(lhs[wo + wc.w]), yv, acc[11]);
                }
                if (QUADS > 3u) {
                    acc[12] = fma(vec4<f32>(lhs[wo + wd.x]), yv, acc[12]);
                    acc[13] = fma(vec4<f32>(lhs[wo + wd.y]), yv, acc[13]);
                    acc[14] = fma(vec4<f32>(lhs[wo + wd.z]), yv, acc[14]);
                    acc[15] = fma(vec4<f32>(lhs[wo + wd.w]), yv, acc[15]);
                }
            }
        }
        yb += ohw;
        wco += cig * khw;
    }
    if (q0 >= hw) { return; }
    let base = (n * P.c_in + g * cig + cl0) * hw;
    let rows = cig - cl0;
    put(0u, rows, base, hw, q0, hw, acc[0], 0.0);
    put(1u, rows, base, hw, q0, hw, acc[1], 0.0);
    put(2u, rows, base, hw, q0, hw, acc[2], 0.0);
    put(3u, rows, base, hw, q0, hw, acc[3], 0.0);
    if (QUADS > 1u) {
        put(4u, rows, base, hw, q0, hw, acc[4], 0.0);
        put(5u, rows, base, hw, q0, hw, acc[5], 0.0);
        put(6u, rows, base, hw, q0, hw, acc[6], 0.0);
        put(7u, rows, base, hw, q0, hw, acc[7], 0.0);
    }
    if (QUADS > 2u) {
        put(8u, rows, base, hw, q0, hw, acc[8], 0.0);
        put(9u, rows, base, hw, q0, hw, acc[9], 0.0);
        put(10u, rows, base, hw, q0, hw, acc[10], 0.0);
        put(11u, rows, base, hw, q0, hw, acc[11], 0.0);
    }
    if (QUADS > 3u) {
        put(12u, rows, base, hw, q0, hw, acc[12], 0.0);
        put(13u, rows, base, hw, q0, hw, acc[13], 0.0);
        put(14u, rows, base, hw, q0, hw, acc[14], 0.0);
        put(15u, rows, base, hw, q0, hw, acc[15], 0.0);
    }
}

// Grad weight: a block of 4 * QUADS (up to 16) output channels x 4 taps per invocation. The
// channel block, group and split come from the workgroup id (lanes differ only in their taps),
// so the dy loads are uniform across a workgroup; the 4 x values per step are gathers.
@compute @workgroup_size(WG_U)
fn grad_weight(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let hw = P.h * P.w;
    let ohw = P.oh * P.ow;
    let cig = cin_g();
    let cog = cout_g();
    let kl = k_len();
    let bc = 4u * QUADS;                    // channels per invocation
    let cblocks = (cog + bc - 1u) / bc;
    let k0 = (wid.x * WG_U + lid.x) * B;   // first tap k = (ci, r, s) of the block (may be past)
    let hb = select(0u, 1u, P.has_bias == 1u);   // 1: tap kl is the bias column (constant 1)
    let one = (vec4<u32>(k0) + LANES == vec4<u32>(kl)) & vec4<bool>(hb == 1u);
    let cl0 = (wid.y % cblocks) * bc;       // first output channel, within the group
    let g = wid.y / cblocks;
    let split = wid.z;
    // The 4 taps: x channel offset and (r * dil - pad, s * dil - pad).
    let kv = min(vec4<u32>(k0) + LANES, vec4<u32>(kl - 1u));
    let xo = (vec4<u32>(g * cig) + kv / (P.kh * P.kw)) * hw;
    let rh = vec4<i32>(((kv / P.kw) % P.kh) * P.dil_h) - vec4<i32>(i32(P.pad_h));
    let sw = vec4<i32>((kv % P.kw) * P.dil_w) - vec4<i32>(i32(P.pad_w));
    // dy offsets of the 16 channels (clamped into the group).
    let last = vec4<u32>(cog - 1u);
    let ya = (vec4<u32>(g * cog) + min(vec4<u32>(cl0) + LANES, last)) * ohw;
    let yb4 = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 4u) + LANES, last)) * ohw;
    let yc = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 8u) + LANES, last)) * ohw;
    let yd = (vec4<u32>(g * cog) + min(vec4<u32>(cl0 + 12u) + LANES, last)) * ohw;
    let start = split * P.chunk;
    let end = min(start + P.chunk, P.n * ohw);
    // (n, oh, ow) of term t, stepped incrementally.
    var n = start / ohw;
    var oh = (start % ohw) / P.ow;
    var ow = start % P.ow;
    var acc: array<vec4<f32>, BC>;   // acc[j]: channel cl0 + j, taps k0 .. k0 + 3
    for (var t = start; t < end; t++) {
        let ih = rh + vec4<i32>(i32(oh * P.stride_h));
        let iw = sw + vec4<i32>(i32(ow * P.stride_w));
        let keep = (ih >= vec4<i32>(0)) & (ih < vec4<i32>(i32(P.h)))
            & (iw >= vec4<i32>(0)) & (iw < vec4<i32>(i32(P.w)));
        let xv = select(
            rhs4(xo + vec4<u32>(n * P.c_in * hw) + vec4<u32>(ih * i32(P.w) + iw), keep),
            vec4<f32>(1.0),
            one,
        );
        let yb = n * P.c_out * ohw + oh * P.ow + ow;
        acc[0] = fma(vec4<f32>(lhs[yb + ya.x]), xv, acc[0]);
        acc[1] = fma(vec4<f32>(lhs[yb + ya.y]), xv, acc[1]);
        acc[2] = fma(vec4<f32>(lhs[yb + ya.z]), xv, acc[2]);
        acc[3] = fma(vec4<f32>(lhs[yb + ya.w]), xv, acc[3]);
        if (QUADS > 1u) {
            acc[4] = fma(vec4<f32>(lhs[yb + yb4.x]), xv, acc[4]);
            acc[5] = fma(vec4<f32>(lhs[yb + yb4.y]), xv, acc[5]);
            acc[6] = fma(vec4<f32>(lhs[yb + yb4.z]), xv, acc[6]);
            acc[7] = fma(vec4<f32>(lhs[yb + yb4.w]), xv, acc[7]);
        }
        if (QUADS > 2u) {
            acc[8] = fma(vec4<f32>(lhs[yb + yc.x]), xv, acc[8]);
            acc[9] = fma(vec4<f32>(lhs[yb + yc.y]), xv, acc[9]);
            acc[10] = fma(vec4<f32>(lhs[yb + yc.z]), xv, acc[10]);
            acc[11] = fma(vec4<f32>(lhs[yb + yc.w]), xv, acc[11]);
        }
        if (QUADS > 3u) {
            acc[12] = fma(vec4<f32>(lhs[yb + yd.x]), xv, acc[12]);
            acc[13] = fma(vec4<f32>(lhs[yb + yd.y]), xv, acc[13]);
            acc[14] = fma(vec4<f32>(lhs[yb + yd.z]), xv, acc[14]);
            acc[15] = fma(vec4<f32>(lhs[yb + yd.w]), xv, acc[15]);
        }
        ow++;
        if (ow == P.ow) {
            ow = 0u;
            oh++;
            if (oh == P.oh) {
                oh = 0u;
                n++;
            }
        }
    }
    if (k0 >= kl + hb) { return; }
    let base = split * P.c_out * kl + (g * cog + cl0) * kl;
    let rows = cog - cl0;
    put(0u, rows, base, kl, k0, kl, acc[0], 0.0);
    put(1u, rows, base, kl, k0, kl, acc[1], 0.0);
    put(2u, rows, base, kl, k0, kl, acc[2], 0.0);
    put(3u, rows, base, kl, k0, kl, acc[3], 0.0);
    if (QUADS > 1u) {
        put(4u, rows, base, kl, k0, kl, acc[4], 0.0);
        put(5u, rows, base, kl, k0, kl, acc[5], 0.0);
        put(6u, rows, base, kl, k0, kl, acc[6], 0.0);
        put(7u, rows, base, kl, k0, kl, acc[7], 0.0);
    }
    if (QUADS > 2u) {
        put(8u, rows, base, kl, k0, kl, acc[8], 0.0);
        put(9u, rows, base, kl, k0, kl, acc[9], 0.0);
        put(10u, rows, base, kl, k0, kl, acc[10], 0.0);
        put(11u, rows, base, kl, k0, kl, acc[11], 0.0);
    }
    if (QUADS > 3u) {
        put(12u, rows, base, kl, k0, kl, acc[12], 0.0);
        put(13u, rows, base, kl, k0, kl, acc[13], 0.0);
        put(14u, rows, base, kl, k0, kl, acc[14], 0.0);
        put(15u, rows, base, kl, k0, kl, acc[15], 0.0);
    }
    // The bias column, when it falls in this block: lane kl - k0 of each accumulator.
    if (hb == 1u && kl < k0 + B) {
        let q = kl - k0;
        let bbase = P.splits * P.c_out * kl + split * P.c_out + g * cog + cl0;
        put(0u, rows, bbase + 0u, 0u, 0u, 1u, vec4<f32>(acc[0][q]), 0.0);
        put(1u, rows, bbase + 1u, 0u, 0u, 1u, vec4<f32>(acc[1][q]), 0.0);
        put(2u, rows, bbase + 2u, 0u, 0u, 1u, vec4<f32>(acc[2][q]), 0.0);
        put(3u, rows, bbase + 3u, 0u, 0u, 1u, vec4<f32>(acc[3][q]), 0.0);
        if (QUADS > 1u) {
            put(4u, rows, bbase + 4u, 0u, 0u, 1u, vec4<f32>(acc[4][q]), 0.0);
            put(5u, rows, bbase + 5u, 0u, 0u, 1u, vec4<f32>(acc[5][q]), 0.0);
            put(6u, rows, bbase + 6u, 0u, 0u, 1u, vec4<f32>(acc[6][q]), 0.0);
            put(7u, rows, bbase + 7u, 0u, 0u, 1u, vec4<f32>(acc[7][q]), 0.0);
        }
        if (QUADS > 2u) {
            put(8u, rows, bbase + 8u, 0u, 0u, 1u, vec4<f32>(acc[8][q]), 0.0);
            put(9u, rows, bbase + 9u, 0u, 0u, 1u, vec4<f32>(acc[9][q]), 0.0);
            put(10u, rows, bbase + 10u, 0u, 0u, 1u, vec4<f32>(acc[10][q]), 0.0);
            put(11u, rows, bbase + 11u, 0u, 0u, 1u, vec4<f32>(acc[11][q]), 0.0);
        }
        if (QUADS > 3u) {
            put(12u, rows, bbase + 12u, 0u, 0u, 1u, vec4<f32>(acc[12][q]), 0.0);
            put(13u, rows, bbase + 13u, 0u, 0u, 1u, vec4<f32>(acc[13][q]), 0.0);
            put(14u, rows, bbase + 14u, 0u, 0u, 1u, vec4<f32>(acc[14][q]), 0.0);
            put(15u, rows, bbase + 15u, 0u, 0u, 1u, vec4<f32>(acc[15][q]), 0.0);
        }

    }
}
