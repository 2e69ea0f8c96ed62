//! Image data: a folder of labelled pictures becomes an [`InMemoryDataset`] of `(C, H, W)`
//! images, with per-channel normalisation and training-time augmentation.
//!
//! - **Layout** ([`ImageFolder`]): `root/<class>/*.{png,jpg,jpeg}` (extension case-insensitive).
//!   Class folders sorted by name are labels `0..k`. Each image is decoded, converted to 1 (grey)
//!   or 3 (RGB) channels, resized with a bilinear (triangle) filter when a size is asked, and
//!   stored as `(C, H, W)` f32 in `[0, 1]` (`x = byte / 255`).
//! - **Normalisation** ([`ChannelNorm`]): `x' = (x - mean_c) / std_c`, with `mean_c` and the
//!   population `std_c` over every pixel of channel `c` of the *training* split (a constant
//!   channel divides by 1). The values travel in checkpoints inside [`ImagePrep`], so evaluation
//!   and prediction apply the very same numbers.
//! - **Augmentation** ([`CropFlip`], training only): pad `p` zeros on every side, crop back to
//!   `H x W` at an offset `(dy, dx)` uniform in `0..=2p`, then flip left-right with probability
//!   1/2: `out[c][y][x] = pad[c][y + dy][x' + dx]` with `x' = W - 1 - x` when flipped. Padding
//!   happens after normalisation, so a padded pixel is the channel mean. The loader applies it
//!   per batch through [`Augmented`] / [`crate::data::Augment`]; evaluation never augments.
//!
//! ```
//! use kiln::data::images::{ChannelNorm, CropFlip};
//! // Normalisation: channel 0 holds [0, 1] (mean 0.5, std 0.5).
//! let n = ChannelNorm::fit(&[0.0, 1.0], (1, 1, 2))?;
//! assert_eq!((n.mean.clone(), n.std.clone()), (vec![0.5], vec![0.5]));
//! // Crop at offset (dy, dx) = (0, 2) with 1 pixel of padding: shifted one column left.
//! let img = [1.0, 2.0, 3.0, 4.0]; // (1, 2, 2)
//! let mut out = [0.0; 4];
//! CropFlip::crop_flip(&img, (1, 2, 2), 1, (0, 2, false), &mut out);
//! assert_eq!(out, [0.0, 0.0, 2.0, 0.0]);
//! # Ok::<(), kiln::data::DataError>(())
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::DataError;
use super::memory::InMemoryDataset;

pub mod folder;
pub mod strong;
pub mod transform;

pub use folder::{Channels, IMAGE_EXTENSIONS, ImageFolder, ImageOptions, decode_image};
pub use strong::Strong;
pub use transform::{Augmented, ChannelNorm, CropFlip};

/// How a model trained on images prepares its input: saved in checkpoints (metadata key
/// `image_prep`, as JSON) so `kiln eval` and `kiln predict` load new pictures exactly as the
/// training pictures were loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePrep {
    /// Channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Image height the model takes.
    pub height: usize,
    /// Image width the model takes.
    pub width: usize,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// Per-channel normalisation fitted on the training split.
    pub norm: ChannelNorm,
}

impl ImagePrep {
    /// The image shape `(C, H, W)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.channels, self.height, self.width)
    }

    /// Loading options for new pictures: this channel count, resized to this size.
    pub fn options(&self) -> Result<ImageOptions, DataError> {
        Ok(ImageOptions {
            size: Some((self.height, self.width)),
            channels: Channels::from_count(self.channels)?,
        })
    }

    /// A labelled folder (`root/<class>/*.png`) loaded and normalised as in training; its class
    /// folders must be among [`class_names`](Self::class_names).
    pub fn load_folder(&self, root: &Path) -> Result<ImageFolder, DataError> {
        let mut f = ImageFolder::load_with_classes(root, &self.options()?, &self.class_names)?;
        f.dataset = self.norm.normalize(f.dataset)?;
        Ok(f)
    }

    /// One picture, loaded and normalised as in training: `(C, H, W)` values.
    pub fn load_file(&self, path: &Path) -> Result<Vec<f32>, DataError> {
        let mut x = folder::load_file(path, &self.options()?)?;
        self.norm.apply(&mut x, self.shape())?;
        Ok(x)
    }

    /// Normalise a dataset of this shape (e.g. a split of the training folder).
    pub fn normalize(&self, ds: InMemoryDataset) -> Result<InMemoryDataset, DataError> {
        self.norm.normalize(ds)
    }
}
