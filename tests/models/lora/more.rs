//! LoRA tests, continued.

use super::*;

#[test]
fn adapter_round_trip_in_peft_layout() {
    let dir = scratch_dir("roundtrip");
    let base = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let mut gpt = base.clone(); // shares the base weights
    let mut cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    cfg.dropout = 0.05;
    cfg.task_type = Some("CAUSAL_LM".into());
    cfg.base_model_name_or_path = Some("kiln-tiny-gpt".into());
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    randomise_lora(&gpt, "roundtrip");
    lora::set_training(&mut gpt, false);
    lora_io::save_adapter(&gpt, &cfg, &dir).unwrap();

    // Exact key names, shapes and the file's metadata.
    let w = read_weights(&dir.join(ADAPTER_WEIGHTS)).unwrap();
    let keys: Vec<&str> = w.keys().map(String::as_str).collect();
    let mut want = Vec::new();
    for i in 0..2 {
        for m in ["q_proj", "v_proj"] {
            for ab in ["A", "B"] {
                want.push(format!(
                    "base_model.model.blocks.{i}.attn.{m}.lora_{ab}.weight"
                ));
            }
        }
    }
    want.sort();
    assert_eq!(keys, want);
    let a = &w["base_model.model.blocks.0.attn.q_proj.lora_A.weight"];
    assert_eq!(a.shape, [4, 8]);
    let b = &w["base_model.model.blocks.1.attn.v_proj.lora_B.weight"];
    assert_eq!(b.shape, [8, 4]);
    let bytes = std::fs::read(dir.join(ADAPTER_WEIGHTS)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");

    // The config fields PEFT reads.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    assert_eq!(j["peft_type"], "LORA");
    assert_eq!(j["r"], 4);
    assert_eq!(j["lora_alpha"], 8.0);
    assert!((j["lora_dropout"].as_f64().unwrap() - 0.05).abs() < 1e-7);
    assert_eq!(j["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    assert_eq!(j["bias"], "none");
    assert_eq!(j["task_type"], "CAUSAL_LM");
    assert_eq!(j["base_model_name_or_path"], "kiln-tiny-gpt");
    assert_eq!(j["fan_in_fan_out"], false);
    assert_eq!(j["inference_mode"], true);
    assert!(!dir.join(format!("{ADAPTER_WEIGHTS}.tmp")).exists());

    // Load into a model without adapters: they are created, filled, and the output matches.
    let mut other = base.clone();
    let got = lora_io::load_adapter(&mut other, &dir).unwrap();
    assert_eq!(got, cfg);
    lora::set_training(&mut other, false);
    let saved = lora::lora_parameters(&gpt);
    let loaded = lora::lora_parameters(&other);
    assert_eq!(saved.len(), loaded.len());
    for ((n1, t1), (n2, t2)) in saved.iter().zip(&loaded) {
        assert_eq!(n1, n2);
        assert_eq!(
            t1.to_vec::<f32>().unwrap(),
            t2.to_vec::<f32>().unwrap(),
            "{n1}"
        );
        assert!(!t1.shares_storage(t2));
    }
    let x = ids(2, 4, "rt-ids");
    assert_eq!(
        gpt.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        other.forward(&x).unwrap().to_vec::<f32>().unwrap()
    );
    // And into a model that already has matching adapters.
    let mut third = base.clone();
    lora::apply_lora(&mut third, &cfg).unwrap();
    lora_io::load_adapter(&mut third, &dir).unwrap();
    assert_eq!(
        lora::lora_parameters(&third)[1].1.to_vec::<f32>().unwrap(),
        saved[1].1.to_vec::<f32>().unwrap()
    );
}

/// Rewrite one field of the saved config.
fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join(ADAPTER_CONFIG);
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    j[key] = value;
    std::fs::write(&p, serde_json::to_string(&j).unwrap()).unwrap();
}

#[test]
fn load_errors_are_clear_and_change_nothing() {
    let dir = scratch_dir("errors");
    let mut gpt = Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let cfg = LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]);
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    lora_io::save_adapter(&gpt, &cfg, &dir).unwrap();
    let fresh = || Gpt::new_on(&gpu(), gpt_cfg()).unwrap();
    let load_err = |m: &mut Gpt| lora_io::load_adapter(m, &dir).unwrap_err().to_string();

    // No directory.
    let e = lora_io::load_adapter(&mut fresh(), &dir.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(ADAPTER_CONFIG), "{e}");

    // A missing tensor (the config names k_proj, the file has none).
    edit_config(
        &dir,
        "target_modules",
        serde_json::json!(["q_proj", "k_proj", "v_proj"]),
    );
    let mut m = fresh();
    let e = load_err(&mut m);
    assert!(
        e.contains("missing from the file (4)") && e.contains("blocks.0.attn.k_proj.lora_A.weight"),
        "{e}"
    );
    let adapted = lora::adapted_layers(&mut m);
    assert!(adapted.is_empty(), "nothing changes on error");

    // Unexpected tensors (the config names only q_proj).
    edit_config(&dir, "target_modules", serde_json::json!(["q_proj"]));
    let e = load_err(&mut fresh());
    assert!(
        e.contains("unexpected in the file (4)")
            && e.contains("base_model.model.blocks.1.attn.v_proj.lora_B.weight"),
        "{e}"
    );

    // Wrong r: mis-shaped for a fresh model, a clear mismatch for an adapted one.
    edit_config(
        &dir,
        "target_modules",
        serde_json::json!(["q_proj", "v_proj"]),
    );
    edit_config(&dir, "r", serde_json::json!(2));
    let e = load_err(&mut fresh());
    assert!(
        e.contains("mis-shaped (8)") && e.contains("file [4, 8] F32, model [2, 8]"),
        "{e}"
    );
    edit_config(&dir, "r", serde_json::json!(4));
    let mut adapted2 = fresh();
    lora::apply_lora(
        &mut adapted2,
        &LoraConfig::new(2, 8.0, &["q_proj", "v_proj"]),
    )
    .unwrap();
    let e = lora_io::load_adapter(&mut adapted2, &dir)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["r = 4", "has r = 2"]);

    // Config options kiln does not support.
    for (key, value, says) in [
        ("peft_type", serde_json::json!("IA3"), "peft_type is `IA3`"),
        ("bias", serde_json::json!("all"), "bias `all`"),
        ("use_dora", serde_json::json!(true), "use_dora"),
        ("fan_in_fan_out", serde_json::json!(true), "fan_in_fan_out"),
    ] {
        let p = dir.join(ADAPTER_CONFIG);
        let keep = std::fs::read_to_string(&p).unwrap();
        edit_config(&dir, key, value);
        let e = load_err(&mut fresh());
        assert!(e.contains(says), "{key}: {e}");
        std::fs::write(&p, keep).unwrap();
    }
    lora_io::load_adapter(&mut fresh(), &dir).expect("the restored config loads");

    // A truncated weights file.
    let wp = dir.join(ADAPTER_WEIGHTS);
    let bytes = std::fs::read(&wp).unwrap();
    std::fs::write(&wp, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&mut fresh());
    assert!(e.contains("safetensors"), "{e}");
    // Saving a model without adapters.
    let e = err_text(lora_io::save_adapter(&fresh(), &cfg, &dir));
    assert!(e.contains("no LoRA adapter"), "{e}");
}

#[test]
fn training_moves_only_the_adapters_and_reduces_loss() {
    let g = gpu();
    kiln::nn::manual_seed(7);
    let (n, fin, fout) = (32, 6, 3);
    let mut mlp = Mlp::new_on(&g, fin, &[16], fout, "relu", 0.0).unwrap();
    let x = tensor(&rand_vec(n * fin, seed("train-x"), -1.0, 1.0), &[n, fin]);
    let y = tensor(&rand_vec(n * fout, seed("train-y"), -1.0, 1.0), &[n, fout]);
    let cfg = LoraConfig::new(4, 8.0, &["layers.0", "layers.2"]);
    lora::apply_lora(&mut mlp, &cfg).unwrap();
    let base_before: Vec<_> = values(&mlp)
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .collect();
    // Built over every parameter: frozen ones get no state.
    let mut opt = Adam::new(mlp.named_parameters(), AdamConfig::adam(0.02)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad().unwrap();
        let l = loss::mse_loss(&mlp.forward(&x).unwrap(), &y, Reduction::Mean).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
        losses.push(l.item().unwrap());
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("LoRA r=4 on a 6-16-3 MLP, 60 Adam steps: loss {first:.4} -> {last:.4}");
    eprintln!("{}", lora::trainable_summary(&mlp));
    assert!(
        last < 0.8 * first,
        "LoRA training did not reduce the loss: {losses:?}"
    );
    let base_after: Vec<_> = values(&mlp)
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .collect();
    assert_eq!(
        base_before, base_after,
        "the base weights must stay bit-identical"
    );
    let state = opt.state();
    // exp_avg, exp_avg_sq and step for each of the 4 LoRA tensors, nothing else.
    assert_eq!(
        state.tensors.len(),
        3 * 4,
        "Adam state for the 4 LoRA tensors only"
    );
    assert!(
        state.tensors.iter().all(|(n, _)| n.contains(".lora_")),
        "{:?}",
        state.tensors.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    // An optimizer over lora_parameters() alone holds the same.
    let opt2 = Adam::new(lora::lora_parameters(&mlp), AdamConfig::adam(0.02)).unwrap();
    assert_eq!(opt2.state().tensors.len(), 0);
}

#[test]
fn dropout_on_the_lora_path_only_in_training() {
    let g = gpu();
    let mut seq = kiln::nn::Sequential::new().with(Linear::new_on(&g, 17, 7, true).unwrap());
    let mut cfg = LoraConfig::new(2, 2.0, &["0"]);
    cfg.dropout = 0.5;
    lora::apply_lora(&mut seq, &cfg).unwrap();
    randomise_lora(&seq, "dropout");
    let x = tensor(&rand_vec(9 * 17, seed("dropout-x"), 0.5, 1.0), &[9, 17]);
    let t1 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let t2 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t1, t2, "dropout must draw fresh masks in training");
    lora::set_training(&mut seq, false);
    let e1 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    let e2 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(e1, e2, "no dropout in evaluation");
    // Sequential passes the mode down to the Linear layer and its adapter.
    seq.set_training(true);
    let t3 = seq.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t3, e1);
    seq.set_training(false);
    assert_eq!(seq.forward(&x).unwrap().to_vec::<f32>().unwrap(), e1);

    // GPT's set_training reaches the adapters inside its blocks and the LM head too.
    let mut gpt = Gpt::new_on(&g, gpt_cfg()).unwrap();
    let mut cfg = LoraConfig::new(2, 2.0, &["q_proj", "fc1", "lm_head"]);
    cfg.dropout = 0.5;
    lora::apply_lora(&mut gpt, &cfg).unwrap();
    randomise_lora(&gpt, "dropout-gpt");
    let tokens = ids(2, 5, "dropout-gpt-ids");
    gpt.set_training(true);
    let t1 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    let t2 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    assert_ne!(t1, t2, "GPT LoRA dropout in training");
    gpt.set_training(false);
    let e1 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    let e2 = gpt.forward(&tokens).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(e1, e2, "GPT set_training(false) must turn LoRA dropout off");
}

/// A read-only base, standing in for a quantised one: forward 2 x W^T, no merging.
struct DoubledBase {
    w: Tensor,
}

impl FrozenBase for DoubledBase {
    fn in_features(&self) -> usize {
        self.w.shape()[1]
    }
    fn out_features(&self) -> usize {
        self.w.shape()[0]
    }
    fn base_forward(&self, x: &Tensor) -> kiln::Result<Tensor> {
        x.matmul(&self.w.t()?)?.mul_scalar(2.0)
    }
    fn add_to_weight(&self, _: f32, _: &Tensor) -> kiln::Result<()> {
        Err(kiln::Error::Arg {
            op: "DoubledBase",
            msg: "read-only base".into(),
        })
    }
}

#[test]
fn adapter_works_over_any_frozen_base() {
    let (rows, fin, fout, r) = (7, 17, 5, 2);
    let w = rand_vec(fout * fin, seed("any-w"), -0.5, 0.5);
    let a = rand_vec(r * fin, seed("any-a"), -0.5, 0.5);
    let bm = rand_vec(fout * r, seed("any-b"), -0.5, 0.5);
    let x = rand_vec(rows * fin, seed("any-x"), -1.0, 1.0);
    let base = DoubledBase {
        w: tensor(&w, &[fout, fin]),
    };
    let mut ad =
        LoraAdapter::from_tensors(tensor(&a, &[r, fin]), tensor(&bm, &[fout, r]), 4.0, 0.0)
            .unwrap();
    let got = ad
        .forward(&base, &tensor(&x, &[rows, fin]))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let w2: Vec<f64> = w.iter().map(|&v| 2.0 * v as f64).collect();
    let want = lora_cpu(
        &f64s(&x),
        &w2,
        None,
        &f64s(&a),
        &f64s(&bm),
        2.0,
        (rows, fin, fout, r),
    );
    FWD.assert_close("adapter over a custom base", &got, &want);
    let e = ad.merge(&base).unwrap_err().to_string();
    assert!(e.contains("read-only base"), "{e}");
    assert!(!ad.is_merged());
    // Shapes that do not fit the base are refused.
    let small = DoubledBase {
        w: tensor(&w[..fin], &[1, fin]),
    };
    assert!(ad.merge(&small).is_err());
}
