//! Fuzzing on a stable toolchain: one test per parser or loader, each replaying its seeds
//! (today's malformed cases and `tests/fuzz/corpus/<target>/`) and then mutating them for
//! `KILN_FUZZ_SECS` seconds (default 2). See `tests/fuzz/engine.rs` for the oracles.
//!
//! Long run (each target 10 minutes, executions per target printed):
//! `KILN_FUZZ_SECS=600 cargo test --test fuzz -- --nocapture --test-threads 1`

#[path = "fuzz/cli.rs"]
mod cli;
#[path = "fuzz/config.rs"]
mod config;
#[path = "fuzz/data.rs"]
mod data;
#[path = "fuzz/engine.rs"]
mod engine;
#[path = "fuzz/files.rs"]
mod files;

#[test]
fn fuzz_csv() {
    engine::run(data::csv());
}

#[test]
fn fuzz_chat_jsonl() {
    engine::run(data::chat());
}

#[test]
fn fuzz_idx() {
    engine::run(data::idx());
}

#[test]
fn fuzz_tokenizer() {
    engine::run(data::tokenizer());
}

#[test]
fn fuzz_toml_config() {
    engine::run(config::toml());
}

#[test]
fn fuzz_safetensors() {
    engine::run(files::safetensors());
}

#[test]
fn fuzz_image() {
    engine::run(files::image());
}

#[test]
fn fuzz_cli() {
    engine::run(cli::cli());
}
