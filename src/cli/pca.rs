//! `kiln pca`: principal components of the rows of a CSV file (covariance on the GPU, Jacobi
//! eigen-decomposition on the host; see `kiln::unsupervised::pca`).
//!
//! Writes to the run directory (`--out`, default `runs/pca`): `projected.csv` (one row per input
//! row in order, columns `pc1..pcC`, then the `--label` column when given),
//! `components.csv` (one row per component: explained variance, its ratio, then the loadings
//! per prepared feature) and `summary.json`.

use clap::Args;
use serde_json::json;

use super::cluster::InputArgs;
use super::{Error, Result};
use crate::io::write_atomic;
use crate::unsupervised::Pca;

/// Flags of `kiln pca`.
#[derive(Debug, Args)]
pub struct PcaArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Components to keep (1 to the number of prepared features).
    #[arg(long, default_value_t = 2)]
    components: usize,
}

/// Run `kiln pca`.
pub fn run(a: PcaArgs) -> Result<()> {
    let (f, n) = a.input.features()?;
    if a.components == 0 || a.components > f.d {
        return Err(Error(format!(
            "--components {}: expected 1 to {} (the prepared features of {})",
            a.components,
            f.d,
            a.input.data.display()
        )));
    }
    let dir = a.input.out_dir("pca");
    let fit = Pca::new(a.components).fit(&f.x, f.d)?;
    let z = fit.transform(&f.x)?;
    let c = a.components;
    let mut head: Vec<String> = (1..=c).map(|i| format!("pc{i}")).collect();
    if let Some(l) = &a.input.label {
        head.push(l.clone());
    }
    let mut out = format!("{}\n", head.join(","));
    for (i, row) in z.chunks(c).enumerate() {
        let mut cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        if let Some(labels) = &f.labels {
            let l = labels[i];
            cells.push(if l >= 0 {
                f.label_names[l as usize].clone()
            } else {
                String::new()
            });
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    write_atomic(&dir.join("projected.csv"), out.as_bytes())?;
    let mut comp = format!("component,explained_variance,ratio,{}\n", f.names.join(","));
    for (i, v) in fit.components.chunks(f.d).enumerate() {
        let loads: Vec<String> = v.iter().map(|e| e.to_string()).collect();
        comp.push_str(&format!(
            "pc{},{},{},{}\n",
            i + 1,
            fit.explained_variance[i],
            fit.explained_variance_ratio[i],
            loads.join(",")
        ));
    }
    write_atomic(&dir.join("components.csv"), comp.as_bytes())?;
    let s = json!({
        "rows": n, "features": f.d, "components": c,
        "explained_variance": fit.explained_variance,
        "explained_variance_ratio": fit.explained_variance_ratio,
        "cumulative_ratio": fit.explained_variance_ratio.iter().sum::<f64>(),
    });
    let text = serde_json::to_string_pretty(&s).unwrap_or_default();
    write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    for (i, r) in fit.explained_variance_ratio.iter().enumerate() {
        println!(
            "pc{}: explained variance {:.4} ({:.1} %)",
            i + 1,
            fit.explained_variance[i],
            100.0 * r
        );
    }
    println!("wrote {}", dir.display());
    Ok(())
}
