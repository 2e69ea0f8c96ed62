// Params shared by every conv kernel (NCHW, f32): a 2-D convolution
//
//   out[n, co, oh, ow] = bias[co] + sum_{ci, r, s} w[co, ci, r, s] * x[n, g*CIg + ci, ih, iw]
//   ih = oh * stride_h - pad_h + r * dil_h,   iw = ow * stride_w - pad_w + s * dil_w
//
// with g = co / COg the group of co, CIg = c_in / groups and COg = c_out / groups; taps that
// fall in the padding read 0. Shapes:
//
//   x: (N, C_in, H, W)   w: (C_out, CIg, KH, KW)   out: (N, C_out, OH, OW)
//
// In the GEMM view of one image and one group, K = CIg * KH * KW runs over (ci, r, s):
//   forward      out[co, p]  = sum_k W[co, k] * Xcol[k, p]            (p over (oh, ow))
//   grad input   dX[c, q]    = sum_{(co, r, s)} W[co, c, r, s] * dY[co, (ih - r*dil) / stride]
//   grad weight  dW[co, k]   = sum_{(n, p)} dY[n, co, p] * Xcol[n, k, p]   (split-K over (n, p))
//
// Every kernel names its operands after that view: `lhs` (binding 1), `rhs` (binding 2),
// `dst` (binding 3) and, in the forward only, `bias` (binding 4).

struct ConvParams {
    n: u32,          // images
    c_in: u32,       // input channels (all groups)
    h: u32,          // input height
    w: u32,          // input width
    c_out: u32,      // output channels (all groups)
    oh: u32,         // output height
    ow: u32,         // output width
    groups: u32,     // channel groups (c_in and c_out are multiples)
    kh: u32,         // kernel height
    kw: u32,         // kernel width
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    total: u32,      // invocations that do work in this dispatch
    chunk: u32,      // grad weight: reduction terms (n, oh, ow) per split
    splits: u32,     // grad weight: number of splits of the reduction
    has_bias: u32,   // forward: 1 when `bias` holds a real bias
}

@group(0) @binding(0) var<uniform> P: ConvParams;

// Input channels per group.
fn cin_g() -> u32 { return P.c_in / P.groups; }

// Output channels per group.
fn cout_g() -> u32 { return P.c_out / P.groups; }

// Reduction length of the forward GEMM view: CIg * KH * KW.
fn k_len() -> u32 { return cin_g() * P.kh * P.kw; }
