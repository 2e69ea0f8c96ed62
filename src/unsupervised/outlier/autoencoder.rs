//! An autoencoder's reconstruction error as the outlier score: a network trained to copy the
//! rows through a narrow middle layer learns what ordinary rows look like, and copies the
//! unusual ones badly.
//!
//! The network is kiln's [`Mlp`] `d -> hidden... -> d` (ReLU), trained by the one
//! [`Trainer`] loop on the regression task `x -> x` (mean squared error, Adam, shuffled
//! mini-batches, seeded). The score of a row is its mean squared reconstruction error
//! `(1/d) sum_j (f(x)_j - x_j)^2`, computed on the GPU in eval mode. The trainer writes its run
//! log and checkpoints to `dir` (a fresh temporary folder, removed afterwards, when unset).
//!
//! ```no_run
//! use kiln::unsupervised::Autoencoder;
//! // Rows (a, b, a + b, a - b) and one that breaks the pattern.
//! let mut x: Vec<f32> = (0..100)
//!     .flat_map(|i| {
//!         let (a, b) = ((i % 10) as f32 / 5.0 - 1.0, (i / 10) as f32 / 5.0 - 1.0);
//!         [a, b, a + b, a - b]
//!     })
//!     .collect();
//! x.extend([1.0, 1.0, -2.0, 2.0]);
//! let ae = Autoencoder { hidden: vec![16, 2, 16], epochs: 50, lr: 1e-2, ..Autoencoder::default() };
//! let scores = ae.fit_score(&x, 4)?; // (101), the mean squared error per row
//! assert_eq!(scores.len(), 101);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use super::check_rows;
use crate::Tensor;
use crate::data::{InMemoryDataset, Targets};
use crate::error::{Result, arg_err};
use crate::models::Mlp;
use crate::nn::Module;
use crate::optim::{Adam, AdamConfig};
use crate::train::{Progress, Supervised, Task, TrainConfig, Trainer};

/// Autoencoder settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoencoder {
    /// Hidden widths, the middle one the bottleneck (default 64, 32, 64: the layer widths of PyOD's default autoencoder).
    pub hidden: Vec<usize>,
    /// Passes over the rows (default 100).
    pub epochs: usize,
    /// Rows per batch (default 32).
    pub batch_size: usize,
    /// Adam's learning rate (default 1e-3).
    pub lr: f32,
    /// Seed of the initialisation and the batch order.
    pub seed: u64,
    /// Run directory of the training (log, checkpoints); `None`: a temporary one.
    pub dir: Option<PathBuf>,
}

impl Default for Autoencoder {
    fn default() -> Self {
        Autoencoder {
            hidden: vec![64, 32, 64],
            epochs: 100,
            batch_size: 32,
            lr: 1e-3,
            seed: 0,
            dir: None,
        }
    }
}

/// Removes a temporary run directory when dropped.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Autoencoder {
    /// Train on row-major x (n, d) and return each row's reconstruction error.
    pub fn fit_score(&self, x: &[f32], d: usize) -> Result<Vec<f64>> {
        let n = check_rows("autoencoder", x, d)?;
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return arg_err(
                "autoencoder",
                format!("hidden widths {:?}: need at least one, none 0", self.hidden),
            );
        }
        let gpu = crate::device()?;
        let (dir, _cleanup) = match &self.dir {
            Some(d) => (d.clone(), TempDir(None)),
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |t| t.as_nanos());
                let d = std::env::temp_dir()
                    .join(format!("kiln-autoencoder-{}-{stamp}", std::process::id()));
                (d.clone(), TempDir(Some(d)))
            }
        };
        crate::nn::manual_seed(self.seed);
        let mut model = Mlp::new_on(&gpu, d, &self.hidden, d, "relu", 0.0)?;
        let targets = Targets::Values {
            values: x.to_vec(),
            width: d,
        };
        let data = Arc::new(InMemoryDataset::new(x.to_vec(), vec![d], targets)?);
        let config = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            quiet: true,
            ..TrainConfig::default()
        };
        let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(self.lr))?;
        let mut objective = Supervised::new(&gpu, Task::Regression { width: d });
        Trainer::new(&gpu, config, data, &dir).fit(
            &mut model,
            &mut opt,
            &mut objective,
            Progress::default(),
        )?;
        model.set_training(false);
        let _g = crate::no_grad();
        let mut out = Vec::with_capacity(n);
        for rows in x.chunks(d * 4096) {
            let t = Tensor::from_slice_on(&gpu, rows, &[rows.len() / d, d])?;
            let err: Vec<f32> = model
                .forward(&t)?
                .sub(&t)?
                .square()?
                .sum_dims(&[1], false)?
                .to_vec()?;
            out.extend(err.iter().map(|&e| e as f64 / d as f64));
        }
        Ok(out)
    }
}
