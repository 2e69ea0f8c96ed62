//! Training a byte-level BPE vocabulary on a corpus.
//!
//! Start from the 256 byte tokens (id = byte value). Cut the corpus into GPT-2 pre-tokens and
//! count each distinct piece once, with its frequency. Then repeat: find the adjacent token pair
//! that occurs most often (summed over pieces, weighted by frequency), make it a new token, and
//! replace it in every piece. Stop at the vocabulary size (the last id is `<|endoftext|>`) or
//! when the best pair occurs fewer than `min_frequency` times.
//!
//! Counting every pair again after each merge would cost a pass over the corpus per merge. We
//! keep the counts and, for each pair, the pieces it occurs in; a merge only re-counts the
//! pieces that held the merged pair, and a max-heap with lazy deletion (an entry whose count is
//! out of date is skipped when popped) finds the next best pair. Ties go to the pair with the
//! smaller ids, so training is deterministic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::ENDOFTEXT;
use super::bpe::BpeTokenizer;
use super::bytelevel::{bytes_to_unicode, pre_tokenize};
use crate::data::error::{DataError, invalid};

type Pair = (u32, u32);

impl BpeTokenizer {
    /// Learn a byte-level BPE of `vocab_size` tokens (256 bytes, the merges, then
    /// `<|endoftext|>`) from `corpus`, merging only pairs seen at least `min_frequency` times
    /// (so the vocabulary may come out smaller). Deterministic.
    ///
    /// ```
    /// use kiln::data::tokenizer::{BpeTokenizer, Tokenizer};
    /// let text = "low lower lowest low low";
    /// let t = BpeTokenizer::train(text, 260, 2)?;
    /// assert_eq!(t.vocab_size(), 260);
    /// // "l o" and "o w" occur 5 times each; the tie goes to the smaller ids.
    /// assert_eq!(t.id_to_token(256), Some("lo"));
    /// assert_eq!(t.id_to_token(258), Some("Ġlow")); // "Ġlow" is the byte-level " low"
    /// assert_eq!(t.decode(&t.encode(text))?, text);
    /// assert!(t.encode(text).len() < text.len());
    /// # Ok::<(), kiln::data::DataError>(())
    /// ```
    pub fn train(corpus: &str, vocab_size: usize, min_frequency: u64) -> Result<Self, DataError> {
        if vocab_size < 257 {
            return invalid(format!(
                "BPE training: vocab_size {vocab_size} is too small: it needs 256 byte tokens \
                 and <|endoftext|>"
            ));
        }
        let table = bytes_to_unicode();
        let mut tokens: Vec<String> = table.iter().map(char::to_string).collect();
        let mut ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        // Distinct pieces with their frequency, sorted so that the run is reproducible.
        let mut freq: HashMap<&str, u64> = HashMap::new();
        for piece in pre_tokenize(corpus) {
            *freq.entry(piece).or_default() += 1;
        }
        let mut pieces: Vec<(&str, u64)> = freq.into_iter().collect();
        pieces.sort_unstable();
        let mut words: Vec<Vec<u32>> = pieces
            .iter()
            .map(|(p, _)| p.bytes().map(u32::from).collect())
            .collect();
        let counts: Vec<i64> = pieces.iter().map(|&(_, c)| c as i64).collect();

        let mut pair_count: HashMap<Pair, i64> = HashMap::new();
        let mut where_: HashMap<Pair, Vec<usize>> = HashMap::new();
        for (w, word) in words.iter().enumerate() {
            for p in word.windows(2) {
                *pair_count.entry((p[0], p[1])).or_default() += counts[w];
                where_.entry((p[0], p[1])).or_default().push(w);
            }
        }
        let mut heap: BinaryHeap<(i64, Reverse<Pair>)> =
            pair_count.iter().map(|(&p, &c)| (c, Reverse(p))).collect();

        let mut merges: Vec<(String, String)> = Vec::new();
        let mut last_visit = vec![usize::MAX; words.len()];
        while tokens.len() + 1 < vocab_size {
            let Some((count, Reverse(pair))) = heap.pop() else {
                break;
            };
            if pair_count.get(&pair) != Some(&count) {
                continue; // out of date: a fresher entry is in the heap
            }
            if count <= 0 || (count as u64) < min_frequency {
                break;
            }
            let (a, b) = pair;
            let text = format!("{}{}", tokens[a as usize], tokens[b as usize]);
            let new = match ids.get(&text) {
                Some(&id) => id,
                None => {
                    tokens.push(text.clone());
                    ids.insert(text, tokens.len() as u32 - 1);
                    tokens.len() as u32 - 1
                }
            };
            merges.push((tokens[a as usize].clone(), tokens[b as usize].clone()));

            let step = merges.len();
            let mut delta: HashMap<Pair, i64> = HashMap::new();
            for w in where_.remove(&pair).unwrap_or_default() {
                if last_visit[w] == step {
                    continue;
                }
                last_visit[w] = step;
                let word = &mut words[w];
                if !word.windows(2).any(|p| (p[0], p[1]) == pair) {
                    continue;
                }
                for p in word.windows(2) {
                    *delta.entry((p[0], p[1])).or_default() -= counts[w];
                }
                let mut merged = Vec::with_capacity(word.len());
                let mut i = 0;
                while i < word.len() {
                    if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
                        merged.push(new);
                        i += 2;
                    } else {
                        merged.push(word[i]);
                        i += 1;
                    }
                }
                for p in merged.windows(2) {
                    *delta.entry((p[0], p[1])).or_default() += counts[w];
                    if p[0] == new || p[1] == new {
                        where_.entry((p[0], p[1])).or_default().push(w);
                    }
                }
                *word = merged;
            }
            let mut changed: Vec<(Pair, i64)> =
                delta.into_iter().filter(|&(_, d)| d != 0).collect();
            changed.sort_unstable();
            for (p, d) in changed {
                let c = pair_count.entry(p).or_default();
                *c += d;
                if *c > 0 {
                    heap.push((*c, Reverse(p)));
                } else {
                    pair_count.remove(&p);
                }
            }
        }

        let eos = tokens.len() as u32;
        let vocab: HashMap<String, u32> = ids;
        BpeTokenizer::build(
            "BPE training",
            vocab,
            &merges,
            &[(ENDOFTEXT.to_string(), eos)],
            false,
        )
    }
}
