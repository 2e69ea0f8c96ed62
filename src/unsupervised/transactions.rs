//! Transactions for association rules: sets of items, from basket files or CSV tables.
//!
//! **Baskets** (one transaction per line, items separated by commas): spaces around an item are
//! trimmed and empty items (`a,,b`) ignored. Documented behaviour for odd input:
//! - an item listed twice in one basket counts once (a transaction is a set); the number of
//!   such baskets is kept in [`Transactions::duplicates`];
//! - a line with no items (blank, or only commas and spaces) is an *empty transaction*: it is
//!   skipped, so it counts in no support and not in the number of transactions; its line is
//!   kept in [`Transactions::empty`];
//! - no transaction at all is an error.
//!
//! **Tables**: each cell becomes the item `column=value`. A missing cell (see
//! [`MISSING_MARKERS`](crate::data::table::MISSING_MARKERS)) gives no item. Numeric columns are
//! binned: at the edges given for the column ([`TableItems::cuts`], e.g. `age` at 18 gives
//! `age=<18` and `age=>=18`), or else into [`TableItems::bins`] equal-frequency bins (`age=<19`,
//! `age=[19,31)`, `age=>=31`; where repeated values would make a bin empty, its upper edge moves up
//! to the next distinct value, so a column of mostly zeros gives `sibsp=<1`, `sibsp=[1,2)`,
//! `sibsp=>=2`; a constant column gives one item named by its value).
//! Columns in [`TableItems::categorical`] keep their numbers as categories (`sibsp=0`). A row
//! with no item left is an empty transaction, skipped as above.
//!
//! Item indices: baskets number items in name order; tables number them column by column (in
//! column order), values in name order and bins in numeric order. Each transaction is a sorted
//! list of item indices.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::data::table::{ColumnKind, Table, is_missing, parse_number};
use crate::error::{Error, Result, arg_err, io_err};

/// Transactions: each a sorted, non-empty set of item indices, with the item names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transactions {
    /// Item names in index order.
    pub items: Vec<String>,
    /// Each transaction's items: sorted, no duplicates, never empty.
    pub rows: Vec<Vec<u32>>,
    /// The 1-based source line of each transaction.
    pub lines: Vec<usize>,
    /// Lines of the empty transactions that were skipped.
    pub empty: Vec<usize>,
    /// Transactions that listed an item more than once (counted once).
    pub duplicates: usize,
}

/// How a table's cells become items.
#[derive(Debug, Clone, PartialEq)]
pub struct TableItems {
    /// Columns left out (ids, names).
    pub drop: Vec<String>,
    /// Equal-frequency bins per numeric column (2 to [`MAX_BINS`]).
    pub bins: usize,
    /// Explicit bin edges for some numeric columns: (column, increasing edges).
    pub cuts: Vec<(String, Vec<f64>)>,
    /// Numeric columns whose values are categories, not numbers to bin.
    pub categorical: Vec<String>,
}

impl Default for TableItems {
    fn default() -> Self {
        TableItems {
            drop: Vec::new(),
            bins: 3,
            cuts: Vec::new(),
            categorical: Vec::new(),
        }
    }
}

/// Most bins per numeric column.
pub const MAX_BINS: usize = 100;

impl Transactions {
    /// Transactions from lists of item names (list i is line i + 1); see the module note for
    /// duplicates and empty lists.
    pub fn from_lists<S: AsRef<str>>(lists: &[Vec<S>]) -> Result<Transactions> {
        let names: BTreeSet<&str> = lists.iter().flatten().map(|s| s.as_ref()).collect();
        let index: BTreeMap<&str, u32> = names
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, i as u32))
            .collect();
        let rows = lists
            .iter()
            .map(|l| l.iter().map(|s| index[s.as_ref()]).collect())
            .collect();
        Self::build(names.into_iter().map(String::from).collect(), rows, None)
    }

    /// Parse basket text: one transaction per line, items separated by commas.
    pub fn from_baskets(text: &str) -> Result<Transactions> {
        let lists: Vec<Vec<&str>> = text
            .lines()
            .map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .collect();
        Self::from_lists(&lists)
    }

    /// Read a basket file (see [`Transactions::from_baskets`]).
    pub fn read_baskets(path: &Path) -> Result<Transactions> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        Self::from_baskets(&String::from_utf8_lossy(&bytes)).map_err(|e| match e {
            Error::Arg { msg, .. } => io_err(path, msg),
            e => e,
        })
    }

    /// Items from the cells of a table (see the module note).
    pub fn from_table(table: &Table, opts: &TableItems) -> Result<Transactions> {
        if !(2..=MAX_BINS).contains(&opts.bins) {
            return arg_err(
                "bins",
                format!("{} bins: expected 2 to {MAX_BINS}", opts.bins),
            );
        }
        for name in opts.drop.iter().chain(&opts.categorical) {
            table.column(name)?;
        }
        let mut items: Vec<String> = Vec::new();
        // Per row, its items (as indices into `items`).
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); table.len()];
        let mut cut_used = vec![false; opts.cuts.len()];
        for (c, col) in table.columns.iter().enumerate() {
            if opts.drop.contains(col) {
                continue;
            }
            let cut = opts.cuts.iter().position(|(name, _)| name == col);
            let numeric =
                table.infer_kind(c)? == ColumnKind::Numeric && !opts.categorical.contains(col);
            let (labels, of): (Vec<String>, Vec<Option<usize>>) = if numeric {
                let edges = match cut {
                    Some(k) => {
                        cut_used[k] = true;
                        check_edges(col, &opts.cuts[k].1)?
                    }
                    None => quantile_edges(table, c, opts.bins),
                };
                bin_column(table, c, &edges)
            } else if let Some(k) = cut {
                return arg_err(
                    "cut",
                    format!(
                        "column {col} holds categories, not numbers: it cannot be cut at {:?}",
                        opts.cuts[k].1
                    ),
                );
            } else {
                category_column(table, c)
            };
            let first = items.len() as u32;
            items.extend(labels.into_iter().map(|l| format!("{col}={l}")));
            for (row, o) in rows.iter_mut().zip(of) {
                if let Some(i) = o {
                    row.push(first + i as u32);
                }
            }
        }
        if let Some(k) = cut_used.iter().position(|u| !u) {
            table.column(&opts.cuts[k].0)?;
            return arg_err(
                "cut",
                format!("column {} is dropped: it cannot be cut", opts.cuts[k].0),
            );
        }
        let mut t = Self::build(items, rows, Some(&table.file))?;
        t.lines = t.lines.iter().map(|&i| table.lines[i - 1]).collect();
        t.empty = t.empty.iter().map(|&i| table.lines[i - 1]).collect();
        Ok(t)
    }

    /// Sort and dedupe each row, skip empty rows; `rows[i]` is "line" i + 1.
    /// `file` names the source in the error.
    fn build(items: Vec<String>, rows: Vec<Vec<u32>>, file: Option<&str>) -> Result<Transactions> {
        let mut t = Transactions {
            items,
            rows: Vec::new(),
            lines: Vec::new(),
            empty: Vec::new(),
            duplicates: 0,
        };
        for (i, mut r) in rows.into_iter().enumerate() {
            if r.is_empty() {
                t.empty.push(i + 1);
                continue;
            }
            r.sort_unstable();
            let before = r.len();
            r.dedup();
            t.duplicates += usize::from(r.len() < before);
            t.rows.push(r);
            t.lines.push(i + 1);
        }
        if t.rows.is_empty() {
            let msg = format!(
                "no transaction holds an item ({} empty transactions)",
                t.empty.len()
            );
            return arg_err(
                "transactions",
                file.map_or(msg.clone(), |f| format!("{f}: {msg}")),
            );
        }
        Ok(t)
    }

    /// Number of (non-empty) transactions.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Never true for a built value (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Items per transaction at most.
    pub fn longest(&self) -> usize {
        self.rows.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The names of a set of item indices, in index order.
    pub fn names(&self, set: &[u32]) -> Vec<&str> {
        set.iter()
            .map(|&i| self.items[i as usize].as_str())
            .collect()
    }
}

/// Edges must be finite and strictly increasing.
fn check_edges(col: &str, edges: &[f64]) -> Result<Vec<f64>> {
    if edges.is_empty()
        || edges.iter().any(|e| !e.is_finite())
        || edges.windows(2).any(|w| w[0] >= w[1])
    {
        return arg_err(
            "cut",
            format!("{col}: edges {edges:?} must be finite numbers in increasing order"),
        );
    }
    Ok(edges.to_vec())
}

/// Edges of `bins` equal-frequency bins of column `c` (repeated values merge bins).
fn quantile_edges(table: &Table, c: usize, bins: usize) -> Vec<f64> {
    let mut v: Vec<f64> = table
        .rows
        .iter()
        .filter_map(|r| parse_number(&r[c]))
        .collect();
    v.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = Vec::new();
    for j in 1..bins {
        let Some(&e) = v.get(j * v.len() / bins) else {
            break;
        };
        // Repeated values: the edge moves up to the next distinct value (if there is one).
        let floor = edges.last().copied().unwrap_or(v[0]);
        match (e > floor)
            .then_some(e)
            .or(v.iter().copied().find(|&x| x > floor))
        {
            Some(e) => edges.push(e),
            None => break,
        }
    }
    edges
}

/// Bin labels and each row's bin (`None` when missing).
fn bin_column(table: &Table, c: usize, edges: &[f64]) -> (Vec<String>, Vec<Option<usize>>) {
    let labels = if edges.is_empty() {
        // One value (a constant column): the item is named by it.
        let first = table.rows.iter().find_map(|r| parse_number(&r[c]));
        vec![first.map_or("any".into(), |v| v.to_string())]
    } else {
        let mut l = vec![format!("<{}", edges[0])];
        l.extend(edges.windows(2).map(|w| format!("[{},{})", w[0], w[1])));
        l.push(format!(">={}", edges[edges.len() - 1]));
        l
    };
    let of = table
        .rows
        .iter()
        .map(|r| parse_number(&r[c]).map(|x| edges.partition_point(|&e| e <= x)))
        .collect();
    (labels, of)
}

/// Category labels (sorted) and each row's category (`None` when missing).
fn category_column(table: &Table, c: usize) -> (Vec<String>, Vec<Option<usize>>) {
    let values: BTreeSet<&str> = table
        .rows
        .iter()
        .map(|r| r[c].as_str())
        .filter(|v| !is_missing(v))
        .collect();
    let labels: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    let of = table
        .rows
        .iter()
        .map(|r| {
            (!is_missing(&r[c]))
                .then(|| labels.binary_search(&r[c]).ok())
                .flatten()
        })
        .collect();
    (labels, of)
}
