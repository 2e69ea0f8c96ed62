//! `kiln embed`: sentence embeddings from a pretrained BERT encoder such as all-MiniLM-L6-v2
//! (see [`crate::models::pretrained`]).

use std::path::PathBuf;

use clap::Args;

use super::{Error, Result};
use crate::models::pretrained::{MINILM_DEFAULT_DIR, SentenceEncoder, cosine};

/// Flags of `kiln embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A Hugging Face model directory: config.json, model.safetensors and tokenizer.json or
    /// vocab.txt (scripts/fetch-minilm.sh puts all-MiniLM-L6-v2 in models/all-MiniLM-L6-v2).
    #[arg(long, default_value = MINILM_DEFAULT_DIR)]
    pub model: PathBuf,
    /// The sentences to embed.
    #[arg(required = true)]
    pub sentences: Vec<String>,
    /// Print JSON: every sentence with its token ids and full embedding, and the similarities.
    #[arg(long)]
    pub json: bool,
    /// `--device`.
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// Run `kiln embed`.
pub fn run(a: EmbedArgs) -> Result<()> {
    let gpu = a.device.open()?;
    let enc = SentenceEncoder::from_hf_dir_on(&gpu, &a.model)
        .map_err(|e| Error(format!("kiln embed: {e}")))?;
    let emb = enc.embed(&a.sentences)?;
    let sims: Vec<Vec<f32>> = emb
        .iter()
        .map(|x| emb.iter().map(|y| cosine(x, y)).collect())
        .collect();
    if a.json {
        let items: Vec<serde_json::Value> = a
            .sentences
            .iter()
            .zip(&emb)
            .map(
                |(s, e)| serde_json::json!({"sentence": s, "ids": enc.tokenize(s), "embedding": e}),
            )
            .collect();
        let out = serde_json::json!({"model": a.model.display().to_string(), "sentences": items,
            "cosine": sims});
        println!("{out}");
        return Ok(());
    }
    for (i, (s, e)) in a.sentences.iter().zip(&emb).enumerate() {
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        let head: Vec<String> = e.iter().take(5).map(|v| format!("{v:.7}")).collect();
        println!("[{i}] {s:?}");
        println!(
            "    dim {}, norm {norm:.6}, first values [{}, ...]",
            e.len(),
            head.join(", ")
        );
    }
    if emb.len() > 1 {
        println!("\ncosine similarity:");
        print!("     ");
        for j in 0..emb.len() {
            print!("{:>8}", format!("[{j}]"));
        }
        println!();
        for (i, row) in sims.iter().enumerate() {
            print!("{:>5}", format!("[{i}]"));
            for v in row {
                print!("{v:>8.4}");
            }
            println!();
        }
    }
    Ok(())
}
