//! `maestro pretrain` end to end on tiny data, and a fine-tune that starts from its checkpoint.

mod util;
use serde_json::Value;
use util::*;

/// Three classes of 16 px images and a 2-block ViT with 4 px patches.
fn tiny_study() -> Dir {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 16, 4);
    dir.write(
        "s.yaml",
        "name: s\ndataset: { kind: imagefolder, root: data }\n\
         model: { image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 2 }\n\
         finetune: { epochs: 1, warmup_epochs: 0, batch_size: 8, eval_crop_pct: 1.0 }\n",
    );
    dir
}

#[test]
fn pretrain_writes_an_encoder_the_fine_tune_loads() {
    let dir = tiny_study();
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--epochs", "2", "--warmup", "1", "--batch-size", "8", "--decoder-dim", "16"]);
    c.args(["--decoder-heads", "2", "--out", "pre", "--quiet"]);
    run(c).success().stdout_has("completed after 12 steps");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("pre/result.json")).unwrap()).unwrap();
    let losses: Vec<f64> = r["epoch_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 2);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    assert!(dir.join("pre/mae.safetensors").is_file());
    assert!(dir.join("pre/loss.png").is_file(), "the loss curve");

    // Figure 2 from the pre-trained model: 2 validation images, and one given file.
    let mut c = dir.maestro();
    c.args(["reconstruct", "pre", "--count", "2", "--out", "fig/rec.png"]);
    run(c).success().stdout_has("reconstruction loss on the removed patches");
    let png = image::open(dir.join("fig/rec.png")).unwrap();
    // 16 px images drawn 7x (112 px tiles): 4 columns, 2 rows, gutters and a title band.
    assert_eq!((png.width(), png.height()), (4 * 112 + 5 * 6, 28 + 2 * (112 + 6) + 6));
    let one = std::fs::read_dir(dir.join("data/val")).unwrap().next().unwrap().unwrap().path();
    let file = std::fs::read_dir(&one).unwrap().next().unwrap().unwrap().path();
    let mut c = dir.maestro();
    c.args(["reconstruct", "pre/mae.safetensors", "--mask-ratio", "0.5", "--out", "one.png", "--images"]).arg(&file);
    run(c).success();
    assert_eq!(image::open(dir.join("one.png")).unwrap().height(), 28 + 112 + 6 + 6);
    let mut c = dir.maestro();
    c.args(["reconstruct", "nowhere"]);
    run(c).code_is(2).stderr_has("nowhere: no such file or folder");
    for count in ["0", "100000"] {
        let mut c = dir.maestro();
        c.args(["reconstruct", "pre", "--count", count, "--out", "big.png"]);
        run(c).code_is(2).stderr_has(&format!("--count must be 1 to 64 (one figure row each), got {count}"));
    }

    let mut c = dir.maestro();
    c.args(["finetune", "--study", "s.yaml", "--checkpoint", "pre/mae.safetensors", "--out", "ft"]);
    run(c).success().stderr_has("newly initialised: fc_norm.weight, fc_norm.bias, head.weight, head.bias");

    // An encoder deeper than the model is another architecture, not a set of unused tensors.
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--set", "model.depth=3", "--max-steps", "1", "--batch-size", "8", "--decoder-dim", "16"]);
    c.args(["--decoder-heads", "2", "--out", "deep", "--quiet"]);
    run(c).success();
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "s.yaml", "--checkpoint", "deep/mae.safetensors", "--out", "ft-deep"]);
    run(c).code_is(2).stderr_has("the checkpoint has 3 encoder blocks, the model 2");
}

#[test]
fn bad_pretraining_settings_are_user_errors() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 2, 4, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nmodel: { image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 1, num_heads: 2 }\n");
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--mask-ratio", "1.0", "--out", "x"]);
    run(c).code_is(2).stderr_has("--mask-ratio must be in (0, 1)");
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--preset", "bert", "--out", "x"]);
    run(c).code_is(2).stderr_has("unknown preset `bert`");
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--decoder-dim", "30", "--decoder-heads", "4", "--out", "x"]);
    run(c).code_is(2).stderr_has("heads must divide the width");
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--epochs", "1", "--warmup", "2", "--out", "x"]);
    run(c).code_is(2).stderr_has("pretrain.warmup_epochs: 2 warmup epochs is more than the 1 epochs of training");
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "32", "--decoder-dim", "0", "--decoder-heads", "1"]);
    run(c).code_is(2).stderr_has("--decoder-dim a positive multiple of 4");
}

#[test]
fn supmae_trains_its_supervised_branch_and_writes_official_names() {
    let dir = tiny_study();
    let mut c = dir.maestro();
    c.args(["pretrain", "--study", "s.yaml", "--supmae", "--epochs", "2", "--warmup", "1", "--batch-size", "8", "--decoder-dim", "16"]);
    c.args(["--decoder-heads", "2", "--out", "pre", "--quiet"]);
    run(c).success().stdout_has("SupMAE classification loss");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("pre/result.json")).unwrap()).unwrap();
    let cls: Vec<f64> = r["epoch_cls_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    // 0.01 x CE(logits / 10) over 3 classes starts near 0.01 x ln 3.
    assert_eq!(cls.len(), 2);
    assert!(cls.iter().all(|l| *l > 0.005 && *l < 0.02), "{cls:?}");
    // The head is written under the official nn.Sequential names.
    let bytes = std::fs::read(dir.join("pre/mae.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    for key in ["cls_head.0.weight", "cls_head.1.weight", "cls_head.1.running_var", "cls_head.3.bias"] {
        assert!(header.get(key).is_some(), "{key} missing from {:?}", header.as_object().unwrap().keys().collect::<Vec<_>>());
    }
    assert_eq!(header["cls_head.0.weight"]["shape"], serde_json::json!([128, 32]));
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "s.yaml", "--checkpoint", "pre/mae.safetensors", "--out", "ft"]);
    run(c).success().stderr_has("newly initialised: fc_norm.weight, fc_norm.bias, head.weight, head.bias");
}
