//! The run directory: per-epoch metrics as JSON lines and CSV, the loss/accuracy curves as PNG.
//!
//! ```text
//! runs/<name>/
//!   config.toml          the settings of the run (written by the CLI)
//!   metrics.jsonl        one JSON object per epoch
//!   metrics.csv          the same, as a table
//!   curves.png           train/validation loss (and validation accuracy) per epoch
//!   checkpoint.safetensors, best.safetensors, summary.json
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_err};

/// What one epoch produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification).
    pub val_accuracy: Option<f64>,
    /// Validation macro F1 (classification).
    pub val_macro_f1: Option<f64>,
    /// Validation R^2 (regression).
    pub val_r2: Option<f64>,
    /// Validation perplexity `exp(val_loss)` (classification; for a language model the
    /// effective number of tokens it hesitates between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch, seconds.
    pub seconds: f64,
    /// Training throughput.
    pub samples_per_sec: f64,
}

/// Appends records to `metrics.jsonl` / `metrics.csv` and redraws `curves.png`.
pub struct RunLog {
    dir: PathBuf,
    records: Vec<EpochRecord>,
}

const CSV_HEADER: &str = concat!(
    "epoch,train_loss,val_loss,val_accuracy,val_macro_f1,val_r2,lr,seconds,samples_per_sec,",
    "val_perplexity"
);

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl RunLog {
    /// Start a log in `dir`, keeping earlier records up to epoch `keep_until` (for resumed runs;
    /// 0 starts fresh).
    pub fn open(dir: &Path, keep_until: usize) -> Result<RunLog> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut records = Vec::new();
        let jsonl = dir.join("metrics.jsonl");
        if keep_until > 0 && jsonl.exists() {
            let text = std::fs::read_to_string(&jsonl).map_err(|e| io_err(&jsonl, e))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let r: EpochRecord = serde_json::from_str(line).map_err(|e| Error::Io {
                    path: jsonl.display().to_string(),
                    msg: format!("line {}: {e}", i + 1),
                })?;
                if r.epoch <= keep_until {
                    records.push(r);
                }
            }
        }
        let log = RunLog {
            dir: dir.to_path_buf(),
            records,
        };
        log.rewrite()?;
        Ok(log)
    }

    /// Records so far.
    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    /// Add one epoch and update the files (JSON lines, CSV, plot).
    pub fn push(&mut self, r: EpochRecord) -> Result<()> {
        let jsonl = self.dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&jsonl)
            .map_err(|e| io_err(&jsonl, e))?;
        let line = serde_json::to_string(&r).map_err(|e| io_err(&jsonl, e))?;
        writeln!(f, "{line}").map_err(|e| io_err(&jsonl, e))?;
        self.records.push(r);
        self.write_csv()?;
        self.plot()
    }

    fn rewrite(&self) -> Result<()> {
        let jsonl = self.dir.join("metrics.jsonl");
        let mut text = String::new();
        for r in &self.records {
            text += &serde_json::to_string(r).map_err(|e| io_err(&jsonl, e))?;
            text.push('\n');
        }
        std::fs::write(&jsonl, text).map_err(|e| io_err(&jsonl, e))?;
        self.write_csv()
    }

    fn write_csv(&self) -> Result<()> {
        let path = self.dir.join("metrics.csv");
        let mut s = String::from(CSV_HEADER);
        s.push('\n');
        for r in &self.records {
            s += &format!(
                "{},{},{},{},{},{},{},{:.3},{:.1},{}\n",
                r.epoch,
                r.train_loss,
                opt(r.val_loss),
                opt(r.val_accuracy),
                opt(r.val_macro_f1),
                opt(r.val_r2),
                r.lr,
                r.seconds,
                r.samples_per_sec,
                opt(r.val_perplexity)
            );
        }
        std::fs::write(&path, s).map_err(|e| io_err(&path, e))
    }

    /// Draw `curves.png`: losses on the left axis, validation accuracy (if any) on the right.
    pub fn plot(&self) -> Result<()> {
        let path = self.dir.join("curves.png");
        draw_curves(&path, &self.records).map_err(|e| Error::Io {
            path: path.display().to_string(),
            msg: format!("could not draw the plot: {e}"),
        })
    }
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans (Bitstream Vera licence, assets/fonts/DejaVu-LICENSE.txt).
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        );
    });
}

fn draw_curves(
    path: &Path,
    records: &[EpochRecord],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    if records.is_empty() {
        root.present()?;
        return Ok(());
    }
    let n = records.len();
    let losses = records
        .iter()
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite());
    let ymax = losses.fold(0.0f64, f64::max).max(1e-6) * 1.05;
    let has_acc = records.iter().any(|r| r.val_accuracy.is_some());
    let mut chart = ChartBuilder::on(&root)
        .caption("kiln training curves", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(if has_acc { 60 } else { 0 })
        .build_cartesian_2d(1f64..(n.max(2) as f64), 0f64..ymax)?
        .set_secondary_coord(1f64..(n.max(2) as f64), 0f64..1.0f64);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style(("sans-serif", 14))
        .draw()?;
    if has_acc {
        chart
            .configure_secondary_axes()
            .y_desc("validation accuracy")
            .label_style(("sans-serif", 14))
            .draw()?;
    }
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(
            pts(&|r| Some(r.train_loss)),
            BLUE.stroke_width(2),
        ))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    let val = pts(&|r| r.val_loss);
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val, RED.stroke_width(2)))?
            .label("validation loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    if has_acc {
        chart
            .draw_secondary_series(LineSeries::new(
                pts(&|r| r.val_accuracy),
                GREEN.stroke_width(2),
            ))?
            .label("validation accuracy")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}
