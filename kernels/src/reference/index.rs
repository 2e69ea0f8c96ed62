//! CPU twin of `index.wgsl`, on contiguous row-major data.
//!
//! x and gx are (O, D, I); out and g are (O, J, I); idx is (J) for [`IndexMode::Select`] and
//! (O, J, I) for [`IndexMode::Gather`]. Indices >= D give 0 in the forward and are skipped by the
//! scatter, as on the GPU. The scatter adds in increasing j, the order the kernels use, so in f32
//! it matches them bit for bit.

use num_traits::{Float, Zero};

use crate::launch::index::{IndexMode, IndexShape};

fn index_at(mode: IndexMode, s: IndexShape, idx: &[u32], o: usize, j: usize, i: usize) -> usize {
    match mode {
        IndexMode::Select => idx[j] as usize,
        IndexMode::Gather => idx[(o * s.j + j) * s.inner + i] as usize,
    }
}

/// `out[o, j, i] = x[o, idx(o, j, i), i]`, or 0 when the index is >= D.
pub fn index_forward<T: Zero + Copy>(
    mode: IndexMode,
    s: IndexShape,
    x: &[T],
    idx: &[u32],
) -> Vec<T> {
    let mut out = Vec::with_capacity(s.outer * s.j * s.inner);
    for o in 0..s.outer {
        for j in 0..s.j {
            for i in 0..s.inner {
                let k = index_at(mode, s, idx, o, j, i);
                out.push(if k < s.d {
                    x[(o * s.d + k) * s.inner + i]
                } else {
                    T::zero()
                });
            }
        }
    }
    out
}

/// `gx[o, idx(o, j, i), i] += g[o, j, i]` for j = 0, 1, ... in order; indices >= D are skipped.
pub fn scatter_add<T: Float>(mode: IndexMode, s: IndexShape, g: &[T], idx: &[u32], gx: &mut [T]) {
    for o in 0..s.outer {
        for j in 0..s.j {
            for i in 0..s.inner {
                let k = index_at(mode, s, idx, o, j, i);
                if k < s.d {
                    let w = (o * s.d + k) * s.inner + i;
                    gx[w] = gx[w] + g[(o * s.j + j) * s.inner + i];
                }
            }
        }
    }
}
