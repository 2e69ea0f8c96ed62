//! The `kiln` binary's subcommands, one file each.

mod bench;
mod chat;
mod chat_data;
mod chat_model;
mod cluster;
mod cluster_plot;
mod data_parallel;
mod devices;
mod diagnose;
mod diagnostics_args;
mod distributed;
mod embed;
mod eval;
mod explain;
mod explain_graph;
mod explain_table;
mod explosion;
mod export;
mod finetune;
mod generate;
mod grad_checkpoint;
mod info;
mod logits;
mod loop_args;
mod lr_find;
mod memory_args;
mod merge;
mod outliers;
mod pca;
mod predict;
mod progress;
mod resume;
mod rules;
mod saved;
pub mod semi;
pub mod spec;
mod sweep;
mod sweep_plan;
mod sweep_report;
pub mod text_data;
mod trace;
mod trace_view;
mod train;
mod train_summary;
mod tune;

use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::Gpu;

/// kiln: train neural networks on any GPU (Vulkan, Metal, DX12, OpenGL).
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (default: an MLP on the built-in digits) and test it.
    Train(Box<train::TrainArgs>),
    /// Evaluate a saved model on its test split or another labelled CSV file.
    Eval(eval::EvalArgs),
    /// Run one training step (same flags as train) and list every GPU dispatch it made:
    /// phase, op, shapes, kernel and WGSL line, tuner choice, FLOPs, bytes, time.
    Explain(Box<explain::ExplainArgs>),
    /// Say what went wrong in a training run (overfitting, learning rate, gradients, data),
    /// with the evidence.
    Diagnose(diagnose::DiagnoseArgs),
    /// The learning-rate range test: loss against an exponentially growing lr, and a suggestion.
    LrFind(lr_find::LrFindArgs),
    /// Continue a prompt with a trained language model (gpt, lstm, gru, rnn), printing as it goes.
    Generate(generate::GenerateArgs),
    /// Predict new rows from a CSV file with a saved model.
    Predict(predict::PredictArgs),
    /// List the GPU adapters kiln can use, with backend, type, limits and features.
    Devices,
    /// Show what a checkpoint holds: tensors, shapes, parameter count, training settings.
    Info(info::InfoArgs),
    /// Tune the matmul, conv and attention kernels for a model's shapes on this adapter and
    /// cache the choices.
    TuneKernels(tune::TuneArgs),
    /// Benchmark kernels and training steps on one adapter against its measured ceilings.
    Bench(bench::BenchArgs),
    /// Sentence embeddings (and their cosine similarities) from a pretrained BERT such as MiniLM.
    Embed(embed::EmbedArgs),
    /// Fine-tune a GPT on chat data with LoRA or QLoRA adapters (PEFT layout).
    Finetune(Box<finetune::FinetuneArgs>),
    /// Chat with a GPT (and a LoRA adapter) line by line on stdin.
    Chat(chat::ChatArgs),
    /// Fold a LoRA adapter (PEFT layout) into a checkpoint and write a plain merged one.
    Merge(merge::MergeArgs),
    /// A language model's logits for token ids (Hugging Face directory or kiln run), for
    /// comparing engines number for number.
    Logits(logits::LogitsArgs),
    /// Write a kiln GPT run as a Hugging Face model directory (GPT-2 layout).
    Export(export::ExportArgs),
    /// Hyperparameter search (grid, random, successive halving) over `kiln train` runs.
    Sweep(sweep::SweepArgs),
    /// Cluster the rows of a CSV file (k-means or DBSCAN on the GPU), or compare k with --k A..B.
    Cluster(Box<cluster::ClusterArgs>),
    /// Principal components of the rows of a CSV file: projected rows and explained variance.
    Pca(pca::PcaArgs),
    /// Frequent itemsets (Apriori, support counts on the GPU) and association rules from baskets or a CSV table.
    Rules(Box<rules::RulesArgs>),
    /// Score the rows of a CSV file as outliers (Isolation Forest, LOF, Mahalanobis, autoencoder).
    Outliers(Box<outliers::OutliersArgs>),
    /// Draw the timeline of a `kiln train --trace` file (host phases, GPU dispatches, memory)
    /// as a PNG.
    TraceView(trace_view::TraceViewArgs),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Explain(a) => explain::run(*a),
        Command::Diagnose(a) => diagnose::run(a),
        Command::LrFind(a) => lr_find::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Devices => devices::run(),
        Command::Info(a) => info::run(a),
        Command::TuneKernels(a) => tune::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Finetune(a) => finetune::run(*a),
        Command::Chat(a) => chat::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Export(a) => export::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Cluster(a) => cluster::run(*a),
        Command::Pca(a) => pca::run(a),
        Command::Rules(a) => rules::run(*a),
        Command::Outliers(a) => outliers::run(*a),
        Command::TraceView(a) => trace_view::run(a),
    }
}

/// The device `--device` names, or the default one.
pub fn open_device(selector: Option<&str>) -> Result<Arc<Gpu>> {
    Ok(match selector {
        Some(s) => Gpu::with_selector(Some(s))?,
        None => crate::device()?,
    })
}

/// `--device`, flattened into every command that opens a GPU.
#[derive(Debug, clap::Args, Default, Clone)]
pub struct DeviceArg {
    /// GPU adapter (index or name substring, as listed by `kiln devices`).
    #[arg(long)]
    pub device: Option<String>,
}

impl DeviceArg {
    /// The adapter `--device` names, or the default one.
    pub fn open(&self) -> Result<Arc<Gpu>> {
        open_device(self.device.as_deref())
    }
}

/// A CLI error: one paragraph naming what was wrong and where.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

/// CLI result.
pub type Result<T> = std::result::Result<T, Error>;
