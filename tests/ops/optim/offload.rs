//! Optimizer-state offload (`kiln::optim::OffloadAdam`, `--offload-optimizer`): the host update
//! follows the fused device Adam / AdamW, checkpoints move between the two both ways, nothing
//! of its state lives on the device between steps, and offload refuses non-Adam optimizers.

use super::*;
use kiln::optim::{OffloadAdam, OptimizerKind, build_with};

/// Steps `steps` of `a` and `b` with the same fresh gradients (state.rs's `step_both`).
fn run_both(
    a: &mut dyn Optimizer,
    pa: &[Tensor],
    b: &mut dyn Optimizer,
    pb: &[Tensor],
    steps: std::ops::Range<u64>,
) {
    for t in steps {
        super::state::step_both(a, pa, b, pb, t);
    }
}

#[test]
fn offloaded_adam_follows_device_adam_and_swaps_checkpoints() {
    let shapes: [&[usize]; 3] = [&[7, 17], &[129], &[1031]];
    for cfg in [AdamConfig::adam(0.01), AdamConfig::adamw(0.01)] {
        let (_, pa) = random_params(&shapes, 50);
        let (_, pb) = random_params(&shapes, 50);
        let mut dev = Adam::new(named(&pa), cfg).unwrap();
        let mut host = OffloadAdam::new(named(&pb), cfg).unwrap();
        run_both(&mut dev, &pa, &mut host, &pb, 0..5);
        for (x, y) in pa.iter().zip(&pb) {
            STEPS_TOL.assert_close("offload vs device", &read(y), &read(x));
        }
        // Swap: the device optimizer resumes from the host's state and the other way round.
        let (sd, sh) = (dev.state(), host.state());
        assert_eq!(sh.step, 5);
        dev.load_state(&sh).unwrap();
        host.load_state(&sd).unwrap();
        run_both(&mut dev, &pa, &mut host, &pb, 5..7);
        for (x, y) in pa.iter().zip(&pb) {
            STEPS_TOL.assert_close("after swapping state", &read(y), &read(x));
        }
    }
}

#[test]
fn offloaded_adam_keeps_no_device_state_between_steps() {
    let g = private_gpu(); // its own pool: no other test allocates on it
    let on_g = |s| Tensor::from_slice_on(&g, &rand_vec(100_000, s, -1.0, 1.0), &[100_000]).unwrap();
    let p = on_g(51).requires_grad();
    p.set_grad(Some(on_g(52)));
    let mut opt = OffloadAdam::new(vec![("w".into(), p.clone())], AdamConfig::adam(0.01)).unwrap();
    opt.step().unwrap(); // the staging buffer goes back to the pool's cache
    let live = g.live_bytes();
    for _ in 0..3 {
        opt.step().unwrap();
    }
    assert!(
        g.live_bytes() <= live,
        "{} -> {} bytes live",
        live,
        g.live_bytes()
    );
    assert_eq!(
        opt.state_bytes(),
        8 * 100_000 + 4,
        "host moments and a step count"
    );
}

#[test]
fn offload_refuses_non_adam_optimizers() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam8bit] {
        let ps = vec![("w".to_string(), param(&[1.0, 2.0], &[2]))];
        let r = build_with(kind, ps, (0.1, 0.0, 0.9), true);
        assert_err_contains(r, &["adam or adamw", kind.name()]);
    }
}
