//! Training: the trainer loop, metrics, early stopping, checkpoints, run logs and plots.

pub mod checkpoint;
pub mod config;
pub mod log;
pub mod metrics;
pub mod trainer;
pub mod transfer;

pub use config::{Task, TrainConfig};
pub use trainer::{Evaluation, FitReport, Progress, Trainer, evaluate};
