//! Collectives: how replicas of one training run exchange numbers.
//!
//! Data parallelism runs one replica of the model per device (in one process, one thread per
//! device) or per process (`mpirun -n N kiln train --distributed`, one rank per process). Every
//! replica computes gradients on its slice of the global batch; the replicas then agree on the
//! sum with an all-reduce. ZeRO sharding splits the optimizer state (and gradients) so that each
//! replica owns `1/N` of them: it reduce-scatters the gradients, updates its shard, and
//! all-gathers the new parameters.
//!
//! [`Collective`] is that vocabulary, on host `f32` slices (the GPUs of two ranks, or of two
//! backends in one process, share no memory: their buffers travel through the host). Every
//! participant calls the same operations in the same order with buffers of the same length;
//! a peer that dies or stalls makes the others return [`Error::Distributed`] within the
//! collective's timeout, never hang.
//!
//! Implementations: [`Solo`] (a world of one: every operation is the identity), the in-process
//! group of threads, and MPI (feature `mpi`).
//!
//! [`Error::Distributed`]: crate::error::Error::Distributed

use crate::error::Result;

pub mod local;
pub use local::Local;
#[cfg(feature = "mpi")]
pub mod mpi;

/// The operations replicas use to agree on numbers. `rank` is this participant's index in
/// `0..world_size()`; every call is collective (all ranks make it, in the same order, with
/// buffers of the same length, or every rank gets an error naming the mismatch).
pub trait Collective: Send {
    /// This participant's index, `0..world_size()`.
    fn rank(&self) -> usize;
    /// How many participants take part.
    fn world_size(&self) -> usize;
    /// `data[i] = Σ_r data_r[i]`: every rank ends with the elementwise sum over ranks.
    fn all_reduce_sum(&mut self, data: &mut [f32]) -> Result<()>;
    /// Every rank contributes `shard` (length `n`, the same on every rank); `out`
    /// (length `n * world_size()`) receives the shards in rank order.
    fn all_gather(&mut self, shard: &[f32], out: &mut [f32]) -> Result<()>;
    /// `data` (length `n * world_size()`) is summed over ranks elementwise; rank `r` receives
    /// chunk `r` of the sum (`data[r*n..(r+1)*n]` summed) in `out` (length `n`).
    fn reduce_scatter_sum(&mut self, data: &[f32], out: &mut [f32]) -> Result<()>;
    /// Rank `root`'s `data` is copied into every other rank's `data` (same length everywhere).
    fn broadcast(&mut self, data: &mut [f32], root: usize) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&mut self) -> Result<()>;
    /// Bytes this rank has sent to its peers so far (payload only), for the per-step traffic
    /// figures set beside the theory (an all-reduce moves about `2 (N-1)/N` times the buffer).
    fn bytes_sent(&self) -> u64;
}

/// A world of one participant: every collective is the identity and nothing is sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&mut self, _data: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather(&mut self, shard: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("all_gather", out.len(), shard.len())?;
        out.copy_from_slice(shard);
        Ok(())
    }
    fn reduce_scatter_sum(&mut self, data: &[f32], out: &mut [f32]) -> Result<()> {
        check_len("reduce_scatter_sum", data.len(), out.len())?;
        out.copy_from_slice(data);
        Ok(())
    }
    fn broadcast(&mut self, _data: &mut [f32], root: usize) -> Result<()> {
        if root != 0 {
            return Err(crate::error::Error::Distributed(format!(
                "broadcast from rank {root} in a world of 1"
            )));
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
    fn bytes_sent(&self) -> u64 {
        0
    }
}

/// An error unless `got == want` (a buffer whose length disagrees with what the collective
/// `op` needs).
pub fn check_len(op: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(crate::error::Error::Distributed(format!(
            "{op}: buffer of {got} values where {want} were expected"
        )));
    }
    Ok(())
}
