// NF4 matmuls, register-blocked over rows (the "block" rung; nf4/simple.wgsl is the "simple" one):
//
//   matmul_nf4_block:             y (M, out) = x (M, in) @ W^T + bias
//   matmul_nf4_grad_input_block:  dx (M, in) = dy (M, out) @ W
//   matmul_nf4_tile:              the forward again, W decoded once per workgroup (at the end)
//
// Same bindings, params and chunking as nf4.wgsl (W's format is in common/nf4.wgsl), for
// in % 64 == 0 only (the launcher falls back to nf4/simple.wgsl otherwise): then every 64-value block
// of W lies inside one row, so a block's absmax is decoded once per block (forward) or once per
// reduction step (grad-input) instead of once per word, and the 8 values of a packed word are
// decoded once and used for TM rows of x / dy. Decoding (a code-book lookup per value) is what
// the simple rung pays for; here its cost per multiply-add falls as 1 / TM. No barriers.
//
// Code-book lookups: LUT = 0 reads the private array NF4 (a per-lane gather on a CPU driver),
// LUT = 1 picks the value with a tree of 15 selects (pure arithmetic). The tuner measures both.
//
//   x / dy: inp, (M, in) / (M, out) contiguous from inp_off (inp_off % 4 == 0 forward)
//   grid (forward):    (ceil(out / (WG_X * 4)), ceil(M / (WG_Y * TM)))
//   grid (grad-input): (ceil(in / (WG_X * 8 * TW)), ceil(M / (WG_Y * TM)))
//   grid (tile):       as the forward, with WG_X = 8

// #include common/nf4.wgsl

override WG_X: u32 = 8u;   // invocations along the output columns
override WG_Y: u32 = 8u;   // invocations along M
override TM: u32 = 8u;     // rows of x / dy per invocation, 1 ..= TM_MAX
override TW: u32 = 1u;     // grad-input: packed words (8 columns each) per invocation, 1 or 2
override LUT: u32 = 0u;    // 0: private-array code book, 1: select tree
override DY4: bool = false; // grad-input: out % 4 == 0 and inp_off % 4 == 0, dy read as vec4

const TM_MAX: u32 = 16u;

// Code-book values of 4 codes (each 0..15).
fn book(c: vec4<u32>) -> vec4<f32> {
    if (LUT == 0u) {
        return vec4<f32>(NF4[c.x], NF4[c.y], NF4[c.z], NF4[c.w]);
    }
    // Bit 0 picks within pairs, bit 1 within quads, bit 2 within octets, bit 3 the half.
    let b0 = (c & vec4<u32>(1u)) != vec4<u32>(0u);
    let b1 = (c & vec4<u32>(2u)) != vec4<u32>(0u);
    let b2 = (c & vec4<u32>(4u)) != vec4<u32>(0u);
    let b3 = (c & vec4<u32>(8u)) != vec4<u32>(0u);
    let v = array<vec4<f32>, 8>(
        select(vec4<f32>(NF4_BOOK[0]), vec4<f32>(NF4_BOOK[1]), b0),
        select(vec4<f32>(NF4_BOOK[2]), vec4<f32>(NF4_BOOK[3]), b0),
        select(vec4<f32>(NF4_BOOK[4]), vec4<f32>(NF4_BOOK[5]), b0),
        select(vec4<f32>(NF4_BOOK[6]), vec4<f32>(NF4_BOOK[7]), b0),
        select(vec4<f32>(NF4_BOOK[8]), vec4<f32>(NF4_BOOK[9]), b0),
        select(vec4<f32>(NF4_BOOK[10]), vec4<f32>(NF4_BOOK[11]), b0),
        select(vec4<f32>(NF4_BOOK[12]), vec4<f32>(NF4_BOOK[13]), b0),
        select(vec4<f32>(NF4_BOOK[14]), vec4<f32>(NF4_BOOK[15]), b0),
    );
    let q0 = select(v[0], v[1], b1);
    let q1 = select(v[2], v[3], b1);
    let q2 = select(v[4], v[5], b1);
    let q3 = select(v[6], v[7], b1);
    return select(select(q0, q1, b2), select(q2, q3, b2), b3);
}

// Values 0..3 / 4..7 of packed word w, unscaled.
fn book_lo(w: u32) -> vec4<f32> {
    return book(vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u));
}
fn book_hi(w: u32) -> vec4<f32> {
    return book(vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u));
}

// Forward: a TM x 4 block y[i0 .. i0+TM-1, j0 .. j0+3]; acc[r][c] = y[i0 + r, j0 + c].
@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4_block(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * TM;
    let j0 = gid.x * 4u;
    if (i0 >= P.rows || j0 >= P.out_f) { return; }
    let mx = P.rows - 1u;
    let nx = P.out_f - 1u;
    let k = P.in_f;
    // Starts of the 4 rows of W (clamped; rows past out are computed and not stored).
    let wr = vec4<u32>(min(j0, nx), min(j0 + 1u, nx), min(j0 + 2u, nx), min(j0 + 3u, nx)) * k;
    // acc[r] = y[i0 + r, j0 .. j0+3]; xq[r] = the vec4 where row i0 + r of x starts (clamped).
    var acc: array<vec4<f32>, TM_MAX>;
    var xq: array<u32, TM_MAX>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
        xq[r] = (min(i0 + r, mx) * k + P.inp_off) >> 2u;
    }
    let end = P.red0 + P.red_len;
    for (var p0 = P.red0; p0 < end; p0 += 64u) {
        // One absmax per row of W per block: the 64 values from p0 share it.
        let s = vec4<f32>(nf4_absmax((wr.x + p0) >> 6u), nf4_absmax((wr.y + p0) >> 6u),
                          nf4_absmax((wr.z + p0) >> 6u), nf4_absmax((wr.w + p0) >> 6u));
        for (var p = p0; p < p0 + 64u; p += 8u) {
            // Column c of lo / hi holds W[j0 + c, p .. p+3] / W[j0 + c, p+4 .. p+7].
            let w0 = codes[(wr.x + p) >> 3u];
            let w1 = codes[(wr.y + p) >> 3u];
            let w2 = codes[(wr.z + p) >> 3u];
            let w3 = codes[(wr.w + p) >> 3u];
            let lo = mat4x4<f32>(book_lo(w0) * s.x, book_lo(w1) * s.y, book_lo(w2) * s.z,
                                 book_lo(w3) * s.w);
            let hi = mat4x4<f32>(book_hi(w0) * s.x, book_hi(w1) * s.y, book_hi(w2) * s.z,
                                 book_hi(w3) * s.w);
            for (var r = 0u; r < TM; r++) {
                let q = xq[r] + (p >> 2u);
                acc[r] += inp[q] * lo + inp[q + 1u] * hi;
            }
        }
    }
    let b = bias4(j0);
    for (var r = 0u; r < TM; r++) {
        put_row4(i0 + r, j0, acc[r] + b);
    }
}

// Grad-input: a TM x 8 TW block dx[i0 .. i0+TM-1, k0 .. k0+8TW-1]; the 8 TW columns lie in one
// 64-block of each row of W (in % 64 == 0, 8 TW divides 64), so each step over o decodes one
// absmax, folded into dy. With DY4 (out % 4 == 0 and inp_off % 4 == 0, set by the launcher) the
// main loop takes 4 values of o at a time, reading dy[r, o .. o+3] as one vec4.
@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4_grad_input_block(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * TM;
    let k0 = gid.x * 8u * TW;
    let k = P.in_f;
    if (i0 >= P.rows || k0 >= k) { return; }
    let mx = P.rows - 1u;
    // acc*[r] = dx[i0 + r, k0 + 8 w .. k0 + 8 w + 7] as (lo, hi) for words w = a, b;
    // base[r] = the element where row i0 + r of dy starts (clamped).
    var lo_a: array<vec4<f32>, TM_MAX>;
    var hi_a: array<vec4<f32>, TM_MAX>;
    var lo_b: array<vec4<f32>, TM_MAX>;
    var hi_b: array<vec4<f32>, TM_MAX>;
    var base: array<u32, TM_MAX>;
    for (var r = 0u; r < TM; r++) {
        lo_a[r] = vec4<f32>(0.0);
        hi_a[r] = vec4<f32>(0.0);
        lo_b[r] = vec4<f32>(0.0);
        hi_b[r] = vec4<f32>(0.0);
        base[r] = min(i0 + r, mx) * P.out_f + P.inp_off;
    }
    let end = P.red0 + P.red_len;
    var o = P.red0;
    if (DY4) {
        for (; o + 4u <= end; o += 4u) {
            // Row o + t of W: words (wa[t], wb[t]) at columns k0 .., absmax s[t].
            let e = vec4<u32>(o, o + 1u, o + 2u, o + 3u) * k + vec4<u32>(k0);
            let s = vec4<f32>(nf4_absmax(e.x >> 6u), nf4_absmax(e.y >> 6u),
                              nf4_absmax(e.z >> 6u), nf4_absmax(e.w >> 6u));
            let wa = vec4<u32>(codes[e.x >> 3u], codes[e.y >> 3u], codes[e.z >> 3u],
                               codes[e.w >> 3u]);
            let la = mat4x4<f32>(book_lo(wa.x), book_lo(wa.y), book_lo(wa.z), book_lo(wa.w));
            let ha = mat4x4<f32>(book_hi(wa.x), book_hi(wa.y), book_hi(wa.z), book_hi(wa.w));
            var lb = mat4x4<f32>();
            var hb = mat4x4<f32>();
            if (TW == 2u) {
                let wb = vec4<u32>(codes[(e.x >> 3u) + 1u], codes[(e.y >> 3u) + 1u],
                                   codes[(e.z >> 3u) + 1u], codes[(e.w >> 3u) + 1u]);
                lb = mat4x4<f32>(book_lo(wb.x), book_lo(wb.y), book_lo(wb.z), book_lo(wb.w));
                hb = mat4x4<f32>(book_hi(wb.x), book_hi(wb.y), book_hi(wb.z), book_hi(wb.w));
            }
            for (var r = 0u; r < TM; r++) {
                // mat * vec: sum over t of column t (row o + t of W) times g[t].
                let g = inp[(base[r] + o) >> 2u] * s;
                lo_a[r] += la * g;
                hi_a[r] += ha * g;
                if (TW == 2u) {
                    lo_b[r] += lb * g;
                    hi_b[r] += hb * g;
                }
            }
        }
    }
    for (; o < end; o++) {
        let e = o * k + k0;
        let s = nf4_absmax(e >> 6u);
        let wa = codes[e >> 3u];
        let la = book_lo(wa);
        let ha = book_hi(wa);
        var lb = vec4<f32>(0.0);
        var hb = vec4<f32>(0.0);
        if (TW == 2u) {
            let wb = codes[(e >> 3u) + 1u];
            lb = book_lo(wb);
            hb = book_hi(wb);
        }
        for (var r = 0u; r < TM; r++) {
            let at = base[r] + o;
            let g = vec4<f32>(inp[at >> 2u][at & 3u] * s);
            lo_a[r] = fma(g, la, lo_a[r]);
            hi_a[r] = fma(g, ha, hi_a[r]);
            if (TW == 2u) {
                lo_b[r] = fma(g, lb, lo_b[r]);
                hi_b[r] = fma(g, hb, hi_b[r]);
            }
        }
    }
    for (var r = 0u; r < TM; r++) {
        let i = i0 + r;
        if (i < P.rows) {
            let at = i * k + k0;
            store4(at, k0, lo_a[r]);
            store4(at + 4u, k0 + 4u, hi_a[r]);
            if (TW == 2u) {
                store4(at + 8u, k0 + 8u, lo_b[r]);
                store4(at + 12u, k0 + 12u, hi_b[r]);
            }
        }
    }
}

// out[at .. at+3] = v for the columns c0 .. c0+3 that exist (in % 64 == 0: all or none).
fn store4(at: u32, c0: u32, v: vec4<f32>) {
    if (c0 < P.in_f) {
        put(at, v.x);
        put(at + 1u, v.y);
        put(at + 2u, v.z);
        put(at + 3u, v.w);
    }
}

// Forward, "tile" rung: the workgroup decodes each 64-value block of its 32 rows of W once into
// workgroup memory (every invocation decodes 4 words), then every invocation multiplies its
// TM x 4 block out of it, so a decoded value serves WG_Y * TM rows of x instead of TM. Two
// barriers per 64 values of the reduction. Needs WG_X == 8 (TILE_COLS columns of W per group).
const TILE_COLS: u32 = 32u;
// wt[c * 16 + t] = W[j_0 + c, p0 + 4 t .. p0 + 4 t + 3] (scaled) for the current block p0.
var<workgroup> wt: array<vec4<f32>, 512>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn matmul_nf4_tile(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(local_invocation_index) li: u32,
                   @builtin(workgroup_id) wid: vec3<u32>) {
    let i0 = gid.y * TM;
    let j0 = gid.x * 4u;
    let mx = P.rows - 1u;
    let nx = P.out_f - 1u;
    let k = P.in_f;
    // What this invocation decodes: column dc of the tile, words 4 dh .. 4 dh + 3 of a block.
    let dc = li >> 1u;
    let dh = li & 1u;
    let drow = min(wid.x * TILE_COLS + dc, nx) * k;
    var acc: array<vec4<f32>, TM_MAX>;
    var xq: array<u32, TM_MAX>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = vec4<f32>(0.0);
        xq[r] = (min(i0 + r, mx) * k + P.inp_off) >> 2u;
    }
    let c0 = lid.x * 4u * 16u;
    let end = P.red0 + P.red_len;
    for (var p0 = P.red0; p0 < end; p0 += 64u) {
        if (li < TILE_COLS * 2u) {
            let s = nf4_absmax((drow + p0) >> 6u);
            let w0 = ((drow + p0) >> 3u) + 4u * dh;
            for (var t = 0u; t < 4u; t++) {
                let w = codes[w0 + t];
                let at = dc * 16u + dh * 8u + 2u * t;
                wt[at] = book_lo(w) * s;
                wt[at + 1u] = book_hi(w) * s;
            }
        }
        workgroupBarrier();
        let xp = p0 >> 2u;
        for (var t = 0u; t < 16u; t++) {
            let w = mat4x4<f32>(wt[c0 + t], wt[c0 + 16u + t], wt[c0 + 32u + t], wt[c0 + 48u + t]);
            for (var r = 0u; r < TM; r++) {
                acc[r] += inp[xq[r] + xp + t] * w;
            }
        }
        workgroupBarrier();
    }
    if (i0 >= P.rows || j0 >= P.out_f) { return; }
    let b = bias4(j0);
    for (var r = 0u; r < TM; r++) {
        put_row4(i0 + r, j0, acc[r] + b);
    }
}
