//! Semi-supervised learning: the pseudo-label / FixMatch objective against an f64 CPU twin
//! (value and finite-difference gradient), its warm-up and determinism, strong augmentation,
//! and label spreading against a brute-force CPU twin.

use std::sync::Arc;

use crate::common;

use common::*;
use kiln::Tensor;
use kiln::data::{Augment, Batch, Dataset, InMemoryDataset, Targets};
use kiln::nn::Module;
use kiln::train::Objective;
use kiln::train::Task;
use kiln::train::semi::{Cycled, SemiMethod, SemiOptions, SemiSupervised};
use kiln::unsupervised::LabelSpreading;

/// A bias-free linear classifier `x W` whose weight is a given tensor (so a gradient check
/// can differentiate through it).
struct Lin(Tensor);

impl Module for Lin {
    fn forward(&self, x: &Tensor) -> kiln::Result<Tensor> {
        x.matmul(&self.0)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("w".into(), self.0.clone())]
    }
}

/// No change: FixMatch with these augmentations is pseudo-labelling.
struct Same;
impl Augment for Same {
    fn augment(&self, _: &mut Batch, _: u64) {}
}

const F: usize = 5; // features
const C: usize = 4; // classes

fn dataset(n: usize, tag: &str, labels: bool) -> InMemoryDataset {
    let x = rand_vec(n * F, seed(tag), -2.0, 2.0);
    let y: Vec<u32> = (0..n)
        .map(|i| if labels { (i * 7 % C) as u32 } else { 0 })
        .collect();
    let t = Targets::Classes {
        labels: y,
        num_classes: C,
    };
    InMemoryDataset::new(x, vec![F], t).unwrap()
}

fn task() -> Task {
    Task::Classification {
        class_names: (0..C).map(|c| c.to_string()).collect(),
    }
}

fn opts(method: SemiMethod, threshold: f32, warmup: usize) -> SemiOptions {
    SemiOptions {
        method,
        threshold,
        weight: 0.7,
        ratio: 4,
        warmup,
        seed: 11,
    }
}

/// The objective's loss in f64: `mean CE(x_l W, y) + 0.7 / U * sum_i [p_i > tau] CE(x_u,i W, argmax)`.
fn cpu_loss(w: &[f64], xl: &[f32], y: &[u32], xu: &[f32], tau: f64) -> f64 {
    let row = |x: &[f32], i: usize| -> Vec<f64> {
        (0..C)
            .map(|c| (0..F).map(|f| x[i * F + f] as f64 * w[f * C + c]).sum())
            .collect()
    };
    let ce = |z: &[f64], t: usize| {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - z[t]
    };
    let nl = y.len();
    let sup = (0..nl).map(|i| ce(&row(xl, i), y[i] as usize)).sum::<f64>() / nl as f64;
    let nu = xu.len() / F;
    let mut unl = 0.0;
    for i in 0..nu {
        let z = row(xu, i);
        let t = (0..C).fold(0, |b, c| if z[c] > z[b] { c } else { b });
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let conf = 1.0 / z.iter().map(|v| (v - m).exp()).sum::<f64>();
        if conf > tau {
            unl += ce(&z, t);
        }
    }
    sup + 0.7 * unl / nu as f64
}

#[test]
fn pseudo_label_loss_matches_cpu_twin_with_its_gradient() {
    let (lab, unl) = (dataset(6, "semi-l", true), dataset(9, "semi-u", false));
    let b = lab.batch(&(0..6).collect::<Vec<_>>());
    let Targets::Classes { labels, .. } = &b.y else {
        unreachable!()
    };
    let xu = unl.features().to_vec();
    for (method, tau) in [(SemiMethod::Pseudo, 0.3), (SemiMethod::FixMatch, 0.45)] {
        let unl: Arc<dyn Dataset> = Arc::new(unl.clone());
        let build = || {
            let o = SemiSupervised::new(&gpu(), task(), unl.clone(), 6, opts(method, tau, 0));
            let o = o.unwrap();
            match method {
                SemiMethod::FixMatch => o.with_augment(Arc::new(Same), Arc::new(Same)),
                SemiMethod::Pseudo => o,
            }
        };
        let name = format!("semi loss {method:?}");
        gradcheck(
            &name,
            &[Input::rand(&[F, C], seed(&name), -1.5, 1.5)],
            |t| {
                let mut o = build();
                o.position(1, 0, 1);
                Ok(o.loss(&Lin(t[0].clone()), &b)?.0)
            },
            |x| vec![cpu_loss(&x[0], &b.x, labels, &xu, tau as f64)],
            GradTol::default(),
        );
    }
}

#[test]
fn warmup_leaves_the_unlabelled_term_out_and_batches_are_a_function_of_the_place() {
    let (lab, unl) = (dataset(8, "warm-l", true), dataset(200, "warm-u", false));
    let b = lab.batch(&(0..8).collect::<Vec<_>>());
    let w = Tensor::from_slice_on(&gpu(), &rand_vec(F * C, 3, -2.0, 2.0), &[F, C]).unwrap();
    let m = Lin(w);
    let mut sup = kiln::train::Supervised::new(&gpu(), task());
    let supervised = sup.loss(&m, &b).unwrap().0.item().unwrap();
    let unl: Arc<dyn Dataset> = Arc::new(unl);
    let o = opts(SemiMethod::Pseudo, 0.3, 2);
    let mut obj = SemiSupervised::new(&gpu(), task(), unl.clone(), 8, o).unwrap();
    let mut at = |e: usize, k: usize| {
        obj.position(e, k, 7);
        obj.loss(&m, &b).unwrap().0.item().unwrap()
    };
    assert_eq!(at(2, 0), supervised, "epoch 2 is still warm-up");
    let (a, again, other) = (at(3, 1), at(3, 1), at(3, 2));
    assert!(
        a > supervised,
        "the unlabelled term adds: {a} vs {supervised}"
    );
    assert_eq!(a, again, "the same place draws the same unlabelled batch");
    assert_ne!(a, other, "another batch draws other unlabelled rows");
    // A fresh objective at the same place agrees (what a resumed run relies on).
    let mut fresh = SemiSupervised::new(&gpu(), task(), unl, 8, o).unwrap();
    fresh.position(3, 1, 7);
    assert_eq!(fresh.loss(&m, &b).unwrap().0.item().unwrap(), a);
}

#[test]
fn cycled_repeats_the_labelled_set_over_an_epoch_of_unlabelled_data() {
    let lab: Arc<dyn Dataset> = Arc::new(dataset(5, "cyc", true));
    let c = Cycled::covering(lab.clone(), 100, 7);
    assert_eq!(c.len(), 15); // ceil(100 / 7)
    assert_eq!(c.batch(&[12, 3]), lab.batch(&[2, 3]));
    assert_eq!(
        Cycled::covering(lab, 3, 7).len(),
        5,
        "never shorter than the labelled set"
    );
}

#[test]
fn bad_settings_are_errors_naming_the_setting() {
    let unl: Arc<dyn Dataset> = Arc::new(dataset(4, "bad", false));
    let make = |o: SemiOptions, t: Task, u: Arc<dyn Dataset>| {
        SemiSupervised::new(&gpu(), t, u, 4, o)
            .err()
            .map(|e| e.to_string())
    };
    let base = opts(SemiMethod::Pseudo, 0.9, 0);
    let cases: Vec<(SemiOptions, &str)> = vec![
        (
            SemiOptions {
                threshold: 1.0,
                ..base
            },
            "semi.threshold",
        ),
        (
            SemiOptions {
                threshold: f32::NAN,
                ..base
            },
            "semi.threshold",
        ),
        (
            SemiOptions {
                weight: -1.0,
                ..base
            },
            "semi.weight",
        ),
        (SemiOptions { ratio: 0, ..base }, "semi.ratio"),
        (
            SemiOptions {
                ratio: 1000,
                ..base
            },
            "semi.ratio",
        ),
    ];
    for (o, want) in cases {
        let e = make(o, task(), unl.clone()).expect("an error");
        assert!(e.contains(want), "{e}");
    }
    let e = make(base, Task::Regression { width: 1 }, unl).expect("regression refused");
    assert!(e.contains("classification"), "{e}");
    let empty: Arc<dyn Dataset> = Arc::new(dataset(0, "empty", false));
    let e = make(base, task(), empty).expect("no unlabelled rows refused");
    assert!(e.contains("unlabelled"), "{e}");
}

#[test]
fn strong_augmentation_is_seeded_and_cuts_out_a_square() {
    use kiln::data::images::Strong;
    let shape = (2, 9, 7);
    let n = 3;
    let x: Vec<f32> = rand_vec(n * 2 * 9 * 7, seed("strong"), 0.5, 1.5);
    let batch = Batch {
        x: x.clone(),
        x_shape: vec![n, 2, 9, 7],
        y: Targets::Classes {
            labels: vec![0; n],
            num_classes: 1,
        },
    };
    let s = Strong::for_shape(shape);
    let run = |seed: u64| {
        let mut b = batch.clone();
        s.augment(&mut b, seed);
        b.x
    };
    assert_eq!(run(5), run(5), "a pure function of (batch, seed)");
    assert_ne!(run(5), run(6));
    assert_ne!(run(5), x);
    // Without shift, contrast and noise only the cut-out square changes (to 0).
    let cut = Strong {
        shift: 0,
        contrast: 0.0,
        noise: 0.0,
        ..s
    };
    let mut b = batch.clone();
    cut.augment(&mut b, 9);
    for (i, img) in b.x.chunks(2 * 9 * 7).enumerate() {
        let zeros = img.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros <= 2 * 4 * 3, "image {i}: {zeros} zeroed");
        for (a, o) in img.iter().zip(&x[i * 126..(i + 1) * 126]) {
            assert!(*a == 0.0 || (a - o).abs() < 1e-6, "only the square changes");
        }
    }
}

/// Label spreading in f64 on the host, from brute-force neighbours.
fn spread_cpu(
    x: &[f32],
    d: usize,
    labels: &[Option<u32>],
    c: usize,
    ls: &LabelSpreading,
) -> Vec<f64> {
    let n = x.len() / d;
    let dist = |i: usize, j: usize| -> f64 {
        (0..d)
            .map(|f| ((x[i * d + f] - x[j * d + f]) as f64).powi(2))
            .sum()
    };
    let mut adj = vec![vec![false; n]; n];
    let near: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&a, &b| dist(i, a).total_cmp(&dist(i, b)).then(a.cmp(&b)));
            order.truncate(ls.k);
            order
        })
        .collect();
    for (i, list) in near.iter().enumerate() {
        for &j in list {
            adj[i][j] = true;
            adj[j][i] = true;
        }
    }
    let deg: Vec<f64> = adj
        .iter()
        .map(|r| r.iter().filter(|&&v| v).count() as f64)
        .collect();
    let mut y = vec![0.0; n * c];
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            y[i * c + *l as usize] = 1.0;
        }
    }
    let (a, mut f) = (ls.alpha as f64, y.clone());
    for _ in 0..ls.max_iter {
        let mut next = vec![0.0; n * c];
        let mut moved: f64 = 0.0;
        for i in 0..n {
            for k in 0..c {
                let s: f64 = (0..n)
                    .filter(|&j| adj[i][j])
                    .map(|j| f[j * c + k] / (deg[i] * deg[j]).sqrt())
                    .sum();
                next[i * c + k] = a * s + (1.0 - a) * y[i * c + k];
                moved = moved.max((next[i * c + k] - f[i * c + k]).abs());
            }
        }
        f = next;
        if moved < ls.tol as f64 {
            break;
        }
    }
    for row in f.chunks_mut(c) {
        let s: f64 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        }
    }
    f
}

#[test]
fn label_spreading_matches_a_brute_force_cpu_twin_at_awkward_sizes() {
    let tol = Tolerance::new(1e-4, 1e-5, "f32 host iteration vs f64, same graph");
    for &(n, d, c, k, tag) in &[
        (13usize, 1usize, 2usize, 1usize, "a"),
        (61, 5, 3, 7, "b"),
        (130, 3, 4, 12, "c"),
    ] {
        let x = rand_vec(n * d, seed(&format!("spread{tag}")), -4.0, 4.0);
        let labels: Vec<Option<u32>> = (0..n)
            .map(|i| (i % 5 == 0).then_some((i / 5 % c) as u32))
            .collect();
        let ls = LabelSpreading {
            k,
            max_iter: 50,
            tol: 1e-6,
            ..LabelSpreading::default()
        };
        let fit = ls.fit(&x, d, &labels, c).unwrap();
        let want = spread_cpu(&x, d, &labels, c, &ls);
        tol.assert_close(&format!("spread n={n} d={d} k={k}"), &fit.dist, &want);
        // New points take the summed distributions of their k nearest training points.
        let q = rand_vec(7 * d, seed(&format!("q{tag}")), -4.0, 4.0);
        let got = fit.predict(&q, d).unwrap();
        assert_eq!(got.len(), 7);
        assert!(got.iter().all(|&l| (l as usize) < c));
    }
}

#[test]
fn label_spreading_bad_input_is_an_error() {
    let x = rand_vec(20, seed("lsbad"), -1.0, 1.0);
    let some: Vec<Option<u32>> = (0..10).map(|i| (i < 2).then_some(i as u32)).collect();
    let fit =
        |ls: LabelSpreading, x: &[f32], l: &[Option<u32>], c: usize| err_text(ls.fit(x, 2, l, c));
    let ls = LabelSpreading::default();
    assert!(fit(LabelSpreading { k: 0, ..ls }, &x, &some, 2).contains("k = 0"));
    assert!(fit(LabelSpreading { k: 10, ..ls }, &x, &some, 2).contains("k < n"));
    assert!(fit(LabelSpreading { alpha: 1.0, ..ls }, &x, &some, 2).contains("alpha"));
    assert!(fit(ls, &x, &some, 1).contains("not below 1 classes"));
    assert!(fit(ls, &x, &[None; 10], 2).contains("no labelled point"));
    assert!(fit(ls, &x, &some[..9], 2).contains("9 labels for 10 points"));
    let mut nan = x.clone();
    nan[3] = f32::NAN;
    assert!(fit(ls, &nan, &some, 2).contains("row 1, feature 1"));
    let ok = LabelSpreading { k: 3, ..ls }.fit(&x, 2, &some, 2).unwrap();
    assert!(err_text(ok.predict(&x, 3)).contains("3 features"));
}
