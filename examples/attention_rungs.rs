//! Time the fused attention rungs (`AttnVariant::{Row, Block, Panel, Tiled}`) against each
//! other on this adapter, interleaved round by round so a busy machine slows them alike.
//!
//! Self-attention, no mask: `cargo run --release --example attention_rungs -- [B H T D]
//! [rounds] [bwd]` (default 4 4 128 32, 15 rounds, forward only; a sixth argument `1` times
//! forward + backward). Prints, per rung, the best and the median time of one call (kernels
//! recorded and waited for) and GFLOP/s of the best, with forward FLOPs = 4 B H T² D (the two
//! products) and forward + backward counted as 3.5 times that.
use kiln::Tensor;
use kiln_kernels::launch::attention::{self as ak, AttnConfig, AttnInputs, AttnShape, AttnVariant};
use std::time::Instant;

fn main() -> kiln::Result<()> {
    let mut args = Vec::new();
    for a in std::env::args().skip(1) {
        match a.parse::<usize>() {
            Ok(n) => args.push(n),
            Err(_) => {
                eprintln!("error: `{a}` is not a whole number; usage: B H T D [rounds] [bwd 0/1]");
                std::process::exit(2);
            }
        }
    }
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (b, h, t, d, rounds) = (get(0, 4), get(1, 4), get(2, 128), get(3, 32), get(4, 15));
    let backward = get(5, 0) != 0;
    let gpu = kiln::device()?;
    let [q, k, v] = [1, 2, 3].map(|s| Tensor::randn_on(&gpu, &[b, h, t, d], s));
    let (q, k, v) = (q?, k?, v?);
    let o = gpu.alloc(4 * (b * h * t * d) as u64, "o")?;
    let lse = gpu.alloc(4 * (b * h * t) as u64, "lse")?;
    let n = 4 * (b * h * t * d) as u64;
    let dout = Tensor::randn_on(&gpu, &[b, h, t, d], 4)?;
    let (dq, dk, dv) = (
        gpu.alloc(n, "dq")?,
        gpu.alloc(n, "dk")?,
        gpu.alloc(n, "dv")?,
    );
    let s = AttnShape {
        batch: b,
        heads: h,
        tq: t,
        tk: t,
        d,
        scale: 1.0 / (d as f32).sqrt(),
        causal: false,
    };
    let rungs = [
        AttnConfig::of(AttnVariant::Row),
        AttnConfig::of(AttnVariant::Block),
        AttnConfig::of(AttnVariant::Panel),
        AttnConfig::of(AttnVariant::Tiled),
    ];
    let run = |cfg: AttnConfig| -> kiln::Result<f64> {
        let t0 = Instant::now();
        let (q, k, v) = (q.operand(), k.operand(), v.operand());
        let x = AttnInputs {
            q,
            k,
            v,
            keep: None,
        };
        ak::forward(&gpu, &s, cfg, x, (&o, &lse), 0)?;
        if backward {
            let (g, grads) = (dout.kernel_view().buf, (&dq, &dk, &dv));
            ak::backward(&gpu, &s, cfg, x, g, (&o, &lse), grads, 0)?;
        }
        gpu.sync()?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    for cfg in rungs {
        run(cfg)?; // compile the pipeline
    }
    let mut times = vec![Vec::new(); rungs.len()];
    for _ in 0..rounds {
        for (n, cfg) in rungs.iter().enumerate() {
            times[n].push(run(*cfg)?);
        }
    }
    let pass = if backward { 3.5 } else { 1.0 };
    let flops = pass * 4.0 * (b * h * t * t * d) as f64;
    let what = if backward {
        "forward + backward"
    } else {
        "forward"
    };
    println!("attention {what} B{b} H{h} T{t} D{d}, {rounds} rounds interleaved");
    println!("| rung | best ms | median ms | GFLOP/s (best) |");
    for (n, cfg) in rungs.iter().enumerate() {
        let ts = &mut times[n];
        ts.sort_by(f64::total_cmp);
        let best = ts[0];
        println!(
            "| {} | {best:.3} | {:.3} | {:.2} |",
            cfg.name(),
            ts[ts.len() / 2],
            flops / best / 1e6
        );
    }
    Ok(())
}
