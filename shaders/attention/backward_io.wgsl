// The bindings of the vec4 backward kernels (backward_block.wgsl, backward_tiled.wgsl,
// backward_panel.wgsl) and the small readers they share; params and layout in params.wgsl.

// #include attention/mask.wgsl

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;          // q (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;          // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;          // v (B, H, Tk, D)
// binding 4: keep (B, Tk), declared by attention/mask.wgsl
@group(0) @binding(5) var<storage, read> do4: array<vec4<f32>>;         // dO (B, H, Tq, D)
@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;       // (B, H, Tq) (L, delta)
@group(0) @binding(7) var<storage, read_write> ga4: array<vec4<f32>>;   // dQ or dK
@group(0) @binding(8) var<storage, read_write> gb4: array<vec4<f32>>;   // dV (B, H, Tk, D)

// (L, delta) of 4 rows (global row indices), as two vec4: L, then delta.
fn stats4(rows: vec4<u32>) -> mat2x4<f32> {
    let s0 = stats[rows.x];
    let s1 = stats[rows.y];
    let s2 = stats[rows.z];
    let s3 = stats[rows.w];
    return mat2x4<f32>(vec4<f32>(s0.x, s1.x, s2.x, s3.x), vec4<f32>(s0.y, s1.y, s2.y, s3.y));
}

// Zero the gradient rows `r` (vec4 index of each row's first column block, db = D / 4 blocks
// per row) of ga4 (dQ or dK) or gb4 (dV): the first chunk's start. (Two functions: an entry
// point's bindings are those its call graph uses, and the dQ kernels bind no gb4.)
fn zero_a(r: vec4<u32>, db: u32) {
    for (var c = 0u; c < db; c++) {
        ga4[r.x + c] = vec4<f32>(0.0); ga4[r.y + c] = vec4<f32>(0.0);
        ga4[r.z + c] = vec4<f32>(0.0); ga4[r.w + c] = vec4<f32>(0.0);
    }
}
fn zero_b(r: vec4<u32>, db: u32) {
    for (var c = 0u; c < db; c++) {
        gb4[r.x + c] = vec4<f32>(0.0); gb4[r.y + c] = vec4<f32>(0.0);
        gb4[r.z + c] = vec4<f32>(0.0); gb4[r.w + c] = vec4<f32>(0.0);
    }
}

// Column block c of rows `r` of ga4 (dQ or dK) += the columns of x, one row per column.
fn add_a(r: vec4<u32>, c: u32, x: mat4x4<f32>) {
    ga4[r.x + c] += x[0]; ga4[r.y + c] += x[1]; ga4[r.z + c] += x[2]; ga4[r.w + c] += x[3];
}

// Column block c of rows `r` of gb4 (dV) += the columns of x.
fn add_b(r: vec4<u32>, c: u32, x: mat4x4<f32>) {
    gb4[r.x + c] += x[0]; gb4[r.y + c] += x[1]; gb4[r.z + c] += x[2]; gb4[r.w + c] += x[3];
}

// Last key each of the queries i0..i0+3 sees (-1 for a clamped row past Tq).
fn backward_limits(i0: u32) -> vec4<i32> {
    return select(vec4<i32>(-1), limits(i0), vec4<u32>(i0) + lane() < vec4<u32>(p.tq));
}

// dS and P of one (query, key) line of 4, zero where not visible.
fn grads(s: vec4<f32>, dp: vec4<f32>, l: vec4<f32>, delta: vec4<f32>, vis: vec4<bool>)
    -> mat2x4<f32> {
    let pr = exp(s * p.scale - l);
    return mat2x4<f32>(select(vec4<f32>(0.0), pr * (dp - delta) * p.scale, vis),
                       select(vec4<f32>(0.0), pr, vis));
}

// dQ side: dS of 4 queries (s[t], dp[t]: vec4 over the queries, key j + t; st: their (L,
// delta); lim: their last visible keys) against keys j..j+3 (`kv`: in the chunk and kept), 0
// where not visible, transposed: column r is query r over the 4 keys.
fn dq_ds(s: mat4x4<f32>, dp: mat4x4<f32>, st: mat2x4<f32>, kv: vec4<bool>, j: u32,
         lim: vec4<i32>) -> mat4x4<f32> {
    let jj = i32(j);
    let g0 = grads(s[0], dp[0], st[0], st[1], sees(kv.x, jj, lim));
    let g1 = grads(s[1], dp[1], st[0], st[1], sees(kv.y, jj + 1, lim));
    let g2 = grads(s[2], dp[2], st[0], st[1], sees(kv.z, jj + 2, lim));
    let g3 = grads(s[3], dp[3], st[0], st[1], sees(kv.w, jj + 3, lim));
    return transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0]));
}

// dK / dV side: dS and P of 4 keys `jl` (`kv`: inside Tk and kept; s[r], dp[r]: vec4 over the
// keys, query i + r with (L, delta) = (l[r], dl[r])) against queries i..i+3 (< iend), 0 where
// not visible, transposed: column k is key k over the queries.
struct KeyGrads {
    ds: mat4x4<f32>,
    pr: mat4x4<f32>,
}

fn dkv_grads(s: mat4x4<f32>, dp: mat4x4<f32>, l: vec4<f32>, dl: vec4<f32>, kv: vec4<bool>,
             jl: vec4<i32>, i: u32, iend: u32) -> KeyGrads {
    let g0 = grads(s[0], dp[0], vec4<f32>(l.x), vec4<f32>(dl.x), seen(kv, jl, i, iend));
    let g1 = grads(s[1], dp[1], vec4<f32>(l.y), vec4<f32>(dl.y), seen(kv, jl, i + 1u, iend));
    let g2 = grads(s[2], dp[2], vec4<f32>(l.z), vec4<f32>(dl.z), seen(kv, jl, i + 2u, iend));
    let g3 = grads(s[3], dp[3], vec4<f32>(l.w), vec4<f32>(dl.w), seen(kv, jl, i + 3u, iend));
    return KeyGrads(transpose(mat4x4<f32>(g0[0], g1[0], g2[0], g3[0])),
                    transpose(mat4x4<f32>(g0[1], g1[1], g2[1], g3[1])));
}
