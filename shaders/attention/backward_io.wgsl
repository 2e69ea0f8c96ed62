// The bindings of the vec4 backward kernels (backward_block.wgsl, backward_tiled.wgsl,
// backward_panel.wgsl) and the small helpers they share (the key mask, rows of a head, the
// gradient rows they zero and add to); params and layout in params.wgsl.

// #include attention/qkv.wgsl

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

// Keys j .. j + 3 below `kend` and kept by the mask.
fn kept4(b: u32, j: u32, kend: u32) -> vec4<bool> {
    return vec4<bool>(j < kend && kept(b, j), j + 1u < kend && kept(b, j + 1u),
                      j + 2u < kend && kept(b, j + 2u), j + 3u < kend && kept(b, j + 3u));
}

// 0, 1, 2, 3 (a function, not a `const`: naga 30's override pass rejects a vector constant typed
// after an override-sized array, which backward_tiled.wgsl has).
fn lane() -> vec4<u32> {
    return vec4<u32>(0u, 1u, 2u, 3u);
}

// Rows a..a+3 of a head whose `n` rows start at global row `row0`, clamped to its last row.
fn rows4(row0: u32, a: u32, n: u32) -> vec4<u32> {
    return vec4<u32>(row0) + min(vec4<u32>(a) + lane(), vec4<u32>(n - 1u));
}

// dS and P of one (query, key) line of 4, zero where not visible.
fn grads(s: vec4<f32>, dp: vec4<f32>, l: vec4<f32>, delta: vec4<f32>, vis: vec4<bool>)
    -> mat2x4<f32> {
    let pr = exp(s * p.scale - l);
    return mat2x4<f32>(select(vec4<f32>(0.0), pr * (dp - delta) * p.scale, vis),
                       select(vec4<f32>(0.0), pr, vis));
}

// Zero the D / 4 vec4 of the 4 rows at vec4 indices `at` of ga4 (dQ or dK). Only the dK / dV
// entries bind gb4: a helper that touched it would make every including entry point bind it.
fn zero_ga(at: vec4<u32>) {
    for (var c = 0u; c < D / 4u; c++) {
        ga4[at.x + c] = vec4<f32>(0.0);
        ga4[at.y + c] = vec4<f32>(0.0);
        ga4[at.z + c] = vec4<f32>(0.0);
        ga4[at.w + c] = vec4<f32>(0.0);
    }
}

// Zero the 4 rows `at` of both dK (ga4) and dV (gb4).
fn zero_kv(at: vec4<u32>) {
    zero_ga(at);
    for (var c = 0u; c < D / 4u; c++) {
        gb4[at.x + c] = vec4<f32>(0.0);
        gb4[at.y + c] = vec4<f32>(0.0);
        gb4[at.z + c] = vec4<f32>(0.0);
        gb4[at.w + c] = vec4<f32>(0.0);
    }
}

// Add column r of `m` to column block c of row r of the 4 rows at `at` of ga4 (dQ or dK).
fn add_ga(at: vec4<u32>, c: u32, m: mat4x4<f32>) {
    ga4[at.x + c] += m[0];
    ga4[at.y + c] += m[1];
    ga4[at.z + c] += m[2];
    ga4[at.w + c] += m[3];
}

// The same for dK (`dk`, into ga4) and dV (`dv`, into gb4).
fn add_kv(at: vec4<u32>, c: u32, dk: mat4x4<f32>, dv: mat4x4<f32>) {
    add_ga(at, c, dk);
    gb4[at.x + c] += dv[0];
    gb4[at.y + c] += dv[1];
    gb4[at.z + c] += dv[2];
    gb4[at.w + c] += dv[3];
}
