//! `kiln predict`: run a saved model on new rows from a CSV file.
//!
//! For a run trained on a CSV file the input has the training file's columns (the target column
//! may be absent) and goes through the saved preprocessing. For built-in datasets each row holds
//! the raw features (digits: 64 pixel values 0..16; fashion-mnist: 784 values 0..255), optionally
//! followed by a label column, which is ignored.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result, open_device};
use crate::data::HeaderMode;
use crate::tensor::Tensor;
use crate::train::Task;

/// Flags of `kiln predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run directory or a checkpoint file.
    pub checkpoint: PathBuf,
    /// CSV file of rows to predict.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write predictions (CSV); standard output when absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// GPU adapter.
    #[arg(long)]
    pub device: Option<String>,
}

fn raw_scale(data: &str) -> Option<f32> {
    match data {
        "digits" => Some(16.0),
        "fashion-mnist" => Some(255.0),
        _ => None,
    }
}

/// Run `kiln predict`.
pub fn run(a: PredictArgs) -> Result<()> {
    let saved = SavedRun::open(&a.checkpoint)?;
    let gpu = open_device(a.device.as_deref())?;
    let model = saved.model(&gpu)?;
    let (x, n, f) = match (&saved.preprocessor, raw_scale(&saved.spec.data)) {
        (Some(pre), _) => {
            let table = pre.read_csv(&a.input)?;
            let x = pre.transform(&table)?;
            (x, table.len(), pre.num_features())
        }
        (None, Some(scale)) => {
            let table = crate::data::Table::read_csv(&a.input, HeaderMode::Auto)?;
            let f = model_inputs(&saved)?;
            let cols = table.columns.len();
            if cols != f && cols != f + 1 {
                return Err(Error(format!(
                    "{}: rows have {cols} columns; this model takes {f} features (optionally followed by a label)",
                    a.input.display()
                )));
            }
            let mut x = Vec::with_capacity(table.len() * f);
            for (r, row) in table.rows.iter().enumerate() {
                for (j, v) in row.iter().take(f).enumerate() {
                    let num: f32 = v.trim().parse().map_err(|_| {
                        Error(format!(
                            "{} line {}, column {}: expected a number, found {v:?}",
                            a.input.display(),
                            table.lines[r],
                            j + 1
                        ))
                    })?;
                    x.push(num / scale);
                }
            }
            (x, table.len(), f)
        }
        (None, None) => return Err(Error("this run has no input preprocessing to apply".into())),
    };
    let _g = crate::no_grad();
    let xt = Tensor::from_slice_on(&gpu, &x, &[n, f])?;
    let out = model.forward(&xt)?;
    let mut text = String::new();
    match &saved.task {
        Task::Classification { class_names } => {
            let probs = out.softmax(-1)?.to_vec::<f32>()?;
            let c = class_names.len();
            text += "row,prediction,probability\n";
            for i in 0..n {
                let row = &probs[i * c..(i + 1) * c];
                let (best, p) = row.iter().enumerate().fold((0, f32::MIN), |acc, (j, &v)| {
                    if v > acc.1 { (j, v) } else { acc }
                });
                text += &format!("{},{},{p:.4}\n", i + 1, class_names[best]);
            }
        }
        Task::Regression { width } => {
            let v = out.to_vec::<f32>()?;
            text += "row,prediction\n";
            for i in 0..n {
                let vals: Vec<String> = v[i * width..(i + 1) * width]
                    .iter()
                    .map(|x| x.to_string())
                    .collect();
                text += &format!("{},{}\n", i + 1, vals.join(","));
            }
        }
    }
    match &a.output {
        Some(p) => {
            crate::train::checkpoint::write_atomic(p, text.as_bytes())?;
            eprintln!("wrote {} predictions to {}", n, p.display());
        }
        None => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error(e.to_string()))?;
        }
    }
    Ok(())
}

fn model_inputs(saved: &SavedRun) -> Result<usize> {
    Ok(saved.model_spec.input_len())
}
