//! Fuzz targets for binary files kiln loads: safetensors checkpoints (the container, kiln's
//! metadata, and every 25th input through `kiln info` and `kiln eval`) and images through kiln's
//! folder loader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use kiln::data::images::{Channels, ImageFolder, ImageOptions, decode_image};
use kiln::dtype::DType;
use kiln::models::ModelSpec;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::{check_dataset, clean};
use crate::engine::{Target, Verdict, mutate_bytes, scratch};

fn st_exec(input: &[u8]) -> Verdict {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = scratch("safetensors");
    let path = dir.join("checkpoint.safetensors");
    std::fs::write(&path, input).unwrap();
    // Every 25th input also goes through the commands that read checkpoints.
    if N.fetch_add(1, Ordering::Relaxed).is_multiple_of(25) {
        crate::cli::oracle(&["info", path.to_str().unwrap()])?;
        crate::cli::oracle(&["eval", path.to_str().unwrap()])?;
    }
    let st = match kiln::io::safetensors::read(&path) {
        Ok(st) => st,
        Err(e) => return clean(&e),
    };
    for (name, t) in &st.tensors {
        let size = match t.dtype {
            DType::F16 => 2,
            _ => 4,
        };
        let n = t
            .shape
            .iter()
            .try_fold(size, |p: usize, &d| p.checked_mul(d));
        if n != Some(t.bytes.len()) {
            return Err(format!(
                "{name}: shape {:?} with {} bytes",
                t.shape,
                t.bytes.len()
            ));
        }
    }
    let ck = match kiln::train::checkpoint::load(&path) {
        Ok(ck) => ck,
        Err(e) => return clean(&e),
    };
    if let Err(e) = kiln::io::safetensors::check_finite(
        &st.path,
        st.tensors.iter().map(|(k, v)| (k.as_str(), v)),
    ) {
        clean(&e)?;
    }
    if let Ok(spec) = ck.meta("model_spec") {
        if let Ok(spec) = serde_json::from_str::<ModelSpec>(spec) {
            let _ = spec.parameter_count();
            if let Err(e) = spec.check_size() {
                clean(&e)?;
            }
        }
    }
    Ok(true)
}

/// Mutate the JSON header of a safetensors file half the time (the tensor bytes are most of it).
fn mutate_st(rng: &mut ChaCha8Rng, base: &[u8], pool: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let hlen = base
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|&h| h <= base.len() - 8);
    match hlen {
        Some(h) if rng.random_bool(0.5) => {
            let header = mutate_bytes(rng, &base[8..8 + h], pool, dict);
            let keep_len = rng.random_bool(0.3);
            let len = if keep_len { h } else { header.len() } as u64;
            [&len.to_le_bytes()[..], &header, &base[8 + h..]].concat()
        }
        _ => mutate_bytes(rng, base, pool, dict),
    }
}

/// Safetensors files and kiln checkpoints (seeded with a real digits checkpoint).
pub fn safetensors() -> Target {
    let run = crate::cli::digits_run();
    let real = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    Target {
        name: "safetensors",
        seeds: vec![
            real,
            b"\x02\x00\x00\x00\x00\x00\x00\x00{}".to_vec(),
            vec![0xff; 16],
        ],
        dict: &[
            b"{",
            b"}",
            b"\"dtype\"",
            b"\"shape\"",
            b"\"data_offsets\"",
            b"\"F16\"",
            b"\"I64\"",
            b"\"__metadata__\"",
            b"\"format\"",
            b"[4000000000,128]",
            b"\\\"",
            b"[]",
            b"[0,0]",
        ],
        max_len: 4 << 20,
        limit: Duration::from_secs(60),
        exec: st_exec,
        mutate: mutate_st,
    }
}

fn image_exec(input: &[u8]) -> Verdict {
    let root = scratch("image");
    for class in ["a", "b"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    std::fs::write(root.join("a/x.png"), input).unwrap();
    std::fs::write(root.join("b/ok.png"), png(4, 4)).unwrap();
    let decoded = match decode_image(&root.join("a/x.png")) {
        Ok(img) => img,
        Err(e) => return clean(&e),
    };
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err("an image of no pixels was decoded".into());
    }
    let opts = ImageOptions {
        size: Some((6, 5)),
        channels: Channels::Infer,
    };
    let folder = match ImageFolder::load(&root, &opts) {
        Ok(f) => f,
        Err(e) => return clean(&e),
    };
    check_dataset("image folder", &folder.dataset)?;
    if folder
        .dataset
        .features()
        .iter()
        .any(|&v| !(0.0..=1.0).contains(&v))
    {
        return Err("pixel values outside [0, 1]".into());
    }
    Ok(true)
}

fn encode(img: image::DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, f).unwrap();
    out.into_inner()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 40, y as u8 * 50, 128]));
    encode(img.into(), ImageFormat::Png)
}

/// PNG and JPEG files through `decode_image` and `ImageFolder::load` (resize, channels).
pub fn image() -> Target {
    let grey = image::GrayImage::from_fn(7, 3, |x, _| image::Luma([x as u8 * 30]));
    let jpeg = encode(
        image::DynamicImage::ImageRgb8(RgbImage::new(9, 9)),
        ImageFormat::Jpeg,
    );
    let mut huge = png(4, 4);
    // IHDR width and height (bytes 16..24) claiming 100000 x 100000.
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    Target {
        name: "image",
        seeds: vec![
            png(5, 4),
            encode(grey.into(), ImageFormat::Png),
            jpeg.clone(),
            huge,
            png(5, 4)[..30].to_vec(),
            jpeg[..jpeg.len() / 2].to_vec(),
            b"not an image".to_vec(),
        ],
        dict: &[
            b"IHDR",
            b"IDAT",
            b"IEND",
            b"\xff\xd8",
            b"\xff\xd9",
            b"\xff\xc0",
        ],
        max_len: 1 << 16,
        limit: Duration::from_secs(20),
        exec: image_exec,
        mutate: mutate_bytes,
    }
}
