//! Distributed training: the in-process collective, data parallelism and ZeRO on several
//! devices of one process.

#[path = "../common/cli.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod data_parallel;
mod local;
