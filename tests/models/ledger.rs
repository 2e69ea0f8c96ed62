//! The memory ledger through the library: which category a tensor is counted in (a parameter
//! as weights, a `.grad` as gradients, what the graph records as activations, the rest as
//! workspace, an open scope over all), and a [`MemoryLedger`] on a [`Trainer`]: rows per step,
//! weights, gradients and Adam's state equal to [`memory_formula`], and a dry run that
//! measures the same breakdown without allocating. Each test has its own device, so that no
//! other test's tensors are counted.

use std::sync::Arc;

use crate::common::*;
use kiln::Tensor;
use kiln::data::{Dataset, InMemoryDataset, Targets};
use kiln::memory::{self, Category};
use kiln::models::{Gpt, GptConfig, ModelSpec};
use kiln::nn::{Module, lora};
use kiln::optim::{Adam, Adam8bit, AdamConfig, Optimizer};
use kiln::train::memory::{MemoryLedger, MemoryReport, memory_formula, tag_weights};
use kiln::train::{Progress, Supervised, Task, TrainConfig, Trainer};

#[test]
fn tensors_are_counted_by_what_they_hold() {
    let g = private_gpu();
    let data = |n: usize, tag: &str| rand_vec(n, seed(tag), -1.0, 1.0);
    let w = Tensor::from_slice_on(&g, &data(12, "w"), &[3, 4]).unwrap();
    let w = w.requires_grad();
    assert_eq!(w.memory_category(), Category::Weights);
    let x = Tensor::from_slice_on(&g, &data(6, "x"), &[2, 3]).unwrap();
    let y = x.matmul(&w).unwrap();
    assert_eq!(y.memory_category(), Category::Activations);
    assert!(g.memory_stats().live_of(Category::Activations) > 0);
    y.sum().unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().memory_category(), Category::Gradients);
    {
        let _n = kiln::no_grad();
        let z = x.matmul(&w).unwrap();
        assert_eq!(z.memory_category(), Category::Workspace);
    }
    let _m = memory::scope(Category::OptimizerState);
    let m = Tensor::zeros_on(&g, &[3, 4]).unwrap();
    assert_eq!(m.memory_category(), Category::OptimizerState);
    let s = g.memory_stats();
    assert_eq!(s.live.iter().sum::<u64>(), s.live_total);
}

/// 3 Adam steps of an MLP (8 -> 32 -> 16 -> 3) on random rows, with a ledger; `dry`: in a dry
/// run (nothing allocated). The report and the formula's weights, gradients and state.
fn ledger_run(dry: bool) -> (MemoryReport, kiln::train::memory::Formula) {
    ledger_run_with(dry, &Setup::mlp("adam", &[32, 16]))
}

/// What [`ledger_run_with`] trains: a model of `spec` on random inputs of `shape` (3 classes)
/// with `optimizer` (`adam` or `adam8bit`), its Linear layers adapted by LoRA (`lora`), their
/// bases in NF4 too (`qlora`).
struct Setup {
    optimizer: &'static str,
    spec: ModelSpec,
    shape: Vec<usize>,
    lora: bool,
    qlora: bool,
}

impl Setup {
    /// An MLP from 8 features through `hidden` to 3 classes, no adapters.
    fn mlp(optimizer: &'static str, hidden: &[usize]) -> Setup {
        let spec = ModelSpec::Mlp {
            input: 8,
            hidden: hidden.to_vec(),
            output: 3,
            activation: "relu".into(),
            dropout: 0.0,
        };
        Setup {
            optimizer,
            spec,
            shape: vec![8],
            lora: false,
            qlora: false,
        }
    }
}

/// 3 steps of `setup` with a ledger, real or `dry`; the report and the formula.
fn ledger_run_with(dry: bool, setup: &Setup) -> (MemoryReport, kiln::train::memory::Formula) {
    let g = private_gpu();
    g.set_dry_run(dry);
    let n = 96;
    let features: usize = setup.shape.iter().product();
    let x = rand_vec(features * n, seed("ledger x"), -1.0, 1.0);
    let labels = (0..n as u32).map(|i| i % 3).collect();
    let targets = Targets::Classes {
        labels,
        num_classes: 3,
    };
    let data: Arc<dyn Dataset> =
        Arc::new(InMemoryDataset::new(x, setup.shape.clone(), targets).unwrap());
    let mut model = setup.spec.build(&g).unwrap();
    let lcfg = lora::LoraConfig::new(4, 8.0, &["*"]);
    if setup.qlora {
        lora::quantize_bases(model.as_mut(), &lcfg).unwrap();
    }
    let params = if setup.lora {
        lora::apply_lora(model.as_mut(), &lcfg).unwrap();
        lora::lora_parameters(model.as_ref())
    } else {
        model.named_parameters()
    };
    let optimizer = setup.optimizer;
    let mut opt: Box<dyn Optimizer> = match optimizer {
        "adam" => Box::new(Adam::new(params, AdamConfig::adam(0.01)).unwrap()),
        _ => Box::new(Adam8bit::new(params, AdamConfig::adam(0.01)).unwrap()),
    };
    let config = TrainConfig {
        epochs: 1,
        batch_size: 16,
        max_steps: Some(3),
        quiet: true,
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!(
        "kiln-ledger-{}-{dry}-{optimizer}-{}-{}{}",
        std::process::id(),
        setup.spec.name(),
        setup.lora,
        setup.qlora
    ));
    let formula = memory_formula(model.as_mut(), optimizer, 0.0);
    let ledger = MemoryLedger::new(&g, Some(dir.clone())).with_formula(formula);
    let mut t = Trainer::new(&g, config, data, &dir).hook(ledger.clone());
    let task = Task::Classification {
        class_names: vec!["a".into(), "b".into(), "c".into()],
    };
    let mut obj = Supervised::new(&g, task);
    let start = Progress::default();
    t.fit(model.as_mut(), opt.as_mut(), &mut obj, start)
        .unwrap();
    let report = MemoryReport::load(&dir.join("memory.json")).unwrap();
    assert_eq!(report, ledger.report(), "memory.json holds the ledger");
    let _ = std::fs::remove_dir_all(&dir);
    (report, formula)
}

#[test]
fn a_ledger_on_the_trainer_matches_the_formula_and_its_dry_run() {
    let (r, f) = ledger_run(false);
    assert_eq!(r.steps.len(), 3);
    assert_eq!(r.steps_measured, 3);
    assert_eq!(r.overall.weights, f.weights);
    assert_eq!(r.overall.gradients, f.gradients);
    assert_eq!(Some(r.overall.optimizer_state), f.optimizer_state);
    assert_eq!(
        f.trainable,
        (8 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3) as u64
    );
    assert!(r.overall.activations_peak > 0 && r.overall.workspace > 0);
    let o = r.overall;
    assert!(o.peak_total >= o.weights + o.gradients + o.optimizer_state);
    assert!(
        o.peak_total
            <= o.weights + o.gradients + o.optimizer_state + o.activations_peak + o.workspace
    );
    let (dry, _) = ledger_run(true);
    assert!(dry.dry_run && !r.dry_run);
    assert_eq!(
        dry.overall, r.overall,
        "a dry run counts what a real run allocates"
    );
}

#[test]
fn eight_bit_adam_state_matches_its_formula() {
    // 8 x 640 = 5,120 weights: quantised (>= 4,096 values); the rest keep f32 moments.
    let (r, f) = ledger_run_with(false, &Setup::mlp("adam8bit", &[640, 16]));
    assert_eq!(Some(r.overall.optimizer_state), f.optimizer_state);
    let (adam, fa) = ledger_run_with(false, &Setup::mlp("adam", &[640, 16]));
    assert_eq!(Some(adam.overall.optimizer_state), fa.optimizer_state);
    assert!(
        r.overall.optimizer_state * 2 < adam.overall.optimizer_state,
        "8-bit state {} vs f32 {}",
        r.overall.optimizer_state,
        adam.overall.optimizer_state
    );
}

#[test]
fn a_checkpointed_gpt_counts_only_its_parameters_as_weights() {
    // Recompute in backward makes the saved segment inputs leaves that collect a gradient; the
    // ledger must keep counting them as activations, not as weights (issue 19: 128 KiB over the
    // plan on a 4-block GPT).
    let g = private_gpu();
    let cfg = GptConfig {
        vocab_size: 29,
        n_layer: 4,
        n_head: 2,
        n_kv_head: 2,
        d_model: 24,
        context: 11,
        dropout: 0.0,
        rope: false,
    };
    let mut m = Gpt::new_on(&g, cfg).unwrap();
    assert!(m.set_checkpointing(1), "GPT blocks checkpoint");
    tag_weights(&m);
    let f = memory_formula(&mut m, "sgd", 0.0);
    let ids: Vec<u32> = rand_indices(3 * 11, seed("ledger ckpt"), 29);
    let ids = Tensor::from_slice_on(&g, &ids, &[3, 11]).unwrap();
    g.reset_peak();
    let y = m.forward(&ids).unwrap();
    y.square().unwrap().sum().unwrap().backward().unwrap();
    let s = g.memory_stats();
    assert_eq!(s.peak_of(Category::Weights), f.weights, "weights peak");
    assert_eq!(
        s.live_of(Category::Weights),
        f.weights,
        "weights after backward"
    );
}

#[test]
fn mlp_and_lenet_with_lora_and_qlora_plan_within_ten_percent() {
    // The dry run is the plan (`kiln train --dry-run`): every category within 10 % of the
    // measured run, and weights, gradients and optimizer state equal to the formula.
    let lenet = ModelSpec::LeNet {
        channels: 1,
        height: 8,
        width: 8,
        classes: 3,
    };
    for (what, spec, shape) in [
        ("mlp", Setup::mlp("adam", &[64, 32]).spec, vec![8]),
        ("lenet", lenet, vec![1, 8, 8]),
    ] {
        for (lora, qlora) in [(true, false), (true, true)] {
            let setup = Setup {
                optimizer: "adam",
                spec: spec.clone(),
                shape: shape.clone(),
                lora,
                qlora,
            };
            let what = format!("{what} lora {lora} qlora {qlora}");
            let (r, f) = ledger_run_with(false, &setup);
            let (plan, _) = ledger_run_with(true, &setup);
            assert_eq!(r.overall.weights, f.weights, "{what}: weights");
            assert_eq!(r.overall.gradients, f.gradients, "{what}: gradients");
            assert_eq!(Some(r.overall.optimizer_state), f.optimizer_state, "{what}");
            for ((key, m), (_, p)) in r.overall.entries().iter().zip(plan.overall.entries()) {
                let (m, p) = (*m as f64, p as f64);
                assert!(
                    (p - m).abs() <= 0.10 * m.max(1.0),
                    "{what}: {key} planned {p}, measured {m}"
                );
            }
        }
    }
}
