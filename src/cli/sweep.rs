//! `kiln sweep`: hyperparameter search over `kiln train` runs (see [`crate::sweep`]).
//!
//! ```text
//! kiln sweep --config sweep.toml [--parallel N] [--out DIR]
//! kiln sweep --resume DIR
//! ```
//!
//! Each trial is an ordinary run in `DIR/trials/NNNN/` (its config in `DIR/trials/NNNN.toml`,
//! its output in `DIR/trials/NNNN.log`), started as a separate `kiln train` process with
//! `--no-test` (selection never sees the test split) and, for successive halving,
//! `--stop-at-epoch R`; a trial that passes a rung is continued with `--resume`. Every decision
//! is appended to `DIR/journal.jsonl` before it is acted on, so `--resume` after a kill reruns
//! nothing that finished. At the end: `trials.csv`, `best.toml`, `summary.json` (with the best
//! trial's test metrics, measured once), and three plots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::sweep_plan::{Plan, plan, replay};
use super::{Error, Result};
use crate::io::run_dir::RunLock;
use crate::sweep::Metric;
use crate::sweep::asha::Rungs;
use crate::sweep::journal::{Event, Journal, TrialState};
use crate::sweep::space::Params;

/// Flags of `kiln sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The sweep file: a `kiln train --config` file with a `[sweep]` section.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Trials trained at once, each a separate process.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Output directory (default runs/sweep-<n>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the sweep in DIR after a stop or a kill.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Only the final table.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where a trial stands.
pub(super) enum St {
    /// Not started.
    Waiting,
    /// Training towards `target` epochs.
    Running {
        child: Child,
        target: usize,
        started: Instant,
    },
    /// At a rung, waiting for the decision (the lower ids' results at that rung).
    Decide(usize),
    /// Finished.
    Ended,
}

/// One trial of the sweep.
pub(super) struct Trial {
    pub id: usize,
    pub params: Params,
    pub(super) st: St,
    /// Best metric up to each rung reported.
    pub rungs: BTreeMap<usize, f64>,
    pub end: Option<(TrialState, Option<f64>, usize, f64)>,
    pub(super) seconds: f64,
    pub(super) started: bool,
}

/// `DIR/trials/NNNN` and its config and log files.
pub(super) fn trial_dir(dir: &Path, id: usize) -> PathBuf {
    dir.join("trials").join(format!("{id:04}"))
}

/// The per-epoch values of the metric in a trial's `metrics.jsonl` (complete epochs only).
pub(super) fn epoch_metrics(run: &Path, metric: Metric) -> Result<Vec<Option<f64>>> {
    let p = run.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error(format!("{}: {e}", p.display()))),
    };
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| Error(format!("{}: {e}", p.display())))?;
        if v.get("partial_batches").is_some_and(|b| !b.is_null()) {
            continue;
        }
        out.push(v.get(metric.name()).and_then(serde_json::Value::as_f64));
    }
    Ok(out)
}

/// Best value of `values[..n]` (none when empty or missing).
fn best_upto(values: &[Option<f64>], n: usize, metric: Metric) -> Option<f64> {
    values[..n.min(values.len())]
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .reduce(|a, b| if metric.better(b, a) { b } else { a })
}

/// The sweep in progress.
struct Runner<'a> {
    dir: &'a Path,
    plan: &'a Plan,
    journal: Journal,
    trials: Vec<Trial>,
    parallel: usize,
    deadline: Option<Instant>,
    exe: PathBuf,
}

impl Runner<'_> {
    fn running(&self) -> usize {
        self.trials
            .iter()
            .filter(|t| matches!(t.st, St::Running { .. }))
            .count()
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Start (or continue) trial `i` towards `target` epochs.
    fn launch(&mut self, i: usize, target: usize) -> Result<()> {
        let run = trial_dir(self.dir, i);
        // A trial process left running by a killed sweep finishes its rung first (the same
        // result the resumed sweep would compute); then its output is read as usual.
        while crate::io::run_dir::holder(&run).is_some_and(|p| p != std::process::id()) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let done = epoch_metrics(&run, self.plan.metric)?.len();
        if done >= target {
            // Already there (a kill came between the run's end and the journal line).
            self.trials[i].st = St::Decide(0);
            return self.finished(i, true, target, String::new());
        }
        let mut cmd = Command::new(&self.exe);
        cmd.arg("train");
        if run.join("config.toml").exists() {
            cmd.arg("--resume");
        } else {
            let cfg = run.with_extension("toml");
            let text = toml::to_string_pretty(&self.plan.trials[i].1).unwrap_or_default();
            crate::io::write_atomic(&cfg, text.as_bytes())?;
            cmd.arg("--config").arg(&cfg);
        }
        cmd.arg("--out").arg(&run).args(["--quiet", "--no-test"]);
        if target < self.plan.max_epochs {
            cmd.args(["--stop-at-epoch", &target.to_string()]);
        }
        let devices = &self.plan.section.devices;
        if !devices.is_empty() {
            cmd.args(["--device", &devices[i % devices.len()]]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.with_extension("log"))
            .map_err(|e| Error(format!("{}: {e}", run.with_extension("log").display())))?;
        let err = log.try_clone().map_err(|e| Error(e.to_string()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| Error(format!("could not start {}: {e}", self.exe.display())))?;
        if !self.trials[i].started {
            self.journal.append(&Event::Start {
                trial: i,
                params: self.trials[i].params.clone(),
            })?;
            self.trials[i].started = true;
        }
        self.trials[i].st = St::Running {
            child,
            target,
            started: Instant::now(),
        };
        Ok(())
    }

    /// Trial `i`'s process ended (`ok`): journal its rungs, then decide or end it.
    fn finished(&mut self, i: usize, ok: bool, target: usize, error: String) -> Result<()> {
        let metric = self.plan.metric;
        let run = trial_dir(self.dir, i);
        let values = epoch_metrics(&run, metric)?;
        let done = values.len();
        if ok && done > 0 && values.iter().all(Option::is_none) {
            return Err(Error(format!(
                "sweep.metric = \"{}\", but trial {i}'s run reports no such value (see {}); \
                 pick a metric this task produces (val_loss always, val_accuracy and \
                 val_macro_f1 for classification, val_r2 for regression) and keep a \
                 validation split",
                metric.name(),
                run.join("metrics.jsonl").display()
            )));
        }
        let seconds = self.trials[i].seconds;
        let rung_points: Vec<usize> = match &self.plan.rungs {
            Some(r) => r.epochs.clone(),
            None => vec![self.plan.max_epochs],
        };
        for r in rung_points.into_iter().filter(|&r| r <= done) {
            if !self.trials[i].rungs.contains_key(&r)
                && let Some(m) = best_upto(&values, r, metric)
            {
                self.journal.append(&Event::Rung {
                    trial: i,
                    epoch: r,
                    metric: m,
                })?;
                self.trials[i].rungs.insert(r, m);
            }
        }
        let best = best_upto(&values, done, metric);
        let end = |state| (state, best, done, seconds);
        if !ok {
            return self.end(i, end(TrialState::Failed), Some(error));
        }
        let stopped_early = done < target;
        match &self.plan.rungs {
            Some(r)
                if done < self.plan.max_epochs && !stopped_early && r.epochs.contains(&done) =>
            {
                self.trials[i].st = St::Decide(done);
                Ok(())
            }
            _ => self.end(i, end(TrialState::Complete), None),
        }
    }

    fn end(
        &mut self,
        i: usize,
        e: (TrialState, Option<f64>, usize, f64),
        error: Option<String>,
    ) -> Result<()> {
        self.journal.append(&Event::End {
            trial: i,
            state: e.0,
            metric: e.1,
            epochs: e.2,
            seconds: e.3,
            error,
        })?;
        self.trials[i].end = Some(e);
        self.trials[i].st = St::Ended;
        Ok(())
    }

    /// Decide trial `i` at rung `r` if the lower ids are all resolved there.
    fn try_decide(&mut self, i: usize, r: usize) -> Result<bool> {
        let Some(rungs) = &self.plan.rungs else {
            return Ok(false);
        };
        let mut others = Vec::new();
        let last = i.max(rungs.reduction - 1).min(self.trials.len() - 1);
        for t in self.trials[..=last].iter().filter(|t| t.id != i) {
            match (t.rungs.get(&r), &t.end) {
                (Some(m), _) => others.push(*m),
                (None, Some(_)) => {}             // ended below this rung
                (None, None) => return Ok(false), // still on its way: wait
            }
        }
        let me = self.trials[i].rungs[&r];
        let go = Rungs::promote(&others, me, rungs.reduction, self.plan.metric.maximize());
        if go && !self.past_deadline() {
            self.journal
                .append(&Event::Promote { trial: i, epoch: r })?;
            let next = rungs.next_after(r).unwrap_or(self.plan.max_epochs);
            self.trials[i].st = St::Waiting;
            self.launch(i, next)?;
        } else {
            let seconds = self.trials[i].seconds;
            self.end(i, (TrialState::Pruned, Some(me), r, seconds), None)?;
        }
        Ok(true)
    }

    /// Where trial `i` trains to next: the first rung above the epochs it has done (a fresh
    /// trial: the first rung), or all epochs.
    fn target_for(&self, i: usize) -> Result<usize> {
        let done = epoch_metrics(&trial_dir(self.dir, i), self.plan.metric)?.len();
        Ok(match &self.plan.rungs {
            Some(r) => r.next_after(done).unwrap_or(self.plan.max_epochs),
            None => self.plan.max_epochs,
        })
    }

    fn run(&mut self, bar: Option<&ProgressBar>) -> Result<()> {
        loop {
            // Reap finished processes.
            for i in 0..self.trials.len() {
                let St::Running {
                    child,
                    target,
                    started,
                } = &mut self.trials[i].st
                else {
                    continue;
                };
                let Some(status) = child.try_wait().map_err(|e| Error(e.to_string()))? else {
                    continue;
                };
                let (target, secs) = (*target, started.elapsed().as_secs_f64());
                self.trials[i].seconds += secs;
                let error = if status.success() {
                    String::new()
                } else {
                    last_error_line(&trial_dir(self.dir, i).with_extension("log"))
                };
                if error.contains(crate::io::run_dir::HELD) {
                    // A trial process left by a killed sweep took the run between our wait
                    // for its lock and our child's start: launch again (waiting for it).
                    self.trials[i].st = St::Waiting;
                    continue;
                }
                self.finished(i, status.success(), target, error)?;
            }
            // Decisions, in id order.
            for i in 0..self.trials.len() {
                if let St::Decide(r) = self.trials[i].st {
                    self.try_decide(i, r)?;
                }
            }
            // Deadline: trials waiting for a decision stop where they are.
            if self.past_deadline() {
                for i in 0..self.trials.len() {
                    if let St::Decide(r) = self.trials[i].st {
                        let (m, s) = (self.trials[i].rungs[&r], self.trials[i].seconds);
                        self.end(i, (TrialState::Pruned, Some(m), r, s), None)?;
                    }
                }
            }
            // Start new trials, in id order.
            while self.running() < self.parallel && !self.past_deadline() {
                let Some(i) = self.trials.iter().position(|t| matches!(t.st, St::Waiting)) else {
                    break;
                };
                let target = self.target_for(i)?;
                self.launch(i, target)?;
            }
            if let Some(bar) = bar {
                bar.set_position(self.trials.iter().filter(|t| t.end.is_some()).count() as u64);
                bar.set_message(self.status_line());
            }
            let busy = self.trials.iter().any(|t| match t.st {
                St::Running { .. } | St::Decide(_) => true,
                St::Waiting => !self.past_deadline(),
                St::Ended => false,
            });
            if !busy {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status_line(&self) -> String {
        let count = |s: TrialState| {
            self.trials
                .iter()
                .filter(|t| t.end.is_some_and(|e| e.0 == s))
                .count()
        };
        let best = self
            .trials
            .iter()
            .filter_map(|t| t.end.and_then(|e| e.1).map(|m| (t.id, m)))
            .reduce(|a, b| {
                if self.plan.metric.better(b.1, a.1) {
                    b
                } else {
                    a
                }
            });
        format!(
            "running {}, complete {}, pruned {}, failed {}{}",
            self.running(),
            count(TrialState::Complete),
            count(TrialState::Pruned),
            count(TrialState::Failed),
            best.map_or(String::new(), |(id, m)| format!(
                ", best {} {m:.4} (trial {id})",
                self.plan.metric.name()
            ))
        )
    }
}

/// The last line of a trial's log that says `error:` (or its last line).
fn last_error_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map(|l| l.chars().take(300).collect())
        .unwrap_or_else(|| "the run failed without a message".into())
}

fn next_dir() -> PathBuf {
    (1..)
        .map(|n| Path::new("runs").join(format!("sweep-{n}")))
        .find(|p| !p.exists())
        .expect("some sweep number is free")
}

/// Run `kiln sweep`.
pub fn run(a: SweepArgs) -> Result<()> {
    if a.parallel == 0 || a.parallel > 64 {
        return Err(Error(format!(
            "--parallel {}: run between 1 and 64 trials at once",
            a.parallel
        )));
    }
    let (dir, text) = match (&a.resume, &a.config) {
        (Some(d), _) => {
            let f = d.join("sweep.toml");
            let text = std::fs::read_to_string(&f).map_err(|e| {
                Error(format!(
                    "--resume: {}: {e}; is it a kiln sweep directory?",
                    f.display()
                ))
            })?;
            (d.clone(), text)
        }
        (None, Some(c)) => {
            let text = std::fs::read_to_string(c)
                .map_err(|e| Error(format!("--config {}: {e}", c.display())))?;
            let dir = a.out.clone().unwrap_or_else(next_dir);
            if dir.join("journal.jsonl").exists() {
                return Err(Error(format!(
                    "{} already holds a sweep; continue it with --resume {}, or pick another \
                     --out",
                    dir.display(),
                    dir.display()
                )));
            }
            (dir, text)
        }
        (None, None) => {
            return Err(Error(
                "kiln sweep needs --config FILE (a kiln train config with a [sweep] section) \
                 or --resume DIR"
                    .into(),
            ));
        }
    };
    let plan = plan(&text, &dir.join("sweep.toml"))?;
    let _lock = RunLock::acquire(&dir)?;
    if a.resume.is_none() {
        crate::io::write_atomic(&dir.join("sweep.toml"), text.as_bytes())?;
    }
    std::fs::create_dir_all(dir.join("trials")).map_err(|e| Error(e.to_string()))?;
    let journal = Journal::open(&dir);
    let trials = replay(&plan, &journal.read()?)?;
    let exe = std::env::current_exe().map_err(|e| Error(format!("the kiln binary: {e}")))?;
    if !a.quiet {
        println!(
            "sweep:  {:?} over {} ({}), {} trials, metric {} ({}), {} at a time",
            plan.section.method,
            plan.space
                .params
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            match &plan.rungs {
                Some(r) => format!("rungs {:?} epochs, keep 1/{}", r.epochs, r.reduction),
                None => format!("{} epochs each", plan.max_epochs),
            },
            plan.trials.len(),
            plan.metric.name(),
            if plan.metric.maximize() { "max" } else { "min" },
            a.parallel
        );
        println!("out:    {}", dir.display());
    }
    let mut runner = Runner {
        dir: &dir,
        plan: &plan,
        journal,
        trials,
        parallel: a.parallel,
        deadline: plan
            .section
            .time_limit
            .map(|m| Instant::now() + Duration::from_secs_f64(m * 60.0)),
        exe,
    };
    let bar = (!a.quiet).then(|| {
        let b = ProgressBar::new(plan.trials.len() as u64);
        b.set_style(
            ProgressStyle::with_template("trials [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let result = runner.run(bar.as_ref());
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Err(e) = result {
        for t in &mut runner.trials {
            if let St::Running { child, .. } = &mut t.st {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        return Err(e);
    }
    super::sweep_report::report(&dir, &plan, &runner.trials, a.quiet)
}
