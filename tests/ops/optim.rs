//! Optimizers, schedules and clipping: SGD / Adam / AdamW over several steps against an independent f64 reference, state round trips,
//! frozen parameters, every schedule against its formula, gradient clipping, config errors, and
//! Adam minimising a quadratic. Topics beyond the updates themselves live in `tests/ops/optim/`; the
//! fused kernels against their CPU twin are kiln-kernels' tests/kernels/optim.rs.

mod adam8bit;
mod clip_config;
mod offload;
use crate::common;
mod schedule;
mod state;

use common::*;
use kiln::Tensor;
use kiln::optim::{Adam, AdamConfig, Optimizer, Schedule, Sgd, SgdConfig};

/// f32 updates against f64 over a few steps: a few roundings per element and step, and
/// parameters near zero after cancellation (hence the absolute floor).
const STEPS_TOL: Tolerance = Tolerance::new(1e-5, 2e-6, "f32 update vs f64 reference, 5 steps");

fn read(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// A trainable leaf holding `data`.
fn param(data: &[f32], shape: &[usize]) -> Tensor {
    tensor(data, shape).requires_grad()
}

fn named(ps: &[Tensor]) -> Vec<(String, Tensor)> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| (format!("layer.{i}.weight"), p.clone()))
        .collect()
}

fn err_text<T>(r: kiln::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_err_contains<T>(r: kiln::Result<T>, needles: &[&str]) {
    let msg = err_text(r);
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` does not mention `{n}`");
    }
}

/// One parameter per shape, uniform in [-1, 1) from `seed` onwards: (host values, tensors).
fn random_params(shapes: &[&[usize]], seed: u64) -> (Vec<Vec<f32>>, Vec<Tensor>) {
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, sh)| rand_vec(sh.iter().product(), seed + i as u64, -1.0, 1.0))
        .collect();
    let ps = shapes
        .iter()
        .zip(&data)
        .map(|(sh, d)| param(d, sh))
        .collect();
    (data, ps)
}

// ---------------------------------------------------------------- SGD over several steps

/// PyTorch's SGD in f64, written from the formulas (first step: buf = g).
struct SgdRef {
    cfg: SgdConfig,
    p: Vec<f64>,
    buf: Option<Vec<f64>>,
}

impl SgdRef {
    fn step(&mut self, grad: &[f32], lr: f32) {
        let (lr, mu, wd) = (
            lr as f64,
            self.cfg.momentum as f64,
            self.cfg.weight_decay as f64,
        );
        let g: Vec<f64> = grad
            .iter()
            .zip(&self.p)
            .map(|(&g, &p)| g as f64 + wd * p)
            .collect();
        let u = if mu != 0.0 {
            let buf = match self.buf.take() {
                None => g.clone(),
                Some(b) => b.iter().zip(&g).map(|(b, g)| mu * b + g).collect(),
            };
            let u = if self.cfg.nesterov {
                g.iter().zip(&buf).map(|(g, b)| g + mu * b).collect()
            } else {
                buf.clone()
            };
            self.buf = Some(buf);
            u
        } else {
            g
        };
        for (p, u) in self.p.iter_mut().zip(u) {
            *p -= lr * u;
        }
    }
}

/// `base` with the fields `edit` sets changed: one optimizer setting away from a default.
fn tweak<C>(mut base: C, edit: impl FnOnce(&mut C)) -> C {
    edit(&mut base);
    base
}

#[test]
fn sgd_variants_match_reference_over_five_steps() {
    let shapes: [&[usize]; 3] = [&[7, 17], &[129], &[1]];
    // (label, lr, momentum, nesterov, weight decay)
    let variants = [
        ("plain", 0.1, 0.0, false, 0.0),
        ("momentum", 0.05, 0.9, false, 0.0),
        ("nesterov", 0.05, 0.9, true, 0.0),
        ("weight decay", 0.1, 0.0, false, 0.05),
        ("momentum + decay", 0.05, 0.5, false, 0.01),
    ]
    .map(|(label, lr, momentum, nesterov, weight_decay)| {
        let cfg = SgdConfig {
            lr,
            momentum,
            nesterov,
            weight_decay,
        };
        (label, cfg)
    });
    for (label, cfg) in variants {
        let s = seed(label);
        let (data, ps) = random_params(&shapes, s);
        let mut refs: Vec<SgdRef> = data
            .iter()
            .map(|d| SgdRef {
                cfg,
                p: f64s(d),
                buf: None,
            })
            .collect();
        let mut opt = Sgd::new(named(&ps), cfg).unwrap();
        for step in 0..5u64 {
            // A changing learning rate, as a schedule would set it.
            let lr = cfg.lr * (1.0 - 0.1 * step as f32);
            opt.set_learning_rate(lr);
            assert_eq!(opt.learning_rate(), lr);
            for (i, (p, r)) in ps.iter().zip(refs.iter_mut()).enumerate() {
                let g = rand_vec(p.numel(), s ^ (100 + 10 * step + i as u64), -1.0, 1.0);
                p.set_grad(Some(tensor(&g, p.shape())));
                r.step(&g, lr);
            }
            opt.step().unwrap();
        }
        for (i, (p, r)) in ps.iter().zip(&refs).enumerate() {
            STEPS_TOL.assert_close(&format!("sgd {label} param {i}"), &read(p), &r.p);
        }
        let st = opt.state();
        assert_eq!(st.step, 5);
        if cfg.momentum == 0.0 {
            assert!(st.tensors.is_empty(), "plain SGD keeps no state");
        } else {
            assert_eq!(st.tensors.len(), ps.len());
            for (i, r) in refs.iter().enumerate() {
                let name = format!("momentum_buffer.layer.{i}.weight");
                let (_, t) = st.tensors.iter().find(|(n, _)| *n == name).expect(&name);
                STEPS_TOL.assert_close(&name, &read(t), r.buf.as_ref().unwrap());
            }
        }
    }
}

// ---------------------------------------------------------------- Adam / AdamW

/// PyTorch's Adam / AdamW in f64, with the parameter's own step count.
struct AdamRef {
    cfg: AdamConfig,
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl AdamRef {
    fn new(cfg: AdamConfig, p: &[f32]) -> Self {
        AdamRef {
            cfg,
            p: f64s(p),
            m: vec![0.0; p.len()],
            v: vec![0.0; p.len()],
            t: 0,
        }
    }

    fn step(&mut self, grad: &[f32], lr: f32) {
        let c = self.cfg;
        let (lr, b1, b2) = (lr as f64, c.betas.0 as f64, c.betas.1 as f64);
        let (eps, wd) = (c.eps as f64, c.weight_decay as f64);
        self.t += 1;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        let state = self
            .p
            .iter_mut()
            .zip(self.m.iter_mut().zip(self.v.iter_mut()));
        for ((p, (m, v)), &g) in state.zip(grad) {
            let mut g = g as f64;
            if c.decoupled {
                *p *= 1.0 - lr * wd;
            } else {
                g += wd * *p;
            }
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= lr / bc1 * *m / (v.sqrt() / bc2.sqrt() + eps);
        }
    }
}

#[test]
fn adam_and_adamw_match_reference_over_five_steps() {
    let shapes: [&[usize]; 3] = [&[17, 7], &[257], &[1]];
    let variants = [
        ("adam", AdamConfig::adam(0.01)),
        (
            "adam l2",
            tweak(AdamConfig::adam(0.01), |c| c.weight_decay = 0.1),
        ),
        ("adamw", AdamConfig::adamw(0.01)),
        (
            "adamw strong",
            tweak(AdamConfig::adamw(0.02), |c| {
                c.weight_decay = 0.5;
                c.betas = (0.8, 0.99);
            }),
        ),
    ];
    for (label, cfg) in variants {
        let s = seed(label);
        let (data, ps) = random_params(&shapes, s);
        let mut refs: Vec<AdamRef> = data.iter().map(|d| AdamRef::new(cfg, d)).collect();
        let mut opt = Adam::new(named(&ps), cfg).unwrap();
        for step in 0..5u64 {
            let lr = cfg.lr * (1.0 - 0.1 * step as f32);
            opt.set_learning_rate(lr);
            for (i, (p, r)) in ps.iter().zip(refs.iter_mut()).enumerate() {
                // The last parameter only receives gradients from step 2 on: its bias correction
                // must start from its own first step (PyTorch's per-parameter step count).
                if i == 2 && step < 2 {
                    p.clear_grad();
                    continue;
                }
                let g = rand_signed_away_from_zero(
                    p.numel(),
                    s ^ (7 + 10 * step + i as u64),
                    0.05,
                    1.0,
                );
                p.set_grad(Some(tensor(&g, p.shape())));
                r.step(&g, lr);
            }
            opt.step().unwrap();
        }
        let st = opt.state();
        assert_eq!(st.step, 5);
        for (i, (p, r)) in ps.iter().zip(&refs).enumerate() {
            STEPS_TOL.assert_close(&format!("{label} param {i}"), &read(p), &r.p);
            let get = |kind: &str| {
                let name = format!("{kind}.layer.{i}.weight");
                let (_, t) = st.tensors.iter().find(|(n, _)| *n == name).expect(&name);
                read(t)
            };
            STEPS_TOL.assert_close(&format!("{label} exp_avg {i}"), &get("exp_avg"), &r.m);
            STEPS_TOL.assert_close(&format!("{label} exp_avg_sq {i}"), &get("exp_avg_sq"), &r.v);
            assert_eq!(
                get("step"),
                vec![r.t as f32],
                "{label}: step count of param {i}"
            );
        }
    }
}

#[test]
fn adam_minimises_a_quadratic() {
    // L(w) = sum_i c_i (w_i - t_i)^2 with curvatures c spread over 10x: Adam's per-coordinate
    // scaling handles the spread. 300 steps of lr 0.1 with a cosine schedule (an f64 simulation
    // of this loop over 50 random problems ends below 2e-8 every time).
    let n = 17;
    let c = tensor(&rand_vec(n, seed("quad c"), 0.5, 5.0), &[n]);
    let target = tensor(&rand_vec(n, seed("quad t"), -2.0, 2.0), &[n]);
    let w = param(&rand_vec(n, seed("quad w"), -2.0, 2.0), &[n]);
    let loss_of = |w: &Tensor| w.sub(&target)?.square()?.mul(&c)?.sum();
    let initial = loss_of(&w).unwrap().item().unwrap();
    let mut opt = Adam::new(vec![("w".into(), w.clone())], AdamConfig::adam(0.1)).unwrap();
    let steps = 300;
    let schedule = Schedule::from_name("cosine", steps).unwrap();
    for t in 0..steps {
        opt.zero_grad().unwrap();
        loss_of(&w).unwrap().backward().unwrap();
        opt.set_learning_rate(schedule.lr_at(0.1, t));
        opt.step().unwrap();
    }
    let fin = loss_of(&w).unwrap().item().unwrap();
    assert!(
        initial > 5.0,
        "the start is far from the minimum (loss {initial})"
    );
    assert!(
        fin < 1e-3,
        "Adam should reach loss < 1e-3 from {initial}, got {fin}"
    );
}
