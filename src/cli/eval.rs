//! `kiln eval`: the metrics of a saved model on its test split (or on another labelled CSV).

use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result, open_device};
use crate::data::Dataset;
use crate::train::{self, metrics};

/// Flags of `kiln eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory or a checkpoint file.
    pub checkpoint: PathBuf,
    /// A labelled CSV file to evaluate on instead of the run's test split (CSV runs only).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// GPU adapter.
    #[arg(long)]
    pub device: Option<String>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `kiln eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    let saved = SavedRun::open(&a.checkpoint)?;
    let gpu = open_device(a.device.as_deref())?;
    let mut model = saved.model(&gpu)?;
    let (data, what): (Box<dyn Dataset>, String) = match &a.data {
        None => (
            Box::new(ArcData(saved.spec.load_data()?.test)),
            "test split".into(),
        ),
        Some(path) => {
            let pre = saved.preprocessor.as_ref().ok_or_else(|| {
                Error(
                    "--data works for runs trained on a CSV file; this run used a built-in dataset"
                        .into(),
                )
            })?;
            let table = pre.read_csv(path)?;
            (Box::new(pre.dataset(&table)?), path.display().to_string())
        }
    };
    let ev = train::evaluate(&gpu, model.as_mut(), &saved.task, data.as_ref(), 512)?;
    if a.json {
        println!("{}", serde_json::to_string(&ev).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{} on {what} ({} examples)",
        saved.path.display(),
        ev.examples
    );
    if let Some(m) = &ev.classification {
        println!(
            "accuracy {:.2}%   loss {:.4}   macro precision {:.3}   recall {:.3}   F1 {:.3}",
            100.0 * m.accuracy,
            ev.loss,
            m.macro_precision,
            m.macro_recall,
            m.macro_f1
        );
        if let Some(names) = saved.class_names() {
            print!("{}", metrics::confusion_table(&m.confusion, names));
        }
    }
    if let Some(m) = &ev.regression {
        println!(
            "loss {:.4}   MSE {:.4}   MAE {:.4}   R2 {:.3}",
            ev.loss, m.mse, m.mae, m.r2
        );
    }
    Ok(())
}

/// A shared dataset behind a box.
struct ArcData(std::sync::Arc<dyn Dataset>);

impl Dataset for ArcData {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn feature_shape(&self) -> Vec<usize> {
        self.0.feature_shape()
    }
    fn batch(&self, indices: &[usize]) -> crate::data::Batch {
        self.0.batch(indices)
    }
}
