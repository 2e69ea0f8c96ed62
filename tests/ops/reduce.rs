//! Reductions: the tensor ops over any axes with keepdim, long rows, strided views, and gradient
//! checks. Both kernel strategies against the CPU twin are kiln-kernels' tests/kernels/reduce.rs.

use crate::common;

use common::*;
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};
use kiln_kernels::reference::reduce as cpu;

#[test]
fn reductions_over_any_axes_match_cpu() {
    let shape = [3usize, 7, 5];
    let x = rand_vec(105, seed("axes"), -2.0, 2.0);
    let t = tensor(&x, &shape);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for dims in [
        vec![0isize],
        vec![1],
        vec![2],
        vec![0, 2],
        vec![-1, 0],
        vec![0, 1, 2],
    ] {
        let nd: Vec<usize> = dims
            .iter()
            .map(|&d| if d < 0 { (d + 3) as usize } else { d as usize })
            .collect();
        let kept: Vec<usize> = (0..3).filter(|k| !nd.contains(k)).collect();
        // CPU: permute kept-first then reduce rows.
        let rows: usize = kept.iter().map(|&k| shape[k]).product();
        let len: usize = nd.iter().map(|&k| shape[k]).product();
        let mut perm = kept.clone();
        let mut sorted = nd.clone();
        sorted.sort();
        perm.extend(&sorted);
        let pshape: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
        let st = [35usize, 5, 1];
        let pst: Vec<usize> = perm.iter().map(|&k| st[k]).collect();
        let px = kiln_kernels::reference::gather_strided(&x64, 0, &pshape, &pst);
        for (name, op) in [("sum", 0), ("mean", 1), ("max", 2), ("min", 3)] {
            let out = match op {
                0 => t.sum_dims(&dims, false),
                1 => t.mean_dims(&dims, false),
                2 => t.max_dims(&dims, false),
                _ => t.min_dims(&dims, false),
            }
            .unwrap();
            let kshape: Vec<usize> = kept.iter().map(|&k| shape[k]).collect();
            assert_eq!(out.shape(), &kshape[..], "{name} {dims:?} shape");
            let kd = match op {
                0 => t.sum_dims(&dims, true),
                _ => t.max_dims(&dims, true),
            }
            .unwrap();
            assert_eq!(kd.rank(), 3, "keepdim keeps rank");
            let rop = match op {
                0 | 1 => ReduceOp::Sum,
                2 => ReduceOp::Max,
                _ => ReduceOp::Min,
            };
            let scale = if op == 1 { 1.0 / len as f64 } else { 1.0 };
            let want = cpu::reduce_rows(rop, &px, rows, len, scale);
            Tolerance::F32_REDUCTION.assert_close(
                &format!("{name} over {dims:?}"),
                &out.to_vec::<f32>().unwrap(),
                &want,
            );
        }
    }
    // argmax along each dim.
    for d in 0..3 {
        let got = t
            .argmax(d as isize, false)
            .unwrap()
            .to_vec::<u32>()
            .unwrap();
        let kept: Vec<usize> = (0..3).filter(|&k| k != d).collect();
        let mut perm = kept.clone();
        perm.push(d);
        let pshape: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
        let st = [35usize, 5, 1];
        let pst: Vec<usize> = perm.iter().map(|&k| st[k]).collect();
        let px = kiln_kernels::reference::gather_strided(&x, 0, &pshape, &pst);
        assert_eq!(
            got,
            cpu::arg_rows(true, &px, 105 / shape[d], shape[d]),
            "argmax dim {d}"
        );
    }
}

#[test]
fn long_rows_are_reduced_completely() {
    // Longer than llvmpipe's 65,535 loop iterations per invocation, even unrolled by 4 for the
    // one-row-per-invocation kernel; `Auto` must pick a strategy that covers every element.
    let g = gpu();
    let len = 300_007;
    let x = rand_vec(2 * len, seed("long"), 0.5, 1.5);
    let t = tensor(&x, &[2, len]);
    let got = t.sum_dims(&[1], false).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = x
        .chunks(len)
        .map(|c| c.iter().map(|&v| v as f64).sum())
        .collect();
    Tolerance::new(1e-4, 0.0, "f32 sum of 3e5 terms").assert_close("long rows", &got, &want);
    let am = t.argmax(1, false).unwrap().to_vec::<u32>().unwrap();
    assert_eq!(am, cpu::arg_rows(true, &x, 2, len));
    // Forcing the serial kernel on such rows is refused, not silently wrong.
    let out = g.alloc(8, "out").unwrap();
    let view = Rows::contiguous(t.kernel_view().buf, 2, len);
    let e = rk::reduce_rows(
        &g,
        ReduceOp::Sum,
        ReduceStrategy::Serial,
        view,
        &out,
        0,
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
}

#[test]
fn reduction_of_transposed_view_reads_strides() {
    let x = rand_vec(17 * 129, seed("tv"), -1.0, 1.0);
    let t = tensor(&x, &[17, 129]).t().unwrap(); // (129, 17)
    let got = t.sum_dims(&[1], false).unwrap().to_vec::<f32>().unwrap();
    let want: Vec<f64> = (0..129)
        .map(|j| (0..17).map(|i| x[i * 129 + j] as f64).sum())
        .collect();
    Tolerance::F32_REDUCTION.assert_close("sum of transposed view", &got, &want);
}

#[test]
fn reduction_gradients_match_finite_differences() {
    let shape = [3usize, 4, 5];
    let input = || Input::rand(&shape, seed("rg"), -2.0, 2.0);
    let sum_cpu = |x: &[f64], keep_axis: usize| -> Vec<f64> {
        // Sum over all axes except keep_axis.
        let mut out = vec![0.0; shape[keep_axis]];
        for (i, &v) in x.iter().enumerate() {
            let c = [i / 20, (i / 5) % 4, i % 5];
            out[c[keep_axis]] += v;
        }
        out
    };
    gradcheck(
        "sum all",
        &[input()],
        |t| t[0].sum(),
        |x| vec![x[0].iter().sum()],
        GradTol::default(),
    );
    gradcheck(
        "mean all",
        &[input()],
        |t| t[0].mean(),
        |x| vec![x[0].iter().sum::<f64>() / 60.0],
        GradTol::default(),
    );
    gradcheck(
        "sum dims 0,2",
        &[input()],
        |t| t[0].sum_dims(&[0, 2], false),
        move |x| sum_cpu(&x[0], 1),
        GradTol::default(),
    );
    gradcheck(
        "mean dim -1 keepdim",
        &[input()],
        |t| t[0].mean_dims(&[-1], true),
        |x| {
            x[0].chunks(5)
                .map(|c| c.iter().sum::<f64>() / 5.0)
                .collect()
        },
        GradTol::default(),
    );
    gradcheck(
        "max dim 1",
        &[input()],
        |t| t[0].max_dims(&[1], false),
        |x| {
            (0..15)
                .map(|r| {
                    let (a, c) = (r / 5, r % 5);
                    (0..4)
                        .map(|b| x[0][a * 20 + b * 5 + c])
                        .fold(f64::MIN, f64::max)
                })
                .collect()
        },
        GradTol::default(),
    );
    gradcheck(
        "min all",
        &[input()],
        |t| t[0].min(),
        |x| vec![x[0].iter().copied().fold(f64::MAX, f64::min)],
        GradTol::default(),
    );
    // sum_to: the broadcast-undo used by every binary backward.
    gradcheck(
        "sum_to",
        &[input()],
        |t| t[0].sum_to(&[4, 1]),
        |x| {
            let mut o = vec![0.0; 4];
            for (i, &v) in x[0].iter().enumerate() {
                o[(i / 5) % 4] += v;
            }
            o
        },
        GradTol::default(),
    );
}

#[test]
fn max_ties_share_the_gradient() {
    let x = tensor(&[1.0, 3.0, 3.0, 2.0], &[4]).requires_grad();
    x.max().unwrap().backward().unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 0.5, 0.5, 0.0]
    );
}

#[test]
fn reduction_errors_name_the_problem() {
    let t = tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let e = t.sum_dims(&[2], false).unwrap_err().to_string();
    assert!(
        e.contains("sum") && e.contains("dim 2") && e.contains("rank 2"),
        "{e}"
    );
    let e = t.sum_dims(&[0, 0], false).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    let e = t.sum_to(&[3]).unwrap_err().to_string();
    assert!(e.contains("sum_to"), "{e}");
}
