//! Shared test helpers: the device, seeded random inputs, awkward sizes, and the finite-difference
//! gradient check.
#![allow(dead_code)]

/// Loud skips: one file for both crates' tests.
#[path = "../../kernels/tests/kernels/common/skip.rs"]
pub mod skip;

/// Python's Hugging Face stack (transformers, peft) for the comparison tests.
pub mod python;

use std::path::PathBuf;

use kiln::Tensor;
pub use kiln_kernels::reference::Tolerance;
pub use shared::*;
#[allow(unused_imports)]
pub use skip::skip;

/// The device, seeds, random inputs and awkward sizes: one file for both crates' tests.
#[path = "../../kernels/tests/kernels/common/shared.rs"]
mod shared;

/// A tensor from f32 data.
pub fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice_on(&gpu(), data, shape).expect("upload")
}

/// `data` as a tensor at element offset 3 of its storage (the kernels must honour offsets).
pub fn at_offset(data: &[f32], shape: &[usize]) -> Tensor {
    let mut v = vec![9.0f32; 3];
    v.extend_from_slice(data);
    let t = tensor(&v, &[v.len()]).narrow(0, 3, data.len()).unwrap();
    t.reshape(shape).unwrap()
}

/// One input of a gradient check: data and shape.
#[derive(Clone, Debug)]
pub struct Input {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl Input {
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Self {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "input data does not fill {shape:?}"
        );
        Input {
            data,
            shape: shape.to_vec(),
        }
    }
    pub fn rand(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Self {
        let n = shape.iter().product();
        Input::new(rand_vec(n, seed, lo, hi), shape)
    }
}

/// Tolerances of the gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradTol {
    /// Forward output against the f64 CPU twin.
    pub forward: Tolerance,
    /// GPU (f32) gradient against central differences of the f64 CPU twin.
    pub grad: Tolerance,
}

impl Default for GradTol {
    fn default() -> Self {
        GradTol {
            forward: Tolerance::new(2e-4, 1e-5, "f32 kernel vs f64 reference"),
            grad: Tolerance::new(
                1e-4,
                2e-5,
                "f32 backward vs f64 central differences (h = 1e-6, error ~1e-9)",
            ),
        }
    }
}

/// Finite-difference gradient check.
///
/// `gpu_fn` builds the op on GPU tensors; `cpu_fn` is the same function in f64 on the host
/// (row-major data in, row-major data out, built from the kernels' CPU twins). The check:
/// 1. forward: GPU output == cpu_fn(inputs) within `tol.forward`;
/// 2. L = sum(out * w) for fresh random weights w; GPU autograd dL/dx_i against central
///    differences (L(x + h e_j) - L(x - h e_j)) / 2h evaluated by `cpu_fn` in f64.
///
/// Inputs listed in `no_grad` (by position) are not differentiated (e.g. an index tensor passed
/// as data, or a point where the op is not differentiable).
#[track_caller]
pub fn gradcheck(
    name: &str,
    inputs: &[Input],
    gpu_fn: impl Fn(&[Tensor]) -> kiln::Result<Tensor>,
    cpu_fn: impl Fn(&[Vec<f64>]) -> Vec<f64>,
    tol: GradTol,
) {
    let g = gpu();
    let ts: Vec<Tensor> = inputs
        .iter()
        .map(|i| {
            Tensor::from_slice_on(&g, &i.data, &i.shape)
                .unwrap()
                .requires_grad()
        })
        .collect();
    let out = gpu_fn(&ts).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let x64: Vec<Vec<f64>> = inputs
        .iter()
        .map(|i| i.data.iter().map(|&v| v as f64).collect())
        .collect();
    let want = cpu_fn(&x64);
    let got = out.to_vec::<f32>().unwrap();
    tol.forward.assert_close(
        &format!("{name} forward (shape {:?})", out.shape()),
        &got,
        &want,
    );

    let w = rand_vec(got.len(), seed(name) ^ 0x5eed, 0.5, 1.5);
    let wt = Tensor::from_slice_on(&g, &w, out.shape()).unwrap();
    let loss = out.mul(&wt).unwrap().sum().unwrap();
    loss.backward()
        .unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));

    let l =
        |xs: &[Vec<f64>]| -> f64 { cpu_fn(xs).iter().zip(&w).map(|(a, b)| a * *b as f64).sum() };
    let h = 1e-6;
    for (i, t) in ts.iter().enumerate() {
        let analytic = t
            .grad()
            .unwrap_or_else(|| panic!("{name}: input {i} got no gradient"))
            .to_vec::<f32>()
            .unwrap();
        let mut numeric = Vec::with_capacity(analytic.len());
        let mut xs = x64.clone();
        for j in 0..xs[i].len() {
            let v = xs[i][j];
            xs[i][j] = v + h;
            let lp = l(&xs);
            xs[i][j] = v - h;
            let lm = l(&xs);
            xs[i][j] = v;
            numeric.push((lp - lm) / (2.0 * h));
        }
        tol.grad.assert_close(
            &format!("{name} d/d input {i} (shape {:?})", inputs[i].shape),
            &analytic,
            &numeric,
        );
    }
}

/// Row-major broadcast of f64 data (for CPU twins of broadcasting ops).
pub fn bcast(x: &[f64], from: &[usize], to: &[usize]) -> Vec<f64> {
    kiln_kernels::reference::elementwise::broadcast_to(x, from, to)
}

/// A 2-block GPT of width 8 (2 heads, context 8, no dropout, learned positions) over
/// `vocab_size` tokens: the LoRA and PEFT tests' model.
pub fn small_gpt_config(vocab_size: usize) -> kiln::models::GptConfig {
    kiln::models::GptConfig {
        vocab_size,
        n_layer: 2,
        n_head: 2,
        n_kv_head: 2,
        d_model: 8,
        context: 8,
        dropout: 0.0,
        rope: false,
    }
}

/// The all-MiniLM-L6-v2 folder (`$KILN_MINILM_DIR`, else `models/all-MiniLM-L6-v2/` under the
/// project root) when it holds the model, else [`skip`]s `check` and gives `None`.
pub fn minilm_dir(check: &str) -> Option<PathBuf> {
    use kiln::models::pretrained::{MINILM_DEFAULT_DIR, MINILM_ENV};
    let dir = match std::env::var_os(MINILM_ENV) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MINILM_DEFAULT_DIR),
    };
    if dir.join("model.safetensors").is_file() && dir.join("config.json").is_file() {
        return Some(dir);
    }
    skip::skip(
        check,
        &format!("all-MiniLM-L6-v2 not found in {}", dir.display()),
        &format!("bash scripts/fetch-minilm.sh (or set {MINILM_ENV} to its folder)"),
    );
    None
}

/// f32 values widened to f64 (for comparisons against f64 references).
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// A tensor's values as f32 (panics on a read error: tests only).
pub fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// One training step of a classifier: the cross-entropy of `model(x)` (B, classes) against the
/// labels `y` (B), backward, `opt.step()`, then `opt.zero_grad()`.
pub fn classifier_step(
    model: &dyn kiln::nn::Module,
    opt: &mut impl kiln::optim::Optimizer,
    x: &Tensor,
    y: &Tensor,
) {
    let loss = model.forward(x).and_then(|z| z.cross_entropy(y)).unwrap();
    loss.backward().unwrap();
    opt.step().unwrap();
    opt.zero_grad().unwrap();
}

/// Assert that `text` (an error, a log) contains each of `needles`; the failure names the missing
/// one and shows the text.
pub fn assert_mentions(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{n:?} missing from:\n{text}");
    }
}

/// The text of an error the call must return.
pub fn err_text<T: std::fmt::Debug>(r: kiln::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}
