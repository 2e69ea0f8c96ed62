//! `kiln rules`: frequent itemsets (Apriori, support counts on the GPU) and association rules
//! from a basket file or a CSV table.
//!
//! Input (`--format auto` picks `table` for a `.csv` file and `baskets` otherwise): a basket file
//! has one transaction per line, items separated by commas; in a table each cell becomes the
//! item `column=value`, numeric columns binned (`--bins`, `--cut COL=EDGES`, `--categorical
//! COL`). Empty transactions are skipped and an item repeated in a basket counts once (both
//! reported); see `kiln::unsupervised::transactions`. The run directory (`--out`, default
//! `runs/rules`) gets, each file written atomically:
//!
//! ```text
//! itemsets.csv   items,count,support       (by support, then length, then items)
//! rules.csv      antecedent,consequent,support,confidence,lift,leverage,conviction  (sorted)
//! summary.json   transactions, items, thresholds, per-level candidates, caps hit, seconds
//! ```
//!
//! Itemsets are written `{a,b}` (quoted in the CSV). The top `--top` rules are printed as a
//! table. `--verify` recounts with the brute-force CPU twin (every subset of every
//! transaction) and fails unless the itemsets and counts are equal.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::{Error, Result};
use crate::data::HeaderMode;
use crate::data::table::Table;
use crate::io::write_atomic;
use crate::unsupervised::apriori::{DEFAULT_MAX_CANDIDATES, DEFAULT_MAX_LEN};
use crate::unsupervised::{
    Apriori, FrequentItemsets, RuleOptions, Rules, TableItems, Transactions, association_rules,
};
use kiln_kernels::reference::itemsets as twin;

/// Flags of `kiln rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// A basket file (one transaction per line, items separated by commas) or a CSV table.
    data: PathBuf,
    /// Input format: auto (table for .csv, else baskets), baskets or table.
    #[arg(long, default_value = "auto")]
    format: String,
    /// Smallest share of transactions a frequent itemset is in, in (0, 1].
    #[arg(long, default_value_t = 0.1)]
    min_support: f64,
    /// Most items per itemset (1 to 64).
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    max_len: usize,
    /// Most candidates one level may have; past it the search stops and says so.
    #[arg(long, default_value_t = DEFAULT_MAX_CANDIDATES)]
    max_candidates: usize,
    /// Smallest rule confidence kept, in [0, 1].
    #[arg(long, default_value_t = 0.8)]
    min_confidence: f64,
    /// Smallest rule lift kept.
    #[arg(long, default_value_t = 0.0)]
    min_lift: f64,
    /// Most rules considered before the filters; past it longer itemsets give no rules.
    #[arg(long, default_value_t = 10_000_000)]
    max_rules: usize,
    /// Sort rules by lift, confidence, support, leverage or conviction.
    #[arg(long, default_value = "lift")]
    sort: String,
    /// Rules printed.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Tables: equal-frequency bins per numeric column.
    #[arg(long, default_value_t = 3)]
    bins: usize,
    /// Tables: bin edges for a numeric column, `COL=E1,E2,...` (repeat for several columns).
    #[arg(long)]
    cut: Vec<String>,
    /// Tables: a numeric column whose values are categories (repeat for several).
    #[arg(long)]
    categorical: Vec<String>,
    /// Tables: a column that is not an item (id, name); repeat for several.
    #[arg(long)]
    drop: Vec<String>,
    /// Recount with the brute-force CPU twin and fail unless it agrees (exponential in the
    /// basket length: for short transactions).
    #[arg(long)]
    verify: bool,
    /// Run directory for the outputs.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `--device`.
    #[command(flatten)]
    device: super::DeviceArg,
}

/// `COL=E1,E2,...` as (column, edges).
fn parse_cut(s: &str) -> Result<(String, Vec<f64>)> {
    let bad = || {
        Error(format!(
            "--cut {s}: expected COLUMN=EDGE,EDGE,... (numbers)"
        ))
    };
    let (col, edges) = s.split_once('=').ok_or_else(bad)?;
    let edges = edges
        .split(',')
        .map(|e| e.trim().parse::<f64>().map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    Ok((col.trim().to_string(), edges))
}

fn read(a: &RulesArgs) -> Result<Transactions> {
    let table = match a.format.as_str() {
        "table" => true,
        "baskets" => false,
        "auto" => a
            .data
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
        other => {
            return Err(Error(format!(
                "--format {other}: expected auto, baskets or table"
            )));
        }
    };
    if !table {
        if !(a.cut.is_empty() && a.categorical.is_empty() && a.drop.is_empty()) {
            return Err(Error(
                "--cut, --categorical and --drop apply to tables (--format table)".into(),
            ));
        }
        return Ok(Transactions::read_baskets(&a.data)?);
    }
    let opts = TableItems {
        drop: a.drop.clone(),
        bins: a.bins,
        cuts: a.cut.iter().map(|c| parse_cut(c)).collect::<Result<_>>()?,
        categorical: a.categorical.clone(),
    };
    let t = Table::read_csv(&a.data, HeaderMode::Auto)?;
    Transactions::from_table(&t, &opts).map_err(|e| Error(format!("{}: {e}", a.data.display())))
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `{a,b}`.
fn set(t: &Transactions, items: &[u32]) -> String {
    format!("{{{}}}", t.names(items).join(","))
}

fn write_itemsets(dir: &Path, t: &Transactions, f: &FrequentItemsets) -> Result<()> {
    let mut order: Vec<_> = f.sets.iter().collect();
    order.sort_by(|p, q| {
        q.count
            .cmp(&p.count)
            .then(p.items.len().cmp(&q.items.len()))
            .then(p.items.cmp(&q.items))
    });
    let mut s = String::from("items,count,support\n");
    for x in order {
        let line = format!(
            "{},{},{}\n",
            field(&set(t, &x.items)),
            x.count,
            f.support(x.count)
        );
        s.push_str(&line);
    }
    write_atomic(&dir.join("itemsets.csv"), s.as_bytes())?;
    Ok(())
}

fn write_rules(dir: &Path, t: &Transactions, r: &Rules) -> Result<()> {
    let mut s = String::from("antecedent,consequent,support,confidence,lift,leverage,conviction\n");
    for x in &r.rules {
        s.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            field(&set(t, &x.antecedent)),
            field(&set(t, &x.consequent)),
            x.support,
            x.confidence,
            x.lift,
            x.leverage,
            x.conviction
        ));
    }
    write_atomic(&dir.join("rules.csv"), s.as_bytes())?;
    Ok(())
}

/// The top rules as a table on stdout.
fn print_top(t: &Transactions, r: &Rules, top: usize) {
    let shown: Vec<_> = r.rules.iter().take(top).collect();
    if shown.is_empty() {
        println!("no rule passes the thresholds");
        return;
    }
    let lhs: Vec<String> = shown.iter().map(|x| set(t, &x.antecedent)).collect();
    let rhs: Vec<String> = shown.iter().map(|x| set(t, &x.consequent)).collect();
    let wl = lhs.iter().map(String::len).max().unwrap_or(0).max(10);
    let wr = rhs.iter().map(String::len).max().unwrap_or(0).max(10);
    println!(
        "{:>3}  {:<wl$}     {:<wr$}  {:>8} {:>10} {:>7} {:>9} {:>10}",
        "#", "antecedent", "consequent", "support", "confidence", "lift", "leverage", "conviction"
    );
    for (i, x) in shown.iter().enumerate() {
        println!(
            "{:>3}  {:<wl$}  => {:<wr$}  {:>8.4} {:>10.4} {:>7.3} {:>9.4} {:>10.3}",
            i + 1,
            lhs[i],
            rhs[i],
            x.support,
            x.confidence,
            x.lift,
            x.leverage,
            x.conviction
        );
    }
}

/// The brute-force twin's itemsets (below a truncated level) must equal the search's.
fn verify(t: &Transactions, f: &FrequentItemsets) -> Result<()> {
    let below = f.truncated.map_or(usize::MAX, |x| x.len);
    let mut want = twin::brute_force(&t.rows, f.min_count, f.max_len);
    want.retain(|k, _| k.len() < below);
    let got = f.to_map();
    if got != want {
        let diff = want
            .iter()
            .find(|(k, v)| got.get(*k) != Some(v))
            .map(|p| p.0.clone());
        let extra = got.keys().find(|k| !want.contains_key(*k)).cloned();
        return Err(Error(format!(
            "--verify: the GPU search and the brute-force count differ ({} vs {} itemsets; first \
             difference at {})",
            got.len(),
            want.len(),
            set(t, &diff.or(extra).unwrap_or_default())
        )));
    }
    println!(
        "verified: equal to the brute-force CPU count ({} itemsets)",
        got.len()
    );
    Ok(())
}

/// Run `kiln rules`.
pub fn run(a: RulesArgs) -> Result<()> {
    let apriori = Apriori {
        min_support: a.min_support,
        max_len: a.max_len,
        max_candidates: a.max_candidates,
    };
    apriori
        .check()
        .map_err(|e| Error(flag_words(&e.to_string())))?;
    let opts = RuleOptions {
        min_confidence: a.min_confidence,
        min_lift: a.min_lift,
        order: a
            .sort
            .parse()
            .map_err(|e: crate::Error| Error(flag_words(&e.to_string())))?,
        max_rules: a.max_rules,
    };
    let dir = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join("rules"));
    let start = Instant::now();
    let t = read(&a)?;
    if !t.empty.is_empty() || t.duplicates > 0 {
        eprintln!(
            "note: {} empty transactions skipped (first at line {}), {} with a repeated item \
             (counted once)",
            t.empty.len(),
            t.empty.first().map_or("-".into(), |l| l.to_string()),
            t.duplicates
        );
    }
    let gpu = a.device.open()?;
    let f = apriori.fit_on(&gpu, &t)?;
    let mined = start.elapsed().as_secs_f64();
    if let Some(x) = f.truncated {
        eprintln!(
            "warning: level {} had more than {} candidates (--max-candidates): the search \
             stopped there, itemsets.csv holds every frequent itemset of up to {} items; raise \
             --min-support, lower --max-len or raise --max-candidates",
            x.len,
            x.cap,
            x.len - 1
        );
    }
    let rules = association_rules(&f, &opts).map_err(|e| Error(flag_words(&e.to_string())))?;
    if let Some(k) = rules.truncated {
        eprintln!(
            "warning: the rules of itemsets of {k} or more items would pass --max-rules {}: \
             rules.csv holds the rules of shorter itemsets only",
            opts.max_rules
        );
    }
    if a.verify {
        verify(&t, &f)?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error(format!("{}: {e}", dir.display())))?;
    write_itemsets(&dir, &t, &f)?;
    write_rules(&dir, &t, &rules)?;
    let summary = summary(&a, &t, &f, &rules, mined, start, &gpu.info().name);
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    println!(
        "{} transactions, {} items: {} frequent itemsets (support >= {}, count >= {}), {} rules \
         (confidence >= {}, lift >= {}), mined in {:.3} s on {}",
        t.len(),
        t.items.len(),
        f.sets.len(),
        a.min_support,
        f.min_count,
        rules.rules.len(),
        a.min_confidence,
        a.min_lift,
        mined,
        gpu.info().name
    );
    print_top(&t, &rules, a.top);
    println!("wrote {}", dir.display());
    Ok(())
}

/// Library messages name settings (`min_support = 0`); the CLI names its flags.
fn flag_words(msg: &str) -> String {
    let msg = msg
        .strip_prefix("apriori: ")
        .or(msg.strip_prefix("rules: "))
        .unwrap_or(msg);
    msg.replacen("min_support = ", "--min-support ", 1)
        .replacen("max_len = ", "--max-len ", 1)
        .replacen("max_candidates = ", "--max-candidates ", 1)
        .replacen("min_confidence = ", "--min-confidence ", 1)
        .replacen("min_lift = ", "--min-lift ", 1)
        .replacen("max_rules = ", "--max-rules ", 1)
        .replacen("sort by ", "--sort ", 1)
}

fn summary(
    a: &RulesArgs,
    t: &Transactions,
    f: &FrequentItemsets,
    r: &Rules,
    mined: f64,
    start: Instant,
    device: &str,
) -> Value {
    let levels: Vec<Value> = f
        .levels
        .iter()
        .map(|l| json!({ "len": l.len, "candidates": l.candidates, "frequent": l.frequent }))
        .collect();
    json!({
        "data": a.data.display().to_string(),
        "transactions": t.len(),
        "items": t.items.len(),
        "empty_transactions_skipped": t.empty.len(),
        "transactions_with_repeated_items": t.duplicates,
        "min_support": a.min_support,
        "min_count": f.min_count,
        "max_len": f.max_len,
        "max_candidates": a.max_candidates,
        "levels": levels,
        "itemsets": f.sets.len(),
        "truncated_at_len": f.truncated.map(|x| x.len),
        "min_confidence": a.min_confidence,
        "min_lift": a.min_lift,
        "sort": a.sort,
        "rules": r.rules.len(),
        "rules_considered": r.considered,
        "rules_truncated_at_len": r.truncated,
        "verified": a.verify,
        "mining_seconds": mined,
        "seconds": start.elapsed().as_secs_f64(),
        "device": device,
    })
}
