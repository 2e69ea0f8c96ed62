//! The run directory: its file names and the lock that keeps one writer per run.
//!
//! ```text
//! runs/<name>/
//!   .lock                    the pid of the process writing the run (while it runs)
//!   config.toml              the settings (kiln train) / finetune.json (kiln finetune)
//!   checkpoint.safetensors   the latest state: weights, optimizer, RNG, loader position
//!   best.safetensors         the state with the best validation loss so far
//!   metrics.jsonl, metrics.csv, curves.png, summary.json
//! ```
//!
//! Two processes writing one run would interleave its metrics and mix its checkpoints, so
//! every writer holds a [`RunLock`]: a `.lock` file created exclusively with the writer's pid,
//! removed when the lock is dropped. A lock whose process is gone (a killed run) is stale and
//! taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};

/// The latest checkpoint of a run.
pub const LAST: &str = "checkpoint.safetensors";
/// The best-validation checkpoint of a run.
pub const BEST: &str = "best.safetensors";
/// The lock file.
pub const LOCK: &str = ".lock";
/// The words of the error a writer gets when another live process holds the run's lock
/// (a caller that launched the writer may wait and try again on seeing them).
pub const HELD: &str = "by another kiln process";

/// The checkpoint file `path` names: the file itself, or in a run directory
/// [`BEST`] (else [`LAST`]).
pub fn checkpoint_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    for f in [BEST, LAST] {
        if path.join(f).is_file() {
            return Ok(path.join(f));
        }
    }
    Err(Error::Io {
        path: path.display().to_string(),
        msg: format!(
            "a directory without {BEST} or {LAST}; pass a run directory or a .safetensors file"
        ),
    })
}

/// The pid of the live process holding `dir`'s lock, if any.
pub fn holder(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(LOCK)).ok()?;
    let pid = text.trim().parse::<u32>().ok()?;
    alive(pid).then_some(pid)
}

/// An exclusive claim on a run directory, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

/// True while process `pid` exists (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// True when the file at `path` changed in the last two seconds.
fn fresh(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d.as_secs_f64() < 2.0)
}

impl RunLock {
    /// Lock `dir` (created if needed) for this process, or fail naming the process that holds
    /// it. A stale lock (its process is gone) is taken over.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_err(dir, format!("cannot create the run directory ({e})")))?;
        let path = dir.join(LOCK);
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id()).map_err(|e| io_err(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if alive(pid) => {
                            return Err(Error::Config(format!(
                                "{} is in use {HELD} (pid {pid}); wait for it to finish or \
                                 pick another --out",
                                dir.display()
                            )));
                        }
                        // Being written this instant by another process: held.
                        Err(_) if fresh(&path) => {
                            return Err(Error::Config(format!(
                                "{} is being claimed {HELD}; pick another --out",
                                dir.display()
                            )));
                        }
                        // Stale: its process is gone (killed), or a leftover empty file.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Err(io_err(&path, "could not take the run lock"))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
