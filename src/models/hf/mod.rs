//! Hugging Face model directories: one file per architecture.
//!
//! - `llama.rs`: `LlamaForCausalLM` as kiln's [`crate::models::Gpt`] with Llama options.

pub mod llama;
