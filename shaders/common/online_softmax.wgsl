// Online log-sum-exp (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018).
//
// A set of values is summarised by a pair (m, s) with s = sum_j exp(x_j - m) and m >= every x_j:
//
//   push  (m, s) + v         = (max(m, v), s exp(m - max) + exp(v - max))
//   merge (m1, s1) + (m2, s2) = (M, s1 exp(m1 - M) + s2 exp(m2 - M)),  M = max(m1, m2)
//   logsumexp                 = m + ln s
//
// so one read pass gives both the max and the sum, and every exponent is <= 0 (nothing overflows).
// The empty summary is (-FLT_MAX, 0), not (-inf, 0): exp(m - M) then never sees -inf - -inf = NaN,
// -inf elements (masks) add exp(-inf) = 0, and a row of only -inf ends as s = 0: logsumexp -inf,
// softmax 0/0 = NaN, as in PyTorch. A NaN element makes s NaN.
//
// Row loops read four elements per iteration: Mesa's llvmpipe/lavapipe ends an invocation's loops
// after 65,535 iterations in total, which would silently cut a long row short; the launchers keep
// each invocation's share of a row within that budget.
//
// `row_summary` walks (part of) one row of `x`, the strided matrix at binding 1 of every including
// shader, declared here. `lse_workgroup` merges one summary per invocation of a workgroup of WG
// invocations with a tree in shared memory (log2 WG barriers); WG is declared here too, for the
// including shader to size its workgroups with. `row_summary_wg` is the two together: a whole
// row's summary by a workgroup.

// Invocations per workgroup: a power of two, set by the launcher.
override WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> x: array<f32>;   // (rows, C), strided

var<workgroup> lse_shared: array<vec2<f32>, WG>;

fn lse_empty() -> vec2<f32> {
    return vec2<f32>(-3.4028235e38, 0.0);
}

fn lse_push(a: vec2<f32>, v: f32) -> vec2<f32> {
    if (v > a.x) {
        return vec2<f32>(v, a.y * exp(a.x - v) + 1.0);
    }
    return vec2<f32>(a.x, a.y + exp(v - a.x));
}

// Push four values at once: one rescale of the running sum per four elements.
fn lse_push4(a: vec2<f32>, v: vec4<f32>) -> vec2<f32> {
    let m = max(a.x, max(max(v.x, v.y), max(v.z, v.w)));
    let e = exp(v - vec4<f32>(m));
    return vec2<f32>(m, a.y * exp(a.x - m) + ((e.x + e.y) + (e.z + e.w)));
}

// (m, s) of x[start + j * stride] for j = j0, j0 + step, ... < len, four elements per loop
// iteration (the loop budget above).
fn row_summary(start: u32, stride: u32, len: u32, j0: u32, step: u32) -> vec2<f32> {
    var ms = lse_empty();
    var j = j0;
    for (; j + 3u * step < len; j += 4u * step) {
        let v = vec4<f32>(x[start + j * stride], x[start + (j + step) * stride],
                          x[start + (j + 2u * step) * stride], x[start + (j + 3u * step) * stride]);
        ms = lse_push4(ms, v);
    }
    for (; j < len; j += step) {
        ms = lse_push(ms, x[start + j * stride]);
    }
    return ms;
}

fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

// Merge the summaries `a` of all WG invocations (`t` = local index); every invocation gets the
// total. Call from uniform control flow, once per shader invocation.
fn lse_workgroup(t: u32, a: vec2<f32>) -> vec2<f32> {
    lse_shared[t] = a;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) {
            lse_shared[t] = lse_merge(lse_shared[t], lse_shared[t + s]);
        }
        workgroupBarrier();
    }
    return lse_shared[0];
}

// (m, s) of the row `r` of a (rows, len) matrix starting at x[start] (elements `stride` apart),
// by the WG invocations of a workgroup (`t` = local index), each reading every WG-th element;
// every invocation gets it. Rows past `rows` give the empty summary. Call from uniform control
// flow, once per shader invocation.
fn row_summary_wg(r: u32, rows: u32, start: u32, stride: u32, len: u32, t: u32) -> vec2<f32> {
    var part = lse_empty();
    if (r < rows) {
        part = row_summary(start, stride, len, t, WG);
    }
    return lse_workgroup(t, part);
}
