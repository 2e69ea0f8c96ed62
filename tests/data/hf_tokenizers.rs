//! kiln's tokenizers against Python's `tokenizers` on `tokenizer.json` files that Python
//! trains (`scripts/hf_tokenizers.py`): the sentencepiece-style BPE of Llama (Llama-2's
//! normalizer layout, `Metaspace` with prepend `first`, `Metaspace` with `split`) and GPT-2's
//! byte-level BPE. Ids (without the post-processor's `<s>`) and decoded text must be identical
//! on a varied corpus: unicode, emoji (byte fallback), whitespace runs, special and added
//! tokens inside text.
//!
//! Needs the Hugging Face stack of `common::python` (transformers brings `tokenizers`); without
//! it the test skips loudly (a failure under CI).

use crate::common;

use common::*;
use kiln::data::tokenizer::{SentencePieceBpe, load_tokenizer};

const CORPUS: &[&str] = &[
    "",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,   runs\n\n\tand tabs ",
    "trailing spaces   ",
    "naïve café 日本語 🦀 emoji 👩‍🔬 and 🇫🇷",
    "<s>Hello</s> world<s>",
    "text <s> with </s>specials<unk>inside",
    "<|user|>hi there<|user|> again <|user|>",
    "<|endoftext|>byte-level special<|endoftext|> inside",
    "Numbers 1234567 and 3.14159; dates 2024-12-08.",
    "def main():\n    print('hello')\n    return 0\n",
    "Les élèves étudient la théorie à l'université.",
    "\u{0}\u{7f} control bytes, \u{a0}no-break space \u{200b}zero width",
    "     ",
    "\n",
    "東京は大きい。ÆØÅ ß ẞ Ω ≈ ∑",
];

/// `scripts/hf_tokenizers.py args...`'s stdout.
fn python(py: &std::path::Path, args: &[&str]) -> String {
    common::python::run_stdout(py, "hf_tokenizers.py", args)
}

#[test]
fn ids_and_text_match_python_tokenizers() {
    let Some(py) = common::python::hf_python("tokenizer ids against Python's tokenizers") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kiln-hf-tok-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let texts = dir.join("texts.json");
    std::fs::write(&texts, serde_json::to_string(CORPUS).unwrap()).unwrap();
    for kind in ["legacy", "metaspace", "split", "bytelevel"] {
        let file = dir.join(format!("{kind}.json"));
        let f = file.to_str().unwrap();
        python(&py, &["make", kind, f]);
        let want: serde_json::Value =
            serde_json::from_str(&python(&py, &["encode", f, texts.to_str().unwrap()])).unwrap();
        let tok = load_tokenizer(&file).unwrap();
        let expect_kind = if kind == "bytelevel" {
            "bpe"
        } else {
            "sentencepiece-bpe"
        };
        assert_eq!(tok.kind(), expect_kind);
        let mut fallback = 0;
        for (i, text) in CORPUS.iter().enumerate() {
            let ids: Vec<u32> = want["ids"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = tok.encode(text);
            assert_eq!(got, ids, "{kind}: ids of {text:?}");
            let decoded = tok.decode(&got).unwrap();
            assert_eq!(
                decoded,
                want["decoded"][i].as_str().unwrap(),
                "{kind}: decode of {text:?}"
            );
            fallback += ids.iter().filter(|&&id| (3..259).contains(&id)).count();
        }
        if kind != "bytelevel" {
            assert!(
                fallback > 10,
                "{kind}: the corpus should exercise byte fallback"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_parts_are_refused_naming_the_field() {
    let base = serde_json::json!({
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "byte_fallback": true, "dropout": null, "unk_token": "<unk>",
                  "vocab": {"<unk>": 0, "▁": 1, "a": 2, "▁a": 3}, "merges": ["▁ a"]}
    });
    let t = SentencePieceBpe::from_hf_json(&base.to_string(), "t.json").unwrap();
    use kiln::data::tokenizer::Tokenizer;
    assert_eq!(t.encode("a a"), [3, 3]);
    assert_eq!(t.encode("ab"), [3, 0]); // `b`: no byte token, so <unk>
    let cases: [(&str, serde_json::Value, &str); 4] = [
        (
            "/normalizer/normalizers/0",
            serde_json::json!({"type": "NFKC"}),
            "normalizer.normalizers[0].type \"NFKC\"",
        ),
        (
            "/decoder",
            serde_json::json!({"type": "WordPiece"}),
            "decoder.type \"WordPiece\"",
        ),
        (
            "/normalizer/normalizers/1/pattern",
            serde_json::json!({"Regex": " +"}),
            "normalizer.normalizers[1]",
        ),
        ("/model/dropout", serde_json::json!(0.1), "model.dropout"),
    ];
    for (at, value, needle) in cases {
        let mut v = base.clone();
        *v.pointer_mut(at).unwrap_or_else(|| panic!("{at}")) = value;
        let e = SentencePieceBpe::from_hf_json(&v.to_string(), "t.json")
            .unwrap_err()
            .to_string();
        assert_mentions(&e, &["t.json", needle]);
    }
    let mut v = base.clone();
    v["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
    let e = SentencePieceBpe::from_hf_json(&v.to_string(), "t.json")
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["pre_tokenizer.type \"Whitespace\""]);
}
