//! WordPiece (BERT) against Hugging Face `tokenizers`.
//!
//! Reference ids: Hugging Face `tokenizers` 0.23.3 with all-MiniLM-L6-v2's `tokenizer.json`
//! (padding and truncation off; its post-processor adds `[CLS]` = 101 and `[SEP]` = 102), on the
//! same `vocab.txt` kiln ships in `data/tokenizers/minilm/`. The first sentence's ids are also
//! given in the shared data README.

use crate::common::assert_mentions;
use std::path::{Path, PathBuf};

use kiln::data::tokenizer::{Tokenizer, WordPieceTokenizer, load_tokenizer, tokenizer_from_json};

fn vocab_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tokenizers/minilm/vocab.txt.gz")
}

fn minilm() -> WordPieceTokenizer {
    WordPieceTokenizer::load_vocab_txt(&vocab_path(), true).expect("vocab.txt loads")
}

/// (text, ids with [CLS]/[SEP], Hugging Face's decode of those ids)
const CASES: &[(&str, &[u32], &str)] = &[
    (
        "A man is eating food.",
        &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
        "[CLS] a man is eating food. [SEP]",
    ),
    (
        "Héllo, Wörld! naïve CAFÉ déjà-vu",
        &[
            101, 7592, 1010, 2088, 999, 15743, 7668, 2139, 3900, 1011, 24728, 102,
        ],
        "[CLS] hello, world! naive cafe deja - vu [SEP]",
    ),
    (
        "日本語のテキスト and 中文",
        &[
            101, 1864, 1876, 1950, 1671, 30239, 30227, 30233, 30240, 1998, 1746, 1861, 102,
        ],
        "[CLS] 日 本 語 のテキスト and 中 文 [SEP]",
    ),
    (
        "unaffable tokenization of supercalifragilisticexpialidocious",
        &[
            101, 14477, 20961, 3468, 19204, 3989, 1997, 3565, 9289, 10128, 29181, 24411, 4588,
            10288, 19312, 21273, 10085, 6313, 102,
        ],
        "[CLS] unaffable tokenization of supercalifragilisticexpialidocious [SEP]",
    ),
    (
        "It's [MASK] o'clock; e-mail: a@b.com (test) $5,000\t\n tabs",
        &[
            101, 2009, 1005, 1055, 103, 1051, 1005, 5119, 1025, 1041, 1011, 5653, 1024, 1037, 1030,
            1038, 1012, 4012, 1006, 3231, 1007, 1002, 1019, 1010, 2199, 21628, 2015, 102,
        ],
        "[CLS] it ' s [MASK] o ' clock ; e - mail : a @ b. com ( test ) $ 5, 000 tabs [SEP]",
    ),
    (
        "\u{0}ctrl\u{200b}zero\u{a0}nbsp \u{1F980} crab",
        &[
            101, 14931, 12190, 6290, 2080, 1050, 5910, 2361, 100, 18081, 102,
        ],
        "[CLS] ctrlzero nbsp [UNK] crab [SEP]",
    ),
    ("", &[101, 102], "[CLS] [SEP]"),
];

#[test]
fn minilm_ids_match_hugging_face() {
    let t = minilm();
    assert_eq!(t.vocab_size(), 30522);
    for (text, ids, decoded) in CASES {
        assert_eq!(t.encode_with_specials(text), *ids, "ids of {text:?}");
        assert_eq!(t.encode(text), ids[1..ids.len() - 1], "ids of {text:?}");
        assert_eq!(t.decode(ids).unwrap(), *decoded, "decode of {text:?}");
    }
    // A word over 100 characters is one [UNK].
    assert_eq!(t.encode(&"x".repeat(101)), vec![100]);
    let long = t.encode(&"x".repeat(100)); // Hugging Face: 50 pieces, 22038 then 20348s
    assert_eq!((long.len(), &long[..3]), (50, &[22038, 20348, 20348][..]));
    assert_eq!(t.eos_id(), Some(102));
    assert_eq!(t.unk_id(), 100);
}

#[test]
fn normalised_text_round_trips() {
    let t = minilm();
    for text in [
        "hello world",
        "the quick brown fox jumps over the lazy dog.",
        "",
    ] {
        assert_eq!(t.decode(&t.encode(text)).unwrap(), text);
    }
    assert_eq!(t.normalize("Ça\u{0}  VA\t"), "ca  va ");
}

/// A Hugging Face tokenizer.json for the same vocabulary, built here with serde_json.
fn hf_json() -> String {
    let bytes = kiln::data::read_maybe_gz(&vocab_path()).unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, t)| (t.to_string(), serde_json::json!(i)))
        .collect();
    serde_json::json!({
        "version": "1.0",
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

#[test]
fn hf_json_and_saved_json_load_the_same_tokenizer() {
    let t = minilm();
    let from_json = tokenizer_from_json(&hf_json(), "minilm tokenizer.json").unwrap();
    assert_eq!(from_json.kind(), "wordpiece");
    let dir = std::env::temp_dir().join(format!("kiln-wordpiece-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    t.save(&path).unwrap();
    let saved = load_tokenizer(&path).unwrap();
    for (text, ids, _) in CASES {
        assert_eq!(from_json.encode(text), ids[1..ids.len() - 1], "{text:?}");
        assert_eq!(saved.encode(text), ids[1..ids.len() - 1], "{text:?}");
    }
    assert_eq!(saved.vocab_size(), 30522);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cased_vocabularies_keep_case_and_accents() {
    let t = WordPieceTokenizer::from_vocab_txt("[UNK]\nCafé\nca\n##fe\n!", false).unwrap();
    assert_eq!(t.encode("Café!"), vec![1, 4]);
    assert_eq!(t.encode("cafe"), vec![2, 3]);
    assert_eq!(t.encode("CAFE"), vec![0]);
}

#[test]
fn errors_are_clear() {
    let e = WordPieceTokenizer::from_vocab_txt("a\nb", true)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["[UNK]", "not in the vocabulary"]);
    let e = minilm().decode(&[101, 40000]).unwrap_err().to_string();
    assert_mentions(&e, &["id 40000", "position 1"]);
    let e = WordPieceTokenizer::load_vocab_txt(Path::new("/nonexistent/vocab.txt"), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/vocab.txt"), "{e}");
}
