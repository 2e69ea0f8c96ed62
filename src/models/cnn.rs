//! Convolutional image classifiers: [`LeNet`], a small [`Vgg`] and a narrow [`ResNet18`].
//!
//! Each is built for an input shape (C, H, W) and a number of classes, and its forward takes
//! images (B, C, H, W) or flat rows (B, C*H*W) (reshaped to images as a view), giving logits
//! (B, classes). Parameter names follow torchvision (`features.0.weight`, `classifier.4.bias`,
//! `layer1.0.conv1.weight`, `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`).
//!
//! Spatial sizes (floor division throughout): a 3x3 convolution with padding 1 keeps H x W, a
//! 5x5 one with padding 2 too, without padding it takes 4 off; a 2x2 max-pool or a stride-2
//! convolution halves it. LeNet on 28x28: 28 -> 28 -> 14 -> 10 -> 5, so 16*5*5 = 400 features
//! reach the classifier (61,706 parameters for 10 classes, the classic LeNet-5 count).
//!
//! ```
//! use kiln::{Tensor, models::LeNet, nn::Module};
//! let net = LeNet::new_on(&kiln::device()?, (1, 8, 8), 10)?;
//! assert_eq!(net.forward(&Tensor::zeros(&[3, 64])?)?.shape(), [3, 10]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use crate::Gpu;
use crate::error::{Error, Result};
use crate::nn::{self, BatchNorm2d, BatchNormOptions, Conv2d, Module, Sequential};
use crate::ops::Conv2dOptions;
use crate::tensor::Tensor;

/// An image shape (C, H, W).
pub type ImageShape = (usize, usize, usize);

/// A features-and-classifier model's two stacks: (features, classifier).
type Layers = (Sequential, Sequential);

/// `x` as (B, C, H, W): images pass through, flat rows (B, C*H*W) become a view.
fn as_images(x: &Tensor, (c, h, w): ImageShape, model: &str) -> Result<Tensor> {
    let sh = x.shape();
    match sh.len() {
        4 if sh[1..] == [c, h, w] => Ok(x.clone()),
        2 if sh[1] == c * h * w => x.reshape(&[sh[0], c, h, w]),
        _ => Err(Error::Config(format!(
            "{model} expects input (B, {c}, {h}, {w}) or (B, {}), got shape {sh:?}",
            c * h * w
        ))),
    }
}

fn check_shape((c, h, w): ImageShape, classes: usize, min_side: usize, model: &str) -> Result<()> {
    if c == 0 || classes == 0 || h < min_side || w < min_side {
        return Err(Error::Config(format!(
            "{model} needs at least one channel and one class and images of at least \
             {min_side}x{min_side}, got input ({c}, {h}, {w}) and {classes} classes"
        )));
    }
    Ok(())
}

fn conv(
    gpu: &Arc<Gpu>,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Result<Conv2d> {
    let opts = Conv2dOptions {
        stride: (stride, stride),
        padding: (pad, pad),
        ..Default::default()
    };
    Conv2d::new_on(gpu, cin, cout, (k, k), opts)
}

fn bn(gpu: &Arc<Gpu>, c: usize) -> Result<BatchNorm2d> {
    BatchNorm2d::new_on(gpu, c, BatchNormOptions::default())
}

/// Swap the last layer of `seq` (a Linear head) for a fresh one with `classes` outputs.
pub(super) fn replace_last(seq: &mut Sequential, classes: usize, model: &str) -> Result<()> {
    let last = seq.len().checked_sub(1);
    let slot = last
        .and_then(|i| seq.get_mut(i))
        .ok_or_else(|| Error::Config(format!("{model}: the model has no head layer")))?;
    let head = super::new_head(slot.as_ref(), classes, model)?;
    *slot = Box::new(head);
    Ok(())
}

/// A model `$name` made of `features` (a [`Sequential`] over images), `$pool` (features to
/// (B, F)) and `classifier` (a [`Sequential`] to (B, classes)): the struct, its `new_on` (which
/// checks the input, images of at least `$min_side` pixels a side, and calls the model's own
/// `layers(gpu, input, classes) -> (features, classifier)`) and its [`Module`] impl; `$tag` names
/// it in errors. Written once for [`LeNet`] and [`Vgg`].
macro_rules! features_classifier {
    ($(#[$doc:meta])* $name:ident, $tag:literal, $min_side:literal, $pool:expr) => {
        $(#[$doc])*
        pub struct $name {
            features: Sequential,
            classifier: Sequential,
            input: ImageShape,
        }

        impl $name {
            #[doc = concat!("The ", $tag, " model for `input` = (C, H, W) images and `classes` ",
                "outputs.")]
            pub fn new_on(gpu: &Arc<Gpu>, input: ImageShape, classes: usize) -> Result<$name> {
                check_shape(input, classes, $min_side, $tag)?;
                let (features, classifier) = Self::layers(gpu, input, classes)?;
                Ok($name {
                    features,
                    classifier,
                    input,
                })
            }
        }

        impl Module for $name {
            fn visit_linears_mut(
                &mut self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &mut crate::nn::Linear),
            ) {
                self.features
                    .visit_linears_mut(&crate::nn::child_path(prefix, "features"), f);
                self.classifier
                    .visit_linears_mut(&crate::nn::child_path(prefix, "classifier"), f);
            }

            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                let x = as_images(x, self.input, $tag)?; // (B, C, H, W)
                let f = self.features.forward(&x)?; // (B, C', H', W')
                let pool = $pool;
                let g: Tensor = pool(f)?; // (B, F)
                self.classifier.forward(&g) // (B, classes)
            }

            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                let mut v = nn::prefixed("features", self.features.named_parameters());
                v.extend(nn::prefixed(
                    "classifier",
                    self.classifier.named_parameters(),
                ));
                v
            }

            fn named_buffers(&self) -> Vec<(String, Tensor)> {
                nn::prefixed("features", self.features.named_buffers())
            }

            fn set_training(&mut self, training: bool) {
                self.features.set_training(training);
                self.classifier.set_training(training);
            }

            fn is_training(&self) -> bool {
                self.features.is_training()
            }
        }
    };
}

features_classifier! {
    /// LeNet-5: conv 5x5 (6) -> ReLU -> max-pool 2 -> conv 5x5 (16) -> ReLU -> max-pool 2 ->
    /// Linear 120 -> ReLU -> Linear 84 -> ReLU -> Linear classes.
    ///
    /// The first convolution has padding 2 (so 28x28 keeps its size, as in the original's 32x32
    /// input). The second has none when its input is at least 10x10 (28 and 32 pixel images) and
    /// padding 2 on smaller ones (8x8 digits: 8 -> 8 -> 4 -> 4 -> 2), so every input of at least
    /// 4x4 fits.
    LeNet, "lenet", 4, |f: Tensor| f.flatten(1, -1) // (B, 16 H2 W2)
}

impl LeNet {
    /// Features and classifier for `(c, h, w)` images and `classes` outputs.
    fn layers(gpu: &Arc<Gpu>, (c, h, w): ImageShape, classes: usize) -> Result<Layers> {
        let (h1, w1) = (h / 2, w / 2);
        let pad2 = if h1.min(w1) >= 10 { 0 } else { 2 };
        let (h2, w2) = ((h1 + 2 * pad2 - 4) / 2, (w1 + 2 * pad2 - 4) / 2);
        let features = Sequential::new()
            .with(conv(gpu, c, 6, 5, 1, 2)?)
            .with(nn::ReLU)
            .with(nn::MaxPool2d::new(2))
            .with(conv(gpu, 6, 16, 5, 1, pad2)?)
            .with(nn::ReLU)
            .with(nn::MaxPool2d::new(2));
        let flat = 16 * h2 * w2;
        let classifier = Sequential::new()
            .with(nn::Linear::new_on(gpu, flat, 120, true)?)
            .with(nn::ReLU)
            .with(nn::Linear::new_on(gpu, 120, 84, true)?)
            .with(nn::ReLU)
            .with(nn::Linear::new_on(gpu, 84, classes, true)?);
        Ok((features, classifier))
    }

    /// Replace the head `classifier.4` by a freshly initialised Linear(84, `classes`); the
    /// other layers keep their weights (and their frozen / trainable state).
    pub fn replace_head(&mut self, classes: usize) -> Result<()> {
        replace_last(&mut self.classifier, classes, "lenet")
    }
}

/// Channel widths of the VGG blocks.
pub const VGG_WIDTHS: [usize; 3] = [16, 32, 64];

features_classifier! {
    /// A small VGG: up to three blocks of [conv 3x3 -> BatchNorm -> ReLU] x 2 -> max-pool 2
    /// (widths [`VGG_WIDTHS`]; fewer blocks when the image is too small to halve three times),
    /// then global average pooling and one Linear layer.
    Vgg, "vgg", 2, |f: Tensor| {
        f.adaptive_avg_pool2d((1, 1))?.flatten(1, -1) // (B, W_last)
    }
}

impl Vgg {
    /// Up to three conv blocks and a Linear head for `(c, h, w)` images and `classes` outputs.
    fn layers(gpu: &Arc<Gpu>, (c, h, w): ImageShape, classes: usize) -> Result<Layers> {
        let mut features = Sequential::new();
        let (mut cin, mut side) = (c, h.min(w));
        for &width in VGG_WIDTHS.iter() {
            if side < 2 {
                break;
            }
            for _ in 0..2 {
                features.push(Box::new(conv(gpu, cin, width, 3, 1, 1)?));
                features.push(Box::new(bn(gpu, width)?));
                features.push(Box::new(nn::ReLU));
                cin = width;
            }
            features.push(Box::new(nn::MaxPool2d::new(2)));
            side /= 2;
        }
        let classifier = Sequential::new().with(nn::Linear::new_on(gpu, cin, classes, true)?);
        Ok((features, classifier))
    }

    /// Replace the head `classifier.0` by a freshly initialised Linear(64, `classes`) (input
    /// width: the last block's); the other layers keep their weights.
    pub fn replace_head(&mut self, classes: usize) -> Result<()> {
        replace_last(&mut self.classifier, classes, "vgg")
    }
}

/// ResNet's basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the
/// shortcut is the identity, or conv 1x1 (stride s) -> BatchNorm (`downsample`) when the block
/// changes the channel count or the stride.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    /// `downsample.0` (conv 1x1) and `downsample.1` (BatchNorm).
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    /// A block from `cin` to `cout` channels whose first convolution has `stride`.
    pub fn new_on(gpu: &Arc<Gpu>, cin: usize, cout: usize, stride: usize) -> Result<BasicBlock> {
        let downsample = if stride != 1 || cin != cout {
            Some((
                conv(gpu, cin, cout, 1, stride, 0)?.without_bias(),
                bn(gpu, cout)?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: conv(gpu, cin, cout, 3, stride, 1)?.without_bias(),
            bn1: bn(gpu, cout)?,
            conv2: conv(gpu, cout, cout, 3, 1, 1)?.without_bias(),
            bn2: bn(gpu, cout)?,
            downsample,
        })
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // (B, Cin, H, W) -> (B, Cout, H/s, W/s)
        let out = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?)?;
        let identity = match &self.downsample {
            Some((c, b)) => b.forward(&c.forward(x)?)?,
            None => x.clone(),
        };
        out.add(&identity)?.relu()
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = nn::prefixed("conv1", self.conv1.named_parameters());
        v.extend(nn::prefixed("bn1", self.bn1.named_parameters()));
        v.extend(nn::prefixed("conv2", self.conv2.named_parameters()));
        v.extend(nn::prefixed("bn2", self.bn2.named_parameters()));
        if let Some((c, b)) = &self.downsample {
            v.extend(nn::prefixed("downsample.0", c.named_parameters()));
            v.extend(nn::prefixed("downsample.1", b.named_parameters()));
        }
        v
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = nn::prefixed("bn1", self.bn1.named_buffers());
        v.extend(nn::prefixed("bn2", self.bn2.named_buffers()));
        if let Some((_, b)) = &self.downsample {
            v.extend(nn::prefixed("downsample.1", b.named_buffers()));
        }
        v
    }

    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        self.bn2.set_training(training);
        if let Some((_, b)) = &mut self.downsample {
            b.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.bn1.is_training()
    }
}

/// Stage widths of [`ResNet18`] (a quarter of torchvision's 64/128/256/512).
pub const RESNET_WIDTHS: [usize; 4] = [16, 32, 64, 128];

/// ResNet-18 for small images: a 3x3 stem (conv -> BatchNorm -> ReLU, no 7x7 and no max-pool),
/// four stages of two [`BasicBlock`]s with widths [`RESNET_WIDTHS`] (stages 2-4 start with
/// stride 2), adaptive average pooling to 1x1 and a Linear layer `fc`.
pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// The 8 blocks, stage by stage: block `i` is `layer{i / 2 + 1}.{i % 2}`.
    blocks: Vec<BasicBlock>,
    fc: nn::Linear,
    input: ImageShape,
    /// Blocks per checkpointed segment (0: off).
    checkpoint_every: usize,
}

impl ResNet18 {
    /// The network for `input` = (C, H, W) images and `classes` outputs.
    pub fn new_on(gpu: &Arc<Gpu>, input: ImageShape, classes: usize) -> Result<ResNet18> {
        check_shape(input, classes, 1, "resnet18")?;
        let c0 = RESNET_WIDTHS[0];
        let mut blocks = Vec::new();
        let mut cin = c0;
        for (i, &w) in RESNET_WIDTHS.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            blocks.push(BasicBlock::new_on(gpu, cin, w, stride)?);
            blocks.push(BasicBlock::new_on(gpu, w, w, 1)?);
            cin = w;
        }
        Ok(ResNet18 {
            conv1: conv(gpu, input.0, c0, 3, 1, 1)?.without_bias(),
            bn1: bn(gpu, c0)?,
            blocks,
            fc: nn::Linear::new_on(gpu, cin, classes, true)?,
            input,
            checkpoint_every: 0,
        })
    }

    /// Replace the head `fc` by a freshly initialised Linear(128, `classes`); the other layers
    /// keep their weights.
    pub fn replace_head(&mut self, classes: usize) -> Result<()> {
        self.fc = super::new_head(&self.fc, classes, "resnet18")?;
        Ok(())
    }
}

impl Module for ResNet18 {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        self.fc
            .visit_linears_mut(&crate::nn::child_path(prefix, "fc"), f);
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = as_images(x, self.input, "resnet18")?; // (B, C, H, W)
        let h = self.bn1.forward(&self.conv1.forward(&x)?)?.relu()?; // (B, 16, H, W)
        let h = nn::checkpoint::forward_blocks(&self.blocks, self.checkpoint_every, &h)?;
        let g = h.adaptive_avg_pool2d((1, 1))?.flatten(1, -1)?; // (B, 128)
        self.fc.forward(&g) // (B, classes)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = nn::prefixed("conv1", self.conv1.named_parameters());
        v.extend(nn::prefixed("bn1", self.bn1.named_parameters()));
        for (i, b) in self.blocks.iter().enumerate() {
            v.extend(nn::prefixed(&block_name(i), b.named_parameters()));
        }
        v.extend(nn::prefixed("fc", self.fc.named_parameters()));
        v
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = nn::prefixed("bn1", self.bn1.named_buffers());
        for (i, b) in self.blocks.iter().enumerate() {
            v.extend(nn::prefixed(&block_name(i), b.named_buffers()));
        }
        v
    }

    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        for b in &mut self.blocks {
            b.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.bn1.is_training()
    }

    /// Checkpointed segments of `every` residual blocks (0: off).
    fn set_checkpointing(&mut self, every: usize) -> bool {
        self.checkpoint_every = every;
        true
    }
}

/// torchvision's name of ResNet-18's block `i` (two per stage): `layer{stage}.{index}`.
fn block_name(i: usize) -> String {
    format!("layer{}.{}", i / 2 + 1, i % 2)
}
