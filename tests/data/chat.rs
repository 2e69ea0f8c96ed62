//! Chat-format data: parsing and validation by line, the template, the assistant-only loss
//! mask, truncation, packing, the dataset's batches, the shipped chitchat file, and the
//! masked cross-entropy that skips [`IGNORE_INDEX`] targets.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use kiln::Tensor;
use kiln::data::chat::{
    ChatDataset, ChatOptions, ChatTemplate, Conversation, IGNORE_INDEX, Role, TokenizedChat,
    load_chat, parse_chat, tokenize_chat,
};
use kiln::data::tokenizer::{BpeTokenizer, CharTokenizer, Tokenizer};
use kiln::data::{Dataset, Targets};

const GOOD: &str = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi there"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"},{"role":"assistant","content":"See you."}]}"#;
const SHORT: &str =
    r#"{"id": 7, "messages":[{"role":"user","content":"Q?"},{"role":"assistant","content":"A."}]}"#;

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-chat-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn one(line: &str) -> Conversation {
    let (c, e) = parse_chat(line);
    assert!(e.is_empty(), "{e:?}");
    c.into_iter().next().unwrap()
}

/// A char tokenizer that knows every character of the texts.
fn chars(texts: &[&str]) -> CharTokenizer {
    CharTokenizer::train(&texts.concat())
}

#[test]
fn parses_roles_skips_blank_lines_and_keeps_line_numbers() {
    let text = format!("{GOOD}\n\n   \n{SHORT}\n");
    let (convs, errs) = parse_chat(&text);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(convs.len(), 2);
    assert_eq!((convs[0].line, convs[1].line), (1, 4));
    let roles: Vec<Role> = convs[0].messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(convs[1].messages[1].content, "A.");
}

#[test]
fn broken_lines_are_all_reported_with_line_numbers() {
    let lines = [
        GOOD,                                                                // 1 ok
        r#"{"messages": [{"role": "user", "content": "hi"}"#,                // 2 bad JSON
        r#"{"messages": [{"role": "bot", "content": "hi"}]}"#,               // 3 unknown role
        r#"{"messages": [{"role": "assistant"}]}"#,                          // 4 no content
        r#"{"messages": []}"#,                                               // 5 empty
        r#"{"messages": [{"role": "user", "content": "only a question"}]}"#, // 6 no assistant
        "",                                                                  // 7 blank: fine
        r#"{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}"#, // 8
        r#"{"conversation": []}"#, // 9 no messages
        r#"[1, 2, 3]"#,            // 10 not an object
        r#"{"messages": [{"content": "who?"}, {"role": "assistant", "content": "x"}]}"#, // 11 no role
        "not json at all \u{1F600}",                                                     // 12
        SHORT,                                                                           // 13 ok
    ];
    let text = lines.join("\n");
    let (convs, errs) = parse_chat(&text);
    assert_eq!(convs.len(), 2);
    let bad: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(bad, [2, 3, 4, 5, 6, 8, 9, 10, 11, 12]);
    let msg = |l: usize| errs.iter().find(|e| e.line == l).unwrap().msg.clone();
    assert!(msg(2).contains("bad JSON"), "{}", msg(2));
    assert!(msg(3).contains("unknown role \"bot\""), "{}", msg(3));
    assert!(msg(4).contains("messages[0]") && msg(4).contains("content"));
    assert!(msg(5).contains("empty conversation"));
    assert!(msg(6).contains("no assistant turn"));
    assert!(msg(8).contains("content"));
    assert!(msg(11).contains("role"));

    // load_chat fails with one error naming the file and every bad line.
    let p = tmp_file("broken.jsonl", &text);
    let e = load_chat(&p).unwrap_err().to_string();
    assert!(
        e.contains("broken.jsonl") && e.contains("10 bad line(s)"),
        "{e}"
    );
    for l in bad {
        assert!(
            e.contains(&format!("line {l}: ")),
            "line {l} missing from: {e}"
        );
    }
}

#[test]
fn load_chat_caps_the_listing_and_rejects_empty_files() {
    let text = vec!["{"; 30].join("\n");
    let e = load_chat(&tmp_file("many.jsonl", &text))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 20: ") && !e.contains("line 21: "), "{e}");
    assert!(e.contains("and 10 more"), "{e}");
    let e = load_chat(&tmp_file("empty.jsonl", "\n\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no conversations"), "{e}");
    let e = load_chat(Path::new("/no/such/chat.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/chat.jsonl"), "{e}");
}

#[test]
fn template_renders_each_message() {
    let t = ChatTemplate::default();
    assert_eq!(
        t.render(&one(SHORT)),
        "<|user|>\nQ?<|end|>\n<|assistant|>\nA.<|end|>\n"
    );
    let c = one(GOOD);
    assert_eq!(
        t.prompt(&c.messages[..2]),
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n"
    );
}

/// The ids the mask trains on, in order.
fn trained_ids(chat: &TokenizedChat) -> Vec<u32> {
    let pairs = chat.ids.iter().zip(&chat.mask);
    pairs.filter(|&(_, &m)| m).map(|(&id, _)| id).collect()
}

#[test]
fn mask_covers_exactly_the_assistant_tokens() {
    let t = ChatTemplate::default();
    let c = one(GOOD);
    let want_trained = "Hello!<|end|>See you.<|end|>";
    // Char-level: the masked characters spell the assistant turns and their end markers.
    let tok = chars(&[&t.render(&c)]);
    let chat = tokenize_chat(&c, &tok, &t);
    assert_eq!(chat.ids.len(), chat.mask.len());
    assert_eq!(tok.decode(&chat.ids).unwrap(), t.render(&c));
    let trained = trained_ids(&chat);
    assert_eq!(tok.decode(&trained).unwrap(), want_trained);

    // GPT-2 BPE: the ids still decode to the rendered text, and the masked ones to the
    // assistant turns; nothing else is masked.
    let bpe = BpeTokenizer::gpt2().unwrap();
    let chat = tokenize_chat(&c, &bpe, &t);
    assert_eq!(bpe.decode(&chat.ids).unwrap(), t.render(&c));
    let trained = trained_ids(&chat);
    assert_eq!(bpe.decode(&trained).unwrap(), want_trained);
    let n = |s: &str| bpe.encode(s).len();
    assert_eq!(
        trained.len(),
        n("Hello!") + n("See you.") + 2 * n("<|end|>")
    );
}

#[test]
fn truncation_keeps_the_start_and_drops_conversations_without_targets() {
    let t = ChatTemplate::default();
    let c = one(GOOD);
    let tok = chars(&[&t.render(&c)]);
    let full = tokenize_chat(&c, &tok, &t).ids.len();
    let opts = |context| ChatOptions {
        context,
        pack: false,
        pad_id: 0,
        template: t.clone(),
    };
    // Context well inside the conversation but past the first assistant answer.
    let first_answer_end = t.render(&c).find("Hello!").unwrap() + 3;
    let ds = ChatDataset::new(std::slice::from_ref(&c), &tok, &opts(first_answer_end)).unwrap();
    assert_eq!((ds.len(), ds.truncated, ds.dropped), (1, 1, 0));
    let (ids, _) = ds.window(0);
    assert_eq!(ids.len(), first_answer_end + 1);
    assert_eq!(
        tok.decode(ids).unwrap(),
        t.render(&c)[..first_answer_end + 1]
    );
    // A context that ends before any assistant token: the conversation is dropped.
    let ds = ChatDataset::new(std::slice::from_ref(&c), &tok, &opts(10)).unwrap();
    assert_eq!((ds.len(), ds.truncated, ds.dropped), (0, 1, 1));
    // A context that fits: no truncation, padding after.
    let ds = ChatDataset::new(&[c], &tok, &opts(full + 5)).unwrap();
    assert_eq!((ds.len(), ds.truncated), (1, 0));
    assert!(ChatDataset::new(&[], &tok, &opts(0)).is_err());
}

#[test]
fn packing_fills_windows_and_batches_mask_targets() {
    let t = ChatTemplate::default();
    let (a, b) = (one(SHORT), one(GOOD));
    let tok = chars(&[&t.render(&a), &t.render(&b)]);
    let (la, lb) = (
        tokenize_chat(&a, &tok, &t).ids.len(),
        tokenize_chat(&b, &tok, &t).ids.len(),
    );
    let opts = |pack| ChatOptions {
        context: la + lb + 3 - 1,
        pack,
        pad_id: 0,
        template: t.clone(),
    };
    let convs = [a.clone(), b.clone(), a.clone()];
    let unpacked = ChatDataset::new(&convs, &tok, &opts(false)).unwrap();
    assert_eq!(unpacked.len(), 3);
    let packed = ChatDataset::new(&convs, &tok, &opts(true)).unwrap();
    // a + b fit in la + lb + 3 tokens; the second a starts a new window.
    assert_eq!(packed.len(), 2);
    assert_eq!(packed.trained_tokens(), unpacked.trained_tokens());
    let (ids, mask) = packed.window(0);
    let mut both = tokenize_chat(&a, &tok, &t);
    let tb = tokenize_chat(&b, &tok, &t);
    both.ids.extend(tb.ids);
    both.mask.extend(tb.mask);
    assert_eq!(&ids[..la + lb], both.ids);
    assert_eq!(&mask[..la + lb], both.mask);
    assert!(ids[la + lb..].iter().all(|&i| i == 0) && !mask[la + lb..].contains(&true));

    // Batches: x = window[..T], labels = window[1..] where masked, IGNORE_INDEX elsewhere.
    let batch = packed.batch(&[1, 0]);
    let tt = la + lb + 2;
    assert_eq!(batch.x_shape, [2, tt]);
    let Targets::Classes {
        labels,
        num_classes,
    } = batch.y
    else {
        panic!("classes expected")
    };
    assert_eq!(num_classes, tok.vocab_size());
    let (ids0, mask0) = packed.window(0);
    for j in 0..tt {
        assert_eq!(batch.x[tt + j], ids0[j] as f32);
        let want = if mask0[j + 1] {
            ids0[j + 1]
        } else {
            IGNORE_INDEX
        };
        assert_eq!(labels[tt + j], want, "target {j}");
    }
    let kept = labels.iter().filter(|&&l| l != IGNORE_INDEX).count();
    assert_eq!(kept, packed.trained_tokens());
}

#[test]
fn shipped_chitchat_file_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/chat/chitchat_train.jsonl.gz");
    let convs = load_chat(&p).unwrap();
    assert_eq!(convs.len(), 1500);
    assert!(
        convs
            .iter()
            .all(|c| c.messages.iter().any(|m| m.role == Role::Assistant))
    );
    let bpe = BpeTokenizer::gpt2().unwrap();
    let opts = ChatOptions {
        context: 256,
        pack: true,
        pad_id: bpe.eos_id().unwrap(),
        template: ChatTemplate::default(),
    };
    let ds = ChatDataset::new(&convs[..100], &bpe, &opts).unwrap();
    assert!(!ds.is_empty() && ds.dropped == 0);
    assert!(ds.trained_tokens() > 1000, "{}", ds.trained_tokens());
}

#[test]
fn masked_cross_entropy_skips_ignored_rows() {
    let g = gpu();
    let (n, c) = (7usize, 5usize);
    let x = rand_vec(n * c, seed("chat-ce"), -2.0, 2.0);
    let labels = [3, IGNORE_INDEX, 0, 4, IGNORE_INDEX, 1, 2];
    // f64 reference: mean over the kept rows; gradient softmax - onehot over the kept count.
    let kept = labels.iter().filter(|&&l| l != IGNORE_INDEX).count() as f64;
    let mut want_loss = 0.0;
    let mut want_grad = vec![0.0f32; n * c];
    for (i, &l) in labels.iter().enumerate() {
        if l == IGNORE_INDEX {
            continue;
        }
        let row: Vec<f64> = x[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        want_loss += (lse - row[l as usize]) / kept;
        for j in 0..c {
            let p = (row[j] - lse).exp() - if j == l as usize { 1.0 } else { 0.0 };
            want_grad[i * c + j] = (p / kept) as f32;
        }
    }
    let xt = Tensor::from_slice_on(&g, &x, &[n, c])
        .unwrap()
        .requires_grad();
    let loss = xt.cross_entropy_masked(&labels).unwrap();
    let got = loss.item().unwrap();
    assert!(
        (got as f64 - want_loss).abs() < 1e-5,
        "loss {got} vs {want_loss}"
    );
    loss.backward().unwrap();
    let grad = xt.grad().unwrap().to_vec::<f32>().unwrap();
    Tolerance::new(1e-4, 1e-6, "f32 fused cross-entropy vs f64").assert_close(
        "masked cross-entropy gradient",
        &grad,
        &want_grad.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    // Ignored rows get exactly zero gradient; all-ignored gives loss 0, not NaN.
    assert!(grad[c..2 * c].iter().all(|&v| v == 0.0));
    let none = xt.cross_entropy_masked(&[IGNORE_INDEX; 7]).unwrap();
    assert_eq!(none.item().unwrap(), 0.0);
    // A label that is neither a class nor IGNORE_INDEX is an error, not a NaN.
    let e = xt
        .cross_entropy_masked(&[0, 1, 2, 3, 4, 5, 0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 5 at row 5"), "{e}");
    assert!(xt.cross_entropy_masked(&[0, 1]).is_err());
}
