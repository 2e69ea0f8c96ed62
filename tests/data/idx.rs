//! IDX files (raw and gzipped), their errors, and Fashion-MNIST.

use crate::common::assert_mentions;
use std::io::Write;
use std::path::PathBuf;

use kiln::data::*;

use super::tmp_dir;

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_round_trip_raw_and_gzipped() {
    let pixels: Vec<u8> = (0..3 * 2 * 3).map(|i| (i * 15) as u8).collect(); // (3, 2, 3)
    let images = idx_bytes(0x803, &[3, 2, 3], &pixels);
    let labels = idx_bytes(0x801, &[3], &[4, 0, 9]);
    for zip in [false, true] {
        let (i, l) = if zip {
            (gz(&images), gz(&labels))
        } else {
            (images.clone(), labels.clone())
        };
        let test = if zip { "idx-gz" } else { "idx-raw" };
        let dir = tmp_dir(test);
        std::fs::write(dir.join("img"), i).unwrap();
        std::fs::write(dir.join("lab"), l).unwrap();
        let ds = load_idx_pair(&dir.join("img"), &dir.join("lab")).unwrap();
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.feature_shape(), vec![6]);
        assert_eq!(ds.labels().unwrap(), &[4, 0, 9]);
        assert_eq!(ds.num_classes(), Some(10));
        let want: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(ds.features(), &want[..]);
        assert_eq!(
            ds.reshape(vec![1, 2, 3]).unwrap().batch(&[1]).x_shape,
            vec![1, 1, 2, 3]
        );
    }
}

#[test]
fn idx_bad_magic_truncation_and_mismatch_are_errors_naming_the_file() {
    let img = idx_bytes(0x803, &[2, 2, 2], &[0; 8]);
    let err = parse_idx(&idx_bytes(0x801, &[8], &[0; 8]), 3, "x.idx")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("x.idx: bad magic number 0x00000801 (IDX labels); expected 0x00000803"),
        "{err}"
    );
    let err = parse_idx(b"PK\x03\x04junk", 3, "x.idx")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an IDX file"), "{err}");
    let err = parse_idx(&img[..img.len() - 3], 3, "x.idx")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated: the header says 2 x 2 x 2 = 8 bytes of data, found 5"),
        "{err}"
    );
    assert!(
        parse_idx(&img[..9], 3, "x.idx")
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    assert!(parse_idx(&[img.clone(), vec![0]].concat(), 3, "x.idx").is_err());
    // A truncated gzip stream and a count mismatch between the two files.
    let dir = tmp_dir("idx-bad");
    let z = gz(&img);
    std::fs::write(dir.join("cut.gz"), &z[..z.len() / 2]).unwrap();
    std::fs::write(dir.join("img"), &img).unwrap();
    std::fs::write(dir.join("lab"), idx_bytes(0x801, &[3], &[0, 1, 2])).unwrap();
    let err = load_idx_pair(&dir.join("cut.gz"), &dir.join("lab"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut.gz"), "{err}");
    let err = load_idx_pair(&dir.join("img"), &dir.join("lab"))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["2 images", "3 labels"]);
    let err = load_idx_pair(&dir.join("nope"), &dir.join("lab"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn fashion_mnist_missing_says_how_to_install_and_where_it_looked() {
    let dir = tmp_dir("fashion-empty");
    let err = fashion_mnist(Some(&dir)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("apt-get install dataset-fashion-mnist"),
        "{msg}"
    );
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("train-images-idx3-ubyte"), "{msg}");
    assert!(matches!(err, DataError::NotInstalled { ref missing, .. } if missing.len() == 4));
}

#[test]
fn fashion_mnist_reads_the_four_files_with_class_names() {
    let dir = tmp_dir("fashion-small");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.join(name), bytes).unwrap();
    write(
        "train-images-idx3-ubyte.gz",
        gz(&idx_bytes(0x803, &[2, 28, 28], &[255; 2 * 784])),
    );
    write(
        "train-labels-idx1-ubyte.gz",
        gz(&idx_bytes(0x801, &[2], &[9, 1])),
    );
    write(
        "t10k-images-idx3-ubyte",
        idx_bytes(0x803, &[1, 28, 28], &[0; 784]),
    );
    write("t10k-labels-idx1-ubyte", idx_bytes(0x801, &[1], &[0]));
    let (train, test) = fashion_mnist(Some(&dir)).unwrap();
    assert_eq!((train.len(), test.len()), (2, 1));
    assert_eq!(
        (train.num_classes(), test.num_classes()),
        (Some(10), Some(10))
    );
    assert_eq!(train.class_names().unwrap()[9], "Ankle boot");
    assert_eq!(test.class_names().unwrap()[0], "T-shirt/top");
    assert_eq!(train.feature_shape(), vec![784]);
    assert!(train.features().iter().all(|&v| v == 1.0));
    write("t10k-labels-idx1-ubyte", idx_bytes(0x801, &[1], &[10]));
    assert!(
        fashion_mnist(Some(&dir))
            .unwrap_err()
            .to_string()
            .contains("10 classes")
    );
}

/// The real Fashion-MNIST (`apt-get install dataset-fashion-mnist`, or `KILN_FASHION_MNIST` set
/// to a directory holding the four files). Skipped loudly when it is not
/// installed (`kernels/tests/kernels/common/skip.rs`: a failure under CI).
#[test]
fn fashion_mnist_installed() {
    let dir = std::env::var_os("KILN_FASHION_MNIST").map(PathBuf::from);
    let probe = dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(kiln::data::FASHION_MNIST_DIR));
    if !probe.exists() {
        return crate::common::skip::skip(
            "the installed Fashion-MNIST",
            &format!("Fashion-MNIST is not installed at {}", probe.display()),
            "apt-get install -y dataset-fashion-mnist (or set KILN_FASHION_MNIST)",
        );
    }
    let (train, test) = fashion_mnist(dir.as_deref()).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.feature_shape(), vec![784]);
    // The classes are balanced: 6,000 and 1,000 of each.
    assert_eq!(train.class_counts().unwrap(), vec![6000; 10]);
    assert_eq!(test.class_counts().unwrap(), vec![1000; 10]);
    let mean = train.features().iter().map(|&v| v as f64).sum::<f64>() / (60_000.0 * 784.0);
    assert!((mean - 0.286).abs() < 0.001, "mean pixel {mean}"); // 72.94 / 255
}
