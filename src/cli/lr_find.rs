//! `kiln lr-find`: the learning-rate range test ([`crate::train::lr_find`]) on the model and
//! data `kiln train` would use with the same flags; prints the suggested rate and writes
//! `lr_find.csv` and `lr_find.png` to --out (default runs/lr-find-<n>).

use std::path::{Path, PathBuf};

use clap::Args;

use super::train::TrainArgs;
use super::{Error, Result};
use crate::error::Error as KilnError;
use crate::models::ModelSpec;
use crate::optim::OptimizerKind;
use crate::train::Trainer;
use crate::train::lr_find::RangeTest;

/// Flags of `kiln lr-find`: those of `kiln train`, plus the sweep.
#[derive(Debug, Args)]
pub struct LrFindArgs {
    /// The model, data and optimizer flags, as for `kiln train` (--lr and --schedule are set
    /// by the sweep).
    #[command(flatten)]
    pub train: Box<TrainArgs>,
    /// First learning rate of the sweep.
    #[arg(long, default_value_t = 1e-7)]
    pub start_lr: f64,
    /// Last learning rate of the sweep.
    #[arg(long, default_value_t = 10.0)]
    pub end_lr: f64,
    /// Steps from --start-lr to --end-lr.
    #[arg(long, default_value_t = 100)]
    pub steps: u64,
}

/// Run `kiln lr-find`.
pub fn run(a: LrFindArgs) -> Result<()> {
    if !(a.start_lr > 0.0 && a.end_lr > a.start_lr && a.steps >= 3) {
        return Err(Error(format!(
            "--start-lr {} --end-lr {} --steps {}: need 0 < start < end and at least 3 steps",
            a.start_lr, a.end_lr, a.steps
        )));
    }
    let spec = super::train::resolve(&a.train)?;
    if spec.is_text() {
        return Err(Error(
            "kiln lr-find runs on tables and images (--data, --images); language models are \
             not supported yet"
                .into(),
        ));
    }
    let dir = a
        .train
        .common
        .fresh_dir("a run", || free_dir(Path::new("runs")))?;
    let gpu = a.train.common.device.open()?;
    let data = spec.load_data()?;
    crate::nn::manual_seed(spec.train.seed);
    let model_spec = ModelSpec::from_name(&spec.model, data.input, data.output, data.image)?;
    let mut model = model_spec.build(&gpu)?;
    let kind: OptimizerKind = spec.train.optimizer.parse()?;
    let (wd, momentum) = (spec.train.weight_decay, spec.train.momentum);
    let params = model.named_parameters();
    let mut opt = crate::optim::build(kind, params, a.start_lr as f32, wd, momentum)?;
    let mut test = RangeTest::new(a.start_lr, a.end_lr, a.steps);
    let mut cfg = spec.train.clone();
    let per_epoch = data.train.len().div_ceil(cfg.batch_size.max(1)) as u64;
    cfg.epochs = a.steps.div_ceil(per_epoch.max(1)) as usize + 1;
    cfg.max_steps = Some(a.steps);
    cfg.lr = a.start_lr as f32;
    (cfg.quiet, cfg.restore_best, cfg.patience) = (true, false, None);
    let schedule = test.schedule();
    let mut trainer = Trainer::new(&gpu, cfg, data.train.clone(), &dir).hook(&mut test);
    trainer.schedule = Some(schedule);
    let mut objective = crate::train::Supervised::new(&gpu, data.task.clone());
    let (model, opt) = (model.as_mut(), opt.as_mut());
    match trainer.fit(model, opt, &mut objective, Default::default()) {
        Ok(_) | Err(KilnError::Diverged(_)) => {} // a loss gone NaN ends the sweep too
        Err(e) => return Err(e.into()),
    }
    drop(trainer);
    report(&test, &dir)
}

/// Print the suggestion and write the CSV and plot.
fn report(test: &RangeTest, dir: &Path) -> Result<()> {
    let csv = dir.join("lr_find.csv");
    crate::io::write_atomic(&csv, test.csv().as_bytes())?;
    let suggestion = test.suggestion();
    #[cfg(feature = "plots")]
    crate::train::plot::save_png(dir, "lr_find.png", |tmp| {
        crate::train::plot::draw_lr_find(tmp, &test.points, suggestion)
    })?;
    let last = test.points.last();
    println!(
        "swept {} steps, lr {:.1e} to {:.1e}{}",
        test.points.len(),
        test.start,
        last.map_or(test.start, |p| p.lr),
        if (test.points.len() as u64) < test.steps {
            " (stopped: the loss exploded)"
        } else {
            ""
        }
    );
    let Some(s) = suggestion else {
        return Err(Error(
            "the sweep ended before 3 steps; no rate to suggest (lower --start-lr)".into(),
        ));
    };
    if let Some(st) = test.steepest() {
        println!("steepest descent of the smoothed loss at lr {st:.1e}");
    }
    println!("suggested lr: {s:.1e} (the minimum of the smoothed loss / 10)");
    println!("written: {} and lr_find.png", csv.display());
    Ok(())
}

/// The first free `runs/lr-find-<n>`.
fn free_dir(root: &Path) -> PathBuf {
    (1..)
        .map(|n| root.join(format!("lr-find-{n}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}
