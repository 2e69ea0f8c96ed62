// 16-bit storage on every adapter: f32 values packed two to a u32 word as f16 or bf16 (WGSL has
// no bf16 type, and f16 arrays need SHADER_F16), and unpacked back to f32. The byte layout is
// that of an array of 16-bit values (element 2w in the low half of word w, little-endian), so a
// packed f16 tensor is the same bytes as an `array<f16>` one.
//
//   pack   (one invocation per word w):     out[o + w] = bits(x[x0 + 2w]) | bits(x[x0 + 2w + 1]) << 16
//                                           (a missing last element packs as 0)
//   unpack (one invocation per element i):  out[o + i] = value(half i % 2 of x[x0 + i / 2])
//
// BF16 = 0: IEEE binary16. f32 -> f16 rounds to nearest, ties to even; above 65504 (from
//           65520 up) it is inf; below 2^-14 it is an f16 subnormal (multiples of 2^-24),
//           below 2^-25 zero (2^-25 itself ties to 0); inf stays inf, NaN stays a quiet NaN.
// BF16 = 1: bfloat16, the top 16 bits of an f32, rounded to nearest, ties to even (so values
//           near f32's max round to inf); NaN stays a quiet NaN; subnormals are kept.
// Unpacking is exact for both. Everything is integer bit work: no conversion instruction whose
// rounding or subnormal handling the driver could choose.
//
// Bindings: 1 x (read)   2 out (read_write); pack: f32 -> u32 words, unpack: u32 words -> f32.
// Offsets of the packed side count words (a packed run starts on a word).

// #include common/grid.wgsl

struct Pack16Params {
    n: u32,      // elements (the packed side holds ceil(n / 2) words)
    x_off: u32,  // offset of x[0] (f32 elements for pack, words for unpack)
    o_off: u32,  // offset of out[0] (words for pack, f32 elements for unpack)
    _pad: u32,
}

// 1 = bfloat16, 0 = IEEE f16.
override BF16: u32 = 0u;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: Pack16Params;
@group(0) @binding(1) var<storage, read> xf: array<f32>;        // pack: (n)
@group(0) @binding(2) var<storage, read_write> ow: array<u32>;  // pack: (ceil(n / 2))
@group(0) @binding(1) var<storage, read> xw: array<u32>;        // unpack: (ceil(n / 2))
@group(0) @binding(2) var<storage, read_write> outf: array<f32>;  // unpack: (n)

// f32 -> IEEE f16 bits, round to nearest even.
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let m = b & 0x7fffffu;
    if (e == 255u) {
        if (m != 0u) { return sign | 0x7e00u | (m >> 13u); }
        return sign | 0x7c00u;
    }
    if (e >= 143u) { return sign | 0x7c00u; }   // 2^16 and up: inf
    if (e <= 112u) {                              // below 2^-14: subnormal or zero
        if (e < 102u) { return sign; }            // below 2^-25
        let mm = m | 0x800000u;
        let s = 126u - e;                         // 14 ..= 24
        var q = mm >> s;
        let rem = mm & ((1u << s) - 1u);
        let mid = 1u << (s - 1u);
        if (rem > mid || (rem == mid && (q & 1u) == 1u)) { q = q + 1u; }
        return sign | q;
    }
    var h = ((e - 112u) << 10u) | (m >> 13u);
    let rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }  // may carry to inf
    return sign | h;
}

// IEEE f16 bits -> f32 (exact).
fn f16_value(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // m * 2^-24, exact in f32; the sign is set on the bits (keeps -0).
        return bitcast<f32>(sign | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u)));
    }
    if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// f32 -> bfloat16 bits, round to nearest even.
fn bf16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu) != 0u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

fn bits16(x: f32) -> u32 {
    if (BF16 == 1u) { return bf16_bits(x); }
    return f16_bits(x);
}

fn value16(h: u32) -> f32 {
    if (BF16 == 1u) { return bitcast<f32>(h << 16u); }
    return f16_value(h);
}

@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = grid_index(gid, nwg, WG);
    if (w >= (P.n + 1u) / 2u) { return; }
    let lo = bits16(xf[P.x_off + 2u * w]);
    var hi = 0u;
    if (2u * w + 1u < P.n) { hi = bits16(xf[P.x_off + 2u * w + 1u]); }
    ow[P.o_off + w] = lo | (hi << 16u);
}

@compute @workgroup_size(256)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = grid_index(gid, nwg, WG);
    if (i >= P.n) { return; }
    let word = xw[P.x_off + i / 2u];
    outf[P.o_off + i] = value16((word >> (16u * (i & 1u))) & 0xffffu);
}
