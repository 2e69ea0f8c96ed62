//! Datasets and loading: in-memory tensors of examples, batching, shuffling and preparation.

/// The targets of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices in `0..num_classes`.
    Classes {
        /// One label per example; for a sequence dataset (e.g. [`text::TextDataset`]) `T`
        /// labels per example, row-major `(B, T)`, so `B * T` in a batch.
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

    /// The augmentation a training loader applies to this dataset's batches (none by default;
    /// see [`images::Augmented`]). [`batch`](Dataset::batch) itself never augments, so
    /// evaluation sees the data as it is.
    fn augmentation(&self) -> Option<std::sync::Arc<dyn loader::Augment>> {
        None
    }
}

pub mod chat;
pub mod classes;
pub mod digits;
pub mod error;
pub mod idx;
pub mod images;
pub mod loader;
pub mod memory;
pub mod options;
pub mod preprocess;
pub mod scaler;
pub mod shakespeare_genre;
pub mod split;
pub mod table;
pub mod tabular;
pub mod text;
pub mod token_rows;
pub mod tokenizer;

pub use digits::{DIGITS_LEN, digits, digits_images};
pub use error::{DataError, clip};
pub use idx::{
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, IdxArray, fashion_mnist, load_idx_pair, parse_idx,
    read_maybe_gz,
};
pub use loader::{Augment, DataLoader, Epoch, augment_seed};
pub use memory::InMemoryDataset;
pub use options::{
    CategoricalEncoding, HeaderMode, Impute, MissingPolicy, Scaling, TabularOptions, TaskKind,
};
pub use preprocess::{ColumnEncoding, FeatureColumn, Preprocessor, TargetEncoding, Unseen};
pub use scaler::Scaler;
pub use split::{
    SplitFractions, SplitIndices, permutation, shuffle, shuffled_split, stratified_split,
};
pub use table::{ColumnKind, MISSING_MARKERS, MOSTLY_NUMERIC, Table, is_missing, parse_number};
pub use tabular::{MAX_AUTO_CLASSES, TabularSplit, load_tabular, prepare_table};
