// NF4 weights with double-quantised scales, shared by nf4/simple.wgsl (f32 and f16) and nf4/block.wgsl.
//
// W (out, in), row-major, flattened to n = out * in values in blocks of 64 (one absmax each) and
// groups of 256 blocks (one f32 scale each). The CPU quantiser and the packing rules are in
// kernels/src/reference/nf4.rs:
//   codes:  value e is nibble e % 8 (bits 4 (e % 8) ..) of word e / 8
//   scales: the int8 q_b of block b is byte b % 4 (low byte first) of word b / 4
//   stats:  [mu, s_0, s_1, ...];  block absmax c_b' = q_b * s_{b / 256} + mu
//   value:  w_e = NF4[code_e] * c'_{e / 64}

struct Nf4Params {
    rows: u32,        // M, rows of x / dy / y / dx
    out_f: u32,       // out features, rows of W
    in_f: u32,        // in features, columns of W
    red0: u32,        // first index of the reduction chunk (k forward, o for grad-input)
    red_len: u32,     // length of the reduction chunk (the launcher keeps it <= K_CHUNK)
    inp_off: u32,     // element offset of x (forward) or dy (grad-input)
    accumulate: u32,  // 0: out = result (+ bias); 1: out += result (later chunks)
    has_bias: u32,    // forward: 1 adds bias[o] in the first chunk
}

@group(0) @binding(0) var<uniform> P: Nf4Params;
@group(0) @binding(1) var<storage, read> codes: array<u32>;    // ceil(n / 8) packed codes
@group(0) @binding(2) var<storage, read> scales: array<u32>;   // ceil(n / 256) words of 4 int8
@group(0) @binding(3) var<storage, read> stats: array<f32>;    // [mu, s_0, s_1, ...]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // y (M, out) / dx (M, in) / W
@group(0) @binding(5) var<storage, read> inp: array<vec4<f32>>;  // x or dy, contiguous
@group(0) @binding(6) var<storage, read> bias: array<f32>;       // (out), forward only

// The NF4 code book (QLoRA appendix E; bitsandbytes csrc/kernels.cu `nf4_dequantization_lut`),
// equal to reference::nf4::NF4_CODE (a test checks). NF4_BOOK[i] with a constant i is a
// constant; NF4 is a private copy, so dynamic indexing is a plain array read.
const NF4_BOOK = array<f32, 16>(
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236328, 1.0,
);
var<private> NF4: array<f32, 16> = NF4_BOOK;

// Double-quantised absmax of block b: q_b * s_g + mu.
fn nf4_absmax(b: u32) -> f32 {
    let q = extractBits(bitcast<i32>(scales[b >> 2u]), (b & 3u) * 8u, 8u);
    return f32(q) * stats[1u + (b >> 8u)] + stats[0];
}

// The dequantised value of flat element e.
fn nf4_at(e: u32) -> f32 {
    let code = (codes[e >> 3u] >> ((e & 7u) * 4u)) & 15u;
    return NF4[code] * nf4_absmax(e >> 6u);
}

// The 8 code-book entries (unscaled) of packed word w: values 0..3 and 4..7.
fn nf4_lo(w: u32) -> vec4<f32> {
    let c = vec4<u32>(w, w >> 4u, w >> 8u, w >> 12u) & vec4<u32>(15u);
    return vec4<f32>(NF4[c.x], NF4[c.y], NF4[c.z], NF4[c.w]);
}
fn nf4_hi(w: u32) -> vec4<f32> {
    let c = vec4<u32>(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4<u32>(15u);
    return vec4<f32>(NF4[c.x], NF4[c.y], NF4[c.z], NF4[c.w]);
}

// Write out[at] = v, or add it for later chunks of the reduction.
fn put(at: u32, v: f32) {
    if (P.accumulate != 0u) {
        out[at] += v;
    } else {
        out[at] = v;
    }
}

// The forward's bias of columns j0 .. j0+3 (clamped to the last): only in the first chunk, and
// only with has_bias; 0 otherwise.
fn bias4(j0: u32) -> vec4<f32> {
    if (P.has_bias == 0u || P.accumulate != 0u) {
        return vec4<f32>(0.0);
    }
    let nx = P.out_f - 1u;
    return vec4<f32>(bias[min(j0, nx)], bias[min(j0 + 1u, nx)], bias[min(j0 + 2u, nx)],
                     bias[min(j0 + 3u, nx)]);
}

// y[i, j0 .. j0+3] = v (forward), the in-bounds part.
fn put_row4(i: u32, j0: u32, v: vec4<f32>) {
    if (i >= P.rows) { return; }
    let at = i * P.out_f + j0;
    for (var c = 0u; c < 4u; c++) {
        if (j0 + c < P.out_f) { put(at + c, v[c]); }
    }
}
