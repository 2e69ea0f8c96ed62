//! Distributed training: the in-process collective, data parallelism and ZeRO on several
//! devices of one process.

#[path = "../common/mod.rs"]
mod common;

mod data_parallel;
mod local;
