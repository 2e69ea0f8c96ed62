//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped.
//!
//! An IDX file is a big-endian header and the data: a magic number `00 00 TT NN` (TT the element
//! type, `08` for unsigned bytes; NN the number of dimensions), then NN u32 sizes, then the
//! elements row-major. Images are `0x00000803` (N, rows, cols); labels are `0x00000801` (N).
//! A file that starts with `1f 8b` is gzip and is decompressed first.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::Targets;
use super::error::{DataError, format_err};
use super::memory::InMemoryDataset;

/// Where `apt-get install dataset-fashion-mnist` puts Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist/";

/// Fashion-MNIST's ten classes, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (e.g. `[N, 28, 28]`).
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Read a file whole, decompressing it when it starts with the gzip magic `1f 8b`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.display().to_string(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .or_else(|e| format_err(path.display().to_string(), format!("bad gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Decode IDX bytes of unsigned-byte elements with `ndims` dimensions. `file` names the source
/// in errors.
pub fn parse_idx(bytes: &[u8], ndims: usize, file: &str) -> Result<IdxArray, DataError> {
    if bytes.len() < 4 {
        return format_err(
            file,
            format!("{} bytes is too short for an IDX file", bytes.len()),
        );
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let want = 0x0800 | ndims as u32;
    if magic != want {
        let what = match magic {
            0x0803 => " (IDX images)".to_string(),
            0x0801 => " (IDX labels)".to_string(),
            m if m >> 16 == 0 && (m >> 8) & 0xff != 0x08 => {
                format!(
                    " (IDX of element type 0x{:02x}; only unsigned bytes, 0x08, are read)",
                    (m >> 8) & 0xff
                )
            }
            _ => " (not an IDX file)".to_string(),
        };
        return format_err(
            file,
            format!("bad magic number 0x{magic:08x}{what}; expected 0x{want:08x}"),
        );
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return format_err(
            file,
            format!(
                "truncated: {} bytes, but the header alone is {header}",
                bytes.len()
            ),
        );
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let want_len = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let dims_text = dims
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" x ");
    let found = bytes.len() - header;
    match want_len {
        Some(n) if n == found => Ok(IdxArray {
            dims,
            data: bytes[header..].to_vec(),
        }),
        Some(n) if n > found => format_err(
            file,
            format!("truncated: the header says {dims_text} = {n} bytes of data, found {found}"),
        ),
        Some(n) => format_err(
            file,
            format!(
                "{} bytes past the end of the data ({dims_text} = {n} bytes)",
                found - n
            ),
        ),
        None => format_err(file, format!("impossible sizes {dims_text}")),
    }
}

/// Images `(N, rows, cols)` and labels `(N)` from two IDX files (raw or gzipped).
///
/// Features are pixel / 255, in [0, 1], with feature shape `[rows * cols]`; for a CNN,
/// `.reshape(vec![1, rows, cols])` gives the image view (channels, height, width). The number of
/// classes is the largest label plus one.
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<InMemoryDataset, DataError> {
    let (img_name, lab_name) = (images.display().to_string(), labels.display().to_string());
    let img = parse_idx(&read_maybe_gz(images)?, 3, &img_name)?;
    let lab = parse_idx(&read_maybe_gz(labels)?, 1, &lab_name)?;
    if img.dims[0] != lab.dims[0] {
        return format_err(
            img_name,
            format!(
                "{} images, but {lab_name} has {} labels",
                img.dims[0], lab.dims[0]
            ),
        );
    }
    let features = img.data.iter().map(|&p| p as f32 / 255.0).collect(); // (N, rows * cols)
    let labels: Vec<u32> = lab.data.iter().map(|&l| l as u32).collect();
    let num_classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    InMemoryDataset::new(
        features,
        vec![img.dims[1] * img.dims[2]],
        Targets::Classes {
            labels,
            num_classes,
        },
    )
}

/// Fashion-MNIST as (train 60,000, test 10,000), with the ten class names.
///
/// Reads `{train,t10k}-{images-idx3,labels-idx1}-ubyte` (each with or without `.gz`) from `dir`,
/// or from [`FASHION_MNIST_DIR`] when `dir` is `None`. When a file is missing, the error says
/// which directory was searched and that `apt-get install dataset-fashion-mnist` installs it.
/// Features are `[784]` in [0, 1]; `.reshape(vec![1, 28, 28])` gives images.
pub fn fashion_mnist(dir: Option<&Path>) -> Result<(InMemoryDataset, InMemoryDataset), DataError> {
    let dir = dir.unwrap_or(Path::new(FASHION_MNIST_DIR));
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_file(dir, n)).collect();
    let missing: Vec<String> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| n.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(DataError::NotInstalled {
            name: "Fashion-MNIST".into(),
            searched: dir.display().to_string(),
            missing,
            install: "apt-get install dataset-fashion-mnist".into(),
            default_dir: FASHION_MNIST_DIR.into(),
        });
    }
    let p: Vec<PathBuf> = found.into_iter().flatten().collect();
    let names: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let load = |img: &Path, lab: &Path| -> Result<InMemoryDataset, DataError> {
        let ds = load_idx_pair(img, lab)?;
        match ds.num_classes() {
            Some(k) if k <= 10 => fix_classes(ds, 10)?.with_class_names(names.clone()),
            k => format_err(
                lab.display().to_string(),
                format!(
                    "labels go up to {}, but Fashion-MNIST has 10 classes",
                    k.unwrap_or(0).saturating_sub(1)
                ),
            ),
        }
    };
    Ok((load(&p[0], &p[1])?, load(&p[2], &p[3])?))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The same dataset with `num_classes` set (a subset may not hold the largest label).
fn fix_classes(ds: InMemoryDataset, num_classes: usize) -> Result<InMemoryDataset, DataError> {
    let (features, shape, targets, _) = ds.into_parts();
    let labels = match targets {
        Targets::Classes { labels, .. } => labels,
        Targets::Values { .. } => Vec::new(),
    };
    InMemoryDataset::new(
        features,
        shape,
        Targets::Classes {
            labels,
            num_classes,
        },
    )
}
