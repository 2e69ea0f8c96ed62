//! Data preparation on the host: CSV, IDX, chat JSONL, text and tokenizers, image folders.
//!
//! One test binary per theme (fewer links, smaller target/); each module was a test file.

#[path = "../common/cli.rs"]
mod cli_util;
#[path = "../common/mod.rs"]
mod common;

mod chat;
mod data;
mod hf_tokenizers;
mod images;
mod text;
mod tokenizer;
mod wordpiece;
