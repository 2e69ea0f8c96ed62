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

/// One `#[test]` per target: `name => constructor`.
macro_rules! targets {
    ($($name:ident => $target:path),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                engine::run($target());
            }
        )*
    };
}

targets! {
    fuzz_csv => data::csv,
    fuzz_chat_jsonl => data::chat,
    fuzz_idx => data::idx,
    fuzz_tokenizer => data::tokenizer,
    fuzz_toml_config => config::toml,
    fuzz_safetensors => files::safetensors,
    fuzz_image => files::image,
    fuzz_cli => cli::cli,
}
