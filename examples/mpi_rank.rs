//! The rank program of `tests/mpi.rs` (feature `mpi`): each test runs `mpirun -n 2
//! target/<profile>/examples/mpi_rank` with `KILN_MPI_ROLE` naming what the ranks do —
//! `collectives` (every collective on awkward lengths against the plain sum, gather and copy
//! computed on every rank, and the length/root mismatches), `stall` or `exit` (rank 1 stops
//! answering; rank 0 must report the timeout and abort the job) — and reads what they print.

use std::time::Duration;

use kiln::dist::Collective;
use kiln::dist::mpi as kmpi;

/// How long the stalled rank sleeps: far past the tests' short timeout, so only the abort ends it.
const STALL: Duration = Duration::from_secs(60);

/// Rank `rank`'s input of `n` values for check `salt`: every rank can make every rank's input.
fn input(rank: usize, n: usize, salt: u64) -> Vec<f32> {
    let seed = 1000 * salt + 17 * rank as u64 + n as u64;
    (0..n as u64)
        .map(|i| ((i * 2_654_435_761 + seed * 40_503) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// Each collective on awkward lengths against the plain result; length and root mismatches.
fn check_collectives(c: &mut dyn Collective) {
    let (r, w) = (c.rank(), c.world_size());
    assert_eq!(w, 2, "run under mpirun -n 2");
    for n in [1usize, 7, 1000, 4099, 65537] {
        let all: Vec<Vec<f32>> = (0..w).map(|q| input(q, n, 1)).collect();
        let sum: Vec<f32> = (0..n).map(|i| all.iter().map(|v| v[i]).sum()).collect();
        let mut data = all[r].clone();
        c.all_reduce_sum(&mut data).unwrap();
        close(&data, &sum, &format!("all_reduce_sum n={n}"));

        let mut gathered = vec![f32::NAN; n * w];
        c.all_gather(&all[r], &mut gathered).unwrap();
        assert_eq!(gathered, all.concat(), "all_gather n={n}");

        let big: Vec<Vec<f32>> = (0..w).map(|q| input(q, n * w, 2)).collect();
        let mut chunk = vec![f32::NAN; n];
        c.reduce_scatter_sum(&big[r], &mut chunk).unwrap();
        let want: Vec<f32> = (r * n..(r + 1) * n)
            .map(|i| big.iter().map(|v| v[i]).sum())
            .collect();
        close(&chunk, &want, &format!("reduce_scatter_sum n={n}"));

        for root in 0..w {
            let mut data = input(r, n, 3 + root as u64);
            c.broadcast(&mut data, root).unwrap();
            assert_eq!(
                data,
                input(root, n, 3 + root as u64),
                "broadcast n={n} root={root}"
            );
        }
        c.barrier().unwrap();
    }
    // Two ranks, ring accounting: all-reduce n, all-gather n, reduce-scatter n, and one of the
    // two broadcasts (the root's) n, 4 bytes each.
    let lens: u64 = [1u64, 7, 1000, 4099, 65537].iter().sum();
    assert_eq!(c.bytes_sent(), 16 * lens, "bytes sent");

    let mut odd = vec![1.0; 5 + r];
    let e = c.all_reduce_sum(&mut odd).unwrap_err().to_string();
    assert!(
        e.contains("all_reduce_sum: the ranks disagree (5 to 6"),
        "{e}"
    );
    let mut out = vec![0.0; 4 + r];
    let e = c.all_gather(&[1.0, 2.0], &mut out).unwrap_err().to_string();
    let want = [
        "all_gather: another rank's buffers",
        "all_gather: buffer of 5 values",
    ][r];
    assert!(e.contains(want), "{e}");
    let e = c.broadcast(&mut [1.0], 2).unwrap_err().to_string();
    assert!(e.contains("broadcast from rank 2 in a world of 2"), "{e}");
    // The mismatches were caught before any data moved: the world still works.
    let mut one = [r as f32 + 1.0];
    c.all_reduce_sum(&mut one).unwrap();
    assert_eq!(one, [3.0]);
}

/// Ranks that stop answering: `stall` (rank 1 sleeps) or `exit` (rank 1 exits without
/// finalising). Rank 0 reports its error and aborts the job, as `kiln train` does.
fn lose_a_rank(c: &mut dyn Collective, role: &str) {
    let mut warmup = [1.0f32; 3];
    c.all_reduce_sum(&mut warmup).unwrap();
    assert_eq!(warmup, [2.0; 3]);
    if c.rank() == 1 {
        match role {
            "stall" => std::thread::sleep(STALL),
            _ => std::process::exit(7),
        }
        return;
    }
    let mut data = vec![1.0f32; 1000];
    let e = c.all_reduce_sum(&mut data).unwrap_err();
    eprintln!("error: {e}");
    let again = c.barrier().unwrap_err().to_string();
    assert!(again.contains("an earlier collective timed out"), "{again}");
    kmpi::abort(3);
}

fn main() {
    let Ok(role) = std::env::var("KILN_MPI_ROLE") else {
        eprintln!(
            "mpi_rank: a rank program of tests/mpi.rs; run it under mpirun with KILN_MPI_ROLE"
        );
        std::process::exit(2);
    };
    let mut c = kmpi::world().expect("MPI world");
    match role.as_str() {
        "collectives" => check_collectives(c.as_mut()),
        "stall" | "exit" => lose_a_rank(c.as_mut(), &role),
        other => panic!("unknown KILN_MPI_ROLE {other:?}"),
    }
    println!("rank {}: {role} ok", c.rank());
    drop(c);
    kmpi::finalize();
}
