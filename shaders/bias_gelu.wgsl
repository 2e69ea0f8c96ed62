// Fused bias + GELU over a contiguous (R, N) f32 block: one pass each way instead of an add pass
// and a GELU pass. The GELU form is the `TANH` override (false: exact erf form, BERT / PyTorch
// default; true: GPT-2's tanh approximation).
//
//   forward:  y  = gelu(x + b_n)
//   backward: dz = g * gelu'(x + b_n)        (= dx; db = sum over rows of dz, done by the host)
//
//   erf:  gelu(z) = z Phi(z),                     gelu'(z) = Phi(z) + z phi(z)
//   tanh: gelu(z) = z/2 (1 + tanh u),  u = c (z + 0.044715 z^3),  c = sqrt(2/pi)
//         gelu'(z) = (1 + tanh u)/2 + z/2 (1 - tanh^2 u) c (1 + 3 * 0.044715 z^2)
//
// One element per invocation, no loops.

// #include common/math.wgsl
// #include common/grid.wgsl

struct BiasGeluParams {
    len: u32,        // R * N
    n: u32,          // N: bias length (last dim)
    x_offset: u32,   // element offset of x[0, 0]
    g_offset: u32,   // element offset of g[0, 0] (backward)
}

override TANH: bool = false;
const WG: u32 = 256u;
const C: f32 = 0.79788456080286536;  // sqrt(2 / pi)
const K: f32 = 0.044715;

@group(0) @binding(0) var<uniform> P: BiasGeluParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (R, N) at x_offset
@group(0) @binding(2) var<storage, read> b: array<f32>;          // (N)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (R, N): forward output

// backward: x, b as above, then
@group(0) @binding(3) var<storage, read> g: array<f32>;          // (R, N) at g_offset
@group(0) @binding(4) var<storage, read_write> dz: array<f32>;   // (R, N)

fn act(z: f32) -> f32 {
    if (TANH) {
        return 0.5 * z * (1.0 + tanh_stable(C * (z + K * z * z * z)));
    }
    return gelu(z);
}

fn act_grad(z: f32) -> f32 {
    if (TANH) {
        let t = tanh_stable(C * (z + K * z * z * z));
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * C * (1.0 + 3.0 * K * z * z);
    }
    return gelu_grad(z);
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.len) { return; }
    y[i] = act(x[P.x_offset + i] + b[i % P.n]);
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.len) { return; }
    dz[i] = g[P.g_offset + i] * act_grad(x[P.x_offset + i] + b[i % P.n]);
}
