//! [`Table`]: a CSV file read as text, with its header decided, ragged rows refused and every
//! row's 1-based line number kept for error messages; and [`ColumnKind`] inference.
//!
//! Text that is not UTF-8 (a Latin-1 file, say) is read with `U+FFFD` in place of each bad byte,
//! the same way at training and at predict time, so categories still match.
//!
//! **Missing values** are the fields (after trimming spaces) in [`MISSING_MARKERS`]: empty, `NA`,
//! `N/A`, `NaN`, `nan` and `?`.
//!
//! **Header detection** ([`HeaderMode::Auto`]): the first row is a header when
//! 1. one of its fields is text (not a number, not missing) while every other value of that
//!    column is a number (e.g. `bill_length_mm` above `39.1`), or
//! 2. all of its fields are text, all different, and none of them appears again in its column
//!    (a first row of category values usually repeats lower down).
//!
//! Otherwise the first row is data and the columns are named `column1`, `column2`, ...
//!
//! **Column kinds**: a column is numeric when every non-missing value parses as a finite number,
//! and categorical when fewer than [`MOSTLY_NUMERIC`] of them do. In between (mostly numbers with
//! some stray text) it is an error naming the first stray value's line and column.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{DataError, format_err};
use super::options::HeaderMode;

/// Fields read as missing values (compared after trimming spaces).
pub const MISSING_MARKERS: &[&str] = &["", "NA", "N/A", "NaN", "nan", "?"];

/// A column whose non-missing values are numbers in at least this share, but not all, is taken
/// to hold stray text by mistake and is reported as an error rather than read as categories.
pub const MOSTLY_NUMERIC: f64 = 0.9;

/// True when `v` marks a missing value.
pub fn is_missing(v: &str) -> bool {
    MISSING_MARKERS.contains(&v.trim())
}

/// `v` as a finite number, or `None` (text, missing, `inf`).
pub fn parse_number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Whether a column holds numbers or categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColumnKind {
    /// Every non-missing value is a number (a column with no values at all counts as numeric).
    Numeric,
    /// Text categories.
    Categorical,
}

/// A CSV file as text: column names and rows of fields (trimmed), with line numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The file, as named in errors.
    pub file: String,
    /// Column names (from the header, or `column1`, ... when there is none).
    pub columns: Vec<String>,
    /// True when the first row was a header.
    pub header_present: bool,
    /// The data rows, each with `columns.len()` fields.
    pub rows: Vec<Vec<String>>,
    /// The 1-based line where each row starts.
    pub lines: Vec<usize>,
}

impl Table {
    /// Read a CSV file (quoted fields allowed; spaces around fields trimmed; blank lines skipped).
    pub fn read_csv(path: &Path, header: HeaderMode) -> Result<Table, DataError> {
        let file = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| DataError::Io {
            path: file.clone(),
            source,
        })?;
        Self::from_reader(f, &file, header)
    }

    /// Parse CSV text; `file` names it in errors.
    pub fn from_csv_str(text: &str, file: &str, header: HeaderMode) -> Result<Table, DataError> {
        Self::from_reader(text.as_bytes(), file, header)
    }

    /// A table from rows already split into fields; lines are numbered as if the rows followed a
    /// header line.
    pub fn from_rows(
        file: &str,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<Table, DataError> {
        let lines: Vec<usize> = (0..rows.len()).map(|i| i + 2).collect();
        check_ragged(file, columns.len(), &rows, &lines)?;
        Ok(Table {
            file: file.to_string(),
            columns,
            header_present: true,
            rows,
            lines,
        })
    }

    fn from_reader<R: Read>(mut r: R, file: &str, header: HeaderMode) -> Result<Table, DataError> {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(|source| DataError::Io {
            path: file.to_string(),
            source,
        })?;
        // The csv crate's own line count skips blank lines; count them from byte offsets instead.
        let newlines: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect();
        // A record's offset can point at blank lines before it (which the reader skips).
        let line_of = |byte: u64| {
            let mut at = byte as usize;
            while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
                at += 1;
            }
            newlines.partition_point(|&n| n < at) + 1
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(&bytes[..]);
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for rec in rdr.byte_records() {
            // Reading from memory with `flexible`, the only error left would be I/O.
            let rec = rec.or_else(|e| format_err(file, e.to_string()))?;
            // A line of only spaces is blank too (the csv crate skips empty lines itself).
            if rec.len() <= 1 && rec.iter().all(|f| f.is_empty()) {
                continue;
            }
            lines.push(rec.position().map_or(rows.len() + 1, |p| line_of(p.byte())));
            rows.push(
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect::<Vec<_>>(),
            );
        }
        if rows.is_empty() {
            return format_err(file, "no rows: the file is empty");
        }
        check_ragged(file, rows[0].len(), &rows[1..], &lines[1..])?;
        let has_header = match header {
            HeaderMode::Present => true,
            HeaderMode::Absent => false,
            HeaderMode::Auto => detect_header(&rows),
        };
        let columns = if has_header {
            let names: Vec<String> = rows[0]
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    if n.is_empty() {
                        format!("column{}", j + 1)
                    } else {
                        n.clone()
                    }
                })
                .collect();
            let mut seen = HashSet::new();
            if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                return format_err(
                    file,
                    format!("line {}: the column name {dup:?} appears twice", lines[0]),
                );
            }
            rows.remove(0);
            lines.remove(0);
            names
        } else {
            (1..=rows[0].len()).map(|j| format!("column{j}")).collect()
        };
        Ok(Table {
            file: file.to_string(),
            columns,
            header_present: has_header,
            rows,
            lines,
        })
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The index of column `name`, or an error listing the columns there are.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DataError::UnknownColumn {
                file: self.file.clone(),
                column: name.to_string(),
                available: self.columns.clone(),
            })
    }

    /// The rows at `indices`, in that order, with their line numbers.
    pub fn select(&self, indices: &[usize]) -> Table {
        Table {
            file: self.file.clone(),
            columns: self.columns.clone(),
            header_present: self.header_present,
            rows: indices.iter().map(|&i| self.rows[i].clone()).collect(),
            lines: indices.iter().map(|&i| self.lines[i]).collect(),
        }
    }

    /// Missing values in column `col`.
    pub fn missing_count(&self, col: usize) -> usize {
        self.rows.iter().filter(|r| is_missing(&r[col])).count()
    }

    /// Numeric or categorical (see the module note); an error for a mostly numeric column with
    /// stray text, naming the first stray value.
    pub fn infer_kind(&self, col: usize) -> Result<ColumnKind, DataError> {
        let (mut present, mut numeric) = (0usize, 0usize);
        let mut first_text = None;
        for (i, r) in self.rows.iter().enumerate() {
            let v = &r[col];
            if is_missing(v) {
                continue;
            }
            present += 1;
            if parse_number(v).is_some() {
                numeric += 1;
            } else if first_text.is_none() {
                first_text = Some(i);
            }
        }
        match first_text {
            None => Ok(ColumnKind::Numeric),
            Some(_) if (numeric as f64) < MOSTLY_NUMERIC * present as f64 => {
                Ok(ColumnKind::Categorical)
            }
            Some(i) => {
                let value = self.rows[i][col].clone();
                Err(DataError::Value {
                    file: self.file.clone(),
                    line: self.lines[i],
                    column: self.columns[col].clone(),
                    msg: format!(
                        "expected a number, found {} ({numeric} of the column's {present} \
                         values are numbers; fix this one, or write NA if it is missing)",
                        super::error::clip(&value)
                    ),
                    value,
                })
            }
        }
    }
}

fn check_ragged(
    file: &str,
    expected: usize,
    rows: &[Vec<String>],
    lines: &[usize],
) -> Result<(), DataError> {
    let bad: Vec<(usize, usize)> = rows
        .iter()
        .zip(lines)
        .filter(|(r, _)| r.len() != expected)
        .map(|(r, &l)| (l, r.len()))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(DataError::Ragged {
        file: file.to_string(),
        expected,
        count: bad.len(),
        rows: bad.into_iter().take(5).collect(),
    })
}

/// The header rule of the module note.
fn detect_header(rows: &[Vec<String>]) -> bool {
    let first = &rows[0];
    let below = &rows[1..];
    let is_text = |v: &str| !is_missing(v) && parse_number(v).is_none();
    let numeric_below = |j: usize| {
        let mut any = false;
        for r in below {
            if is_missing(&r[j]) {
                continue;
            }
            if parse_number(&r[j]).is_none() {
                return false;
            }
            any = true;
        }
        any
    };
    if (0..first.len()).any(|j| is_text(&first[j]) && numeric_below(j)) {
        return true;
    }
    let unique = first.iter().collect::<HashSet<_>>().len() == first.len();
    let all_text = first.iter().all(|v| is_text(v));
    let recurs = (0..first.len()).any(|j| below.iter().any(|r| r[j] == first[j]));
    all_text && unique && !recurs
}
