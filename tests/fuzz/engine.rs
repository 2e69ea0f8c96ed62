//! A small mutation fuzzer on a stable toolchain: replay a target's seeds (inline ones and the
//! files under `tests/fuzz/corpus/<target>/`), then mutate them with a seeded ChaCha RNG until
//! the time budget is spent.
//!
//! Oracles, per input: no panic (the call runs under `catch_unwind` on a worker thread), no hang
//! (the worker must answer within the target's time limit), and no silent success on garbage
//! (each target checks invariants of what it accepted and returns `Err` when they fail). A
//! failing input is saved under `CARGO_TARGET_TMPDIR/fuzz-findings/` and the test fails naming
//! the file; copy it into the corpus as a regression seed once fixed.
//!
//! Budget: `KILN_FUZZ_SECS` seconds per target (default 2, which CI uses); `KILN_FUZZ_SEED`
//! picks the RNG stream (default 1, so CI is reproducible).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What one input did: accepted (parsed, invariants held) or refused with a clean error.
/// `Err` is an oracle failure (an invariant broken, a dirty error).
pub type Verdict = Result<bool, String>;

/// How a target turns a pool entry into a new input.
pub type Mutator = fn(&mut ChaCha8Rng, &[u8], &[Vec<u8>], &[&[u8]]) -> Vec<u8>;

/// One fuzz target.
pub struct Target {
    /// Its name (also the corpus folder's).
    pub name: &'static str,
    /// Inline seeds (today's malformed cases and a few good inputs).
    pub seeds: Vec<Vec<u8>>,
    /// Tokens the mutator splices in (delimiters, keywords, absurd numbers).
    pub dict: &'static [&'static [u8]],
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// Time one input may take before it counts as a hang.
    pub limit: Duration,
    /// Run one input.
    pub exec: fn(&[u8]) -> Verdict,
    /// The mutator ([`mutate_bytes`] for byte formats).
    pub mutate: Mutator,
}

/// Seconds per target: `KILN_FUZZ_SECS`, default 2.
pub fn budget() -> Duration {
    let secs = std::env::var("KILN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn save_finding(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings");
    std::fs::create_dir_all(&dir).unwrap();
    // FNV-1a names the file by content.
    let h = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let p = dir.join(format!("{name}-{h:016x}.bin"));
    std::fs::write(&p, input).unwrap();
    p
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a non-string panic".into())
}

/// Run `t`: every seed, then mutants until the budget is spent. Panics (failing the test) on the
/// first input that panics, hangs or breaks an invariant, after saving it.
pub fn run(t: Target) {
    let seed: u64 = std::env::var("KILN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pool: Vec<Vec<u8>> = t.seeds.iter().cloned().chain(corpus(t.name)).collect();
    assert!(!pool.is_empty(), "{}: no seeds", t.name);
    let seeds = pool.len();
    let (tx_in, rx_in) = mpsc::channel::<Vec<u8>>();
    let (tx_out, rx_out) = mpsc::channel::<Result<Verdict, String>>();
    let exec = t.exec;
    std::thread::spawn(move || {
        for input in rx_in {
            let r = std::panic::catch_unwind(|| exec(&input)).map_err(|e| panic_text(&*e));
            if tx_out.send(r).is_err() {
                break;
            }
        }
    });
    let budget = budget();
    let start = Instant::now();
    let (mut execs, mut accepted, mut slowest) = (0u64, 0u64, Duration::ZERO);
    loop {
        let i = execs as usize;
        if i >= seeds && start.elapsed() >= budget {
            break;
        }
        let input = if i < seeds {
            pool[i].clone()
        } else {
            let base = &pool[rng.random_range(0..pool.len())];
            let mut m = (t.mutate)(&mut rng, base, &pool, t.dict);
            m.truncate(t.max_len);
            m
        };
        let t0 = Instant::now();
        tx_in.send(input.clone()).unwrap();
        let verdict = match rx_out.recv_timeout(t.limit) {
            Ok(v) => v,
            Err(_) => {
                let p = save_finding(t.name, &input);
                panic!(
                    "fuzz {}: an input ran past {:?} (hang); saved as {}",
                    t.name,
                    t.limit,
                    p.display()
                );
            }
        };
        slowest = slowest.max(t0.elapsed());
        execs += 1;
        match verdict {
            Ok(Ok(ok)) => {
                accepted += ok as u64;
                // Keep some accepted mutants: they reach deeper than the seeds.
                if ok && i >= seeds && pool.len() < 400 && rng.random_ratio(1, 8) {
                    pool.push(input);
                }
            }
            Ok(Err(why)) => {
                let p = save_finding(t.name, &input);
                panic!("fuzz {}: {why}; input saved as {}", t.name, p.display());
            }
            Err(msg) => {
                let p = save_finding(t.name, &input);
                panic!(
                    "fuzz {}: panicked ({msg}); input saved as {}",
                    t.name,
                    p.display()
                );
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz {}: {execs} executions in {secs:.0} s ({:.0}/s), {seeds} seeds, {accepted} accepted, \
         {} refused, slowest {:.2} s, pool {}",
        t.name,
        execs as f64 / secs.max(1e-9),
        execs - accepted,
        slowest.as_secs_f64(),
        pool.len()
    );
}

/// Bytes worth planting: digits, delimiters and numbers that overflow or mean nothing.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"-1",
    b"1e308",
    b"1e999",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"18446744073709551615",
    b"4294967296",
    b"4000000000",
    b"9223372036854775807",
    b"-0",
    b"0.0000001",
];

/// Generic byte mutations: 1 to 4 of bit flips, byte sets, inserts of dictionary tokens or
/// absurd numbers, deletions, duplications, splices with another pool entry, truncation.
pub fn mutate_bytes(
    rng: &mut ChaCha8Rng,
    base: &[u8],
    pool: &[Vec<u8>],
    dict: &[&[u8]],
) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let n = v.len();
        let at = if n == 0 { 0 } else { rng.random_range(0..=n) };
        match rng.random_range(0..9) {
            0 if n > 0 => v[at.min(n - 1)] ^= 1 << rng.random_range(0..8),
            1 if n > 0 => {
                v[at.min(n - 1)] =
                    [0u8, 0xff, 0x7f, 0x80, b'\n', b'"', b',', b'\\', b'0'][rng.random_range(0..9)]
            }
            2 if !dict.is_empty() => {
                let d = dict[rng.random_range(0..dict.len())];
                v.splice(at..at, d.iter().copied());
            }
            3 => {
                let d = NUMBERS[rng.random_range(0..NUMBERS.len())];
                // Replace a run of digits when there is one near, else insert.
                let end = (at..n).take_while(|&j| v[j].is_ascii_digit()).last();
                match end {
                    Some(e) => drop(v.splice(at..=e, d.iter().copied())),
                    None => drop(v.splice(at..at, d.iter().copied())),
                }
            }
            4 if n > 0 => {
                let len = rng.random_range(1..=(n - at.min(n - 1)).min(64));
                let s = at.min(n - 1);
                v.drain(s..(s + len).min(n));
            }
            5 if n > 0 => {
                let s = at.min(n - 1);
                let len = rng.random_range(1..=(n - s).min(256));
                let chunk: Vec<u8> = v[s..s + len].to_vec();
                let times = rng.random_range(1..=8);
                for _ in 0..times {
                    v.splice(s..s, chunk.iter().copied());
                }
            }
            6 => {
                let other = &pool[rng.random_range(0..pool.len())];
                let from = if other.is_empty() {
                    0
                } else {
                    rng.random_range(0..other.len())
                };
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            7 if n > 0 => v.truncate(rng.random_range(0..n)),
            _ => {
                let len = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                v.splice(at..at, bytes);
            }
        }
    }
    v
}

/// Text of an input (lossy), for targets that parse text.
pub fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

/// A fresh scratch directory for one input of `target` (the worker reuses one per target).
pub fn scratch(target: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-fuzz-{}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
