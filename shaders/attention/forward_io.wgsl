// The bindings of the vec4 forward kernels (forward_block.wgsl, forward_tiled.wgsl,
// forward_panel.wgsl), their masked-score constant, and the steps of a block of 4 query rows that
// forward_block and forward_tiled share (they differ in where the keys come from); params and
// layout in params.wgsl.

// #include attention/qkv.wgsl

const NEG: f32 = -3.4028235e38;   // masked score; -FLT_MAX, not -inf (no inf - inf = NaN)

@group(0) @binding(5) var<storage, read_write> o4: array<vec4<f32>>;   // O (B, H, Tq, D)
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;        // L (B, H, Tq)
@group(0) @binding(7) var<storage, read_write> state: array<vec2<f32>>; // (B, H, Tq) running (m, l)

// Which of the 4 queries (limits `lim`: last visible key of each) see key j: j below `kend` and
// kept by the key mask.
fn visible(b: u32, j: u32, kend: u32, lim: vec4<i32>) -> vec4<bool> {
    var ok = j < kend;
    if (ok && p.has_mask != 0u) {
        ok = keep[p.m_off + b * p.tk + j] != 0.0;
    }
    return vec4<bool>(ok) & (vec4<i32>(i32(j)) <= lim);
}

const MAX_DB: u32 = MAX_D / 4u;   // vec4 per row at the largest head size

// A block of 4 query rows in flight: their vec4 rows in q and O (`qa`; rows past Tq clamped:
// computed, never stored), the queries scaled and transposed (`qt[c]`: column block c, column r =
// query row r), the running max `m`, sum `l` and unnormalised O `acc` (`acc[c]`: column block c,
// column r = row r), and the last key each row may see (`lim`).
struct QueryBlock {
    qa: array<u32, 4>,
    qt: array<mat4x4<f32>, MAX_DB>,
    acc: array<mat4x4<f32>, MAX_DB>,
    m: vec4<f32>,
    l: vec4<f32>,
    lim: vec4<i32>,
}

// The block of rows i0 .. i0 + 3 of head bh, with the running state carried from the chunks
// before this dispatch's (none for the first: m = NEG, l = 0, acc = 0). The limits are causal
// (end-aligned) or Tk - 1.
fn start_block(bh: u32, i0: u32) -> QueryBlock {
    var blk: QueryBlock;
    let row0 = bh * p.tq;
    let last = p.tq - 1u;
    let db = D / 4u;
    let qa = array<u32, 4>((row0 + min(i0, last)) * db, (row0 + min(i0 + 1u, last)) * db,
                           (row0 + min(i0 + 2u, last)) * db, (row0 + min(i0 + 3u, last)) * db);
    blk.qa = qa;
    let qo = p.q_off / 4u;
    for (var c = 0u; c < db; c++) {
        blk.qt[c] = transpose(mat4x4<f32>(q4[qo + qa[0] + c], q4[qo + qa[1] + c],
                                          q4[qo + qa[2] + c], q4[qo + qa[3] + c])) * p.scale;
    }
    blk.m = vec4<f32>(NEG);
    if (p.first == 0u) {
        let s0 = state[qa[0] / db];
        let s1 = state[qa[1] / db];
        let s2 = state[qa[2] / db];
        let s3 = state[qa[3] / db];
        blk.m = vec4<f32>(s0.x, s1.x, s2.x, s3.x);
        blk.l = vec4<f32>(s0.y, s1.y, s2.y, s3.y);
        for (var c = 0u; c < db; c++) {
            blk.acc[c] = mat4x4<f32>(o4[qa[0] + c], o4[qa[1] + c], o4[qa[2] + c], o4[qa[3] + c]);
        }
    }
    blk.lim = vec4<i32>(i32(p.tk) - 1);
    if (p.causal != 0u) {
        blk.lim = vec4<i32>(i32(i0)) + vec4<i32>(0, 1, 2, 3) + vec4<i32>(i32(p.tk) - i32(p.tq));
    }
    return blk;
}

// One step of the online softmax: P transposed (`pm[r]` = query row r over the 4 keys) and the
// factor `cf` = exp(m_old - m_new) that rescales each row of the running O.
struct Step {
    pm: mat4x4<f32>,
    cf: vec4<f32>,
}

// The online-softmax step of `blk` over keys j .. j + 3 of batch b with scaled scores `st`
// (column t: key j + t, component: query row); hidden keys (past `kend`, masked, past a row's
// limit) count as NEG with P = 0. Updates the block's running max and sum.
fn online_step(blk: ptr<function, QueryBlock>, st: mat4x4<f32>, b: u32, j: u32, kend: u32)
    -> Step {
    let lim = (*blk).lim;
    let m = (*blk).m;
    let v0 = visible(b, j, kend, lim);
    let v1 = visible(b, j + 1u, kend, lim);
    let v2 = visible(b, j + 2u, kend, lim);
    let v3 = visible(b, j + 3u, kend, lim);
    let s0 = select(vec4<f32>(NEG), st[0], v0);
    let s1 = select(vec4<f32>(NEG), st[1], v1);
    let s2 = select(vec4<f32>(NEG), st[2], v2);
    let s3 = select(vec4<f32>(NEG), st[3], v3);
    let mx = max(m, max(max(s0, s1), max(s2, s3)));
    let cf = exp(m - mx);
    let pt = mat4x4<f32>(select(vec4<f32>(0.0), exp(s0 - mx), v0),
                         select(vec4<f32>(0.0), exp(s1 - mx), v1),
                         select(vec4<f32>(0.0), exp(s2 - mx), v2),
                         select(vec4<f32>(0.0), exp(s3 - mx), v3));
    (*blk).l = (*blk).l * cf + (pt[0] + pt[1]) + (pt[2] + pt[3]);
    (*blk).m = mx;
    return Step(transpose(pt), cf);
}

// acc_c diag(cf) + V_c Pᵀ: column block c of the running O after a step (`vc`: the 4 keys' value
// rows of that block, one per column).
fn accumulate(a: mat4x4<f32>, s: Step, vc: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a[0] * s.cf.x, a[1] * s.cf.y, a[2] * s.cf.z, a[3] * s.cf.w) + vc * s.pm;
}

// Store the first `rows` rows of `blk`: the running (m, l) and the unnormalised O between
// chunks, or O / l and L = m + ln l after the last chunk (a row with no visible key has l = 0,
// so O = 0 and L = ln 0 = -inf).
fn store_block(blk: ptr<function, QueryBlock>, rows: u32) {
    let db = D / 4u;
    let qa = (*blk).qa;
    let m = (*blk).m;
    let l = (*blk).l;
    if (p.last == 0u) {
        for (var r = 0u; r < rows; r++) {
            state[qa[r] / db] = vec2<f32>(m[r], l[r]);
            for (var c = 0u; c < db; c++) {
                o4[qa[r] + c] = (*blk).acc[c][r];
            }
        }
        return;
    }
    let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
    let ls = select(vec4<f32>(bitcast<f32>(0xff800000u)), m + log(l), l > vec4<f32>(0.0));
    for (var r = 0u; r < rows; r++) {
        lse[qa[r] / db] = ls[r];
        for (var c = 0u; c < db; c++) {
            o4[qa[r] + c] = (*blk).acc[c][r] * inv[r];
        }
    }
}
