//! MPI collectives under `mpirun -n 2` (feature `mpi`): every collective on awkward lengths
//! against the plain sum, gather and copy computed on every rank; a stalled rank, and a rank that
//! exits mid-way, end the job with a clear error within the timeout, never a hang.
//!
//! The rank program is `examples/mpi_rank.rs`: each test runs `mpirun -n 2 <it>` with
//! `KILN_MPI_ROLE` naming what the ranks do, and reads what they printed.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln::dist::mpi::TIMEOUT_VAR;

/// The per-operation timeout (seconds) of the failure tests.
const SHORT_TIMEOUT: u64 = 3;
/// How long the stalled rank sleeps (`examples/mpi_rank.rs`): only the abort ends it sooner.
const STALL: Duration = Duration::from_secs(60);

/// What `mpirun` left: exit status, both streams, and how long it ran.
struct Job {
    ok: bool,
    out: String,
    took: Duration,
}

/// The rank program, `examples/mpi_rank.rs`, built by `cargo test` beside this binary (built
/// here with the running cargo when only this test target was built).
fn rank_exe() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let deps = std::env::current_exe().expect("test binary path");
            let exe = deps.parent().and_then(|d| d.parent()).expect("target dir");
            let exe = exe.join("examples").join("mpi_rank");
            if !exe.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                let ok = Command::new(cargo)
                    .args(["build", "--example", "mpi_rank", "--features", "mpi"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "could not build examples/mpi_rank.rs");
            }
            exe
        })
        .clone()
}

/// Runs the rank program as 2 ranks with role `role`, killing `mpirun` (and failing) past
/// `limit`; `None` (after a loud skip) when `mpirun` is missing.
fn mpirun(check: &str, role: &str, extra: &[&str], limit: Duration) -> Option<Job> {
    let exe = rank_exe();
    let exe = exe.to_string_lossy();
    launch(check, &[("KILN_MPI_ROLE", role)], extra, &[&*exe], limit)
}

/// An environment variable: name, value.
type Var<'a> = (&'a str, &'a str);

/// `mpirun -n 2 --oversubscribe --bind-to none EXTRA PROGRAM..` with the short timeout, then the
/// variables `env`; see [`mpirun`].
fn launch(
    check: &str,
    env: &[Var],
    extra: &[&str],
    program: &[&str],
    limit: Duration,
) -> Option<Job> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        let why = "mpirun is not installed";
        common::skip(check, why, "apt-get install -y openmpi-bin libopenmpi-dev");
        return None;
    }
    let mut cmd = Command::new("mpirun");
    // Unbound: a rank pinned to one core (OpenMPI's default for 2 ranks) starves lavapipe's
    // worker threads on a busy machine.
    cmd.args(["-n", "2", "--oversubscribe", "--bind-to", "none"])
        .args(extra)
        .args(["-x", "KILN_MPI_ROLE", "-x", TIMEOUT_VAR])
        .args(program)
        .env(TIMEOUT_VAR, SHORT_TIMEOUT.to_string())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        // CI runs as root; OpenMPI refuses root without these.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Containers often forbid the cross-process memory copy (ptrace) of the shared-memory
        // transport; plain copies through shared memory work everywhere.
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let began = Instant::now();
    let mut child = cmd.spawn().expect("start mpirun");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let mut err = String::new();
    let err_reader = std::thread::spawn(move || {
        let _ = se.read_to_string(&mut err);
        err
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mpirun") {
            break status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{check}: mpirun still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = began.elapsed();
    let out = reader.join().unwrap() + &err_reader.join().unwrap();
    Some(Job {
        ok: status.success(),
        out,
        took,
    })
}

#[test]
fn collectives_match_the_plain_results_on_two_ranks() {
    let check = "tests/mpi.rs collectives";
    let Some(job) = mpirun(check, "collectives", &[], Duration::from_secs(120)) else {
        return;
    };
    assert!(job.ok, "the ranks failed:\n{}", job.out);
    for r in 0..2 {
        let line = format!("rank {r}: collectives ok");
        assert!(job.out.contains(&line), "no {line:?} in:\n{}", job.out);
    }
}

/// The job of `role` (rank 1 stalls or exits), which must fail well within the stall.
fn lost_rank(check: &str, role: &str, extra: &[&str]) -> Option<Job> {
    let job = mpirun(check, role, extra, Duration::from_secs(50))?;
    assert!(
        !job.ok,
        "mpirun succeeded without rank 1 ({role}):\n{}",
        job.out
    );
    // The abort stopped the other rank: the job ended long before the stall would.
    assert!(job.took < STALL / 2, "took {:?}:\n{}", job.took, job.out);
    assert!(!job.out.contains("panicked"), "{}", job.out);
    Some(job)
}

/// The error rank 0 prints when rank 1 stops answering.
fn timeout_error() -> String {
    format!(
        "rank 0 of 2: all_reduce_sum: not every rank answered within {SHORT_TIMEOUT} s \
         ({TIMEOUT_VAR}); a rank has died or stalled"
    )
}

#[test]
fn a_stalled_rank_ends_the_job_with_the_timeout_error() {
    let Some(job) = lost_rank("tests/mpi.rs stall", "stall", &[]) else {
        return;
    };
    assert!(job.out.contains(&timeout_error()), "{}", job.out);
}

#[test]
fn a_rank_that_exits_mid_run_ends_the_job() {
    // OpenMPI's own watch: mpirun stops the job when a rank exits before finalising.
    if lost_rank("tests/mpi.rs exit", "exit", &[]).is_none() {
        return;
    }
    // With that watch off, rank 0's deadline ends it with kiln's error, and its MPI_Abort.
    let off = ["--mca", "orte_abort_on_non_zero_status", "0"];
    let job = lost_rank("tests/mpi.rs exit, unwatched", "exit", &off).unwrap();
    assert!(job.out.contains(&timeout_error()), "{}", job.out);
}

#[test]
fn kiln_train_distributed_runs_one_rank_per_process() {
    let check = "tests/mpi.rs kiln train --distributed";
    let tmp = std::env::temp_dir().join(format!("kiln-mpi-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dir = tmp.join("run");
    let dir_s = dir.to_string_lossy();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let args = [
        kiln,
        "train",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--max-steps",
        "3",
    ];
    let program = [
        &args[..],
        &["--distributed", "--device", "0,0", "--out", &dir_s],
    ]
    .concat();
    let Some(job) = launch(check, &[], &[], &program, Duration::from_secs(300)) else {
        return;
    };
    assert!(job.ok, "the ranks failed:\n{}", job.out);
    // Rank 0 prints the run; rank 1 only its summary line, and keeps its own copy.
    assert_eq!(job.out.matches("device: ").count(), 1, "{}", job.out);
    assert!(job.out.contains(&format!("run:    {dir_s}")), "{}", job.out);
    for d in [dir.clone(), dir.join("rank-1")] {
        assert!(
            d.join("config.toml").is_file(),
            "no config.toml in {}",
            d.display()
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn kiln_train_distributed_names_bad_input() {
    let check = "tests/mpi.rs kiln train --distributed, bad input";
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let train = [kiln, "train", "--max-steps", "1", "--distributed"];
    // Before MPI starts (a bad timeout) a process says it plainly; after, with its rank. The
    // first rank to fail ends the job, so the other may not get to print.
    let cases: [(&[Var], &[&str], &str); 2] = [
        (
            &[(TIMEOUT_VAR, "soon")],
            &[],
            "error: KILN_DIST_TIMEOUT=\"soon\": expected a number of seconds above 0",
        ),
        (
            &[],
            &["--device", "0,,1"],
            "--device \"0,,1\": an empty entry",
        ),
    ];
    for (env, flags, want) in cases {
        let program = [&train[..], flags].concat();
        let Some(job) = launch(check, env, &[], &program, Duration::from_secs(120)) else {
            return;
        };
        assert!(!job.ok, "{}", job.out);
        assert!(job.out.contains(want), "no {want:?} in:\n{}", job.out);
        assert!(!job.out.contains("panicked"), "{}", job.out);
    }
}
