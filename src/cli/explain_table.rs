//! `kiln explain`'s table, drawn from its JSON document (`explain::document`): one line per
//! dispatch, then the totals per phase and per op, then the tuner's reasons in full.

use serde_json::Value;

/// A cell of `v` as text (`-` for null).
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `s` cut to `n` characters (an ellipsis marks the cut).
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// A count in engineering units: `12.3M`, `4.1G`.
fn si(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    let (d, u) = match x {
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    format!("{:.1}{u}", x / d)
}

/// Print lines of cells as columns (left-aligned text, right-aligned numbers from `right_from`).
fn columns(lines: &[Vec<String>], right_from: usize) {
    let n = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            let w = lines.iter().filter_map(|l| l.get(i));
            w.map(|c| c.chars().count()).max().unwrap_or(0)
        })
        .collect();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i >= right_from {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

/// The short form of a tuner reason: `cached`, `default` or `-`.
fn why_short(why: &str) -> String {
    why.split([':', ' ']).next().unwrap_or("").to_string()
}

/// Print the report.
pub(super) fn print(doc: &Value) {
    let empty = Vec::new();
    let ds = doc["dispatches"].as_array().unwrap_or(&empty);
    println!(
        "step {} (the first compiles the pipelines); adapter: {}; time: {}; ceilings: {:.1} GFLOP/s compute, {:.1} GB/s memory",
        cell(&doc["step"]),
        cell(&doc["adapter"]),
        cell(&doc["time_source"]),
        doc["ceilings"]["gflops"].as_f64().unwrap_or(f64::NAN),
        doc["ceilings"]["gbps"].as_f64().unwrap_or(f64::NAN)
    );
    let mut lines = vec![
        [
            "#", "phase", "op", "shapes", "entry", "wgsl", "variant", "why", "FLOPs", "bytes",
            "µs", "%ceil",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in ds {
        let pct = match (d["pct_of_ceiling"].as_f64(), d["bound"].as_str()) {
            (Some(p), Some(b)) => format!("{p:.1} {}", &b[..3]),
            _ => "-".into(),
        };
        lines.push(vec![
            cell(&d["seq"]),
            cell(&d["phase"]),
            cut(&cell(&d["op"]), 18),
            cut(&cell(&d["shapes"]), 34),
            cell(&d["entry"]),
            cell(&d["wgsl"]),
            cut(&cell(&d["variant"]), 28),
            why_short(&cell(&d["why"])),
            si(&d["flops"]),
            si(&d["bytes"]),
            format!("{:.1}", d["time_us"].as_f64().unwrap_or(0.0)),
            pct,
        ]);
    }
    columns(&lines, 8);
    println!(
        "\n{} dispatches captured; the runtime counted {}",
        ds.len(),
        cell(&doc["dispatches_counted"])
    );
    for (title, key) in [("per phase", "per_phase"), ("per op", "per_op")] {
        println!("\ntotals {title}:");
        let mut lines = vec![
            ["", "dispatches", "FLOPs", "bytes", "µs"]
                .map(String::from)
                .to_vec(),
        ];
        for t in doc[key].as_array().unwrap_or(&empty) {
            lines.push(vec![
                format!("  {}", cell(&t["name"])),
                cell(&t["dispatches"]),
                si(&t["flops"]),
                si(&t["bytes"]),
                format!("{:.1}", t["time_us"].as_f64().unwrap_or(0.0)),
            ]);
        }
        columns(&lines, 1);
    }
    let mut reasons: Vec<String> = ds
        .iter()
        .map(|d| cell(&d["why"]))
        .filter(|w| !w.starts_with("-"))
        .collect();
    reasons.dedup();
    reasons.sort();
    reasons.dedup();
    if !reasons.is_empty() {
        println!("\ntuner choices (kiln tune-kernels measures and caches them):");
        for r in reasons {
            println!("  {r}");
        }
    }
}
