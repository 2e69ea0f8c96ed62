//! Itemsets: `itemsets.wgsl:support` (AND + popcount over the vertical bitset layout) against the
//! horizontal CPU twin on fresh random transactions at awkward sizes (n around the 32-bit word
//! edges, one item, candidates with repeated items, more candidates than one grid row holds),
//! and against the same-layout twin where the words split into several dispatch ranges. Counts
//! are integers: every comparison is exact.

use crate::common::*;
use kiln_kernels::Gpu;
use kiln_kernels::launch::itemsets as ik;
use kiln_kernels::reference::itemsets as twin;

/// `n` random transactions over `items` items, each item present with probability ~`p`
/// (duplicates inside a transaction included on purpose).
fn transactions(n: usize, items: usize, p: f32, tag: &str) -> Vec<Vec<u32>> {
    let u = rand_vec(n * items, seed(tag), 0.0, 1.0);
    (0..n)
        .map(|t| {
            let mut row: Vec<u32> = (0..items as u32)
                .filter(|&i| u[t * items + i as usize] < p)
                .collect();
            if let Some(&first) = row.first() {
                row.push(first);
            }
            row
        })
        .collect()
}

/// Run the kernel on packed bits: the counts of `cand` (candidates, len).
fn gpu_counts(g: &Gpu, bits: &[u32], words: usize, cand: &[u32], len: usize) -> Vec<u32> {
    let m = cand.len() / len;
    let (b, c) = (upload_u32(g, bits), upload_u32(g, cand));
    let count = g.alloc((4 * m).max(4) as u64, "count").unwrap();
    ik::support(g, &b, words, &c, m, len, &count).unwrap();
    read_at(g, &count, 0, m)
}

#[test]
fn support_counts_match_the_horizontal_twin_at_awkward_sizes() {
    let g = gpu();
    for &(n, items) in &[
        (1usize, 1usize),
        (31, 3),
        (32, 7),
        (33, 17),
        (129, 4),
        (257, 5),
        (2049, 12),
    ] {
        let tr = transactions(n, items, 0.6, &format!("t{n}"));
        let bits = ik::pack_bits(&tr, items).unwrap();
        let words = ik::words_for(n);
        for len in [1usize, 2, 3, 5] {
            let m = [1usize, 7, 129][len % 3];
            let cand = rand_indices(m * len, seed(&format!("c{n}{len}")), items as u32);
            let got = gpu_counts(&g, &bits, words, &cand, len);
            assert_eq!(
                got,
                twin::support_counts(&tr, &cand, len),
                "n={n} len={len}"
            );
            assert_eq!(got, twin::support_counts_bits(&bits, words, &cand, len));
        }
    }
}

#[test]
fn more_candidates_than_one_grid_row_and_several_word_ranges() {
    let g = gpu();
    // 70,000 candidates: a 2-D grid of workgroups (65,535 per row).
    let (n, items) = (45, 9);
    let tr = transactions(n, items, 0.5, "wide");
    let bits = ik::pack_bits(&tr, items).unwrap();
    let cand = rand_indices(70_000 * 2, seed("wide c"), items as u32);
    let got = gpu_counts(&g, &bits, ik::words_for(n), &cand, 2);
    assert_eq!(got, twin::support_counts(&tr, &cand, 2));
    // Words beyond one dispatch range at len 64: random bits, counted in 2 ranges.
    let words = 4 * (ik::quads_per_range(64) + 77);
    let items = 4;
    let bits: Vec<u32> = rand_indices(items * words, seed("bits"), u32::MAX);
    let cand: Vec<u32> = (0..3 * 64).map(|i| (i % 3 + i / 64) as u32 % 4).collect();
    let got = gpu_counts(&g, &bits, words, &cand, 64);
    assert_eq!(got, twin::support_counts_bits(&bits, words, &cand, 64));
    let single: Vec<u32> = (0..items as u32).collect();
    let ones = gpu_counts(&g, &bits, words, &single, 1);
    assert_eq!(ones, twin::support_counts_bits(&bits, words, &single, 1));
}

#[test]
fn bad_launches_are_errors() {
    let g = gpu();
    let b = upload_u32(&g, &[1, 2, 3, 4]);
    let small = g.alloc(4, "count").unwrap();
    let err = |len, m| {
        ik::support(&g, &b, 4, &b, m, len, &small)
            .unwrap_err()
            .to_string()
    };
    assert!(err(0, 1).contains("len = 0"));
    assert!(err(65, 1).contains("len = 65"));
    assert!(err(1, 1000).contains("needs"));
    let odd = ik::support(&g, &b, 3, &b, 1, 1, &small).unwrap_err();
    assert!(odd.to_string().contains("multiple of 4"), "{odd}");
    assert!(
        ik::pack_bits(&[vec![0, 5]], 3)
            .unwrap_err()
            .to_string()
            .contains("item 5")
    );
    // No candidates is nothing to do; no transactions gives zero counts.
    ik::support(&g, &b, 4, &b, 0, 1, &small).unwrap();
    let zero = gpu_counts(&g, &[], 0, &[0, 1], 1);
    assert_eq!(zero, [0, 0]);
}
