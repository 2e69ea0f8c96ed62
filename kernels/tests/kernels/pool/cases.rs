//! The pooling cases both crates' tests use (the root crate's `tests/ops/pool.rs` includes this
//! file by path): windows and adaptive outputs at awkward shapes, and the tolerances.
#![allow(dead_code)] // each including crate uses a part

use kiln_kernels::launch::pool::{PoolShape, Window};
use kiln_kernels::reference::Tolerance;

/// (N, C, H, W, kernel, stride, padding): overlapping (stride < kernel), tiling (stride =
/// kernel), gapped (stride > kernel), rectangular and padded windows, 1x1 planes.
pub type Case = (
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    (usize, usize),
);

/// The windowed cases of the kernel tests.
pub const CASES: &[Case] = &[
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (3, 5, 7, 7, (3, 3), (2, 2), (1, 1)),
    (1, 5, 13, 17, (2, 2), (2, 2), (0, 0)),
    (3, 1, 17, 13, (3, 2), (1, 3), (1, 1)),
    (1, 1, 7, 13, (1, 3), (3, 1), (0, 1)),
    (3, 5, 13, 7, (2, 3), (3, 2), (1, 0)),
    (1, 5, 17, 17, (3, 3), (1, 1), (0, 0)),
    (3, 1, 1, 7, (1, 2), (1, 2), (0, 1)),
];

/// Adaptive cases: (N, C, H, W, (OH, OW)), including sizes that do not divide the input,
/// upsampling (OH > H) and the identity.
pub type AdaptiveCase = (usize, usize, usize, usize, (usize, usize));

/// The adaptive cases of the kernel tests and the gradient checks.
pub const ADAPTIVE: &[AdaptiveCase] = &[
    (1, 1, 7, 7, (3, 3)),
    (3, 5, 5, 5, (2, 4)),
    (1, 5, 13, 17, (5, 3)),
    (3, 1, 1, 1, (1, 1)),
    (1, 5, 7, 13, (1, 1)),
    (1, 1, 5, 5, (7, 6)),
    (3, 5, 17, 7, (17, 7)),
];

/// Max pooling copies one element of each window.
pub const MAX_EXACT: Tolerance = Tolerance::new(0.0, 0.0, "max picks an element: a bit-exact copy");
/// Average pooling and the backward kernels sum a few f32 terms.
pub const WINDOW_SUM: Tolerance = Tolerance::new(
    1e-5,
    1e-6,
    "f32 sums of a few terms; the backward twin divides each term, the kernel the sum",
);

/// The output shape and window of a case.
pub fn window(c: &Case) -> (PoolShape, Window) {
    let &(n, ch, h, w, kernel, stride, padding) = c;
    let win = Window {
        kernel,
        stride,
        padding,
    };
    (win.shape(n, ch, h, w).unwrap(), win)
}

/// The shape of an adaptive case.
pub fn adaptive_shape(&(n, c, h, w, (oh, ow)): &AdaptiveCase) -> PoolShape {
    PoolShape { n, c, h, w, oh, ow }
}
