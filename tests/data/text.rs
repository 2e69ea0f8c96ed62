//! The text dataset: windows and next-token targets, the positional split, the embedded corpus
//! and the unigram baseline.

use crate::common::assert_mentions;
use kiln::data::text::{
    SHAKESPEARE_BYTES, TextDataset, TextOptions, shakespeare, text_split, tokenize_split,
    unigram_cross_entropy,
};
use kiln::data::tokenizer::{BpeTokenizer, CharTokenizer, Tokenizer};
use kiln::data::{Dataset, Targets};

fn labels(t: &Targets) -> (&[u32], usize) {
    match t {
        Targets::Classes {
            labels,
            num_classes,
        } => (labels, *num_classes),
        other => panic!("expected class targets, got {other:?}"),
    }
}

#[test]
fn windows_are_contexts_and_next_tokens() {
    // ids[i] = 3 * i + 1 mod 101, so every window is recognisable.
    let ids: Vec<u32> = (0..500u32).map(|i| (3 * i + 1) % 101).collect();
    for (context, stride) in [(1, 1), (7, 1), (17, 5), (129, 129), (499, 1)] {
        let ds = TextDataset::new(ids.clone(), 101, context, stride).unwrap();
        let want_len = (500 - context - 1) / stride + 1;
        assert_eq!(ds.len(), want_len, "context {context} stride {stride}");
        assert_eq!(ds.feature_shape(), vec![context]);
        let picks = [0, want_len / 2, want_len - 1];
        let b = ds.batch(&picks);
        assert_eq!(b.x_shape, vec![3, context]);
        let (y, k) = labels(&b.y);
        assert_eq!((y.len(), k), (3 * context, 101));
        for (row, &w) in picks.iter().enumerate() {
            let s = w * stride;
            for j in 0..context {
                assert_eq!(b.x[row * context + j], ids[s + j] as f32);
                assert_eq!(y[row * context + j], ids[s + j + 1]);
            }
        }
    }
    // Too short for one window.
    assert_eq!(TextDataset::new(vec![1, 2], 3, 2, 1).unwrap().len(), 0);
    assert_eq!(TextDataset::new(vec![1, 2, 0], 3, 2, 1).unwrap().len(), 1);
}

#[test]
fn the_split_is_positional_and_no_window_crosses_it() {
    let n = 1000usize;
    let ids: Vec<u32> = (0..n as u32).map(|i| i % 50).collect();
    let opts = TextOptions {
        context: 16,
        stride: Some(3),
        validation: 0.1,
    };
    let s = text_split(ids.clone(), 50, &opts).unwrap();
    assert_eq!(s.train.tokens(), &ids[..900]);
    assert_eq!(s.validation.tokens(), &ids[900..]);
    assert_eq!(s.train.len(), (900 - 17) / 3 + 1);
    assert_eq!(s.validation.len(), (100 - 17) / 3 + 1);
    // The last training window's target ends inside the training part, and every validation
    // window starts at or after the cut.
    let last = s.train.len() - 1;
    let end_of_last_target = last * 3 + 16 + 1; // exclusive
    assert!(
        end_of_last_target <= 900,
        "the last window's targets stay before the cut"
    );
    assert!(
        (last + 1) * 3 + 16 + 1 > 900,
        "and it is the last one that fits"
    );
    assert_eq!(s.train.window(last).1, &ids[last * 3 + 1..last * 3 + 17]);
    let (first_x, _) = s.validation.window(0);
    assert_eq!(first_x, &ids[900..916]);

    // Default stride is the context: windows side by side.
    let s = text_split(ids.clone(), 50, &TextOptions::default()).unwrap();
    assert_eq!(s.train.stride(), 64);
    assert_eq!(s.train.len(), (900 - 65) / 64 + 1);
    assert_eq!(s.train.window(1).0, &ids[64..128]);

    // No validation part.
    let s = text_split(
        ids,
        50,
        &TextOptions {
            validation: 0.0,
            ..opts
        },
    )
    .unwrap();
    assert_eq!((s.train.tokens().len(), s.validation.len()), (1000, 0));
    assert_eq!(s.unigram_baseline(), None);
}

#[test]
fn bad_settings_are_errors() {
    let ids: Vec<u32> = (0..100).map(|i| i % 10).collect();
    let opts = TextOptions::default();
    let e = text_split(ids.clone(), 9, &opts).unwrap_err().to_string();
    assert_mentions(&e, &["token 9 has id 9", "9 ids"]);
    let e = text_split(
        ids.clone(),
        10,
        &TextOptions {
            validation: 1.0,
            ..opts
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("validation fraction 1"), "{e}");
    let e = text_split(ids.clone(), 10, &TextOptions { context: 0, ..opts })
        .unwrap_err()
        .to_string();
    assert!(e.contains("context (0)"), "{e}");
    let e = text_split(
        ids.clone(),
        10,
        &TextOptions {
            context: 90,
            ..opts
        },
    )
    .unwrap_err()
    .to_string();
    assert_mentions(&e, &["90 tokens", "it needs 91"]);
    let e = TextDataset::new(ids, 1 << 25, 4, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2^24"), "{e}");
}

#[test]
fn the_embedded_corpus_is_whole_lines_of_ascii() {
    let text = shakespeare().unwrap();
    assert_eq!(text.len(), SHAKESPEARE_BYTES);
    assert!(text.is_ascii());
    assert!(text.ends_with('\n'));
    assert!(text.starts_with("ALL'S WELL THAT ENDS WELL\n"));
    assert!(text.contains("HAMLET"));
    assert_eq!(CharTokenizer::train(&text).vocab_size(), 77);
}

#[test]
fn unigram_baseline_matches_a_hand_count() {
    // train counts: 0 x2, 1 x1, 2 x0 (V = 3, add-one: 3/6, 2/6, 1/6); eval [2, 0].
    let h = unigram_cross_entropy(&[0, 1, 0], &[2, 0], 3).unwrap();
    let want = -((1.0f64 / 6.0).ln() + (3.0f64 / 6.0).ln()) / 2.0;
    assert!((h - want).abs() < 1e-12, "{h} vs {want}");
    assert_eq!(unigram_cross_entropy(&[0], &[], 3), None);

    // On Shakespeare's characters the baseline is well below uniform guessing, ln(77) = 4.34,
    // and above 2.9 nats (English letter frequencies alone carry about 4.1 bits = 2.9 nats).
    let text = shakespeare().unwrap();
    let tok = CharTokenizer::train(&text);
    let s = tokenize_split(&text, &tok, &TextOptions::default()).unwrap();
    let b = s.unigram_baseline().unwrap();
    assert!(b > 2.9 && b < (77f64).ln(), "char unigram baseline {b}");
    let val = s.validation.tokens();
    let direct = unigram_cross_entropy(s.train.tokens(), &val[1..], 77).unwrap();
    assert_eq!(b, direct);
}

#[test]
fn gpt2_tokens_make_a_dataset_of_the_full_vocabulary() {
    let text = shakespeare().unwrap();
    let tok = BpeTokenizer::gpt2().unwrap();
    let opts = TextOptions {
        context: 128,
        stride: None,
        validation: 0.1,
    };
    let s = tokenize_split(&text[..100_000], &tok, &opts).unwrap();
    assert_eq!(s.train.vocab_size(), 50257);
    let b = s.validation.batch(&[0]);
    let (y, k) = labels(&b.y);
    assert_eq!(k, 50257);
    let x: Vec<u32> = b.x.iter().map(|&v| v as u32).collect();
    assert_eq!(&x[1..], &y[..127], "targets are the inputs shifted by one");
    let decoded = tok.decode(&x).unwrap();
    assert!(
        text[..100_000].contains(&decoded),
        "a window decodes to corpus text"
    );
    let baseline = s.unigram_baseline().unwrap();
    assert!(baseline > 4.0 && baseline < (50257f64).ln(), "{baseline}");
}
