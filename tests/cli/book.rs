//! The book (`docs/book/`): every `kiln ...` line of every ```sh block runs, in order per
//! chapter, in one scratch directory per chapter, with the `kiln` built for this test; a
//! failure names the chapter file and the line. Lines that are not `kiln` commands (comments,
//! blank lines) are skipped; a `\` at the end of a line joins the next one.
//!
//! The book keeps its `sh` commands small (`--epochs 1`, `--max-steps 2`, `--quick` filtered
//! benches) so this test stays cheap. Anything too slow for CI is shown in a ```text block
//! (with the output it printed) and is not run here. The Rust blocks are doctests
//! (`src/lib.rs`, `book_*` modules).

use std::path::Path;

use crate::cli_util::{kiln_in, scratch_in};

/// The ```sh blocks of a Markdown text: (1-based line, command) per `kiln` command.
fn sh_commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut cmd) = match pending.take() {
            Some((n, c)) => (n, c + " " + t),
            None if t.starts_with("kiln ") => (i + 1, t.to_string()),
            None => continue,
        };
        if cmd.ends_with('\\') {
            cmd.pop();
            pending = Some((start, cmd));
        } else {
            out.push((start, cmd));
        }
    }
    out
}

/// Shell-like words: spaces split, double quotes group, a `#` word starts a comment.
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in cmd.chars() {
        match c {
            '"' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            '#' if !quoted && !any => return out,
            _ => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[test]
fn words_split_like_a_shell() {
    assert_eq!(
        words(r#"kiln bench --filter "matmul 256"   # a comment"#),
        ["kiln", "bench", "--filter", "matmul 256"]
    );
}

#[test]
fn sh_blocks_give_their_kiln_lines() {
    let md = "x\n```sh\nkiln a \\\n  --b\n# c\n```\n```text\nkiln no\n```\n";
    let cmds = sh_commands(md);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0].0, 3);
    assert_eq!(words(&cmds[0].1), ["kiln", "a", "--b"]);
}

#[test]
fn every_sh_command_of_the_book_runs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/book");
    let mut chapters: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    let mut ran = 0;
    for path in &chapters {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let cmds = sh_commands(&text);
        if cmds.is_empty() {
            continue;
        }
        let scratch = scratch_in("book", name.trim_end_matches(".md"));
        for (line, cmd) in cmds {
            let w = words(&cmd);
            let args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
            let (ok, stdout, stderr) = kiln_in(Some(&scratch), &args);
            assert!(
                ok,
                "docs/book/{name}:{line}: `{cmd}` failed\n{stdout}\n{stderr}"
            );
            ran += 1;
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    assert!(ran >= 5, "only {ran} book commands found");
}
