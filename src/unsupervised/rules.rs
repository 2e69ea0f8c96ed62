//! Association rules `A => C` from frequent itemsets, with their measures.
//!
//! For a frequent itemset X split into a non-empty antecedent A and consequent C = X \ A, with
//! `s(.)` the share of transactions holding a set:
//!
//! ```text
//! support    = s(X)
//! confidence = s(X) / s(A)
//! lift       = confidence / s(C)
//! leverage   = s(X) - s(A) s(C)
//! conviction = (1 - s(C)) / (1 - confidence)      (infinite when confidence = 1)
//! ```
//!
//! Every subset of a frequent itemset is frequent, so s(A) and s(C) come from the same search.
//! An itemset of k items gives 2^k - 2 rules; [`RuleOptions::max_rules`] caps the rules
//! considered (length by length: a length whose rules would pass the cap is left out whole, and
//! [`Rules::truncated`] says so).
//!
//! ```no_run
//! use kiln::unsupervised::{Apriori, RuleOptions, Transactions, association_rules};
//! let t = Transactions::from_baskets("bread,milk\nbread,butter,milk\nbeer,bread\n")?;
//! let sets = Apriori::new(0.5).fit(&t)?;
//! let rules = association_rules(&sets, &RuleOptions::default())?;
//! for r in &rules.rules {
//!     println!("{:?} => {:?}: confidence {:.2}, lift {:.2}",
//!              t.names(&r.antecedent), t.names(&r.consequent), r.confidence, r.lift);
//! }
//! # Ok::<(), kiln::Error>(())
//! ```

use std::cmp::Ordering;

use super::apriori::FrequentItemsets;
use crate::error::{Result, arg_err};

/// Largest [`RuleOptions::max_rules`] accepted.
pub const MAX_RULES: usize = 1_000_000_000;

/// One rule and its measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Antecedent item indices, increasing.
    pub antecedent: Vec<u32>,
    /// Consequent item indices, increasing.
    pub consequent: Vec<u32>,
    /// Transactions holding both.
    pub count: u32,
    /// s(A and C).
    pub support: f64,
    /// s(A and C) / s(A).
    pub confidence: f64,
    /// confidence / s(C).
    pub lift: f64,
    /// s(A and C) - s(A) s(C).
    pub leverage: f64,
    /// (1 - s(C)) / (1 - confidence); infinite at confidence 1.
    pub conviction: f64,
}

/// The measure rules are sorted by (descending; ties by confidence, lift, support, then items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOrder {
    /// Lift.
    Lift,
    /// Confidence.
    Confidence,
    /// Support.
    Support,
    /// Leverage.
    Leverage,
    /// Conviction.
    Conviction,
}

impl std::str::FromStr for RuleOrder {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "lift" => RuleOrder::Lift,
            "confidence" => RuleOrder::Confidence,
            "support" => RuleOrder::Support,
            "leverage" => RuleOrder::Leverage,
            "conviction" => RuleOrder::Conviction,
            _ => {
                return arg_err(
                    "rules",
                    format!(
                        "sort by {s}: expected lift, confidence, support, leverage or conviction"
                    ),
                );
            }
        })
    }
}

/// Which rules to keep and how to sort them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleOptions {
    /// Smallest confidence kept, in [0, 1].
    pub min_confidence: f64,
    /// Smallest lift kept, at least 0.
    pub min_lift: f64,
    /// Sort key.
    pub order: RuleOrder,
    /// Most rules considered (before the filters).
    pub max_rules: usize,
}

impl Default for RuleOptions {
    /// Confidence at least 0.8 (as arules), any lift, sorted by lift, 10 million rules at most.
    fn default() -> Self {
        RuleOptions {
            min_confidence: 0.8,
            min_lift: 0.0,
            order: RuleOrder::Lift,
            max_rules: 10_000_000,
        }
    }
}

/// The rules that pass the filters, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Rules, best first.
    pub rules: Vec<Rule>,
    /// Rules considered before the filters.
    pub considered: usize,
    /// Set when the cap left out the rules of itemsets of this length and longer.
    pub truncated: Option<usize>,
}

/// Rules from frequent itemsets (see the module note).
pub fn association_rules(sets: &FrequentItemsets, opts: &RuleOptions) -> Result<Rules> {
    if !(0.0..=1.0).contains(&opts.min_confidence) {
        return arg_err(
            "rules",
            format!("min_confidence = {}: expected 0 to 1", opts.min_confidence),
        );
    }
    if !(opts.min_lift >= 0.0 && opts.min_lift.is_finite()) {
        return arg_err(
            "rules",
            format!("min_lift = {}: expected a number >= 0", opts.min_lift),
        );
    }
    if opts.max_rules > MAX_RULES {
        return arg_err(
            "rules",
            format!(
                "max_rules = {}: expected at most {MAX_RULES}",
                opts.max_rules
            ),
        );
    }
    let map = sets.to_map();
    let n = sets.n as f64;
    let (mut rules, mut considered, mut truncated) = (Vec::new(), 0usize, None);
    let mut by_len = sets.sets.iter().filter(|s| s.items.len() >= 2).peekable();
    while let Some(first) = by_len.peek() {
        let k = first.items.len();
        let group: Vec<_> = std::iter::from_fn(|| by_len.next_if(|s| s.items.len() == k)).collect();
        let per = if k >= 63 {
            usize::MAX
        } else {
            (1usize << k) - 2
        };
        let total = per.saturating_mul(group.len());
        if considered.saturating_add(total) > opts.max_rules {
            truncated = Some(k);
            break;
        }
        considered += total;
        for x in group {
            for mask in 1..(1u64 << k) - 1 {
                let (a, c): (Vec<u32>, Vec<u32>) = {
                    let (a, c): (Vec<_>, Vec<_>) = x
                        .items
                        .iter()
                        .enumerate()
                        .partition(|(j, _)| mask >> j & 1 == 1);
                    (
                        a.into_iter().map(|t| *t.1).collect(),
                        c.into_iter().map(|t| *t.1).collect(),
                    )
                };
                let (Some(&ca), Some(&cc)) = (map.get(&a), map.get(&c)) else {
                    return arg_err(
                        "rules",
                        format!("a subset of {:?} is missing from the itemsets", x.items),
                    );
                };
                let support = x.count as f64 / n;
                let confidence = x.count as f64 / ca as f64;
                let sc = cc as f64 / n;
                let lift = confidence / sc;
                if confidence < opts.min_confidence || lift < opts.min_lift {
                    continue;
                }
                rules.push(Rule {
                    antecedent: a,
                    consequent: c,
                    count: x.count,
                    support,
                    confidence,
                    lift,
                    leverage: support - (ca as f64 / n) * sc,
                    conviction: if x.count == ca {
                        f64::INFINITY
                    } else {
                        (1.0 - sc) / (1.0 - confidence)
                    },
                });
            }
        }
    }
    rules.sort_by(|p, q| compare(p, q, opts.order));
    Ok(Rules {
        rules,
        considered,
        truncated,
    })
}

fn key(r: &Rule, order: RuleOrder) -> f64 {
    match order {
        RuleOrder::Lift => r.lift,
        RuleOrder::Confidence => r.confidence,
        RuleOrder::Support => r.support,
        RuleOrder::Leverage => r.leverage,
        RuleOrder::Conviction => r.conviction,
    }
}

/// Descending by the key, then confidence, lift and support; then by items (a total order).
fn compare(p: &Rule, q: &Rule, order: RuleOrder) -> Ordering {
    let desc = |f: fn(&Rule) -> f64| f(q).total_cmp(&f(p));
    key(q, order)
        .total_cmp(&key(p, order))
        .then_with(|| desc(|r| r.confidence))
        .then_with(|| desc(|r| r.lift))
        .then_with(|| desc(|r| r.support))
        .then_with(|| p.antecedent.cmp(&q.antecedent))
        .then_with(|| p.consequent.cmp(&q.consequent))
}
