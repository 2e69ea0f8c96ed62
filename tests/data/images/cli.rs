//! `kiln train --images DIR` end to end on a generated folder, then `kiln eval` and `kiln
//! predict` on the saved run.

use std::path::Path;

use super::cli_util::{kiln, s};
use super::{grey, scratch};

/// `kiln train --images <data> flags...`: (success, stdout, stderr).
fn train_images(data: &Path, flags: &[&str]) -> (bool, String, String) {
    kiln(&[&["train", "--images", s(data)], flags].concat())
}

/// Three classes of noisy 12x10 patterns: horizontal stripes, vertical stripes, a bright spot.
fn write_split(dir: &Path, per_class: u32, seed: u32) {
    let noise = |i: u32, x: u32, y: u32| {
        ((i.wrapping_mul(2654435761) ^ (x * 40503 + y * 9973 + seed)) % 41) as u8
    };
    for i in 0..per_class {
        let h = grey(12, 10, |x, y| {
            (if y % 4 < 2 { 200 } else { 30 }) + noise(i, x, y)
        });
        let v = grey(12, 10, |x, y| {
            (if x % 4 < 2 { 200 } else { 30 }) + noise(i, x, y)
        });
        let spot = grey(12, 10, |x, y| {
            let (dx, dy) = (x as i32 - 6, y as i32 - 5);
            (if dx * dx + dy * dy < 10 { 210 } else { 25 }) + noise(i, x, y)
        });
        // One file in four is a JPEG, to mix decoders.
        let ext = if i % 4 == 3 { "jpg" } else { "png" };
        for (class, img) in [("horizontal", h), ("vertical", v), ("spot", spot)] {
            let d = dir.join(class);
            std::fs::create_dir_all(&d).unwrap();
            img.save(d.join(format!("{i}.{ext}"))).unwrap();
        }
    }
}

#[test]
fn train_on_an_image_folder_then_eval_and_predict() {
    let root = scratch("cli");
    let data = root.join("pics");
    write_split(&data.join("train"), 24, 1);
    write_split(&data.join("test"), 6, 2);
    let run = root.join("run");
    let (ok, stdout, stderr) = train_images(
        &data,
        &[
            "--out",
            s(&run),
            "--image-size",
            "8",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "0.005",
            "--augment",
            "crop,flip",
            "--crop-padding",
            "1",
        ],
    );
    assert!(ok, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("8x8 images, 1 channel, 3 classes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lenet"),
        "images train a CNN by default: {stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.7,
        "3 epochs on easy patterns should beat chance (1/3) by far: {acc}"
    );
    assert_eq!(
        summary["test_examples"], 18,
        "the test/ folder is the test split"
    );
    assert_eq!(
        summary["class_names"],
        serde_json::json!(["horizontal", "spot", "vertical"])
    );
    // The checkpoint carries how pictures are prepared.
    let ck = kiln::train::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    let prep: kiln::data::images::ImagePrep =
        serde_json::from_str(ck.meta("image_prep").unwrap()).unwrap();
    assert_eq!(prep.shape(), (1, 8, 8));
    assert_eq!(prep.class_names, ["horizontal", "spot", "vertical"]);
    assert_eq!((prep.norm.mean.len(), prep.norm.std.len()), (1, 1));
    assert!(
        prep.norm.mean[0] > 0.1 && prep.norm.std[0] > 0.1,
        "{prep:?}"
    );
    // eval on a folder gives the test accuracy again (same files, same preparation).
    let (ok, stdout, stderr) = kiln(&["eval", s(&run), "--data", s(&data.join("test")), "--json"]);
    assert!(ok, "{stderr}");
    let ev: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(ev["examples"], 18);
    let eval_acc = ev["classification"]["accuracy"].as_f64().unwrap();
    let best = kiln(&["eval", s(&run), "--json"]);
    assert!(best.0, "{}", best.2);
    assert!(eval_acc > 0.7, "{eval_acc}");
    // predict on one picture and on a folder: one row per file, named by file.
    let one = data.join("test").join("spot").join("0.png");
    let (ok, stdout, stderr) = kiln(&["predict", s(&run), "--input", s(&one)]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "file,prediction,probability");
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[1].contains("0.png"), "{stdout}");
    let (ok, stdout, stderr) = kiln(&["predict", s(&run), "--input", s(&data.join("test"))]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 19, "header + 18 files:\n{stdout}");
    // A folder with an unknown class is refused with a clear error.
    let odd = root.join("odd");
    std::fs::create_dir_all(odd.join("zebra")).unwrap();
    grey(5, 5, |_, _| 9)
        .save(odd.join("zebra").join("z.png"))
        .unwrap();
    let (ok, _, stderr) = kiln(&["eval", s(&run), "--data", s(&odd)]);
    assert!(
        !ok && stderr.contains("zebra") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn image_flags_are_checked() {
    let root = scratch("flags");
    let (ok, _, stderr) = train_images(&root.join("missing"), &["--epochs", "1"]);
    assert!(
        !ok && stderr.contains("missing") && stderr.contains("not found"),
        "{stderr}"
    );
    let data = root.join("pics");
    write_split(&data, 3, 3);
    let (ok, _, stderr) = train_images(&data, &["--image-size", "8by8"]);
    assert!(!ok && stderr.contains("--image-size"), "{stderr}");
    // Absurd sizes are refused at once, naming the flag (not a 40 GB allocation).
    let (ok, _, stderr) = train_images(&data, &["--image-size", "100000"]);
    assert!(!ok && stderr.contains("--image-size 100000"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = train_images(
        &data,
        &[
            "--image-size",
            "8",
            "--augment",
            "crop",
            "--crop-padding",
            "100000",
        ],
    );
    assert!(!ok && stderr.contains("--crop-padding 100000"), "{stderr}");
    let (ok, _, stderr) = train_images(&data, &["--augment", "rotate"]);
    assert!(!ok && stderr.contains("rotate"), "{stderr}");
    let (ok, _, stderr) = kiln(&[
        "train",
        "--augment",
        "flip",
        "--data",
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/penguins.csv"),
        "--target",
        "species",
    ]);
    assert!(!ok && stderr.contains("needs image data"), "{stderr}");
}
