//! The crash suite: `kiln train` with frequent checkpoints is killed with SIGKILL at random
//! moments and resumed, again and again. After every kill each checkpoint in the run directory
//! must load (and hold finite weights) and `metrics.jsonl` must list epochs 1, 2, ... with no
//! hole and no duplicate (only its last line may be a partial epoch); every `--resume` must run;
//! a run brought to its end through the kills must log the same losses, bit for bit, as one that
//! never stopped (exact resume, tests/cli/resume.rs) and evaluate with `kiln eval`.
//!
//! `KILN_CRASH_KILLS` kills in all (default 4, for CI); the long mode is
//! `KILN_CRASH_KILLS=100 cargo test --test crash -- --nocapture`. `KILN_CRASH_SEED` picks the
//! kill times (default 1).

#[path = "common/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::{kiln, s, scratch_in};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The run: the MLP on the built-in digits, 3 epochs of 40 batches, a checkpoint every 3 steps.
const ARGS: &[&str] = &[
    "train",
    "--quiet",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--seed",
    "21",
];

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every line of `metrics.jsonl` as (epoch, train loss, val loss, partial); none when absent.
fn metrics(dir: &Path) -> Vec<(u64, f64, f64, bool)> {
    let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("metrics.jsonl line {l:?} is not JSON: {e}"));
            (
                v["epoch"].as_u64().unwrap(),
                v["train_loss"].as_f64().unwrap(),
                v["val_loss"].as_f64().unwrap(),
                v.get("partial_batches").is_some(),
            )
        })
        .collect()
}

/// What one check after a kill found.
#[derive(Default, Debug)]
struct Damage {
    corrupt_checkpoints: usize,
    metrics_holes: usize,
    metrics_duplicates: usize,
}

/// Check the run directory after a kill: checkpoints load, metrics are contiguous.
fn inspect(dir: &Path, damage: &mut Damage, what: &str) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let ok = kiln::train::checkpoint::load(&p).and_then(|ck| {
                kiln::io::safetensors::check_finite(
                    &ck.path,
                    ck.tensors.iter().map(|(k, v)| (k.as_str(), v)),
                )
            });
            if let Err(e) = ok {
                eprintln!("{what}: {} does not load: {e}", p.display());
                damage.corrupt_checkpoints += 1;
            }
        }
    }
    let m = metrics(dir);
    for (i, row) in m.iter().enumerate() {
        let want = i as u64 + 1;
        if row.0 > want {
            eprintln!(
                "{what}: metrics.jsonl jumps to epoch {} at line {want}",
                row.0
            );
            damage.metrics_holes += 1;
        } else if row.0 < want {
            eprintln!(
                "{what}: metrics.jsonl repeats epoch {} at line {want}",
                row.0
            );
            damage.metrics_duplicates += 1;
        }
        if row.3 && i + 1 != m.len() {
            eprintln!("{what}: a partial epoch {} is not the last line", row.0);
            damage.metrics_duplicates += 1;
        }
    }
}

/// When and how large the last checkpoint was written, to see a new one appear.
fn checkpoint_stamp(dir: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(dir.join("checkpoint.safetensors")).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Start `kiln args...` with stderr kept in `log`.
fn spawn(args: &[&str], log: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn training_survives_random_kills_and_resumes_exactly() {
    let kills_wanted = env_num("KILN_CRASH_KILLS", 4);
    let mut rng = ChaCha8Rng::seed_from_u64(env_num("KILN_CRASH_SEED", 1));
    let root = scratch_in("crash", "runs");
    let reference = root.join("reference");
    let (ok, _, err) = kiln(&[ARGS, &["--out", s(&reference)]].concat());
    assert!(ok, "{err}");
    let want = metrics(&reference);
    assert_eq!(want.len(), 3);

    let (mut kills, mut rounds, mut resumes) = (0u64, 0u64, 0u64);
    let mut damage = Damage::default();
    let t0 = Instant::now();
    while kills < kills_wanted {
        rounds += 1;
        let dir = root.join(format!("round{rounds}"));
        let log = root.join(format!("round{rounds}.stderr"));
        let first: Vec<&str> = [ARGS, &["--checkpoint-every", "3", "--out", s(&dir)]].concat();
        let mut resume = false;
        loop {
            let args: Vec<&str> = if resume {
                vec!["train", "--quiet", "--resume", "--out", s(&dir)]
            } else {
                first.clone()
            };
            let mut child = spawn(&args, &log);
            // Half the kills at a random moment (start-up included), half just after a new
            // checkpoint appears (0-300 ms later: around the next writes), which also makes sure
            // the run advances on a slow machine. No kill once enough were made.
            let last = checkpoint_stamp(&dir);
            let on_time = rng.random_bool(0.5);
            let at = Duration::from_millis(rng.random_range(200..4000));
            let after = Duration::from_millis(rng.random_range(0..300));
            let (mut started, mut armed) = (Instant::now(), on_time);
            let status = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    break Some(st);
                }
                if kills < kills_wanted {
                    if !armed && checkpoint_stamp(&dir) != last {
                        (armed, started) = (true, Instant::now());
                    }
                    let wait = if on_time { at } else { after };
                    if armed && started.elapsed() >= wait {
                        break None;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            match status {
                Some(st) => {
                    let e = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(st.success(), "round {rounds}: {args:?} failed: {e}");
                    break;
                }
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    inspect(&dir, &mut damage, &format!("round {rounds}, kill {kills}"));
                    if dir.join("summary.json").exists() {
                        break; // killed on its way out: the run was complete
                    }
                }
            }
            resume |= dir.join("config.toml").exists();
            resumes += resume as u64;
        }
        // Brought to its end: the same losses as the run that never stopped, nothing left over.
        assert_eq!(
            metrics(&dir),
            want,
            "round {rounds}: losses differ after kills"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".tmp") || name == ".lock"
            })
            .collect();
        assert!(leftovers.is_empty(), "round {rounds}: left {leftovers:?}");
        let (ok, _, err) = kiln(&["eval", s(&dir)]);
        assert!(ok, "round {rounds}: eval: {err}");
    }
    println!(
        "crash: {kills} kills over {rounds} runs ({resumes} resumes) in {:.0} s: {} corrupt \
         checkpoints, {} metrics holes, {} metrics duplicates",
        t0.elapsed().as_secs_f64(),
        damage.corrupt_checkpoints,
        damage.metrics_holes,
        damage.metrics_duplicates
    );
    assert_eq!(damage.corrupt_checkpoints, 0, "{damage:?}");
    assert_eq!(
        damage.metrics_holes + damage.metrics_duplicates,
        0,
        "{damage:?}"
    );
}
