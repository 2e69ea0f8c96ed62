//! 8-bit Adam / AdamW (`kiln::optim::Adam8bit`): it follows 32-bit Adam on random gradients and
//! on a small GPT (final loss within 2 %), keeps about a quarter of Adam's state bytes, leaves
//! small parameters in f32, resumes bit for bit from its saved (quantised) state, and refuses
//! incomplete or mis-shaped state. The fused kernel against its CPU twin is kiln-kernels'
//! tests/kernels/optim.rs.

use super::*;
use kiln::models::{Gpt, GptConfig};
use kiln::nn::Module;
use kiln::optim::{Adam8bit, OptimizerState};

/// Shapes with two quantised parameters (>= 4096 values, neither a multiple of the block of
/// 2048) and one small parameter that keeps f32 moments.
const SHAPES: [&[usize]; 3] = [&[70, 130], &[5003], &[129]];

/// Fresh gradients for step `t`, the same for every parameter set given.
fn set_grads(sets: &[&[Tensor]], t: u64) {
    for i in 0..sets[0].len() {
        let n = sets[0][i].numel();
        let g = rand_signed_away_from_zero(n, t * 131 + i as u64, 0.01, 1.0);
        for ps in sets {
            ps[i].set_grad(Some(tensor(&g, ps[i].shape())));
        }
    }
}

#[test]
fn adam8bit_follows_adam_with_a_quarter_of_the_state() {
    for decoupled in [false, true] {
        let cfg = AdamConfig {
            decoupled,
            weight_decay: 0.01,
            ..AdamConfig::adam(0.01)
        };
        let (p0, pa) = random_params(&SHAPES, 40);
        let (_, pq) = random_params(&SHAPES, 40);
        let mut a = Adam::new(named(&pa), cfg).unwrap();
        let mut q = Adam8bit::new(named(&pq), cfg).unwrap();
        for t in 0..20 {
            set_grads(&[&pa, &pq], t);
            a.step().unwrap();
            q.step().unwrap();
        }
        // Distance between the two runs, against how far Adam moved the weights.
        let (mut diff, mut moved) = (0.0f64, 0.0f64);
        for ((x0, x), y) in p0.iter().zip(&pa).zip(&pq) {
            for ((a0, a1), b1) in x0.iter().zip(read(x)).zip(read(y)) {
                diff += (a1 - b1).abs() as f64;
                moved += (a1 - a0).abs() as f64;
            }
        }
        eprintln!(
            "adam8bit decoupled={decoupled}: |8bit - adam| / |adam - p0| = {:.4}",
            diff / moved
        );
        assert!(diff < 0.05 * moved, "diff {diff} vs moved {moved}");
        let names: Vec<String> = q.state().tensors.into_iter().map(|(n, _)| n).collect();
        for want in [
            "exp_avg_q8.layer.0.weight",
            "absmax_q8.layer.1.weight",
            "exp_avg.layer.2.weight",
        ] {
            assert!(names.iter().any(|n| n == want), "{names:?} lack {want}");
        }
        // 8 bytes per value for Adam; 2 + 8/2048 for the quantised ones (+ 4-byte step counts).
        let (big, small) = (70 * 130 + 5003, 129);
        assert_eq!(a.state_bytes(), 8 * (big + small) as u64 + 12);
        let words = (70 * 130usize).div_ceil(4) + 5003usize.div_ceil(4);
        let scales = 2 * ((70 * 130usize).div_ceil(2048) + 5003usize.div_ceil(2048));
        assert_eq!(
            q.state_bytes(),
            (8 * words + 4 * scales + 8 * small + 12) as u64
        );
        let ratio = q.state_bytes() as f64 / a.state_bytes() as f64;
        assert!((0.25..0.28).contains(&ratio), "state ratio {ratio}");
    }
}

/// `st` with every tensor read back to the host and uploaded again, in its own dtype (as a
/// checkpoint does).
fn through_host(st: &OptimizerState) -> OptimizerState {
    let tensors = st.tensors.iter().map(|(n, t)| {
        let h = t.to_host().unwrap();
        (n.clone(), Tensor::from_host_on(&gpu(), &h).unwrap())
    });
    OptimizerState {
        step: st.step,
        tensors: tensors.collect(),
    }
}

#[test]
fn adam8bit_resumes_bit_for_bit() {
    let cfg = AdamConfig::adamw(0.01);
    let (_, pa) = random_params(&SHAPES, 41);
    let mut a = Adam8bit::new(named(&pa), cfg).unwrap();
    for t in 0..3 {
        set_grads(&[&pa], t);
        a.step().unwrap();
    }
    let pb: Vec<Tensor> = pa.iter().map(|p| param(&read(p), p.shape())).collect();
    let mut b = Adam8bit::new(named(&pb), cfg).unwrap();
    b.load_state(&through_host(&a.state())).unwrap();
    for t in 3..6 {
        set_grads(&[&pa, &pb], t);
        a.step().unwrap();
        b.step().unwrap();
    }
    for (i, (x, y)) in pa.iter().zip(&pb).enumerate() {
        assert_eq!(read(x), read(y), "param {i} after resume");
    }
    let (sa, sb) = (a.state(), b.state());
    assert_eq!(sb.step, 6);
    for ((na, ta), (nb, tb)) in sa.tensors.iter().zip(&sb.tensors) {
        assert_eq!(na, nb);
        assert_eq!(
            ta.to_host().unwrap().bytes,
            tb.to_host().unwrap().bytes,
            "{na}"
        );
    }
}

#[test]
fn adam8bit_load_state_rejects_incomplete_or_misshaped_state() {
    let cfg = AdamConfig::adam(0.01);
    let (_, pa) = random_params(&SHAPES[..1], 42);
    let mut a = Adam8bit::new(named(&pa), cfg).unwrap();
    set_grads(&[&pa], 0);
    a.step().unwrap();
    let full = a.state();
    let mut b = Adam8bit::new(named(&pa), cfg).unwrap();
    let without = |kind: &str| OptimizerState {
        step: 1,
        tensors: full
            .tensors
            .iter()
            .filter(|(n, _)| !n.starts_with(kind))
            .cloned()
            .collect(),
    };
    assert_err_contains(
        b.load_state(&without("absmax_q8.")),
        &["layer.0.weight", "absmax_q8"],
    );
    let mut short = full.clone();
    for (n, t) in &mut short.tensors {
        if n.starts_with("exp_avg_q8.") {
            *t = Tensor::from_slice_on(&gpu(), &[0u32; 7], &[7]).unwrap();
        }
    }
    assert_err_contains(
        b.load_state(&short),
        &["exp_avg_q8.layer.0.weight", "[2275]"],
    );
    b.load_state(&full).unwrap();
}

/// Train a 2-layer GPT of width 64 (every matrix >= 4096 values: quantised) on one fixed batch
/// of windows of a repeating token pattern with noise, `steps` Adam or 8-bit Adam steps from the
/// same initialisation; the mean loss of the last 5 steps.
fn gpt_final_loss(eight_bit: bool, steps: usize) -> f32 {
    kiln::nn::manual_seed(9);
    let cfg = GptConfig {
        vocab_size: 64,
        n_layer: 2,
        n_head: 4,
        n_kv_head: 4,
        d_model: 64,
        context: 16,
        dropout: 0.0,
        rope: false,
    };
    let m = Gpt::new_on(&gpu(), cfg).unwrap();
    let (batch, ctx) = (8usize, 16usize);
    let noise = rand_indices(batch * (ctx + 1), 5, 64);
    let seq: Vec<u32> = (0..batch * (ctx + 1))
        .map(|i| {
            if i % 3 == 2 {
                noise[i]
            } else {
                (i * 7 % 64) as u32
            }
        })
        .collect();
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for b in 0..batch {
        let w = &seq[b * (ctx + 1)..(b + 1) * (ctx + 1)];
        xs.extend_from_slice(&w[..ctx]);
        ys.extend_from_slice(&w[1..]);
    }
    let x = Tensor::from_slice_on(&gpu(), &xs, &[batch, ctx]).unwrap();
    let y = Tensor::from_slice_on(&gpu(), &ys, &[batch * ctx]).unwrap();
    let c = AdamConfig::adamw(3e-3);
    let mut opt: Box<dyn Optimizer> = if eight_bit {
        Box::new(Adam8bit::new(m.named_parameters(), c).unwrap())
    } else {
        Box::new(Adam::new(m.named_parameters(), c).unwrap())
    };
    let mut tail = Vec::new();
    for step in 0..steps {
        let logits = m.forward(&x).unwrap().reshape(&[batch * ctx, 64]).unwrap();
        let loss = logits.cross_entropy(&y).unwrap();
        opt.zero_grad().unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        if step + 5 >= steps {
            tail.push(loss.item().unwrap());
        }
    }
    tail.iter().sum::<f32>() / tail.len() as f32
}

#[test]
fn adam8bit_gpt_final_loss_within_2_percent_of_adam() {
    let (a, q) = (gpt_final_loss(false, 40), gpt_final_loss(true, 40));
    eprintln!(
        "gpt 40 steps: adam {a:.4}, adam8bit {q:.4} ({:+.2} %)",
        100.0 * (q - a) / a
    );
    assert!(a < 3.5, "Adam learned nothing: {a} (ln 64 = 4.16)");
    assert!((q - a).abs() <= 0.02 * a, "adam {a} vs adam8bit {q}");
}
