//! [`Local`]: the in-process [`Collective`] of a group of threads, one per device.
//!
//! Each collective is one *round*: every rank deposits its buffer in shared host memory under a
//! mutex; the last to arrive combines them (a sum in rank order, a concatenation, or the root's
//! copy), publishes the result and wakes the others, who copy out what is theirs. Devices of
//! different backends share no memory, so the host is the meeting place (two `f32` copies per
//! rank per round: in and out).
//!
//! **Failure is an error, never a hang.** A rank waits at most the group's timeout; a rank that
//! stalls makes the waiting ones fail with [`Error::Distributed`] naming the operation and the
//! missing ranks, and the group stays broken (every later call fails at once). A rank whose
//! handle is dropped (its thread returned an error or panicked) while others wait breaks the
//! group at once. Mismatched calls (another operation, length or root) break it too.
//!
//! **Bytes sent** count what a ring implementation would send (what MPI or NCCL do on a
//! bandwidth-bound buffer), so the figures compare with the theory and with the MPI backend: for
//! a buffer of `n` values (4 bytes each) in a world of `N`,
//!
//! ```text
//! all_reduce_sum       2 (N-1)/N * 4n   (reduce-scatter then all-gather around the ring)
//! reduce_scatter_sum     (N-1)/N * 4n   (n = the full input; each rank keeps n/N)
//! all_gather             (N-1)   * 4s   (s = this rank's shard; the output is N s)
//! broadcast              4n on every rank but the last of the chain root, root+1, ...
//! barrier                0
//! ```
//!
//! [`Error::Distributed`]: crate::error::Error::Distributed

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{Collective, check_len};
use crate::error::{Error, Result};

/// How long a rank waits for its peers by default before giving up (`KILN_DIST_TIMEOUT`
/// seconds overrides it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The timeout `KILN_DIST_TIMEOUT` (seconds) sets, or [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration> {
    match std::env::var("KILN_DIST_TIMEOUT") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err(Error::Config(format!(
                "KILN_DIST_TIMEOUT={v:?}: expected a number of seconds > 0"
            ))),
        },
        _ => Ok(DEFAULT_TIMEOUT),
    }
}

/// One rank's handle on an in-process group (see the module notes). Made by [`Local::group`];
/// move each handle to its thread.
pub struct Local {
    rank: usize,
    shared: Arc<Shared>,
    sent: u64,
}

struct Shared {
    n: usize,
    timeout: Duration,
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    /// Rounds completed.
    generation: u64,
    /// The operation of the round in progress (name, length, root), set by its first rank.
    key: Option<String>,
    inputs: Vec<Option<Vec<f32>>>,
    arrived: usize,
    /// The last completed round's combined buffer.
    result: Arc<Vec<f32>>,
    /// Why the group is broken (every call fails with it).
    broken: Option<String>,
    /// Ranks whose handle was dropped.
    left: Vec<bool>,
}

/// How the last rank of a round combines the inputs (in rank order).
#[derive(Clone, Copy)]
enum Combine {
    Sum,
    Concat,
    Take(usize),
    Nothing,
}

impl Combine {
    fn apply(self, inputs: &[Vec<f32>]) -> Vec<f32> {
        match self {
            Combine::Sum => {
                let mut out = inputs[0].clone();
                for x in &inputs[1..] {
                    for (o, v) in out.iter_mut().zip(x) {
                        *o += v;
                    }
                }
                out
            }
            Combine::Concat => inputs.concat(),
            Combine::Take(root) => inputs[root].clone(),
            Combine::Nothing => Vec::new(),
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Local {
    /// A group of `n` ranks (`n >= 1`) whose waits time out after `timeout`: handle `r` is
    /// rank `r`.
    pub fn group(n: usize, timeout: Duration) -> Result<Vec<Local>> {
        if n == 0 {
            return Err(Error::Distributed("a group needs at least one rank".into()));
        }
        let state = State {
            inputs: vec![None; n],
            left: vec![false; n],
            ..Default::default()
        };
        let shared = Arc::new(Shared {
            n,
            timeout,
            state: Mutex::new(state),
            cv: Condvar::new(),
        });
        Ok((0..n)
            .map(|rank| Local {
                rank,
                shared: shared.clone(),
                sent: 0,
            })
            .collect())
    }

    /// One round: deposit `input`, wait for every rank, return the combined buffer.
    fn round(&self, op: &str, key: String, input: Vec<f32>, how: Combine) -> Result<Arc<Vec<f32>>> {
        let sh = &*self.shared;
        let rank = self.rank;
        let fail = |msg: &str| Error::Distributed(format!("{op} on rank {rank}: {msg}"));
        let mut st = lock(&sh.state);
        if let Some(msg) = &st.broken {
            return Err(fail(msg));
        }
        if let Some(gone) = st.left.iter().position(|&l| l) {
            let msg = format!("rank {gone} has left the group (its thread ended or failed)");
            st.broken = Some(msg.clone());
            sh.cv.notify_all();
            return Err(fail(&msg));
        }
        match &st.key {
            Some(k) if *k != key => {
                let msg = format!("rank {rank} called {key} while another rank called {k}");
                st.broken = Some(msg.clone());
                sh.cv.notify_all();
                return Err(fail(&msg));
            }
            Some(_) => {}
            None => st.key = Some(key),
        }
        st.inputs[rank] = Some(input);
        st.arrived += 1;
        let generation = st.generation;
        if st.arrived == sh.n {
            let inputs: Vec<Vec<f32>> = st
                .inputs
                .iter_mut()
                .map(|x| x.take().unwrap_or_default())
                .collect();
            st.result = Arc::new(how.apply(&inputs));
            st.arrived = 0;
            st.key = None;
            st.generation += 1;
            sh.cv.notify_all();
            return Ok(st.result.clone());
        }
        let (mut st, _) = sh
            .cv
            .wait_timeout_while(st, sh.timeout, |s| {
                s.generation == generation && s.broken.is_none()
            })
            .unwrap_or_else(|e| e.into_inner());
        if st.generation != generation {
            return Ok(st.result.clone());
        }
        if let Some(msg) = &st.broken {
            return Err(fail(msg));
        }
        let missing: Vec<usize> = (0..sh.n).filter(|&r| st.inputs[r].is_none()).collect();
        let msg = format!(
            "waited {:.1} s for rank(s) {missing:?}, which never joined (stalled or gone)",
            sh.timeout.as_secs_f64()
        );
        st.broken = Some(msg.clone());
        sh.cv.notify_all();
        Err(fail(&msg))
    }

    fn world(&self) -> u64 {
        self.shared.n as u64
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.left[self.rank] = true;
        if st.arrived > 0 && st.broken.is_none() {
            st.broken = Some(format!(
                "rank {} left the group during a collective (its thread ended or failed)",
                self.rank
            ));
            self.shared.cv.notify_all();
        }
    }
}

impl Collective for Local {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.shared.n
    }
    fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<()> {
        let key = format!("all_reduce_sum of {} values", data.len());
        let sum = self.round("all_reduce_sum", key, data.to_vec(), Combine::Sum)?;
        data.copy_from_slice(&sum);
        let n = self.world();
        self.sent += 2 * (n - 1) * 4 * data.len() as u64 / n;
        Ok(())
    }
    fn all_gather(&mut self, shard: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("all_gather", out.len(), shard.len() * self.shared.n)?;
        let key = format!("all_gather of {} values", shard.len());
        let all = self.round("all_gather", key, shard.to_vec(), Combine::Concat)?;
        out.copy_from_slice(&all);
        self.sent += (self.world() - 1) * 4 * shard.len() as u64;
        Ok(())
    }
    fn reduce_scatter_sum(&mut self, data: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("reduce_scatter_sum", data.len(), out.len() * self.shared.n)?;
        let key = format!("reduce_scatter_sum of {} values", data.len());
        let sum = self.round("reduce_scatter_sum", key, data.to_vec(), Combine::Sum)?;
        let s = out.len();
        out.copy_from_slice(&sum[self.rank * s..(self.rank + 1) * s]);
        self.sent += (self.world() - 1) * 4 * s as u64;
        Ok(())
    }
    fn broadcast(&mut self, data: &mut [f32], root: usize) -> Result<()> {
        let n = self.shared.n;
        if root >= n {
            return Err(Error::Distributed(format!(
                "broadcast from rank {root} in a world of {n}"
            )));
        }
        let key = format!("broadcast of {} values from rank {root}", data.len());
        let input = if self.rank == root {
            data.to_vec()
        } else {
            Vec::new()
        };
        let got = self.round("broadcast", key, input, Combine::Take(root))?;
        data.copy_from_slice(&got);
        if self.rank != (root + n - 1) % n {
            self.sent += 4 * data.len() as u64;
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        self.round("barrier", "barrier".into(), Vec::new(), Combine::Nothing)?;
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        self.sent
    }
}
