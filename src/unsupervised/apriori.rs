//! Frequent itemsets by Apriori: level-wise candidates on the host, support counts on the GPU.
//!
//! Level k's candidates join two frequent (k-1)-itemsets that share their first k-2 items and
//! keep the join only when every (k-1)-subset is frequent (downward closure: a superset of an
//! infrequent set is infrequent). Their support counts come from `itemsets.wgsl`: the
//! transactions are uploaded once as one bitset per item (one bit per transaction), and a
//! candidate's count is the popcount of its items' bitsets ANDed together. The search stops at
//! `Apriori::max_len` items, at the longest transaction, or when a level has no candidates.
//!
//! An itemset is frequent when its count reaches `min_count`, the smallest integer with
//! `min_count / n >= min_support` (so `--min-support 0.05` over 1,309 transactions needs 66).
//!
//! **The candidate cap.** Candidates can grow exponentially (a low support over long
//! transactions). Before a level is counted, its candidates are generated up to
//! `Apriori::max_candidates`; past that the search stops, the result keeps every complete
//! level below, and [`FrequentItemsets::truncated`] says where and why. Nothing is silently cut.
//!
//! ```no_run
//! use kiln::unsupervised::{Apriori, Transactions};
//! let t = Transactions::from_baskets("bread,milk\nbread,butter,milk\nbeer,bread\n")?;
//! let sets = Apriori::new(0.5).fit(&t)?;
//! for s in &sets.sets {
//!     println!("{:?}: {} of {}", t.names(&s.items), s.count, sets.n);
//! }
//! # Ok::<(), kiln::Error>(())
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kiln_kernels::launch::itemsets as ik;

use super::transactions::Transactions;
use crate::Gpu;
use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

/// Default longest itemset (as arules).
pub const DEFAULT_MAX_LEN: usize = 10;
/// Longest itemset the counting kernel takes.
pub const MAX_LEN: usize = ik::MAX_LEN;
/// Default cap on the candidates of one level.
pub const DEFAULT_MAX_CANDIDATES: usize = 1_000_000;
/// Largest cap accepted (candidates are held in memory: at most 64 items x 4 bytes each).
pub const MAX_CANDIDATES: usize = 100_000_000;
/// Candidates per dispatch (bounds the candidate buffer at 64 MiB for 64-item candidates).
const BATCH: usize = 1 << 18;

/// The Apriori search's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Apriori {
    /// Smallest share of transactions an itemset must be in, in (0, 1].
    pub min_support: f64,
    /// Most items per itemset, 1 to [`MAX_LEN`].
    pub max_len: usize,
    /// Most candidates one level may have before the search stops (and says so).
    pub max_candidates: usize,
}

/// A frequent itemset: sorted item indices and the number of transactions holding them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Itemset {
    /// Item indices, increasing.
    pub items: Vec<u32>,
    /// Transactions holding every item.
    pub count: u32,
}

/// One level of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Items per itemset.
    pub len: usize,
    /// Candidates counted.
    pub candidates: usize,
    /// Of them, frequent.
    pub frequent: usize,
}

/// Where the candidate cap stopped the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// The level not counted (itemsets of this length and longer are missing).
    pub len: usize,
    /// The cap that was passed.
    pub cap: usize,
}

/// The result: every frequent itemset, level by level.
#[derive(Debug, Clone, PartialEq)]
pub struct FrequentItemsets {
    /// Transactions.
    pub n: usize,
    /// Count an itemset needs.
    pub min_count: u32,
    /// The longest itemset searched for (the setting, or the longest transaction if shorter).
    pub max_len: usize,
    /// Frequent itemsets: by length, then in item-index order.
    pub sets: Vec<Itemset>,
    /// Candidates and frequent itemsets per level.
    pub levels: Vec<Level>,
    /// Set when the candidate cap stopped the search (complete below `len`).
    pub truncated: Option<Truncation>,
}

impl FrequentItemsets {
    /// Share of transactions for a count.
    pub fn support(&self, count: u32) -> f64 {
        count as f64 / self.n as f64
    }

    /// The itemsets as a map from items to count.
    pub fn to_map(&self) -> BTreeMap<Vec<u32>, u32> {
        self.sets
            .iter()
            .map(|s| (s.items.clone(), s.count))
            .collect()
    }
}

impl Apriori {
    /// Itemsets in at least `min_support` of the transactions, up to [`DEFAULT_MAX_LEN`] items.
    pub fn new(min_support: f64) -> Apriori {
        Apriori {
            min_support,
            max_len: DEFAULT_MAX_LEN,
            max_candidates: DEFAULT_MAX_CANDIDATES,
        }
    }

    /// Set the longest itemset.
    pub fn max_len(self, max_len: usize) -> Apriori {
        Apriori { max_len, ..self }
    }

    /// Set the cap on one level's candidates.
    pub fn max_candidates(self, max_candidates: usize) -> Apriori {
        Apriori {
            max_candidates,
            ..self
        }
    }

    /// Check the settings, naming the one that is wrong.
    pub fn check(&self) -> Result<()> {
        let s = self.min_support;
        if s.is_nan() || s <= 0.0 {
            return arg_err(
                "apriori",
                format!(
                    "min_support = {s}: must be above 0 (at 0 every combination of items would \
                     be frequent), at most 1"
                ),
            );
        }
        if s > 1.0 {
            return arg_err(
                "apriori",
                format!("min_support = {s}: must be at most 1 (a share of the transactions)"),
            );
        }
        in_range("max_len", self.max_len, MAX_LEN, " items per itemset")?;
        in_range("max_candidates", self.max_candidates, MAX_CANDIDATES, "")
    }

    /// The smallest count c with `c / n >= min_support` (at least 1).
    pub fn min_count(&self, n: usize) -> u32 {
        let mut c = (self.min_support * n as f64).floor() as u64;
        while (c as f64) < self.min_support * n as f64 {
            c += 1;
        }
        while c > 1 && ((c - 1) as f64) >= self.min_support * n as f64 {
            c -= 1;
        }
        c.max(1) as u32
    }

    /// Mine `t` on the default GPU.
    pub fn fit(&self, t: &Transactions) -> Result<FrequentItemsets> {
        self.fit_on(&crate::device()?, t)
    }

    /// Mine `t` on `gpu`.
    pub fn fit_on(&self, gpu: &Arc<Gpu>, t: &Transactions) -> Result<FrequentItemsets> {
        self.check()?;
        let counter = GpuCounter::new(gpu, t)?;
        self.fit_with(t, |cand, len| counter.count(cand, len))
    }

    /// Mine `t` with any support counter: `count(cand, len)` returns the counts of the
    /// (candidates, len) item indices in `cand`. The GPU route and the CPU twin share this loop.
    pub fn fit_with(
        &self,
        t: &Transactions,
        mut count: impl FnMut(&[u32], usize) -> Result<Vec<u32>>,
    ) -> Result<FrequentItemsets> {
        self.check()?;
        let n = t.len();
        let mut out = FrequentItemsets {
            n,
            min_count: self.min_count(n),
            max_len: self.max_len.min(t.longest()),
            sets: Vec::new(),
            levels: Vec::new(),
            truncated: None,
        };
        let mut prev: Vec<Vec<u32>> = Vec::new();
        for len in 1..=out.max_len {
            let cand = if len == 1 {
                (t.items.len() <= self.max_candidates).then(|| (0..t.items.len() as u32).collect())
            } else {
                next_candidates(&prev, self.max_candidates)
            };
            let Some(cand) = cand else {
                out.truncated = Some(Truncation {
                    len,
                    cap: self.max_candidates,
                });
                break;
            };
            if cand.is_empty() {
                break;
            }
            let counts = count(&cand, len)?;
            prev.clear();
            for (c, &k) in cand.chunks(len).zip(&counts) {
                if k >= out.min_count {
                    prev.push(c.to_vec());
                    out.sets.push(Itemset {
                        items: c.to_vec(),
                        count: k,
                    });
                }
            }
            out.levels.push(Level {
                len,
                candidates: counts.len(),
                frequent: prev.len(),
            });
        }
        Ok(out)
    }
}

/// `name = v` must be in `1..=max`.
fn in_range(name: &str, v: usize, max: usize, unit: &str) -> Result<()> {
    if v == 0 || v > max {
        return arg_err(
            "apriori",
            format!("{name} = {v}: expected 1 to {max}{unit}"),
        );
    }
    Ok(())
}

/// Level k's candidates (flat, k items each) from the frequent (k-1)-itemsets `prev` (sorted,
/// each increasing): joins of two sets sharing the first k-2 items whose every (k-1)-subset is
/// frequent. `None` when there would be more than `cap`.
pub fn next_candidates(prev: &[Vec<u32>], cap: usize) -> Option<Vec<u32>> {
    let frequent: HashSet<&[u32]> = prev.iter().map(|v| v.as_slice()).collect();
    let mut out = Vec::new();
    let (mut made, mut sub) = (0usize, Vec::new());
    for (i, a) in prev.iter().enumerate() {
        let k1 = a.len();
        for b in prev[i + 1..]
            .iter()
            .take_while(|b| b[..k1 - 1] == a[..k1 - 1])
        {
            let mut c = a.clone();
            c.push(b[k1 - 1]);
            // The subsets without a[k1 - 1] or b[k1 - 1] are a and b; check the others.
            let all = (0..k1 - 1).all(|drop| {
                sub.clear();
                sub.extend(
                    c.iter()
                        .enumerate()
                        .filter(|&(j, _)| j != drop)
                        .map(|(_, &v)| v),
                );
                frequent.contains(sub.as_slice())
            });
            if all {
                made += 1;
                if made > cap {
                    return None;
                }
                out.extend(c);
            }
        }
    }
    Some(out)
}

/// The transactions as item bitsets on the GPU, and support counts of candidates from them.
pub struct GpuCounter {
    bits: Tensor,
    words: usize,
}

impl GpuCounter {
    /// Pack and upload `t`: (items, ceil(n / 32)) u32.
    pub fn new(gpu: &Arc<Gpu>, t: &Transactions) -> Result<GpuCounter> {
        let words = ik::words_for(t.len());
        let bits = ik::pack_bits(&t.rows, t.items.len())?;
        let bits = Tensor::from_slice_on(gpu, &bits, &[t.items.len(), words])?;
        Ok(GpuCounter { bits, words })
    }

    /// Counts of the (candidates, len) item indices in `cand`, batch by batch (each batch's
    /// dispatches recorded before the first read-back).
    pub fn count(&self, cand: &[u32], len: usize) -> Result<Vec<u32>> {
        if len == 0 || !cand.len().is_multiple_of(len) {
            return arg_err(
                "support",
                format!("{} indices are not candidates of {len} items", cand.len()),
            );
        }
        let items = self.bits.shape()[0] as u32;
        if let Some(&i) = cand.iter().find(|&&i| i >= items) {
            return arg_err("support", format!("item {i} beyond the {items} items"));
        }
        let gpu = self.bits.gpu();
        let mut counts = Vec::new();
        for batch in cand.chunks(BATCH * len) {
            let m = batch.len() / len;
            let c = Tensor::from_slice_on(gpu, batch, &[m, len])?;
            let out = Tensor::empty_on(gpu, &[m], DType::U32)?;
            ik::support(
                gpu,
                self.bits.buffer(),
                self.words,
                c.buffer(),
                m,
                len,
                out.buffer(),
            )?;
            counts.push(out);
        }
        let mut all = Vec::with_capacity(cand.len() / len);
        for c in counts {
            all.extend(c.to_vec::<u32>()?);
        }
        Ok(all)
    }
}
