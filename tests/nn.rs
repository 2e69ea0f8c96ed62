//! `kiln::nn`: layers against CPU computations at awkward sizes, gradient checks of every layer and
//! loss, BatchNorm's running statistics, the dropout kernel against its CPU twin (bit for bit) and
//! its statistics, initialiser statistics, the global RNG's reproducibility, container naming, and
//! error cases.
//!
//! Tests that draw from the global random stream (layer constructors, Dropout in training) hold
//! `RNG_LOCK`: the stream is process-wide and the tests of one binary run in parallel.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use kiln::nn::loss::{self, CrossEntropyOptions};
use kiln::nn::{
    BatchNorm1d, BatchNormOptions, Dropout, Embedding, GELU, LayerNorm, Linear, Module, ReLU,
    Reduction, Sequential, SiLU, Sigmoid, Tanh, dropout, init, rng,
};
use kiln::{DType, Tensor};
use kiln_kernels::launch::random::{self as rk, Stream};
use kiln_kernels::reference::random as cpu_rng;

static RNG_LOCK: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// f32 dot products / row statistics against f64.
const SUMS: Tolerance = Tolerance::new(1e-4, 1e-5, "f32 sums of up to 257 terms vs f64");

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn err_text<T: std::fmt::Debug>(r: kiln::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------- CPU references (f64)

/// y = x W^T + b for x (rows, fin), W (fout, fin).
fn linear_cpu(x: &[f64], w: &[f64], b: Option<&[f64]>, fin: usize, fout: usize) -> Vec<f64> {
    let rows = x.len() / fin;
    let mut y = vec![0.0; rows * fout];
    for r in 0..rows {
        for o in 0..fout {
            let dot: f64 = (0..fin).map(|i| x[r * fin + i] * w[o * fin + i]).sum();
            y[r * fout + o] = dot + b.map_or(0.0, |b| b[o]);
        }
    }
    y
}

fn layer_norm_cpu(x: &[f64], w: &[f64], b: &[f64], d: usize, eps: f64) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for (row, out) in x.chunks(d).zip(y.chunks_mut(d)) {
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64;
        for k in 0..d {
            out[k] = (row[k] - mu) / (var + eps).sqrt() * w[k] + b[k];
        }
    }
    y
}

/// Per-channel (mean, biased var) of x (N, C, L) (L = 1 for (N, C)).
fn channel_stats(x: &[f64], n: usize, c: usize, l: usize) -> (Vec<f64>, Vec<f64>) {
    let at = |i: usize, ch: usize, k: usize| x[(i * c + ch) * l + k];
    let m = (n * l) as f64;
    let mean: Vec<f64> = (0..c)
        .map(|ch| {
            (0..n)
                .flat_map(|i| (0..l).map(move |k| (i, k)))
                .map(|(i, k)| at(i, ch, k))
                .sum::<f64>()
                / m
        })
        .collect();
    let var = (0..c)
        .map(|ch| {
            (0..n)
                .flat_map(|i| (0..l).map(move |k| (i, k)))
                .map(|(i, k)| (at(i, ch, k) - mean[ch]).powi(2))
                .sum::<f64>()
                / m
        })
        .collect();
    (mean, var)
}

#[allow(clippy::too_many_arguments)]
fn batch_norm_cpu(
    x: &[f64],
    (n, c, l): (usize, usize, usize),
    mean: &[f64],
    var: &[f64],
    w: &[f64],
    b: &[f64],
    eps: f64,
) -> Vec<f64> {
    (0..n * c * l)
        .map(|idx| {
            let ch = (idx / l) % c;
            (x[idx] - mean[ch]) / (var[ch] + eps).sqrt() * w[ch] + b[ch]
        })
        .collect()
}

/// PyTorch's cross-entropy (label smoothing eps, class weights w), from its definition.
fn cross_entropy_cpu(
    x: &[f64],
    c: usize,
    t: &[u32],
    w: Option<&[f64]>,
    eps: f64,
    red: Reduction,
) -> Vec<f64> {
    let wc = |j: usize| w.map_or(1.0, |w| w[j]);
    let mut losses = Vec::new();
    let mut wsum = 0.0;
    for (i, row) in x.chunks(c).enumerate() {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let lp: Vec<f64> = row.iter().map(|v| v - lse).collect();
        let ti = t[i] as usize;
        let nll = -wc(ti) * lp[ti];
        let smooth: f64 = -(0..c).map(|j| wc(j) * lp[j]).sum::<f64>();
        losses.push((1.0 - eps) * nll + eps / c as f64 * smooth);
        wsum += wc(ti);
    }
    match red {
        Reduction::None => losses,
        Reduction::Sum => vec![losses.iter().sum()],
        Reduction::Mean => vec![losses.iter().sum::<f64>() / wsum],
    }
}

fn reduce_cpu(v: Vec<f64>, red: Reduction) -> Vec<f64> {
    match red {
        Reduction::None => v,
        Reduction::Sum => vec![v.iter().sum()],
        Reduction::Mean => vec![v.iter().sum::<f64>() / v.len() as f64],
    }
}

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

// ---------------------------------------------------------------- Linear

#[test]
fn linear_forward_matches_cpu_at_awkward_sizes() {
    let g = gpu();
    let cases = [
        (1, 1, 1),
        (7, 17, 129),
        (257, 7, 17),
        (17, 129, 7),
        (129, 257, 1),
    ];
    for (i, &(rows, fin, fout)) in cases.iter().enumerate() {
        let s = seed(&format!("lin{i}"));
        let (x, w, b) = (
            rand_vec(rows * fin, s, -1.0, 1.0),
            rand_vec(fout * fin, s + 1, -1.0, 1.0),
            rand_vec(fout, s + 2, -1.0, 1.0),
        );
        for bias in [true, false] {
            let lin = Linear::from_tensors(
                Tensor::from_slice_on(&g, &w, &[fout, fin]).unwrap(),
                bias.then(|| Tensor::from_slice_on(&g, &b, &[fout]).unwrap()),
            )
            .unwrap();
            let y = lin
                .forward(&Tensor::from_slice_on(&g, &x, &[rows, fin]).unwrap())
                .unwrap();
            assert_eq!(y.shape(), [rows, fout]);
            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let want = linear_cpu(
                &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                &w.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                bias.then_some(b64.as_slice()),
                fin,
                fout,
            );
            SUMS.assert_close(
                &format!("Linear {rows}x{fin}->{fout} bias {bias}"),
                &f32s(&y),
                &want,
            );
        }
    }
    // 3-D and 1-D inputs: the leading dims are batch dims.
    let (fin, fout) = (17, 7);
    let w = rand_vec(fout * fin, 11, -1.0, 1.0);
    let b = rand_vec(fout, 12, -1.0, 1.0);
    let lin = Linear::from_tensors(tensor(&w, &[fout, fin]), Some(tensor(&b, &[fout]))).unwrap();
    let (w64, b64): (Vec<f64>, Vec<f64>) = (
        w.iter().map(|&v| v as f64).collect(),
        b.iter().map(|&v| v as f64).collect(),
    );
    for shape in [vec![3, 5, fin], vec![fin]] {
        let x = rand_vec(shape.iter().product(), 13, -1.0, 1.0);
        let y = lin.forward(&tensor(&x, &shape)).unwrap();
        let mut out_shape = shape.clone();
        *out_shape.last_mut().unwrap() = fout;
        assert_eq!(y.shape(), out_shape.as_slice());
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        SUMS.assert_close(
            &format!("Linear of {shape:?}"),
            &f32s(&y),
            &linear_cpu(&x64, &w64, Some(&b64), fin, fout),
        );
    }
}

#[test]
fn linear_reads_the_weight_through_a_transposed_view() {
    // On a private device: the forward without bias is one matmul dispatch and no copy of W.
    let g = private_gpu();
    let w = Tensor::from_slice_on(&g, &rand_vec(7 * 17, 1, -1.0, 1.0), &[7, 17]).unwrap();
    let x = Tensor::from_slice_on(&g, &rand_vec(5 * 17, 2, -1.0, 1.0), &[5, 17]).unwrap();
    let lin = Linear::from_tensors(w, None).unwrap();
    let before = g.encoder_stats().total_dispatches;
    let y = lin.forward(&x).unwrap();
    assert_eq!(
        g.encoder_stats().total_dispatches - before,
        1,
        "expected one matmul, no copy"
    );
    assert_eq!(y.shape(), [5, 7]);
}

#[test]
fn linear_gradients() {
    let tol = GradTol::default();
    for (name, xshape) in [("2-D", vec![5usize, 7]), ("3-D", vec![2, 3, 7])] {
        let (fin, fout) = (7, 3);
        gradcheck(
            &format!("Linear {name}"),
            &[
                Input::rand(&xshape, seed(name), -1.0, 1.0),
                Input::rand(&[fout, fin], seed(name) + 1, -1.0, 1.0),
                Input::rand(&[fout], seed(name) + 2, -1.0, 1.0),
            ],
            |ts| Linear::from_tensors(ts[1].clone(), Some(ts[2].clone()))?.forward(&ts[0]),
            |xs| linear_cpu(&xs[0], &xs[1], Some(&xs[2]), fin, fout),
            tol,
        );
    }
}

// ---------------------------------------------------------------- LayerNorm

#[test]
fn layer_norm_forward_and_gradients() {
    let eps = 1e-5;
    for &(rows, d) in &[(3usize, 257usize), (17, 7), (1, 129)] {
        let x = Input::rand(&[rows, d], seed(&format!("ln{d}")), -2.0, 3.0);
        let ln = LayerNorm::new(d, eps, true).unwrap();
        let y = ln.forward(&tensor(&x.data, &x.shape)).unwrap();
        let x64: Vec<f64> = x.data.iter().map(|&v| v as f64).collect();
        let want = layer_norm_cpu(&x64, &vec![1.0; d], &vec![0.0; d], d, eps as f64);
        Tolerance::new(3e-4, 3e-5, "f32 mean/var/rsqrt vs f64").assert_close(
            &format!("LayerNorm ({rows}, {d})"),
            &f32s(&y),
            &want,
        );
    }
    let d = 6;
    gradcheck(
        "LayerNorm",
        &[
            Input::rand(&[2, 3, d], seed("lng"), -2.0, 2.0),
            Input::rand(&[d], seed("lngw"), 0.5, 1.5),
            Input::rand(&[d], seed("lngb"), -1.0, 1.0),
        ],
        |ts| kiln::nn::layer_norm(&ts[0], Some(&ts[1]), Some(&ts[2]), 1e-5),
        |xs| layer_norm_cpu(&xs[0], &xs[1], &xs[2], d, 1e-5),
        GradTol {
            forward: Tolerance::new(3e-4, 3e-5, "f32 mean/var/rsqrt vs f64"),
            grad: Tolerance::new(
                1e-3,
                1e-4,
                "composed f32 backward through rsqrt and two means",
            ),
        },
    );
}

// ---------------------------------------------------------------- BatchNorm1d

#[test]
fn batch_norm_training_gradients() {
    let (n, c) = (6, 5);
    gradcheck(
        "BatchNorm1d training",
        &[
            Input::rand(&[n, c], seed("bng"), -2.0, 2.0),
            Input::rand(&[c], seed("bngw"), 0.5, 1.5),
            Input::rand(&[c], seed("bngb"), -1.0, 1.0),
        ],
        |ts| {
            let mut bn = BatchNorm1d::new(c)?;
            bn.weight = Some(ts[1].clone());
            bn.bias = Some(ts[2].clone());
            bn.forward(&ts[0])
        },
        |xs| {
            let (mean, var) = channel_stats(&xs[0], n, c, 1);
            batch_norm_cpu(&xs[0], (n, c, 1), &mean, &var, &xs[1], &xs[2], 1e-5)
        },
        GradTol {
            forward: Tolerance::new(3e-4, 3e-5, "f32 batch statistics vs f64"),
            grad: Tolerance::new(1e-3, 1e-4, "composed f32 backward through batch statistics"),
        },
    );
}

#[test]
fn batch_norm_running_stats_and_eval() {
    let tol = Tolerance::new(3e-4, 3e-5, "f32 batch statistics vs f64");
    for (n, c, l) in [(7usize, 5usize, 1usize), (4, 3, 17)] {
        let shape: Vec<usize> = if l == 1 { vec![n, c] } else { vec![n, c, l] };
        let mut bn = BatchNorm1d::with_options(
            c,
            BatchNormOptions {
                momentum: 0.3,
                ..Default::default()
            },
        )
        .unwrap();
        let (mut rm, mut rv) = (vec![0.0f64; c], vec![1.0f64; c]);
        for step in 0..2 {
            let x = rand_vec(n * c * l, seed(&format!("bn{c}{step}")), -1.0, 3.0);
            let y = bn.forward(&tensor(&x, &shape)).unwrap();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let (mean, var) = channel_stats(&x64, n, c, l);
            let want = batch_norm_cpu(
                &x64,
                (n, c, l),
                &mean,
                &var,
                &vec![1.0; c],
                &vec![0.0; c],
                1e-5,
            );
            tol.assert_close(
                &format!("BatchNorm1d {shape:?} train step {step}"),
                &f32s(&y),
                &want,
            );
            let m = (n * l) as f64;
            for ch in 0..c {
                rm[ch] = 0.7 * rm[ch] + 0.3 * mean[ch];
                rv[ch] = 0.7 * rv[ch] + 0.3 * var[ch] * m / (m - 1.0);
            }
            tol.assert_close("running_mean", &f32s(&bn.running_mean), &rm);
            tol.assert_close("running_var (unbiased)", &f32s(&bn.running_var), &rv);
        }
        assert_eq!(bn.num_batches_tracked.item().unwrap(), 2.0);
        let names: Vec<String> = bn.named_buffers().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            names,
            ["running_mean", "running_var", "num_batches_tracked"]
        );

        bn.set_training(false);
        assert!(!bn.is_training());
        let x = rand_vec(n * c * l, seed("bneval"), -1.0, 3.0);
        let y = bn.forward(&tensor(&x, &shape)).unwrap();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let want = batch_norm_cpu(
            &x64,
            (n, c, l),
            &rm,
            &rv,
            &vec![1.0; c],
            &vec![0.0; c],
            1e-5,
        );
        tol.assert_close("BatchNorm1d eval uses running stats", &f32s(&y), &want);
        tol.assert_close("eval leaves running_mean", &f32s(&bn.running_mean), &rm);
        assert_eq!(bn.num_batches_tracked.item().unwrap(), 2.0);
    }
}

// ---------------------------------------------------------------- Embedding

#[test]
fn embedding_forward_and_gradients() {
    let (v, d) = (7, 3);
    let ids = [4u32, 0, 4, 6, 1, 4];
    let ids_t = Tensor::from_slice_on(&gpu(), &ids, &[2, 3]).unwrap();
    gradcheck(
        "Embedding",
        &[Input::rand(&[v, d], seed("emb"), -1.0, 1.0)],
        |ts| {
            let y = Embedding::from_weight(ts[0].clone())?.forward(&ids_t)?;
            assert_eq!(y.shape(), [2, 3, d]);
            Ok(y)
        },
        |xs| {
            ids.iter()
                .flat_map(|&i| xs[0][i as usize * d..(i as usize + 1) * d].to_vec())
                .collect()
        },
        GradTol::default(),
    );
}

// ---------------------------------------------------------------- Activations and Sequential

#[test]
fn activation_layers_match_their_ops() {
    let x = tensor(&rand_vec(129, seed("act"), -3.0, 3.0), &[129]);
    let layers: [(&str, Box<dyn Module>, kiln::Tensor); 5] = [
        ("ReLU", Box::new(ReLU), x.relu().unwrap()),
        ("GELU", Box::new(GELU), x.gelu().unwrap()),
        ("SiLU", Box::new(SiLU), x.silu().unwrap()),
        ("Tanh", Box::new(Tanh), x.tanh().unwrap()),
        ("Sigmoid", Box::new(Sigmoid), x.sigmoid().unwrap()),
    ];
    for (name, layer, want) in layers {
        assert!(layer.named_parameters().is_empty());
        Tolerance::EXACT.assert_close(name, &f32s(&layer.forward(&x).unwrap()), &f32s(&want));
    }
}

/// A model holding its MLP in a field `layers`, as a user would write it.
struct Net {
    layers: Sequential,
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> kiln::Result<Tensor> {
        self.layers.forward(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        kiln::nn::prefixed("layers", self.layers.named_parameters())
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        kiln::nn::prefixed("layers", self.layers.named_buffers())
    }
    fn set_training(&mut self, training: bool) {
        self.layers.set_training(training)
    }
    fn is_training(&self) -> bool {
        self.layers.is_training()
    }
}

#[test]
fn sequential_mlp_names_counts_and_modes() {
    let _l = rng_lock();
    let mlp = Sequential::new()
        .with(Linear::new(5, 7, true).unwrap())
        .with(ReLU)
        .with(Dropout::new(0.5).unwrap())
        .with(Linear::new(7, 3, false).unwrap())
        .with(BatchNorm1d::new(3).unwrap());
    assert_eq!(mlp.len(), 5);
    let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["0.weight", "0.bias", "3.weight", "4.weight", "4.bias"]
    );
    assert_eq!(mlp.num_parameters(), 5 * 7 + 7 + 7 * 3 + 3 + 3);
    mlp.named_parameters()[1]
        .1
        .set_requires_grad(false)
        .unwrap();
    assert_eq!(mlp.num_trainable_parameters(), 5 * 7 + 7 * 3 + 3 + 3);

    let mut net = Net { layers: mlp };
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "layers.0.weight");
    assert_eq!(names[2], "layers.3.weight");
    let bufs: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        bufs,
        [
            "layers.4.running_mean",
            "layers.4.running_var",
            "layers.4.num_batches_tracked"
        ]
    );

    // Eval mode reaches every child: Dropout is the identity, BatchNorm uses running stats, and
    // the forward equals the layers applied by hand.
    net.set_training(false);
    assert!(!net.is_training());
    assert!(
        !net.layers.get(2).unwrap().is_training(),
        "Dropout left in training mode"
    );
    assert!(
        !net.layers.get(4).unwrap().is_training(),
        "BatchNorm left in training mode"
    );
    let x = tensor(&rand_vec(4 * 5, seed("seq"), -1.0, 1.0), &[4, 5]);
    let state = rng::rng_state();
    let y = net.forward(&x).unwrap();
    assert_eq!(rng::rng_state(), state, "eval forward drew random keys");
    let mut h = x.clone();
    for k in [0, 1, 3, 4] {
        h = net.layers.get(k).unwrap().forward(&h).unwrap();
    }
    Tolerance::EXACT.assert_close("Sequential eval == layers by hand", &f32s(&y), &f32s(&h));

    // A layer pushed into an eval-mode container takes its mode.
    net.layers.push(Box::new(Dropout::new(0.3).unwrap()));
    assert!(!net.layers.get(5).unwrap().is_training());
    assert_eq!(Sequential::new().forward(&x).unwrap().shape(), [4, 5]);
}

// ---------------------------------------------------------------- Dropout

fn gpu_bits(stream: Stream, n: usize) -> Vec<u32> {
    let g = gpu();
    let buf = g.alloc((n.max(1) * 4) as u64, "bits").unwrap();
    rk::bits(&g, stream, n, &buf).unwrap();
    bytemuck::pod_collect_to_vec(&g.read(&buf, 0, (n * 4) as u64).unwrap())
}

#[test]
fn philox_kernel_matches_cpu_twin_bit_for_bit() {
    // Random123's known answers, computed on the GPU.
    assert_eq!(
        gpu_bits(Stream::new(0), 4),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    let pi = Stream {
        key: 0x299f31d0_a4093822,
        counter: [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    };
    assert_eq!(
        gpu_bits(pi, 4),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
    let keys = [1u64, u64::MAX, 0xdead_beef_1234_5678];
    for (k, &n) in AWKWARD.iter().chain(&[100_003]).enumerate() {
        let stream = Stream {
            key: keys[k % keys.len()],
            counter: [u32::MAX - 5, k as u32, 0, 7], // ctr0 wraps inside the larger cases
        };
        assert_eq!(
            gpu_bits(stream, n),
            cpu_rng::bits(stream, n),
            "bits, n = {n}"
        );
        for p in [0.1f32, 0.5, 0.9] {
            let m = kiln::nn::dropout::dropout_mask_on(&gpu(), &[n], p, stream.key).unwrap();
            let want: Vec<f32> = cpu_rng::dropout_mask(Stream::new(stream.key), p, n);
            Tolerance::EXACT.assert_close(&format!("dropout mask n {n} p {p}"), &f32s(&m), &want);
        }
    }
}

#[test]
fn dropout_statistics() {
    // n = 200,000 Bernoulli(p) draws: the dropped fraction has sd sqrt(p (1 - p) / n) <= 0.0012;
    // pairs (the same position under two keys, neighbours, a block apart) drop together with
    // probability p^2. Every bound is 6 sd.
    let n = 200_000usize;
    let x = Tensor::ones_on(&gpu(), &[n]).unwrap();
    for (k, p) in [0.1f32, 0.5, 0.8].into_iter().enumerate() {
        let m1 = f32s(&dropout::dropout_with_key(&x, p, 1000 + k as u64).unwrap());
        let m2 = f32s(&dropout::dropout_with_key(&x, p, 2000 + k as u64).unwrap());
        let scale = 1.0 / (1.0 - p);
        assert!(
            m1.iter().all(|&v| v == 0.0 || v == scale),
            "survivors must be 1 / (1 - p)"
        );
        let (p64, nf) = (p as f64, n as f64);
        let sd1 = (p64 * (1.0 - p64) / nf).sqrt();
        let frac = m1.iter().filter(|&&v| v == 0.0).count() as f64 / nf;
        assert!(
            (frac - p64).abs() < 6.0 * sd1,
            "p {p}: dropped fraction {frac}"
        );
        let p2 = p64 * p64;
        let sd2 = (p2 * (1.0 - p2) / nf).sqrt();
        let both = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .filter(|(u, v)| **u == 0.0 && **v == 0.0)
                .count() as f64
                / a.len() as f64
        };
        for (what, f) in [
            ("two keys", both(&m1, &m2)),
            ("neighbours", both(&m1[..n - 1], &m1[1..])),
            ("4 apart", both(&m1[..n - 4], &m1[4..])),
        ] {
            assert!(
                (f - p2).abs() < 6.0 * sd2,
                "p {p}: {what} dropped together {f}, want {p2}"
            );
        }
    }
}

#[test]
fn dropout_forward_gradient_and_edge_probabilities() {
    let n = 1000;
    let xv = rand_vec(n, seed("dropx"), -2.0, 2.0);
    let (p, key) = (0.3f32, 77u64);
    let x = tensor(&xv, &[n]).requires_grad();
    let y = dropout::dropout_with_key(&x, p, key).unwrap();
    let mask: Vec<f32> = cpu_rng::dropout_mask(Stream::new(key), p, n);
    let want: Vec<f32> = xv.iter().zip(&mask).map(|(a, m)| a * m).collect();
    Tolerance::EXACT.assert_close("dropout y = x * mask", &f32s(&y), &want);
    y.sum().unwrap().backward().unwrap();
    Tolerance::EXACT.assert_close(
        "dropout dx = mask / (1 - p)",
        &f32s(&x.grad().unwrap()),
        &mask,
    );
    // The same key gives the same mask; another key another.
    assert_eq!(
        f32s(&dropout::dropout_with_key(&x, p, key).unwrap()),
        f32s(&y)
    );
    assert_ne!(
        f32s(&dropout::dropout_with_key(&x, p, key + 1).unwrap()),
        f32s(&y)
    );
    // p = 0 is the identity, p = 1 zeros everything.
    assert!(
        dropout::dropout_with_key(&x, 0.0, key)
            .unwrap()
            .shares_storage(&x)
    );
    assert!(
        f32s(&dropout::dropout_with_key(&x, 1.0, key).unwrap())
            .iter()
            .all(|&v| v == 0.0)
    );
    // A strided input.
    let xt = tensor(&xv[..40], &[8, 5]).t().unwrap();
    let yt = dropout::dropout_with_key(&xt, 0.5, 3).unwrap();
    let m: Vec<f32> = cpu_rng::dropout_mask(Stream::new(3), 0.5, 40);
    let xtv = f32s(&xt);
    let want: Vec<f32> = xtv.iter().zip(&m).map(|(a, b)| a * b).collect();
    Tolerance::EXACT.assert_close("dropout of a transpose", &f32s(&yt), &want);
}

#[test]
fn dropout_layer_modes_and_reproducibility() {
    let _l = rng_lock();
    let x = tensor(&rand_vec(513, seed("dl"), -1.0, 1.0), &[513]);
    let mut d = Dropout::new(0.4).unwrap();
    rng::manual_seed(5);
    let (a1, a2) = (f32s(&d.forward(&x).unwrap()), f32s(&d.forward(&x).unwrap()));
    assert_ne!(a1, a2, "consecutive calls must draw new masks");
    assert_eq!(
        rng::rng_state(),
        rng::RngState {
            seed: 5,
            counter: 2
        }
    );
    rng::manual_seed(5);
    assert_eq!(f32s(&d.forward(&x).unwrap()), a1);
    let saved = rng::rng_state();
    let b = f32s(&d.forward(&x).unwrap());
    assert_eq!(b, a2);
    rng::set_rng_state(saved);
    assert_eq!(
        f32s(&d.forward(&x).unwrap()),
        a2,
        "restored state must replay the mask"
    );
    // The saved state round-trips through serde (the trainer writes it to checkpoints).
    let json = serde_json::to_string(&saved).unwrap();
    assert_eq!(serde_json::from_str::<rng::RngState>(&json).unwrap(), saved);

    d.set_training(false);
    let before = rng::rng_state();
    let y = d.forward(&x).unwrap();
    assert!(y.shares_storage(&x), "eval dropout must be the identity");
    assert_eq!(rng::rng_state(), before, "eval dropout drew a key");
}

// ---------------------------------------------------------------- Initialisation

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Mean within 6 sd of the sample mean; std within `rel` (6+ sd of the sample std).
#[track_caller]
fn assert_stats(what: &str, v: &[f32], mean: f64, std: f64, rel: f64) {
    let (m, s) = mean_std(v);
    assert!(
        (m - mean).abs() < 6.0 * std / (v.len() as f64).sqrt(),
        "{what}: mean {m}, want {mean}"
    );
    assert!((s - std).abs() < rel * std, "{what}: std {s}, want {std}");
}

/// Every value in [-b, b] and the extremes near the bounds.
#[track_caller]
fn assert_uniform_bound(what: &str, v: &[f32], b: f64) {
    let max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    assert!(
        max <= b * (1.0 + 1e-6) && max > 0.95 * b,
        "{what}: max |v| {max}, bound {b}"
    );
}

#[test]
fn initialiser_statistics() {
    // 256 x 384 = 98,304 samples: the sample std's sd is 0.15% (uniform) to 0.23% (normal) of the
    // std, so 1.5% is over 6 sd.
    let shape = [256usize, 384];
    let (fan_in, fan_out) = (384.0f64, 256.0f64);
    let _l = rng_lock();
    let gain = 2f32.sqrt();
    let v = f32s(&init::kaiming_uniform(&shape, gain, init::FanMode::FanIn).unwrap());
    let b = gain as f64 * (3.0 / fan_in).sqrt();
    assert_uniform_bound("kaiming_uniform", &v, b);
    assert_stats("kaiming_uniform", &v, 0.0, b / 3f64.sqrt(), 0.015);
    let v = f32s(&init::kaiming_normal(&shape, 1.0, init::FanMode::FanOut).unwrap());
    assert_stats(
        "kaiming_normal fan_out",
        &v,
        0.0,
        1.0 / fan_out.sqrt(),
        0.015,
    );
    let v = f32s(&init::xavier_uniform(&shape, 1.0).unwrap());
    let b = (6.0 / (fan_in + fan_out)).sqrt();
    assert_uniform_bound("xavier_uniform", &v, b);
    assert_stats("xavier_uniform", &v, 0.0, b / 3f64.sqrt(), 0.015);
    let v = f32s(&init::xavier_normal(&shape, 5.0 / 3.0).unwrap());
    assert_stats(
        "xavier_normal",
        &v,
        0.0,
        5.0 / 3.0 * (2.0 / (fan_in + fan_out)).sqrt(),
        0.015,
    );
    let v = f32s(&init::uniform(&shape, -0.3, 0.7).unwrap());
    assert!(v.iter().all(|&x| (-0.3..=0.7).contains(&x)));
    assert_stats("uniform", &v, 0.2, 1.0 / 12f64.sqrt(), 0.015);
    let v = f32s(&init::normal(&shape, 2.0, 0.5).unwrap());
    assert_stats("normal", &v, 2.0, 0.5, 0.015);
    assert!(f32s(&init::zeros(&[7]).unwrap()).iter().all(|&x| x == 0.0));
    assert!(
        f32s(&init::constant(&[7], 2.5).unwrap())
            .iter()
            .all(|&x| x == 2.5)
    );

    // Layer defaults (PyTorch's).
    let lin = Linear::new(100, 300, true).unwrap();
    assert_uniform_bound("Linear weight", &f32s(&lin.weight), 0.1);
    assert_stats(
        "Linear weight",
        &f32s(&lin.weight),
        0.0,
        0.1 / 3f64.sqrt(),
        0.015,
    );
    let bias = f32s(lin.bias.as_ref().unwrap());
    assert!(bias.iter().all(|&x| x.abs() <= 0.1) && bias.iter().any(|&x| x.abs() > 0.09));
    assert!(lin.weight.requires_grad_flag() && lin.bias.as_ref().unwrap().requires_grad_flag());
    let emb = Embedding::new(300, 100).unwrap();
    // 30,000 samples: the sample std's sd is 0.41%; 2.5% is 6 sd.
    assert_stats("Embedding weight", &f32s(&emb.weight), 0.0, 1.0, 0.025);
    let ln = LayerNorm::new(7, 1e-5, true).unwrap();
    assert_eq!(f32s(ln.weight.as_ref().unwrap()), vec![1.0; 7]);
    assert_eq!(f32s(ln.bias.as_ref().unwrap()), vec![0.0; 7]);
    assert!(
        LayerNorm::new(7, 1e-5, false)
            .unwrap()
            .named_parameters()
            .is_empty()
    );
    let bn = BatchNorm1d::new(3).unwrap();
    assert_eq!(f32s(&bn.running_var), vec![1.0; 3]);
    assert_eq!(f32s(bn.weight.as_ref().unwrap()), vec![1.0; 3]);

    assert_eq!(init::fan_in_and_fan_out(&[4, 3, 5]).unwrap(), (15, 20));
    assert!((init::calculate_gain(init::Nonlinearity::Tanh) - 5.0 / 3.0).abs() < 1e-7);
    assert!((init::linear_default_gain() - (1.0f32 / 3.0).sqrt()).abs() < 1e-7);
}

#[test]
fn initialisation_is_reproducible_from_manual_seed() {
    let _l = rng_lock();
    rng::manual_seed(7);
    let a = Linear::new(17, 7, true).unwrap();
    assert_eq!(rng::rng_state().counter, 2, "one key per random tensor");
    let c = Linear::new(17, 7, true).unwrap();
    rng::manual_seed(7);
    let b = Linear::new(17, 7, true).unwrap();
    assert_eq!(f32s(&a.weight), f32s(&b.weight));
    assert_eq!(
        f32s(a.bias.as_ref().unwrap()),
        f32s(b.bias.as_ref().unwrap())
    );
    assert_ne!(f32s(&a.weight), f32s(&c.weight));
    // Constants draw nothing.
    let s = rng::rng_state();
    let _ = (
        LayerNorm::new(5, 1e-5, true).unwrap(),
        init::zeros(&[3]).unwrap(),
    );
    assert_eq!(rng::rng_state(), s);
    // A different seed, different weights.
    rng::manual_seed(8);
    assert_ne!(
        f32s(&Linear::new(17, 7, true).unwrap().weight),
        f32s(&a.weight)
    );
}

// ---------------------------------------------------------------- Losses

fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

#[test]
fn cross_entropy_gradients_all_options() {
    let (n, c) = (5, 7);
    let targets = [3u32, 0, 6, 3, 1];
    let g = gpu();
    let t = Tensor::from_slice_on(&g, &targets, &[n]).unwrap();
    let wv = rand_vec(c, seed("cew"), 0.5, 2.0);
    let w = Tensor::from_slice_on(&g, &wv, &[c]).unwrap();
    let w64: Vec<f64> = wv.iter().map(|&v| v as f64).collect();
    for eps in [0.0f32, 0.1] {
        for weighted in [false, true] {
            for red in REDUCTIONS {
                let name = format!("cross_entropy eps {eps} weighted {weighted} {red:?}");
                let opts = CrossEntropyOptions {
                    label_smoothing: eps,
                    class_weights: weighted.then(|| w.clone()),
                    reduction: red,
                };
                gradcheck(
                    &name,
                    &[Input::rand(&[n, c], seed(&name), -2.0, 2.0)],
                    |ts| loss::cross_entropy(&ts[0], &t, &opts),
                    |xs| {
                        cross_entropy_cpu(
                            &xs[0],
                            c,
                            &targets,
                            weighted.then_some(w64.as_slice()),
                            eps as f64,
                            red,
                        )
                    },
                    GradTol::default(),
                );
            }
        }
    }
}

#[test]
fn cross_entropy_fused_and_composed_paths_agree() {
    let (n, c) = (129, 17);
    let g = gpu();
    let xv = rand_vec(n * c, seed("cefc"), -3.0, 3.0);
    let tv = rand_indices(n, seed("cefct"), c as u32);
    let t = Tensor::from_slice_on(&g, &tv, &[n]).unwrap();
    // No options: the fused kernel itself.
    let x = tensor(&xv, &[n, c]).requires_grad();
    let fused = loss::cross_entropy(&x, &t, &CrossEntropyOptions::default()).unwrap();
    assert_eq!(fused.grad_fn(), Some("cross_entropy"));
    assert_eq!(
        fused.item().unwrap(),
        x.cross_entropy(&t).unwrap().item().unwrap()
    );
    fused.backward().unwrap();
    // Unit class weights take the composed path and must give the same loss and gradient.
    let x2 = tensor(&xv, &[n, c]).requires_grad();
    let opts = CrossEntropyOptions {
        class_weights: Some(Tensor::ones_on(&g, &[c]).unwrap()),
        ..Default::default()
    };
    let composed = loss::cross_entropy(&x2, &t, &opts).unwrap();
    assert_ne!(composed.grad_fn(), Some("cross_entropy"));
    let tol = Tolerance::new(3e-4, 1e-6, "log_softmax + gather vs the fused kernel, f32");
    tol.assert_close(
        "composed vs fused loss",
        &[composed.item().unwrap()],
        &[fused.item().unwrap()],
    );
    composed.backward().unwrap();
    tol.assert_close(
        "composed vs fused gradient",
        &f32s(&x2.grad().unwrap()),
        &f32s(&x.grad().unwrap()),
    );
    // A target >= C is NaN on both paths.
    let bad = Tensor::from_slice_on(&g, &[0u32, c as u32 + 2], &[2]).unwrap();
    let x3 = tensor(&xv[..2 * c], &[2, c]);
    let none = CrossEntropyOptions {
        reduction: Reduction::None,
        ..opts.clone()
    };
    let rows = f32s(&loss::cross_entropy(&x3, &bad, &none).unwrap());
    assert!(rows[0].is_finite() && rows[1].is_nan(), "rows {rows:?}");
    assert!(
        loss::cross_entropy(&x3, &bad, &opts)
            .unwrap()
            .item()
            .unwrap()
            .is_nan()
    );
}

#[test]
fn nll_loss_gradients() {
    let (n, c) = (6, 4);
    let targets = [1u32, 3, 0, 3, 2, 1];
    let g = gpu();
    let t = Tensor::from_slice_on(&g, &targets, &[n]).unwrap();
    let wv = [0.5f32, 2.0, 1.0, 1.5];
    let w = Tensor::from_slice_on(&g, &wv, &[c]).unwrap();
    for weighted in [false, true] {
        for red in REDUCTIONS {
            let name = format!("nll_loss weighted {weighted} {red:?}");
            gradcheck(
                &name,
                &[Input::rand(&[n, c], seed(&name), -3.0, -0.1)],
                |ts| loss::nll_loss(&ts[0], &t, weighted.then_some(&w), red),
                |xs| {
                    let wt = |i: usize| {
                        if weighted {
                            wv[targets[i] as usize] as f64
                        } else {
                            1.0
                        }
                    };
                    let rows: Vec<f64> = (0..n)
                        .map(|i| -wt(i) * xs[0][i * c + targets[i] as usize])
                        .collect();
                    match red {
                        Reduction::Mean => {
                            vec![rows.iter().sum::<f64>() / (0..n).map(wt).sum::<f64>()]
                        }
                        _ => reduce_cpu(rows, red),
                    }
                },
                GradTol::default(),
            );
        }
    }
}

#[test]
fn regression_losses_gradients() {
    let shape = [3usize, 7];
    let delta = 0.7;
    for red in REDUCTIONS {
        let inputs = |tag: &str| {
            [
                Input::rand(&shape, seed(&format!("{tag}{red:?}x")), -1.0, 1.0),
                Input::rand(&shape, seed(&format!("{tag}{red:?}y")), -1.0, 1.0),
            ]
        };
        let diff = |xs: &[Vec<f64>]| -> Vec<f64> {
            xs[0].iter().zip(&xs[1]).map(|(a, b)| a - b).collect()
        };
        gradcheck(
            &format!("mse {red:?}"),
            &inputs("mse"),
            |ts| loss::mse_loss(&ts[0], &ts[1], red),
            |xs| reduce_cpu(diff(xs).iter().map(|d| d * d).collect(), red),
            GradTol::default(),
        );
        gradcheck(
            &format!("l1 {red:?}"),
            &inputs("l1"),
            |ts| loss::l1_loss(&ts[0], &ts[1], red),
            |xs| reduce_cpu(diff(xs).iter().map(|d| d.abs()).collect(), red),
            GradTol::default(),
        );
        gradcheck(
            &format!("huber {red:?}"),
            &inputs("huber"),
            |ts| loss::huber_loss(&ts[0], &ts[1], delta as f32, red),
            |xs| {
                let h = |d: f64| {
                    if d.abs() < delta {
                        0.5 * d * d
                    } else {
                        delta * (d.abs() - 0.5 * delta)
                    }
                };
                reduce_cpu(diff(xs).into_iter().map(h).collect(), red)
            },
            GradTol::default(),
        );
    }
}

/// PyTorch's BCEWithLogits: -(p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), in f64.
fn bce_cpu(x: &[f64], y: &[f64], pw: Option<&[f64]>) -> Vec<f64> {
    let c = pw.map_or(1, |p| p.len());
    (0..x.len())
        .map(|i| {
            let p = pw.map_or(1.0, |p| p[i % c]);
            p * y[i] * softplus(-x[i]) + (1.0 - y[i]) * softplus(x[i])
        })
        .collect()
}

#[test]
fn bce_with_logits_gradients_and_stability() {
    let shape = [3usize, 7];
    let pwv = rand_vec(7, seed("pw"), 0.5, 3.0);
    let pw = tensor(&pwv, &[7]);
    let pw64: Vec<f64> = pwv.iter().map(|&v| v as f64).collect();
    for with_pw in [false, true] {
        for red in REDUCTIONS {
            let name = format!("bce_with_logits pos_weight {with_pw} {red:?}");
            gradcheck(
                &name,
                &[
                    Input::rand(&shape, seed(&name), -4.0, 4.0),
                    Input::rand(&shape, seed(&name) + 1, 0.0, 1.0),
                ],
                |ts| loss::bce_with_logits(&ts[0], &ts[1], with_pw.then_some(&pw), red),
                |xs| {
                    reduce_cpu(
                        bce_cpu(&xs[0], &xs[1], with_pw.then_some(pw64.as_slice())),
                        red,
                    )
                },
                GradTol::default(),
            );
        }
    }
    // Large logits neither overflow nor lose the loss; at x = 0 the gradient is sigmoid(0) - y.
    let xv = [-100.0f32, -30.0, 0.0, 30.0, 100.0];
    let yv = [0.0f32, 1.0, 0.25, 0.0, 1.0];
    let x = tensor(&xv, &[5]).requires_grad();
    let l = loss::bce_with_logits(&x, &tensor(&yv, &[5]), None, Reduction::None).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    Tolerance::new(1e-6, 1e-6, "exact up to f32 rounding").assert_close(
        "bce of large logits",
        &f32s(&l),
        &bce_cpu(&f64s(&xv), &f64s(&yv), None),
    );
    l.sum().unwrap().backward().unwrap();
    let gx = f32s(&x.grad().unwrap());
    assert_eq!(gx[2], 0.25, "d/dx at x = 0 must be sigmoid(0) - y");
    Tolerance::new(1e-6, 1e-6, "sigmoid(x) - y").assert_close(
        "bce gradient",
        &gx,
        &[0.0, -1.0, 0.25, 1.0, 0.0],
    );
}

// ---------------------------------------------------------------- Errors

#[test]
fn misuse_is_an_error_naming_the_problem() {
    let g = gpu();
    let x = tensor(&rand_vec(12, 1, -1.0, 1.0), &[3, 4]);
    let t = Tensor::from_slice_on(&g, &[0u32, 1, 2], &[3]).unwrap();
    let tf = tensor(&[0.0, 1.0, 2.0], &[3]);
    let ce =
        |x: &Tensor, t: &Tensor, o: &CrossEntropyOptions| err_text(loss::cross_entropy(x, t, o));
    let d = CrossEntropyOptions::default();
    assert!(ce(&x, &tf, &d).contains("u32"));
    let smoothed = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    assert!(ce(&x, &tf, &smoothed).contains("u32"));
    assert!(ce(&x, &t.narrow(0, 0, 2).unwrap(), &smoothed).contains("targets must have shape (3)"));
    assert!(ce(&x.reshape(&[3, 2, 2]).unwrap(), &t, &smoothed).contains("(N, C)"));
    let bad_smooth = CrossEntropyOptions {
        label_smoothing: 1.5,
        ..Default::default()
    };
    assert!(ce(&x, &t, &bad_smooth).contains("label_smoothing"));
    let bad_w = CrossEntropyOptions {
        class_weights: Some(tensor(&[1.0; 3], &[3])),
        ..Default::default()
    };
    assert!(ce(&x, &t, &bad_w).contains("class_weights must have shape (4)"));
    assert!(err_text(loss::nll_loss(&x, &tf, None, Reduction::Mean)).contains("u32"));
    let y = tensor(&[0.0; 4], &[4]);
    assert!(err_text(loss::mse_loss(&x, &y, Reduction::Mean)).contains("[3, 4]"));
    assert!(
        err_text(loss::l1_loss(
            &x,
            &t.to_dtype(DType::F32).unwrap(),
            Reduction::Sum
        ))
        .contains("differ")
    );
    assert!(err_text(loss::huber_loss(&x, &x, 0.0, Reduction::Mean)).contains("delta"));
    assert!(
        err_text(loss::bce_with_logits(
            &x,
            &x,
            Some(&tensor(&[1.0; 3], &[3])),
            Reduction::Mean
        ))
        .contains("pos_weight")
    );
    assert!(
        err_text(loss::mse_loss(
            &x,
            &x.to_dtype(DType::I32).unwrap(),
            Reduction::Mean
        ))
        .contains("f32 target")
    );

    let lin = Linear::from_tensors(tensor(&[0.5; 6], &[2, 3]), None).unwrap();
    let e = err_text(lin.forward(&x));
    assert!(
        e.contains("Linear") && e.contains("[3, 4]") && e.contains("(..., 3)"),
        "{e}"
    );
    assert!(
        err_text(Linear::from_tensors(
            tensor(&[0.5; 6], &[2, 3]),
            Some(tensor(&[0.0; 3], &[3]))
        ))
        .contains("bias must have shape (2)")
    );
    assert!(err_text(LayerNorm::new(5, 1e-5, true).unwrap().forward(&x)).contains("(..., 5)"));
    let bn = BatchNorm1d::new(4).unwrap();
    assert!(
        err_text(bn.forward(&x.narrow(0, 0, 1).unwrap()))
            .contains("more than one value per channel")
    );
    assert!(err_text(BatchNorm1d::new(5).unwrap().forward(&x)).contains("(N, 5)"));
    let bad_bn = BatchNormOptions {
        momentum: 2.0,
        ..Default::default()
    };
    assert!(err_text(BatchNorm1d::with_options(3, bad_bn)).contains("momentum"));
    let emb = Embedding::from_weight(tensor(&[0.0; 6], &[3, 2])).unwrap();
    assert!(err_text(emb.forward(&tf)).contains("u32"));
    for p in [-0.1f32, 1.5, f32::NAN] {
        assert!(err_text(Dropout::new(p)).contains("[0, 1]"), "p = {p}");
    }
    assert!(
        err_text(init::kaiming_uniform(&[5], 1.0, init::FanMode::FanIn))
            .contains("at least 2 dims")
    );
    assert!(err_text(init::uniform(&[5], 1.0, -1.0)).contains("lo <= hi"));
    assert!(err_text(init::normal(&[5], 0.0, -1.0)).contains("std"));
    assert!(err_text(init::kaiming_normal(&[0, 4], 1.0, init::FanMode::FanOut)).contains("is 0"));
}
