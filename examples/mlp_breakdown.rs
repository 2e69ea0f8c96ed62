//! Where the time of `mlp_step` goes: each piece of one Adam step of the 784-256-10 MLP at batch
//! 128 (see `examples/mlp_step.rs`) timed on its own with `kiln_kernels::profile::Profiler` (GPU
//! timestamps where the adapter has them, else wall time around a sync), with its dispatch count.
//! Run with `cargo run --release --example mlp_breakdown [iters]`; with `-- ITERS tiles` it
//! times the three big products of the step under every vec4 tile configuration instead.
use kiln::Tensor;
use kiln::nn::{Linear, Module, ReLU, Sequential};
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::launch::matmul::{
    self as mk, MatLayout, MatRef, MatmulConfig, MatmulDims, MatmulVariant,
};
use kiln_kernels::profile::Profiler;

mod common;

fn main() -> kiln::Result<()> {
    let iters = common::iters_arg(20);
    let gpu = kiln::device()?;
    let prof = Profiler::new(&gpu);
    println!("timing source: {:?}", prof.source());
    let time = |name: &str, prof: &Profiler, f: &mut dyn FnMut() -> kiln::Result<()>| {
        common::time_piece(&gpu, prof, iters, 40, name, f)
    };

    if std::env::args().nth(2).as_deref() == Some("tiles") {
        return tile_sweep(&gpu, &prof, iters);
    }
    let l1 = Linear::new(784, 256, true)?;
    let l2 = Linear::new(256, 10, true)?;
    let x = Tensor::randn_on(&gpu, &[128, 784], 0)?;
    let h = Tensor::randn_on(&gpu, &[128, 256], 1)?;
    let logits = Tensor::randn_on(&gpu, &[128, 10], 2)?;
    let y = common::labels(&gpu, 128)?;
    {
        let _g = kiln::no_grad();
        let w1t = l1.weight.t()?;
        let g = Tensor::randn_on(&gpu, &[128, 256], 3)?;
        let gw = Tensor::randn_on(&gpu, &[784, 256], 4)?;
        // The pieces that each make one tensor (dropped), in the order of a step.
        let pieces: [(&str, &dyn Fn() -> kiln::Result<Tensor>); 10] = [
            ("fwd matmul x @ W1^T (128x784x256)", &|| x.matmul(&w1t)),
            ("fwd linear1 (matmul + bias)", &|| l1.forward(&x)),
            ("fwd relu (128, 256)", &|| h.relu()),
            ("fwd linear2 256->10", &|| l2.forward(&h)),
            ("fwd cross_entropy (128, 10)", &|| logits.cross_entropy(&y)),
            ("bwd x^T @ g (784x128x256)", &|| x.t()?.matmul(&g)),
            ("bwd g^T @ x (256x128x784)", &|| g.t()?.matmul(&x)),
            ("add (256,784) + transposed view", &|| {
                l1.weight.add(&gw.t()?)
            }),
            ("add (256,784) + contiguous", &|| l1.weight.add(&l1.weight)),
            ("bias grad sum over rows (128, 256)", &|| {
                g.sum_dims(&[0], false)
            }),
        ];
        for (name, piece) in pieces {
            time(name, &prof, &mut || piece().map(drop))?;
        }
    }

    let model = Sequential::new().with(l1).with(ReLU).with(l2);
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    time("forward + loss (recorded)", &prof, &mut || {
        model.forward(&x)?.cross_entropy(&y).map(drop)
    })?;
    time("forward + backward + zero_grad", &prof, &mut || {
        model.forward(&x)?.cross_entropy(&y)?.backward()?;
        opt.zero_grad()
    })?;
    model.forward(&x)?.cross_entropy(&y)?.backward()?;
    time("Adam step (4 params)", &prof, &mut || opt.step())?;
    time("zero_grad", &prof, &mut || opt.zero_grad())?;
    time("whole step (fwd, bwd, Adam, zero)", &prof, &mut || {
        model.forward(&x)?.cross_entropy(&y)?.backward()?;
        opt.step()?;
        opt.zero_grad()
    })?;
    let wall = Profiler::wall_clock();
    time("whole step, wall clock", &wall, &mut || {
        model.forward(&x)?.cross_entropy(&y)?.backward()?;
        opt.step()?;
        opt.zero_grad()
    })?;
    Ok(())
}

/// The three big products of the step under every vec4 tile configuration (and regblock), in
/// rounds so that load changes hit all alike: `mlp_breakdown ITERS tiles`.
fn tile_sweep(gpu: &std::sync::Arc<kiln::Gpu>, prof: &Profiler, iters: usize) -> kiln::Result<()> {
    let buf = |n: usize| gpu.alloc(4 * n as u64, "sweep");
    let (x, g, w, c) = (
        buf(128 * 784)?,
        buf(128 * 256)?,
        buf(256 * 784)?,
        buf(256 * 784)?,
    );
    // (product, layouts, [A, B], (m, n, k)): x (128, 784), g (128, 256), W (256, 784), all
    // row-major; A is (m, k) and B (k, n), each read transposed (T) or as stored (N).
    let cases = [
        ("x @ W^T", "NT", [&x, &w], (128, 256, 784)),
        ("g^T @ x", "TN", [&g, &x], (256, 784, 128)),
        ("x^T @ g", "TN", [&x, &g], (784, 256, 128)),
    ];
    let layout = |code: u8, rows, cols| match code {
        b'T' => MatLayout::transposed(rows, cols),
        _ => MatLayout::contiguous(rows, cols),
    };
    let mut cfgs = MatmulConfig::candidates(MatmulVariant::Vec4);
    cfgs.push(MatmulConfig::default_for(MatmulVariant::RegBlock));
    for round in 0..2 {
        println!("-- round {round}");
        for &(product, code, [a, b], (m, n, k)) in &cases {
            let name = format!("{product} ({code})");
            let (la, lb) = (
                layout(code.as_bytes()[0], m, k),
                layout(code.as_bytes()[1], k, n),
            );
            let dims = MatmulDims { batch: 1, m, n, k };
            for cfg in &cfgs {
                let t = prof.time(gpu, 2, iters, || {
                    mk::matmul(
                        gpu,
                        *cfg,
                        MatRef::new(a, la),
                        MatRef::new(b, lb),
                        &c,
                        0,
                        dims,
                    )
                })?;
                let gf = dims.flops() as f64 / t.median_ms() / 1e6;
                println!(
                    "{name:<14} {:<18} {:>8.3} ms {gf:>6.1} GFLOP/s",
                    cfg.label(),
                    t.median_ms()
                );
            }
        }
    }
    Ok(())
}
