//! Element-wise kernels (`unary.wgsl`, `binary.wgsl`) against their CPU twins: every unary
//! function at awkward sizes, every binary function with broadcasting (stride-0 operands), views
//! (transposed, narrowed, at offsets) and the `CONTIG` fast path beside the strided one. The ops'
//! gradient checks, `where`, fills and casts through tensors are the root crate's
//! `tests/ops/elementwise.rs`.

mod cases;

use crate::common::*;
use cases::{binary_ops, inputs_for, unary_cases};
use kiln_kernels::launch::elementwise::{
    self as ek, BinaryOp, Strided, UnaryOp, contiguous_strides,
};
use kiln_kernels::reference::elementwise as cpu;
use kiln_kernels::reference::gather_strided;
use kiln_kernels::{Gpu, GpuBuffer};

/// A fresh output of `n` NaNs.
fn out_buf(g: &Gpu, n: usize) -> GpuBuffer {
    upload(g, &vec![f32::NAN; n])
}

/// `f(x)` over `shape` by the unary kernel, `x` read through its own view.
fn unary(g: &Gpu, op: UnaryOp, shape: &[usize], x: Strided<'_>, (a, b): (f32, f32)) -> Vec<f32> {
    let n = shape.iter().product();
    let out = out_buf(g, n);
    ek::unary(g, op, shape, x, Strided::contiguous(&out, shape), a, b).unwrap();
    read(g, &out, n)
}

/// `a (op) b` over `shape` by the binary kernel, into a fresh contiguous output.
fn binary(g: &Gpu, op: BinaryOp, shape: &[usize], a: Strided<'_>, b: Strided<'_>) -> Vec<f32> {
    let n = shape.iter().product();
    let out = out_buf(g, n);
    ek::binary(g, op, shape, a, b, Strided::contiguous(&out, shape), 0.0).unwrap();
    read(g, &out, n)
}

/// Strides that read an operand of shape `from` broadcast to `to` (NumPy's rule: aligned on the
/// right, size-1 and missing dims get stride 0).
fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(from);
    let lead = to.len() - from.len();
    (0..to.len())
        .map(|i| match i.checked_sub(lead) {
            Some(j) if from[j] != 1 => own[j],
            _ => 0,
        })
        .collect()
}

/// The broadcast shape of `a` and `b`.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(r).map_or(1, |j| s[j]);
    (0..r).map(|i| dim(a, i).max(dim(b, i))).collect()
}

#[test]
fn unary_kernels_match_cpu_at_awkward_sizes() {
    let g = gpu();
    for (op, a, b) in unary_cases() {
        for &n in AWKWARD {
            let x = inputs_for(op, n, seed(&format!("{op:?}{n}")));
            let xb = upload(&g, &x);
            let got = unary(&g, op, &[n], Strided::contiguous(&xb, &[n]), (a, b));
            let want: Vec<f64> = x
                .iter()
                .map(|&v| cpu::unary(op, v as f64, a as f64, b as f64))
                .collect();
            Tolerance::F32_TRANSCENDENTAL.assert_close(&format!("{op:?} n={n}"), &got, &want);
        }
    }
}

#[test]
fn unary_on_transposed_view_matches_cpu() {
    // (17, 7) transposed to (7, 17): exercises the strided index path.
    let g = gpu();
    let x = rand_vec(17 * 7, seed("t"), -2.0, 2.0);
    let xb = upload(&g, &x);
    let view = Strided::new(&xb, 0, &[1, 7]);
    let got = unary(&g, UnaryOp::Tanh, &[7, 17], view, (0.0, 0.0));
    let xt = gather_strided(&x, 0, &[7, 17], &[1, 7]);
    let want: Vec<f64> = xt.iter().map(|&v| (v as f64).tanh()).collect();
    Tolerance::F32_TRANSCENDENTAL.assert_close("tanh of transposed view", &got, &want);
}

/// Broadcasting pairs: (a shape, b shape).
const BCAST: &[(&[usize], &[usize])] = &[
    (&[257], &[257]),
    (&[7, 17], &[17]),
    (&[7, 1], &[1, 17]),
    (&[3, 1, 5], &[7, 1]),
    (&[1], &[129]),
    (&[2, 3, 4], &[]),
];

#[test]
fn binary_kernels_match_cpu_with_broadcasting() {
    let g = gpu();
    for &op in binary_ops() {
        for &(sa, sb) in BCAST {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let mut xa = rand_vec(na, seed(&format!("a{op:?}{sa:?}")), 0.2, 2.0);
            let xb = rand_vec(nb, seed(&format!("b{op:?}{sb:?}")), 0.2, 2.0);
            if na == nb {
                // Make some elements equal so both outcomes occur.
                for i in (0..na).step_by(3) {
                    xa[i] = xb[i];
                }
            }
            let shape = broadcast_shape(sa, sb);
            let (ba, bb) = (upload(&g, &xa), upload(&g, &xb));
            let va = Strided::new(&ba, 0, &broadcast_strides(sa, &shape));
            let vb = Strided::new(&bb, 0, &broadcast_strides(sb, &shape));
            let got = binary(&g, op, &shape, va, vb);
            let wa = cpu::broadcast_to(&f64s(&xa), sa, &shape);
            let wb = cpu::broadcast_to(&f64s(&xb), sb, &shape);
            let want: Vec<f64> = wa
                .iter()
                .zip(&wb)
                .map(|(&u, &v)| cpu::binary(op, u, v, 0.0))
                .collect();
            Tolerance::F32_TRANSCENDENTAL.assert_close(
                &format!("{op:?} {sa:?} {sb:?}"),
                &got,
                &want,
            );
        }
    }
}

#[test]
fn binary_of_transposed_and_narrowed_views() {
    let g = gpu();
    let x = rand_vec(7 * 17, seed("v1"), -1.0, 1.0);
    let y = rand_vec(17 * 9, seed("v2"), -1.0, 1.0);
    let (xb, yb) = (upload(&g, &x), upload(&g, &y));
    // x (7, 17) transposed to (17, 7); columns 1..8 of y (17, 9), row stride 9.
    let a = Strided::new(&xb, 0, &[1, 17]);
    let b = Strided::new(&yb, 1, &[9, 1]);
    let got = binary(&g, BinaryOp::Mul, &[17, 7], a, b);
    let at = gather_strided(&x, 0, &[17, 7], &[1, 17]);
    let bn = gather_strided(&y, 1, &[17, 7], &[9, 1]);
    let want: Vec<f32> = at.iter().zip(&bn).map(|(u, v)| u * v).collect();
    Tolerance::F32_ELEMENTWISE.assert_close("mul of views", &got, &want);
}

/// Contiguous operands at non-zero offsets take the `CONTIG` fast path (offset + i, no index
/// arithmetic); mixing them with a broadcast or strided operand must not.
#[test]
fn contiguous_fast_path_respects_offsets_and_broadcasts() {
    let g = gpu();
    for &n in AWKWARD {
        let x = rand_vec(3 * n, seed("c1"), -1.0, 1.0);
        let y = rand_vec(2 * n + 1, seed("c2"), -1.0, 1.0);
        let (xb, yb) = (upload(&g, &x), upload(&g, &y));
        let a = || Strided::new(&xb, n, &[1]); // offset n, stride 1
        let b = || Strided::new(&yb, n + 1, &[1]); // offset n + 1
        let got = binary(&g, BinaryOp::Sub, &[n], a(), b());
        let want: Vec<f32> = (0..n).map(|i| x[n + i] - y[n + 1 + i]).collect();
        Tolerance::F32_ELEMENTWISE.assert_close("sub of offset views", &got, &want);
        let got = unary(&g, UnaryOp::Relu, &[n], a(), (0.0, 0.0));
        let want: Vec<f32> = (0..n).map(|i| x[n + i].max(0.0)).collect();
        Tolerance::F32_ELEMENTWISE.assert_close("relu of offset view", &got, &want);
        // A broadcast scalar (stride 0) keeps the strided path.
        let got = binary(&g, BinaryOp::Mul, &[n], a(), Strided::new(&yb, 0, &[0]));
        let want: Vec<f32> = (0..n).map(|i| x[n + i] * y[0]).collect();
        Tolerance::F32_ELEMENTWISE.assert_close("mul by broadcast scalar", &got, &want);
        // In place into an offset view.
        let acc = Strided::new(&xb, 2 * n, &[1]);
        ek::binary_inplace(&g, BinaryOp::Add, &[n], acc, b(), 0.0)
            .unwrap_or_else(|e| panic!("add in place into offset view: {e}"));
        let got = read(&g, &xb, 3 * n);
        for i in 0..3 * n {
            let want = if i >= 2 * n {
                x[i] + y[n + 1 + i - 2 * n]
            } else {
                x[i]
            };
            assert!(
                (got[i] - want).abs() <= 1e-6,
                "add in place at {i}: {} vs {want}",
                got[i]
            );
        }
    }
}
