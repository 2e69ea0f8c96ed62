//! `kiln explain` (one training step, dispatch by dispatch) and `kiln train --trace` (Chrome
//! trace events): the dispatch count equals what the runtime counted, FLOPs follow the formulas
//! of matmul (2 M N K), conv (2 N C_out OH OW C_in KH KW) and attention (4 B H D times the
//! (query, key) pairs seen: T (T + 1) / 2 per head for causal self-attention), every dispatch of
//! the three models has a cost (FLOPs and bytes, no `-`), and the trace file is valid trace-event JSON with one GPU slice per dispatch.

use std::path::Path;

use serde_json::Value;

use crate::cli_util::{self, TINY_GPT, clean_error, kiln, s, tiny_text};

/// `kiln explain flags... --json`, parsed; checks what holds for every model.
fn explain(flags: &[&str]) -> Value {
    let mut args = vec!["explain", "--json"];
    args.extend_from_slice(flags);
    let (ok, stdout, stderr) = kiln(&args);
    assert!(ok, "kiln {args:?}: {stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let ds = doc["dispatches"].as_array().unwrap();
    assert!(!ds.is_empty());
    assert_eq!(ds.len() as u64, doc["dispatches_counted"].as_u64().unwrap());
    for phase in ["forward", "backward", "optimizer"] {
        assert!(
            ds.iter().any(|d| d["phase"] == phase),
            "no {phase} dispatch"
        );
    }
    for d in ds {
        let wgsl = d["wgsl"].as_str().unwrap();
        assert!(
            wgsl.starts_with("shaders/") && wgsl.contains(".wgsl:"),
            "{wgsl}"
        );
        assert!(d["time_us"].as_f64().unwrap() >= 0.0);
        assert!(
            !d["op"].as_str().unwrap().is_empty(),
            "a dispatch without an op: {d}"
        );
        assert!(
            d["flops"].is_u64() && d["bytes"].is_u64(),
            "a dispatch without a cost model: {d}"
        );
    }
    doc
}

/// The shapes of an op's inputs as `kiln explain` writes them (`[64, 64], [256, 64] -> ...`).
fn input_shapes(d: &Value) -> Vec<Vec<u64>> {
    let text = d["shapes"].as_str().unwrap();
    let ins = text.split(" -> ").next().unwrap();
    ins.split("], ")
        .map(|p| {
            let p = p.trim_matches(|c| c == '[' || c == ']');
            p.split(", ").filter_map(|x| x.parse().ok()).collect()
        })
        .collect()
}

/// Dispatches of `op` in `phase` running `entry` (a prefix).
fn rows<'a>(doc: &'a Value, phase: &str, op: &str, entry: &str) -> Vec<&'a Value> {
    let ds = doc["dispatches"].as_array().unwrap();
    ds.iter()
        .filter(|d| d["phase"] == phase && d["op"] == op)
        .filter(|d| d["entry"].as_str().unwrap().starts_with(entry))
        .collect()
}

#[test]
fn explain_mlp_matmul_flops_are_2mnk() {
    let png = cli_util::scratch_in("explain", "mlp").join("step.png");
    let doc = explain(&["--epochs", "1", "--graph", s(&png)]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "--graph step.png is a PNG"
    );
    let linear = rows(&doc, "forward", "linear", "main");
    assert_eq!(linear.len(), 3, "the default MLP has three layers");
    for d in linear {
        let sh = input_shapes(d);
        let (m, k, n) = (sh[0][0], sh[0][1], sh[1][0]);
        assert_eq!(d["flops"].as_u64().unwrap(), 2 * m * n * k, "{d}");
        assert!(d["why"].as_str().unwrap().contains("matmul/"), "{d}");
    }
}

#[test]
fn explain_lenet_conv_flops_follow_the_formula() {
    let svg = cli_util::scratch_in("explain", "lenet").join("step.svg");
    let doc = explain(&["--model", "lenet", "--epochs", "1", "--graph", s(&svg)]);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("conv2d [64, 6, 8, 8]"),
        "{svg}"
    );
    let convs = rows(&doc, "forward", "conv2d", "forward");
    assert_eq!(convs.len(), 2, "LeNet has two conv layers");
    for d in convs {
        let sh = input_shapes(d);
        let (x, w) = (&sh[0], &sh[1]);
        let (n, h, wd, co, ci, kh, kw) = (x[0], x[2], x[3], w[0], w[1], w[2], w[3]);
        let out = d["shapes"].as_str().unwrap().split(" -> ").nth(1).unwrap();
        let o: Vec<u64> = out
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(o[2] <= h && o[3] <= wd);
        assert_eq!(
            d["flops"].as_u64().unwrap(),
            2 * n * co * o[2] * o[3] * ci * kh * kw,
            "{d}"
        );
    }
    // Each backward pass of a conv does the products of its forward.
    let back = rows(&doc, "backward", "conv2d", "grad_weight");
    assert_eq!(back.len(), 2, "grad weight of both convs");
}

#[test]
fn explain_gpt_attention_flops_count_the_causal_half_and_graph_is_written() {
    let d = cli_util::scratch_in("explain", "gpt");
    let text = tiny_text(&d);
    let dot = d.join("step.dot");
    let mut flags = vec!["--text", s(&text), "--graph", s(&dot)];
    flags.extend_from_slice(TINY_GPT);
    let doc = explain(&flags);
    let attn = rows(&doc, "forward", "scaled_dot_product_attention", "attn_fwd");
    assert!(!attn.is_empty(), "no attention dispatch");
    let q = &input_shapes(attn[0])[0];
    let (b, h, t, dh) = (q[0], q[1], q[2], q[3]);
    let flops: u64 = attn.iter().map(|d| d["flops"].as_u64().unwrap()).sum();
    // Causal: query i sees keys 0..=i, T (T + 1) / 2 pairs per head.
    assert_eq!(flops, 4 * b * h * (t * (t + 1) / 2) * dh);
    let dot = std::fs::read_to_string(&dot).unwrap();
    assert!(dot.starts_with("digraph") && dot.contains("scaled_dot_product_attention"));
    assert!(dot.contains("param ["), "parameters are marked:\n{dot}");
}

#[test]
fn explain_refuses_resume_and_trace_cleanly() {
    for flag in [&["--resume"][..], &["--trace", "t.json"]] {
        let mut args = vec!["explain"];
        args.extend_from_slice(flag);
        let (ok, _, stderr) = kiln(&args);
        assert!(!ok);
        clean_error(&stderr);
        assert!(stderr.contains(flag[0]), "{stderr}");
    }
}

/// Checks of the trace-event format: every event has name, ph, ts, pid and tid; timestamps
/// never decrease; complete events have a non-negative duration; begin/end pairs match per
/// track. Returns the GPU slices.
fn check_trace(path: &Path) -> (Value, usize) {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let mut last = f64::MIN;
    let mut open: std::collections::HashMap<u64, Vec<String>> = Default::default();
    let mut gpu = 0;
    for e in events {
        for key in ["name", "ph", "ts", "pid", "tid"] {
            assert!(e.get(key).is_some(), "event without {key}: {e}");
        }
        let ts = e["ts"].as_f64().unwrap();
        assert!(ts >= last, "timestamps go back at {e}");
        last = ts;
        let (tid, name) = (e["tid"].as_u64().unwrap(), e["name"].as_str().unwrap());
        match e["ph"].as_str().unwrap() {
            "B" => open.entry(tid).or_default().push(name.to_string()),
            "E" => assert_eq!(open.entry(tid).or_default().pop().as_deref(), Some(name)),
            "X" => {
                assert!(e["dur"].as_f64().unwrap() >= 0.0, "{e}");
                gpu += usize::from(e["cat"] == "gpu");
            }
            "C" | "M" => {}
            ph => panic!("unexpected phase {ph}: {e}"),
        }
    }
    assert!(open.values().all(Vec::is_empty), "unclosed: {open:?}");
    (doc, gpu)
}

#[test]
fn trace_of_three_gpt_steps_is_valid_with_one_gpu_slice_per_dispatch() {
    let d = cli_util::scratch_in("explain", "trace");
    let text = tiny_text(&d);
    let trace = d.join("trace.json");
    let mut args = vec!["train", "--text", s(&text), "--max-steps", "3"];
    args.extend(["--trace", s(&trace), "--quiet", "--out"]);
    let out = d.join("run");
    args.push(s(&out));
    args.extend_from_slice(TINY_GPT);
    let (ok, _, stderr) = kiln(&args);
    assert!(ok, "{stderr}");
    let (doc, gpu) = check_trace(&trace);
    let other = &doc["otherData"];
    assert_eq!(other["steps"], 3);
    assert_eq!(gpu as u64, other["dispatches_counted"].as_u64().unwrap());
    let events = doc["traceEvents"].as_array().unwrap();
    for phase in ["data", "forward", "backward", "optimizer"] {
        let n = events
            .iter()
            .filter(|e| e["ph"] == "B" && e["name"] == phase)
            .count();
        assert_eq!(n, 3, "{phase} spans");
    }
    assert!(events.iter().any(|e| e["ph"] == "C"), "a memory counter");
    let png = d.join("timeline.png");
    let (ok, _, stderr) = kiln(&["trace-view", s(&trace), s(&png)]);
    assert!(ok, "{stderr}");
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
}
