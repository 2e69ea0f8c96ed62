//! The digits dataset, embedded in the binary: 1,797 handwritten digits of 8x8 pixels with values
//! 0..16, ten classes. It needs no download, so it is kiln's default dataset.

use std::io::Read;

use flate2::read::GzDecoder;

use super::Targets;
use super::error::{DataError, format_err};
use super::memory::InMemoryDataset;

/// `data/digits.csv.gz`: 1,797 rows of 64 pixel values (0..16) and the label (0..9), no header.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
const NAME: &str = "digits.csv.gz (embedded)";

/// Examples in the digits dataset.
pub const DIGITS_LEN: usize = 1797;

/// The digits dataset: features `(1797, 64)` scaled to [0, 1] (pixel / 16), labels 0..9, classes
/// named `"0"`..`"9"`.
///
/// For a CNN, use [`digits_images`] (feature shape `[1, 8, 8]`) or
/// `digits()?.reshape(vec![1, 8, 8])`: the 64 values are the image row by row.
///
/// Source and licence: scikit-learn's `sklearn/datasets/data/digits.csv.gz` (BSD-3-Clause),
/// originally the UCI Optical Recognition of Handwritten Digits data set, CC BY 4.0
/// (E. Alpaydin and C. Kaynak, 1998).
///
/// ```
/// use kiln::data::{digits, Dataset};
/// let ds = digits()?;
/// assert_eq!((ds.len(), ds.feature_shape(), ds.num_classes()), (1797, vec![64], Some(10)));
/// # Ok::<(), kiln::data::DataError>(())
/// ```
pub fn digits() -> Result<InMemoryDataset, DataError> {
    let mut text = String::new();
    GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .or_else(|e| format_err(NAME, format!("cannot decompress: {e}")))?;
    let mut features = Vec::with_capacity(DIGITS_LEN * 64); // (N, 64)
    let mut labels = Vec::with_capacity(DIGITS_LEN);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 65 {
            return format_err(
                NAME,
                format!("line {}: expected 65 fields, found {}", i + 1, fields.len()),
            );
        }
        for (j, f) in fields.iter().enumerate() {
            let max = if j == 64 { 9 } else { 16 };
            let v = match f.parse::<u32>() {
                Ok(v) if v <= max => v,
                _ => {
                    return Err(DataError::Value {
                        file: NAME.into(),
                        line: i + 1,
                        column: if j == 64 {
                            "label".into()
                        } else {
                            format!("pixel{j}")
                        },
                        value: f.to_string(),
                        msg: format!("expected an integer in 0..={max}, found {f:?}"),
                    });
                }
            };
            if j == 64 {
                labels.push(v);
            } else {
                features.push(v as f32 / 16.0);
            }
        }
    }
    if labels.len() != DIGITS_LEN {
        return format_err(
            NAME,
            format!("expected {DIGITS_LEN} rows, found {}", labels.len()),
        );
    }
    InMemoryDataset::new(
        features,
        vec![64],
        Targets::Classes {
            labels,
            num_classes: 10,
        },
    )?
    .with_class_names((0..10).map(|d| d.to_string()).collect())
}

/// [`digits`] with feature shape `[1, 8, 8]` (channels, height, width), for convolutions.
pub fn digits_images() -> Result<InMemoryDataset, DataError> {
    digits()?.reshape(vec![1, 8, 8])
}
