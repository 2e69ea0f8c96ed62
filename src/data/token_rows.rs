//! [`TokenRows`]: labelled sequences of token ids of different lengths (tokenised sentences for
//! a text classifier). A batch pads its rows with [`TokenRows::pad`] up to its longest row, so
//! a model that masks the pad id (kiln's `BertClassifier` does) sees each row as if alone.
//!
//! ```
//! use kiln::data::{Dataset, Targets, token_rows::TokenRows};
//! let d = TokenRows::new(vec![vec![101, 7, 102], vec![101, 102]], vec![1, 0], 2, 0)?;
//! let b = d.batch(&[1, 0]);
//! assert_eq!(b.x_shape, [2, 3]);
//! assert_eq!(b.x, [101.0, 102.0, 0.0, 101.0, 7.0, 102.0]); // ids as f32, padded with 0
//! assert!(matches!(b.y, Targets::Classes { ref labels, .. } if labels == &[0, 1]));
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use super::{Batch, DataError, Dataset, Targets};

/// Token-id rows with a class label each. See the module notes.
#[derive(Debug, Clone)]
pub struct TokenRows {
    rows: Vec<Vec<u32>>,
    labels: Vec<u32>,
    classes: usize,
    /// The id that pads short rows.
    pub pad: u32,
}

impl TokenRows {
    /// Rows of ids with `labels` (one per row, each below `classes`), padded with `pad`.
    /// Errors on a count mismatch, an empty row, a label out of range, or an id that f32 cannot
    /// hold exactly (above 2^24).
    pub fn new(
        rows: Vec<Vec<u32>>,
        labels: Vec<u32>,
        classes: usize,
        pad: u32,
    ) -> Result<TokenRows, DataError> {
        let bad = |m: String| Err(DataError::Invalid(m));
        if rows.len() != labels.len() {
            return bad(format!("{} rows but {} labels", rows.len(), labels.len()));
        }
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return bad(format!("row {i} has no token"));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
            return bad(format!(
                "row {i} has label {} but there are {classes} classes",
                labels[i]
            ));
        }
        if let Some(i) = rows.iter().position(|r| r.iter().any(|&t| t > 1 << 24)) {
            return bad(format!("row {i} has a token id above 2^24"));
        }
        Ok(TokenRows {
            rows,
            labels,
            classes,
            pad,
        })
    }
}

impl Dataset for TokenRows {
    fn len(&self) -> usize {
        self.rows.len()
    }

    /// The longest row's length.
    fn feature_shape(&self) -> Vec<usize> {
        vec![self.rows.iter().map(Vec::len).max().unwrap_or(0)]
    }

    /// Ids (B, T) as f32 with T the longest row of the batch; class labels (B).
    fn batch(&self, indices: &[usize]) -> Batch {
        let t = indices
            .iter()
            .map(|&i| self.rows[i].len())
            .max()
            .unwrap_or(0);
        let mut x = vec![self.pad as f32; indices.len() * t];
        for (r, &i) in indices.iter().enumerate() {
            for (c, &id) in self.rows[i].iter().enumerate() {
                x[r * t + c] = id as f32;
            }
        }
        Batch {
            x,
            x_shape: vec![indices.len(), t],
            y: Targets::Classes {
                labels: indices.iter().map(|&i| self.labels[i]).collect(),
                num_classes: self.classes,
            },
        }
    }
}
