//! The convolutional model zoo: output shapes on images and flat rows, PyTorch parameter names
//! and counts, train/eval propagation to BatchNorm, a short LeNet training on the digits, and
//! `ModelSpec::from_name` with and without image data.

use crate::common;

use std::sync::Arc;

use common::gpu;
use kiln::Tensor;
use kiln::cli::spec::RunSpec;
use kiln::data::{DataLoader, Dataset, SplitFractions, digits_images, stratified_split};
use kiln::models::{LeNet, ModelSpec, ResNet18, Vgg};
use kiln::nn::Module;
use kiln::optim::{Adam, AdamConfig, Optimizer};
use kiln::train::{Task, evaluate, upload};

const NAMES: [&str; 3] = ["lenet", "vgg", "resnet18"];

fn build(name: &str, image: (usize, usize, usize), classes: usize) -> Box<dyn Module> {
    let (c, h, w) = image;
    ModelSpec::from_name(name, c * h * w, classes, Some(image))
        .unwrap()
        .build(&gpu())
        .unwrap()
}

fn names(m: &dyn Module) -> Vec<String> {
    m.named_parameters().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn every_model_maps_images_and_flat_rows_to_logits() {
    for name in NAMES {
        for (h, w) in [(8, 8), (28, 28)] {
            let m = build(name, (1, h, w), 10);
            let x = Tensor::randn(&[2, 1, h, w], 7).unwrap(); // (B, C, H, W)
            let y = m.forward(&x).unwrap();
            assert_eq!(y.shape(), [2, 10], "{name} on {h}x{w}");
            let flat = m.forward(&x.reshape(&[2, h * w]).unwrap()).unwrap(); // (B, C*H*W)
            assert_eq!(flat.shape(), [2, 10], "{name} on flat {h}x{w}");
            let (a, b) = (y.to_vec::<f32>().unwrap(), flat.to_vec::<f32>().unwrap());
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(
                    p.is_finite() && (p - q).abs() <= 1e-4,
                    "{name}[{i}]: {p} vs {q}"
                );
            }
        }
        // Three channels and 32x32 (CIFAR-sized) also fit.
        let m = build(name, (3, 32, 32), 5);
        let x = Tensor::randn(&[2, 3, 32, 32], 8).unwrap();
        assert_eq!(m.forward(&x).unwrap().shape(), [2, 5], "{name} on 3x32x32");
    }
}

#[test]
fn a_wrongly_shaped_input_is_an_error_naming_the_expected_shape() {
    let m = build("lenet", (1, 8, 8), 10);
    let e = m
        .forward(&Tensor::zeros(&[2, 63]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("(B, 1, 8, 8)") && e.contains("64"), "{e}");
}

#[test]
fn lenet_has_the_classic_parameter_names_and_count() {
    let m = LeNet::new_on(&gpu(), (1, 28, 28), 10).unwrap();
    assert_eq!(
        names(&m),
        [
            "features.0.weight",
            "features.0.bias",
            "features.3.weight",
            "features.3.bias",
            "classifier.0.weight",
            "classifier.0.bias",
            "classifier.2.weight",
            "classifier.2.bias",
            "classifier.4.weight",
            "classifier.4.bias",
        ]
    );
    // LeNet-5: 156 + 2,416 + 48,120 + 10,164 + 850.
    assert_eq!(m.num_parameters(), 61_706);
    assert!(m.named_buffers().is_empty());
    let shapes: Vec<Vec<usize>> = m
        .named_parameters()
        .iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], [6, 1, 5, 5]);
    assert_eq!(shapes[4], [120, 400]);
    // On 8x8 digits the second convolution is padded: 16 * 2 * 2 features reach the classifier.
    let small = LeNet::new_on(&gpu(), (1, 8, 8), 10).unwrap();
    assert_eq!(small.named_parameters()[4].1.shape(), [120, 64]);
}

#[test]
fn resnet18_names_follow_torchvision() {
    let m = ResNet18::new_on(&gpu(), (1, 28, 28), 10).unwrap();
    let n = names(&m);
    for want in [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(n.iter().any(|x| x == want), "missing {want} in {n:?}");
    }
    // No bias on convolutions that feed a BatchNorm; no projection where the shape is kept.
    assert!(
        !n.iter()
            .any(|x| x == "conv1.bias" || x == "layer1.0.conv1.bias")
    );
    assert!(!n.iter().any(|x| x.starts_with("layer1.0.downsample")));
    // 1 stem conv + 16 block convs + 3 projections, each with a BatchNorm (2 params), + fc (2).
    let convs = n
        .iter()
        .filter(|x| x.contains("conv") && x.ends_with("weight"))
        .count();
    let projections = n
        .iter()
        .filter(|x| x.ends_with("downsample.0.weight"))
        .count();
    assert_eq!((convs, projections), (17, 3));
    assert_eq!(n.len(), 20 + 20 * 2 + 2);
    let b: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert!(b.iter().any(|x| x == "layer1.0.bn1.running_mean"), "{b:?}");
    assert!(b.iter().any(|x| x == "layer3.0.downsample.1.running_var"));
    assert_eq!(b.len(), 20 * 3);
    assert_eq!(m.named_parameters()[0].1.shape(), [16, 1, 3, 3]);
    assert_eq!(m.named_parameters().last().unwrap().1.shape(), [10]);
}

#[test]
fn vgg_names_and_buffers() {
    let m = Vgg::new_on(&gpu(), (1, 28, 28), 10).unwrap();
    let n = names(&m);
    assert_eq!(
        &n[..4],
        [
            "features.0.weight",
            "features.0.bias",
            "features.1.weight",
            "features.1.bias"
        ]
    );
    // 3 blocks x 2 convs, each with a BatchNorm, then one Linear.
    assert_eq!(n.len(), 6 * 4 + 2);
    assert_eq!(n[n.len() - 2], "classifier.0.weight");
    assert_eq!(m.named_parameters()[n.len() - 2].1.shape(), [10, 64]);
    let b: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert!(b.iter().any(|x| x == "features.1.running_mean"), "{b:?}");
    assert_eq!(b.len(), 6 * 3);
}

fn buffers(m: &dyn Module) -> Vec<f32> {
    m.named_buffers()
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .flat_map(|(_, t)| t.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn train_and_eval_modes_reach_every_batch_norm() {
    for name in ["vgg", "resnet18"] {
        let mut m = build(name, (1, 8, 8), 10);
        let x = Tensor::randn(&[4, 1, 8, 8], 3)
            .unwrap()
            .add_scalar(2.0)
            .unwrap();
        assert!(m.is_training());
        let before = buffers(m.as_ref());
        m.forward(&x).unwrap();
        let trained = buffers(m.as_ref());
        let changed = before.iter().zip(&trained).filter(|(a, b)| a != b).count();
        assert!(
            changed > before.len() / 2,
            "{name}: training moved {changed} of {} buffer values",
            before.len()
        );

        m.set_training(false);
        assert!(!m.is_training());
        let e1 = m.forward(&x).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(
            buffers(m.as_ref()),
            trained,
            "{name}: eval must not touch the buffers"
        );
        // Eval is deterministic and per-example: a batch of one gives the same logits.
        let one = m
            .forward(&x.narrow(0, 0, 1).unwrap())
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in one.iter().zip(&e1[..10]) {
            assert!((a - b).abs() <= 1e-4, "{name}: {a} vs {b}");
        }
        m.set_training(true);
        assert!(m.is_training());
    }
}

#[test]
fn lenet_learns_the_digits_in_a_few_epochs() {
    let gpu = gpu();
    kiln::nn::manual_seed(0);
    let all = digits_images().unwrap();
    let labels = all.labels().unwrap().to_vec();
    let f = SplitFractions {
        train: 0.8,
        val: 0.0,
        test: 0.2,
    };
    let s = stratified_split(&labels, f, 0);
    let train: Arc<dyn Dataset> = Arc::new(all.subset(&s.train).unwrap());
    let test = all.subset(&s.test).unwrap();
    let mut m = LeNet::new_on(&gpu, (1, 8, 8), 10).unwrap();
    let mut opt = Adam::new(m.named_parameters(), AdamConfig::adam(5e-3)).unwrap();
    let loader = DataLoader::new(train, 64).unwrap();
    let start = std::time::Instant::now();
    for epoch in 0..10 {
        for b in loader.epoch(epoch) {
            let (x, y) = upload(&gpu, &b).unwrap(); // (B, 1, 8, 8), (B)
            let loss = m.forward(&x).unwrap().cross_entropy(&y).unwrap();
            opt.zero_grad().unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
        }
    }
    let task = Task::Classification {
        class_names: (0..10).map(|d| d.to_string()).collect(),
    };
    let ev = evaluate(&gpu, &mut m, &task, &test, 256).unwrap();
    let acc = ev.classification.unwrap().accuracy;
    eprintln!(
        "lenet: 10 epochs in {:.1?}, test accuracy {acc:.4}",
        start.elapsed()
    );
    assert!(
        acc >= 0.93,
        "LeNet reached only {acc:.4} test accuracy on the digits after 6 epochs"
    );
}

#[test]
fn conv_models_need_image_data() {
    for name in NAMES {
        let e = ModelSpec::from_name(name, 7, 3, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "model {name} needs image data (digits or fashion-mnist)"
            )),
            "{e}"
        );
    }
    // Through the CLI's data preparation: the penguins CSV carries no image shape.
    let spec = RunSpec {
        model: "lenet".into(),
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/penguins.csv").into(),
        target: Some("species".into()),
        ..Default::default()
    };
    let data = spec.load_data().unwrap();
    assert_eq!(data.image, None);
    let e = ModelSpec::from_name("lenet", data.input, data.output, data.image).unwrap_err();
    assert!(e.to_string().contains("needs image data"), "{e}");
    // Built-in image data carries its shape, and the MLP still ignores it.
    let digits = RunSpec::default().load_data().unwrap();
    assert_eq!((digits.image, digits.input), (Some((1, 8, 8)), 64));
    let spec = ModelSpec::from_name("lenet", 64, 10, digits.image).unwrap();
    assert_eq!(
        spec,
        ModelSpec::LeNet {
            channels: 1,
            height: 8,
            width: 8,
            classes: 10
        }
    );
    assert_eq!((spec.name(), spec.input_len()), ("lenet", 64));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""kind":"lenet""#), "{json}");
    assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
    assert!(matches!(
        ModelSpec::from_name("mlp", 64, 10, digits.image).unwrap(),
        ModelSpec::Mlp { input: 64, .. }
    ));
    assert!(ModelSpec::from_name("lenet", 63, 10, digits.image).is_err());
    let e = ModelSpec::from_name("alexnet", 64, 10, digits.image)
        .unwrap_err()
        .to_string();
    assert!(e.contains("resnet18"), "{e}");
}
