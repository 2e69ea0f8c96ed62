// Unary elementwise ops on strided f32 views, and their derivatives.
//
//   forward:  out[i]  = f(x[i])
//   backward: gx[i]   = g[i] * f'(x[i])        (chain rule; g = dL/d out)
//
// The op is chosen by the `OP` override constant, so each op compiles to its own pipeline with
// the switch folded away. `alpha`/`beta` in the params carry scalar arguments.
//
//   0 copy     x                 7 gelu     x Phi(x)          14 square   x^2
//   1 neg     -x                 8 silu     x sigmoid(x)      15 sign     sign(x)
//   2 exp      e^x               9 tanh     tanh x            16 recip    1/x
//   3 log      ln x             10 sigmoid  1/(1+e^-x)        17 sin      sin x
//   4 sqrt     sqrt x           11 clamp    min(max(x,a),b)   18 cos      cos x
//   5 abs      |x|              12 pow      x^alpha           19 rsqrt    1/sqrt x
//   6 relu     max(x, 0)        13 affine   alpha x + beta

// #include common/strided.wgsl
// #include common/math.wgsl
// #include common/grid.wgsl

override OP: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> x: array<f32>;        // operand 0, strided
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // output, strided (usually contiguous)

// The second input of `backward` (upstream gradient g, operand 1).
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

fn f(v: f32) -> f32 {
    switch OP {
        case 0u: { return v; }
        case 1u: { return -v; }
        case 2u: { return exp(v); }
        case 3u: { return log(v); }
        case 4u: { return sqrt(v); }
        case 5u: { return abs(v); }
        case 6u: { return max(v, 0.0); }
        case 7u: { return gelu(v); }
        case 8u: { return v * sigmoid(v); }
        case 9u: { return tanh_stable(v); }
        case 10u: { return sigmoid(v); }
        case 11u: { return min(max(v, P.alpha), P.beta); }
        case 12u: { return pow_any(v, P.alpha); }
        case 13u: { return P.alpha * v + P.beta; }
        case 14u: { return v * v; }
        case 15u: { return sign(v); }
        case 16u: { return 1.0 / v; }
        case 17u: { return sin(v); }
        case 18u: { return cos(v); }
        case 19u: { return inverseSqrt(v); }
        default: { return v; }
    }
}

// f'(v).
fn df(v: f32) -> f32 {
    switch OP {
        case 0u: { return 1.0; }
        case 1u: { return -1.0; }
        case 2u: { return exp(v); }
        case 3u: { return 1.0 / v; }
        case 4u: { return 0.5 / sqrt(v); }
        case 5u: { return sign(v); }
        case 6u: { return select(0.0, 1.0, v > 0.0); }
        case 7u: { return gelu_grad(v); }
        case 8u: { let s = sigmoid(v); return s * (1.0 + v * (1.0 - s)); }
        case 9u: { let t = tanh_stable(v); return 1.0 - t * t; }
        case 10u: { let s = sigmoid(v); return s * (1.0 - s); }
        case 11u: { return select(0.0, 1.0, v >= P.alpha && v <= P.beta); }
        case 12u: { return P.alpha * pow_any(v, P.alpha - 1.0); }
        case 13u: { return P.alpha; }
        case 14u: { return 2.0 * v; }
        case 15u: { return 0.0; }
        case 16u: { return -1.0 / (v * v); }
        case 17u: { return cos(v); }
        case 18u: { return -sin(v); }
        case 19u: { return -0.5 * inverseSqrt(v) / v; }
        default: { return 0.0; }
    }
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    out[o.w] = f(x[o.x]);
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.numel) { return; }
    let o = strided_offsets(i);
    gx[o.w] = g[o.y] * df(x[o.x]);
}
