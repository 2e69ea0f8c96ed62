//! `kiln eval`: the metrics of a saved model on its test split (or on another labelled CSV).

use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result};
use crate::data::Dataset;
use crate::train::{self, metrics};

/// Flags of `kiln eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory or a checkpoint file.
    pub checkpoint: PathBuf,
    /// A labelled CSV file (CSV runs) or image folder `DIR/<class>/*.png` (image-folder runs) to
    /// evaluate on instead of the run's test split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Run `kiln eval`.
pub fn run(a: EvalArgs) -> Result<()> {
    let saved = SavedRun::open(&a.checkpoint)?;
    if saved.model_spec.is_sequence() {
        return eval_text(&a, &saved);
    }
    let gpu = a.device.open()?;
    let mut model = saved.model(&gpu)?;
    let (data, what): (Box<dyn Dataset>, String) = match &a.data {
        None => (
            Box::new(ArcData(saved.spec.load_data()?.test)),
            "test split".into(),
        ),
        Some(path) if path.is_dir() => {
            let prep = image_prep(&saved)?.ok_or_else(|| {
                Error(format!(
                    "--data {}: a folder of images works for runs trained on an image folder",
                    path.display()
                ))
            })?;
            let folder = prep.load_folder(path)?;
            (Box::new(folder.dataset), path.display().to_string())
        }
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
    if !print_head(&a, &saved, &ev, &what, "examples") {
        return Ok(());
    }
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

/// `kiln eval` of a language model: loss, perplexity and token accuracy on the run's test split
/// (re-read and tokenized with the checkpoint's tokenizer) or on the windows of a text file.
fn eval_text(a: &EvalArgs, saved: &SavedRun) -> Result<()> {
    use super::text_data::load_text;
    let tok = saved.tokenizer(&saved.path.display().to_string())?;
    let context = saved.model_spec.input_len();
    let (data, what): (Box<dyn Dataset>, String) = match &a.data {
        None => (
            Box::new(ArcData(load_text(&saved.spec, Some(tok.clone()))?.test)),
            "test split".into(),
        ),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error(format!("--data {}: {e}", path.display())))?;
            let ids = tok.encode(&text);
            let d = crate::data::text::TextDataset::new(ids, tok.vocab_size(), context, context)?;
            if d.is_empty() {
                return Err(Error(format!(
                    "--data {}: too short for one window of {context} tokens",
                    path.display()
                )));
            }
            (Box::new(d), path.display().to_string())
        }
    };
    let gpu = a.device.open()?;
    let mut model = saved.model(&gpu)?;
    let batch = ((16 << 20) / (context * tok.vocab_size()).max(1)).clamp(1, 512);
    let ev = train::evaluate(&gpu, model.as_mut(), &saved.task, data.as_ref(), batch)?;
    let unit = format!("windows of {context} tokens");
    if !print_head(a, saved, &ev, &what, &unit) {
        return Ok(());
    }
    let acc = ev.classification.as_ref().map_or(f64::NAN, |m| m.accuracy);
    println!(
        "loss {:.4}   perplexity {:.2}   token accuracy {:.2}%",
        ev.loss,
        ev.loss.exp(),
        100.0 * acc
    );
    Ok(())
}

/// With `--json`, print `ev` as one JSON object and return false (nothing more to print);
/// else print the first line, `<checkpoint> on <what> (<count> <unit>)`, and return true.
fn print_head(
    a: &EvalArgs,
    saved: &SavedRun,
    ev: &train::Evaluation,
    what: &str,
    unit: &str,
) -> bool {
    if a.json {
        println!("{}", serde_json::to_string(ev).unwrap_or_default());
        return false;
    }
    println!(
        "{} on {what} ({} {unit})",
        saved.path.display(),
        ev.examples
    );
    true
}

/// How a run trained on an image folder loads pictures (checkpoint metadata `image_prep`).
pub(super) fn image_prep(saved: &SavedRun) -> Result<Option<crate::data::images::ImagePrep>> {
    match saved.checkpoint.metadata.get("image_prep") {
        None => Ok(None),
        Some(js) => serde_json::from_str(js).map(Some).map_err(|e| {
            Error(format!(
                "checkpoint {}: metadata \"image_prep\" is unreadable ({e})",
                saved.path.display()
            ))
        }),
    }
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
