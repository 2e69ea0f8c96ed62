//! CPU twins of the conv kernels (`shaders/conv/*.wgsl`): plain loops over NCHW arrays, straight
//! from the definitions in `shaders/common/conv.wgsl`.
//!
//! The gradient w.r.t. the input is written here as a *scatter* (each output's gradient is added
//! to the inputs it read), the GPU kernels as a gather: two formulations that must agree.

use num_traits::Float;

use crate::launch::conv::Conv2dShape;

/// The input position `(ih, iw)` read by output `(oh, ow)` through tap `(r, s)`, if not padding.
fn tap(s: &Conv2dShape, oh: usize, ow: usize, r: usize, q: usize) -> Option<(usize, usize)> {
    let ih = (oh * s.stride.0 + r * s.dilation.0).checked_sub(s.padding.0)?;
    let iw = (ow * s.stride.1 + q * s.dilation.1).checked_sub(s.padding.1)?;
    (ih < s.h && iw < s.w).then_some((ih, iw))
}

/// Visit every (n, co, oh, ow, ci-within-group, r, s) term with the flat indices of x, w and out.
fn for_each_term(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh_n, ow_n) = s.out_hw();
    let (cig, cog) = (s.c_in / s.groups, s.c_out / s.groups);
    for n in 0..s.n {
        for co in 0..s.c_out {
            let g = co / cog;
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let oi = ((n * s.c_out + co) * oh_n + oh) * ow_n + ow;
                    for ci in 0..cig {
                        for r in 0..s.kh {
                            for q in 0..s.kw {
                                let Some((ih, iw)) = tap(s, oh, ow, r, q) else {
                                    continue;
                                };
                                let xi = ((n * s.c_in + g * cig + ci) * s.h + ih) * s.w + iw;
                                let wi = ((co * cig + ci) * s.kh + r) * s.kw + q;
                                f(xi, wi, oi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `out = conv2d(x, w) + bias`: x (N, C_in, H, W), w (C_out, C_in / groups, KH, KW), bias
/// (C_out) -> out (N, C_out, OH, OW), row-major.
pub fn conv2d_forward<T: Float>(s: &Conv2dShape, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let [n, c, oh, ow] = s.output_shape();
    let mut out = vec![T::zero(); n * c * oh * ow];
    for_each_term(s, |xi, wi, oi| out[oi] = out[oi] + w[wi] * x[xi]);
    if let Some(b) = bias {
        for (i, o) in out.iter_mut().enumerate() {
            *o = *o + b[(i / (oh * ow)) % c];
        }
    }
    out
}

/// dL/dx from dy = dL/d(out) (N, C_out, OH, OW): each term's `dy * w` added to the input it read.
pub fn conv2d_grad_input<T: Float>(s: &Conv2dShape, w: &[T], dy: &[T]) -> Vec<T> {
    let mut dx = vec![T::zero(); s.input_shape().iter().product()];
    for_each_term(s, |xi, wi, oi| dx[xi] = dx[xi] + dy[oi] * w[wi]);
    dx
}

/// dL/dw (C_out, C_in / groups, KH, KW): `sum over (n, oh, ow) of dy * x`.
pub fn conv2d_grad_weight<T: Float>(s: &Conv2dShape, x: &[T], dy: &[T]) -> Vec<T> {
    let mut dw = vec![T::zero(); s.weight_shape().iter().product()];
    for_each_term(s, |xi, wi, oi| dw[wi] = dw[wi] + dy[oi] * x[xi]);
    dw
}

/// dL/d(bias) (C_out): `sum over (n, oh, ow) of dy`.
pub fn conv2d_grad_bias<T: Float>(s: &Conv2dShape, dy: &[T]) -> Vec<T> {
    let [_, c, oh, ow] = s.output_shape();
    let mut db = vec![T::zero(); c];
    for (i, v) in dy.iter().enumerate() {
        let co = (i / (oh * ow)) % c;
        db[co] = db[co] + *v;
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(h: usize, w: usize, k: usize, pad: usize, stride: usize) -> Conv2dShape {
        Conv2dShape {
            n: 1,
            c_in: 1,
            h,
            w,
            c_out: 1,
            kh: k,
            kw: k,
            stride: (stride, stride),
            padding: (pad, pad),
            dilation: (1, 1),
            groups: 1,
        }
    }

    #[test]
    fn small_convolution_by_hand() {
        // 3x3 input 1..9, 2x2 kernel of ones, no padding: sums of each 2x2 window.
        let s = shape(3, 3, 2, 0, 1);
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let out = conv2d_forward(&s, &x, &[1.0; 4], Some(&[0.5]));
        assert_eq!(s.output_shape(), [1, 1, 2, 2]);
        assert_eq!(out, vec![12.5, 16.5, 24.5, 28.5]);
        // Padding 1, stride 2: windows at (-1, -1), (-1, 1), (1, -1), (1, 1).
        let s = shape(3, 3, 2, 1, 2);
        assert_eq!(
            conv2d_forward(&s, &x, &[1.0; 4], None),
            vec![1.0, 5.0, 11.0, 28.0]
        );
        // d(sum out)/dx counts how many windows read each input.
        let dx = conv2d_grad_input(&s, &[1.0; 4], &[1.0; 4]);
        assert_eq!(dx, vec![1.0; 9]);
        assert_eq!(conv2d_grad_bias(&s, &[1.0, 2.0, 3.0, 4.0]), vec![10.0]);
    }
}
