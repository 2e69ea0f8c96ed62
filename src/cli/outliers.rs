//! `kiln outliers`: a score per row of a CSV file, higher = more anomalous (Isolation Forest,
//! LOF, Mahalanobis, robust z or an autoencoder; see `kiln::unsupervised::outlier`).
//!
//! The table goes through `kiln cluster`'s preparation (missing values filled, categories
//! one-hot, numbers standardised, `--drop` for non-features). `--label COL` names a column
//! that marks known outliers (its `--positive` value; by default the rarer of two values): it is
//! kept out of the features and only scores the result (ROC-AUC, average precision). The run
//! directory (`--out`, default `runs/outliers`) gets, each file written atomically:
//!
//! ```text
//! scores.csv     row,score,outlier[,label]   (input row order; outlier = 1 for the rows flagged
//!                                             at --contamination)
//! summary.json   method, settings, rows flagged and the threshold, ROC-AUC / AP with --label
//! ```

use std::path::Path;
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::cluster::InputArgs;
use super::{Error, Result};
use crate::io::write_atomic;
use crate::unsupervised::Features;
use crate::unsupervised::outlier::{
    Autoencoder, IsolationForest, Lof, Mahalanobis, RobustZ, average_precision,
    check_contamination, flag, roc_auc,
};

/// Flags of `kiln outliers`.
#[derive(Debug, Args)]
pub struct OutliersArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Method: iforest, lof, mahalanobis, robust-z or autoencoder.
    #[arg(long, default_value = "iforest")]
    method: String,
    /// Expected share of outliers, in (0, 0.5]: that many top-scoring rows are flagged.
    #[arg(long, default_value_t = 0.1)]
    contamination: f64,
    /// With --label: the label value that marks an outlier (default: the rarer of two values).
    #[arg(long)]
    positive: Option<String>,
    /// Seed (Isolation Forest draws, autoencoder initialisation and batches).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Isolation Forest: trees.
    #[arg(long, default_value_t = 100)]
    trees: usize,
    /// Isolation Forest: rows drawn per tree.
    #[arg(long, default_value_t = 256)]
    max_samples: usize,
    /// LOF: neighbours.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Autoencoder: hidden widths, comma separated (the middle one is the bottleneck).
    #[arg(long, default_value = "64,32,64")]
    hidden: String,
    /// Autoencoder: passes over the rows.
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Autoencoder: rows per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Autoencoder: Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
}

/// The rows that are known outliers (`None` where the label is missing), and the positive value.
fn truth(a: &OutliersArgs, f: &Features) -> Result<Option<(Vec<Option<bool>>, String)>> {
    let (Some(labels), Some(col)) = (&f.labels, &a.input.label) else {
        return Ok(None);
    };
    let names = &f.label_names;
    let count = |i: usize| labels.iter().filter(|&&l| l == i as i32).count();
    let pos = match &a.positive {
        Some(p) => names.iter().position(|n| n == p).ok_or_else(|| {
            Error(format!(
                "--positive {p}: column {col} has no such value (it has {})",
                names.join(", ")
            ))
        })?,
        None if names.len() == 2 && count(0) != count(1) => (count(1) < count(0)) as usize,
        None => {
            return Err(Error(format!(
                "--label {col}: {} distinct values ({}); name the outlier value with --positive",
                names.len(),
                names.join(", ")
            )));
        }
    };
    let t = labels
        .iter()
        .map(|&l| (l >= 0).then_some(l as usize == pos))
        .collect();
    Ok(Some((t, names[pos].clone())))
}

/// Score the rows with the chosen method; returns the scores and the method's settings.
fn score(a: &OutliersArgs, f: &Features, dir: &Path) -> Result<(Vec<f64>, Value)> {
    Ok(match a.method.as_str() {
        "iforest" | "isolation-forest" => {
            let m = IsolationForest::new()
                .trees(a.trees)
                .max_samples(a.max_samples)
                .seed(a.seed);
            let s = m.fit_score(&f.x, f.d)?;
            (
                s,
                json!({ "trees": a.trees, "max_samples": a.max_samples, "seed": a.seed }),
            )
        }
        "lof" => (Lof::new(a.k).fit_score(&f.x, f.d)?, json!({ "k": a.k })),
        "mahalanobis" => (Mahalanobis.fit_score(&f.x, f.d)?, json!({})),
        "robust-z" | "robust_z" => (RobustZ.fit_score(&f.x, f.d)?, json!({})),
        "autoencoder" => {
            let hidden = a
                .hidden
                .split(',')
                .map(|w| w.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| {
                    Error(format!(
                        "--hidden {}: expected widths like 32,8,32",
                        a.hidden
                    ))
                })?;
            let ae = Autoencoder {
                hidden: hidden.clone(),
                epochs: a.epochs,
                batch_size: a.batch_size,
                lr: a.lr,
                seed: a.seed,
                dir: Some(dir.join("autoencoder")),
            };
            let s = ae.fit_score(&f.x, f.d)?;
            let settings = json!({ "hidden": hidden, "epochs": a.epochs,
                                   "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed });
            (s, settings)
        }
        other => {
            return Err(Error(format!(
                "--method {other}: expected iforest, lof, mahalanobis, robust-z or autoencoder"
            )));
        }
    })
}

/// Run `kiln outliers`.
pub fn run(a: OutliersArgs) -> Result<()> {
    check_contamination(a.contamination)?;
    let dir = a.input.out_dir("outliers");
    let (f, n) = a.input.features()?;
    let known = truth(&a, &f)?;
    let start = Instant::now();
    let (scores, settings) = score(&a, &f, &dir)?;
    let seconds = start.elapsed().as_secs_f64();
    let (flags, threshold) = flag(&scores, a.contamination)?;
    let mut csv = String::from("row,score,outlier");
    if let Some(l) = &a.input.label {
        csv.push_str(&format!(",{l}"));
    }
    csv.push('\n');
    for (i, s) in scores.iter().enumerate() {
        csv.push_str(&format!("{i},{s},{}", flags[i] as u8));
        if let Some(labels) = &f.labels {
            let l = labels[i];
            let name = if l >= 0 {
                &f.label_names[l as usize]
            } else {
                ""
            };
            csv.push_str(&format!(",{name}"));
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("scores.csv"), csv.as_bytes())?;
    let flagged = flags.iter().filter(|&&b| b).count();
    let mut summary = json!({
        "method": a.method, "settings": settings, "rows": n, "features": f.d,
        "contamination": a.contamination, "flagged": flagged, "threshold": threshold,
        "seconds": seconds,
    });
    println!(
        "{} on {n} rows x {} features: {flagged} flagged at contamination {} (score >= {threshold:.4})",
        a.method, f.d, a.contamination
    );
    if let Some((t, positive)) = known {
        let hits = (0..n).filter(|&i| flags[i] && t[i] == Some(true)).count();
        let (s, t): (Vec<f64>, Vec<bool>) = scores
            .iter()
            .zip(&t)
            .filter_map(|(&s, t)| t.map(|t| (s, t)))
            .unzip();
        let (auc, ap) = (roc_auc(&s, &t), average_precision(&s, &t));
        summary["positive"] = json!(positive);
        summary["known_outliers"] = json!(t.iter().filter(|&&b| b).count());
        summary["flagged_known_outliers"] = json!(hits);
        summary["roc_auc"] = json!(auc);
        summary["average_precision"] = json!(ap);
        let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
        println!(
            "against --label ({positive} = outlier): ROC-AUC {}, average precision {}, {hits} of the flagged rows are known outliers",
            fmt(auc),
            fmt(ap)
        );
    }
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    println!("wrote {}", dir.display());
    Ok(())
}
