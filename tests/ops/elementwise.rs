//! Element-wise ops: gradient checks of every unary and binary op (with broadcasting) and of
//! views, `where` / `masked_fill`, comparisons and their errors, fills, casts and f16 storage
//! through tensors. The `unary.wgsl` / `binary.wgsl` kernels against their CPU twins are
//! kiln-kernels' tests (`kernels/tests/kernels/elementwise.rs`), whose unary cases are shared here.

use crate::common;

#[path = "../../kernels/tests/kernels/elementwise/cases.rs"]
mod cases;

use cases::{binary_ops, inputs_for, unary_cases};
use common::*;
use kiln::Tensor;
use kiln_kernels::launch::elementwise::{BinaryOp, UnaryOp};
use kiln_kernels::reference::elementwise as cpu;

fn unary_tensor(t: &Tensor, op: UnaryOp, a: f32, b: f32) -> kiln::Result<Tensor> {
    match op {
        UnaryOp::Copy => t.contiguous()?.mul_scalar(1.0),
        UnaryOp::Neg => t.neg(),
        UnaryOp::Exp => t.exp(),
        UnaryOp::Log => t.log(),
        UnaryOp::Sqrt => t.sqrt(),
        UnaryOp::Abs => t.abs(),
        UnaryOp::Relu => t.relu(),
        UnaryOp::Gelu => t.gelu(),
        UnaryOp::Silu => t.silu(),
        UnaryOp::Tanh => t.tanh(),
        UnaryOp::Sigmoid => t.sigmoid(),
        UnaryOp::Clamp => t.clamp(a, b),
        UnaryOp::Pow => t.powf(a),
        UnaryOp::Affine => t.affine(a, b),
        UnaryOp::Square => t.square(),
        UnaryOp::Sign => t.sign(),
        UnaryOp::Recip => t.recip(),
        UnaryOp::Sin => t.sin(),
        UnaryOp::Cos => t.cos(),
        UnaryOp::Rsqrt => t.rsqrt(),
    }
}

#[test]
fn unary_gradients_match_finite_differences() {
    for (op, a, b) in unary_cases() {
        if op == UnaryOp::Sign {
            continue; // zero gradient everywhere; covered by the value test
        }
        let shape = [3, 7];
        let x = inputs_for(op, 21, seed(&format!("grad{op:?}")));
        gradcheck(
            &format!("{op:?}"),
            &[Input::new(x, &shape)],
            |t| unary_tensor(&t[0], op, a, b),
            |x| {
                x[0].iter()
                    .map(|&v| cpu::unary(op, v, a as f64, b as f64))
                    .collect()
            },
            GradTol::default(),
        );
    }
}

fn binary_tensor(a: &Tensor, b: &Tensor, op: BinaryOp) -> kiln::Result<Tensor> {
    match op {
        BinaryOp::Add => a.add(b),
        BinaryOp::Sub => a.sub(b),
        BinaryOp::Mul => a.mul(b),
        BinaryOp::Div => a.div(b),
        BinaryOp::Pow => a.pow(b),
        BinaryOp::Maximum => a.maximum(b),
        BinaryOp::Minimum => a.minimum(b),
        BinaryOp::Eq => a.eq(b),
        BinaryOp::Ne => a.ne(b),
        BinaryOp::Lt => a.lt(b),
        BinaryOp::Le => a.le(b),
        BinaryOp::Gt => a.gt(b),
        BinaryOp::Ge => a.ge(b),
        BinaryOp::Axpy => unreachable!(),
    }
}

#[test]
fn binary_gradients_match_finite_differences_with_broadcasting() {
    // The arithmetic ops (the comparisons have zero gradient).
    for &op in &binary_ops()[..7] {
        for &(sa, sb) in &[
            (&[3usize, 4][..], &[4usize][..]),
            (&[2, 1, 3], &[4, 1]),
            (&[5], &[5]),
        ] {
            let a = Input::rand(sa, seed(&format!("ga{op:?}{sa:?}")), 0.3, 2.0);
            let b = Input::rand(sb, seed(&format!("gb{op:?}{sb:?}")), 0.3, 2.0);
            let out_shape = kiln::ops::broadcast_shapes("t", sa, sb).unwrap();
            let (sa2, sb2) = (sa.to_vec(), sb.to_vec());
            gradcheck(
                &format!("{op:?} {sa:?} {sb:?}"),
                &[a, b],
                |t| binary_tensor(&t[0], &t[1], op),
                |x| {
                    let ba = bcast(&x[0], &sa2, &out_shape);
                    let bb = bcast(&x[1], &sb2, &out_shape);
                    ba.iter()
                        .zip(&bb)
                        .map(|(&u, &v)| cpu::binary(op, u, v, 0.0))
                        .collect()
                },
                GradTol::default(),
            );
        }
    }
}

#[test]
fn where_and_masked_fill_values_and_gradients() {
    let n = 129;
    let c: Vec<f32> = rand_vec(n, seed("c"), 0.0, 1.0)
        .iter()
        .map(|&v| if v > 0.5 { 1.0 } else { 0.0 })
        .collect();
    let a = rand_vec(n, seed("wa"), -2.0, 2.0);
    let b = rand_vec(1, seed("wb"), -2.0, 2.0);
    let out = Tensor::where_cond(&tensor(&c, &[n]), &tensor(&a, &[n]), &tensor(&b, &[1])).unwrap();
    let want: Vec<f32> = (0..n)
        .map(|i| if c[i] != 0.0 { a[i] } else { b[0] })
        .collect();
    Tolerance::EXACT.assert_close("where", &out.to_vec::<f32>().unwrap(), &want);

    let mf = tensor(&a, &[n])
        .masked_fill(&tensor(&c, &[n]), -9.0)
        .unwrap();
    let want: Vec<f32> = (0..n)
        .map(|i| if c[i] != 0.0 { -9.0 } else { a[i] })
        .collect();
    Tolerance::EXACT.assert_close("masked_fill", &mf.to_vec::<f32>().unwrap(), &want);

    let cond = tensor(&c[..12], &[3, 4]);
    let c2 = c[..12].to_vec();
    gradcheck(
        "where",
        &[
            Input::rand(&[3, 4], seed("w1"), -1.0, 1.0),
            Input::rand(&[4], seed("w2"), -1.0, 1.0),
        ],
        |t| Tensor::where_cond(&cond, &t[0], &t[1]),
        |x| {
            let bb = bcast(&x[1], &[4], &[3, 4]);
            (0..12)
                .map(|i| if c2[i] != 0.0 { x[0][i] } else { bb[i] })
                .collect()
        },
        GradTol::default(),
    );
}

#[test]
fn comparisons_give_masks_and_errors_name_shapes() {
    let a = tensor(&[1.0, 2.0, 3.0], &[3]);
    let b = tensor(&[2.0, 2.0, 2.0], &[3]);
    assert_eq!(
        a.lt(&b).unwrap().to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 0.0]
    );
    assert_eq!(
        a.ge(&b).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 1.0, 1.0]
    );
    let c = tensor(&[1.0, 2.0], &[2]);
    let e = a.add(&c).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[3]") && e.contains("[2]"),
        "{e}"
    );
    let e = a.clamp(2.0, 1.0).unwrap_err().to_string();
    assert!(e.contains("clamp"), "{e}");
}

#[test]
fn view_gradients_match_finite_differences() {
    let x = Input::rand(&[2, 3, 4], seed("views"), -1.0, 1.0);
    // permute + narrow + reshape + expand + contiguous, composed with a nonlinearity.
    gradcheck(
        "views",
        &[x],
        |t| {
            t[0].permute(&[2, 0, 1])? // (4, 2, 3)
                .narrow(0, 1, 2)? // (2, 2, 3)
                .contiguous()?
                .reshape(&[4, 3])?
                .unsqueeze(0)?
                .expand(&[2, 4, 3])?
                .mul(&t[0].narrow(1, 0, 1)?.reshape(&[2, 1, 4])?.narrow(2, 0, 3)?)?
                .tanh()
        },
        |x| {
            let v = &x[0];
            let at = |i: usize, j: usize, k: usize| v[i * 12 + j * 4 + k];
            // p[a][b][c] = x[b][c][a]; narrow a in 1..3; reshape (4,3): row r = (a', b), col c
            let mut y = Vec::new();
            for e in 0..2 {
                for r in 0..4 {
                    for c in 0..3 {
                        let (a, b) = (1 + r / 2, r % 2);
                        let base = at(b, c, a);
                        let m = at(e, 0, c); // x.narrow(1,0,1) -> (2,1,4) -> narrow(2,0,3)
                        y.push((base * m).tanh());
                    }
                }
            }
            y
        },
        GradTol::default(),
    );
}

#[test]
fn fill_arange_and_casts() {
    let g = gpu();
    let z = Tensor::full_on(&g, &[7, 17], 2.5)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(z.iter().all(|&v| v == 2.5));
    let r = Tensor::arange_on(&g, 1.0, 8.0, 0.5).unwrap();
    assert_eq!(r.shape(), &[14]);
    let rv = r.to_vec::<f32>().unwrap();
    let want: Vec<f32> = (0..14).map(|i| 1.0 + 0.5 * i as f32).collect();
    Tolerance::F32_ELEMENTWISE.assert_close("arange", &rv, &want);

    let x = tensor(&[-2.7, -0.5, 0.0, 3.9, 1e6], &[5]);
    assert_eq!(
        x.to_dtype(kiln::DType::I32)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        vec![-2, 0, 0, 3, 1_000_000]
    );
    assert_eq!(
        x.to_dtype(kiln::DType::U32)
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        vec![0, 0, 0, 3, 1_000_000]
    );
    // Small integers are f32 denormals as bits: a bit copy must keep them.
    let idx = Tensor::from_slice_on(&g, &[1u32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    assert_eq!(
        idx.t()
            .unwrap()
            .contiguous()
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        vec![1, 4, 2, 5, 3, 6]
    );
    let back = idx
        .to_dtype(kiln::DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(back, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let neg = Tensor::from_slice_on(&g, &[-3i32, 7], &[2]).unwrap();
    assert_eq!(
        neg.to_dtype(kiln::DType::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![-3.0, 7.0]
    );
}

#[test]
fn f16_storage_round_trip() {
    let g = gpu();
    if !common::skip::has_f16(&g, "f16 storage round trip") {
        return;
    }
    let x = rand_vec(257, seed("f16"), -100.0, 100.0);
    let h = tensor(&x, &[257]).to_dtype(kiln::DType::F16).unwrap();
    assert_eq!(h.dtype(), kiln::DType::F16);
    let host: Vec<half::f16> = h.to_vec().unwrap();
    let want: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let host32: Vec<f32> = host.iter().map(|v| v.to_f32()).collect();
    Tolerance::EXACT.assert_close("f32 -> f16 matches half's rounding", &host32, &want);
    let back = h
        .to_dtype(kiln::DType::F32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    Tolerance::EXACT.assert_close("f16 -> f32", &back, &want);
    // Upload f16 from the host directly.
    let up = Tensor::from_slice_on(&g, &host, &[257])
        .unwrap()
        .to_dtype(kiln::DType::F32)
        .unwrap();
    Tolerance::EXACT.assert_close("host f16 upload", &up.to_vec::<f32>().unwrap(), &want);
}
