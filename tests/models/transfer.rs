//! Transfer learning: loading pretrained weights by name (and its errors), freezing by name
//! pattern, head replacement on every zoo model, unfreezing later at a lower learning rate, the
//! digits 0-4 -> 5-9 demo in small form, and the `kiln train` flags.

use crate::common;

#[allow(dead_code)]
#[path = "../../examples/transfer_digits.rs"]
mod demo;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use kiln::Tensor;
use kiln::data::classes;
use kiln::models::{LeNet, Mlp, ModelSpec, ResNet18, Vgg};
use kiln::nn::Module;
use kiln::nn::load::LoadOptions;
use kiln::nn::{freeze, load};
use kiln::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use kiln::train::checkpoint;
use kiln::train::transfer;

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-transfer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lenet(classes: usize) -> LeNet {
    LeNet::new_on(&gpu(), (1, 8, 8), classes).unwrap()
}

/// Save `tensors` as a kiln checkpoint (`model.<name>`).
fn save(path: &Path, tensors: Vec<(String, Tensor)>) {
    let named = tensors
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect::<Vec<_>>();
    checkpoint::save(path, &named, &BTreeMap::new()).unwrap();
}

/// A fresh LeNet of `classes` classes saved as a kiln checkpoint in `dir`: the model and the file.
fn saved_lenet(dir: &Path, classes: usize) -> (LeNet, PathBuf) {
    let m = lenet(classes);
    let file = dir.join(format!("lenet{classes}.safetensors"));
    save(&file, m.named_parameters());
    (m, file)
}

fn values(m: &dyn Module) -> BTreeMap<String, Vec<f32>> {
    m.named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec::<f32>().unwrap()))
        .collect()
}

#[test]
fn loads_every_tensor_by_name() {
    let d = scratch_dir("load");
    let (src, file) = saved_lenet(&d, 5);
    let dst = lenet(5);
    assert_ne!(values(&src), values(&dst), "two fresh models should differ");
    let r = load::load_pretrained(&dst, &file, &LoadOptions::default()).unwrap();
    assert_eq!(r.loaded.len(), 10);
    assert!(r.skipped.is_empty() && r.missing.is_empty() && r.unexpected.is_empty());
    assert_eq!(values(&src), values(&dst));
}

#[test]
fn load_error_lists_every_missing_unexpected_and_misshaped_tensor() {
    let d = scratch_dir("errors");
    let file = d.join("bad.safetensors");
    let g = gpu();
    let mut tensors = lenet(5).named_parameters();
    // Missing: two tensors dropped. Unexpected: two extra. Mis-shaped: two with other shapes.
    tensors.retain(|(n, _)| n != "features.0.bias" && n != "classifier.2.bias");
    tensors.push(("extra.weight".into(), Tensor::zeros_on(&g, &[3]).unwrap()));
    tensors.push(("extra.bias".into(), Tensor::zeros_on(&g, &[1]).unwrap()));
    for (n, t) in tensors.iter_mut() {
        if n == "classifier.0.weight" {
            *t = Tensor::zeros_on(&g, &[120, 7]).unwrap();
        }
        if n == "features.3.bias" {
            *t = Tensor::zeros_on(&g, &[15]).unwrap();
        }
    }
    save(&file, tensors);
    let dst = lenet(5);
    let before = values(&dst);
    let err = load::load_pretrained(&dst, &file, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    for needle in [
        "bad.safetensors",
        "missing from the file (2): features.0.bias, classifier.2.bias",
        "unexpected in the file (2): extra.bias, extra.weight",
        "classifier.0.weight: file [120, 7] F32, model [120, 64] F32",
        "features.3.bias: file [15] F32, model [16] F32",
        "--init-skip",
    ] {
        assert!(err.contains(needle), "`{needle}` not in:\n{err}");
    }
    assert_eq!(before, values(&dst), "a failed load must change nothing");

    // Non-strict tolerates missing and unexpected tensors, never mis-shaped ones.
    let loose = LoadOptions {
        strict: false,
        ..Default::default()
    };
    let err = load::load_pretrained(&dst, &file, &loose)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mis-shaped (2)") && !err.contains("missing"),
        "{err}"
    );
    let loose_skip = LoadOptions {
        strict: false,
        skip: vec!["classifier.0.weight".into(), "features.3".into()],
        head: None,
    };
    let r = load::load_pretrained(&dst, &file, &loose_skip).unwrap();
    assert_eq!(r.missing, ["features.0.bias", "classifier.2.bias"]);
    assert_eq!(r.unexpected, ["extra.bias", "extra.weight"]);
    assert_eq!(
        r.skipped,
        [
            "features.3.weight",
            "features.3.bias",
            "classifier.0.weight"
        ]
    );
    assert_eq!(r.loaded.len(), 5);
}

#[test]
fn a_head_with_another_class_count_is_reinitialised_not_an_error() {
    let d = scratch_dir("head");
    let (_, ten) = saved_lenet(&d, 10);
    let dst = lenet(3);
    let fresh_head = dst.named_parameters()[9].1.to_vec::<f32>().unwrap();
    let opts = LoadOptions {
        head: Some("classifier.4".into()),
        ..Default::default()
    };
    // A checkpoint file named directly (run directories are tried in the CLI test).
    let r = load::load_pretrained(&dst, &ten, &opts).unwrap();
    assert_eq!(r.head_replaced, Some(("classifier.4".into(), 10, 3)));
    assert_eq!(r.skipped, ["classifier.4.weight", "classifier.4.bias"]);
    assert_eq!(r.loaded.len(), 8);
    assert_eq!(
        dst.named_parameters()[9].1.to_vec::<f32>().unwrap(),
        fresh_head
    );
    assert!(r.to_string().contains("head classifier.4 replaced"));
    // Without the head option the same file is a mis-shaped error.
    let err = load::load_pretrained(&dst, &ten, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("classifier.4.weight: file [10, 84]"), "{err}");
    // A directory without checkpoints is a clear error.
    let err = load::load_pretrained(&dst, &d, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("best.safetensors"), "{err}");
}

#[test]
fn patterns_select_whole_names_or_module_prefixes() {
    use kiln::io::names::pattern_matches as m;
    assert!(m("features.*", "features.0.weight"));
    assert!(m("features", "features.0.weight"));
    assert!(m("features.0", "features.0.bias"));
    assert!(!m("features.0", "features.03.bias"));
    assert!(m("*.bias", "layer1.0.bn1.bias"));
    assert!(!m("*.bias", "layer1.0.bn1.weight"));
    assert!(m("layer?.0.*", "layer3.0.conv1.weight"));
    assert!(m("*", "fc.weight"));
    assert!(m("fc.weight", "fc.weight"));
    assert!(!m("fc.weigh", "fc.weight"));
    assert!(m("*conv*", "layer1.0.conv2.weight"));
}

#[test]
fn frozen_parameters_stay_put_and_get_no_optimizer_state() {
    let net = lenet(5);
    let frozen = freeze::freeze(&net, &["features.*", "*.bias"]).unwrap();
    assert_eq!(frozen.len(), 7); // 2 conv weights + 5 biases
    let c = freeze::param_counts(&net);
    assert_eq!((c.trainable_tensors, c.total_tensors), (3, 10));
    assert_eq!(c.trainable, net.num_trainable_parameters());
    assert_eq!(c.total, net.num_parameters());
    let before = values(&net);
    let mut opt = Adam::new(net.named_parameters(), AdamConfig::adam(0.01)).unwrap();
    let x =
        Tensor::from_slice_on(&gpu(), &rand_vec(4 * 64, seed("x"), 0.0, 1.0), &[4, 64]).unwrap();
    let y = Tensor::from_slice_on(&gpu(), &[0u32, 1, 2, 3], &[4]).unwrap();
    for _ in 0..3 {
        classifier_step(&net, &mut opt, &x, &y);
    }
    let after = values(&net);
    for (n, v) in &after {
        let changed = v != &before[n];
        assert_eq!(changed, !frozen.contains(n), "{n}: changed = {changed}");
    }
    let state = opt.state();
    for (n, _) in &state.tensors {
        let p = n.split_once('.').unwrap().1;
        assert!(!frozen.contains(&p.to_string()), "state for frozen {n}");
    }
    assert_eq!(
        state.tensors.len(),
        3 * 3,
        "exp_avg, exp_avg_sq, step of 3 trainable"
    );
    // A pattern that selects nothing is an error naming it.
    let err = freeze::freeze(&net, &["feature.*"])
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["feature.*", "features.0.weight"]);
}

#[test]
fn unfreezing_later_trains_at_the_lower_rate() {
    let g = gpu();
    let net = Mlp::new_on(&g, 4, &[3], 2, "tanh", 0.0).unwrap();
    freeze::freeze(&net, &["layers.0"]).unwrap();
    let (lr, scale) = (0.5f32, 0.1f32);
    let mut opt = Sgd::new(net.named_parameters(), SgdConfig::new(lr)).unwrap();
    let x = Tensor::from_slice_on(&g, &rand_vec(8, seed("u"), -1.0, 1.0), &[2, 4]).unwrap();
    let y = Tensor::from_slice_on(&g, &[0u32, 1], &[2]).unwrap();
    let step = |opt: &mut Sgd| {
        net.forward(&x)
            .unwrap()
            .cross_entropy(&y)
            .unwrap()
            .backward()
            .unwrap();
        let grads: BTreeMap<String, Option<Vec<f32>>> = net
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (n, t.grad().map(|g| g.to_vec::<f32>().unwrap())))
            .collect();
        let before = values(&net);
        opt.step().unwrap();
        opt.zero_grad().unwrap();
        (before, grads, values(&net))
    };
    let (before, grads, after) = step(&mut opt);
    assert_eq!(before["layers.0.weight"], after["layers.0.weight"]);
    assert!(grads["layers.0.weight"].is_none(), "frozen: no gradient");
    let names = transfer::unfreeze_with_lr(&net, &mut opt, &["layers.0"], scale).unwrap();
    assert_eq!(names, ["layers.0.weight", "layers.0.bias"]);
    assert_eq!(opt.lr_scale("layers.0.weight"), Some(scale));
    assert_eq!(opt.lr_scale("layers.2.weight"), Some(1.0));
    let (before, grads, after) = step(&mut opt);
    for (n, s) in [
        ("layers.0.weight", scale),
        ("layers.0.bias", scale),
        ("layers.2.weight", 1.0),
    ] {
        let gr = grads[n].as_ref().expect("a gradient after unfreezing");
        assert!(gr.iter().any(|v| v.abs() > 1e-6), "{n}: zero gradient");
        for ((b, a), gv) in before[n].iter().zip(&after[n]).zip(gr) {
            let want = b - lr * s * gv;
            assert!(
                (a - want).abs() <= 1e-6 + 1e-5 * want.abs(),
                "{n}: {a} vs {want}"
            );
        }
    }
    // Unknown names and bad scales are errors.
    assert!(opt.set_lr_scale(&["nope".into()], 0.1).is_err());
    assert!(opt.set_lr_scale(&["layers.0.bias".into()], 0.0).is_err());
}

#[test]
fn every_zoo_model_has_a_named_replaceable_head() {
    let g = gpu();
    let x = Tensor::zeros_on(&g, &[2, 64]).unwrap();
    let specs = [
        ModelSpec::from_name("mlp", 64, 10, None).unwrap(),
        ModelSpec::from_name("linear", 64, 10, None).unwrap(),
        ModelSpec::from_name("lenet", 64, 10, Some((1, 8, 8))).unwrap(),
        ModelSpec::from_name("vgg", 64, 10, Some((1, 8, 8))).unwrap(),
        ModelSpec::from_name("resnet18", 64, 10, Some((1, 8, 8))).unwrap(),
    ];
    for spec in specs {
        let head = spec.head_name();
        let shape_of = |m: &dyn Module| -> Vec<usize> {
            let p = m.named_parameters();
            let last = p
                .iter()
                .rev()
                .find(|(n, _)| n.ends_with(".weight"))
                .unwrap();
            assert_eq!(last.0, format!("{head}.weight"), "{}: head", spec.name());
            last.1.shape().to_vec()
        };
        assert_eq!(shape_of(spec.build(&g).unwrap().as_ref())[0], 10);
        let seven = spec.with_outputs(7);
        assert_eq!(seven.outputs(), 7);
        let m = seven.build(&g).unwrap();
        assert_eq!(shape_of(m.as_ref())[0], 7);
        assert_eq!(m.forward(&x).unwrap().shape(), [2, 7]);
    }
    // In place on the concrete models: the head changes, the trunk keeps its weights.
    let mut le = lenet(10);
    let trunk = le.named_parameters()[0].1.to_vec::<f32>().unwrap();
    le.replace_head(3).unwrap();
    assert_eq!(le.named_parameters()[0].1.to_vec::<f32>().unwrap(), trunk);
    assert_eq!(le.named_parameters()[8].1.shape(), [3, 84]);
    assert_eq!(le.forward(&x).unwrap().shape(), [2, 3]);
    let mut vgg = Vgg::new_on(&g, (1, 8, 8), 10).unwrap();
    vgg.replace_head(4).unwrap();
    assert_eq!(vgg.forward(&x).unwrap().shape(), [2, 4]);
    let mut rn = ResNet18::new_on(&g, (1, 8, 8), 10).unwrap();
    rn.replace_head(2).unwrap();
    assert_eq!(rn.forward(&x).unwrap().shape(), [2, 2]);
    let mut mlp = Mlp::new_on(&g, 64, &[16], 10, "relu", 0.1).unwrap();
    mlp.replace_head(6).unwrap();
    assert_eq!(mlp.forward(&x).unwrap().shape(), [2, 6]);
    assert!(mlp.replace_head(0).is_err());
}

#[test]
fn class_subsets_are_relabelled_with_names_kept() {
    use kiln::data::Dataset;
    assert_eq!(classes::parse_classes("0-4").unwrap(), [0, 1, 2, 3, 4]);
    assert_eq!(
        classes::parse_classes("5,6, 7,8,9").unwrap(),
        [5, 6, 7, 8, 9]
    );
    assert_eq!(classes::parse_classes("9,0-1").unwrap(), [9, 0, 1]);
    for bad in ["", "4-2", "1,1", "a-3", "1-"] {
        assert!(classes::parse_classes(bad).is_err(), "{bad:?}");
    }
    let all = kiln::data::digits().unwrap();
    let sub = classes::select_classes(&all, &[9, 0]).unwrap();
    let want = all
        .labels()
        .unwrap()
        .iter()
        .filter(|&&l| l == 9 || l == 0)
        .count();
    assert_eq!(sub.len(), want);
    assert_eq!(sub.class_names().unwrap(), ["9", "0"]);
    let first9 = all
        .labels()
        .unwrap()
        .iter()
        .position(|&l| l == 9 || l == 0)
        .unwrap();
    let relabelled = if all.labels().unwrap()[first9] == 9 {
        0
    } else {
        1
    };
    assert_eq!(sub.labels().unwrap()[0], relabelled);
    assert_eq!(sub.example(0).unwrap(), all.example(first9).unwrap());
    assert!(classes::select_classes(&all, &[10]).is_err());
}

#[test]
fn small_demo_transfer_reaches_the_target_in_fewer_steps_than_scratch() {
    let b = demo::Budget {
        pretrain_steps: 200,
        steps: 100,
        eval_every: 5,
        target: 0.75,
        ..demo::Budget::full()
    };
    let d = demo::run_demo(&gpu(), &b).unwrap();
    println!(
        "pretrain {:.3}; transfer {:?} final {:.3}; scratch {:?} final {:.3}",
        d.pretrain_accuracy,
        d.transfer.steps_to_target,
        d.transfer.final_accuracy,
        d.scratch.steps_to_target,
        d.scratch.final_accuracy
    );
    assert!(
        d.pretrain_accuracy > 0.9,
        "pretraining failed: {}",
        d.pretrain_accuracy
    );
    assert_eq!(
        d.load_report.skipped,
        ["classifier.4.weight", "classifier.4.bias"]
    );
    assert!(d.transfer.params.0 < d.transfer.params.1, "trunk frozen");
    let t = d
        .transfer
        .steps_to_target
        .expect("transfer reaches the target");
    let s = d.scratch.steps_to_target.unwrap_or(u64::MAX);
    assert!(t < s, "transfer took {t} steps, scratch {s}");
}

use crate::cli_util;
use cli_util::kiln;

#[test]
fn cli_init_from_freeze_unfreeze_and_classes() {
    let d = scratch_dir("cli");
    let (pre, tl, three) = (d.join("pre"), d.join("tl"), d.join("three"));
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, out, err) = kiln(&[
        "train",
        "--model",
        "lenet",
        "--classes",
        "0-4",
        "--epochs",
        "2",
        "--out",
        &p(&pre),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("classes 0-4 of 10"), "{out}");
    // Same class count, new classes: --new-head; frozen trunk unfrozen at epoch 2.
    let (ok, out, err) = kiln(&[
        "train",
        "--model",
        "lenet",
        "--classes",
        "5,6,7,8,9",
        "--epochs",
        "2",
        "--out",
        &p(&tl),
        "--init-from",
        &p(&pre),
        "--new-head",
        "--freeze",
        "features.*",
        "--unfreeze-at",
        "2",
        "--unfreeze-lr-scale",
        "0.1",
    ]);
    assert!(ok, "{err}");
    for needle in [
        "best.safetensors",
        "loaded 8 tensors",
        "skipped (kept fresh) 2: classifier.4.weight, classifier.4.bias",
        "params: 18,389 trainable of 20,961 (6 of 10 tensors)",
        "epoch 2: unfroze 4 tensors at 0.1 x lr",
    ] {
        assert!(out.contains(needle), "`{needle}` not in:\n{out}");
    }
    let cfg = std::fs::read_to_string(tl.join("config.toml")).unwrap();
    assert_mentions(&cfg, &["freeze = [\"features.*\"]", "unfreeze_at = 2"]);
    // Another class count: the head is replaced automatically, and said so.
    let lenet_5_7 = |out: &Path, init: &Path, extra: &[&str]| {
        let (out, init) = (p(out), p(init));
        let mut args = vec![
            "train",
            "--model",
            "lenet",
            "--classes",
            "5-7",
            "--epochs",
            "1",
        ];
        args.extend(["--out", &out, "--init-from", &init]);
        args.extend_from_slice(extra);
        kiln(&args)
    };
    let (ok, out, err) = lenet_5_7(&three, &pre.join("checkpoint.safetensors"), &["--quiet"]);
    assert!(ok, "{err}");
    assert!(!out.contains("loaded"), "quiet: {out}");
    let (ok, out, err) = lenet_5_7(&d.join("three-b"), &pre, &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("head classifier.4 replaced: the checkpoint has 5 outputs, the model 3"),
        "{out}"
    );
    // Errors: one clear paragraph each.
    for (args, needle) in [
        (vec!["--freeze", "nope.*"], "--freeze"),
        (
            vec!["--init-from", "/nonexistent/x.safetensors"],
            "--init-from",
        ),
        (vec!["--classes", "3-1"], "--classes"),
    ] {
        let mut all = vec!["train", "--model", "lenet", "--epochs", "1", "--quiet"];
        let o = d.join(format!("bad-{}", needle.trim_start_matches('-')));
        let o = p(&o);
        all.extend(["--out", &o]);
        all.extend(args);
        let (ok, _, err) = kiln(&all);
        assert!(
            !ok && err.contains(needle) && !err.contains("panicked"),
            "{err}"
        );
    }
    // Loading an MLP checkpoint into a LeNet lists the mismatch.
    let (ok, _, err) = kiln(&[
        "train",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        &p(&d.join("mlp")),
        "--init-from",
        &p(&pre),
    ]);
    assert!(
        !ok && err.contains("missing from the file") && err.contains("unexpected"),
        "{err}"
    );
}
