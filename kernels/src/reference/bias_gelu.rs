//! CPU twin of `bias_gelu.wgsl`: `gelu(x + b)` over row-major (R, N) data and its derivative,
//! erf or tanh form.

use num_traits::Float;

use super::elementwise::erf;

fn c<T: Float>(v: f64) -> T {
    T::from(v).expect("constant")
}

/// GELU of z: erf form, or the tanh approximation when `tanh`.
pub fn gelu<T: Float>(z: T, tanh: bool) -> T {
    let half = c::<T>(0.5);
    if tanh {
        let k = c::<T>((2.0 / std::f64::consts::PI).sqrt());
        half * z * (T::one() + (k * (z + c::<T>(0.044715) * z * z * z)).tanh())
    } else {
        half * z * (T::one() + erf(z / c::<T>(2.0).sqrt()))
    }
}

/// d gelu / dz.
pub fn gelu_grad<T: Float>(z: T, tanh: bool) -> T {
    let half = c::<T>(0.5);
    if tanh {
        let k = c::<T>((2.0 / std::f64::consts::PI).sqrt());
        let a = c::<T>(0.044715);
        let t = (k * (z + a * z * z * z)).tanh();
        half * (T::one() + t)
            + half * z * (T::one() - t * t) * k * (T::one() + c::<T>(3.0) * a * z * z)
    } else {
        let cdf = half * (T::one() + erf(z / c::<T>(2.0).sqrt()));
        let pdf = (-(half * z * z)).exp() / c::<T>((2.0 * std::f64::consts::PI).sqrt());
        cdf + z * pdf
    }
}

/// `y = gelu(x + b[i % N])`.
pub fn forward<T: Float>(tanh: bool, x: &[T], b: &[T]) -> Vec<T> {
    let n = b.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| gelu(v + b[i % n], tanh))
        .collect()
}

/// (dx, db) of `sum(y * g)`.
pub fn backward<T: Float>(tanh: bool, x: &[T], b: &[T], g: &[T]) -> (Vec<T>, Vec<T>) {
    let n = b.len();
    let dx: Vec<T> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| g[i] * gelu_grad(v + b[i % n], tanh))
        .collect();
    let mut db = vec![T::zero(); n];
    for (i, &d) in dx.iter().enumerate() {
        db[i % n] = db[i % n] + d;
    }
    (dx, db)
}
