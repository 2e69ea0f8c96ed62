// The bindings of the vec4 forward kernels (forward_block.wgsl, forward_tiled.wgsl,
// forward_panel.wgsl) and their masked-score constant; params and layout in params.wgsl.

// #include attention/mask.wgsl

const NEG: f32 = -3.4028235e38;   // masked score; -FLT_MAX, not -inf (no inf - inf = NaN)

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>;         // q (B, H, Tq, D)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>;         // k (B, H, Tk, D)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>;         // v (B, H, Tk, D)
// binding 4: keep (B, Tk), declared by attention/mask.wgsl
@group(0) @binding(5) var<storage, read_write> o4: array<vec4<f32>>;   // O (B, H, Tq, D)
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;        // L (B, H, Tq)
@group(0) @binding(7) var<storage, read_write> state: array<vec2<f32>>; // (B, H, Tq) running (m, l)

// Longest head size in vec4 blocks: the per-invocation arrays of forward_block / forward_tiled.
const MAX_DB: u32 = MAX_D / 4u;

// Columns of x scaled by f: column r times f[r].
fn scale_cols(x: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(x[0] * f.x, x[1] * f.y, x[2] * f.z, x[3] * f.w);
}

// vec4 index of rows i0..i0+3 of head bh's q / O (rows past Tq clamped: computed, never stored).
fn query_rows(bh: u32, i0: u32, db: u32) -> array<u32, 4> {
    let r = rows4(bh * p.tq, i0, p.tq) * db;
    return array<u32, 4>(r.x, r.y, r.z, r.w);
}

// Start 4 query rows `qa`: qt[c] = scaled transpose of their column block c (column r = query
// r) and, after the first chunk, the running (m, l) and accumulators from `state` and `o4`.
fn load_queries(qa: array<u32, 4>, db: u32, qt: ptr<function, array<mat4x4<f32>, MAX_DB>>,
                acc: ptr<function, array<mat4x4<f32>, MAX_DB>>, m: ptr<function, vec4<f32>>,
                l: ptr<function, vec4<f32>>) {
    let qo = p.q_off / 4u;
    for (var c = 0u; c < db; c++) {
        (*qt)[c] = transpose(mat4x4<f32>(q4[qo + qa[0] + c], q4[qo + qa[1] + c],
                                         q4[qo + qa[2] + c], q4[qo + qa[3] + c])) * p.scale;
    }
    *m = vec4<f32>(NEG);
    *l = vec4<f32>(0.0);
    if (p.first == 0u) {
        let s0 = state[qa[0] / db];
        let s1 = state[qa[1] / db];
        let s2 = state[qa[2] / db];
        let s3 = state[qa[3] / db];
        *m = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
        *l = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
        for (var c = 0u; c < db; c++) {
            (*acc)[c] = mat4x4<f32>(o4[qa[0] + c], o4[qa[1] + c], o4[qa[2] + c], o4[qa[3] + c]);
        }
    }
}

// One online-softmax step of 4 queries over keys j..j+3 (scores st: column t = key j + t,
// component = query; hidden keys by chunk, mask or each query's limit `lim`): updates (m, l) and
// returns the accumulators' factor exp(m - m') and P transposed (pm[r] = query r's weights).
struct SoftmaxStep {
    cf: vec4<f32>,
    pm: mat4x4<f32>,
}

fn softmax_step(st: mat4x4<f32>, b: u32, j: u32, kend: u32, lim: vec4<i32>,
                m: ptr<function, vec4<f32>>, l: ptr<function, vec4<f32>>) -> SoftmaxStep {
    let v0 = visible(b, j, kend, lim);
    let v1 = visible(b, j + 1u, kend, lim);
    let v2 = visible(b, j + 2u, kend, lim);
    let v3 = visible(b, j + 3u, kend, lim);
    let s0 = select(vec4<f32>(NEG), st[0], v0);
    let s1 = select(vec4<f32>(NEG), st[1], v1);
    let s2 = select(vec4<f32>(NEG), st[2], v2);
    let s3 = select(vec4<f32>(NEG), st[3], v3);
    let mx = max(*m, max(max(s0, s1), max(s2, s3)));
    let cf = exp(*m - mx);
    let pt = mat4x4<f32>(select(vec4<f32>(0.0), exp(s0 - mx), v0),
                         select(vec4<f32>(0.0), exp(s1 - mx), v1),
                         select(vec4<f32>(0.0), exp(s2 - mx), v2),
                         select(vec4<f32>(0.0), exp(s3 - mx), v3));
    *l = *l * cf + (pt[0] + pt[1]) + (pt[2] + pt[3]);
    *m = mx;
    return SoftmaxStep(cf, transpose(pt));
}

// Finish the first `rows` of the 4 query rows `qa`: between chunks, store the running (m, l)
// and accumulators; after the last, O = acc / l and L = m + ln l (no visible key: l = 0, so
// O = 0 and L = ln 0 = -inf).
fn finish_queries(qa: array<u32, 4>, rows: u32, db: u32, m: vec4<f32>, l: vec4<f32>,
                  acc: ptr<function, array<mat4x4<f32>, MAX_DB>>) {
    if (p.last == 0u) {
        for (var r = 0u; r < rows; r++) {
            state[qa[r] / db] = vec2<f32>(m[r], l[r]);
            for (var c = 0u; c < db; c++) {
                o4[qa[r] + c] = (*acc)[c][r];
            }
        }
        return;
    }
    let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    let ls = select(vec4<f32>(bitcast<f32>(0xff800000u)), m + log(l), l > vec4<f32>(0.0));
    for (var r = 0u; r < rows; r++) {
        lse[qa[r] / db] = ls[r];
        for (var c = 0u; c < db; c++) {
            o4[qa[r] + c] = (*acc)[c][r] * inv[r];
        }
    }
}
