//! Comedy or tragedy? all-MiniLM-L6-v2 fine-tuned three ways on lines of Shakespeare: full
//! fine-tuning, LoRA on a frozen encoder, and QLoRA (LoRA on NF4 base weights), compared in one
//! table (test accuracy, trainable and total parameters, peak GPU memory, time per epoch).
//!
//! ```text
//! scripts/fetch-minilm.sh        # once: puts the model in models/all-MiniLM-L6-v2
//! cargo run --release --example shakespeare_genre -- [--mode full|lora|qlora|all] [--train N]
//!     [--test N] [--epochs E] [--max-len T] [--batch B] [--seed S] [--model DIR]
//! ```
//!
//! Data: `kiln::data::shakespeare_genre` (spoken lines of 10 comedies and 10 tragedies). The
//! four plays of `TEST_PLAYS` are held out whole; `--train` lines (half of each genre) are drawn
//! from the other 16 plays and `--test` lines (half of each genre) from the held-out four. Every
//! mode sees the same lines in the same order, starts from the same head initialisation and
//! trains with AdamW for the same number of steps:
//!
//! ```text
//! full   every weight, lr 5e-5 (head 5e-3)
//! lora   r 8, alpha 16, dropout 0.1 on query, key, value, attention.output.dense; lr 2e-3
//!        (head 5e-3)
//! qlora  the same adapters over NF4 base weights of every encoder Linear (36 layers); same lr
//! ```
//!
//! Peak GPU memory is `Gpu::peak_bytes` after `reset_peak` just before training (so it counts
//! the model, gradients, optimizer state and activations of training, not the evaluation);
//! time per epoch is the training wall time divided by the epochs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kiln::Gpu;
use kiln::data::Dataset;
use kiln::data::shakespeare_genre::{self as genre, GenreLine};
use kiln::data::token_rows::TokenRows;
use kiln::data::tokenizer::WordPieceTokenizer;
use kiln::models::BertEncoder;
use kiln::models::bert_classifier::{
    BertClassifier, FineTuneMode, PAD_ID, TextBatch, encode_batch, encode_ids,
};
use kiln::models::pretrained::{MINILM_DEFAULT_DIR, MINILM_ENV, load_wordpiece};
use kiln::nn::lora::LoraConfig;
use kiln::nn::{Module, manual_seed};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln::train::log::EpochRecord;
use kiln::train::{OnEpoch, Progress, Supervised, Task, TrainConfig, Trainer};

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    modes: Vec<FineTuneMode>,
    train: usize,
    test: usize,
    epochs: usize,
    max_len: usize,
    batch: usize,
    seed: u64,
    model: PathBuf,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let model = std::env::var_os(MINILM_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(MINILM_DEFAULT_DIR));
        let mut a = Args {
            modes: FineTuneMode::ALL.to_vec(),
            train: 400,
            test: 200,
            epochs: 1,
            max_len: 32,
            batch: 8,
            seed: 6,
            model,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
            match flag.as_str() {
                "--mode" => {
                    let v = value()?;
                    a.modes = if v == "all" {
                        FineTuneMode::ALL.to_vec()
                    } else {
                        vec![FineTuneMode::parse(&v).map_err(|e| e.to_string())?]
                    };
                }
                "--train" => a.train = num(value()?)?,
                "--test" => a.test = num(value()?)?,
                "--epochs" => a.epochs = num(value()?)?,
                "--max-len" => a.max_len = num(value()?)?,
                "--batch" => a.batch = num(value()?)?,
                "--seed" => a.seed = num(value()?)? as u64,
                "--model" => a.model = PathBuf::from(value()?),
                "-h" | "--help" => {
                    return Err("usage: shakespeare_genre [--mode full|lora|qlora|all] \
                        [--train N] [--test N] [--epochs E] [--max-len T] [--batch B] \
                        [--seed S] [--model DIR]"
                        .into());
                }
                f => return Err(format!("unknown flag {f} (try --help)")),
            }
        }
        if a.train < 2 || a.test < 1 || a.epochs < 1 || a.batch < 1 || a.max_len < 3 {
            return Err("--train >= 2, --test, --epochs, --batch >= 1 and --max-len >= 3".into());
        }
        Ok(a)
    }
}

/// One row of the table.
struct Row {
    mode: FineTuneMode,
    accuracy: f64,
    trainable: usize,
    total: usize,
    peak_bytes: u64,
    secs_per_epoch: f64,
    losses: Vec<f32>,
}

/// Batches of `lines`, `batch` at a time. With `bucket`, lines are first sorted by token count
/// within runs of 8 batches (keeping the order of the runs), so a batch pads less: on a
/// software GPU the cost is the padded token count.
fn batches(
    gpu: &Arc<Gpu>,
    tok: &WordPieceTokenizer,
    lines: &[GenreLine],
    batch: usize,
    max_len: usize,
    bucket: bool,
) -> kiln::Result<Vec<(TextBatch, Vec<u32>)>> {
    let mut lines = lines.to_vec();
    if bucket {
        for run in lines.chunks_mut(8 * batch) {
            run.sort_by_cached_key(|l| tok.encode_with_specials(&l.text).len().min(max_len));
        }
    }
    lines
        .chunks(batch)
        .map(|c| {
            let texts: Vec<&str> = c.iter().map(|l| l.text.as_str()).collect();
            let labels: Vec<u32> = c.iter().map(|l| l.label).collect();
            Ok((
                encode_batch(gpu, tok, &texts, max_len, Some(&labels))?,
                labels,
            ))
        })
        .collect()
}

fn run(
    gpu: &Arc<Gpu>,
    a: &Args,
    mode: FineTuneMode,
    train: &[GenreLine],
    test: &[GenreLine],
) -> kiln::Result<Row> {
    let tok = load_wordpiece(&a.model)?;
    manual_seed(a.seed); // the same head initialisation and dropout stream in every mode
    let mut clf = BertClassifier::new(BertEncoder::from_hf_dir_on(gpu, &a.model)?, 2)?;
    let lora = LoraConfig {
        dropout: 0.1,
        task_type: Some("SEQ_CLS".into()),
        ..LoraConfig::new(
            8,
            16.0,
            &["query", "key", "value", "attention.output.dense"],
        )
    };
    let prepared = clf.prepare(mode, &lora)?;
    if let Some(q) = &prepared.quantized {
        eprintln!(
            "[{}] {} layers in NF4: {} bytes vs {} f32 bytes ({:.3} x), max rel error {:.4}",
            mode.name(),
            q.layers.len(),
            q.nf4_bytes(),
            q.f32_bytes(),
            q.ratio(),
            q.max_rel_error()
        );
    }
    let params = clf.trainable_parameters();
    let trainable: usize = params.iter().map(|(_, t)| t.numel()).sum();
    // The model as loaded plus the adapters (QLoRA's NF4 weights are no longer parameters).
    let adapters: usize = kiln::nn::lora::lora_parameters(&clf)
        .iter()
        .map(|(_, t)| t.numel())
        .sum();
    let total = prepared.base_parameters + adapters;
    let head: Vec<String> = params
        .iter()
        .filter(|(n, _)| n.starts_with("classifier."))
        .map(|(n, _)| n.clone())
        .collect();
    let (lr, head_lr) = match mode {
        FineTuneMode::Full => (5e-5, 5e-3),
        _ => (2e-3, 5e-3),
    };
    let mut opt = Adam::new(params, AdamConfig::adamw(lr))?;
    opt.set_lr_scale(&head, head_lr / lr)?;

    // The one training loop: token rows padded per batch (the classifier masks [PAD]).
    let rows = |lines: &[GenreLine]| -> kiln::Result<TokenRows> {
        let ids = lines
            .iter()
            .map(|l| encode_ids(&tok, &l.text, a.max_len))
            .collect();
        let labels = lines.iter().map(|l| l.label).collect();
        TokenRows::new(ids, labels, 2, PAD_ID).map_err(|e| kiln::Error::Config(e.to_string()))
    };
    let train_rows: Arc<dyn Dataset> = Arc::new(rows(train)?);
    let test_batches = batches(gpu, &tok, test, 32, a.max_len, true)?;
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch,
        lr,
        seed: a.seed,
        quiet: true,
        restore_best: false,
        ..TrainConfig::default()
    };
    let dir =
        std::env::temp_dir().join(format!("kiln-genre-{}-{}", mode.name(), std::process::id()));
    let mut losses = Vec::new();
    gpu.reset_peak();
    let t0 = Instant::now();
    {
        let name = mode.name();
        let mut trainer =
            Trainer::new(gpu, config, train_rows, &dir).hook(OnEpoch(|r: &EpochRecord| {
                losses.push(r.train_loss as f32);
                eprintln!(
                    "[{name}] epoch {} mean loss {:.4} ({:.1} s)",
                    r.epoch,
                    r.train_loss,
                    t0.elapsed().as_secs_f64()
                );
            }));
        let task = Task::Classification {
            class_names: vec!["comedy".into(), "tragedy".into()],
        };
        let mut objective = Supervised::new(gpu, task);
        trainer.fit(&mut clf, &mut opt, &mut objective, Progress::default())?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let secs_per_epoch = t0.elapsed().as_secs_f64() / a.epochs as f64;
    let peak_bytes = gpu.peak_bytes();
    clf.set_training(false);
    let mut correct = 0;
    for (b, labels) in &test_batches {
        let pred = clf.predict(b)?;
        correct += pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    }
    Ok(Row {
        mode,
        accuracy: correct as f64 / test.len() as f64,
        trainable,
        total,
        peak_bytes,
        secs_per_epoch,
        losses,
    })
}

fn main() {
    let a = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run_all(&a) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run_all(a: &Args) -> kiln::Result<()> {
    if !a.model.join("model.safetensors").is_file() {
        return Err(kiln::Error::Config(format!(
            "all-MiniLM-L6-v2 not found in {} (run scripts/fetch-minilm.sh, or pass --model DIR \
             / set {MINILM_ENV})",
            a.model.display()
        )));
    }
    let gpu = kiln::device()?;
    let split = genre::split_by_play(&genre::genre_lines()?, &genre::TEST_PLAYS)?;
    let train = genre::sample_balanced(&split.train, a.train, a.seed);
    let test = genre::sample_balanced(&split.test, a.test, a.seed);
    let mut rows = Vec::new();
    for &mode in &a.modes {
        rows.push(run(&gpu, a, mode, &train, &test)?);
    }
    println!(
        "Shakespeare comedy vs tragedy, all-MiniLM-L6-v2 + mean pooling + Linear head, on {}",
        gpu.info().name
    );
    println!(
        "train {} lines from 16 plays, test {} lines from 4 held-out plays ({}), max {} tokens, \
         batch {}, {} epochs, seed {}",
        train.len(),
        test.len(),
        genre::TEST_PLAYS.join(", "),
        a.max_len,
        a.batch,
        a.epochs,
        a.seed
    );
    println!(
        "majority-class baseline: {:.1} %",
        100.0 * genre::majority_baseline(&train, &test)
    );
    println!();
    println!(
        "| mode | test accuracy | trainable params | total params | peak GPU memory | time / epoch | train loss by epoch |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        let losses: Vec<String> = r.losses.iter().map(|l| format!("{l:.3}")).collect();
        println!(
            "| {} | {:.1} % | {} | {} | {:.1} MiB | {:.1} s | {} |",
            r.mode.name(),
            100.0 * r.accuracy,
            r.trainable,
            r.total,
            r.peak_bytes as f64 / (1024.0 * 1024.0),
            r.secs_per_epoch,
            losses.join(" → ")
        );
    }
    Ok(())
}
