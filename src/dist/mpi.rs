//! Collectives over MPI (feature `mpi`): one rank per process, started by `mpirun`.
//!
//! `mpirun -n N kiln train ... --distributed` starts `N` processes; [`world`] initialises MPI in
//! each and returns its [`Collective`] on `MPI_COMM_WORLD` (rank `r` of `N`, the MPI rank). Each
//! operation copies the caller's host `f32` slice into buffers this module owns, starts the
//! matching *immediate* MPI collective (`MPI_Iallreduce`, `MPI_Iallgather`,
//! `MPI_Ireduce_scatter_block`, `MPI_Ibcast`, `MPI_Ibarrier`), and polls it with `MPI_Test`
//! against a deadline, then copies the result out. Shapes: `all_reduce_sum` `[n] -> [n]`,
//! `all_gather` `[n] -> [n·N]`, `reduce_scatter_sum` `[n·N] -> [n]`, `broadcast` `[n] -> [n]`.
//!
//! **Lengths.** Before each data operation the ranks agree on their lengths (and the broadcast
//! root) with a three-integer all-reduce; when they disagree every rank returns
//! [`Error::Distributed`] naming the operation, instead of MPI truncating a message or waiting
//! for data that never comes.
//!
//! **A dead or stalled rank.** What OpenMPI (4.1, Debian's `openmpi-bin`) does by itself:
//! - a rank that *exits* (an error, a panic, `kill -9`) before `MPI_Finalize` ends the job:
//!   `mpirun` notices the exit, kills the other ranks (SIGTERM, then SIGKILL) and exits
//!   non-zero, naming the rank that died;
//! - with that watch turned off (`--mca orte_abort_on_non_zero_status 0`, or a launcher that
//!   does not watch), or when a rank *stalls* (a hung driver, a stopped process, a deadlock),
//!   MPI notices nothing: collectives have no timeout, so the other ranks would wait forever.
//!
//! So every operation here has a deadline: [`TIMEOUT_VAR`] seconds (`KILN_DIST_TIMEOUT`,
//! default [`DEFAULT_TIMEOUT`]). Past it the operation returns [`Error::Distributed`] naming
//! the operation, this rank and the timeout. MPI cannot cancel a collective, so its buffers are
//! leaked (MPI may still write into them) and the module is marked broken: later operations
//! fail at once, and [`finalize`] skips `MPI_Finalize` (which would wait for the lost rank).
//! The process then ends with [`abort`] (`MPI_Abort`: `mpirun` stops every rank and exits
//! non-zero), so nothing waits on the lost rank.
//!
//! **Progress.** OpenMPI advances a non-blocking collective only inside MPI calls, so the poll
//! spins (yielding the core) for the first [`SPIN`] of an operation, then tests every
//! [`NAP`]: short operations keep their latency, a rank that waits long for a slow peer does
//! not burn a core.
//!
//! [`Error::Distributed`]: crate::error::Error::Distributed

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ::mpi::environment::{Threading, Universe};
use ::mpi::ffi;
use ::mpi::traits::Communicator;

use super::{Collective, check_len};
use crate::error::{Error, Result};

/// The environment variable that sets how long (seconds, > 0) a collective waits for the other
/// ranks before failing.
pub const TIMEOUT_VAR: &str = "KILN_DIST_TIMEOUT";
/// The timeout when [`TIMEOUT_VAR`] is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an operation polls without sleeping.
pub const SPIN: Duration = Duration::from_millis(20);
/// The pause between two polls after [`SPIN`].
pub const NAP: Duration = Duration::from_micros(100);

/// MPI's lifetime in this process: it starts once and, once finalised, cannot start again.
enum State {
    Never,
    Live(Universe),
    Finalized,
}

static STATE: Mutex<State> = Mutex::new(State::Never);
/// Set when an operation timed out: its request is still pending inside MPI.
static BROKEN: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn dist(msg: String) -> Error {
    Error::Distributed(msg)
}

/// This process's collective on `MPI_COMM_WORLD`, boxed for the training loop. Initialises
/// MPI on the first call (a later call returns another handle on the same world). Collective
/// itself, without a timeout (it finds the ranks sharing this machine): every rank calls it
/// the same number of times, at start-up.
///
/// Errors: MPI already finalised, an MPI library without `MPI_THREAD_SERIALIZED`, or a bad
/// [`TIMEOUT_VAR`].
pub fn world() -> Result<Box<dyn Collective>> {
    Ok(Box::new(MpiCollective::world()?))
}

/// [`world`] and this process's local rank: its index among the ranks on the same machine
/// (what picks its GPU there).
pub fn world_and_local_rank() -> Result<(Box<dyn Collective>, usize)> {
    let c = MpiCollective::world()?;
    let local = c.local_rank();
    Ok((Box::new(c), local))
}

/// Ends MPI at the end of a run, after the last collective: `MPI_Finalize`, except after a
/// timed-out operation (it would wait for the lost rank). Nothing when MPI never started.
pub fn finalize() {
    let mut st = state();
    if let State::Live(universe) = std::mem::replace(&mut *st, State::Finalized) {
        if BROKEN.load(Ordering::SeqCst) {
            std::mem::forget(universe);
        } else {
            drop(universe);
        }
    }
}

/// Ends the whole job now: `MPI_Abort` on `MPI_COMM_WORLD` with `code` (`mpirun` stops every
/// rank and exits non-zero). Without live MPI, exits this process with `code`.
pub fn abort(code: i32) -> ! {
    if matches!(*state(), State::Live(_)) {
        // SAFETY: MPI is initialised and not finalised; the world communicator is a constant.
        unsafe {
            ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code);
        }
    }
    std::process::exit(code)
}

/// The timeout from [`TIMEOUT_VAR`] (seconds, a positive number), or [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration> {
    let Ok(text) = std::env::var(TIMEOUT_VAR) else {
        return Ok(DEFAULT_TIMEOUT);
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(Error::Config(format!(
            "{TIMEOUT_VAR}={text:?}: expected a number of seconds above 0"
        ))),
    }
}

/// Buffers MPI reads and writes while an operation is in flight. They are this module's, not
/// the caller's, so that an operation that timed out (which MPI may still complete later) never
/// writes into memory the caller has reused; after a timeout they are leaked.
#[derive(Default)]
struct Scratch {
    send: Vec<f32>,
    recv: Vec<f32>,
    meta_send: Vec<i64>,
    meta_recv: Vec<i64>,
}

/// [`Collective`] over MPI's world communicator; see the [module notes](self).
pub struct MpiCollective {
    rank: usize,
    size: usize,
    local_rank: usize,
    timeout: Duration,
    scratch: Scratch,
    bytes_sent: u64,
}

impl MpiCollective {
    /// Initialises MPI if needed and returns a handle on `MPI_COMM_WORLD`, with the timeout of
    /// [`timeout_from_env`].
    pub fn world() -> Result<Self> {
        let timeout = timeout_from_env()?;
        let mut st = state();
        if let State::Never = *st {
            let (universe, level) = ::mpi::initialize_with_threading(Threading::Serialized)
                .ok_or_else(|| dist("MPI was initialised outside kiln".into()))?;
            *st = State::Live(universe);
            if !matches!(level, Threading::Serialized | Threading::Multiple) {
                return Err(dist(format!(
                    "the MPI library provides thread level {level:?}; kiln needs Serialized \
                     (collectives may run on a training thread)"
                )));
            }
        }
        let State::Live(universe) = &*st else {
            return Err(dist("MPI was already finalised in this process".into()));
        };
        let world = universe.world();
        // The ranks sharing this machine's memory, in world-rank order (a blocking collective:
        // every rank makes it at start-up).
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Ok(MpiCollective {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank,
            timeout,
            scratch: Scratch::default(),
            bytes_sent: 0,
        })
    }

    /// The same collective with another per-operation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This rank's index among the ranks on its machine.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// How long one operation waits for the other ranks.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks the module is usable, then has every rank compare `agree` (lengths, the root)
    /// and learn whether any rank's `local` check failed; an error on every rank if so.
    fn ready(&mut self, op: &str, agree: &[usize], local: Result<()>) -> Result<()> {
        self.usable(op)?;
        let too_long = agree.iter().any(|&v| c_int::try_from(v).is_err());
        let local = local.and_then(|()| match too_long {
            true => Err(dist(format!(
                "rank {}: {op}: a buffer of {agree:?} values is longer than MPI's count \
                 ({} values)",
                self.rank,
                c_int::MAX
            ))),
            false => Ok(()),
        });
        let s = &mut self.scratch;
        s.meta_send.clear();
        for &v in agree {
            let v = v as i64;
            s.meta_send.extend([v, -v]);
        }
        s.meta_send.push(i64::from(local.is_err()));
        s.meta_recv.clear();
        s.meta_recv.resize(s.meta_send.len(), 0);
        let count = s.meta_send.len() as c_int;
        self.run(op, |s, req| unsafe {
            // SAFETY: both buffers hold `count` i64s and outlive the request (see `Scratch`).
            ffi::MPI_Iallreduce(
                s.meta_send.as_ptr().cast(),
                s.meta_recv.as_mut_ptr().cast(),
                count,
                ffi::RSMPI_INT64_T,
                ffi::RSMPI_MAX,
                ffi::RSMPI_COMM_WORLD,
                req,
            )
        })?;
        local?;
        let got = &self.scratch.meta_recv;
        if got[got.len() - 1] != 0 {
            return Err(dist(format!(
                "rank {}: {op}: another rank's buffers were invalid (its error names them)",
                self.rank
            )));
        }
        for (i, &mine) in agree.iter().enumerate() {
            let (max, min) = (got[2 * i], -got[2 * i + 1]);
            if max != min {
                return Err(dist(format!(
                    "rank {}: {op}: the ranks disagree ({min} to {max}; this rank: {mine}); \
                     every rank must pass the same lengths and root",
                    self.rank
                )));
            }
        }
        Ok(())
    }

    /// An error once an operation has timed out (its request is still pending inside MPI).
    fn usable(&self, op: &str) -> Result<()> {
        if BROKEN.load(Ordering::SeqCst) {
            return Err(dist(format!(
                "rank {}: {op}: an earlier collective timed out, MPI cannot be used again in \
                 this process",
                self.rank
            )));
        }
        Ok(())
    }

    /// Starts one immediate operation with `start(scratch, &mut request)` (an MPI return code)
    /// and polls it until it completes or the timeout passes.
    fn run(
        &mut self,
        op: &str,
        start: impl FnOnce(&mut Scratch, *mut ffi::MPI_Request) -> c_int,
    ) -> Result<()> {
        let mut request = MaybeUninit::<ffi::MPI_Request>::uninit();
        let rc = start(&mut self.scratch, request.as_mut_ptr());
        self.check_rc(op, rc)?;
        // SAFETY: a successful start wrote the request.
        let mut request = unsafe { request.assume_init() };
        let begun = Instant::now();
        loop {
            let mut done: c_int = 0;
            // SAFETY: `request` is an active request of this process; status is ignored.
            let rc = unsafe { ffi::MPI_Test(&mut request, &mut done, ffi::RSMPI_STATUS_IGNORE) };
            self.check_rc(op, rc)?;
            if done != 0 {
                return Ok(());
            }
            let waited = begun.elapsed();
            if waited >= self.timeout {
                return Err(self.give_up(op));
            }
            if waited < SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(NAP);
            }
        }
    }

    fn check_rc(&self, op: &str, rc: c_int) -> Result<()> {
        if rc == ffi::MPI_SUCCESS as c_int {
            return Ok(());
        }
        Err(dist(format!(
            "rank {}: {op}: MPI error code {rc}",
            self.rank
        )))
    }

    /// After a timeout: leak the buffers MPI may still use, mark MPI broken, and the error.
    fn give_up(&mut self, op: &str) -> Error {
        std::mem::forget(std::mem::take(&mut self.scratch));
        BROKEN.store(true, Ordering::SeqCst);
        dist(format!(
            "rank {} of {}: {op}: not every rank answered within {} s ({TIMEOUT_VAR}); a rank \
             has died or stalled",
            self.rank,
            self.size,
            show_secs(self.timeout)
        ))
    }

    /// Loads `data` into the send buffer and sizes the receive buffer to `recv` values.
    fn load(&mut self, data: &[f32], recv: usize) {
        let s = &mut self.scratch;
        s.send.clear();
        s.send.extend_from_slice(data);
        s.recv.clear();
        s.recv.resize(recv, 0.0);
    }
}

/// What `MPI_Iallreduce` and `MPI_Ireduce_scatter_block` take: send and receive buffers, the
/// receive count, datatype, operation, communicator and the request to fill.
type StartSum = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    c_int,
    ffi::MPI_Datatype,
    ffi::MPI_Op,
    ffi::MPI_Comm,
    *mut ffi::MPI_Request,
) -> c_int;

impl MpiCollective {
    /// Sums `data` over the ranks with `start`, `n` values landing in the receive scratch
    /// (`local`: this rank's own check of its buffers, shared with the others by `ready`).
    fn sum(
        &mut self,
        op: &str,
        data: &[f32],
        n: usize,
        local: Result<()>,
        start: StartSum,
    ) -> Result<()> {
        self.ready(op, &[n], local)?;
        self.load(data, n);
        self.run(op, |s, req| unsafe {
            // SAFETY: `send` holds the caller's values and `recv` room for the `n` results; both
            // outlive the request (see `Scratch`).
            start(
                s.send.as_ptr().cast(),
                s.recv.as_mut_ptr().cast(),
                n as c_int,
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_SUM,
                ffi::RSMPI_COMM_WORLD,
                req,
            )
        })
    }
}

fn show_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// Bytes per `f32`.
const F32: u64 = 4;

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<()> {
        let n = data.len();
        self.sum("all_reduce_sum", data, n, Ok(()), ffi::MPI_Iallreduce)?;
        data.copy_from_slice(&self.scratch.recv);
        // A ring all-reduce: reduce-scatter then all-gather, each (N-1)/N of the buffer.
        let world = self.size as u64;
        self.bytes_sent += 2 * (world - 1) * n as u64 * F32 / world;
        Ok(())
    }

    fn all_gather(&mut self, shard: &[f32], out: &mut [f32]) -> Result<()> {
        let op = "all_gather";
        let n = shard.len();
        let local = check_len(op, out.len(), n * self.size);
        self.ready(op, &[n], local)?;
        self.load(shard, n * self.size);
        self.run(op, |s, req| unsafe {
            // SAFETY: `send` holds `n` f32s, `recv` `n·N`; both outlive the request.
            ffi::MPI_Iallgather(
                s.send.as_ptr().cast(),
                n as c_int,
                ffi::RSMPI_FLOAT,
                s.recv.as_mut_ptr().cast(),
                n as c_int,
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_COMM_WORLD,
                req,
            )
        })?;
        out.copy_from_slice(&self.scratch.recv);
        // A ring all-gather: this rank's shard travels to N-1 peers, one hop at a time.
        self.bytes_sent += (self.size as u64 - 1) * n as u64 * F32;
        Ok(())
    }

    fn reduce_scatter_sum(&mut self, data: &[f32], out: &mut [f32]) -> Result<()> {
        let op = "reduce_scatter_sum";
        let n = out.len();
        let local = check_len(op, data.len(), n * self.size);
        self.sum(op, data, n, local, ffi::MPI_Ireduce_scatter_block)?;
        out.copy_from_slice(&self.scratch.recv);
        // A ring reduce-scatter: N-1 partial chunks of `n` values leave this rank.
        self.bytes_sent += (self.size as u64 - 1) * n as u64 * F32;
        Ok(())
    }

    fn broadcast(&mut self, data: &mut [f32], root: usize) -> Result<()> {
        let op = "broadcast";
        let n = data.len();
        let local = match root < self.size {
            true => Ok(()),
            false => Err(dist(format!(
                "rank {}: broadcast from rank {root} in a world of {}",
                self.rank, self.size
            ))),
        };
        self.ready(op, &[n, root], local)?;
        // Every rank lends MPI its data: the root's is sent, the others' are overwritten.
        self.load(data, 0);
        self.run(op, |s, req| unsafe {
            // SAFETY: `send` holds `n` f32s and outlives the request; `root` < N.
            ffi::MPI_Ibcast(
                s.send.as_mut_ptr().cast(),
                n as c_int,
                ffi::RSMPI_FLOAT,
                root as c_int,
                ffi::RSMPI_COMM_WORLD,
                req,
            )
        })?;
        data.copy_from_slice(&self.scratch.send);
        // A pipelined chain from the root: every rank but the last of the chain forwards it.
        if self.size > 1 && self.rank != (root + self.size - 1) % self.size {
            self.bytes_sent += n as u64 * F32;
        }
        Ok(())
    }

    fn barrier(&mut self) -> Result<()> {
        self.usable("barrier")?;
        // SAFETY: the request slot is written by MPI; the barrier has no buffers.
        self.run("barrier", |_, req| unsafe {
            ffi::MPI_Ibarrier(ffi::RSMPI_COMM_WORLD, req)
        })
    }

    fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }
}
