// The bindings of the vec4 forward kernels (forward_block.wgsl, forward_tiled.wgsl,
// forward_panel.wgsl) and their masked-score constant; params and layout in params.wgsl.

// #include attention/params.wgsl

const NEG: f32 = -3.4028235e38;   // masked score; -FLT_MAX, not -inf (no inf - inf = NaN)

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;         // q (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;         // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;         // v (B, H, Tk, D)
@group(0) @binding(4) var<storage, read> keep: array<f32>;             // (B, Tk), 1 keeps a key
@group(0) @binding(5) var<storage, read_write> o4: array<vec4<f32>>;   // O (B, H, Tq, D)
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;        // L (B, H, Tq)
@group(0) @binding(7) var<storage, read_write> state: array<vec2<f32>>; // (B, H, Tq) running (m, l)
