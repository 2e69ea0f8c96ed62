//! Transfer learning on the built-in digits: pretrain a LeNet on digits 0-4, move its frozen
//! convolutional trunk (`features.*`) to digits 5-9 with a new head, and compare with the same
//! network trained from scratch on 5-9 with the same budget of optimizer steps.
//!
//! ```text
//! cargo run --release --example transfer_digits
//! ```
//!
//! The pretraining uses Adam. The transfer and scratch runs use the same SGD with momentum,
//! seed, data order and learning rate, and the same fresh head; only the trunk differs
//! (pretrained and frozen, or random and trainable). Validation accuracy on 5-9 is measured every
//! `eval_every` steps; the output is the first step at which it reaches the target, and the
//! final accuracy. `tests/models/transfer.rs` runs this file's [`run_demo`] with a smaller budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kiln::Gpu;
use kiln::data::classes;
use kiln::data::{Dataset, InMemoryDataset, SplitFractions, digits_images};
use kiln::models::LeNet;
use kiln::nn::Module;
use kiln::nn::load::LoadOptions;
use kiln::nn::{freeze, load};
use kiln::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use kiln::train::{
    Control, Hook, Objective, Progress, StepInfo, Supervised, Task, TrainConfig, Trainer,
    checkpoint,
};

/// How much work each phase gets.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Optimizer steps of pretraining on 0-4.
    pub pretrain_steps: u64,
    /// Optimizer steps of each run on 5-9 (transfer and scratch alike).
    pub steps: u64,
    /// Validation accuracy is measured every this many steps.
    pub eval_every: u64,
    /// Examples per batch.
    pub batch: usize,
    /// Adam learning rate of pretraining.
    pub pretrain_lr: f32,
    /// SGD learning rate of the transfer and scratch runs.
    pub lr: f32,
    /// SGD momentum of the transfer and scratch runs.
    pub momentum: f32,
    /// The validation accuracy on 5-9 to reach (0..1).
    pub target: f64,
    /// Seed of initialisation and data order.
    pub seed: u64,
    /// Name patterns frozen in the transferred model.
    pub freeze: &'static [&'static str],
}

impl Budget {
    /// The budget of `cargo run --example transfer_digits`.
    pub fn full() -> Budget {
        Budget {
            pretrain_steps: 600,
            steps: 400,
            eval_every: 5,
            batch: 32,
            pretrain_lr: 3e-3,
            lr: 0.02,
            momentum: 0.9,
            target: 0.85,
            seed: 1,
            freeze: &["features.*"],
        }
    }
}

/// One run on digits 5-9.
#[derive(Debug, Clone)]
pub struct Run {
    /// `transfer` or `scratch`.
    pub name: &'static str,
    /// (step, validation accuracy) every `eval_every` steps.
    pub curve: Vec<(u64, f64)>,
    /// First evaluated step with accuracy >= the target.
    pub steps_to_target: Option<u64>,
    /// Validation accuracy after the last step.
    pub final_accuracy: f64,
    /// Trainable / total parameters.
    pub params: (usize, usize),
    /// Wall time of the run.
    pub seconds: f64,
}

/// What [`run_demo`] measured.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Validation accuracy of the pretrained model on 0-4.
    pub pretrain_accuracy: f64,
    /// The transferred model.
    pub transfer: Run,
    /// The model trained from scratch.
    pub scratch: Run,
    /// What `load_pretrained` reported.
    pub load_report: load::LoadReport,
}

/// Training split, validation split, task.
type Splits = (Arc<dyn Dataset>, Arc<dyn Dataset>, Task);

/// Train / validation splits of the digits with the given classes, relabelled from 0.
fn split(classes: &[u32], seed: u64) -> kiln::Result<Splits> {
    let ds: InMemoryDataset = classes::select_classes(&digits_images()?, classes)?;
    let labels = ds.labels().map(<[u32]>::to_vec).unwrap_or_default();
    let f = SplitFractions {
        train: 0.75,
        val: 0.25,
        test: 0.0,
    };
    let s = kiln::data::stratified_split(&labels, f, seed);
    let task = Task::Classification {
        class_names: ds.class_names().map(<[String]>::to_vec).unwrap_or_default(),
    };
    Ok((
        Arc::new(ds.subset(&s.train)?),
        Arc::new(ds.subset(&s.val)?),
        task,
    ))
}

/// Train `model` for `steps` steps; every `eval_every` steps (and at the end) record the
/// validation accuracy.
#[allow(clippy::too_many_arguments)]
fn train(
    gpu: &Arc<Gpu>,
    model: &mut dyn Module,
    train: &Arc<dyn Dataset>,
    val: &dyn Dataset,
    task: &Task,
    b: &Budget,
    pretrain: bool,
) -> kiln::Result<Vec<(u64, f64)>> {
    let (steps, eval_every) = if pretrain {
        (b.pretrain_steps, b.pretrain_steps)
    } else {
        (b.steps, b.eval_every)
    };
    // Pretraining: Adam. Transfer and scratch: the same SGD with momentum.
    let params = model.named_parameters();
    let mut opt: Box<dyn Optimizer> = if pretrain {
        Box::new(Adam::new(params, AdamConfig::adam(b.pretrain_lr))?)
    } else {
        let c = SgdConfig {
            momentum: b.momentum,
            ..SgdConfig::new(b.lr)
        };
        Box::new(Sgd::new(params, c)?)
    };
    // The one training loop, stopped at `steps` steps, with a hook that measures the
    // validation accuracy every `eval_every` steps.
    struct Curve<'a> {
        objective: Supervised,
        val: &'a dyn Dataset,
        every: u64,
        last: u64,
        points: Vec<(u64, f64)>,
    }
    impl Hook for Curve<'_> {
        fn after_step(&mut self, at: &StepInfo, model: &dyn Module) -> kiln::Result<Control> {
            if at.step.is_multiple_of(self.every) || at.step == self.last {
                let _g = kiln::no_grad(); // LeNet has no dropout or BatchNorm: no mode switch
                let ev = self.objective.evaluate(model, self.val, 512)?;
                let acc = ev.classification.map_or(0.0, |m| m.accuracy);
                self.points.push((at.step, acc));
            }
            Ok(Control::Continue)
        }
    }
    let batches = train.len().div_ceil(b.batch) as u64;
    let config = TrainConfig {
        epochs: steps.div_ceil(batches) as usize,
        batch_size: b.batch,
        lr: if pretrain { b.pretrain_lr } else { b.lr },
        seed: b.seed,
        max_steps: Some(steps),
        quiet: true,
        restore_best: false,
        ..TrainConfig::default()
    };
    let dir = std::env::temp_dir().join(format!(
        "kiln-transfer-train-{}-{}",
        std::process::id(),
        if pretrain { "pre" } else { "fine" }
    ));
    let mut curve = Curve {
        objective: Supervised::new(gpu, task.clone()),
        val,
        every: eval_every,
        last: steps,
        points: Vec::new(),
    };
    {
        let mut trainer = Trainer::new(gpu, config, train.clone(), &dir).hook(&mut curve);
        let mut objective = Supervised::new(gpu, task.clone());
        trainer.fit(model, opt.as_mut(), &mut objective, Progress::default())?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(curve.points)
}

fn finish(
    name: &'static str,
    model: &dyn Module,
    curve: Vec<(u64, f64)>,
    target: f64,
    t0: Instant,
) -> Run {
    let c = freeze::param_counts(model);
    Run {
        name,
        steps_to_target: curve.iter().find(|(_, a)| *a >= target).map(|(s, _)| *s),
        final_accuracy: curve.last().map_or(0.0, |(_, a)| *a),
        curve,
        params: (c.trainable, c.total),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Pretrain on 0-4, save, then train the transferred and the from-scratch model on 5-9.
pub fn run_demo(gpu: &Arc<Gpu>, b: &Budget) -> kiln::Result<Demo> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("kiln-transfer-demo-{}", std::process::id()));
    let ckpt = dir.join("pretrained.safetensors");

    // 1. Pretrain on digits 0-4 and save a checkpoint (tensors `model.<name>`).
    let (pre_train, pre_val, pre_task) = split(&[0, 1, 2, 3, 4], b.seed)?;
    kiln::nn::manual_seed(b.seed);
    let mut pre = LeNet::new_on(gpu, (1, 8, 8), 5)?;
    let curve = train(
        gpu,
        &mut pre,
        &pre_train,
        pre_val.as_ref(),
        &pre_task,
        b,
        true,
    )?;
    let pretrain_accuracy = curve.last().map_or(0.0, |(_, a)| *a);
    let tensors: Vec<_> = pre
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    checkpoint::save(&ckpt, &tensors, &Default::default())?;

    // 2. Transfer: same architecture, the pretrained weights but a fresh head, frozen trunk.
    let (train5, val5, task5) = split(&[5, 6, 7, 8, 9], b.seed)?;
    kiln::nn::manual_seed(b.seed + 1);
    let mut tl = LeNet::new_on(gpu, (1, 8, 8), 5)?;
    let opts = LoadOptions {
        skip: vec!["classifier.4".into()], // the head: 5-9 are new classes
        ..Default::default()
    };
    let load_report = load::load_pretrained(&tl, &ckpt, &opts)?;
    freeze::freeze(&tl, b.freeze)?;
    let t0 = Instant::now();
    let curve = train(gpu, &mut tl, &train5, val5.as_ref(), &task5, b, false)?;
    let transfer = finish("transfer", &tl, curve, b.target, t0);

    // 3. From scratch: the same seed for the same fresh head, everything trainable.
    kiln::nn::manual_seed(b.seed + 1);
    let mut sc = LeNet::new_on(gpu, (1, 8, 8), 5)?;
    let t0 = Instant::now();
    let curve = train(gpu, &mut sc, &train5, val5.as_ref(), &task5, b, false)?;
    let scratch = finish("scratch", &sc, curve, b.target, t0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Demo {
        pretrain_accuracy,
        transfer,
        scratch,
        load_report,
    })
}

#[allow(dead_code)] // tests/models/transfer.rs includes this file for `run_demo`
fn main() -> kiln::Result<()> {
    let gpu = kiln::device()?;
    let b = Budget::full();
    println!("device: {}", gpu.info().name);
    println!(
        "budget: pretrain {} steps on 0-4 (Adam lr {}), then {} steps on 5-9 (SGD lr {} momentum {}), \
         batch {}, target {:.0}% val accuracy",
        b.pretrain_steps,
        b.pretrain_lr,
        b.steps,
        b.lr,
        b.momentum,
        b.batch,
        100.0 * b.target
    );
    let d = run_demo(&gpu, &b)?;
    println!(
        "pretrained LeNet on 0-4: val accuracy {:.1}%",
        100.0 * d.pretrain_accuracy
    );
    print!("{}", d.load_report);
    println!(
        "\nrun        trainable/total   steps to {:.0}%   final acc   wall",
        100.0 * b.target
    );
    for r in [&d.transfer, &d.scratch] {
        let to = r
            .steps_to_target
            .map_or("not reached".to_string(), |s| s.to_string());
        println!(
            "{:<10} {:>7}/{:<7}   {:>13}   {:>8.1}%   {:.1}s",
            r.name,
            r.params.0,
            r.params.1,
            to,
            100.0 * r.final_accuracy,
            r.seconds
        );
    }
    println!("\naccuracy by step (transfer / scratch):");
    for ((s, a), (_, c)) in d
        .transfer
        .curve
        .iter()
        .zip(&d.scratch.curve)
        .filter(|((s, _), _)| s % 25 == 0)
    {
        println!("  step {s:>4}: {:>5.1}% / {:>5.1}%", 100.0 * a, 100.0 * c);
    }
    Ok(())
}
