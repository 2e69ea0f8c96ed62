//! CPU twin of `pool.wgsl`, on contiguous row-major (N, C, H, W) data.
//!
//! Forward sums run in row-major window order and backward sums in increasing (oh, ow), the
//! orders the kernels use. The backward twins scatter per output instead of gathering per input:
//! a different algorithm for the same sums, so a wrong gather range in a kernel shows up.

use num_traits::Float;

use crate::launch::pool::{PoolShape, Window, adaptive_window};

/// Input rows (or columns) covered by window `o`: `o*s - p .. o*s - p + k`, clipped to `0..len`.
fn window_range(o: usize, k: usize, s: usize, p: usize, len: usize) -> std::ops::Range<usize> {
    let start = (o * s) as isize - p as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(len);
    lo..hi.max(lo)
}

/// Max pool: (y, argmax) with argmax = ih * W + iw of the first maximum of each window.
pub fn max_pool2d<T: Float>(s: PoolShape, win: Window, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let (mut y, mut arg) = (Vec::new(), Vec::new());
    for p in 0..s.n * s.c {
        let plane = &x[p * s.h * s.w..(p + 1) * s.h * s.w];
        for oh in 0..s.oh {
            for ow in 0..s.ow {
                let mut best = T::neg_infinity();
                let mut bi = u32::MAX;
                for ih in window_range(oh, win.kernel.0, win.stride.0, win.padding.0, s.h) {
                    for iw in window_range(ow, win.kernel.1, win.stride.1, win.padding.1, s.w) {
                        let k = ih * s.w + iw;
                        if bi == u32::MAX || plane[k] > best {
                            best = plane[k];
                            bi = k as u32;
                        }
                    }
                }
                y.push(best);
                arg.push(bi);
            }
        }
    }
    (y, arg)
}

/// Max pool backward: each g element added to the input element its window's argmax names.
pub fn max_pool2d_backward<T: Float>(s: PoolShape, g: &[T], argmax: &[u32]) -> Vec<T> {
    let mut gx = vec![T::zero(); s.input_len()];
    for p in 0..s.n * s.c {
        for o in 0..s.oh * s.ow {
            let i = p * s.h * s.w + argmax[p * s.oh * s.ow + o] as usize;
            gx[i] = gx[i] + g[p * s.oh * s.ow + o];
        }
    }
    gx
}

/// Average pool with padding counted in the divisor (`count_include_pad = true`).
pub fn avg_pool2d<T: Float>(s: PoolShape, win: Window, x: &[T]) -> Vec<T> {
    let area = T::from(win.kernel.0 * win.kernel.1).expect("window area");
    let mut y = Vec::with_capacity(s.output_len());
    for p in 0..s.n * s.c {
        let plane = &x[p * s.h * s.w..(p + 1) * s.h * s.w];
        for oh in 0..s.oh {
            for ow in 0..s.ow {
                let mut acc = T::zero();
                for ih in window_range(oh, win.kernel.0, win.stride.0, win.padding.0, s.h) {
                    for iw in window_range(ow, win.kernel.1, win.stride.1, win.padding.1, s.w) {
                        acc = acc + plane[ih * s.w + iw];
                    }
                }
                y.push(acc / area);
            }
        }
    }
    y
}

/// Average pool backward: each g element / (KH * KW) spread over its window.
pub fn avg_pool2d_backward<T: Float>(s: PoolShape, win: Window, g: &[T]) -> Vec<T> {
    let area = T::from(win.kernel.0 * win.kernel.1).expect("window area");
    let mut gx = vec![T::zero(); s.input_len()];
    for p in 0..s.n * s.c {
        for oh in 0..s.oh {
            for ow in 0..s.ow {
                let v = g[(p * s.oh + oh) * s.ow + ow] / area;
                for ih in window_range(oh, win.kernel.0, win.stride.0, win.padding.0, s.h) {
                    for iw in window_range(ow, win.kernel.1, win.stride.1, win.padding.1, s.w) {
                        let i = (p * s.h + ih) * s.w + iw;
                        gx[i] = gx[i] + v;
                    }
                }
            }
        }
    }
    gx
}

/// Adaptive average pool to (OH, OW) with PyTorch's windows.
pub fn adaptive_avg_pool2d<T: Float>(s: PoolShape, x: &[T]) -> Vec<T> {
    let mut y = Vec::with_capacity(s.output_len());
    for p in 0..s.n * s.c {
        let plane = &x[p * s.h * s.w..(p + 1) * s.h * s.w];
        for oh in 0..s.oh {
            let (h0, h1) = adaptive_window(oh, s.h, s.oh);
            for ow in 0..s.ow {
                let (w0, w1) = adaptive_window(ow, s.w, s.ow);
                let mut acc = T::zero();
                for ih in h0..h1 {
                    for iw in w0..w1 {
                        acc = acc + plane[ih * s.w + iw];
                    }
                }
                y.push(acc / T::from((h1 - h0) * (w1 - w0)).expect("area"));
            }
        }
    }
    y
}

/// Adaptive average pool backward: each g element / window area spread over its window.
pub fn adaptive_avg_pool2d_backward<T: Float>(s: PoolShape, g: &[T]) -> Vec<T> {
    let mut gx = vec![T::zero(); s.input_len()];
    for p in 0..s.n * s.c {
        for oh in 0..s.oh {
            let (h0, h1) = adaptive_window(oh, s.h, s.oh);
            for ow in 0..s.ow {
                let (w0, w1) = adaptive_window(ow, s.w, s.ow);
                let area = T::from((h1 - h0) * (w1 - w0)).expect("area");
                let v = g[(p * s.oh + oh) * s.ow + ow] / area;
                for ih in h0..h1 {
                    for iw in w0..w1 {
                        let i = (p * s.h + ih) * s.w + iw;
                        gx[i] = gx[i] + v;
                    }
                }
            }
        }
    }
    gx
}
