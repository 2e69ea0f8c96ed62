//! Datasets and loading: in-memory tensors of examples, batching, shuffling and preparation.

/// The targets of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices in `0..num_classes`.
    Classes {
        /// One label per example.
        labels: Vec<u32>,
        /// Number of classes.
        num_classes: usize,
    },
    /// Real-valued targets, `width` per example (row-major).
    Values {
        /// `len * width` values.
        values: Vec<f32>,
        /// Values per example.
        width: usize,
    },
}

/// One batch on the host, ready to upload: features `(B, feature_shape...)` and targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Features, row-major.
    pub x: Vec<f32>,
    /// Shape of `x`, batch first.
    pub x_shape: Vec<usize>,
    /// Targets of the same examples, in the same order.
    pub y: Targets,
}

/// A source of examples addressable by index.
pub trait Dataset: Send + Sync {
    /// Number of examples.
    fn len(&self) -> usize;

    /// True when there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one example's features (e.g. `[64]` or `[1, 8, 8]`).
    fn feature_shape(&self) -> Vec<usize>;

    /// Gather the examples at `indices` into one batch.
    fn batch(&self, indices: &[usize]) -> Batch;
}
