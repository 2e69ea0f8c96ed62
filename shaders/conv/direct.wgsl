// Conv rung 1, direct: one invocation per output element, straight from the definition
// (see common/conv.wgsl for the math). The reference rung: simple enough to check by eye.
//
//   forward      lhs = w (C_out, CIg, KH, KW)   rhs = x (N, C_in, H, W)
//                dst = out (N, C_out, OH, OW)   bias (C_out) (read only when has_bias = 1)
//   grad_input   lhs = w (C_out, CIg, KH, KW)   rhs = dy (N, C_out, OH, OW)
//                dst = dx (N, C_in, H, W)       (a gather: deterministic, no atomics)
//   grad_weight  lhs = dy (N, C_out, OH, OW)    rhs = x (N, C_in, H, W)
//                dst = partial (splits, C_out, CIg * KH * KW): each invocation sums its split's
//                `chunk` terms of (n, oh, ow); the launcher sums the splits.
//
//   grid: 1-D over P.total invocations (grid_index)

// #include common/conv.wgsl
// #include common/grid.wgsl

@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const WG: u32 = 64u;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.total) { return; }
    let ow = i % P.ow;
    let oh = (i / P.ow) % P.oh;
    let co = (i / (P.ow * P.oh)) % P.c_out;
    let n = i / (P.ow * P.oh * P.c_out);
    let cig = cin_g();
    let c0 = (co / cout_g()) * cig;
    var acc = 0.0;
    for (var ci = 0u; ci < cig; ci++) {
        for (var r = 0u; r < P.kh; r++) {
            let ih = i32(oh * P.stride_h + r * P.dil_h) - i32(P.pad_h);
            if (ih < 0 || ih >= i32(P.h)) { continue; }
            for (var s = 0u; s < P.kw; s++) {
                let iw = i32(ow * P.stride_w + s * P.dil_w) - i32(P.pad_w);
                if (iw < 0 || iw >= i32(P.w)) { continue; }
                let xi = ((n * P.c_in + c0 + ci) * P.h + u32(ih)) * P.w + u32(iw);
                let wi = ((co * cig + ci) * P.kh + r) * P.kw + s;
                acc += lhs[wi] * rhs[xi];
            }
        }
    }
    if (P.has_bias == 1u) { acc += bias[co]; }
    dst[i] = acc;
}

@compute @workgroup_size(WG)
fn grad_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.total) { return; }
    let iw = i % P.w;
    let ih = (i / P.w) % P.h;
    let c = (i / (P.w * P.h)) % P.c_in;
    let n = i / (P.w * P.h * P.c_in);
    let cig = cin_g();
    let cog = cout_g();
    let ci = c % cig;
    let co0 = (c / cig) * cog;
    var acc = 0.0;
    for (var j = 0u; j < cog; j++) {
        let co = co0 + j;
        for (var r = 0u; r < P.kh; r++) {
            // ih = oh * stride - pad + r * dil  =>  oh = (ih + pad - r * dil) / stride, exactly.
            let th = i32(ih + P.pad_h) - i32(r * P.dil_h);
            if (th < 0 || th % i32(P.stride_h) != 0) { continue; }
            let oh = u32(th) / P.stride_h;
            if (oh >= P.oh) { continue; }
            for (var s = 0u; s < P.kw; s++) {
                let tw = i32(iw + P.pad_w) - i32(s * P.dil_w);
                if (tw < 0 || tw % i32(P.stride_w) != 0) { continue; }
                let ow = u32(tw) / P.stride_w;
                if (ow >= P.ow) { continue; }
                let yi = ((n * P.c_out + co) * P.oh + oh) * P.ow + ow;
                let wi = ((co * cig + ci) * P.kh + r) * P.kw + s;
                acc += lhs[wi] * rhs[yi];
            }
        }
    }
    dst[i] = acc;
}

@compute @workgroup_size(WG)
fn grad_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.total) { return; }
    let kl = k_len();
    let per_split = P.c_out * kl;
    let split = i / per_split;
    let k = i % kl;
    let co = (i % per_split) / kl;
    let s = k % P.kw;
    let r = (k / P.kw) % P.kh;
    let c = (co / cout_g()) * cin_g() + k / (P.kw * P.kh);
    let ohw = P.oh * P.ow;
    let start = split * P.chunk;
    let end = min(start + P.chunk, P.n * ohw);
    var acc = 0.0;
    for (var t = start; t < end; t++) {
        let n = t / ohw;
        let p = t % ohw;
        let ih = i32((p / P.ow) * P.stride_h + r * P.dil_h) - i32(P.pad_h);
        let iw = i32((p % P.ow) * P.stride_w + s * P.dil_w) - i32(P.pad_w);
        if (ih < 0 || ih >= i32(P.h) || iw < 0 || iw >= i32(P.w)) { continue; }
        let xi = ((n * P.c_in + c) * P.h + u32(ih)) * P.w + u32(iw);
        acc += lhs[(n * P.c_out + co) * ohw + p] * rhs[xi];
    }
    dst[i] = acc;
}
