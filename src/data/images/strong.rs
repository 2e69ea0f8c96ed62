//! Strong augmentation for consistency training ([`Strong`]): what FixMatch applies to an
//! unlabelled image before asking the model to agree with its prediction on a weakly augmented
//! copy.
//!
//! For each `(C, H, W)` image, in this order, from a ChaCha8 stream seeded by the batch seed:
//!
//! ```text
//! shift:    random crop of the image padded by `shift` pixels      (CropFlip, no flip)
//! contrast: x' = m + s (x - m),  m = the image's mean, s uniform in [1 - contrast, 1 + contrast]
//! noise:    x' = x + u,          u uniform in [-noise, noise] per pixel
//! cutout:   a `cutout x cutout` square at a uniform position set to 0 (the channel mean
//!           after normalisation), clipped at the borders
//! ```

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::Batch;
use super::super::loader::Augment;
use super::transform::CropFlip;

/// Strong augmentation of `(C, H, W)` images (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strong {
    /// Image shape `(C, H, W)`.
    pub shape: (usize, usize, usize),
    /// Largest shift in pixels (the crop's padding).
    pub shift: usize,
    /// Contrast change: the factor is uniform in `[1 - contrast, 1 + contrast]`.
    pub contrast: f32,
    /// Pixel noise amplitude (uniform in `[-noise, noise]`).
    pub noise: f32,
    /// Side of the cut-out square in pixels (0: none).
    pub cutout: usize,
}

impl Strong {
    /// The default strong augmentation for images of `shape`: shift by up to 1/8 of the
    /// side (at least 1 pixel), contrast +-40 %, noise 0.2, a cut-out square of half the side.
    pub fn for_shape(shape: (usize, usize, usize)) -> Strong {
        let side = shape.1.min(shape.2);
        Strong {
            shape,
            shift: (side / 8).max(1),
            contrast: 0.4,
            noise: 0.2,
            cutout: side / 2,
        }
    }
}

impl Augment for Strong {
    fn augment(&self, batch: &mut Batch, seed: u64) {
        let (c, h, w) = self.shape;
        let per = c * h * w;
        if per == 0 || !batch.x.len().is_multiple_of(per) {
            return; // not images of this shape: the caller checks the shape
        }
        let crop = CropFlip {
            shape: self.shape,
            padding: self.shift,
            flip: false,
        };
        crop.augment(batch, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5354_524f_4e47); // "STRONG"
        let mut unit = || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32; // [0, 1)
        for img in batch.x.chunks_exact_mut(per) {
            let mean = img.iter().sum::<f32>() / per as f32;
            let s = 1.0 + self.contrast * (2.0 * unit() - 1.0);
            for v in img.iter_mut() {
                *v = mean + s * (*v - mean) + self.noise * (2.0 * unit() - 1.0);
            }
            if self.cutout > 0 {
                let y0 = (unit() * h as f32) as usize;
                let x0 = (unit() * w as f32) as usize;
                for ch in 0..c {
                    for y in y0..(y0 + self.cutout).min(h) {
                        let row = (ch * h + y) * w;
                        img[row + x0..row + (x0 + self.cutout).min(w)].fill(0.0);
                    }
                }
            }
        }
    }
}
