//! `kiln cluster`: k-means (full or mini-batch) or DBSCAN on the rows of a CSV file, or a sweep over k to choose it.
//!
//! The table goes through `kiln train`'s preparation (missing values filled, categories
//! one-hot, numbers standardised); `--drop` leaves out columns that are not features and
//! `--label` keeps a column of known classes aside to score the clusters (ARI, NMI) without
//! fitting on it. The run directory (`--out`, default `runs/cluster`) gets, each file written
//! atomically:
//!
//! ```text
//! assignments.csv   row,cluster,distance   (input row order; DBSCAN: noise is -1, distance empty)
//! centroids.csv     k-means centroids in the prepared feature space, one column per feature
//! summary.json      inertia, silhouette, ARI / NMI with --label, iterations, seconds, sizes
//! clusters.png      the rows on their first two principal components, coloured by cluster
//! choose_k.csv      with --k A..B: k, inertia, silhouette (and elbow.png)
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::cluster_plot::{draw_elbow, draw_scatter};
use super::{Error, Result};
use crate::data::table::Table;
use crate::io::write_atomic;
use crate::unsupervised::metrics::{adjusted_rand_index, nmi, silhouette};
use crate::unsupervised::{
    Dbscan, FeatureOptions, Features, Init, KMeans, MiniBatchKMeans, Pca, prepare_features,
};

/// Largest k, restarts and iterations the flags accept (beyond them a typo is likelier).
const MAX_K: usize = 10_000;
const MAX_N_INIT: usize = 1_000;
const MAX_ITER: usize = 100_000;

/// Input flags shared by `kiln cluster` and `kiln pca`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// CSV file of rows (header auto-detected).
    pub data: PathBuf,
    /// A column that is not a feature (id, name); repeat for several.
    #[arg(long)]
    pub drop: Vec<String>,
    /// A column of known classes: kept aside, used only to score (ARI, NMI) or colour.
    #[arg(long)]
    pub label: Option<String>,
    /// Missing values: mean, median or most-frequent.
    #[arg(long, default_value = "mean")]
    pub missing: String,
    /// Categorical columns: one-hot or label.
    #[arg(long, default_value = "one-hot")]
    pub encoding: String,
    /// Numeric columns: standard, min-max or none.
    #[arg(long, default_value = "standard")]
    pub scaling: String,
    /// Run directory for the outputs.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl InputArgs {
    /// Read and prepare the table.
    pub fn features(&self) -> Result<(Features, usize)> {
        let opts = FeatureOptions {
            drop: self.drop.clone(),
            label: self.label.clone(),
            missing: self.missing.parse()?,
            categorical: self.encoding.parse()?,
            scaling: self.scaling.parse()?,
            ..FeatureOptions::default()
        };
        let table = Table::read_csv(&self.data, opts.header)?;
        let f = prepare_features(&table, &opts)?;
        let n = f.x.len() / f.d;
        Ok((f, n))
    }

    /// The run directory, `default` under `runs/` when `--out` is absent.
    pub fn out_dir(&self, default: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(default))
    }
}

/// Flags of `kiln cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Algorithm: kmeans, minibatch (mini-batch k-means) or dbscan.
    #[arg(long, default_value = "kmeans")]
    algo: String,
    /// Clusters (k-means): a number, or a range `A..B` (inclusive) to compare.
    #[arg(long, default_value = "3")]
    k: String,
    /// k-means restarts (the lowest inertia is kept).
    #[arg(long, default_value_t = 10)]
    n_init: usize,
    /// Most k-means iterations per restart.
    #[arg(long, default_value_t = 300)]
    max_iter: usize,
    /// Convergence tolerance, relative to the mean feature variance.
    #[arg(long, default_value_t = 1e-4)]
    tol: f64,
    /// Initialisation: k-means++, k-means|| or random.
    #[arg(long, default_value = "k-means++")]
    init: String,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mini-batch k-means: rows per batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Mini-batch k-means: passes over the data.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// DBSCAN radius (in the prepared, scaled feature space).
    #[arg(long)]
    eps: Option<f32>,
    /// DBSCAN: neighbours within eps (itself included) that make a core point.
    #[arg(long, default_value_t = 5)]
    min_samples: usize,
}

/// `--k`: one value or an inclusive range.
fn parse_k(s: &str, n: usize) -> Result<(usize, usize)> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| Error(format!("--k {s}: expected a number or a range like 2..10")))
    };
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (num(a)?, num(b.trim_start_matches('='))?),
        None => (num(s)?, num(s)?),
    };
    if lo == 0 {
        return Err(Error(format!("--k {s}: k must be at least 1")));
    }
    if lo > hi {
        return Err(Error(format!("--k {s}: the range is empty ({lo} > {hi})")));
    }
    if hi > MAX_K || hi > n {
        return Err(Error(format!(
            "--k {s}: k = {hi} exceeds the {} rows of the data",
            n.min(MAX_K)
        )));
    }
    Ok((lo, hi))
}

fn check_flags(a: &ClusterArgs) -> Result<KMeans> {
    if a.n_init == 0 || a.n_init > MAX_N_INIT {
        return Err(Error(format!(
            "--n-init {}: expected 1 to {MAX_N_INIT}",
            a.n_init
        )));
    }
    if a.max_iter == 0 || a.max_iter > MAX_ITER {
        return Err(Error(format!(
            "--max-iter {}: expected 1 to {MAX_ITER}",
            a.max_iter
        )));
    }
    if a.batch_size == 0 || a.epochs == 0 || a.epochs > MAX_ITER {
        return Err(Error(format!(
            "--batch-size {} --epochs {}: expected a batch of at least 1 row and 1 to {MAX_ITER} \
             epochs",
            a.batch_size, a.epochs
        )));
    }
    if !(a.tol >= 0.0 && a.tol < 1.0) {
        return Err(Error(format!(
            "--tol {}: expected a number in [0, 1)",
            a.tol
        )));
    }
    let init = match a.init.as_str() {
        "k-means++" | "kmeans++" | "plus-plus" => Init::PlusPlus,
        "random" => Init::Random,
        "k-means||" | "kmeans||" | "parallel" => Init::Parallel,
        other => {
            return Err(Error(format!(
                "--init {other}: expected k-means++, k-means|| or random"
            )));
        }
    };
    Ok(KMeans {
        k: 1,
        n_init: a.n_init,
        max_iter: a.max_iter,
        tol: a.tol,
        seed: a.seed,
        init,
    })
}

/// ARI and NMI against the known labels (rows whose label is missing left out).
fn label_scores(f: &Features, got: &[i32]) -> Option<(f64, f64)> {
    let truth = f.labels.as_ref()?;
    let (t, g): (Vec<i32>, Vec<i32>) = truth
        .iter()
        .zip(got)
        .filter(|(t, _)| **t >= 0)
        .map(|(&t, &g)| (t, g))
        .unzip();
    Some((adjusted_rand_index(&t, &g), nmi(&t, &g)))
}

fn csv_rows(header: &str, rows: impl Iterator<Item = String>) -> String {
    let mut s = format!("{header}\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

fn write_json(dir: &Path, summary: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(summary).unwrap_or_default();
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    Ok(())
}

/// assignments.csv, clusters.png and the common part of the summary.
fn write_common(dir: &Path, f: &Features, labels: &[i32], dist: Option<&[f32]>) -> Result<Value> {
    let rows = labels.iter().enumerate().map(|(i, l)| match dist {
        Some(d) => format!("{i},{l},{}", d[i]),
        None => format!("{i},{l},"),
    });
    write_atomic(
        &dir.join("assignments.csv"),
        csv_rows("row,cluster,distance", rows).as_bytes(),
    )?;
    let xy = project_2d(f)?;
    draw_scatter(&dir.join("clusters.png"), &xy, labels)?;
    let sil = silhouette(&f.x, f.d, labels, 0)?;
    let mut s = json!({ "rows": labels.len(), "features": f.d, "silhouette": sil });
    if let Some((ari, nmi)) = label_scores(f, labels) {
        s["adjusted_rand_index"] = json!(ari);
        s["nmi"] = json!(nmi);
    }
    Ok(s)
}

/// The rows on their first two principal components (one feature: the feature and 0).
pub fn project_2d(f: &Features) -> Result<Vec<(f32, f32)>> {
    if f.d == 1 {
        return Ok(f.x.iter().map(|&v| (v, 0.0)).collect());
    }
    let z = Pca::new(2).fit(&f.x, f.d)?.transform(&f.x)?;
    Ok(z.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// Run `kiln cluster`.
pub fn run(a: ClusterArgs) -> Result<()> {
    let base = check_flags(&a)?;
    let dir = a.input.out_dir("cluster");
    let (f, n) = a.input.features()?;
    let start = Instant::now();
    let mini = match a.algo.as_str() {
        "kmeans" | "k-means" => false,
        "minibatch" | "mini-batch" => true,
        "dbscan" => return run_dbscan(&a, &f, &dir, start),
        other => {
            return Err(Error(format!(
                "--algo {other}: expected kmeans, minibatch or dbscan"
            )));
        }
    };
    let (lo, hi) = parse_k(&a.k, n)?;
    if lo < hi {
        return choose_k(&base, &f, lo, hi, &dir);
    }
    let kmeans = KMeans { k: lo, ..base };
    let fit = if mini {
        MiniBatchKMeans {
            kmeans,
            batch_size: a.batch_size,
            epochs: a.epochs,
        }
        .fit(&f.x, f.d)?
    } else {
        kmeans.fit(&f.x, f.d)?
    };
    let labels: Vec<i32> = fit.labels.iter().map(|&l| l as i32).collect();
    let s = write_common(&dir, &f, &labels, Some(&fit.distances))?;
    let cents = fit.centroids.chunks(f.d).map(|c| {
        c.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    write_atomic(
        &dir.join("centroids.csv"),
        csv_rows(&f.names.join(","), cents).as_bytes(),
    )?;
    let mut sizes = vec![0usize; lo];
    for &l in &fit.labels {
        sizes[l as usize] += 1;
    }
    let fields = [
        ("algo", json!(a.algo)),
        ("k", json!(lo)),
        ("inertia", json!(fit.inertia)),
        ("iterations", json!(fit.iterations)),
        ("converged", json!(fit.converged)),
        ("n_init", json!(base.n_init)),
        ("best_init", json!(fit.best_init)),
        ("seed", json!(base.seed)),
        ("sizes", json!(sizes)),
    ];
    let line = format!(
        "{} k={lo}: inertia {:.4}, {} iterations",
        a.algo, fit.inertia, fit.iterations
    );
    finish(&dir, s, fields, start, &format!("{line}, sizes {sizes:?}"))
}

/// Add `fields` and the seconds since `start` to the summary, write it, print `line` with the
/// silhouette, the label scores and the directory.
fn finish<const N: usize>(
    dir: &Path,
    mut s: Value,
    fields: [(&str, Value); N],
    start: Instant,
    line: &str,
) -> Result<()> {
    for (key, v) in fields {
        s[key] = v;
    }
    s["seconds"] = json!(start.elapsed().as_secs_f64());
    write_json(dir, &s)?;
    println!("{line}, silhouette {}", fmt_opt(s["silhouette"].as_f64()));
    print_scores(&s);
    println!("wrote {}", dir.display());
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn print_scores(s: &Value) {
    if let (Some(ari), Some(nmi)) = (s["adjusted_rand_index"].as_f64(), s["nmi"].as_f64()) {
        println!("against --label: ARI {ari:.4}, NMI {nmi:.4}");
    }
}

/// `--k A..B`: inertia and silhouette per k, choose_k.csv, elbow.png and summary.json.
fn choose_k(base: &KMeans, f: &Features, lo: usize, hi: usize, dir: &Path) -> Result<()> {
    println!("{:>4} {:>14} {:>11}", "k", "inertia", "silhouette");
    let mut table = Vec::new();
    for k in lo..=hi {
        let fit = KMeans { k, ..base.clone() }.fit(&f.x, f.d)?;
        let labels: Vec<i32> = fit.labels.iter().map(|&l| l as i32).collect();
        let sil = silhouette(&f.x, f.d, &labels, 0)?;
        println!("{k:>4} {:>14.4} {:>11}", fit.inertia, fmt_opt(sil));
        table.push((k, fit.inertia, sil, label_scores(f, &labels)));
    }
    let rows = table
        .iter()
        .map(|(k, i, s, _)| format!("{k},{i},{}", s.map_or(String::new(), |v| v.to_string())));
    write_atomic(
        &dir.join("choose_k.csv"),
        csv_rows("k,inertia,silhouette", rows).as_bytes(),
    )?;
    draw_elbow(
        &dir.join("elbow.png"),
        &table.iter().map(|t| (t.0, t.1, t.2)).collect::<Vec<_>>(),
    )?;
    let best = table
        .iter()
        .filter_map(|t| t.2.map(|s| (t.0, s)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|t| t.0);
    let per_k: Vec<Value> = table
        .iter()
        .map(|(k, i, s, l)| {
            json!({ "k": k, "inertia": i, "silhouette": s,
                    "adjusted_rand_index": l.map(|v| v.0), "nmi": l.map(|v| v.1) })
        })
        .collect();
    write_json(
        dir,
        &json!({ "algo": "kmeans", "k_range": [lo, hi],
                             "best_silhouette_k": best, "per_k": per_k }),
    )?;
    if let Some(k) = best {
        println!("best silhouette at k = {k}");
    }
    println!("wrote {}", dir.display());
    Ok(())
}

fn run_dbscan(a: &ClusterArgs, f: &Features, dir: &Path, start: Instant) -> Result<()> {
    let eps = a
        .eps
        .ok_or_else(|| Error("--algo dbscan needs --eps (the neighbourhood radius)".into()))?;
    let fit = Dbscan::new(eps, a.min_samples).fit(&f.x, f.d)?;
    let s = write_common(dir, f, &fit.labels, None)?;
    let fields = [
        ("algo", json!("dbscan")),
        ("eps", json!(eps)),
        ("min_samples", json!(a.min_samples)),
        ("clusters", json!(fit.clusters)),
        ("noise", json!(fit.noise)),
        (
            "core_points",
            json!(fit.core.iter().filter(|&&c| c).count()),
        ),
    ];
    let line = format!(
        "dbscan eps={eps}: {} clusters, {} noise points",
        fit.clusters, fit.noise
    );
    finish(dir, s, fields, start, &line)
}
