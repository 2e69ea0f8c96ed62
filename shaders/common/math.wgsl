// Scalar math helpers that WGSL lacks.

// erf(x) by Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
        + 0.254829592) * t * exp(-a * a);
    return s * y;
}

// Logistic sigmoid, stable for large |x|.
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// GELU (exact form): x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}

// d/dx GELU = Phi(x) + x * phi(x).
fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf_approx(x * 0.70710678118654752));
    let pdf = 0.39894228040143268 * exp(-0.5 * x * x);
    return cdf + x * pdf;
}

// tanh without overflow for large |x| (some drivers return NaN for tanh(|x| > 44)).
fn tanh_stable(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// x^p for any sign of x when p is an integer; NaN for x < 0 and fractional p (as in PyTorch).
fn pow_any(x: f32, p: f32) -> f32 {
    if (x >= 0.0) {
        if (x == 0.0) {
            if (p == 0.0) { return 1.0; }
            if (p > 0.0) { return 0.0; }
        }
        return pow(x, p);
    }
    if (p == floor(p)) {
        let m = pow(-x, p);
        let odd = (abs(p) % 2.0) == 1.0;
        return select(m, -m, odd);
    }
    let nan_bits = 0x7fc00000u;
    return bitcast<f32>(nan_bits);
}
