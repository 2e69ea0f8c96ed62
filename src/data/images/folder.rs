//! [`ImageFolder`]: `root/<class>/*.{png,jpg,jpeg}` decoded into an [`InMemoryDataset`] of
//! `(C, H, W)` f32 images in `[0, 1]`, labelled by class folder (sorted by name).

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageReader, Luma, Rgb};

use super::super::error::{DataError, invalid};
use super::super::memory::InMemoryDataset;
use super::super::{Dataset, Targets};

/// File extensions [`ImageFolder`] reads (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// How many channels the loaded images have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Channels {
    /// RGB when any image of the folder has colour, else grey.
    #[default]
    Infer,
    /// One channel: luma (ITU-R BT.709 weights, as the `image` crate converts).
    Grey,
    /// Three channels: red, green, blue (alpha is dropped).
    Rgb,
}

impl Channels {
    /// `1` means grey, `3` RGB; anything else is an error.
    pub fn from_count(n: usize) -> Result<Channels, DataError> {
        match n {
            1 => Ok(Channels::Grey),
            3 => Ok(Channels::Rgb),
            _ => invalid(format!(
                "images: {n} channels asked; use 1 (grey) or 3 (RGB)"
            )),
        }
    }
}

/// Options of [`ImageFolder::load`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// Resize every image to `(height, width)`; `None` keeps the files' size, which must then be
    /// the same for all of them.
    pub size: Option<(usize, usize)>,
    /// Channel count.
    pub channels: Channels,
}

/// A folder of labelled images, loaded.
///
/// ```no_run
/// use kiln::data::images::{ImageFolder, ImageOptions};
/// let opts = ImageOptions { size: Some((28, 28)), ..Default::default() };
/// let f = ImageFolder::load("pictures".as_ref(), &opts)?;
/// println!("{} images of {:?}, classes {:?}", f.files.len(), f.shape(), f.class_names());
/// # Ok::<(), kiln::data::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images `(N, C, H, W)` in `[0, 1]` (until normalised), class names attached.
    pub dataset: InMemoryDataset,
    /// The file of each example, in dataset order.
    pub files: Vec<PathBuf>,
    /// Files skipped because their extension is not an image one (see [`IMAGE_EXTENSIONS`]).
    pub skipped: usize,
}

impl ImageFolder {
    /// Load `root/<class>/*.{png,jpg,jpeg}`: classes are the sub-folders sorted by name.
    pub fn load(root: &Path, opts: &ImageOptions) -> Result<ImageFolder, DataError> {
        let classes = class_dirs(root)?;
        let names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
        load_classes(&classes, &names, opts)
    }

    /// Load a folder whose class folders must be among `classes` (a model's classes): the label
    /// of folder `name` is its index in `classes`. Classes without a folder are allowed.
    pub fn load_with_classes(
        root: &Path,
        opts: &ImageOptions,
        classes: &[String],
    ) -> Result<ImageFolder, DataError> {
        let dirs = class_dirs(root)?;
        if let Some((name, _)) = dirs.iter().find(|(n, _)| !classes.contains(n)) {
            return Err(DataError::Format {
                file: root.display().to_string(),
                msg: format!(
                    "class folder {name:?} is not one of the model's classes: {}",
                    classes.join(", ")
                ),
            });
        }
        load_classes(&dirs, classes, opts)
    }

    /// Class names, in label order.
    pub fn class_names(&self) -> &[String] {
        self.dataset.class_names().unwrap_or(&[])
    }

    /// The image shape `(C, H, W)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        match self.dataset.feature_shape().as_slice() {
            &[c, h, w] => (c, h, w),
            _ => (0, 0, 0),
        }
    }
}

/// The sub-folders of `root`, sorted by name: (name, path).
fn class_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let shown = root.display().to_string();
    if !root.is_dir() {
        return Err(DataError::Format {
            file: shown,
            msg: "image folder not found (expected a directory holding one sub-folder per class)"
                .into(),
        });
    }
    let mut dirs = Vec::new();
    for entry in read_dir(root)? {
        if entry.is_dir() {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.starts_with('.') {
                dirs.push((name, entry));
            }
        }
    }
    if dirs.is_empty() {
        return Err(DataError::Format {
            file: shown,
            msg: "no class folders: put each class's images in its own sub-folder, \
                  e.g. root/cat/1.png and root/dog/1.jpg"
                .into(),
        });
    }
    dirs.sort();
    Ok(dirs)
}

/// The entries of `dir`, sorted.
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |e| DataError::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        out.push(e.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

/// True when `path` has one of [`IMAGE_EXTENSIONS`] (any case).
pub(crate) fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files directly in `dir` (sorted) and how many other files were skipped.
pub(crate) fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, usize), DataError> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for p in read_dir(dir)? {
        if p.is_file() {
            if is_image_file(&p) {
                files.push(p);
            } else {
                skipped += 1;
            }
        }
    }
    Ok((files, skipped))
}

fn load_classes(
    dirs: &[(String, PathBuf)],
    classes: &[String],
    opts: &ImageOptions,
) -> Result<ImageFolder, DataError> {
    let mut listed = Vec::new(); // (file, label)
    let mut skipped = 0;
    for (name, dir) in dirs {
        let (files, skip) = image_files(dir)?;
        skipped += skip;
        if files.is_empty() {
            return Err(DataError::Format {
                file: dir.display().to_string(),
                msg: format!(
                    "class folder {name:?} holds no .png/.jpg/.jpeg images{}",
                    if skip > 0 {
                        format!(" ({skip} other files skipped)")
                    } else {
                        String::new()
                    }
                ),
            });
        }
        let label = classes.iter().position(|c| c == name).unwrap_or(0) as u32;
        listed.extend(files.into_iter().map(|f| (f, label)));
    }
    // Inferring the channels reads only the headers first, so the decoded pictures never all
    // sit in memory at once: each is converted and resized as soon as it is decoded.
    let channels = match opts.channels {
        Channels::Grey => 1,
        Channels::Rgb => 3,
        Channels::Infer => {
            let mut colour = false;
            for (f, _) in &listed {
                if header_has_colour(f)? {
                    colour = true;
                    break;
                }
            }
            if colour { 3 } else { 1 }
        }
    };
    let mut features = Vec::new(); // (N, C, H, W)
    let mut size: Option<(usize, usize, &Path)> = opts.size.map(|(h, w)| (h, w, Path::new("")));
    for (f, _) in &listed {
        let img = decode_image(f)?;
        let own = (img.height() as usize, img.width() as usize);
        let (h, w, first) = *size.get_or_insert((own.0, own.1, f.as_path()));
        if opts.size.is_none() && own != (h, w) {
            return Err(DataError::Format {
                file: f.display().to_string(),
                msg: format!(
                    "image is {}x{} (HxW) but {} is {h}x{w}; images of different sizes \
                     need a size to resize to (--image-size HxW)",
                    own.0,
                    own.1,
                    first.display()
                ),
            });
        }
        if h == 0 || w == 0 {
            return invalid(format!("images: cannot resize to {h}x{w}"));
        }
        features.extend(to_chw(&img, channels, (h, w)));
    }
    let (h, w) = size.map(|(h, w, _)| (h, w)).unwrap_or((0, 0));
    let (files, labels): (Vec<PathBuf>, Vec<u32>) = listed.into_iter().unzip();
    let targets = Targets::Classes {
        labels,
        num_classes: classes.len(),
    };
    let dataset = InMemoryDataset::new(features, vec![channels, h, w], targets)?
        .with_class_names(classes.to_vec())?;
    Ok(ImageFolder {
        dataset,
        files,
        skipped,
    })
}

/// An image file opened for decoding.
type FileReader = ImageReader<std::io::BufReader<std::fs::File>>;

/// Open `path` with its format guessed from the contents, and the error for a file the
/// decoder refuses (naming the file and the decoder's reason).
fn open_image(
    path: &Path,
) -> Result<(FileReader, impl Fn(image::ImageError) -> DataError), DataError> {
    let shown = path.display().to_string();
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::Io {
            path: shown.clone(),
            source: e,
        })?;
    let refused = move |e: image::ImageError| DataError::Format {
        file: shown.clone(),
        msg: format!("cannot decode image: {e}"),
    };
    Ok((reader, refused))
}

/// Whether the file's colour type has colour, read from its header only.
fn header_has_colour(path: &Path) -> Result<bool, DataError> {
    let (reader, refused) = open_image(path)?;
    let decoder = reader.into_decoder().map_err(refused)?;
    Ok(decoder.color_type().has_color())
}

/// Decode one image file, with an error naming the file and the decoder's reason.
pub fn decode_image(path: &Path) -> Result<DynamicImage, DataError> {
    let (reader, refused) = open_image(path)?;
    reader.decode().map_err(refused)
}

/// One image file as `(C, H, W)` values in `[0, 1]`, converted and resized as `opts` asks
/// (`Channels::Infer` keeps the file's own: RGB if it has colour, else grey).
pub(crate) fn load_file(path: &Path, opts: &ImageOptions) -> Result<Vec<f32>, DataError> {
    let img = decode_image(path)?;
    let channels = match opts.channels {
        Channels::Grey => 1,
        Channels::Rgb => 3,
        Channels::Infer => 1 + 2 * usize::from(img.color().has_color()),
    };
    let size = opts
        .size
        .unwrap_or((img.height() as usize, img.width() as usize));
    Ok(to_chw(&img, channels, size))
}

/// `img` as `(C, H, W)` f32 in `[0, 1]`: converted to `channels`, scaled to `[0, 1]`, then
/// resized with the triangle (bilinear) filter when its size differs from `(h, w)`.
fn to_chw(img: &DynamicImage, channels: usize, (h, w): (usize, usize)) -> Vec<f32> {
    let (iw, ih) = (img.width(), img.height());
    // Interleaved (H, W, C) in [0, 1]; resizing happens in f32 so no rounding to bytes.
    let hwc: Vec<f32> = if channels == 1 {
        let src = img.to_luma8();
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_fn(iw, ih, |x, y| Luma([src.get_pixel(x, y)[0] as f32 / 255.0]));
        if (ih as usize, iw as usize) == (h, w) {
            buf.into_raw()
        } else {
            imageops::resize(&buf, w as u32, h as u32, FilterType::Triangle).into_raw()
        }
    } else {
        let src = img.to_rgb8();
        let buf: ImageBuffer<Rgb<f32>, Vec<f32>> = ImageBuffer::from_fn(iw, ih, |x, y| {
            let p = src.get_pixel(x, y);
            Rgb([
                p[0] as f32 / 255.0,
                p[1] as f32 / 255.0,
                p[2] as f32 / 255.0,
            ])
        });
        if (ih as usize, iw as usize) == (h, w) {
            buf.into_raw()
        } else {
            imageops::resize(&buf, w as u32, h as u32, FilterType::Triangle).into_raw()
        }
    };
    let mut chw = vec![0.0f32; channels * h * w]; // (C, H, W)
    for (i, px) in hwc.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            chw[c * h * w + i] = v;
        }
    }
    chw
}
