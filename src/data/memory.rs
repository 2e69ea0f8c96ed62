//! [`InMemoryDataset`]: every example's features in one row-major `Vec<f32>` of shape
//! `(N, feature_shape...)`, with [`Targets`] beside it. Batching is a gather of rows.

use super::error::{DataError, invalid};
use super::{Batch, Dataset, Targets};
use crate::show;

/// A dataset held in host memory: features `(N, feature_shape...)` row-major, and targets.
///
/// ```
/// use kiln::data::{Dataset, InMemoryDataset, Targets};
/// let ds = InMemoryDataset::new(
///     vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],          // (3, 2)
///     vec![2],
///     Targets::Classes { labels: vec![0, 1, 0], num_classes: 2 },
/// )?;
/// let b = ds.batch(&[2, 0]);
/// assert_eq!(b.x, vec![4.0, 5.0, 0.0, 1.0]);
/// assert_eq!(b.x_shape, vec![2, 2]);
/// assert_eq!(ds.subset(&[1])?.features(), &[2.0, 3.0]);
/// # Ok::<(), kiln::data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryDataset {
    features: Vec<f32>, // (N, feature_shape...)
    feature_shape: Vec<usize>,
    targets: Targets,
    class_names: Option<Vec<String>>,
}

impl InMemoryDataset {
    /// A dataset from row-major features `(N, feature_shape...)` and N targets. Fails when the
    /// lengths disagree or a class label is out of range.
    pub fn new(
        features: Vec<f32>,
        feature_shape: Vec<usize>,
        targets: Targets,
    ) -> Result<Self, DataError> {
        let per = feature_shape.iter().product::<usize>();
        let n = targets_len(&targets)?;
        if features.len() != n * per {
            return invalid(format!(
                "dataset: {} feature values do not fill {} for {n} targets",
                features.len(),
                show::shape(&[&[n][..], &feature_shape].concat())
            ));
        }
        if let Targets::Classes {
            labels,
            num_classes,
        } = &targets
        {
            if let Some(bad) = labels.iter().position(|&l| l as usize >= *num_classes) {
                return invalid(format!(
                    "dataset: label {} of example {bad} is not below num_classes = {num_classes}",
                    labels[bad]
                ));
            }
        }
        Ok(InMemoryDataset {
            features,
            feature_shape,
            targets,
            class_names: None,
        })
    }

    /// Attach class names (one per class; classification only).
    pub fn with_class_names(mut self, names: Vec<String>) -> Result<Self, DataError> {
        match self.num_classes() {
            Some(k) if k == names.len() => {
                self.class_names = Some(names);
                Ok(self)
            }
            Some(k) => invalid(format!(
                "dataset: {} class names for {k} classes",
                names.len()
            )),
            None => invalid("dataset: class names on a regression dataset"),
        }
    }

    /// The same examples viewed with another feature shape of the same size, e.g. `[64]` to
    /// `[1, 8, 8]` for a CNN.
    pub fn reshape(mut self, feature_shape: Vec<usize>) -> Result<Self, DataError> {
        let (old, new) = (
            self.feature_shape.iter().product::<usize>(),
            feature_shape.iter().product::<usize>(),
        );
        if old != new {
            return invalid(format!(
                "dataset: cannot view features of shape {} as {}",
                show::shape(&self.feature_shape),
                show::shape(&feature_shape)
            ));
        }
        self.feature_shape = feature_shape;
        Ok(self)
    }

    /// The examples at `indices` (in that order, repeats allowed) as a new dataset.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DataError> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return invalid(format!(
                "dataset: subset index {bad} is out of range for {} examples",
                self.len()
            ));
        }
        let b = self.batch(indices);
        Ok(InMemoryDataset {
            features: b.x,
            feature_shape: self.feature_shape.clone(),
            targets: b.y,
            class_names: self.class_names.clone(),
        })
    }

    /// Take the dataset apart: (features, feature shape, targets, class names).
    pub fn into_parts(self) -> (Vec<f32>, Vec<usize>, Targets, Option<Vec<String>>) {
        (
            self.features,
            self.feature_shape,
            self.targets,
            self.class_names,
        )
    }

    /// All features, row-major `(N, feature_shape...)`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// The features of example `i`.
    pub fn example(&self, i: usize) -> Option<&[f32]> {
        let per = self.feature_len();
        self.features.get(i * per..(i + 1) * per)
    }

    /// Values per example (the product of the feature shape).
    pub fn feature_len(&self) -> usize {
        self.feature_shape.iter().product()
    }

    /// The targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Class labels, when this is a classification dataset.
    pub fn labels(&self) -> Option<&[u32]> {
        match &self.targets {
            Targets::Classes { labels, .. } => Some(labels),
            Targets::Values { .. } => None,
        }
    }

    /// Number of classes, when this is a classification dataset.
    pub fn num_classes(&self) -> Option<usize> {
        match &self.targets {
            Targets::Classes { num_classes, .. } => Some(*num_classes),
            Targets::Values { .. } => None,
        }
    }

    /// Class names, when they were given.
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Examples per class (classification only).
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let Targets::Classes {
            labels,
            num_classes,
        } = &self.targets
        else {
            return None;
        };
        let mut counts = vec![0; *num_classes];
        for &l in labels {
            counts[l as usize] += 1;
        }
        Some(counts)
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        match &self.targets {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, width } => values.len() / (*width).max(1),
        }
    }

    fn feature_shape(&self) -> Vec<usize> {
        self.feature_shape.clone()
    }

    /// Gathers rows; panics on an index out of range, like slice indexing.
    fn batch(&self, indices: &[usize]) -> Batch {
        let per = self.feature_len();
        let mut x = Vec::with_capacity(indices.len() * per); // (B, feature_shape...)
        for &i in indices {
            x.extend_from_slice(&self.features[i * per..(i + 1) * per]);
        }
        let mut x_shape = vec![indices.len()];
        x_shape.extend_from_slice(&self.feature_shape);
        let y = match &self.targets {
            Targets::Classes {
                labels,
                num_classes,
            } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                num_classes: *num_classes,
            },
            Targets::Values { values, width } => Targets::Values {
                values: indices
                    .iter()
                    .flat_map(|&i| &values[i * width..(i + 1) * width])
                    .copied()
                    .collect(),
                width: *width,
            },
        };
        Batch { x, x_shape, y }
    }
}

fn targets_len(t: &Targets) -> Result<usize, DataError> {
    match t {
        Targets::Classes { labels, .. } => Ok(labels.len()),
        Targets::Values { values, width } => {
            if *width == 0 || values.len() % width != 0 {
                return invalid(format!(
                    "dataset: {} target values are not a whole number of rows of width {width}",
                    values.len()
                ));
            }
            Ok(values.len() / width)
        }
    }
}
