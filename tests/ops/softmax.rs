//! Softmax, log_softmax and logsumexp: the fused ops against the same functions composed from
//! primitive ops (forward and gradients), finite-difference gradient checks, and inputs large
//! enough to overflow a composition without the max. Cross-entropy is in `cross_entropy.rs`; the
//! kernels against their CPU twins are kiln-kernels' tests/kernels/softmax.rs.

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::ops::Reduction;
use kiln_kernels::launch::reduce::{ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode};
use kiln_kernels::reference::gather_strided as gather;
use kiln_kernels::reference::softmax as cpu;
use kiln_kernels::{Gpu, GpuBuffer};

const MODES: [SoftmaxMode; 3] = [
    SoftmaxMode::Softmax,
    SoftmaxMode::LogSoftmax,
    SoftmaxMode::LogSumExp,
];
const STRATEGIES: [ReduceStrategy; 2] = [ReduceStrategy::Serial, ReduceStrategy::Workgroup];

/// f32 results of exp/log over a row reduction, against f64: a few ulp from exp/log plus the
/// reordered sum; absolute floor for log-softmax values near 0 and tiny probabilities.
const TOL: Tolerance = Tolerance::new(
    3e-4,
    3e-6,
    "f32 exp/log (few ulp) over an f32 sum in another order",
);

fn buf(t: &Tensor) -> &GpuBuffer {
    t.kernel_view().buf
}

fn read_f32(g: &Gpu, b: &GpuBuffer, n: usize) -> Vec<f32> {
    bytemuck::cast_slice(&g.read(b, 0, n as u64 * 4).unwrap()).to_vec()
}

/// Row-major data of `shape` with dim `d` moved last: (data, rows, len).
fn move_last(x: &[f64], shape: &[usize], d: usize) -> (Vec<f64>, usize, usize) {
    let st = kiln_kernels::launch::elementwise::contiguous_strides(shape);
    let mut perm: Vec<usize> = (0..shape.len()).filter(|&k| k != d).collect();
    perm.push(d);
    let ps: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
    let pst: Vec<usize> = perm.iter().map(|&k| st[k]).collect();
    let len = shape[d];
    (
        kiln_kernels::reference::gather_strided(x, 0, &ps, &pst),
        x.len() / len.max(1),
        len,
    )
}

/// Inverse of [`move_last`]: data laid out with dim `d` last, back to row-major `shape`.
fn move_back(y: &[f64], shape: &[usize], d: usize) -> Vec<f64> {
    let mut perm: Vec<usize> = (0..shape.len()).filter(|&k| k != d).collect();
    perm.push(d);
    let ps: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
    let pst = kiln_kernels::launch::elementwise::contiguous_strides(&ps);
    // Strides of the permuted layout, indexed by original dim.
    let mut st = vec![0; shape.len()];
    for (k, &p) in perm.iter().enumerate() {
        st[p] = pst[k];
    }
    kiln_kernels::reference::gather_strided(y, 0, shape, &st)
}

/// The CPU twin of an op along dim `d` of row-major `x`, in row-major output order.
fn cpu_along(mode: SoftmaxMode, x: &[f64], shape: &[usize], d: usize) -> Vec<f64> {
    let (px, rows, len) = move_last(x, shape, d);
    let y = cpu::softmax_rows(mode, &px, rows, len);
    if mode == SoftmaxMode::LogSumExp {
        y
    } else {
        move_back(&y, shape, d)
    }
}

// Compositions from primitive ops (the max is detached: softmax is shift-invariant, so no
// gradient flows through it).

fn composed_softmax(x: &Tensor, d: isize) -> kiln::Result<Tensor> {
    let m = x.max_dims(&[d], true)?.detach();
    let e = x.sub(&m)?.exp()?;
    e.div(&e.sum_dims(&[d], true)?)
}

fn composed_log_softmax(x: &Tensor, d: isize) -> kiln::Result<Tensor> {
    let z = x.sub(&x.max_dims(&[d], true)?.detach())?;
    z.sub(&z.exp()?.sum_dims(&[d], true)?.log()?)
}

fn composed_logsumexp(x: &Tensor, d: isize, keepdim: bool) -> kiln::Result<Tensor> {
    let m = x.max_dims(&[d], true)?.detach();
    let l = x.sub(&m)?.exp()?.sum_dims(&[d], true)?.log()?.add(&m)?;
    if keepdim { Ok(l) } else { l.squeeze(d) }
}

fn fused(mode: SoftmaxMode, x: &Tensor, d: isize) -> kiln::Result<Tensor> {
    match mode {
        SoftmaxMode::Softmax => x.softmax(d),
        SoftmaxMode::LogSoftmax => x.log_softmax(d),
        SoftmaxMode::LogSumExp => x.logsumexp(d, false),
    }
}

fn composed(mode: SoftmaxMode, x: &Tensor, d: isize) -> kiln::Result<Tensor> {
    match mode {
        SoftmaxMode::Softmax => composed_softmax(x, d),
        SoftmaxMode::LogSoftmax => composed_log_softmax(x, d),
        SoftmaxMode::LogSumExp => composed_logsumexp(x, d, false),
    }
}

#[test]
fn softmax_ops_match_cpu_and_composition_along_every_dim() {
    let shape = [3usize, 17, 7];
    let x = rand_vec(3 * 17 * 7, seed("sm ops"), -4.0, 4.0);
    let x64 = f64s(&x);
    let t = tensor(&x, &shape);
    for d in [0isize, 1, 2, -1] {
        let du = d.rem_euclid(3) as usize;
        for mode in MODES {
            let y = fused(mode, &t, d).unwrap();
            let c = composed(mode, &t, d).unwrap();
            assert_eq!(y.shape(), c.shape(), "{mode:?} dim {d} shape");
            let got = y.to_vec::<f32>().unwrap();
            let what = format!("{mode:?} dim {d}");
            TOL.assert_close(
                &format!("{what} vs CPU"),
                &got,
                &cpu_along(mode, &x64, &shape, du),
            );
            TOL.assert_close(
                &format!("{what} vs composed"),
                &got,
                &c.to_vec::<f32>().unwrap(),
            );
        }
    }
    let k = t.logsumexp(1, true).unwrap();
    assert_eq!(k.shape(), &[3, 1, 7]);
    TOL.assert_close(
        "logsumexp keepdim",
        &k.to_vec::<f32>().unwrap(),
        &cpu_along(SoftmaxMode::LogSumExp, &x64, &shape, 1),
    );
}

/// Masked entries (-inf, as in causal attention) get probability 0; a fully masked row is NaN (as
/// in PyTorch); a rank-1 tensor is one row.
#[test]
fn softmax_of_masked_rows_and_vectors() {
    let g = gpu();
    let (rows, len) = (3usize, 9usize);
    let mut x = rand_vec(rows * len, seed("masked"), -3.0, 3.0);
    for j in [0usize, 4, 5, 8] {
        x[j] = f32::NEG_INFINITY;
    }
    for v in &mut x[2 * len..] {
        *v = f32::NEG_INFINITY;
    }
    let x64 = f64s(&x);
    let xt = tensor(&x, &[rows, len]);
    let view = Rows::contiguous(buf(&xt), rows, len);
    for mode in MODES {
        let want = cpu::softmax_rows(mode, &x64, rows, len);
        for strategy in STRATEGIES {
            let out = g.alloc((want.len() * 4) as u64, "out").unwrap();
            sk::softmax_rows(&g, mode, strategy, view, &out, 0).unwrap();
            let got = read_f32(&g, &out, want.len());
            TOL.assert_close(&format!("masked {mode:?} {strategy:?}"), &got, &want);
        }
    }
    let p = xt.softmax(-1).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(p[4], 0.0);
    assert!(p[2 * len..].iter().all(|v| v.is_nan()));
    let v = rand_vec(17, seed("vector"), -2.0, 2.0);
    for mode in MODES {
        let got = fused(mode, &tensor(&v, &[17]), 0).unwrap();
        let want = cpu::softmax_rows(mode, &f64s(&v), 1, 17);
        TOL.assert_close(
            &format!("{mode:?} of a vector"),
            &got.to_vec::<f32>().unwrap(),
            &want,
        );
    }
}

/// A view whose kept dims do not collapse to one stride (a narrowed middle dim) takes the copy path.
#[test]
fn softmax_of_views_that_need_a_copy() {
    let x = rand_vec(4 * 9 * 6, seed("sm copy"), -3.0, 3.0);
    let t = tensor(&x, &[4, 9, 6]).narrow(1, 2, 5).unwrap();
    let sub: Vec<f64> = f64s(&t.to_vec::<f32>().unwrap());
    let shape = [4usize, 5, 6];
    for d in [0isize, 1, 2] {
        for mode in MODES {
            let got = fused(mode, &t, d).unwrap().to_vec::<f32>().unwrap();
            let want = cpu_along(mode, &sub, &shape, d as usize);
            TOL.assert_close(&format!("{mode:?} dim {d} of a narrowed view"), &got, &want);
        }
    }
}

/// Rows around +-90: e^90 overflows f32, and e^-90 sums lose all precision near the f32 minimum.
#[test]
fn softmax_is_stable_for_large_inputs() {
    let (rows, len) = (6usize, 33usize);
    let mut x = Vec::with_capacity(rows * len);
    for r in 0..rows {
        let (lo, hi) = if r % 2 == 0 {
            (80.0, 100.0)
        } else {
            (-100.0, -80.0)
        };
        x.extend(rand_vec(len, seed(&format!("big{r}")), lo, hi));
    }
    let x64 = f64s(&x);
    let t = tensor(&x, &[rows, len]);
    // The composition without the max overflows: this input would break a naive kernel.
    let naive = t
        .exp()
        .unwrap()
        .div(&t.exp().unwrap().sum_dims(&[-1], true).unwrap())
        .unwrap();
    let naive = naive.to_vec::<f32>().unwrap();
    assert!(
        naive.iter().any(|v| !v.is_finite()),
        "inputs are not large enough to overflow"
    );
    // log-softmax values reach ~-20 here; the absolute error scales with |x| ~ 100.
    let tol = Tolerance::new(3e-4, 3e-5, "f32 rounding of inputs of magnitude 100");
    for mode in MODES {
        let want = cpu::softmax_rows(mode, &x64, rows, len);
        let got = fused(mode, &t, -1).unwrap().to_vec::<f32>().unwrap();
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{mode:?}: non-finite output"
        );
        tol.assert_close(&format!("{mode:?} of large inputs"), &got, &want);
        let c = composed(mode, &t, -1).unwrap().to_vec::<f32>().unwrap();
        tol.assert_close(&format!("{mode:?} of large inputs vs composed"), &got, &c);
    }
    let ce = t
        .cross_entropy_with(&indices(&[0, 5, 32, 1, 2, 3], &[6]), Reduction::None)
        .unwrap();
    let targets = [0, 5, 32, 1, 2, 3];
    let (want, _) =
        kiln_kernels::reference::cross_entropy::cross_entropy(&x64, &targets, rows, len);
    tol.assert_close(
        "cross-entropy of large inputs",
        &ce.to_vec::<f32>().unwrap(),
        &want,
    );
}

/// d/dx of sum(op(x) * w) from the fused op equals the composed op's gradient.
#[test]
fn fused_gradients_match_composed_gradients() {
    let shape = [5usize, 9, 4];
    let x = rand_vec(5 * 9 * 4, seed("sm grads"), -3.0, 3.0);
    for d in [0isize, 1, -1] {
        for mode in MODES {
            let grads: Vec<Vec<f32>> = [true, false]
                .iter()
                .map(|&use_fused| {
                    let t = tensor(&x, &shape).requires_grad();
                    let y = if use_fused {
                        fused(mode, &t, d)
                    } else {
                        composed(mode, &t, d)
                    }
                    .unwrap();
                    let w = rand_vec(y.numel(), seed("w") ^ d as u64, 0.5, 1.5);
                    y.mul(&tensor(&w, y.shape()))
                        .unwrap()
                        .sum()
                        .unwrap()
                        .backward()
                        .unwrap();
                    t.grad().unwrap().to_vec::<f32>().unwrap()
                })
                .collect();
            // Gradients are differences of O(1) terms: an absolute floor for those that cancel.
            let tol = Tolerance::new(
                1e-3,
                2e-5,
                "f32 backward, composed vs fused, cancelling terms",
            );
            tol.assert_close(&format!("grad {mode:?} dim {d}"), &grads[0], &grads[1]);
        }
    }
}

/// A view for a gradient check: its name, seed tag, leaf shape, the view of the leaf, the same
/// view of the leaf's values on the CPU, and the view's shape.
type StridedView = (
    &'static str,
    &'static str,
    [usize; 2],
    fn(&Tensor) -> kiln::Result<Tensor>,
    fn(&[f64]) -> Vec<f64>,
    [usize; 2],
);

#[test]
fn softmax_gradcheck() {
    let tol = GradTol::default();
    for mode in MODES {
        // Plain, along the last dim and along dim 0.
        for d in [-1isize, 0] {
            let shape = [4usize, 7];
            gradcheck(
                &format!("{mode:?} dim {d}"),
                &[Input::rand(
                    &shape,
                    seed(&format!("gc{mode:?}{d}")),
                    -2.0,
                    2.0,
                )],
                |ts| fused(mode, &ts[0], d),
                |xs| cpu_along(mode, &xs[0], &shape, d.rem_euclid(2) as usize),
                tol,
            );
        }
        // Strided views, the op along the last dim of each: (view, seed tag, leaf shape, the
        // view, its values on the CPU, its shape).
        #[rustfmt::skip]
        let views: [StridedView; 3] = [
            // Leaf (7, 4), op on its (4, 7) transpose.
            ("a transpose", "gct", [7, 4], |t| t.t(), |x| gather(x, 0, &[4, 7], &[1, 4]), [4, 7]),
            // Columns 1..6 of a (3, 8) leaf.
            ("a narrow", "gcn", [3, 8], |t| t.narrow(1, 1, 5), |x| gather(x, 1, &[3, 5], &[8, 1]), [3, 5]),
            // A (1, 6) leaf expanded to (3, 6) (row stride 0).
            ("an expand", "gce", [1, 6], |t| t.expand(&[3, 6]), |x| bcast(x, &[1, 6], &[3, 6]), [3, 6]),
        ];
        for (what, tag, leaf, view, cpu_view, shape) in views {
            gradcheck(
                &format!("{mode:?} of {what}"),
                &[Input::rand(
                    &leaf,
                    seed(&format!("{tag}{mode:?}")),
                    -2.0,
                    2.0,
                )],
                |ts| fused(mode, &view(&ts[0])?, -1),
                |xs| cpu_along(mode, &cpu_view(&xs[0]), &shape, 1),
                tol,
            );
        }
    }
    gradcheck(
        "logsumexp keepdim",
        &[Input::rand(&[3, 5, 2], seed("gc lse keep"), -2.0, 2.0)],
        |ts| ts[0].logsumexp(1, true),
        |xs| cpu_along(SoftmaxMode::LogSumExp, &xs[0], &[3, 5, 2], 1),
        tol,
    );
}

fn indices(v: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_slice_on(&gpu(), v, shape).unwrap()
}
