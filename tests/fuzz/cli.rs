//! Fuzz target for `kiln` command lines: flags and values combined at random over the commands
//! that read user input (train, eval, predict, generate, info, finetune, merge, tune-kernels).
//!
//! An input is the arguments separated by NUL bytes; `@NAME` placeholders stand for files made
//! once (a digits run, a tiny GPT run, a CSV, a text, chat JSONL, an image folder) and `@OUT` for
//! a fresh output path. Oracle: the exit code is 0, 1 or 2 (never a signal, 101 or 134), stderr
//! has no panic or backtrace, an exit 1 prints `error: `, and a success prints no NaN and no
//! score on 0 examples. `train` and `finetune` get `--max-steps 2` unless the input sets a
//! budget, so every input ends within seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::engine::{Target, Verdict};

fn kiln_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    c
}

fn must(args: &[&str]) {
    let out = kiln_cmd(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixed files the placeholders name, made once per test process.
fn files() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("kiln-fuzz-{}-files", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = |n: &str| d.join(n).to_str().unwrap().to_string();
        let rows: String = (0..40).map(|i| format!("{i},{},{}\n", i % 5, i % 2)).collect();
        std::fs::write(d.join("t.csv"), format!("a,b,y\n{rows}")).unwrap();
        std::fs::write(d.join("t.txt"), "the cat sat on the mat. ".repeat(60)).unwrap();
        let line = r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello there"}]}"#;
        std::fs::write(d.join("c.jsonl"), format!("{line}\n").repeat(12)).unwrap();
        for class in ["a", "b"] {
            std::fs::create_dir_all(d.join("img").join(class)).unwrap();
            for i in 0..4u8 {
                let img = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([x as u8 * 9 + y as u8 * i]));
                img.save(d.join("img").join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        std::fs::write(d.join("file"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("file"), d.join("link")).unwrap();
        must(&["train", "--epochs", "1", "--quiet", "--out", &p("run")]);
        let gpt = [
            "train", "--model", "gpt", "--text", &p("t.txt"), "--layers", "1", "--heads", "2",
            "--width", "16", "--context", "16", "--epochs", "1", "--max-steps", "2", "--quiet",
            "--out", &p("gpt"),
        ];
        must(&gpt);
        d
    })
}

/// The digits run made for the placeholders (also a seed of the safetensors target).
pub fn digits_run() -> PathBuf {
    files().join("run")
}

fn expand(arg: &str, out: &Path) -> String {
    let d = files();
    let named = [
        ("@RUN", d.join("run")),
        ("@GPT", d.join("gpt")),
        ("@CSV", d.join("t.csv")),
        ("@TEXT", d.join("t.txt")),
        ("@CHAT", d.join("c.jsonl")),
        ("@IMAGES", d.join("img")),
        ("@LINK", d.join("link")),
        ("@DIR", d.clone()),
        ("@OUT", out.to_path_buf()),
    ];
    let mut s = arg.to_string();
    for (k, v) in named {
        s = s.replace(k, v.to_str().unwrap());
    }
    s
}

/// Run `kiln args...` (placeholders expanded) and apply the oracle. `Ok(true)`: it succeeded.
pub fn oracle(args: &[&str]) -> Verdict {
    oracle_within(args, Duration::from_secs(120), false)
}

/// [`oracle`] with a time limit; past it the command is killed, which is a hang unless
/// `busy_ok` (a command doing legitimate long work, like tuning kernels, counts as accepted).
fn oracle_within(args: &[&str], limit: Duration, busy_ok: bool) -> Verdict {
    // Unique per call: two targets (cli, safetensors) may run commands at once.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("kiln-fuzz-{}-out{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let args: Vec<String> = args.iter().map(|a| expand(a, &out)).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (stdout, stderr) = (out.with_extension("stdout"), out.with_extension("stderr"));
    let mut child = kiln_cmd(&argv)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            if busy_ok {
                return Ok(true);
            }
            return Err(format!("kiln {args:?} ran past {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let so = std::fs::read_to_string(&stdout).unwrap_or_default();
    let se = std::fs::read_to_string(&stderr).unwrap_or_default();
    for p in [&stdout, &stderr, &out] {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir_all(p);
    }
    let why = |m: &str| Err(format!("kiln {args:?}: {m}\nstdout: {so}\nstderr: {se}"));
    if se.contains("panicked") || se.contains("RUST_BACKTRACE") || se.contains("stack backtrace") {
        return why("a panic");
    }
    match status.code() {
        Some(0) => {
            let zero_val = so.contains("val loss 0.0000") || so.contains("/ 0 val");
            if so.contains("NaN") || so.contains("(0 examples)") || so.contains(" inf") || zero_val
            {
                return why("success that reports NaN or a score on 0 examples");
            }
            Ok(true)
        }
        Some(1) if se.contains("error: ") => Ok(false),
        Some(2) => Ok(false),
        Some(c) => why(&format!("exit code {c}")),
        None => why("killed by a signal"),
    }
}

fn cli_exec(input: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(input);
    let mut args: Vec<&str> = text.split('\0').filter(|a| !a.is_empty()).collect();
    let budget = ["--max-steps", "--time-limit", "--stop-at-epoch"];
    if matches!(args.first(), Some(&"train") | Some(&"finetune"))
        && !args.iter().any(|a| budget.contains(a))
    {
        args.extend(["--max-steps", "2"]);
    }
    if args.first() == Some(&"train") && !args.contains(&"--out") {
        args.extend(["--out", "@OUT"]);
    }
    if args.first() == Some(&"tune-kernels") {
        // Sizes it accepts are tuned for real (minutes on a software GPU): refusals must come
        // at once, acceptance is seen as still running after 20 s.
        return oracle_within(&args, Duration::from_secs(20), true);
    }
    oracle(&args)
}

const COMMANDS: &[&str] = &[
    "train", "eval", "predict", "generate", "info", "finetune", "merge",
];

const FLAGS: &[&str] = &[
    "--model",
    "--data",
    "--target",
    "--text",
    "--images",
    "--epochs",
    "--batch-size",
    "--lr",
    "--hidden",
    "--layers",
    "--heads",
    "--width",
    "--context",
    "--dropout",
    "--accumulate",
    "--image-size",
    "--crop-padding",
    "--augment",
    "--test-fraction",
    "--val-fraction",
    "--checkpoint-every",
    "--seed",
    "--optimizer",
    "--schedule",
    "--weight-decay",
    "--clip-grad-norm",
    "--patience",
    "--config",
    "--init-from",
    "--tokenizer",
    "--bpe-vocab",
    "--channels",
    "--missing",
    "--encoding",
    "--scaling",
    "--classes",
    "--input",
    "--output",
    "--checkpoint",
    "--prompt",
    "--max-tokens",
    "--temperature",
    "--top-k",
    "--top-p",
    "--base",
    "--lora-rank",
    "--lora-alpha",
    "--lora-dropout",
    "--target-modules",
    "--adapter",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "7",
    "0.5",
    "1.5",
    "1e6",
    "1e-300",
    "nan",
    "inf",
    "-inf",
    "",
    "18446744073709551615",
    "4294967296",
    "100000",
    "abc",
    "3,2",
    "mlp",
    "gpt",
    "lenet",
    "lstm",
    "y",
    "a",
    "@RUN",
    "@GPT",
    "@CSV",
    "@TEXT",
    "@CHAT",
    "@IMAGES",
    "@LINK",
    "@DIR",
    "@OUT",
    "/dev/null",
    "/dev/full",
    "/nonexistent/x",
    "crop,flip",
    "sgd",
    "adam",
];

fn mutate_cli(rng: &mut ChaCha8Rng, base: &[u8], pool: &[Vec<u8>], _: &[&[u8]]) -> Vec<u8> {
    let text = String::from_utf8_lossy(base).into_owned();
    let mut args: Vec<String> = text.split('\0').map(String::from).collect();
    let pick = |rng: &mut ChaCha8Rng, v: &[&str]| v[rng.random_range(0..v.len())].to_string();
    for _ in 0..rng.random_range(1..=3) {
        let n = args.len();
        match rng.random_range(0..6) {
            0 if n > 1 => {
                let i = rng.random_range(1..n);
                args[i] = pick(rng, VALUES);
            }
            1 | 2 => {
                let at = rng.random_range(1..=n.max(1)).min(n);
                let (f, v) = (pick(rng, FLAGS), pick(rng, VALUES));
                args.splice(at..at, [f, v]);
            }
            3 if n > 1 => {
                args.remove(rng.random_range(1..n));
            }
            4 if !args.is_empty() => args[0] = pick(rng, COMMANDS),
            _ => {
                // Take the flags of another pool entry.
                let other =
                    String::from_utf8_lossy(&pool[rng.random_range(0..pool.len())]).into_owned();
                args.extend(other.split('\0').skip(1).map(String::from));
            }
        }
    }
    args.truncate(24);
    args.join("\0").into_bytes()
}

fn line(args: &[&str]) -> Vec<u8> {
    args.join("\0").into_bytes()
}

/// Command lines, seeded with the hostile ones of issue 13.
pub fn cli() -> Target {
    files();
    Target {
        name: "cli",
        seeds: vec![
            line(&[
                "generate",
                "--checkpoint",
                "@GPT",
                "--max-tokens",
                "18446744073709551615",
            ]),
            line(&[
                "generate",
                "--checkpoint",
                "@GPT",
                "--max-tokens",
                "10000000000",
            ]),
            line(&[
                "finetune",
                "--base",
                "@GPT",
                "--data",
                "@CHAT",
                "--lora-rank",
                "18446744073709551615",
            ]),
            line(&["train", "--images", "@IMAGES", "--image-size", "100000"]),
            line(&[
                "train",
                "--images",
                "@IMAGES",
                "--augment",
                "crop",
                "--crop-padding",
                "100000",
            ]),
            line(&["tune-kernels", "--model", "mlp", "--input", "1000000000"]),
            line(&["tune-kernels", "--model", "mlp", "--batch-size", "0"]),
            line(&[
                "train", "--model", "gpt", "--text", "@TEXT", "--layers", "1000000",
            ]),
            line(&["train", "--accumulate", "1000000000", "--epochs", "1"]),
            line(&["train", "--test-fraction", "0", "--epochs", "1"]),
            line(&[
                "train",
                "--data",
                "@CSV",
                "--target",
                "y",
                "--val-fraction",
                "0",
            ]),
            line(&["predict", "@RUN", "--input", "@CSV", "--output", "@LINK"]),
            line(&[
                "predict",
                "@RUN",
                "--input",
                "@CSV",
                "--output",
                "/dev/full",
            ]),
            line(&["predict", "@RUN", "--input", "@CSV", "--output", "@DIR"]),
            line(&["eval", "@RUN", "--data", "@TEXT"]),
            line(&["info", "@GPT"]),
            line(&[
                "train", "--resume", "--out", "@RUN", "--epochs", "6", "--lr", "1e6",
            ]),
            line(&[
                "merge",
                "--base",
                "@GPT",
                "--adapter",
                "@RUN",
                "--out",
                "@OUT",
            ]),
            line(&["train", "--epochs", "--lr"]),
        ],
        dict: &[],
        max_len: 4096,
        limit: Duration::from_secs(150),
        exec: cli_exec,
        mutate: mutate_cli,
    }
}
