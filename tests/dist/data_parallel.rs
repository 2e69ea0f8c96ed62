//! Data parallelism on several devices of one process: with the same global batch and seed,
//! `N` replicas (plain, ZeRO-1, ZeRO-2) log the losses of a single-device run within 1e-5 for
//! 50 steps of Adam on a small MLP (dropout off: each replica draws its own masks).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use kiln::Gpu;
use kiln::data::{Dataset, InMemoryDataset, Targets};
use kiln::dist::Local;
use kiln::models::ModelSpec;
use kiln::optim::{Optimizer, OptimizerKind};
use kiln::train::parallel::Replica;
use kiln::train::zero::Zero;
use kiln::train::{Supervised, Task, TrainConfig, Trainer};

/// 13 rows of 5 features in 3 classes: one global batch of 13 per step (6 + 7 rows on two
/// devices), one step per epoch, so each epoch's logged loss is one step's.
fn data() -> Arc<dyn Dataset> {
    let x = rand_vec(13 * 5, seed("dp-x"), -1.0, 1.0);
    let labels = x
        .chunks(5)
        .map(|r| ((r[0] + 2.0 * r[1] - r[4]).abs() * 2.0) as u32 % 3);
    let y = Targets::Classes {
        labels: labels.collect(),
        num_classes: 3,
    };
    Arc::new(InMemoryDataset::new(x, vec![5], y).unwrap())
}

/// The group tests run one at a time: on two shared CPU cores, two groups of software devices
/// at once (one of them OpenGL) can starve a replica past the collective's timeout.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 50,
        batch_size: 13,
        quiet: true,
        optimizer: "adam".into(),
        lr: 0.01,
        ..Default::default()
    }
}

/// One replica's run (or the single-device one without `replica`): per-step losses and the
/// final parameters.
fn run(gpu: &Arc<Gpu>, replica: Option<Replica>, name: &str) -> (Vec<f64>, Vec<f32>) {
    kiln::with_device(gpu, || {
        // kiln's random stream is process-wide: rank 0 (or the single run) seeds it and builds
        // its model alone; the others build theirs after (rank 0's weights replace them).
        let rank = replica.as_ref().map(|r| r.place().0);
        if rank.is_some_and(|r| r > 0) {
            replica.as_ref().unwrap().with(|c| c.barrier()).unwrap();
        } else {
            kiln::nn::manual_seed(7);
        }
        let spec = ModelSpec::Mlp {
            input: 5,
            hidden: vec![9, 6],
            output: 3,
            activation: "tanh".into(),
            dropout: 0.0,
        };
        let mut model = spec.build(gpu).unwrap();
        if rank == Some(0) {
            replica.as_ref().unwrap().with(|c| c.barrier()).unwrap();
        }
        let build = |p| kiln::optim::build(OptimizerKind::Adam, p, 0.01, 0.0, 0.0);
        let mut opt: Box<dyn Optimizer> = match &replica {
            Some(r) if r.zero > 0 => {
                Box::new(Zero::new(r.clone(), r.zero, model.named_parameters(), build).unwrap())
            }
            _ => build(model.named_parameters()).unwrap(),
        };
        let dir = std::env::temp_dir().join(format!("kiln-dp-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut t = Trainer::new(gpu, config(), data(), &dir);
        t.replica = replica;
        let task = Task::Classification {
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        let mut objective = Supervised::new(gpu, task);
        let report = t
            .fit(
                model.as_mut(),
                opt.as_mut(),
                &mut objective,
                Default::default(),
            )
            .unwrap();
        let losses = report.records.iter().map(|r| r.train_loss).collect();
        let params = model.parameters().into_iter();
        let params = params.flat_map(|p| p.to_vec::<f32>().unwrap());
        (losses, params.collect())
    })
}

/// Every replica of a group over `gpus` (ZeRO `zero`), run on its own thread.
fn run_group(gpus: &[Arc<Gpu>], zero: u8, name: &str) -> Vec<(Vec<f64>, Vec<f32>)> {
    let group = Local::group(gpus.len(), Duration::from_secs(120)).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .zip(gpus)
            .enumerate()
            .map(|(r, (c, g))| {
                let replica = Replica::new(Box::new(c), zero);
                s.spawn(move || run(g, Some(replica), &format!("{name}-{r}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_same(single: &(Vec<f64>, Vec<f32>), group: &[(Vec<f64>, Vec<f32>)], what: &str) {
    assert_eq!(single.0.len(), 50);
    for (r, (losses, params)) in group.iter().enumerate() {
        for (step, (a, b)) in losses.iter().zip(&single.0).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5,
                "{what} rank {r} step {}: {a} vs {b}",
                step + 1
            );
        }
        for (i, (a, b)) in params.iter().zip(&single.1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4,
                "{what} rank {r} parameter value {i}: {a} vs {b}"
            );
        }
    }
    // The loss moved: the comparison is not between two untrained models.
    assert!(single.0[49] < single.0[0] - 0.05, "{:?}", single.0);
}

#[test]
fn two_devices_on_one_adapter_match_one_device_plain_and_zero() {
    let _one_at_a_time = serial();
    let one = Gpu::open_list("0").unwrap();
    let single = run(&one[0], None, "single");
    let two = Gpu::open_list("0,0").unwrap();
    assert!(!Arc::ptr_eq(&two[0], &two[1]), "two devices");
    assert_same(&single, &run_group(&two, 0, "dp"), "DP");
    assert_same(&single, &run_group(&two, 1, "zero1"), "ZeRO-1");
    assert_same(&single, &run_group(&two, 2, "zero2"), "ZeRO-2");
    let three = Gpu::open_list("0,0,0").unwrap();
    assert_same(&single, &run_group(&three, 2, "zero2x3"), "ZeRO-2 on 3");
}

#[test]
fn vulkan_and_opengl_replicas_match_one_device() {
    let _one_at_a_time = serial();
    let adapters = Gpu::adapters().unwrap();
    let gl = adapters.iter().find(|a| a.backend == wgpu_gl());
    let Some(gl) = gl else {
        return skip(
            "data parallel across backends",
            "no OpenGL adapter is listed beside the Vulkan one",
            "apt-get install libegl1 libgl1-mesa-dri",
        );
    };
    let gpus = Gpu::open_list(&format!("0,{}", gl.index)).unwrap();
    let single = run(&gpus[0], None, "single-gl");
    assert_same(&single, &run_group(&gpus, 0, "vk-gl"), "Vulkan + GL");
}

fn wgpu_gl() -> kiln_kernels::wgpu::Backend {
    kiln_kernels::wgpu::Backend::Gl
}

#[test]
fn a_global_batch_too_small_for_the_devices_is_an_error() {
    let two = Gpu::open_list("0,0").unwrap();
    let group = Local::group(2, Duration::from_secs(5)).unwrap();
    let replica = Replica::new(Box::new(group.into_iter().next().unwrap()), 0);
    let cfg = TrainConfig {
        batch_size: 1,
        ..config()
    };
    let err = replica.check(&cfg, 13).unwrap_err().to_string();
    assert!(err.contains("at least one row per device"), "{err}");
    let _ = two;
}
