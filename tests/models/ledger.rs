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
use kiln::models::ModelSpec;
use kiln::optim::{Adam, Adam8bit, AdamConfig, Optimizer};
use kiln::train::memory::{MemoryLedger, MemoryReport, memory_formula};
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
    ledger_run_with(dry, "adam", &[32, 16])
}

/// [`ledger_run`] with optimizer `optimizer` (`adam` or `adam8bit`) and hidden widths `hidden`.
fn ledger_run_with(
    dry: bool,
    optimizer: &str,
    hidden: &[usize],
) -> (MemoryReport, kiln::train::memory::Formula) {
    let g = private_gpu();
    g.set_dry_run(dry);
    let n = 96;
    let x = rand_vec(8 * n, seed("ledger x"), -1.0, 1.0);
    let labels = (0..n as u32).map(|i| i % 3).collect();
    let targets = Targets::Classes {
        labels,
        num_classes: 3,
    };
    let data: Arc<dyn Dataset> = Arc::new(InMemoryDataset::new(x, vec![8], targets).unwrap());
    let spec = ModelSpec::Mlp {
        input: 8,
        hidden: hidden.to_vec(),
        output: 3,
        activation: "relu".into(),
        dropout: 0.0,
    };
    let mut model = spec.build(&g).unwrap();
    let params = model.named_parameters();
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
        "kiln-ledger-{}-{dry}-{optimizer}",
        std::process::id()
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
    let (r, f) = ledger_run_with(false, "adam8bit", &[640, 16]);
    assert_eq!(Some(r.overall.optimizer_state), f.optimizer_state);
    let (adam, fa) = ledger_run_with(false, "adam", &[640, 16]);
    assert_eq!(Some(adam.overall.optimizer_state), fa.optimizer_state);
    assert!(
        r.overall.optimizer_state * 2 < adam.overall.optimizer_state,
        "8-bit state {} vs f32 {}",
        r.overall.optimizer_state,
        adam.overall.optimizer_state
    );
}
