//! Models, transfer, LoRA/QLoRA, pretrained MiniLM, PEFT files and the trainer.
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/cli.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/rnn.rs"]
mod rnn_util;

mod checkpointing;
mod diagnostics;
mod genre;
mod hf;
mod hf_files;
mod ledger;
mod llama;
mod llama_python;
mod lora;
mod merge;
mod minilm;
mod mlp;
mod models;
mod peft_python;
mod qlora;
mod rnn_models;
mod scaler;
mod trainer;
mod transfer;
mod transformer_models;
