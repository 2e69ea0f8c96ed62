//! `kiln predict`: run a saved model on new rows from a CSV file.
//!
//! For a run trained on a CSV file the input has the training file's columns (the target column
//! may be absent) and goes through the saved preprocessing. For built-in datasets each row holds
//! the raw features (digits: 64 pixel values 0..16; fashion-mnist: 784 values 0..255), optionally
//! followed by a label column, which is ignored. For a run trained on an image folder the input
//! is one picture or a folder of them (its image files, and those one sub-folder down), loaded,
//! resized and normalised as in training; rows are then named by file.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::saved::SavedRun;
use super::{Error, Result};
use crate::data::HeaderMode;
use crate::tensor::Tensor;
use crate::train::Task;

/// Flags of `kiln predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run directory or a checkpoint file.
    pub checkpoint: PathBuf,
    /// CSV file of rows to predict (image-folder runs: an image file or a folder of images).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write predictions (CSV); standard output when absent.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
}

fn raw_scale(data: &str) -> Option<f32> {
    match data {
        "digits" => Some(16.0),
        "fashion-mnist" => Some(255.0),
        _ => None,
    }
}

/// A file error of `--input`, the flag named (`--input rows.csv: No such file ...`).
fn input_err(e: crate::Error) -> Error {
    Error(format!("--input {e}"))
}

/// Run `kiln predict`.
pub fn run(a: PredictArgs) -> Result<()> {
    let saved = SavedRun::open(&a.checkpoint)?;
    let gpu = a.device.open()?;
    let model = saved.model(&gpu)?;
    let prep = super::eval::image_prep(&saved)?;
    let mut files: Option<Vec<String>> = None; // row names, for pictures
    let (x, n, f) = match (&saved.preprocessor, raw_scale(&saved.spec.data)) {
        _ if prep.is_some() => {
            let prep = prep.as_ref().expect("checked above");
            let paths = image_inputs(&a.input)?;
            let mut x = Vec::new(); // (N, C, H, W)
            for p in &paths {
                x.extend(prep.load_file(p)?);
            }
            files = Some(paths.iter().map(|p| p.display().to_string()).collect());
            let (c, h, w) = prep.shape();
            (x, paths.len(), c * h * w)
        }
        (Some(pre), _) => {
            let table = pre.read_csv(&a.input).map_err(|e| input_err(e.into()))?;
            for u in pre.unseen_categories(&table)? {
                eprintln!(
                    "warning: {} line {}, column {}: category {} (in {} row(s)) was not in the \
                     training rows; it is encoded as all zeros, and its predictions are guesses",
                    a.input.display(),
                    u.line,
                    u.column,
                    crate::data::clip(&u.value),
                    u.rows
                );
            }
            let x = pre.transform(&table)?;
            (x, table.len(), pre.num_features())
        }
        (None, Some(scale)) => {
            let table = crate::data::Table::read_csv(&a.input, HeaderMode::Auto)
                .map_err(|e| input_err(e.into()))?;
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
            text += if files.is_some() {
                "file,prediction,probability\n"
            } else {
                "row,prediction,probability\n"
            };
            for i in 0..n {
                let row = &probs[i * c..(i + 1) * c];
                let (best, p) = row.iter().enumerate().fold((0, f32::MIN), |acc, (j, &v)| {
                    if v > acc.1 { (j, v) } else { acc }
                });
                let row = match &files {
                    Some(f) => csv_field(&f[i]),
                    None => (i + 1).to_string(),
                };
                text += &format!("{row},{},{p:.4}\n", class_names[best]);
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
            crate::io::write_output(p, text.as_bytes(), "--output")?;
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

/// The pictures `input` names: the file itself, or a folder's image files and those one
/// sub-folder down (e.g. a labelled `DIR/<class>/*.png` folder), sorted.
fn image_inputs(input: &std::path::Path) -> Result<Vec<PathBuf>> {
    use crate::data::images::folder::image_files;
    if !input.is_dir() {
        if !input.exists() {
            return Err(Error(format!(
                "{}: no such file or directory",
                input.display()
            )));
        }
        return Ok(vec![input.to_path_buf()]);
    }
    let (mut files, _) = image_files(input)?;
    let mut subs: Vec<PathBuf> = std::fs::read_dir(input)
        .map_err(|e| Error(format!("{}: {e}", input.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    for d in subs {
        files.extend(image_files(&d)?.0);
    }
    if files.is_empty() {
        return Err(Error(format!(
            "{}: no .png/.jpg/.jpeg images here or one folder down",
            input.display()
        )));
    }
    Ok(files)
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn model_inputs(saved: &SavedRun) -> Result<usize> {
    Ok(saved.model_spec.input_len())
}
