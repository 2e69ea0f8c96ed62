//! CPU twins of `unary.wgsl`, `binary.wgsl`, `where.wgsl` and `fill.wgsl`.

use num_traits::Float;

use crate::launch::elementwise::{BinaryOp, UnaryOp};

fn c<T: Float>(v: f64) -> T {
    T::from(v).expect("constant fits")
}

/// erf by a continued series good to ~1e-15 (the reference must be better than the kernel).
pub fn erf<T: Float>(x: T) -> T {
    let xf = x.to_f64().unwrap_or(0.0);
    T::from(libm_erf(xf)).unwrap_or(x)
}

fn libm_erf(x: f64) -> f64 {
    // Abramowitz & Stegun 7.1.28 is too coarse for an oracle; use the Taylor series for |x| < 3
    // and the asymptotic complement beyond, both accurate to ~1e-13 in f64.
    let a = x.abs();
    let r = if a < 3.0 {
        let mut sum = a;
        let mut term = a;
        let x2 = a * a;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(a) ~ exp(-a^2)/(a sqrt(pi)) * (1 - 1/(2a^2) + 3/(4a^4) - 15/(8a^6))
        let a2 = a * a;
        let s = 1.0 - 1.0 / (2.0 * a2) + 3.0 / (4.0 * a2 * a2) - 15.0 / (8.0 * a2 * a2 * a2);
        1.0 - (-a2).exp() / (a * std::f64::consts::PI.sqrt()) * s
    };
    r.copysign(x)
}

fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn pow_any<T: Float>(x: T, p: T) -> T {
    if x >= T::zero() || p == p.floor() {
        x.powf(p)
    } else {
        T::nan()
    }
}

/// `f(x)` for a unary op (see `shaders/elementwise/unary.wgsl`).
pub fn unary<T: Float>(op: UnaryOp, x: T, alpha: T, beta: T) -> T {
    let half: T = c(0.5);
    match op {
        UnaryOp::Copy => x,
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Relu => x.max(T::zero()),
        UnaryOp::Gelu => half * x * (T::one() + erf(x / c::<T>(2.0).sqrt())),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Clamp => x.max(alpha).min(beta),
        UnaryOp::Pow => pow_any(x, alpha),
        UnaryOp::Affine => alpha * x + beta,
        UnaryOp::Square => x * x,
        UnaryOp::Sign => {
            if x > T::zero() {
                T::one()
            } else if x < T::zero() {
                -T::one()
            } else {
                T::zero()
            }
        }
        UnaryOp::Recip => x.recip(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Rsqrt => x.sqrt().recip(),
    }
}

/// `f'(x)` for a unary op.
pub fn unary_grad<T: Float>(op: UnaryOp, x: T, alpha: T, beta: T) -> T {
    let one = T::one();
    let half: T = c(0.5);
    match op {
        UnaryOp::Copy => one,
        UnaryOp::Neg => -one,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => one / x,
        UnaryOp::Sqrt => half / x.sqrt(),
        UnaryOp::Abs => unary(UnaryOp::Sign, x, alpha, beta),
        UnaryOp::Relu => {
            if x > T::zero() {
                one
            } else {
                T::zero()
            }
        }
        UnaryOp::Gelu => {
            let cdf = half * (one + erf(x / c::<T>(2.0).sqrt()));
            let pdf = c::<T>(0.398_942_280_401_432_7) * (-half * x * x).exp();
            cdf + x * pdf
        }
        UnaryOp::Silu => {
            let s = sigmoid(x);
            s * (one + x * (one - s))
        }
        UnaryOp::Tanh => one - x.tanh() * x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x) * (one - sigmoid(x)),
        UnaryOp::Clamp => {
            if x >= alpha && x <= beta {
                one
            } else {
                T::zero()
            }
        }
        UnaryOp::Pow => alpha * pow_any(x, alpha - one),
        UnaryOp::Affine => alpha,
        UnaryOp::Square => c::<T>(2.0) * x,
        UnaryOp::Sign => T::zero(),
        UnaryOp::Recip => -one / (x * x),
        UnaryOp::Sin => x.cos(),
        UnaryOp::Cos => -x.sin(),
        UnaryOp::Rsqrt => -half / (x * x.sqrt()),
    }
}

/// `a (op) b` for a binary op (see `shaders/binary.wgsl`).
pub fn binary<T: Float>(op: BinaryOp, a: T, b: T, alpha: T) -> T {
    let t = |p: bool| if p { T::one() } else { T::zero() };
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => {
            if a == T::zero() && b == T::zero() {
                T::one()
            } else {
                pow_any(a, b)
            }
        }
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        BinaryOp::Eq => t(a == b),
        BinaryOp::Ne => t(a != b),
        BinaryOp::Lt => t(a < b),
        BinaryOp::Le => t(a <= b),
        BinaryOp::Gt => t(a > b),
        BinaryOp::Ge => t(a >= b),
        BinaryOp::Axpy => a + alpha * b,
    }
}

/// Row-major coordinates of linear index `i` in `shape`.
pub fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        c[k] = i % shape[k];
        i /= shape[k];
    }
    c
}

/// Broadcast `x` of shape `from` to `to` (NumPy rules; `from` right-aligned), row-major.
pub fn broadcast_to<T: Copy>(x: &[T], from: &[usize], to: &[usize]) -> Vec<T> {
    let n: usize = to.iter().product();
    let pad = to.len() - from.len();
    let mut strides = vec![0usize; to.len()];
    let mut s = 1;
    for k in (0..from.len()).rev() {
        strides[pad + k] = if from[k] == 1 { 0 } else { s };
        s *= from[k];
    }
    (0..n)
        .map(|i| {
            let c = coords(i, to);
            x[c.iter().zip(&strides).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect()
}
