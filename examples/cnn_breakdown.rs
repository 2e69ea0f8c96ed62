//! Where the time of `cnn_step` goes: each piece of one Adam step of the small CNN (batch 64,
//! 28x28; see `examples/cnn_step.rs`) timed on its own with `kiln_kernels::profile::Profiler`
//! (GPU timestamps where the adapter has them, else wall time around a sync), with its dispatch
//! count. Run with `cargo run --release --example cnn_breakdown [iters]`.
use kiln::Tensor;
use kiln::nn::{Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential};
use kiln::ops::Conv2dOptions;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln_kernels::launch::conv::{self as ck, Conv2dShape};
use kiln_kernels::launch::pool::{self as pk, PoolShape, Window};
use kiln_kernels::profile::Profiler;
use kiln_kernels::{Gpu, GpuBuffer, Operand};

mod common;

/// A max-pooling launcher, forward `(x, y, argmax)` or backward `(g, argmax, gx)`.
type PoolKernel =
    fn(&Gpu, PoolShape, Window, Operand<'_>, &GpuBuffer, &GpuBuffer) -> kiln_kernels::Result<()>;

fn main() -> kiln::Result<()> {
    let iters = common::iters_arg(15);
    let gpu = kiln::device()?;
    let prof = Profiler::new(&gpu);
    println!("timing source: {:?}", prof.source());
    let time = |name: &str, f: &mut dyn FnMut() -> kiln::Result<()>| {
        common::time_piece(&gpu, &prof, iters, 34, name, f)
    };

    let pad1 = Conv2dOptions {
        padding: (1, 1),
        ..Default::default()
    };
    let c1 = Conv2d::new(1, 16, (3, 3), pad1)?;
    let c2 = Conv2d::new(16, 32, (3, 3), pad1)?;
    let x = Tensor::randn_on(&gpu, &[64, 1, 28, 28], 0)?;
    let a1 = Tensor::randn_on(&gpu, &[64, 16, 28, 28], 1)?;
    let p1 = Tensor::randn_on(&gpu, &[64, 16, 14, 14], 2)?;
    let a2 = Tensor::randn_on(&gpu, &[64, 32, 14, 14], 3)?;
    let flat = Tensor::randn_on(&gpu, &[64, 32 * 7 * 7], 4)?;
    let logits = Tensor::randn_on(&gpu, &[64, 10], 5)?;
    let y = common::labels(&gpu, 64)?;
    let lin = Linear::new(32 * 7 * 7, 10, true)?;
    {
        let _g = kiln::no_grad();
        time("fwd conv1 1->16 28x28", &mut || c1.forward(&x).map(drop))?;
        time("fwd relu (64,16,28,28)", &mut || a1.relu().map(drop))?;
        time("fwd maxpool (64,16,28,28)", &mut || {
            a1.max_pool2d((2, 2), (2, 2), (0, 0)).map(drop)
        })?;
        time("fwd conv2 16->32 14x14", &mut || c2.forward(&p1).map(drop))?;
        time("fwd relu (64,32,14,14)", &mut || a2.relu().map(drop))?;
        time("fwd maxpool (64,32,14,14)", &mut || {
            a2.max_pool2d((2, 2), (2, 2), (0, 0)).map(drop)
        })?;
        time("fwd linear 1568->10", &mut || lin.forward(&flat).map(drop))?;
        time("fwd cross_entropy", &mut || {
            logits.cross_entropy(&y).map(drop)
        })?;
    }
    // Backward pieces: the conv kernels through their launchers, the rest through autograd on a
    // one-op graph (minus nothing: backward_with seeds the gradient directly).
    let s1 = Conv2dShape::new(64, 1, 16, (28, 28), (3, 3)).padded((1, 1));
    let s2 = Conv2dShape::new(64, 16, 32, (14, 14), (3, 3)).padded((1, 1));
    let v = kiln_kernels::tune::conv_choice(&gpu, &s2);
    // Raw buffers (zeros: the kernels' cost does not depend on the values).
    let buf = |shape: [usize; 4]| gpu.alloc(4 * shape.iter().product::<usize>() as u64, "bd");
    let (bx, ba1, bp1, ba2) = (
        buf(s1.input_shape())?,
        buf(s1.output_shape())?,
        buf(s2.input_shape())?,
        buf(s2.output_shape())?,
    );
    let (w2, dw1, dw2) = (
        buf(s2.weight_shape())?,
        buf(s1.weight_shape())?,
        buf(s2.weight_shape())?,
    );
    time("bwd conv2 grad_input", &mut || {
        ck::conv2d_grad_input(&gpu, v, &s2, &w2, &ba2, &bp1).map_err(kiln::Error::from)
    })?;
    time("bwd conv2 grad_weight", &mut || {
        ck::conv2d_grad_weight(&gpu, v, &s2, &bp1, &ba2, &dw2).map_err(kiln::Error::from)
    })?;
    let v1 = kiln_kernels::tune::conv_choice(&gpu, &s1);
    time("bwd conv1 grad_weight", &mut || {
        ck::conv2d_grad_weight(&gpu, v1, &s1, &bx, &ba1, &dw1).map_err(kiln::Error::from)
    })?;
    time("bwd conv2 bias sum (64,32,14,14)", &mut || {
        a2.sum_dims(&[0, 2, 3], false).map(drop)
    })?;
    time("bwd conv1 bias sum (64,16,28,28)", &mut || {
        a1.sum_dims(&[0, 2, 3], false).map(drop)
    })?;
    // A/B of the kernel variants this example was written to compare, alternated in rounds.
    let db1 = buf([16, 1, 1, 1])?;
    let db2 = buf([32, 1, 1, 1])?;
    let win = Window {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    let ps1 = win.shape(64, 16, 28, 28).expect("fits");
    let ps2 = win.shape(64, 32, 14, 14).expect("fits");
    let (bo1, barg1, bo2, barg2) = (
        buf([64, 16, 14, 14])?,
        buf([64, 16, 14, 14])?,
        buf([64, 32, 7, 7])?,
        buf([64, 32, 7, 7])?,
    );
    // The max-pooling kernels, generic (A) against tiled (B): (A/B, kind, forward, backward).
    let pools: [(&str, &str, PoolKernel, PoolKernel); 2] = [
        (
            "A",
            "generic",
            pk::max_pool2d_generic,
            pk::max_pool2d_backward_generic,
        ),
        (
            "B",
            "tiled",
            pk::max_pool2d_tiled,
            pk::max_pool2d_backward_tiled,
        ),
    ];
    // The conv weight gradients, then the bias sum (A) against fused (B): (layer, variant, shape,
    // input, output gradient, dW, db, the activation whose sum is the bias gradient).
    let convs = [
        ("conv1", v1, &s1, &bx, &ba1, &dw1, &db1, &a1),
        ("conv2", v, &s2, &bp1, &ba2, &dw2, &db2, &a2),
    ];
    for round in 0..3 {
        println!("-- A/B round {round}");
        for &(conv, v, s, x, g, dw, db, act) in &convs {
            time(
                &format!("A {conv} grad_weight + bias sum_dims"),
                &mut || {
                    ck::conv2d_grad_weight(&gpu, v, s, x, g, dw)?;
                    act.sum_dims(&[0, 2, 3], false).map(drop)
                },
            )?;
            time(&format!("B {conv} grad_weight_bias (fused)"), &mut || {
                ck::conv2d_grad_weight_bias(&gpu, v, s, x, g, dw, Some(db))
                    .map_err(kiln::Error::from)
            })?;
        }
        for (ab, kind, fwd, _) in pools {
            time(&format!("{ab} maxpool1 fwd {kind}"), &mut || {
                fwd(&gpu, ps1, win, Operand::whole(&ba1), &bo1, &barg1).map_err(kiln::Error::from)
            })?;
        }
        for (ab, kind, _, bwd) in pools {
            time(&format!("{ab} maxpool1 bwd {kind}"), &mut || {
                bwd(&gpu, ps1, win, Operand::whole(&bo1), &barg1, &ba1).map_err(kiln::Error::from)
            })?;
        }
        for (ab, kind, fwd, bwd) in pools {
            time(&format!("{ab} maxpool2 fwd+bwd {kind}"), &mut || {
                fwd(&gpu, ps2, win, Operand::whole(&ba2), &bo2, &barg2)?;
                bwd(&gpu, ps2, win, Operand::whole(&bo2), &barg2, &ba2).map_err(kiln::Error::from)
            })?;
        }
    }
    let leaf1 = a1.detach().requires_grad();
    let pooled1 = leaf1.max_pool2d((2, 2), (2, 2), (0, 0))?;
    time("bwd maxpool (64,16,28,28)", &mut || {
        pooled1.backward_with(&p1)
    })?;
    let relu1 = leaf1.relu()?;
    time("bwd relu (64,16,28,28) + accum", &mut || {
        relu1.backward_with(&a1)
    })?;

    // The whole step, and its forward and forward+backward parts.
    let model = Sequential::new()
        .with(c1)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(c2)
        .with(ReLU)
        .with(MaxPool2d::new(2))
        .with(Flatten::default())
        .with(lin);
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    time("forward + loss (recorded)", &mut || {
        model.forward(&x)?.cross_entropy(&y).map(drop)
    })?;
    time("forward + backward", &mut || {
        model.forward(&x)?.cross_entropy(&y)?.backward()?;
        opt.zero_grad()
    })?;
    time("whole step (fwd, bwd, Adam, zero)", &mut || {
        model.forward(&x)?.cross_entropy(&y)?.backward()?;
        opt.step()?;
        opt.zero_grad()
    })?;
    Ok(())
}
