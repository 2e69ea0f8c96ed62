//! `kiln train --distributed`: one rank of an MPI job (`mpirun -n N kiln train ...
//! --distributed`, a kiln built with `--features mpi`).
//!
//! Each rank opens MPI (`dist::mpi::world_and_local_rank`, the one place that makes the job's
//! [`Collective`](crate::dist::Collective)), picks its adapter (`--device A,B,..`: entry `l` for
//! the rank whose *local* rank on its machine is `l`; one entry: every rank), and learns the run
//! directory from rank 0 (rank 0's `--out`, or the `runs/..` it picked, broadcast as bytes).
//! Rank 0 writes the run directory and prints progress; rank `r > 0` runs quietly with
//! `DIR/rank-r` as its own directory (its checkpoints there are what it resumes from with
//! `--resume --out DIR`, also on a machine that does not share rank 0's disk). A rank whose run
//! fails prints its error and ends the whole job (`MPI_Abort`), so no rank waits on it.

use super::Result;
use super::train::TrainArgs;

/// Runs `kiln train` as this process's rank of the MPI job.
#[cfg(feature = "mpi")]
pub(super) fn run(mut a: TrainArgs) -> Result<()> {
    use crate::dist::mpi;
    let (mut world, local_rank) = mpi::world_and_local_rank()?;
    let rank = world.rank();
    let placed = place(&mut a, world.as_mut(), local_rank);
    if rank == 0 && world.world_size() > 1 {
        eprintln!(
            "warning: --distributed: the gradient all-reduce is not yet connected to MPI; each of \
             the {} ranks trains its own replica on the whole batch (use --devices in one \
             process for data parallelism)",
            world.world_size()
        );
    }
    // Where the data-parallel step (the trainer's gradient all-reduce, issue 16) receives
    // `world`; until it does, every rank trains a whole replica on the whole batch.
    let result = placed.and_then(|()| super::train::run_with(a, None));
    drop(world);
    match result {
        Ok(()) => {
            mpi::finalize();
            Ok(())
        }
        Err(e) => {
            eprintln!("error: rank {rank}: {e}");
            mpi::abort(1)
        }
    }
}

/// Without the `mpi` feature: an error that says how to get it.
#[cfg(not(feature = "mpi"))]
pub(super) fn run(_a: TrainArgs) -> Result<()> {
    Err(super::Error(
        "--distributed: this kiln was built without MPI; rebuild it with the `mpi` feature \
         (`cargo install --path . --features mpi`, which needs an MPI library and libclang: \
         apt-get install openmpi-bin libopenmpi-dev libclang-dev) and start it under \
         `mpirun -n N kiln train ... --distributed`"
            .into(),
    ))
}

/// This rank's adapter, run directory and verbosity.
#[cfg(feature = "mpi")]
fn place(
    a: &mut TrainArgs,
    world: &mut dyn crate::dist::Collective,
    local_rank: usize,
) -> Result<()> {
    let rank = world.rank();
    if let Some(list) = a.common.device.device.take() {
        a.common.device.device = Some(pick_device(&list, local_rank)?);
    }
    // Rank 0 names the directory (its `--out`, or the next free runs/..); every rank needs it.
    let mut dir = Vec::new();
    if rank == 0 {
        let d = match &a.common.out {
            Some(d) => d.clone(),
            None => super::train::next_run_dir(&super::train::resolve(a)?),
        };
        dir = d.to_string_lossy().into_owned().into_bytes();
    }
    let dir = std::path::PathBuf::from(broadcast_text(world, dir)?);
    if rank == 0 {
        a.common.out = Some(dir);
    } else {
        a.common.out = Some(dir.join(format!("rank-{rank}")));
        a.common.quiet = true;
    }
    Ok(())
}

/// Entry `local_rank` of a comma-separated `--device` list (one entry: that adapter for all).
#[cfg(feature = "mpi")]
fn pick_device(list: &str, local_rank: usize) -> Result<String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    if entries.iter().any(|e| e.is_empty()) {
        return Err(super::Error(format!(
            "--device {list:?}: an empty entry (expected adapters as `kiln devices` lists them, \
             one per rank on a machine: 0,1,2,3)"
        )));
    }
    match entries.as_slice() {
        [one] => Ok(one.to_string()),
        many if local_rank < many.len() => Ok(many[local_rank].to_string()),
        many => Err(super::Error(format!(
            "--device {list:?} names {} adapters, but this machine runs a rank of local rank \
             {local_rank}: give one adapter per rank on each machine",
            many.len()
        ))),
    }
}

/// Rank 0's `bytes` on every rank (as text), through the job's `f32` broadcast: the length,
/// then one byte per value (exact in `f32`).
#[cfg(feature = "mpi")]
fn broadcast_text(world: &mut dyn crate::dist::Collective, bytes: Vec<u8>) -> Result<String> {
    let mut len = [bytes.len() as f32];
    world.broadcast(&mut len, 0)?;
    let mut data: Vec<f32> = bytes.iter().map(|&b| f32::from(b)).collect();
    data.resize(len[0] as usize, 0.0);
    world.broadcast(&mut data, 0)?;
    let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
    String::from_utf8(bytes)
        .map_err(|_| super::Error("--distributed: rank 0's run directory is not UTF-8".into()))
}
