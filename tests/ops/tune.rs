//! The shape recorder (`tune::start_recording`): the ops feed it the matmul shapes of a forward and
//! backward pass. The tuner itself (cache, lookups, verification, conv candidates) is tested in
//! kiln-kernels' tests/kernels/tune.rs.

use kiln::Tensor;
use kiln_kernels::tune::{self, SeenShape};

#[test]
fn recorder_lists_forward_and_backward_shapes() {
    let x = Tensor::from_slice(&[0.1f32; 6 * 5], &[6, 5]).unwrap();
    let w = Tensor::from_slice(&[0.2f32; 5 * 3], &[5, 3])
        .unwrap()
        .requires_grad();
    tune::start_recording();
    let y = x.matmul(&w).unwrap();
    y.sum().unwrap().backward().unwrap();
    let seen = tune::stop_recording();
    let has = |m, n, k, a_t| {
        seen.iter().any(|s| {
            matches!(*s, SeenShape::Matmul { dims: d, a_t: at, .. }
                if (d.m, d.n, d.k, at) == (m, n, k, a_t))
        })
    };
    // Forward (6, 5) @ (5, 3); backward dW = X^T (5, 6) @ g (6, 3).
    assert!(has(6, 3, 5, false), "{seen:?}");
    assert!(has(5, 3, 6, true), "{seen:?}");
    assert!(tune::stop_recording().is_empty());
}
