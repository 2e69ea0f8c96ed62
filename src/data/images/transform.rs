//! Transforms of `(C, H, W)` images: per-channel normalisation ([`ChannelNorm`]) and the
//! training augmentation random crop + horizontal flip ([`CropFlip`]), which a [`DataLoader`]
//! applies through the [`Augmented`] dataset wrapper.
//!
//! [`DataLoader`]: crate::data::DataLoader

use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::super::error::{DataError, invalid};
use super::super::loader::Augment;
use super::super::memory::InMemoryDataset;
use super::super::{Batch, Dataset};

/// Per-channel normalisation `x' = (x - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelNorm {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (never 0).
    pub std: Vec<f32>,
}

impl ChannelNorm {
    /// Given values (e.g. ImageNet's); one mean and one positive std per channel.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<ChannelNorm, DataError> {
        if mean.len() != std.len() || mean.is_empty() {
            return invalid(format!(
                "image normalisation: {} means and {} stds; give one of each per channel",
                mean.len(),
                std.len()
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return invalid(format!(
                "image normalisation: std {s} is not a positive number"
            ));
        }
        Ok(ChannelNorm { mean, std })
    }

    /// Fit on images `(N, C, H, W)` (row-major, `shape` = `(C, H, W)`): mean and population std
    /// of every channel over all its pixels, summed in f64. A constant channel gets std 1.
    pub fn fit(features: &[f32], shape: (usize, usize, usize)) -> Result<ChannelNorm, DataError> {
        let (c, h, w) = shape;
        let plane = h * w;
        if c == 0 || plane == 0 || features.is_empty() || !features.len().is_multiple_of(c * plane)
        {
            return invalid(format!(
                "image normalisation: {} values are not a whole number of ({c}, {h}, {w}) images",
                features.len()
            ));
        }
        let n = features.len() / (c * plane);
        let count = (n * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let pixels = || {
                (0..n).flat_map(move |i| {
                    features[(i * c + ch) * plane..(i * c + ch + 1) * plane]
                        .iter()
                        .map(|&v| v as f64)
                })
            };
            let m = pixels().sum::<f64>() / count;
            let var = pixels().map(|v| (v - m) * (v - m)).sum::<f64>() / count;
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s > 1e-12 && s.is_finite() {
                s as f32
            } else {
                1.0
            });
        }
        Ok(ChannelNorm { mean, std })
    }

    /// Fit on a dataset of `(C, H, W)` images.
    pub fn fit_dataset(ds: &InMemoryDataset) -> Result<ChannelNorm, DataError> {
        ChannelNorm::fit(ds.features(), image_shape(&ds.feature_shape())?)
    }

    /// Normalise images `(N, C, H, W)` in place.
    pub fn apply(
        &self,
        features: &mut [f32],
        shape: (usize, usize, usize),
    ) -> Result<(), DataError> {
        let (c, h, w) = shape;
        if c != self.mean.len() {
            return invalid(format!(
                "image normalisation: fitted on {} channels, images have {c}",
                self.mean.len()
            ));
        }
        let plane = h * w;
        for (i, v) in features.iter_mut().enumerate() {
            let ch = (i / plane.max(1)) % c;
            *v = (*v - self.mean[ch]) / self.std[ch];
        }
        Ok(())
    }

    /// The dataset with its images normalised.
    pub fn normalize(&self, ds: InMemoryDataset) -> Result<InMemoryDataset, DataError> {
        let shape = image_shape(&ds.feature_shape())?;
        let (mut x, fs, targets, names) = ds.into_parts();
        self.apply(&mut x, shape)?;
        let out = InMemoryDataset::new(x, fs, targets)?;
        match names {
            Some(n) => out.with_class_names(n),
            None => Ok(out),
        }
    }
}

fn image_shape(s: &[usize]) -> Result<(usize, usize, usize), DataError> {
    match *s {
        [c, h, w] => Ok((c, h, w)),
        _ => invalid(format!(
            "images: expected examples of shape (C, H, W), found {s:?}"
        )),
    }
}

/// Random crop with zero padding and random horizontal flip of `(C, H, W)` images.
///
/// For each example, from a ChaCha8 stream seeded by the batch seed: `dy`, `dx` uniform in
/// `0..=2 * padding` (no crop when `padding` is 0), then a flip with probability 1/2 (when
/// `flip`). See [`CropFlip::crop_flip`] for the exact formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropFlip {
    /// Image shape `(C, H, W)`.
    pub shape: (usize, usize, usize),
    /// Zero padding per side for the random crop (0: no crop).
    pub padding: usize,
    /// Flip left-right with probability 1/2.
    pub flip: bool,
}

/// One example's draw: `(dy, dx, flipped)`.
pub type CropFlipDraw = (usize, usize, bool);

impl CropFlip {
    /// The draws for a batch of `n` examples under `seed`: uses only ChaCha8's raw output
    /// (bounded by a 128-bit multiply), so it never depends on `rand`'s sampling code.
    pub fn draws(&self, seed: u64, n: usize) -> Vec<CropFlipDraw> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let span = 2 * self.padding as u64 + 1;
        let mut below = |k: u64| ((rng.next_u64() as u128 * k as u128) >> 64) as usize;
        (0..n)
            .map(|_| {
                let (dy, dx) = if self.padding > 0 {
                    (below(span), below(span))
                } else {
                    (0, 0)
                };
                let flip = self.flip && below(2) == 1;
                (dy, dx, flip)
            })
            .collect()
    }

    /// Crop-and-flip one image `src` `(C, H, W)` into `dst`: with `p = padding`,
    /// `dst[c][y][x] = src[c][y + dy - p][sx + dx - p]` (0 outside the image), where
    /// `sx = W - 1 - x` when flipped, else `x`.
    pub fn crop_flip(
        src: &[f32],
        (c, h, w): (usize, usize, usize),
        padding: usize,
        (dy, dx, flip): CropFlipDraw,
        dst: &mut [f32],
    ) {
        for ch in 0..c {
            for y in 0..h {
                let sy = (y + dy).checked_sub(padding).filter(|&v| v < h);
                for x in 0..w {
                    let fx = if flip { w - 1 - x } else { x };
                    let sx = (fx + dx).checked_sub(padding).filter(|&v| v < w);
                    dst[(ch * h + y) * w + x] = match (sy, sx) {
                        (Some(sy), Some(sx)) => src[(ch * h + sy) * w + sx],
                        _ => 0.0,
                    };
                }
            }
        }
    }
}

impl Augment for CropFlip {
    fn augment(&self, batch: &mut Batch, seed: u64) {
        let (c, h, w) = self.shape;
        let per = c * h * w;
        if per == 0 || !batch.x.len().is_multiple_of(per) {
            return; // not images of this shape: the loader's dataset check prevents it
        }
        let n = batch.x.len() / per;
        let draws = self.draws(seed, n);
        let mut out = vec![0.0f32; per];
        for (i, d) in draws.into_iter().enumerate() {
            let img = &mut batch.x[i * per..(i + 1) * per];
            CropFlip::crop_flip(img, self.shape, self.padding, d, &mut out);
            img.copy_from_slice(&out);
        }
    }
}

/// A dataset whose training loaders augment its batches: [`batch`](Dataset::batch) passes
/// through unchanged (so evaluating it never augments), and
/// [`augmentation`](Dataset::augmentation) hands the trainer the [`Augment`] to apply.
pub struct Augmented {
    inner: Arc<dyn Dataset>,
    augment: Arc<dyn Augment>,
}

impl Augmented {
    /// `inner` with `augment` for training; the augmentation must fit `inner`'s examples.
    pub fn new(inner: Arc<dyn Dataset>, augment: CropFlip) -> Result<Augmented, DataError> {
        let (c, h, w) = augment.shape;
        if inner.feature_shape().iter().product::<usize>() != c * h * w {
            return invalid(format!(
                "augmentation: images ({c}, {h}, {w}) do not match examples of shape {:?}",
                inner.feature_shape()
            ));
        }
        Ok(Augmented {
            inner,
            augment: Arc::new(augment),
        })
    }
}

impl std::fmt::Debug for Augmented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Augmented")
            .field("examples", &self.inner.len())
            .finish()
    }
}

impl Dataset for Augmented {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn feature_shape(&self) -> Vec<usize> {
        self.inner.feature_shape()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        self.inner.batch(indices)
    }

    fn augmentation(&self) -> Option<Arc<dyn Augment>> {
        Some(Arc::clone(&self.augment))
    }
}
