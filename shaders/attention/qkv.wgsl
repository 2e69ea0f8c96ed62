// The bindings every vec4 attention kernel reads (forward_io.wgsl and backward_io.wgsl add
// their outputs); params and layout in params.wgsl.

// #include attention/params.wgsl

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;          // q (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;          // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;          // v (B, H, Tk, D)
@group(0) @binding(4) var<storage, read> keep: array<f32>;              // (B, Tk), 1 keeps a key
