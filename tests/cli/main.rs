//! The `kiln` command line end to end: training, text models, fine-tuning, benches, resume, reliability and sweeps.
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/cli.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;

mod bench_cli;
mod book;
mod cli;
mod cli_text;
mod diagnose;
mod explain;
mod finetune;
mod memory;
mod reliability;
mod resume;
mod sweep;
