//! What conv autotuning buys: for a few training-sized layers, tune the bucket
//! (`Tuner::tune_conv`: rung, channel quads per pass, weight-gradient splits), then time the
//! heuristic default against the tuned configuration in alternating rounds (an interleaved A/B
//! in one process, so both see the same machine load), forward + grad input + grad weight per
//! sample. The tuner's own "speed-up" picks the best of noisy measurements; this re-measures.
//!
//! Run with `cargo run --release --example conv_tune_ab [rounds] [budget_ms]`
//! (`CONV_AB_CONTROL=1`: the default against itself, an A/A control of the noise). The choices go
//! to the tuning cache (`KILN_TUNE_CACHE`, else the user cache folder), so `kiln bench` and
//! training see them afterwards; `KILN_TUNE=0` turns lookups off for an A/B of whole steps.
use std::time::Duration;

use kiln_kernels::KernelError;
use kiln_kernels::launch::conv::{self as ck, Conv2dShape, ConvConfig};
use kiln_kernels::profile::Profiler;
use kiln_kernels::tune::Tuner;

fn main() -> kiln::Result<()> {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, budget_ms) = (arg(1, 5) as usize, arg(2, 300));
    let control = std::env::var_os("CONV_AB_CONTROL").is_some();
    let gpu = kiln::device()?;
    let prof = Profiler::new(&gpu);
    let mut tuner = Tuner::new(&gpu)?;
    tuner.budget = Duration::from_millis(budget_ms);
    println!(
        "{} ({:?}); {rounds} rounds, medians of 5 samples each",
        gpu.info().name,
        prof.source()
    );
    let k3 = |n, c_in, c_out, hw| Conv2dShape::new(n, c_in, c_out, (hw, hw), (3, 3)).padded((1, 1));
    let k5 = |n, c_in, c_out, hw, p| Conv2dShape::new(n, c_in, c_out, (hw, hw), (5, 5)).padded(p);
    let shapes = [
        ("small CNN conv1 b64 1->16 28x28 k3", k3(64, 1, 16, 28)),
        ("small CNN conv2 b64 16->32 14x14 k3", k3(64, 16, 32, 14)),
        ("LeNet conv1 b64 1->6 28x28 k5 p2", k5(64, 1, 6, 28, (2, 2))),
        ("LeNet conv2 b64 6->16 14x14 k5", k5(64, 6, 16, 14, (0, 0))),
        ("ResNet block b32 64->64 8x8 k3", k3(32, 64, 64, 8)),
    ];
    println!(
        "{:<38} {:<30} {:>10} {:>10} {:>7}",
        "layer", "tuned", "default ms", "tuned ms", "ratio"
    );
    for (name, s) in shapes {
        let report = tuner.tune_conv(&s)?;
        let tuned = ConvConfig::parse(&report.winner).unwrap_or_default();
        let numel = |sh: [usize; 4]| sh.iter().product::<usize>();
        let buf = |n: usize| gpu.alloc(4 * n as u64, "conv_tune_ab");
        let (x, w, dy) = (
            buf(numel(s.input_shape()))?,
            buf(numel(s.weight_shape()))?,
            buf(numel(s.output_shape()))?,
        );
        let (out, dx, dw) = (
            buf(numel(s.output_shape()))?,
            buf(numel(s.input_shape()))?,
            buf(numel(s.weight_shape()))?,
        );
        let step = |cfg: ConvConfig| -> Result<(), KernelError> {
            ck::conv2d_forward(&gpu, cfg, &s, &x, &w, None, &out)?;
            ck::conv2d_grad_input(&gpu, cfg, &s, &w, &dy, &dx)?;
            ck::conv2d_grad_weight(&gpu, cfg, &s, &x, &dy, &dw)
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // The default goes first in even rounds, second in odd ones (order effects such as
        // caches warmed by the previous run cancel out).
        let other = if control {
            ConvConfig::default()
        } else {
            tuned
        };
        for round in 0..rounds {
            let ta = || prof.time(&gpu, 1, 5, || step(ConvConfig::default()));
            let tb = || prof.time(&gpu, 1, 5, || step(other));
            if round % 2 == 0 {
                a.push(ta()?.median_ms());
                b.push(tb()?.median_ms());
            } else {
                b.push(tb()?.median_ms());
                a.push(ta()?.median_ms());
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (ta, tb) = (median(&mut a), median(&mut b));
        println!(
            "{name:<38} {:<30} {ta:>10.3} {tb:>10.3} {:>6.2}x{}",
            report.winner,
            ta / tb,
            if report.cached { " (cached)" } else { "" }
        );
    }
    tuner.save()?;
    println!("cache: {}", tuner.cache().path().display());
    Ok(())
}
