//! The end of `kiln sweep`: `trials.csv` (sorted by the metric), `best.toml` (a ready
//! `kiln train --config` for the winner), `summary.json` with the best trial's test metrics
//! (the test split is evaluated once, for that trial only), the table in the terminal, and
//! three plots: `sweep_params.png` (the metric against each hyperparameter, log axes for
//! log-uniform ones), `sweep_curves.png` (every trial's validation curve, pruned ones marked),
//! `sweep_best.png` (best so far against trials).

use std::path::Path;
use std::process::Command;

use plotters::prelude::*;

use super::sweep::{Trial, epoch_metrics, trial_dir};
use super::sweep_plan::Plan;
use super::{Error, Result};
use crate::sweep::journal::TrialState;

/// A trial's row: (id, state, metric, epochs, seconds).
type Row = (usize, Option<TrialState>, Option<f64>, usize, f64);

fn rows(plan: &Plan, trials: &[Trial]) -> Vec<Row> {
    let mut rows: Vec<Row> = trials
        .iter()
        .map(|t| match t.end {
            Some((s, m, e, secs)) => (t.id, Some(s), m, e, secs),
            None => (t.id, None, None, 0, 0.0),
        })
        .collect();
    let m = plan.metric;
    rows.sort_by(|a, b| match (a.2, b.2) {
        (Some(x), Some(y)) if m.better(x, y) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) if m.better(y, x) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.0.cmp(&b.0),
    });
    rows
}

fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f:.6}"),
        other => other.to_string(),
    }
}

fn state(s: Option<TrialState>) -> &'static str {
    s.map_or("not run", TrialState::name)
}

/// Write the results of the sweep in `dir` and print its table.
pub(super) fn report(dir: &Path, plan: &Plan, trials: &[Trial], quiet: bool) -> Result<()> {
    let keys: Vec<&String> = plan.space.params.keys().collect();
    let rows = rows(plan, trials);
    let mname = plan.metric.name();
    let mut csv = format!("trial,state,{mname},epochs,seconds");
    for k in &keys {
        csv += &format!(",{k}");
    }
    csv.push('\n');
    for (id, st, m, e, secs) in &rows {
        csv += &format!(
            "{id},{},{},{e},{secs:.2}",
            state(*st),
            m.map_or(String::new(), |v| format!("{v}"))
        );
        for k in &keys {
            csv += &format!(",{}", value(&trials[*id].params[*k]));
        }
        csv.push('\n');
    }
    crate::io::write_atomic(&dir.join("trials.csv"), csv.as_bytes())?;
    // The winner: the best complete trial (a pruned one never trained to the end).
    let best = rows
        .iter()
        .find(|r| r.1 == Some(TrialState::Complete) && r.2.is_some())
        .copied();
    let mut summary = serde_json::json!({
        "metric": mname,
        "direction": if plan.metric.maximize() { "max" } else { "min" },
        "method": format!("{:?}", plan.section.method).to_lowercase(),
        "trials": trials.len(),
        "complete": rows.iter().filter(|r| r.1 == Some(TrialState::Complete)).count(),
        "pruned": rows.iter().filter(|r| r.1 == Some(TrialState::Pruned)).count(),
        "failed": rows.iter().filter(|r| r.1 == Some(TrialState::Failed)).count(),
        "epochs_total": rows.iter().map(|r| r.3).sum::<usize>(),
    });
    if let Some((id, _, m, e, _)) = best {
        let cfg = toml::to_string_pretty(&plan.trials[id].1).unwrap_or_default();
        let head = format!(
            "# The best trial ({id}) of the sweep in {}: {mname} {:.6} after {e} epochs.\n\
             # kiln train --config best.toml\n",
            dir.display(),
            m.unwrap_or(f64::NAN)
        );
        crate::io::write_atomic(&dir.join("best.toml"), (head + &cfg).as_bytes())?;
        summary["best_trial"] = id.into();
        summary["best_metric"] = m.into();
        let params: serde_json::Map<String, serde_json::Value> = trials[id]
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        summary["best_params"] = params.into();
        summary["best_test"] = test_once(&trial_dir(dir, id))?;
    }
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    crate::io::write_atomic(&dir.join("summary.json"), text.as_bytes())?;
    plots(dir, plan, trials).map_err(|e| Error(format!("sweep plots: {e}")))?;
    print_table(dir, plan, trials, &rows, &summary, quiet);
    Ok(())
}

/// The test metrics of the best trial's run (`kiln eval RUN --json`): the only time the sweep
/// touches a test split.
fn test_once(run: &Path) -> Result<serde_json::Value> {
    let exe = std::env::current_exe().map_err(|e| Error(e.to_string()))?;
    let out = Command::new(exe)
        .arg("eval")
        .arg(run)
        .arg("--json")
        .output()
        .map_err(|e| Error(format!("kiln eval {}: {e}", run.display())))?;
    if !out.status.success() {
        return Err(Error(format!(
            "kiln eval {}: {}",
            run.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| Error(format!("kiln eval output: {e}")))
}

fn print_table(
    dir: &Path,
    plan: &Plan,
    trials: &[Trial],
    rows: &[Row],
    summary: &serde_json::Value,
    quiet: bool,
) {
    let keys: Vec<&String> = plan.space.params.keys().collect();
    let mname = plan.metric.name();
    if !quiet {
        let mut head = format!(
            "{:>5}  {:<8}  {:>12}  {:>6}  {:>8}",
            "trial", "state", mname, "epochs", "seconds"
        );
        for k in &keys {
            head += &format!("  {k:>12}");
        }
        println!("\n{head}");
        for (id, st, m, e, secs) in rows.iter().take(15) {
            let mut line = format!(
                "{id:>5}  {:<8}  {:>12}  {e:>6}  {secs:>8.1}",
                state(*st),
                m.map_or("-".into(), |v| format!("{v:.4}"))
            );
            for k in &keys {
                line += &format!("  {:>12}", value(&trials[*id].params[*k]));
            }
            println!("{line}");
        }
        if rows.len() > 15 {
            println!("  ... {} more in trials.csv", rows.len() - 15);
        }
        println!(
            "\nsweep directory: {} (trials.csv, best.toml, summary.json, sweep_params.png, \
             sweep_curves.png, sweep_best.png)",
            dir.display()
        );
    }
    let test = &summary["best_test"];
    let test_line = match (
        test.get("classification")
            .and_then(|c| c.get("accuracy"))
            .and_then(|a| a.as_f64()),
        test.get("loss").and_then(|l| l.as_f64()),
    ) {
        (Some(acc), Some(l)) => {
            format!("; its test accuracy {:.2}%, test loss {l:.4}", 100.0 * acc)
        }
        (None, Some(l)) => format!("; its test loss {l:.4}"),
        _ => String::new(),
    };
    match summary.get("best_trial").and_then(|b| b.as_u64()) {
        Some(b) => println!(
            "{} trials ({} complete, {} pruned, {} failed, {} epochs in all): best {mname} {:.4} \
             (trial {b}){test_line}",
            summary["trials"],
            summary["complete"],
            summary["pruned"],
            summary["failed"],
            summary["epochs_total"],
            summary["best_metric"].as_f64().unwrap_or(f64::NAN)
        ),
        None => println!(
            "{} trials, none complete ({} pruned, {} failed)",
            summary["trials"], summary["pruned"], summary["failed"]
        ),
    }
}

type Plot = std::result::Result<(), Box<dyn std::error::Error>>;

fn plots(dir: &Path, plan: &Plan, trials: &[Trial]) -> Plot {
    crate::train::plot::register_font();
    params_plot(&dir.join("sweep_params.png"), plan, trials)?;
    curves_plot(dir, &dir.join("sweep_curves.png"), plan, trials)?;
    best_plot(&dir.join("sweep_best.png"), plan, trials)
}

fn num(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

fn bounds(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// The metric against each hyperparameter: one panel per key; text values as categories.
fn params_plot(path: &Path, plan: &Plan, trials: &[Trial]) -> Plot {
    let keys: Vec<&String> = plan.space.params.keys().collect();
    let root = BitMapBackend::new(path, (420 * keys.len().max(1) as u32, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let done: Vec<(&Trial, f64)> = trials
        .iter()
        .filter_map(|t| t.end.and_then(|e| e.1).map(|m| (t, m)))
        .collect();
    let (ylo, yhi) = bounds(done.iter().map(|d| d.1));
    for (panel, k) in root.split_evenly((1, keys.len().max(1))).iter().zip(&keys) {
        let dist = &plan.space.params[*k];
        let numeric = done.iter().all(|(t, _)| num(&t.params[*k]).is_some());
        // Log axis: log-uniform, or positive values spanning more than a factor of 20.
        let (lo, hi) = done
            .iter()
            .filter_map(|(t, _)| num(&t.params[*k]))
            .fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
        let log = dist.is_log() || (numeric && lo > 0.0 && hi / lo > 20.0);
        let mut cats: Vec<String> = done.iter().map(|(t, _)| value(&t.params[*k])).collect();
        cats.sort();
        cats.dedup();
        let x = |t: &Trial| -> f64 {
            if numeric {
                let v = num(&t.params[*k]).unwrap_or(0.0);
                if log { v.max(1e-300).log10() } else { v }
            } else {
                cats.iter()
                    .position(|c| *c == value(&t.params[*k]))
                    .unwrap_or(0) as f64
            }
        };
        let (xlo, xhi) = if numeric {
            bounds(done.iter().map(|(t, _)| x(t)))
        } else {
            (-0.5, cats.len() as f64 - 0.5)
        };
        let xdesc = if log {
            format!("log10 {k}")
        } else {
            k.to_string()
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
        let cat_label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                cats[i as usize].clone()
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(xdesc)
            .y_desc(plan.metric.name())
            .label_style(("sans-serif", 13));
        let short = |v: &f64| {
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        };
        if numeric {
            mesh.x_labels(6).x_label_formatter(&short);
        } else {
            mesh.x_labels(cats.len()).x_label_formatter(&cat_label);
        }
        mesh.draw()?;
        chart.draw_series(done.iter().map(|(t, m)| {
            let pruned = t.end.is_some_and(|e| e.0 == TrialState::Pruned);
            let c = if pruned {
                RGBColor(200, 120, 60)
            } else {
                RGBColor(40, 90, 180)
            };
            Circle::new((x(t), *m), 4, c.filled())
        }))?;
    }
    root.present()?;
    Ok(())
}

/// Every trial's metric per epoch; pruned trials in orange, ending in a cross.
fn curves_plot(dir: &Path, path: &Path, plan: &Plan, trials: &[Trial]) -> Plot {
    let curves: Vec<(bool, Vec<(f64, f64)>)> = trials
        .iter()
        .filter(|t| t.end.is_some())
        .map(|t| {
            let vals = epoch_metrics(&trial_dir(dir, t.id), plan.metric).unwrap_or_default();
            let pts = vals
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| ((i + 1) as f64, v)))
                .filter(|p| p.1.is_finite())
                .collect();
            (t.end.is_some_and(|e| e.0 == TrialState::Pruned), pts)
        })
        .collect();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (ylo, yhi) = bounds(curves.iter().flat_map(|c| c.1.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&root)
        .caption("validation curves (orange: pruned)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..(plan.max_epochs as f64 + 0.5), ylo..yhi)?;
    chart
        .configure_mesh()
        .x_labels(plan.max_epochs.min(12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("epoch")
        .y_desc(plan.metric.name())
        .label_style(("sans-serif", 13))
        .draw()?;
    for (pruned, pts) in &curves {
        let c = if *pruned {
            RGBColor(220, 130, 60)
        } else {
            RGBColor(40, 90, 180)
        };
        chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
        if let (true, Some(&last)) = (*pruned, pts.last()) {
            chart.draw_series(std::iter::once(Cross::new(last, 5, c.stroke_width(2))))?;
        }
    }
    root.present()?;
    Ok(())
}

/// The best metric so far against the trial id.
fn best_plot(path: &Path, plan: &Plan, trials: &[Trial]) -> Plot {
    let mut best: Option<f64> = None;
    let mut pts = Vec::new();
    for t in trials {
        if let Some(m) = t.end.and_then(|e| e.1)
            && best.is_none_or(|b| plan.metric.better(m, b))
        {
            best = Some(m);
        }
        if let Some(b) = best {
            pts.push((t.id as f64, b));
        }
    }
    let root = BitMapBackend::new(path, (700, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (ylo, yhi) = bounds(pts.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption("best so far", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(trials.len() as f64 - 0.5).max(0.5), ylo..yhi)?;
    chart
        .configure_mesh()
        .x_labels(trials.len().min(12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("trial")
        .y_desc(plan.metric.name())
        .label_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(LineSeries::new(pts, RGBColor(40, 140, 80).stroke_width(2)))?;
    root.present()?;
    Ok(())
}
