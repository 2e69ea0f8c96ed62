//! The fused scaled-dot-product attention op: forward against the f64 CPU twin and against the
//! composition from primitives, at awkward Tq / Tk / D, with causal and key-padding masks; its
//! autograd backward against the twin, the composed gradients and finite differences;
//! end-aligned causal masks (KV-cache decode), fully masked rows, the lavapipe loop limit,
//! views, shape errors and memory. Each rung's launchers against the twin (whole and chunked)
//! are kiln-kernels' tests (`kernels/tests/kernels/attention.rs`), whose cases are shared here.

use crate::common;

#[path = "../../kernels/tests/kernels/attention/case.rs"]
mod case;

use case::*;
use common::*;
use kiln::Tensor;
use kiln::ops::{AttentionOptions, attention_composed, scaled_dot_product_attention};
use kiln_kernels::reference::attention as cpu;

/// The op's view of a shared case.
impl Case {
    /// GPU tensors (q, k, v) requiring grad, and the options.
    fn tensors(&self) -> (Tensor, Tensor, Tensor, AttentionOptions) {
        let s = &self.s;
        let q = tensor(&self.q, &[s.batch, s.heads, s.tq, s.d]).requires_grad();
        let k = tensor(&self.k, &[s.batch, s.heads, s.tk, s.d]).requires_grad();
        let v = tensor(&self.v, &[s.batch, s.heads, s.tk, s.d]).requires_grad();
        let opts = AttentionOptions {
            causal: s.causal,
            scale: None,
            key_padding_mask: self.keep.as_ref().map(|m| tensor(m, &[s.batch, s.tk])),
        };
        (q, k, v, opts)
    }
}

/// Forward O through the op (the rung the op picks) against the twin.
fn check_forward(c: &Case) {
    let (q, k, v, opts) = c.tensors();
    let o = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
    let got = o.to_vec::<f32>().unwrap();
    FWD.assert_close(&format!("O {}", c.name()), &got, &c.cpu_forward().0);
}

#[test]
fn forward_matches_cpu_twin_at_awkward_sizes() {
    for c in grid_cases(9) {
        check_forward(&c);
    }
}

#[test]
fn forward_matches_composed() {
    for &(tq, tk, d, causal, mask) in &[
        (7, 7, 16, true, false),
        (129, 129, 32, true, true),
        (1, 257, 64, false, true),
        (257, 7, 32, false, false),
    ] {
        let c = Case::new(2, 3, tq, tk, d, causal, mask);
        let (q, k, v, opts) = c.tensors();
        let fused = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
        let composed = attention_composed(&q, &k, &v, &opts).unwrap();
        FWD.assert_close(
            &format!("fused vs composed {}", c.name()),
            &fused.to_vec::<f32>().unwrap(),
            &composed.to_vec::<f32>().unwrap(),
        );
    }
}

/// The case's seeded weights w of `sum(O * w)`, (B, H, Tq, D) in [0.5, 1.5).
fn loss_weights(c: &Case) -> Vec<f32> {
    let s = &c.s;
    let n = s.batch * s.heads * s.tq * s.d;
    rand_vec(n, seed(&c.name()) ^ 9, 0.5, 1.5)
}

/// O of the fused (or `composed`) op and the gradients [dq, dk, dv] of `sum(O * w)` by autograd.
fn op_grads(c: &Case, composed: bool, w: &[f32]) -> (Vec<f32>, [Vec<f32>; 3]) {
    let s = &c.s;
    let (q, k, v, opts) = c.tensors();
    let o = if composed {
        attention_composed(&q, &k, &v, &opts).unwrap()
    } else {
        scaled_dot_product_attention(&q, &k, &v, &opts).unwrap()
    };
    let wt = tensor(w, &[s.batch, s.heads, s.tq, s.d]);
    o.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
    let grads = [q, k, v].map(|t| t.grad().unwrap().to_vec::<f32>().unwrap());
    (o.to_vec::<f32>().unwrap(), grads)
}

/// Gradients of `sum(O * w)` from the fused op, against the twin's backward and the composed op.
fn check_backward(c: &Case) {
    let w = loss_weights(c);
    let (dq, dk, dv) = c.cpu_backward(&w);
    let fused = op_grads(c, false, &w).1;
    let composed = op_grads(c, true, &w).1;
    for (n, want) in [dq, dk, dv].iter().enumerate() {
        let which = ["dq", "dk", "dv"][n];
        GRAD.assert_close(&format!("{which} vs twin {}", c.name()), &fused[n], want);
        GRAD.assert_close(
            &format!("{which} vs composed {}", c.name()),
            &fused[n],
            &composed[n],
        );
    }
}

#[test]
fn backward_matches_cpu_twin_and_composed() {
    for &(tq, tk, d, causal, mask) in &[
        (1, 1, 16, false, false),
        (7, 7, 16, true, true),
        (129, 129, 32, true, false),
        (1, 257, 64, false, true),
        (257, 7, 32, true, true),
        (7, 129, 64, true, false),
        // D not a multiple of 4: the row kernels.
        (17, 9, 6, true, true),
    ] {
        check_backward(&Case::new(2, 2, tq, tk, d, causal, mask));
    }
}

#[test]
fn gradcheck_against_finite_differences() {
    for &(causal, mask) in &[(false, false), (true, true)] {
        let c = Case::new(2, 2, 3, 5, 4, causal, mask);
        let s = c.s;
        let keep = c.keep.clone();
        let keep_t = keep.as_ref().map(|m| tensor(m, &[2, 5]));
        let inputs = [
            Input::new(c.q.clone(), &[2, 2, 3, 4]),
            Input::new(c.k.clone(), &[2, 2, 5, 4]),
            Input::new(c.v.clone(), &[2, 2, 5, 4]),
        ];
        gradcheck(
            &format!("attention {}", c.name()),
            &inputs,
            |t| {
                let opts = AttentionOptions {
                    causal,
                    scale: None,
                    key_padding_mask: keep_t.clone(),
                };
                scaled_dot_product_attention(&t[0], &t[1], &t[2], &opts)
            },
            |x| {
                let keep = keep.as_deref().map(f64s);
                cpu::forward(&s, &x[0], &x[1], &x[2], keep.as_deref()).0
            },
            GradTol::default(),
        );
    }
}

#[test]
fn causal_aligns_to_the_end_for_kv_cache_decode() {
    // The last query of a causal self-attention over T keys equals a decode step: Tq = 1 with
    // all T keys visible.
    let c = Case::new(1, 2, 9, 9, 16, true, false);
    let (q, k, v, opts) = c.tensors();
    let full = scaled_dot_product_attention(&q, &k, &v, &opts).unwrap();
    let last_q = q.narrow(2, 8, 1).unwrap();
    let step = scaled_dot_product_attention(&last_q, &k, &v, &opts).unwrap();
    FWD.assert_close(
        "decode step vs last row",
        &step.to_vec::<f32>().unwrap(),
        &full
            .narrow(2, 8, 1)
            .unwrap()
            .contiguous()
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
    );
    // Tq = 3, Tk = 5: query i sees keys j <= i + 2 (checked against the twin's own mask rule).
    check_forward(&Case::new(1, 1, 3, 5, 16, true, false));
    // Tq > Tk: the first Tq - Tk queries see nothing.
    check_forward(&Case::new(1, 1, 5, 3, 16, true, false));
}

#[test]
fn fully_masked_rows_output_zero_not_nan() {
    let mut c = Case::new(2, 2, 4, 6, 16, false, true);
    // Batch 1 masks every key: its outputs and gradients are 0.
    let keep = c.keep.as_mut().unwrap();
    keep[6..].iter_mut().for_each(|x| *x = 0.0);
    check_forward(&c);
    check_backward(&c);
    let (q, k, v, opts) = c.tensors();
    for (name, o) in [
        (
            "fused",
            scaled_dot_product_attention(&q, &k, &v, &opts).unwrap(),
        ),
        ("composed", attention_composed(&q, &k, &v, &opts).unwrap()),
    ] {
        let y = o.to_vec::<f32>().unwrap();
        assert!(
            y[2 * 4 * 16..].iter().all(|&x| x == 0.0),
            "{name}: masked rows not 0"
        );
        assert!(
            y[..2 * 4 * 16].iter().any(|&x| x != 0.0),
            "{name}: kept rows all 0"
        );
    }
    // Tq > Tk causal: rows without keys, gradients finite.
    check_backward(&Case::new(1, 2, 6, 2, 16, true, false));
    // A u32 mask works like the f32 one.
    let (q, k, v, mut opts) = c.tensors();
    let want = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let m32: Vec<u32> = c
        .keep
        .as_ref()
        .unwrap()
        .iter()
        .map(|&x| x as u32 * 7)
        .collect();
    opts.key_padding_mask = Some(Tensor::from_slice_on(&gpu(), &m32, &[2, 6]).unwrap());
    let got = scaled_dot_product_attention(&q, &k, &v, &opts)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got, want, "u32 mask differs from f32 mask");
}

#[test]
fn loop_limit_is_chunked_over_dispatches() {
    // Past lavapipe's 65,535 loop iterations per invocation the launchers split their work into
    // chunks (kiln-kernels' attention tests check each rung); here the op, its forward and its
    // autograd backward, at D = 64 over 1000 keys and D = 128 over 9000 rows.
    check_forward(&Case::new(1, 1, 3, 1000, 64, false, true));
    check_backward(&Case::new(1, 1, 1000, 1000, 64, true, false));
    check_backward(&Case::new(1, 1, 4, 9000, 128, false, true));
    check_backward(&Case::new(1, 1, 9000, 4, 128, false, true));
}

mod more;
