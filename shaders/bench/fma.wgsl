// Compute ceiling: long dependent chains of fused multiply-adds held in registers.
//
//   out[i] = sum over lanes of x after P.iters rounds of  x <- fma(x, a, b)  on CHAINS vec4 chains
//
// Each loop iteration runs UNROLL rounds on CHAINS independent vec4 chains, so an iteration is
// FMA_PER_ITER = UNROLL * CHAINS * 4 scalar fmas (2 FLOPs each) and there is enough independent
// work to hide the fma latency. The trip count is P.iters, which the launcher keeps below
// lavapipe's 65,535 loop iterations per invocation; more work means more invocations. With
// |a| < 1 the chains converge to b / (1 - a) and stay finite. The sum is written so that the
// compiler cannot drop the chains.

// #include common/grid.wgsl

const WG: u32 = 256u;
// Rounds per loop iteration and independent vec4 chains (the launcher's FMA_PER_ITER is
// UNROLL * CHAINS * 4; a unit test checks they agree).
const UNROLL: u32 = 8u;
const CHAINS: u32 = 4u;

struct FmaParams {
    n: u32,     // invocations doing work
    iters: u32, // loop iterations per invocation (< 65,536)
    a: f32,     // multiplier, |a| < 1
    b: f32,     // addend
}

@group(0) @binding(0) var<uniform> P: FmaParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // (n,)

@compute @workgroup_size(256)
fn fma_chains(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.n) { return; }
    let a = vec4<f32>(P.a);
    let b = vec4<f32>(P.b);
    let s = f32(i % 1024u) * 1e-3;
    var x0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var x1 = x0 + 0.01;
    var x2 = x0 + 0.02;
    var x3 = x0 + 0.03;
    for (var t = 0u; t < P.iters; t++) {
        // UNROLL = 8 rounds on CHAINS = 4 chains.
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
        x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b);
    }
    out[i] = dot(x0 + x1 + x2 + x3, vec4<f32>(1.0));
}
