//! [`DataError`]: what went wrong while reading or preparing data, naming the file, the 1-based
//! line (as a text editor shows it), the column and the offending value wherever there is one.

use std::fmt::Write as _;

/// An error from reading or preparing a dataset.
///
/// Every variant that comes from a file names it; those that come from one value also name the
/// 1-based line and the column, so the message can be acted on without a debugger:
///
/// ```text
/// penguins.csv line 17, column bill_length_mm: expected a number, found "abc"
/// ```
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// One value that does not fit its column (stray text in a numeric column, an unseen
    /// category, a missing value where none is allowed).
    #[error("{file} line {line}, column {column}: {msg}")]
    Value {
        /// The file (or a name for in-memory text).
        file: String,
        /// 1-based line of the value.
        line: usize,
        /// Column name.
        column: String,
        /// The offending value, as written in the file.
        value: String,
        /// What was wrong, quoting the value.
        msg: String,
    },
    /// Rows with a different number of fields from the first row.
    #[error("{file}: {}", ragged_message(*.expected, .rows, *.count))]
    Ragged {
        /// The file.
        file: String,
        /// Fields per row, as in the first row.
        expected: usize,
        /// The first few bad rows: (1-based line, fields found).
        rows: Vec<(usize, usize)>,
        /// How many rows are bad in all.
        count: usize,
    },
    /// A column name that is not in the file.
    #[error("{file}: no column named {}; the columns are: {}", clip(column), list_columns(.available))]
    UnknownColumn {
        /// The file.
        file: String,
        /// The name asked for.
        column: String,
        /// The names the file has.
        available: Vec<String>,
    },
    /// A file that is not in the expected format (bad quoting, bad magic number, truncated).
    #[error("{file}: {msg}")]
    Format {
        /// The file.
        file: String,
        /// What was wrong.
        msg: String,
    },
    /// A dataset that is not installed where it was looked for.
    #[error(
        "{name} not found: looked in {searched} for {}.\nInstall it with `{install}` \
         (it goes to {default_dir}), or pass the directory that holds these files",
        .missing.join(", ")
    )]
    NotInstalled {
        /// The dataset.
        name: String,
        /// The directory searched.
        searched: String,
        /// The files that were not there (each also tried with `.gz`).
        missing: Vec<String>,
        /// The command that installs it.
        install: String,
        /// Where that command puts it.
        default_dir: String,
    },
    /// An option or argument that makes no sense (bad split fractions, an unknown option name,
    /// an empty dataset).
    #[error("{0}")]
    Invalid(String),
}

fn ragged_message(expected: usize, rows: &[(usize, usize)], count: usize) -> String {
    let mut s = format!(
        "{count} row{} with the wrong number of fields (expected {expected}, as in the first row): ",
        if count == 1 { "" } else { "s" }
    );
    for (i, (line, found)) in rows.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}line {line} has {found}");
    }
    if count > rows.len() {
        let _ = write!(s, ", and {} more", count - rows.len());
    }
    s
}

/// Shorthand for an [`DataError::Invalid`] result.
/// The longest value (in characters) an error message quotes whole.
pub const CLIP_CHARS: usize = 80;

/// `v` quoted for an error message: whole when short, else its first [`CLIP_CHARS`]
/// characters, `...` and its length (a 5 MB CSV field must not fill the terminal).
///
/// ```
/// use kiln::data::clip;
/// assert_eq!(clip("abc"), "\"abc\"");
/// assert_eq!(clip(&"x".repeat(100)), format!("\"{}...\" (100 characters)", "x".repeat(80)));
/// ```
pub fn clip(v: &str) -> String {
    match v.char_indices().nth(CLIP_CHARS) {
        None => format!("{v:?}"),
        Some((end, _)) => format!(
            "{:?} ({} characters)",
            format!("{}...", &v[..end]),
            v.chars().count()
        ),
    }
}

/// At most 20 column names (each clipped), then how many more there are.
fn list_columns(cols: &[String]) -> String {
    let shown: Vec<String> = cols
        .iter()
        .take(20)
        .map(|c| {
            if c.chars().count() > CLIP_CHARS {
                clip(c)
            } else {
                c.clone()
            }
        })
        .collect();
    let mut s = shown.join(", ");
    if cols.len() > shown.len() {
        let _ = write!(s, ", and {} more", cols.len() - shown.len());
    }
    s
}

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, DataError> {
    Err(DataError::Invalid(msg.into()))
}

/// Shorthand for an [`DataError::Format`] result.
pub(crate) fn format_err<T>(
    file: impl Into<String>,
    msg: impl Into<String>,
) -> Result<T, DataError> {
    Err(DataError::Format {
        file: file.into(),
        msg: msg.into(),
    })
}
