// Which keys each query sees, shared by every attention kernel (each helper defined once here).
//
// Key j of batch b is kept when there is no key mask or keep[b, j] != 0. Query i sees key j when
// j is kept, inside the dispatch's chunk, and, causal, j <= i + Tk - Tq (key_end and
// query_start in params.wgsl give the same limit as a range).

// #include attention/params.wgsl

@group(0) @binding(4) var<storage, read> keep: array<f32>;   // (B, Tk), 1 keeps a key

// Whether the key mask keeps key j of batch b (always, without a mask).
fn kept(b: u32, j: u32) -> bool {
    return p.has_mask == 0u || keep[p.m_off + b * p.tk + j] != 0.0;
}

// Keys j .. j + 3 below `kend` (the chunk's end, or Tk) and kept; keys past kend are not read.
fn kept4(b: u32, j: u32, kend: u32) -> vec4<bool> {
    return vec4<bool>(j < kend && kept(b, j), j + 1u < kend && kept(b, j + 1u),
                      j + 2u < kend && kept(b, j + 2u), j + 3u < kend && kept(b, j + 3u));
}

// Which of 4 queries (`lim`: the last key each sees) see key j, itself seen by the chunk and
// mask when `k`.
fn sees(k: bool, j: i32, lim: vec4<i32>) -> vec4<bool> {
    return vec4<bool>(k) & (vec4<i32>(j) <= lim);
}

// Which of 4 queries (limits `lim`) see key j: below kend, kept, and within each limit.
fn visible(b: u32, j: u32, kend: u32, lim: vec4<i32>) -> vec4<bool> {
    return sees(j < kend && kept(b, j), i32(j), lim);
}

// Which of the keys `jl` (`kv`: inside Tk and kept) query i sees: i inside this chunk (< iend)
// and, causal, j <= i + Tk - Tq.
fn seen(kv: vec4<bool>, jl: vec4<i32>, i: u32, iend: u32) -> vec4<bool> {
    var ok = kv & vec4<bool>(i < iend);
    if (p.causal != 0u) {
        ok = ok & (jl <= vec4<i32>(i32(i) + i32(p.tk) - i32(p.tq)));
    }
    return ok;
}

// 0, 1, 2, 3 (a function, not a `const`: naga 30's override pass rejects a vector constant typed
// after an override-sized array).
fn lane() -> vec4<u32> {
    return vec4<u32>(0u, 1u, 2u, 3u);
}

// Rows a..a+3 of a head whose `n` rows start at global row `row0`, clamped to its last row.
fn rows4(row0: u32, a: u32, n: u32) -> vec4<u32> {
    return vec4<u32>(row0) + min(vec4<u32>(a) + lane(), vec4<u32>(n - 1u));
}

// Last key each of the queries i0..i0+3 sees: Tk - 1, or causally i + Tk - Tq.
fn limits(i0: u32) -> vec4<i32> {
    if (p.causal == 0u) {
        return vec4<i32>(i32(p.tk) - 1);
    }
    return vec4<i32>(vec4<u32>(i0) + lane()) + vec4<i32>(i32(p.tk) - i32(p.tq));
}

// Where a workgroup of queries tile0 .. tile0 + br stops walking the keys: the chunk's `kend`,
// or causally after the last key its last real query sees (uniform across the workgroup).
fn tile_key_end(tile0: u32, br: u32, kend: u32) -> u32 {
    if (p.causal == 0u) {
        return kend;
    }
    let wlast = i32(min(tile0 + br, p.tq)) - 1 + i32(p.tk) - i32(p.tq);
    return min(kend, u32(clamp(wlast + 1, 0, i32(p.tk))));
}
