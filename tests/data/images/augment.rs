//! Training augmentation: crop + flip against a naive CPU reference, the loader hook (fresh
//! draws per epoch, untouched evaluation batches), and the trainer applying it to training only.

use std::sync::Arc;

use kiln::data::images::{Augmented, CropFlip};
use kiln::data::{Augment, Batch, DataLoader, Dataset, InMemoryDataset, Targets, augment_seed};

use super::{common, scratch};

/// A naive reference for crop + flip: build the zero-padded image, take the window, mirror it.
fn reference_crop_flip(
    src: &[f32],
    (c, h, w): (usize, usize, usize),
    p: usize,
    (dy, dx, flip): (usize, usize, bool),
) -> Vec<f32> {
    let (ph, pw) = (h + 2 * p, w + 2 * p);
    let mut padded = vec![0.0; c * ph * pw];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                padded[(ch * ph + y + p) * pw + x + p] = src[(ch * h + y) * w + x];
            }
        }
    }
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                out[(ch * h + y) * w + x] = padded[(ch * ph + y + dy) * pw + x + dx];
            }
        }
        if flip {
            for y in 0..h {
                out[(ch * h + y) * w..(ch * h + y + 1) * w].reverse();
            }
        }
    }
    out
}

fn image_batch(n: usize, shape: (usize, usize, usize)) -> Batch {
    let per = shape.0 * shape.1 * shape.2;
    Batch {
        x: (0..n * per).map(|i| 1.0 + i as f32).collect(),
        x_shape: vec![n, shape.0, shape.1, shape.2],
        y: Targets::Classes {
            labels: vec![0; n],
            num_classes: 1,
        },
    }
}

#[test]
fn crop_and_flip_match_a_cpu_reference() {
    let shape = (3, 7, 9);
    let per = 3 * 7 * 9;
    let aug = CropFlip {
        shape,
        padding: 2,
        flip: true,
    };
    let seed = 1234;
    let mut b = image_batch(17, shape);
    let raw = b.clone();
    aug.augment(&mut b, seed);
    let draws = aug.draws(seed, 17);
    for (i, d) in draws.iter().enumerate() {
        let want = reference_crop_flip(&raw.x[i * per..(i + 1) * per], shape, 2, *d);
        assert_eq!(
            &b.x[i * per..(i + 1) * per],
            want.as_slice(),
            "example {i}, draw {d:?}"
        );
    }
    assert_eq!(b.x_shape, raw.x_shape);
    assert_eq!(b.y, raw.y);
    // The same seed gives the same batch; draws cover the whole offset range and both flips.
    let mut b2 = raw.clone();
    aug.augment(&mut b2, seed);
    assert_eq!(b2, b);
    let many = aug.draws(7, 2000);
    for v in 0..=4 {
        assert!(
            many.iter().any(|d| d.0 == v) && many.iter().any(|d| d.1 == v),
            "offset {v}"
        );
    }
    let flips = many.iter().filter(|d| d.2).count();
    assert!((850..1150).contains(&flips), "flip rate {flips}/2000");
    // Flip only: every example is either unchanged or exactly mirrored, and both occur.
    let flip_only = CropFlip {
        shape,
        padding: 0,
        flip: true,
    };
    let mut f = raw.clone();
    flip_only.augment(&mut f, 99);
    let mut seen = (false, false);
    for (i, d) in flip_only.draws(99, 17).iter().enumerate() {
        let (got, src) = (&f.x[i * per..(i + 1) * per], &raw.x[i * per..(i + 1) * per]);
        let mirrored: Vec<f32> = src
            .chunks(9)
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        if d.2 {
            assert_eq!(got, mirrored.as_slice(), "example {i} flipped");
            seen.1 = true;
        } else {
            assert_eq!(got, src, "example {i} kept");
            seen.0 = true;
        }
    }
    assert_eq!(seen, (true, true));
    // Crop only with padding 1 on a 1x1 image: the pixel survives only at the centre offset.
    let tiny = CropFlip {
        shape: (1, 1, 1),
        padding: 1,
        flip: false,
    };
    let mut t = image_batch(40, (1, 1, 1));
    let src = t.x.clone();
    tiny.augment(&mut t, 5);
    for (i, d) in tiny.draws(5, 40).iter().enumerate() {
        let want = if (d.0, d.1) == (1, 1) { src[i] } else { 0.0 };
        assert_eq!(t.x[i], want);
    }
}

fn image_dataset(n: usize, shape: (usize, usize, usize)) -> Arc<InMemoryDataset> {
    let per = shape.0 * shape.1 * shape.2;
    let x: Vec<f32> = (0..n * per)
        .map(|i| ((i * 7919) % 101) as f32 / 100.0 + 0.01)
        .collect();
    let labels = (0..n as u32).map(|i| i % 3).collect();
    Arc::new(
        InMemoryDataset::new(
            x,
            vec![shape.0, shape.1, shape.2],
            Targets::Classes {
                labels,
                num_classes: 3,
            },
        )
        .unwrap(),
    )
}

#[test]
fn augmentation_changes_training_batches_but_never_evaluation() {
    let shape = (1, 8, 8);
    let ds = image_dataset(23, shape);
    let aug = CropFlip {
        shape,
        padding: 2,
        flip: true,
    };
    let train: Arc<dyn Dataset> = Arc::new(Augmented::new(ds.clone(), aug).unwrap());
    // `batch` itself never augments: what `evaluate` reads is the raw data.
    assert_eq!(train.batch(&[3, 1]), ds.batch(&[3, 1]));
    assert!(ds.augmentation().is_none());
    let a = train
        .augmentation()
        .expect("the training split carries its augmentation");
    let loader = DataLoader::new(train.clone(), 5).unwrap().augment(a, 42);
    let e1: Vec<Batch> = loader.epoch(1).collect();
    let e2: Vec<Batch> = loader.epoch(2).collect();
    let raw: Vec<Batch> = DataLoader::new(train.clone(), 5)
        .unwrap()
        .epoch(1)
        .collect();
    assert_eq!(e1.len(), 5);
    assert_ne!(e1, raw, "training batches are augmented");
    assert_ne!(e1, e2, "each epoch draws new augmentations");
    assert_eq!(
        e1,
        loader.epoch(1).collect::<Vec<_>>(),
        "reproducible per (seed, epoch)"
    );
    // Batch i of epoch e is the raw batch through the augmentation seeded by augment_seed.
    for (i, (got, r)) in e1.iter().zip(&raw).enumerate() {
        let mut want = r.clone();
        aug.augment(&mut want, augment_seed(42, 1, i as u64));
        assert_eq!(got, &want, "batch {i}");
    }
    // An evaluation loader (no augment) gives identical batches every epoch.
    let eval = DataLoader::new(train, 5).unwrap();
    let (v1, v2): (Vec<Batch>, Vec<Batch>) = (eval.epoch(1).collect(), eval.epoch(2).collect());
    assert_eq!(v1, v2);
    assert_eq!(v1, raw);
    // A mismatched augmentation is refused.
    assert!(
        Augmented::new(
            ds,
            CropFlip {
                shape: (3, 8, 8),
                padding: 1,
                flip: false
            }
        )
        .is_err()
    );
}

/// One epoch of a linear classifier on `train`; returns (train loss, val loss) and the model.
fn one_epoch(
    train: Arc<dyn Dataset>,
    val: Arc<dyn Dataset>,
    name: &str,
) -> ((f64, f64), Box<dyn kiln::nn::Module>) {
    use kiln::optim::{Sgd, SgdConfig};
    use kiln::train::log::EpochRecord;
    use kiln::train::{OnEpoch, Progress, Supervised, Task, TrainConfig, Trainer};
    let gpu = common::gpu();
    kiln::nn::manual_seed(5);
    let mut model = kiln::models::ModelSpec::Linear {
        input: 16,
        output: 3,
    }
    .build(&gpu)
    .unwrap();
    let mut opt = Sgd::new(model.named_parameters(), SgdConfig::new(0.1)).unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 8,
        quiet: true,
        seed: 3,
        restore_best: false,
        ..Default::default()
    };
    let losses = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = losses.clone();
    let task = Task::Classification {
        class_names: vec!["a".into(), "b".into(), "c".into()],
    };
    let mut objective = Supervised::new(&gpu, task);
    let mut t = Trainer::new(&gpu, config, train, scratch(name))
        .with_val(val)
        .hook(OnEpoch(move |r: &EpochRecord| {
            sink.borrow_mut().push((r.train_loss, r.val_loss.unwrap()))
        }));
    t.fit(
        model.as_mut(),
        &mut opt,
        &mut objective,
        Progress::default(),
    )
    .unwrap();
    drop(t);
    let l = losses.borrow()[0];
    (l, model)
}

#[test]
fn the_trainer_augments_training_batches_only() {
    let shape = (1, 4, 4);
    let ds: Arc<dyn Dataset> = image_dataset(24, shape);
    let val: Arc<dyn Dataset> = image_dataset(9, shape);
    let wrap =
        |a: CropFlip| -> Arc<dyn Dataset> { Arc::new(Augmented::new(ds.clone(), a).unwrap()) };
    let identity = CropFlip {
        shape,
        padding: 0,
        flip: false,
    };
    let crop_flip = CropFlip {
        shape,
        padding: 1,
        flip: true,
    };
    let (plain, _) = one_epoch(ds.clone(), val.clone(), "t-plain");
    let (same, _) = one_epoch(wrap(identity), val.clone(), "t-identity");
    let (aug, mut model) = one_epoch(wrap(crop_flip), val.clone(), "t-aug");
    assert_eq!(plain, same, "an identity augmentation changes nothing");
    assert_ne!(
        plain.0, aug.0,
        "the training loader applies the augmentation"
    );
    // Evaluating the augmented training split sees the raw images, every time.
    let gpu = common::gpu();
    let task = kiln::train::Task::Classification {
        class_names: vec!["a".into(), "b".into(), "c".into()],
    };
    let e1 =
        kiln::train::evaluate(&gpu, model.as_mut(), &task, wrap(crop_flip).as_ref(), 8).unwrap();
    let e2 = kiln::train::evaluate(&gpu, model.as_mut(), &task, ds.as_ref(), 8).unwrap();
    assert_eq!(e1, e2);
}
