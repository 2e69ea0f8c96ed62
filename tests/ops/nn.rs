//! `kiln::nn`: layers against CPU computations at awkward sizes, gradient checks of every layer and
//! loss, BatchNorm's running statistics, the dropout layer (the op: `dropout.rs`), initialiser
//! statistics, the global RNG's reproducibility, container naming, and error cases.
//!
//! Tests that draw from the global random stream (layer constructors, Dropout in training) hold
//! `RNG_LOCK`: the stream is process-wide and the tests of one binary run in parallel.

use crate::common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use kiln::nn::loss::{self, CrossEntropyOptions};
use kiln::nn::{
    BatchNorm1d, BatchNormOptions, Dropout, Embedding, GELU, LayerNorm, Linear, Module, ReLU,
    Reduction, Sequential, SiLU, Sigmoid, Tanh, init, rng,
};
use kiln::{DType, Tensor};
use kiln_kernels::launch::batch_norm::NormShape;
use kiln_kernels::reference::batch_norm as cpu_norm;

static RNG_LOCK: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// f32 dot products / row statistics against f64.
const SUMS: Tolerance = Tolerance::new(1e-4, 1e-5, "f32 sums of up to 257 terms vs f64");

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
            let s = NormShape { n, c, hw: 1 };
            let (mean, var) = cpu_norm::batch_stats(s, &xs[0]);
            cpu_norm::normalize(s, &xs[0], &mean, &var, &xs[1], &xs[2], 1e-5)
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
        // The CPU twin with the layer's initial unit weight and zero bias.
        let s = NormShape { n, c, hw: l };
        let norm = |x: &[f64], mean: &[f64], var: &[f64]| {
            cpu_norm::normalize(s, x, mean, var, &vec![1.0; c], &vec![0.0; c], 1e-5)
        };
        for step in 0..2 {
            let x = rand_vec(n * c * l, seed(&format!("bn{c}{step}")), -1.0, 3.0);
            let y = bn.forward(&tensor(&x, &shape)).unwrap();
            let x64 = f64s(&x);
            let (mean, var) = cpu_norm::batch_stats(s, &x64);
            let want = norm(&x64, &mean, &var);
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
        let want = norm(&f64s(&x), &rm, &rv);
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

mod random;

mod losses;
