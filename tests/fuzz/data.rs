//! Fuzz targets for the text and byte parsers of `kiln::data`: CSV tables (read and prepared),
//! chat JSONL, IDX arrays and tokenizer files (tokenizer.json, vocab.txt).

use std::time::Duration;

use kiln::data::chat::{ChatDataset, ChatOptions, ChatTemplate, parse_chat};
use kiln::data::idx::parse_idx;
use kiln::data::options::{HeaderMode, TabularOptions};
use kiln::data::split::SplitFractions;
use kiln::data::table::Table;
use kiln::data::tabular::prepare_table;
use kiln::data::tokenizer::{CharTokenizer, Tokenizer, WordPieceTokenizer, tokenizer_from_json};
use kiln::data::{Dataset, InMemoryDataset, Targets};

use crate::engine::{Target, Verdict, mutate_bytes, text};

/// A refusal must be one readable message, short even when the input is not.
pub fn clean(e: &dyn std::fmt::Display) -> Verdict {
    let m = e.to_string();
    if m.trim().is_empty() {
        return Err("an empty error message".into());
    }
    if m.len() > 4000 {
        return Err(format!("a {}-byte error message", m.len()));
    }
    Ok(false)
}

/// Shapes agree with the data, values are finite, labels are in range.
pub fn check_dataset(what: &str, ds: &InMemoryDataset) -> Result<(), String> {
    let per: usize = ds.feature_shape().iter().product();
    if ds.features().len() != ds.len() * per {
        return Err(format!(
            "{what}: {} feature values for {} examples of {per}",
            ds.features().len(),
            ds.len()
        ));
    }
    if let Some(i) = ds.features().iter().position(|v| !v.is_finite()) {
        return Err(format!("{what}: feature value {i} is {}", ds.features()[i]));
    }
    match ds.targets() {
        Targets::Classes {
            labels,
            num_classes,
        } => {
            if labels.len() != ds.len() || labels.iter().any(|&l| l as usize >= *num_classes) {
                return Err(format!("{what}: labels out of range or miscounted"));
            }
        }
        Targets::Values { values, width } => {
            if values.len() != ds.len() * width || values.iter().any(|v| !v.is_finite()) {
                return Err(format!("{what}: target values miscounted or not finite"));
            }
        }
    }
    Ok(())
}

fn csv_exec(input: &[u8]) -> Verdict {
    let s = text(input);
    let table = match Table::from_csv_str(&s, "fuzz.csv", HeaderMode::Auto) {
        Ok(t) => t,
        Err(e) => return clean(&e),
    };
    if table.rows.iter().any(|r| r.len() != table.columns.len())
        || table.lines.len() != table.rows.len()
        || table.lines.windows(2).any(|w| w[0] > w[1])
    {
        return Err("a ragged table or unordered line numbers were accepted".into());
    }
    let Some(target) = table.columns.last().cloned() else {
        return Err("a table without columns was accepted".into());
    };
    let again = table.clone();
    let split = match prepare_table(
        table,
        &TabularOptions::new(target),
        SplitFractions::default(),
        1,
    ) {
        Ok(s) => s,
        Err(e) => return clean(&e),
    };
    for (what, ds) in [
        ("train", &split.train),
        ("val", &split.val),
        ("test", &split.test),
    ] {
        check_dataset(what, ds)?;
    }
    if split.train.is_empty() || split.preprocessor.num_features() == 0 {
        return Err("an empty training split or no features was accepted".into());
    }
    if let Targets::Classes { num_classes, .. } = split.train.targets() {
        if *num_classes < 2 {
            return Err(format!("{num_classes} class accepted for classification"));
        }
    }
    // The fitted preparation applied to the rows again (what `predict` does).
    match split.preprocessor.transform(&again) {
        Ok(x) if x.iter().any(|v| !v.is_finite()) => Err("transform gave non-finite".into()),
        Ok(x) if x.len() % split.preprocessor.num_features() != 0 => {
            Err("transform's length is not a multiple of the feature count".into())
        }
        Ok(_) => Ok(true),
        Err(e) => clean(&e),
    }
}

/// CSV tables: read, then prepared for training (kinds, missing values, split, scaling).
pub fn csv() -> Target {
    let rows: String = (0..30)
        .map(|i| format!("{i},{},{}\n", i % 3, ["a", "b"][i % 2]))
        .collect();
    Target {
        name: "csv",
        seeds: vec![
            format!("x,c,y\n{rows}").into_bytes(),
            format!("x,y\n{}", "1,NaN\n2,inf\n3,-inf\n".repeat(10)).into_bytes(),
            b"y\n1\n0\n1\n0\n1\n0\n1\n0\n1\n0\n".to_vec(),
            b"a,b,y\n1,NA,0\n2,NA,1\n3,NA,0\n4,NA,1\n5,NA,0\n6,NA,1\n7,NA,0\n".to_vec(),
            b"a,b,y\n1,1,1\n2,2,1\n3,3,1\n4,4,1\n5,5,1\n6,6,1\n7,7,1\n8,8,1\n".to_vec(),
            b"a,y\n\"1,2\",0\n\"3\"\"4\",1\n1e308,0\n-1e308,1\n5,0\n6,1\n7,0\n8,1\n".to_vec(),
            b"\xef\xbb\xbfa,a,y\n1,2,3\n,,\n\n\"\n".to_vec(),
            b"a,y\n1,0\n2\n3,1,4\n".to_vec(),
        ],
        dict: &[
            b",",
            b"\"",
            b"\n",
            b"\r\n",
            b"NA",
            b"?",
            b"",
            b"y",
            b"\xef\xbb\xbf",
            b" ,",
        ],
        max_len: 8192,
        limit: Duration::from_secs(20),
        exec: csv_exec,
        mutate: mutate_bytes,
    }
}

fn chat_exec(input: &[u8]) -> Verdict {
    let (convs, errors) = parse_chat(&text(input));
    for e in &errors {
        clean(e)?;
    }
    for c in &convs {
        if c.messages.is_empty() || c.line == 0 {
            return Err("an empty conversation or line 0 was accepted".into());
        }
    }
    let tok = CharTokenizer::train("abcdefghijklmnopqrstuvwxyz <>|\n");
    let opts = ChatOptions {
        context: 32,
        pack: input.len().is_multiple_of(2),
        pad_id: 0,
        template: ChatTemplate::default(),
    };
    let ds = match ChatDataset::new(&convs, &tok, &opts) {
        Ok(d) => d,
        Err(e) => return clean(&e),
    };
    for i in 0..ds.len() {
        let (ids, mask) = ds.window(i);
        if ids.len() != 33 || mask.len() != 33 {
            return Err(format!(
                "window {i} has {} ids, {} mask",
                ids.len(),
                mask.len()
            ));
        }
        if ids.iter().any(|&t| t as usize >= tok.vocab_size()) {
            return Err(format!("window {i} has an id outside the vocabulary"));
        }
    }
    Ok(!convs.is_empty())
}

/// Chat JSONL (`{"messages": [{"role": ..., "content": ...}]}` per line), parsed and windowed.
pub fn chat() -> Target {
    let good =
        br#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;
    Target {
        name: "chat",
        seeds: vec![
            [&good[..], b"\n", &good[..], b"\n"].concat(),
            br#"{"messages":[{"role":"user","content":"only a question"}]}"#.to_vec(),
            br#"{"messages":[]}"#.to_vec(),
            br#"{"messages":[{"role":"robot","content":"x"}]}"#.to_vec(),
            br#"{"messages":[{"role":"assistant","content":null}]}"#.to_vec(),
            br#"{"messages":"no"}"#.to_vec(),
            br#"[1,2,3]"#.to_vec(),
            b"\n\n{\"messages\":[{\"role\":\"assistant\",\"content\":\"\\ud800\"}]}\n".to_vec(),
        ],
        dict: &[
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b"\"role\"",
            b"\"content\"",
            b"\"assistant\"",
            b"\"system\"",
            b"\"user\"",
            b"null",
            b"\\u0000",
            b"\n",
        ],
        max_len: 8192,
        limit: Duration::from_secs(20),
        exec: chat_exec,
        mutate: mutate_bytes,
    }
}

fn idx_exec(input: &[u8]) -> Verdict {
    let mut any = false;
    for ndims in [1, 3] {
        match parse_idx(input, ndims, "fuzz.idx") {
            Ok(a) => {
                let n: Option<usize> = a.dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
                if a.dims.len() != ndims || n != Some(a.data.len()) {
                    return Err(format!("dims {:?} for {} bytes", a.dims, a.data.len()));
                }
                any = true;
            }
            Err(e) => {
                clean(&e)?;
            }
        }
    }
    Ok(any)
}

fn idx_bytes(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    v.extend(std::iter::repeat_n(fill, n as usize));
    v
}

/// IDX arrays (MNIST's format): header, dimensions, bytes.
pub fn idx() -> Target {
    let mut claims_huge = idx_bytes(&[2, 3, 3], 7);
    claims_huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    Target {
        name: "idx",
        seeds: vec![
            idx_bytes(&[2, 3, 3], 7),
            idx_bytes(&[10], 1),
            claims_huge,
            vec![0, 0, 8, 3, 0, 0],
            vec![0, 0, 9, 1, 0, 0, 0, 1, 5],
            vec![0, 0, 8, 1, 0, 0, 0, 0],
        ],
        dict: &[
            b"\x00\x00\x08\x03",
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x00",
        ],
        max_len: 4096,
        limit: Duration::from_secs(10),
        exec: idx_exec,
        mutate: mutate_bytes,
    }
}

const PROBE: &str = "Hello, wörld! 123 <|endoftext|> [CLS] \u{1F600}\n";

fn check_tokenizer(t: &dyn Tokenizer) -> Verdict {
    let v = t.vocab_size();
    if v == 0 {
        return Err("a tokenizer with an empty vocabulary was accepted".into());
    }
    let ids = t.encode(PROBE);
    if let Some(id) = ids.iter().find(|&&i| i as usize >= v) {
        return Err(format!("encode gave id {id} in a vocabulary of {v}"));
    }
    if let Err(e) = t.decode(&ids) {
        return Err(format!("decode of encode's own ids failed: {e}"));
    }
    // An id past the vocabulary is refused, not looked up.
    if t.decode(&[v as u32]).is_ok() && t.id_to_token(v as u32).is_some() {
        return Err(format!("id {v} decoded in a vocabulary of {v}"));
    }
    Ok(true)
}

fn tokenizer_exec(input: &[u8]) -> Verdict {
    let s = text(input);
    let mut any = false;
    match tokenizer_from_json(&s, "fuzz.json") {
        Ok(t) => any |= check_tokenizer(t.as_ref())?,
        Err(e) => {
            clean(&e)?;
        }
    }
    match WordPieceTokenizer::from_vocab_txt(&s, true) {
        Ok(t) => any |= check_tokenizer(&t)?,
        Err(e) => {
            clean(&e)?;
        }
    }
    Ok(any)
}

/// tokenizer.json (char, BPE and WordPiece models) and BERT's vocab.txt.
pub fn tokenizer() -> Target {
    let chars = CharTokenizer::train("hello world");
    let bpe =
        kiln::data::tokenizer::BpeTokenizer::train(&"the cat sat on the mat ".repeat(20), 270, 2)
            .expect("train a small BPE");
    let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nworld\n,\n!\n";
    let wp = WordPieceTokenizer::from_vocab_txt(vocab, true).unwrap();
    Target {
        name: "tokenizer",
        seeds: vec![
            chars.to_json().into_bytes(),
            bpe.to_json().into_bytes(),
            wp.to_json().into_bytes(),
            vocab.as_bytes().to_vec(),
            br#"{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}"#.to_vec(),
            br#"{"model":{"type":"Char","vocab":{}}}"#.to_vec(),
            br#"{"model":{"type":"WordPiece","vocab":{"[UNK]":4000000000}}}"#.to_vec(),
            b"\n\n\n".to_vec(),
        ],
        dict: &[
            b"{",
            b"}",
            b"\"",
            b":",
            b",",
            b"\"model\"",
            b"\"type\"",
            b"\"BPE\"",
            b"\"Char\"",
            b"\"WordPiece\"",
            b"\"vocab\"",
            b"\"merges\"",
            b"\"added_tokens\"",
            b"[UNK]",
            b"##",
            b"\n",
        ],
        max_len: 16384,
        limit: Duration::from_secs(20),
        exec: tokenizer_exec,
        mutate: mutate_bytes,
    }
}
