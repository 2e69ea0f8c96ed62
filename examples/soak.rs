//! Soak check: train the digits MLP through the one training loop (validation every epoch, a
//! checkpoint every 50 steps, metrics logged) for a long time, sampling the process's resident
//! memory (`VmRSS` in /proc/self/status) and the buffer pool's live and cached bytes after every
//! epoch; print the samples and the slopes at the end. Flat lines mean nothing leaks per step.
//!
//! `cargo run --release --example soak -- 10` (minutes; default 10). Results: BENCHMARKS.md.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use kiln::data::{Dataset, digits};
use kiln::nn::{Linear, Module, ReLU, Sequential};
use kiln::optim::{Adam, AdamConfig};
use kiln::train::log::EpochRecord;
use kiln::train::{Control, EpochEnd, Hook, Progress, Supervised, Task, TrainConfig, Trainer};

/// One sample: seconds, epoch, RSS bytes, pool live bytes, pool cached bytes.
type Sample = (f64, usize, u64, u64, u64);

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Sampler {
    gpu: Arc<kiln::Gpu>,
    start: Instant,
    samples: Rc<RefCell<Vec<Sample>>>,
}

impl Hook for Sampler {
    fn end_of_epoch(
        &mut self,
        record: &EpochRecord,
        _: &EpochEnd,
        _: &dyn Module,
    ) -> kiln::Result<Control> {
        let (live, _, cached, _) = self.gpu.pool_stats();
        self.samples.borrow_mut().push((
            self.start.elapsed().as_secs_f64(),
            record.epoch,
            rss_bytes(),
            live,
            cached,
        ));
        Ok(Control::Continue)
    }
}

/// Least-squares slope of `y` against `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den > 0.0 { num / den } else { 0.0 }
}

fn main() -> kiln::Result<()> {
    let minutes = match std::env::args().nth(1) {
        Some(a) => a
            .parse::<f64>()
            .map_err(|e| kiln::Error::Config(format!("minutes {a:?}: {e}")))?,
        None => 10.0,
    };
    let gpu = kiln::device()?;
    let all = digits().map_err(|e| kiln::Error::Config(e.to_string()))?;
    let split = |r: std::ops::Range<usize>| -> kiln::Result<Arc<dyn Dataset>> {
        let idx: Vec<usize> = r.collect();
        Ok(Arc::new(
            all.subset(&idx)
                .map_err(|e| kiln::Error::Config(e.to_string()))?,
        ))
    };
    let (train, val) = (split(0..1500)?, split(1500..all.len())?);
    let config = TrainConfig {
        epochs: 1_000_000,
        batch_size: 64,
        time_limit_minutes: Some(minutes),
        checkpoint_every: Some(50),
        quiet: true,
        ..TrainConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("kiln-soak-{}", std::process::id()));
    let samples = Rc::new(RefCell::new(Vec::new()));
    let sampler = Sampler {
        gpu: gpu.clone(),
        start: Instant::now(),
        samples: samples.clone(),
    };
    let mut trainer = Trainer::new(&gpu, config, train, &dir)
        .with_val(val)
        .hook(sampler);
    let mut model = Sequential::new()
        .with(Linear::new(64, 256, true)?)
        .with(ReLU)
        .with(Linear::new(256, 128, true)?)
        .with(ReLU)
        .with(Linear::new(128, 10, true)?);
    let mut opt = Adam::new(model.named_parameters(), AdamConfig::adam(1e-3))?;
    let names = (0..10).map(|i| i.to_string()).collect();
    let mut objective = Supervised::new(&gpu, Task::Classification { class_names: names });
    let report = trainer.fit(&mut model, &mut opt, &mut objective, Progress::default())?;
    let _ = std::fs::remove_dir_all(&dir);

    let s = samples.borrow();
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{} epochs, {} steps in {:.1} min on {}",
        report.progress.epoch,
        report.progress.step,
        minutes,
        gpu.info().name
    );
    println!("| when | minute | epoch | RSS (MiB) | pool live (MiB) | pool cached (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let picks = [
        ("start (epoch 1)", 0),
        ("middle", s.len() / 2),
        ("end", s.len() - 1),
    ];
    for (what, i) in picks {
        let (t, e, rss, live, cached) = s[i];
        println!(
            "| {what} | {:.1} | {e} | {:.1} | {:.2} | {:.2} |",
            t / 60.0,
            mb(rss),
            mb(live),
            mb(cached)
        );
    }
    // Slopes after the first minute (allocator and pipeline caches warm up first).
    let warm: Vec<&Sample> = s.iter().filter(|x| x.0 >= 60.0).collect();
    let per_min = |f: &dyn Fn(&Sample) -> u64| {
        let pts: Vec<(f64, f64)> = warm.iter().map(|x| (x.0 / 60.0, mb(f(x)))).collect();
        slope(&pts)
    };
    println!(
        "slope after minute 1: RSS {:+.3} MiB/min, pool live {:+.4} MiB/min, pool cached \
         {:+.4} MiB/min ({} samples)",
        per_min(&|x| x.2),
        per_min(&|x| x.3),
        per_min(&|x| x.4),
        warm.len()
    );
    Ok(())
}
