//! Training: the trainer loop, metrics, early stopping, checkpoints, run logs and plots.

pub mod checkpoint;
pub mod log;
pub mod metrics;
