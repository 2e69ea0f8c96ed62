//! Autograd semantics: accumulation, no_grad, detach, leaves, graph lifetime, misuse errors.

use crate::common;

use common::*;
use kiln::Tensor;

#[test]
fn gradients_accumulate_until_cleared() {
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    for _ in 0..2 {
        x.square().unwrap().sum().unwrap().backward().unwrap();
    }
    // d/dx sum(x^2) = 2x, twice.
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![4.0, 8.0, 12.0]
    );
    x.zero_grad().unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 0.0, 0.0]
    );
    x.clear_grad();
    assert!(x.grad().is_none());
}

#[test]
fn shared_subexpressions_sum_their_gradients() {
    // y = x*x + x*3 uses x three times: dy/dx = 2x + 3.
    let x = tensor(&[0.5, -1.0], &[2]).requires_grad();
    let y = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0).unwrap())
        .unwrap()
        .sum()
        .unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![4.0, 1.0]);
}

#[test]
fn broadcast_leaf_gets_a_summed_owned_gradient() {
    // A bias of shape (3) broadcast over (4, 3): its gradient is the column sum.
    let b = tensor(&[0.1, 0.2, 0.3], &[3]).requires_grad();
    let x = tensor(&rand_vec(12, seed("bx"), -1.0, 1.0), &[4, 3]);
    x.add(&b).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(
        b.grad().unwrap().to_vec::<f32>().unwrap(),
        vec![4.0, 4.0, 4.0]
    );
    // A leaf used through expand gets a gradient it owns (accumulating into it is safe).
    let s = tensor(&[2.0], &[1]).requires_grad();
    s.expand(&[5]).unwrap().sum().unwrap().backward().unwrap();
    s.expand(&[5]).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(s.grad().unwrap().to_vec::<f32>().unwrap(), vec![10.0]);
}

#[test]
fn no_grad_and_detach_stop_recording() {
    let x = tensor(&[1.0, 2.0], &[2]).requires_grad();
    {
        let _g = kiln::no_grad();
        assert!(!kiln::is_grad_enabled());
        let y = x.mul_scalar(2.0).unwrap();
        assert!(!y.requires_grad_flag());
        assert!(y.grad_fn().is_none());
    }
    assert!(kiln::is_grad_enabled());
    let y = x.mul_scalar(2.0).unwrap();
    assert_eq!(y.grad_fn(), Some("affine"));
    let d = y.detach();
    assert!(d.is_leaf() && !d.requires_grad_flag());
    // Gradient flows only through the non-detached branch: d/dx (2x + stop(2x)) = 2.
    y.add(&d).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), vec![2.0, 2.0]);
}

#[test]
fn graph_memory_is_freed_when_the_loss_drops() {
    let g = private_gpu();
    let x = Tensor::from_slice_on(&g, &rand_vec(1 << 16, seed("mem"), -1.0, 1.0), &[1 << 16])
        .unwrap()
        .requires_grad();
    g.sync().unwrap();
    let before = g.live_bytes();
    let loss = x
        .exp()
        .unwrap()
        .tanh()
        .unwrap()
        .mul(&x)
        .unwrap()
        .sum()
        .unwrap();
    assert!(
        g.live_bytes() >= before + 3 * (1 << 18),
        "intermediates are held by the graph"
    );
    drop(loss);
    assert_eq!(
        g.live_bytes(),
        before,
        "dropping the loss frees every intermediate"
    );
}

#[test]
fn misuse_returns_clear_errors() {
    let x = tensor(&[1.0, 2.0], &[2]).requires_grad();
    let e = x
        .mul_scalar(2.0)
        .unwrap()
        .backward()
        .unwrap_err()
        .to_string();
    assert!(e.contains("scalar") && e.contains("[2]"), "{e}");
    let c = tensor(&[1.0], &[1]);
    let e = c.sum().unwrap().backward().unwrap_err().to_string();
    assert!(e.contains("does not require grad"), "{e}");
    let e = x.reshape(&[3]).unwrap_err().to_string();
    assert!(
        e.contains("reshape") && e.contains("[2]") && e.contains("[3]"),
        "{e}"
    );
    let e = x.narrow(0, 1, 5).unwrap_err().to_string();
    assert!(e.contains("narrow") && e.contains("size 2"), "{e}");
    let e = x.permute(&[1]).unwrap_err().to_string();
    assert!(e.contains("permute"), "{e}");
    let e = x.expand(&[3, 3]).unwrap_err().to_string();
    assert!(e.contains("expand"), "{e}");
    let e = x.to_vec::<u32>().unwrap_err().to_string();
    assert!(e.contains("dtype"), "{e}");
    let e = Tensor::from_slice_on(&gpu(), &[1.0f32, 2.0, 3.0], &[2, 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 values") && e.contains("[2, 2]"), "{e}");
    let idx = Tensor::from_slice_on(&gpu(), &[1u32], &[1]).unwrap();
    let e = idx.relu().unwrap_err().to_string();
    assert!(e.contains("relu") && e.contains("U32"), "{e}");
}

#[test]
fn views_share_storage_and_reshape_infers() {
    let x = tensor(&rand_vec(24, seed("vs"), -1.0, 1.0), &[2, 3, 4]);
    let v = x.reshape_infer(&[6, -1]).unwrap();
    assert_eq!(v.shape(), &[6, 4]);
    assert!(v.shares_storage(&x));
    let t = x.transpose(0, 2).unwrap();
    assert_eq!(t.shape(), &[4, 3, 2]);
    assert!(t.shares_storage(&x) && !t.is_contiguous());
    let c = t.contiguous().unwrap();
    assert!(!c.shares_storage(&x) && c.is_contiguous());
    let f = x.flatten(1, 2).unwrap();
    assert_eq!(f.shape(), &[2, 12]);
    assert_eq!(x.unsqueeze(-1).unwrap().shape(), &[2, 3, 4, 1]);
    assert_eq!(
        x.unsqueeze(0).unwrap().squeeze(0).unwrap().shape(),
        &[2, 3, 4]
    );
    let e = x.squeeze(0).unwrap_err().to_string();
    assert!(e.contains("size 2"), "{e}");
}

#[test]
fn seeded_random_tensors_are_reproducible() {
    let g = gpu();
    let a = Tensor::randn_on(&g, &[129], 42)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = Tensor::randn_on(&g, &[129], 42)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let c = Tensor::randn_on(&g, &[129], 43)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mean = a.iter().sum::<f32>() / 129.0;
    assert!(mean.abs() < 0.3, "randn mean {mean}");
    let u = Tensor::rand_on(&g, &[257], 7)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
}
