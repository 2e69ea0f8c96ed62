//! Training: the one [`Trainer`] loop with its hooks, objectives, metrics, early stopping,
//! checkpoints with exact resume, run logs and plots.

pub mod checkpoint;
pub mod config;
pub mod data_checks;
pub mod diagnose;
pub mod diagnostics;
pub mod hooks;
pub mod log;
pub mod lr_find;
pub mod memory;
#[cfg(feature = "plots")]
mod memory_plot;
pub mod metrics;
pub mod objective;
pub mod parallel;
#[cfg(feature = "plots")]
pub mod plot;
pub mod progress;
mod scaler;
pub mod semi;
pub mod trainer;
pub mod transfer;
pub mod zero;

pub use config::{Task, TrainConfig};
pub use hooks::{BatchInfo, Control, EpochEnd, Hook, OnEpoch, Phase, StepInfo};
pub use memory::{MemoryLedger, MemoryReport, MemoryRow};
pub use objective::{Evaluation, MaskedLm, Objective, Supervised, evaluate, upload};
pub use trainer::{FitReport, PartialEpoch, Progress, Saved, StopReason, Trainer};
