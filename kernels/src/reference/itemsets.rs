//! CPU twins of `itemsets.wgsl`: support counts by another route, and a brute-force miner of
//! frequent itemsets that the Apriori search must equal exactly.
//!
//! - [`support_counts`] scans the transactions horizontally (is every item of the candidate in
//!   this transaction?), never touching the bitset layout: an independent route for the tests.
//! - [`support_counts_bits`] is the kernel's own math (AND + popcount) on the same layout, on one
//!   CPU core: the baseline of the bench.
//! - [`brute_force`] enumerates every subset (up to `max_len` items) of every transaction and
//!   keeps those seen at least `min_count` times: no candidate generation, no pruning. It is
//!   exponential in the transaction length (`sum_k C(t, k)` subsets for a transaction of t
//!   items), fine for short baskets such as table rows.

use std::collections::{BTreeMap, HashMap};

/// A transaction as a sorted set of item indices (duplicates dropped).
pub fn as_set(t: &[u32]) -> Vec<u32> {
    let mut s = t.to_vec();
    s.sort_unstable();
    s.dedup();
    s
}

/// Support count of each candidate: the transactions holding all of its items.
/// transactions: item indices each; cand: (candidates, len).
pub fn support_counts(transactions: &[Vec<u32>], cand: &[u32], len: usize) -> Vec<u32> {
    let sets: Vec<Vec<u32>> = transactions.iter().map(|t| as_set(t)).collect();
    cand.chunks(len.max(1))
        .map(|c| {
            sets.iter()
                .filter(|s| c.iter().all(|i| s.binary_search(i).is_ok()))
                .count() as u32
        })
        .collect()
}

/// The kernel's math on the host: `count[c] = sum_w popcount(AND_j bits[cand[c, j], w])`.
/// bits: (items, words); cand: (candidates, len).
pub fn support_counts_bits(bits: &[u32], words: usize, cand: &[u32], len: usize) -> Vec<u32> {
    cand.chunks(len.max(1))
        .map(|c| {
            let row = |i: u32| &bits[i as usize * words..(i as usize + 1) * words];
            let first = row(c[0]);
            (0..words)
                .map(|w| {
                    c[1..]
                        .iter()
                        .fold(first[w], |acc, &i| acc & row(i)[w])
                        .count_ones()
                })
                .sum()
        })
        .collect()
}

/// Every itemset of 1 to `max_len` items held by at least `min_count` transactions, with its
/// count, by enumerating the subsets of each transaction (as a set).
pub fn brute_force(
    transactions: &[Vec<u32>],
    min_count: u32,
    max_len: usize,
) -> BTreeMap<Vec<u32>, u32> {
    let mut counts: HashMap<Vec<u32>, u32> = HashMap::new();
    for t in transactions {
        let s = as_set(t);
        let mut pick = Vec::new();
        subsets(&s, 0, max_len, &mut pick, &mut counts);
    }
    counts
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .collect()
}

/// Add every non-empty subset of `s[from..]` (extending `pick`, at most `max_len` items) to
/// `counts`.
fn subsets(
    s: &[u32],
    from: usize,
    max_len: usize,
    pick: &mut Vec<u32>,
    counts: &mut HashMap<Vec<u32>, u32>,
) {
    if pick.len() == max_len {
        return;
    }
    for i in from..s.len() {
        pick.push(s[i]);
        *counts.entry(pick.clone()).or_insert(0) += 1;
        subsets(s, i + 1, max_len, pick, counts);
        pick.pop();
    }
}
