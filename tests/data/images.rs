//! Image folders, normalisation and training augmentation: PNG and JPEG files generated at test
//! time at awkward sizes, checked against plain CPU expectations; one end-to-end `kiln train
//! --images` run.

use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use kiln::data::Dataset;
use kiln::data::images::{ChannelNorm, Channels, ImageFolder, ImageOptions, ImagePrep};

use crate::cli_util;
use crate::common;
use crate::common::assert_mentions;
mod augment;
mod cli;

/// A fresh directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-images-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A grey image `w x h` with pixel `f(x, y)`.
pub fn grey(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
}

/// An RGB image `w x h` with pixel `f(x, y)`.
pub fn rgb(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, y| Rgb(f(x, y)))
}

fn save_grey(dir: &Path, name: &str, img: &GrayImage) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

fn save_rgb(dir: &Path, name: &str, img: &RgbImage) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

/// The expectation for one grey file: decoded by `image`, bytes / 255, triangle-resized in f32.
fn expected_grey(path: &Path, (h, w): (u32, u32)) -> Vec<f32> {
    let src = image::open(path).unwrap().to_luma8();
    let f: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_fn(src.width(), src.height(), |x, y| {
            Luma([src.get_pixel(x, y)[0] as f32 / 255.0])
        });
    imageops::resize(&f, w, h, FilterType::Triangle).into_raw()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let (i, d) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
        );
    assert!(
        d <= tol,
        "{what}: worst at {i}: got {} want {} (diff {d})",
        got[i],
        want[i]
    );
}

/// Three classes of grey patterns at awkward sizes, mixed PNG / JPEG / upper-case extensions.
fn three_classes(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    // "bars": vertical stripes, 7 wide x 9 high.
    files.push(save_grey(
        &root.join("bars"),
        "b1.png",
        &grey(7, 9, |x, _| if x % 2 == 0 { 230 } else { 20 }),
    ));
    files.push(save_grey(
        &root.join("bars"),
        "b2.PNG",
        &grey(7, 9, |x, y| (x * 30 + y) as u8),
    ));
    // "ankles": 17 wide x 13 high (sorts first).
    files.push(save_grey(
        &root.join("ankles"),
        "a1.png",
        &grey(17, 13, |x, y| ((x * 13 + y * 7) % 256) as u8),
    ));
    // "cats": a JPEG, 17 x 13, and a .jpeg.
    files.push(save_grey(
        &root.join("cats"),
        "c1.jpg",
        &grey(
            17,
            13,
            |x, y| if (x / 4 + y / 4) % 2 == 0 { 200 } else { 40 },
        ),
    ));
    files.push(save_grey(
        &root.join("cats"),
        "c2.JPEG",
        &grey(7, 9, |_, y| (y * 25) as u8),
    ));
    std::fs::write(root.join("cats").join("notes.txt"), "not an image").unwrap();
    files
}

#[test]
fn folder_labels_names_shapes_and_values() {
    let root = scratch("three");
    three_classes(&root);
    let opts = ImageOptions {
        size: Some((8, 8)),
        channels: Channels::Infer,
    };
    let f = ImageFolder::load(&root, &opts).unwrap();
    assert_eq!(f.class_names(), ["ankles", "bars", "cats"]);
    assert_eq!(f.shape(), (1, 8, 8), "all grey files: one channel inferred");
    assert_eq!(f.skipped, 1, "notes.txt is skipped and counted");
    assert_eq!(f.dataset.labels().unwrap(), [0, 1, 1, 2, 2]);
    assert_eq!(f.dataset.len(), 5);
    let names: Vec<String> = f
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(names, ["a1.png", "b1.png", "b2.PNG", "c1.jpg", "c2.JPEG"]);
    for (i, p) in f.files.iter().enumerate() {
        let want = expected_grey(p, (8, 8));
        assert_close(
            f.dataset.example(i).unwrap(),
            &want,
            1e-6,
            &p.display().to_string(),
        );
    }
    assert!(f.dataset.features().iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn rgb_is_chw_and_exact_without_resize() {
    let root = scratch("rgb");
    let px = |x: u32, y: u32| [(x * 20) as u8, (y * 15) as u8, ((x + y) * 9) as u8];
    save_rgb(&root.join("one"), "p.png", &rgb(7, 9, px));
    save_grey(
        &root.join("two"),
        "g.png",
        &grey(7, 9, |x, y| (x * y) as u8),
    );
    let f = ImageFolder::load(&root, &ImageOptions::default()).unwrap();
    assert_eq!(
        f.shape(),
        (3, 9, 7),
        "one colour image makes the folder RGB; size kept"
    );
    let x = f.dataset.example(0).unwrap();
    for c in 0..3 {
        for y in 0..9 {
            for xx in 0..7 {
                let want = px(xx as u32, y as u32)[c] as f32 / 255.0;
                assert_eq!(x[(c * 9 + y) * 7 + xx], want, "channel {c} at ({y}, {xx})");
            }
        }
    }
    // The grey image becomes three equal channels.
    let g = f.dataset.example(1).unwrap();
    assert_eq!(&g[..63], &g[63..126]);
    assert_eq!(g[2 * 7 + 3], (3 * 2) as f32 / 255.0);
    // Forced grey: luma of the colour image, as `image` computes it.
    let opts = ImageOptions {
        size: None,
        channels: Channels::Grey,
    };
    let f1 = ImageFolder::load(&root, &opts).unwrap();
    assert_eq!(f1.shape(), (1, 9, 7));
    let luma = image::open(&f.files[0]).unwrap().to_luma8();
    let want: Vec<f32> = luma.pixels().map(|p| p[0] as f32 / 255.0).collect();
    assert_eq!(f1.dataset.example(0).unwrap(), want.as_slice());
}

#[test]
fn jpeg_colour_files_decode_like_the_image_crate() {
    let root = scratch("jpeg");
    let p = save_rgb(
        &root.join("red"),
        "r.jpg",
        &rgb(17, 13, |x, _| [200, 30, (x * 10) as u8]),
    );
    save_rgb(
        &root.join("blue"),
        "b.jpg",
        &rgb(17, 13, |_, y| [10, 40, 150 + y as u8]),
    );
    let opts = ImageOptions {
        size: None,
        channels: Channels::Rgb,
    };
    let f = ImageFolder::load(&root, &opts).unwrap();
    assert_eq!(f.class_names(), ["blue", "red"]);
    let decoded = image::open(&p).unwrap().to_rgb8();
    let x = f.dataset.example(1).unwrap(); // "red" sorts second
    for (i, px) in decoded.pixels().enumerate() {
        for c in 0..3 {
            assert_eq!(x[c * 17 * 13 + i], px[c] as f32 / 255.0);
        }
    }
    // JPEG is lossy, but the red channel stays near 200.
    let red_mean = x[..17 * 13].iter().sum::<f32>() / (17.0 * 13.0);
    assert!((red_mean - 200.0 / 255.0).abs() < 0.05, "{red_mean}");
}

#[test]
fn normalisation_statistics_match_a_plain_computation() {
    let root = scratch("norm");
    save_rgb(
        &root.join("a"),
        "1.png",
        &rgb(7, 9, |x, y| [(x * 30) as u8, (y * 20) as u8, 77]),
    );
    save_rgb(
        &root.join("b"),
        "2.png",
        &rgb(7, 9, |x, y| [(x * y) as u8, 250, (y * 3) as u8]),
    );
    let f = ImageFolder::load(&root, &ImageOptions::default()).unwrap();
    let x = f.dataset.features();
    let n = ChannelNorm::fit_dataset(&f.dataset).unwrap();
    for c in 0..3 {
        let vals: Vec<f64> = (0..2)
            .flat_map(|i| {
                x[(i * 3 + c) * 63..(i * 3 + c + 1) * 63]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        assert!((n.mean[c] as f64 - mean).abs() < 1e-6, "mean {c}");
        assert!((n.std[c] as f64 - std).abs() < 1e-6, "std {c}");
    }
    // Normalised: every channel has mean 0 and std 1 over the training images.
    let z = n.normalize(f.dataset.clone()).unwrap();
    let back = ChannelNorm::fit_dataset(&z).unwrap();
    for c in 0..3 {
        assert!(
            back.mean[c].abs() < 1e-5 && (back.std[c] - 1.0).abs() < 1e-5,
            "{back:?}"
        );
    }
    assert_eq!(z.class_names(), f.dataset.class_names());
    // A constant channel divides by 1; given values are checked.
    let flat = ChannelNorm::fit(&[0.5; 8], (2, 2, 2)).unwrap();
    assert_eq!((flat.mean, flat.std), (vec![0.5, 0.5], vec![1.0, 1.0]));
    assert!(ChannelNorm::new(vec![0.5], vec![0.0]).is_err());
    assert!(ChannelNorm::new(vec![0.5, 0.5], vec![0.2]).is_err());
    let given = ChannelNorm::new(vec![0.5], vec![0.25]).unwrap();
    let mut v = vec![1.0, 0.0];
    given.apply(&mut v, (1, 1, 2)).unwrap();
    assert_eq!(v, [2.0, -2.0]);
    // ImagePrep carries it: a file loads as in training.
    let prep = ImagePrep {
        channels: 3,
        height: 9,
        width: 7,
        class_names: vec!["a".into(), "b".into()],
        norm: n,
    };
    let one = prep.load_file(&f.files[1]).unwrap();
    assert_eq!(one.as_slice(), z.example(1).unwrap());
    let again = prep.load_folder(&root).unwrap();
    assert_eq!(again.dataset.features(), z.features());
    let js = serde_json::to_string(&prep).unwrap();
    assert_eq!(serde_json::from_str::<ImagePrep>(&js).unwrap(), prep);
}

fn err_text(r: Result<ImageFolder, kiln::data::DataError>) -> String {
    r.map(|_| ()).unwrap_err().to_string()
}

#[test]
fn errors_name_the_folder_or_file() {
    let opts = ImageOptions {
        size: Some((8, 8)),
        channels: Channels::Infer,
    };
    // Missing root.
    let root = scratch("errors");
    let e = err_text(ImageFolder::load(&root.join("nope"), &opts));
    assert_mentions(&e, &["nope", "not found"]);
    // No class folders: only loose files.
    save_grey(&root.join("flat"), "x.png", &grey(3, 3, |_, _| 1));
    let e = err_text(ImageFolder::load(&root.join("flat"), &opts));
    assert_mentions(&e, &["flat", "no class folders"]);
    // An empty class folder (only a non-image file in it).
    let r = root.join("empty");
    save_grey(&r.join("a"), "x.png", &grey(3, 3, |_, _| 1));
    std::fs::create_dir_all(r.join("b")).unwrap();
    std::fs::write(r.join("b").join("readme.md"), "hi").unwrap();
    let e = err_text(ImageFolder::load(&r, &opts));
    assert_mentions(&e, &["\"b\"", "no .png", "1 other files skipped"]);
    // An undecodable file.
    let r = root.join("broken");
    save_grey(&r.join("a"), "ok.png", &grey(3, 3, |_, _| 1));
    std::fs::write(
        r.join("a").join("bad.png"),
        b"\x89PNG\r\n\x1a\n this is not a png",
    )
    .unwrap();
    let e = err_text(ImageFolder::load(&r, &opts));
    assert_mentions(&e, &["bad.png", "cannot decode image"]);
    // Different sizes without a resize.
    let r = root.join("sizes");
    save_grey(&r.join("a"), "1.png", &grey(7, 9, |_, _| 1));
    save_grey(&r.join("b"), "2.png", &grey(17, 13, |_, _| 1));
    let e = err_text(ImageFolder::load(&r, &ImageOptions::default()));
    assert_mentions(&e, &["2.png", "13x17", "--image-size"]);
    // A class the model does not know.
    let e = err_text(ImageFolder::load_with_classes(
        &r,
        &opts,
        &["a".to_string()],
    ));
    assert_mentions(&e, &["\"b\"", "not one of the model's classes"]);
    assert!(Channels::from_count(2).is_err());
}
