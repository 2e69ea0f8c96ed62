// The bindings of the vec4 backward kernels (backward_block.wgsl, backward_tiled.wgsl,
// backward_panel.wgsl) and the small readers they share; params and layout in params.wgsl.

// #include attention/params.wgsl

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;          // q (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;          // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;          // v (B, H, Tk, D)
@group(0) @binding(4) var<storage, read> keep: array<f32>;              // (B, Tk), 1 keeps a key
@group(0) @binding(5) var<storage, read> do4: array<vec4<f32>>;         // dO (B, H, Tq, D)
@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;       // (B, H, Tq) (L, delta)
@group(0) @binding(7) var<storage, read_write> ga4: array<vec4<f32>>;   // dQ or dK
@group(0) @binding(8) var<storage, read_write> gb4: array<vec4<f32>>;   // dV (B, H, Tk, D)

// Whether the key mask keeps key j of batch b (always, without a mask).
fn kept(b: u32, j: u32) -> bool {
    return p.has_mask == 0u || keep[p.m_off + b * p.tk + j] != 0.0;
}

// (L, delta) of 4 rows (global row indices), as two vec4: L, then delta.
fn stats4(rows: vec4<u32>) -> mat2x4<f32> {
    let s0 = stats[rows.x];
    let s1 = stats[rows.y];
    let s2 = stats[rows.z];
    let s3 = stats[rows.w];
    return mat2x4<f32>(vec4<f32>(s0.x, s1.x, s2.x, s3.x), vec4<f32>(s0.y, s1.y, s2.y, s3.y));
}
