//! Fused cross-entropy (and the errors of the softmax family): the op against
//! `-(log_softmax(x) * onehot)` composed from primitive ops (forward and gradients) for every reduction, gradient checks, out-of-range
//! targets, and bad inputs. The kernels against their CPU twin are kiln-kernels'
//! tests/kernels/cross_entropy.rs.

use crate::common;

use common::*;
use kiln::ops::Reduction;
use kiln::{DType, Tensor};
use kiln_kernels::reference::cross_entropy as cpu;

/// f32 results of exp/log over a row reduction, against f64: a few ulp from exp/log plus the
/// reordered sum; absolute floor for log-softmax values near 0 and tiny probabilities.
const TOL: Tolerance = Tolerance::new(
    3e-4,
    3e-6,
    "f32 exp/log (few ulp) over an f32 sum in another order",
);

/// Row-major data of `shape` with dim `d` moved last: (data, rows, len).
fn indices(v: &[u32], shape: &[usize]) -> Tensor {
    Tensor::from_slice_on(&gpu(), v, shape).unwrap()
}

/// -(log_softmax(x) * onehot).sum(-1), then reduced.
fn composed_cross_entropy(x: &Tensor, t: &[u32], reduction: Reduction) -> kiln::Result<Tensor> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let mut onehot = vec![0.0f32; n * c];
    for (i, &k) in t.iter().enumerate() {
        onehot[i * c + k as usize] = 1.0;
    }
    let per_row = x
        .log_softmax(-1)?
        .mul(&tensor(&onehot, &[n, c]))?
        .sum_dims(&[-1], false)?
        .neg()?;
    match reduction {
        Reduction::Mean => per_row.mean(),
        Reduction::Sum => per_row.sum(),
        Reduction::None => Ok(per_row),
    }
}

fn cpu_cross_entropy(x: &[f64], t: &[u32], n: usize, c: usize, reduction: Reduction) -> Vec<f64> {
    let (loss, _) = cpu::cross_entropy(x, t, n, c);
    match reduction {
        Reduction::Mean => vec![loss.iter().sum::<f64>() / n as f64],
        Reduction::Sum => vec![loss.iter().sum::<f64>()],
        Reduction::None => loss,
    }
}

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

#[test]
fn cross_entropy_matches_cpu_and_composition() {
    for &(n, c) in &[(1usize, 1usize), (7, 17), (17, 7), (129, 10), (3, 257)] {
        let x = rand_vec(n * c, seed(&format!("ceop{n}x{c}")), -4.0, 4.0);
        let x64 = f64s(&x);
        let t = rand_indices(n, seed(&format!("ceopt{n}x{c}")), c as u32);
        let tt = indices(&t, &[n]);
        for reduction in REDUCTIONS {
            let what = format!("{reduction:?} ({n}, {c})");
            let (xf, xc) = (
                tensor(&x, &[n, c]).requires_grad(),
                tensor(&x, &[n, c]).requires_grad(),
            );
            let f = xf.cross_entropy_with(&tt, reduction).unwrap();
            let k = composed_cross_entropy(&xc, &t, reduction).unwrap();
            let want_shape: &[usize] = if reduction == Reduction::None {
                &[n]
            } else {
                &[]
            };
            assert_eq!(f.shape(), want_shape, "{what} shape");
            let got = f.to_vec::<f32>().unwrap();
            TOL.assert_close(
                &format!("{what} vs CPU"),
                &got,
                &cpu_cross_entropy(&x64, &t, n, c, reduction),
            );
            TOL.assert_close(
                &format!("{what} vs composed"),
                &got,
                &k.to_vec::<f32>().unwrap(),
            );
            // Gradients with the same upstream weights.
            let w = rand_vec(f.numel(), seed(&what), 0.5, 1.5);
            let wt = tensor(&w, f.shape());
            f.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
            k.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
            let tol = Tolerance::new(
                1e-3,
                2e-6,
                "f32 backward, composed vs fused, cancelling terms",
            );
            tol.assert_close(
                &format!("{what} grad vs composed"),
                &xf.grad().unwrap().to_vec::<f32>().unwrap(),
                &xc.grad().unwrap().to_vec::<f32>().unwrap(),
            );
        }
    }
    // The default is the mean.
    let x = tensor(&rand_vec(12, seed("ce default"), -1.0, 1.0), &[4, 3]);
    let t = indices(&[0, 1, 2, 1], &[4]);
    assert_eq!(
        x.cross_entropy(&t).unwrap().item().unwrap(),
        x.cross_entropy_with(&t, Reduction::Mean)
            .unwrap()
            .item()
            .unwrap()
    );
}

#[test]
fn cross_entropy_gradcheck() {
    let tol = GradTol::default();
    for reduction in REDUCTIONS {
        let (n, c) = (5usize, 7usize);
        let t = rand_indices(n, seed(&format!("gcce{reduction:?}")), c as u32);
        let tt = indices(&t, &[n]);
        // Targets are captured, not inputs: only the logits are differentiated.
        gradcheck(
            &format!("cross-entropy {reduction:?}"),
            &[Input::rand(
                &[n, c],
                seed(&format!("gccex{reduction:?}")),
                -2.0,
                2.0,
            )],
            |ts| ts[0].cross_entropy_with(&tt, reduction),
            |xs| cpu_cross_entropy(&xs[0], &t, n, c, reduction),
            tol,
        );
        // Strided logits: the transpose of a (C, N) leaf.
        gradcheck(
            &format!("cross-entropy {reduction:?} of a transpose"),
            &[Input::rand(
                &[c, n],
                seed(&format!("gccet{reduction:?}")),
                -2.0,
                2.0,
            )],
            |ts| ts[0].t()?.cross_entropy_with(&tt, reduction),
            |xs| {
                let x = kiln_kernels::reference::gather_strided(&xs[0], 0, &[n, c], &[1, n]);
                cpu_cross_entropy(&x, &t, n, c, reduction)
            },
            tol,
        );
    }
    // Targets narrowed from a longer vector (offset and stride reach the kernel).
    let all = [6u32, 0, 3, 6, 2, 1];
    let tt = indices(&all, &[6]).narrow(0, 1, 4).unwrap();
    gradcheck(
        "cross-entropy with narrowed targets",
        &[Input::rand(&[4, 7], seed("gccen"), -2.0, 2.0)],
        |ts| ts[0].cross_entropy(&tt),
        |xs| cpu_cross_entropy(&xs[0], &all[1..5], 4, 7, Reduction::Mean),
        tol,
    );
}

/// A target >= C is never used as an index: that row's loss and gradient are NaN, others exact.
#[test]
fn cross_entropy_out_of_range_target_gives_nan_for_its_row() {
    let (n, c) = (3usize, 5usize);
    let x = rand_vec(n * c, seed("ce oob"), -2.0, 2.0);
    let t = [1u32, 5, 4];
    let xt = tensor(&x, &[n, c]).requires_grad();
    let loss = xt
        .cross_entropy_with(&indices(&t, &[n]), Reduction::None)
        .unwrap();
    let got = loss.to_vec::<f32>().unwrap();
    assert!(
        got[1].is_nan(),
        "row with target 5 of 5 classes: {}",
        got[1]
    );
    let (want, _) = cpu::cross_entropy(&f64s(&x), &t, n, c);
    TOL.assert_close("in-range rows", &[got[0], got[2]], &[want[0], want[2]]);
    loss.sum().unwrap().backward().unwrap();
    let dx = xt.grad().unwrap().to_vec::<f32>().unwrap();
    assert!(
        dx[c..2 * c].iter().all(|v| v.is_nan()),
        "row 1 grad {:?}",
        &dx[c..2 * c]
    );
    assert!(dx[..c].iter().chain(&dx[2 * c..]).all(|v| v.is_finite()));
    let mean = tensor(&x, &[n, c])
        .cross_entropy(&indices(&t, &[n]))
        .unwrap();
    assert!(mean.item().unwrap().is_nan());
}

#[test]
fn bad_inputs_are_errors() {
    let x = tensor(&rand_vec(12, seed("err"), -1.0, 1.0), &[3, 4]);
    let i = indices(&[1, 2, 3], &[3]);
    // softmax family: dtype, dim range, rank 0, empty logsumexp.
    assert!(matches!(i.softmax(0), Err(kiln::Error::DType { .. })));
    assert!(matches!(i.log_softmax(0), Err(kiln::Error::DType { .. })));
    assert!(matches!(
        i.logsumexp(0, false),
        Err(kiln::Error::DType { .. })
    ));
    assert!(matches!(x.softmax(2), Err(kiln::Error::Arg { .. })));
    assert!(matches!(x.log_softmax(-3), Err(kiln::Error::Arg { .. })));
    assert!(matches!(x.logsumexp(5, true), Err(kiln::Error::Arg { .. })));
    assert!(Tensor::scalar(1.0).unwrap().softmax(0).is_err());
    let empty = Tensor::zeros(&[3, 0]).unwrap();
    assert!(matches!(
        empty.logsumexp(-1, false),
        Err(kiln::Error::Shape { .. })
    ));
    assert_eq!(empty.softmax(-1).unwrap().shape(), &[3, 0]);
    // cross-entropy: logits rank, dtypes, target shape, empty.
    let e = x.flatten_all().unwrap().cross_entropy(&i).unwrap_err();
    assert!(
        matches!(e, kiln::Error::Shape { .. }) && e.to_string().contains("[12]"),
        "{e}"
    );
    let e = x
        .reshape(&[3, 2, 2])
        .unwrap()
        .cross_entropy(&i)
        .unwrap_err();
    assert!(e.to_string().contains("[3, 2, 2]"), "{e}");
    for dt in [DType::F32, DType::I32] {
        let e = x.cross_entropy(&i.to_dtype(dt).unwrap()).unwrap_err();
        assert!(
            matches!(e, kiln::Error::DType { got, .. } if got == dt),
            "{dt:?}: {e}"
        );
    }
    let e = i
        .to_dtype(DType::I32)
        .unwrap()
        .cross_entropy(&i)
        .unwrap_err();
    assert!(matches!(e, kiln::Error::DType { .. }), "{e}");
    let e = x.cross_entropy(&indices(&[1, 2], &[2])).unwrap_err();
    assert!(
        matches!(e, kiln::Error::Shape { .. }) && e.to_string().contains("[2]"),
        "{e}"
    );
    let e = x.cross_entropy(&indices(&[1, 2, 3], &[3, 1])).unwrap_err();
    assert!(e.to_string().contains("[3, 1]"), "{e}");
    let e = Tensor::zeros(&[0, 4])
        .unwrap()
        .cross_entropy(&indices(&[], &[0]))
        .unwrap_err();
    assert!(matches!(e, kiln::Error::Shape { .. }), "{e}");
    let e = Tensor::zeros(&[2, 0])
        .unwrap()
        .cross_entropy(&indices(&[0, 0], &[2]))
        .unwrap_err();
    assert!(matches!(e, kiln::Error::Shape { .. }), "{e}");
}
