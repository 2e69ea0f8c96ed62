//! all-MiniLM-L6-v2 loaded into kiln's BERT encoder against the reference embedding.
//!
//! Reference (shared data README, from sentence-transformers): for "A man is eating food." the
//! ids are `[101, 1037, 2158, 2003, 5983, 2833, 1012, 102]` and the embedding starts
//! `0.0332416, 0.0044061, -0.0062769, 0.0483787, -0.1387023`.
//!
//! The model (90 MB) is not in the repository: the tests look in `$KILN_MINILM_DIR`, else in
//! `models/all-MiniLM-L6-v2/` under the project root (fill it with `scripts/fetch-minilm.sh`),
//! and skip loudly when the files are absent (`common::skip`: a failure under CI).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::assert_mentions;
use crate::common::minilm_dir;
use kiln::models::BertEncoder;
use kiln::models::pretrained::{SentenceEncoder, cosine, minilm_tokenizer};

const SENTENCE: &str = "A man is eating food.";
const IDS: [u32; 8] = [101, 1037, 2158, 2003, 5983, 2833, 1012, 102];
const PREFIX: [f32; 5] = [0.0332416, 0.0044061, -0.0062769, 0.0483787, -0.1387023];

/// One encoder shared by the tests (loading 22.7M parameters takes a while on lavapipe).
/// `None` (after [`crate::common::skip::skip`]ping `check`) without the model.
fn encoder(check: &str) -> Option<&'static SentenceEncoder> {
    static ENC: OnceLock<SentenceEncoder> = OnceLock::new();
    let dir = minilm_dir(check)?;
    Some(ENC.get_or_init(|| SentenceEncoder::from_hf_dir(&dir).expect("MiniLM loads")))
}

#[test]
fn embedded_vocab_gives_reference_ids() {
    assert_eq!(
        minilm_tokenizer().unwrap().encode_with_specials(SENTENCE),
        IDS
    );
}

#[test]
fn minilm_embedding_matches_reference() {
    let Some(enc) = encoder("MiniLM embedding vs the reference") else {
        return;
    };
    assert_eq!(
        enc.tokenize(SENTENCE),
        IDS,
        "token ids differ from Hugging Face's"
    );
    assert_eq!(enc.max_seq_length, 256);
    let e = &enc.embed(&[SENTENCE]).unwrap()[0];
    assert_eq!(e.len(), 384);
    let norm: f32 = e.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    let cos = cosine(&e[..5], &PREFIX);
    println!("kiln first 5: {:?}", &e[..5]);
    println!("reference:    {PREFIX:?}");
    println!("cosine of the 5-value prefixes: {cos:.7}");
    for (i, (a, b)) in e.iter().zip(PREFIX).enumerate() {
        assert!((a - b).abs() < 1e-4, "value {i}: kiln {a}, reference {b}");
    }
    assert!(cos >= 0.9999, "cosine {cos}");
}

#[test]
fn minilm_similarity_ranks_sentences() {
    let Some(enc) = encoder("MiniLM similarity ranking") else {
        return;
    };
    let s = [
        SENTENCE,
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
    ];
    let e = enc.embed(&s).unwrap();
    let (near, far) = (cosine(&e[0], &e[1]), cosine(&e[0], &e[2]));
    println!("cos(food, bread) = {near:.4}, cos(food, horse) = {far:.4}");
    assert!(near > far + 0.1, "bread {near} should beat horse {far}");
    // Padding is masked: the first sentence embeds the same alone and in this batch.
    let alone = &enc.embed(&[SENTENCE]).unwrap()[0];
    assert!(
        cosine(alone, &e[0]) > 0.99999,
        "padding changed the embedding"
    );
}

#[test]
fn missing_model_dir_is_a_clear_error() {
    let dir = std::env::temp_dir().join("kiln-no-such-minilm");
    let e = BertEncoder::from_hf_dir(&dir).unwrap_err().to_string();
    assert_mentions(&e, &["config.json", "fetch-minilm"]);
    let e = SentenceEncoder::from_hf_dir(&dir).unwrap_err().to_string();
    assert!(e.contains("fetch-minilm"), "{e}");
}

const TINY_CONFIG: &str = r#"{"architectures": ["BertModel"], "hidden_act": "gelu",
  "hidden_size": 8, "intermediate_size": 16, "layer_norm_eps": 1e-12,
  "max_position_embeddings": 8, "model_type": "bert", "num_attention_heads": 2,
  "num_hidden_layers": 1, "type_vocab_size": 2, "vocab_size": 20}"#;

/// A Hugging Face-style directory for a tiny random BERT: tensors renamed by `rename`, plus a
/// `pooler.dense.weight` and an int64 `embeddings.position_ids`, as real checkpoints have.
fn tiny_hf_dir(
    name: &str,
    enc: &BertEncoder,
    rename: impl Fn(&str) -> String,
    drop: Option<&str>,
) -> PathBuf {
    use kiln::nn::Module;
    use safetensors::{Dtype, tensor::TensorView};
    let dir = std::env::temp_dir().join(format!("kiln-tiny-bert-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), TINY_CONFIG).unwrap();
    let mut host: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = enc
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| Some(n.as_str()) != drop)
        .map(|(n, t)| {
            let bytes = bytemuck::cast_slice(&t.to_vec::<f32>().unwrap()).to_vec();
            (rename(&n), Dtype::F32, t.shape().to_vec(), bytes)
        })
        .collect();
    host.push((
        "pooler.dense.weight".into(),
        Dtype::F32,
        vec![8, 8],
        vec![0; 256],
    ));
    let pos: Vec<i64> = (0..8).collect();
    host.push((
        rename("embeddings.position_ids"),
        Dtype::I64,
        vec![1, 8],
        bytemuck::cast_slice(&pos).to_vec(),
    ));
    let views: Vec<(String, TensorView)> = host
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir
}

#[test]
fn tiny_hf_checkpoint_round_trips_with_prefix_and_extras() {
    use kiln::Tensor;
    use kiln::nn::Module;
    let cfg = kiln::models::pretrained::read_bert_config(&{
        let d = std::env::temp_dir().join(format!("kiln-tiny-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), TINY_CONFIG).unwrap();
        d.join("config.json")
    })
    .unwrap();
    assert_eq!((cfg.hidden_size, cfg.num_attention_heads), (8, 2));
    let mut enc = BertEncoder::new(cfg).unwrap();
    enc.set_training(false);
    let ids = Tensor::from_slice(&[3u32, 4, 5, 6, 7, 0], &[2, 3]).unwrap();
    let mask = Tensor::from_slice(&[1u32, 1, 1, 1, 1, 0], &[2, 3]).unwrap();
    let want = enc
        .forward_with(&ids, None, Some(&mask))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (case, prefix) in [("plain", ""), ("prefixed", "bert.")] {
        let dir = tiny_hf_dir(case, &enc, |n| format!("{prefix}{n}"), None);
        let loaded = BertEncoder::from_hf_dir(&dir).unwrap();
        assert!(!loaded.is_training());
        let got = loaded
            .forward_with(&ids, None, Some(&mask))
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want, "{case}: loaded encoder differs");
    }
    // A missing and a renamed tensor: one error naming both.
    let dir = tiny_hf_dir(
        "broken",
        &enc,
        |n| n.replace("attention.self.key", "attention.self.kee"),
        Some("embeddings.LayerNorm.bias"),
    );
    let e = BertEncoder::from_hf_dir(&dir).unwrap_err().to_string();
    for name in [
        "missing",
        "embeddings.LayerNorm.bias",
        "encoder.layer.0.attention.self.key.weight",
        "unexpected",
        "encoder.layer.0.attention.self.kee.weight",
    ] {
        assert!(e.contains(name), "{name} not in: {e}");
    }
}

#[test]
fn embed_cli_reports_a_missing_model_and_prints_embeddings() {
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let out = std::process::Command::new(kiln)
        .args(["embed", "--model", "/no/such/minilm", "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&err, &["/no/such/minilm", "fetch-minilm"]);
    let Some(dir) = minilm_dir("kiln embed on MiniLM") else {
        return;
    };
    let out = std::process::Command::new(kiln)
        .args(["embed", "--model"])
        .arg(&dir)
        .args([SENTENCE, "A man is riding a horse.", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e: Vec<f32> = serde_json::from_value(v["sentences"][0]["embedding"].clone()).unwrap();
    assert_eq!(e.len(), 384);
    assert!(cosine(&e[..5], &PREFIX) >= 0.9999);
    assert_eq!(v["sentences"][0]["ids"], serde_json::json!(IDS));
    assert_eq!(
        v["cosine"][0][0].as_f64().map(|c| (c - 1.0).abs() < 1e-5),
        Some(true)
    );
}
