//! The sweep's journal: one JSON line per event, appended and flushed to disk (`fsync`) before
//! the sweep acts on it, so a sweep killed at any instant resumes from what it had decided.
//!
//! ```text
//! {"event":"start","trial":3,"params":{"lr":0.01}}
//! {"event":"rung","trial":3,"epoch":1,"metric":0.42}
//! {"event":"promote","trial":3,"epoch":1}
//! {"event":"end","trial":3,"state":"pruned","metric":0.42,"epochs":1,"seconds":3.1}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::space::Params;
use crate::error::{Error, Result, io_err};

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Trained to its last epoch.
    Complete,
    /// Stopped at a rung by successive halving.
    Pruned,
    /// Its run failed (diverged, bad settings, crashed).
    Failed,
}

impl TrialState {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A trial started with these values.
    Start {
        /// Trial id (0-based).
        trial: usize,
        /// Its hyperparameters.
        params: Params,
    },
    /// A trial reached a rung (an epoch count) with this metric (best so far).
    Rung {
        /// Trial id.
        trial: usize,
        /// Epochs done.
        epoch: usize,
        /// The metric, best over its epochs so far.
        metric: f64,
    },
    /// A trial was let through a rung.
    Promote {
        /// Trial id.
        trial: usize,
        /// The rung it passed.
        epoch: usize,
    },
    /// A trial ended.
    End {
        /// Trial id.
        trial: usize,
        /// How.
        state: TrialState,
        /// Its metric (best over its epochs; none when it failed before one).
        metric: Option<f64>,
        /// Epochs it trained.
        epochs: usize,
        /// Seconds its processes ran.
        seconds: f64,
        /// For failures: the error's last line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// The journal file of a sweep directory.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal in `dir` (`journal.jsonl`).
    pub fn open(dir: &Path) -> Journal {
        Journal {
            path: dir.join("journal.jsonl"),
        }
    }

    /// Every event so far, in order. A last line cut short by a kill is ignored.
    pub fn read(&self) -> Result<Vec<Event>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.path, e)),
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut out = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            match serde_json::from_str(l) {
                Ok(e) => out.push(e),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(Error::Io {
                        path: self.path.display().to_string(),
                        msg: format!("line {}: {e}", i + 1),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Append `e` and flush it to disk.
    pub fn append(&self, e: &Event) -> Result<()> {
        let line = serde_json::to_string(e).map_err(|x| io_err(&self.path, x))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|x| io_err(&self.path, x))?;
        writeln!(f, "{line}")
            .and_then(|_| f.sync_data())
            .map_err(|x| io_err(&self.path, x))
    }
}
