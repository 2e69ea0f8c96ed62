//! The Shakespeare genre data (comedy vs tragedy) and the BERT sequence classifier in its three
//! fine-tuning modes.
//!
//! The data tests and the tiny-BERT tests always run. The MiniLM test needs all-MiniLM-L6-v2
//! (`$KILN_MINILM_DIR`, else `models/all-MiniLM-L6-v2/`, filled by `scripts/fetch-minilm.sh`)
//! and skips with a message saying so when the files are absent.

use crate::common;
use crate::common::assert_mentions;

use std::sync::Arc;

use kiln::Tensor;
use kiln::data::Dataset;
use kiln::data::shakespeare_genre::{
    self as genre, COMEDY, GenreLine, GenreSplit, TEST_PLAYS, TRAGEDY,
};
use kiln::data::token_rows::TokenRows;
use kiln::models::bert_classifier::{
    BertClassifier, FineTuneMode, PAD_ID, TextBatch, encode_batch, encode_ids,
};
use kiln::models::pretrained::load_wordpiece;
use kiln::models::{BertConfig, BertEncoder};
use kiln::nn::lora::{self, LoraConfig};
use kiln::nn::{Module, manual_seed};
use kiln::optim::{Adam, AdamConfig};
use kiln::train::{Progress, Supervised, Task, TrainConfig, Trainer};

#[test]
fn tsv_parses_and_reports_bad_lines() {
    let rows = genre::parse_genre_tsv(
        "comedy\ttwelfth_night\tIf music be the food of love, play on;\n\n\
         tragedy\thamlet\tTo be, or not to be, that is the question:\n",
        "t.tsv",
    )
    .unwrap();
    assert_eq!(
        rows,
        [
            GenreLine {
                label: COMEDY,
                play: "twelfth_night".into(),
                text: "If music be the food of love, play on;".into()
            },
            GenreLine {
                label: TRAGEDY,
                play: "hamlet".into(),
                text: "To be, or not to be, that is the question:".into()
            }
        ]
    );
    let e = genre::parse_genre_tsv("comedy\ta\tline one two\nhistory\tb\tline\n", "t.tsv")
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["line 2", "history"]);
    let e = genre::parse_genre_tsv("comedy\tonly two fields\n", "t.tsv")
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["line 1", "3 tab-separated"]);
}

#[test]
fn embedded_data_is_split_by_play_with_known_genres() {
    let lines = genre::genre_lines().unwrap();
    let plays = GenreSplit::plays(&lines);
    assert_eq!(plays.len(), 20);
    for p in &plays {
        assert_eq!(lines.iter().filter(|l| l.play == *p).count(), 300, "{p}");
    }
    // Genres everyone knows.
    for (play, label) in [
        ("hamlet", TRAGEDY),
        ("macbeth", TRAGEDY),
        ("othello", TRAGEDY),
        ("lear", TRAGEDY),
        ("romeo_and_juliet", TRAGEDY),
        ("twelfth_night", COMEDY),
        ("much_ado_about_nothing", COMEDY),
        ("midsummer_nights_dream", COMEDY),
        ("comedy_of_errors", COMEDY),
    ] {
        assert!(
            lines
                .iter()
                .filter(|l| l.play == play)
                .all(|l| l.label == label),
            "{play}"
        );
    }
    assert_eq!(lines.iter().filter(|l| l.label == COMEDY).count(), 3000);
    // Spoken lines only: 6+ words, no stage direction brackets, no bare speaker names.
    for l in &lines {
        assert!(l.text.split_whitespace().count() >= 6, "{l:?}");
        assert!(!l.text.contains(['[', ']', '\t']), "{l:?}");
        assert_ne!(l.text.to_uppercase(), l.text, "speaker-like line {l:?}");
    }
    // Known lines land in their play.
    assert!(
        lines
            .iter()
            .any(|l| l.play == "macbeth" && l.text.contains("Birnam"))
    );

    let split = genre::split_by_play(&lines, &TEST_PLAYS).unwrap();
    let (train_plays, test_plays) = (
        GenreSplit::plays(&split.train),
        GenreSplit::plays(&split.test),
    );
    assert!(train_plays.iter().all(|p| !test_plays.contains(p)));
    let mut want = TEST_PLAYS.to_vec();
    want.sort_unstable();
    assert_eq!(test_plays, want);
    assert_eq!(train_plays.len(), 16);
    assert_eq!(split.train.len() + split.test.len(), lines.len());
    // Both genres on both sides.
    for side in [&split.train, &split.test] {
        assert_eq!(
            side.iter().filter(|l| l.label == COMEDY).count() * 2,
            side.len()
        );
    }
    let e = genre::split_by_play(&lines, &["hamlett"]).unwrap_err();
    assert!(e.to_string().contains("hamlett"), "{e}");

    let s = genre::sample_balanced(&split.train, 64, 3);
    assert_eq!(s.len(), 64);
    assert_eq!(s.iter().filter(|l| l.label == COMEDY).count(), 32);
    assert_eq!(s, genre::sample_balanced(&split.train, 64, 3));
    assert_ne!(s, genre::sample_balanced(&split.train, 64, 4));
    assert!((genre::majority_baseline(&s, &split.test) - 0.5).abs() < 1e-12);
}

/// A 1-layer BERT of width 64 (NF4 blocks are 64 wide), vocabulary 40, no dropout.
fn tiny_classifier() -> BertClassifier {
    manual_seed(11);
    let cfg = BertConfig {
        vocab_size: 40,
        hidden_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        intermediate_size: 128,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.0,
    };
    BertClassifier::new(BertEncoder::new(cfg).unwrap(), 2).unwrap()
}

/// 8 rows of random ids 1..40 with some padding (id 0, `[PAD]`, masked); label 1 when the row
/// holds an id below 10.
fn tiny_batch() -> TextBatch {
    let (b, t) = (8, 6);
    let mut ids = common::rand_indices(b * t, common::seed("genre tiny"), 39);
    let mut mask = vec![1u32; b * t];
    for r in 0..b {
        for c in t - r % 3..t {
            mask[r * t + c] = 0;
        }
    }
    for (id, m) in ids.iter_mut().zip(&mask) {
        *id = if *m == 1 { *id + 1 } else { PAD_ID };
    }
    let labels: Vec<u32> = (0..b)
        .map(|r| u32::from((0..t).any(|c| mask[r * t + c] == 1 && ids[r * t + c] < 10)))
        .collect();
    TextBatch {
        ids: Tensor::from_slice(&ids, &[b, t]).unwrap(),
        mask: Tensor::from_slice(&mask, &[b, t]).unwrap(),
        labels: Some(Tensor::from_slice(&labels, &[b]).unwrap()),
    }
}

/// The rows of a padded batch without their padding, as a dataset.
fn rows_of(batch: &TextBatch) -> Arc<dyn Dataset> {
    let (b, t) = (batch.ids.shape()[0], batch.ids.shape()[1]);
    let ids = batch.ids.to_vec::<u32>().unwrap();
    let mask = batch.mask.to_vec::<u32>().unwrap();
    let labels = batch.labels.as_ref().unwrap().to_vec::<u32>().unwrap();
    let rows = (0..b)
        .map(|r| {
            (0..t)
                .filter(|&c| mask[r * t + c] == 1)
                .map(|c| ids[r * t + c])
                .collect()
        })
        .collect();
    Arc::new(TokenRows::new(rows, labels, 2, PAD_ID).unwrap())
}

/// `steps` optimizer steps through the one trainer on `data`, `batch` rows a step.
fn train_steps(
    clf: &mut BertClassifier,
    data: Arc<dyn Dataset>,
    batch: usize,
    lr: f32,
    steps: u64,
) {
    let mut opt = Adam::new(clf.trainable_parameters(), AdamConfig::adamw(lr)).unwrap();
    let per_epoch = data.len().div_ceil(batch) as u64;
    let config = TrainConfig {
        epochs: steps.div_ceil(per_epoch) as usize,
        batch_size: batch,
        lr,
        optimizer: "adamw".into(),
        max_steps: Some(steps),
        quiet: true,
        restore_best: false,
        ..TrainConfig::default()
    };
    let dir = std::env::temp_dir().join(format!(
        "kiln-genre-{}-{lr}-{steps}-{}",
        std::process::id(),
        data.len()
    ));
    let task = Task::Classification {
        class_names: vec!["comedy".into(), "tragedy".into()],
    };
    let gpu = clf.gpu().clone();
    let mut objective = Supervised::new(&gpu, task);
    let mut trainer = Trainer::new(&gpu, config, data, &dir);
    let report = trainer
        .fit(clf, &mut opt, &mut objective, Progress::default())
        .unwrap();
    assert_eq!(report.progress.step, steps);
}

/// Train `steps` steps on one batch; the loss in eval mode before and after.
fn fit(clf: &mut BertClassifier, batch: &TextBatch, lr: f32, steps: usize) -> (f32, f32) {
    let before = {
        let _g = kiln::no_grad();
        clf.loss(batch).unwrap().item().unwrap()
    };
    train_steps(clf, rows_of(batch), 8, lr, steps as u64);
    let _g = kiln::no_grad();
    (before, clf.loss(batch).unwrap().item().unwrap())
}

/// `Module::forward` masks `[PAD]` itself: the logits of padded rows equal the explicit mask's.
#[test]
fn forward_masks_pad_ids_like_the_explicit_mask() {
    let clf = tiny_classifier();
    let batch = tiny_batch();
    let _g = kiln::no_grad();
    let a = clf
        .logits(&batch.ids, &batch.mask)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = clf.forward(&batch.ids).unwrap().to_vec::<f32>().unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn tiny_bert_modes_train_the_right_parameters() {
    let batch = tiny_batch();
    let cfg = LoraConfig::new(4, 8.0, &["query", "value"]);
    // Adapters on query and value: 2 x r (in + out); the head 2 x 64 + 2.
    let lora_count = 2 * 4 * (64 + 64) + 2 * 64 + 2;
    for mode in FineTuneMode::ALL {
        let mut clf = tiny_classifier();
        let total = clf.num_parameters();
        let prepared = clf.prepare(mode, &cfg).unwrap();
        assert_eq!(prepared.base_parameters, total);
        let names: Vec<String> = clf
            .trainable_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        match mode {
            FineTuneMode::Full => {
                assert_eq!(clf.num_trainable_parameters(), total);
                assert!(prepared.adapted.is_empty() && prepared.quantized.is_none());
            }
            FineTuneMode::Lora | FineTuneMode::QLora => {
                assert_eq!(clf.num_trainable_parameters(), lora_count, "{mode:?}");
                assert!(
                    names
                        .iter()
                        .all(|n| lora::is_lora_name(n) || n.starts_with("classifier.")),
                    "{names:?}"
                );
                assert_eq!(
                    prepared.adapted,
                    [
                        "bert.encoder.layer.0.attention.self.query",
                        "bert.encoder.layer.0.attention.self.value"
                    ]
                );
            }
        }
        if mode == FineTuneMode::QLora {
            // Every encoder Linear is NF4 (6 per layer), the head is not.
            let q = prepared.quantized.as_ref().unwrap();
            assert_eq!(q.layers.len(), 6);
            assert!(q.ratio() < 0.14, "{}", q.ratio());
            let mut quantized = Vec::new();
            clf.visit_linears_mut("", &mut |n, l| {
                if l.is_quantized() {
                    quantized.push(n.to_string())
                }
            });
            assert_eq!(quantized.len(), 6);
            assert!(!quantized.iter().any(|n| n.starts_with("classifier")));
        }
        let (before, after) = fit(&mut clf, &batch, 1e-2, 8);
        assert!(
            after < 0.8 * before,
            "{mode:?}: loss {before} -> {after} after 8 steps"
        );
    }
}

#[test]
fn minilm_lora_trains_only_adapters_and_head() {
    let Some(dir) = common::minilm_dir("MiniLM LoRA fine-tune") else {
        return;
    };
    let gpu = kiln::device().unwrap();
    let tok = load_wordpiece(&dir).unwrap();
    manual_seed(5);
    let mut clf = BertClassifier::new(BertEncoder::from_hf_dir_on(&gpu, &dir).unwrap(), 2).unwrap();
    let total = clf.num_parameters();
    assert_eq!(total, 22_565_376 + 2 * 384 + 2); // MiniLM without its pooler, and the head
    let cfg = LoraConfig::new(4, 8.0, &["query", "value"]);
    let prepared = clf.prepare(FineTuneMode::Lora, &cfg).unwrap();
    assert_eq!(prepared.adapted.len(), 12);
    // 6 layers x 2 projections x r (384 + 384), and the head.
    assert_eq!(clf.num_trainable_parameters(), 6 * 2 * 4 * 768 + 770);
    assert_eq!(clf.num_parameters(), total + 6 * 2 * 4 * 768);
    assert!(
        clf.trainable_parameters()
            .iter()
            .all(|(n, _)| lora::is_lora_name(n) || n.starts_with("classifier."))
    );

    // 64 lines of the training plays, 32 a batch, cut to 10 tokens: three steps must lower the
    // loss on them.
    let split = genre::split_by_play(&genre::genre_lines().unwrap(), &TEST_PLAYS).unwrap();
    let lines = genre::sample_balanced(&split.train, 64, 7);
    let batches: Vec<TextBatch> = lines
        .chunks(32)
        .map(|c| {
            let texts: Vec<&str> = c.iter().map(|l| l.text.as_str()).collect();
            let labels: Vec<u32> = c.iter().map(|l| l.label).collect();
            encode_batch(&gpu, &tok, &texts, 10, Some(&labels)).unwrap()
        })
        .collect();
    assert_eq!(batches[0].ids.shape(), [32, 10]);
    clf.set_training(false); // no dropout: the comparison is deterministic
    let loss = |clf: &BertClassifier| -> f32 {
        let _g = kiln::no_grad();
        batches
            .iter()
            .map(|b| clf.loss(b).unwrap().item().unwrap())
            .sum::<f32>()
            / 2.0
    };
    let before = loss(&clf);
    let rows: Vec<Vec<u32>> = lines
        .iter()
        .map(|l| encode_ids(&tok, &l.text, 10))
        .collect();
    let labels: Vec<u32> = lines.iter().map(|l| l.label).collect();
    let data: Arc<dyn Dataset> = Arc::new(TokenRows::new(rows, labels, 2, PAD_ID).unwrap());
    train_steps(&mut clf, data, 32, 5e-3, 3);
    clf.set_training(false);
    let after = loss(&clf);
    assert!(after < before - 0.02, "loss {before} -> {after}");
}
