//! CPU twin of `optim.wgsl`: the same updates, element by element, in any float type.

use num_traits::Float;

use crate::launch::optim::{AdamStep, SgdStep};

fn c<T: Float>(v: f32) -> T {
    T::from(v).expect("an f32 fits any float type")
}

/// One SGD update in place; `buf` is the momentum buffer (zeros before the first step), given
/// exactly when `h.momentum != 0`.
pub fn sgd<T: Float>(h: &SgdStep, p: &mut [T], grad: &[T], mut buf: Option<&mut [T]>) {
    let (lr, mu, wd) = (c::<T>(h.lr), c::<T>(h.momentum), c::<T>(h.weight_decay));
    for i in 0..p.len() {
        let g = grad[i] + wd * p[i];
        let u = match buf.as_deref_mut() {
            Some(b) => {
                b[i] = mu * b[i] + g;
                if h.nesterov { g + mu * b[i] } else { b[i] }
            }
            None => g,
        };
        p[i] = p[i] - lr * u;
    }
}

/// One Adam / AdamW update in place; `m`, `v` are zeros before the first step.
pub fn adam<T: Float>(h: &AdamStep, p: &mut [T], grad: &[T], m: &mut [T], v: &mut [T]) {
    let (lr, b1, b2, eps, wd) = (
        c::<T>(h.lr),
        c::<T>(h.beta1),
        c::<T>(h.beta2),
        c::<T>(h.eps),
        c::<T>(h.weight_decay),
    );
    let (bc1, bc2) = (c::<T>(h.bc1), c::<T>(h.bc2));
    let one = T::one();
    for i in 0..p.len() {
        let mut g = grad[i];
        if h.decoupled {
            p[i] = p[i] * (one - lr * wd);
        } else {
            g = g + wd * p[i];
        }
        m[i] = b1 * m[i] + (one - b1) * g;
        v[i] = b2 * v[i] + (one - b2) * g * g;
        let denom = v[i].sqrt() / bc2.sqrt() + eps;
        p[i] = p[i] - (lr / bc1) * (m[i] / denom);
    }
}
