//! `maestro finetune` end to end on a tiny generated dataset: a result, a checkpoint that
//! resumes after a kill -9 to the same result, divergence recorded, bad settings refused.

mod util;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::*;

/// A study for 16x16 colour images in 4 classes, a 2-block ViT, no heavy augmentation.
fn tiny_study(dir: &Dir, epochs: u32) {
    image_tree(&dir.join("data"), 4, 24, 6);
    dir.write(
        "tiny.yaml",
        &format!(
            "name: tiny\ndataset: {{ kind: imagefolder, root: data }}\n\
             model: {{ image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 2 }}\n\
             finetune: {{ epochs: {epochs}, warmup_epochs: 1, batch_size: 8, mixup: 0.8, cutmix: 1.0, reprob: 0.25, eval_crop_pct: 1.0 }}\n\
             seed: 3\n"
        ),
    );
}

/// [`tiny_study`] of one epoch and a 2-class proxy of its data, `p.manifest`.
fn tiny_study_with_proxy(dir: &Dir) {
    tiny_study(dir, 1);
    let mut c = dir.maestro();
    c.args(["proxy", "build", "--dataset", "data", "--classes", "2", "--out", "p.manifest"]);
    run(c).success();
}

fn result(dir: &Dir, out: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("result.json")).unwrap()).unwrap()
}

#[test]
fn finetune_writes_result_checkpoint_and_timm_export() {
    let dir = Dir::new();
    tiny_study(&dir, 2);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--llrd", "0.75", "--out", "run", "--quiet"]);
    run(c).success().stdout_has("Completed after 24 steps");
    let r = result(&dir, "run");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["epochs"].as_array().unwrap().len(), 2);
    assert_eq!((r["train_images"].as_u64(), r["val_images"].as_u64(), r["num_classes"].as_u64()), (Some(96), Some(24), Some(4)));
    for m in r["epochs"].as_array().unwrap() {
        let (t1, t5) = (m["top1"].as_f64().unwrap(), m["top5"].as_f64().unwrap());
        assert!((0.0..=100.0).contains(&t1) && t5 >= t1, "{m}");
        assert!(m["train_loss"].as_f64().unwrap().is_finite());
    }
    assert!(dir.join("run/checkpoint/model.bpk").is_file());
    assert!(dir.join("run/model.safetensors").is_file());
    assert!(dir.join("run/finetune.json").is_file());
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_same_result() {
    let dir = Dir::new();
    tiny_study(&dir, 4);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "straight", "--quiet"]);
    run(c).success();

    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "killed", "--quiet"]);
    let mut child = c.spawn().unwrap();
    let t = Instant::now();
    while !dir.join("killed/checkpoint/state.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.join("killed/result.json").exists(), "killed too late to test a resume");

    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "killed"]);
    run(c).success().stderr_has("resuming");
    let (a, b) = (result(&dir, "straight"), result(&dir, "killed"));
    for key in ["status", "steps", "top1", "top5", "best_top1"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let losses = |v: &Value| v["epochs"].as_array().unwrap().iter().map(|m| m["train_loss"].clone()).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b), "per-epoch losses");
}

/// A checkpoint that cannot be read is set aside and the run starts over (rather than failing
/// at every retry), and one a crash left half-swapped (`checkpoint.old`) is resumed from.
#[test]
fn a_damaged_checkpoint_starts_over_and_a_half_swapped_one_resumes() {
    let dir = Dir::new();
    tiny_study(&dir, 2);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "a", "--quiet"]);
    run(c).success();
    // Copies named `a` too: the run's name is part of its settings.
    let copy = |to: &str| {
        std::fs::create_dir_all(dir.join(to).parent().unwrap()).unwrap();
        assert!(std::process::Command::new("cp").arg("-r").arg(dir.join("a")).arg(dir.join(to)).status().unwrap().success());
    };

    copy("damaged/a");
    let state = dir.join("damaged/a/checkpoint/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "damaged/a", "--quiet"]);
    run(c).success().stderr_has("cannot resume from").stderr_has("starting over");
    assert!(dir.join("damaged/a/checkpoint.damaged/state.json").is_file());

    copy("swapped/a");
    std::fs::rename(dir.join("swapped/a/checkpoint"), dir.join("swapped/a/checkpoint.old")).unwrap();
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "swapped/a"]);
    run(c).success().stderr_has("resuming");

    let a = result(&dir, "a");
    for out in ["damaged/a", "swapped/a"] {
        let b = result(&dir, out);
        for key in ["status", "steps", "top1", "best_top1"] {
            assert_eq!(a[key], b[key], "{out}: {key}");
        }
    }
}

/// A validation split none of whose images can be read measures nothing: the run fails and
/// says why, rather than reporting a top-1 of 0% that a search would fit.
#[test]
fn no_readable_validation_image_is_an_error_not_a_zero() {
    let dir = Dir::new();
    tiny_study(&dir, 1);
    for class in std::fs::read_dir(dir.join("data/val")).unwrap() {
        for f in std::fs::read_dir(class.unwrap().path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"").unwrap();
        }
    }
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--out", "o", "--quiet"]);
    run(c).code_is(2).stderr_has("no validation image could be read").stderr_has("24 image(s) could not be read");
}

#[test]
fn a_nan_loss_is_recorded_as_diverged() {
    let dir = Dir::new();
    tiny_study(&dir, 2);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--blr", "1e12", "--set", "finetune.warmup_epochs=0", "--out", "nan", "--quiet"]);
    run(c).code_is(1).stderr_has("became NaN or infinite at optimizer step");
    let r = result(&dir, "nan");
    assert_eq!(r["status"], "diverged");
    assert!(r["diverged_at_step"].as_u64().is_some());
}

#[test]
fn impossible_settings_are_user_errors() {
    let dir = Dir::new();
    tiny_study(&dir, 1);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.batch_size=1000", "--out", "big"]);
    run(c).code_is(2).stderr_has("larger than the 96 training images");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--llrd", "1.5", "--out", "x"]);
    run(c).code_is(2).stderr_has("LLRD must be in (0, 1]");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.epochs=0", "--out", "x"]);
    run(c).code_is(2).stderr_has("finetune.epochs: epochs must be positive");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.epochs=.inf", "--out", "x"]);
    run(c).code_is(2).stderr_has("finetune.epochs: epochs must be positive and finite, got inf");
    // Flags and hand-edited specs are checked as a study is, not left to panic or to train.
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--blr=-1", "--out", "x"]);
    run(c).code_is(2).stderr_has("blr: the learning rate must be positive, got -1");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--max-steps", "1", "--out", "one", "--quiet"]);
    run(c).success();
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("one/finetune.json")).unwrap()).unwrap();
    spec["model"]["num_heads"] = 3.into();
    spec["recipe"]["eval_crop_pct"] = 0.into();
    dir.write("edited/spec.json", &spec.to_string());
    let mut c = dir.maestro();
    c.args(["trial", "edited/spec.json"]);
    run(c).code_is(2).stderr_has("model.num_heads: 3 heads do not divide embed_dim 32").stderr_has("finetune.eval_crop_pct: must be in (0, 1], got 0");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--device", "cuda:99", "--out", "x"]);
    if cfg!(feature = "cuda") {
        // No machine has a hundredth card: with or without a driver, an error that names it.
        run(c).code_is(2).stderr_has("cuda:99: this machine");
    } else {
        run(c).code_is(2).stderr_has("needs maestro built with the `cuda` feature");
    }
}

#[test]
fn trains_from_a_proxy_manifest() {
    let dir = Dir::new();
    tiny_study_with_proxy(&dir);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--manifest", "p.manifest", "--out", "proxy", "--quiet"]);
    run(c).success();
    let r = result(&dir, "proxy");
    assert_eq!((r["train_images"].as_u64(), r["num_classes"].as_u64()), (Some(48), Some(2)));
}

#[test]
fn gradient_accumulation_steps_once_per_accum_micro_batches() {
    let dir = Dir::new();
    tiny_study(&dir, 1);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.accum_iter=3", "--out", "acc", "--quiet"]);
    // 96 images / batch 8 = 12 micro-batches = 4 optimizer steps.
    run(c).success().stdout_has("Completed after 4 steps");
    // 12 micro-batches / 5 = 2 steps; the 2 left over make none (as MAE's engine).
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.accum_iter=5", "--out", "acc5", "--quiet"]);
    run(c).success().stdout_has("Completed after 2 steps");
}

#[test]
fn clip_grad_clips_the_global_norm_and_a_loose_limit_changes_nothing() {
    let dir = Dir::new();
    tiny_study(&dir, 1);
    let losses = |out: &str, set: Option<&str>| {
        let mut c = dir.maestro();
        c.args(["finetune", "--study", "tiny.yaml", "--out", out, "--quiet"]);
        if let Some(s) = set {
            c.args(["--set", s]);
        }
        run(c).success();
        let r = result(&dir, out);
        (r["epochs"][0]["train_loss"].as_f64().unwrap(), r["epochs"][0]["top1"].as_f64().unwrap())
    };
    let plain = losses("plain", None);
    // A limit far above the gradient's norm multiplies by exactly 1 (as torch's clamp to 1.0).
    assert_eq!(losses("loose", Some("finetune.clip_grad=1e9")), plain);
    // A limit far below it shrinks every gradient to ~1e-12 of its size, where AdamW's eps
    // (1e-8) swamps it: the first step's update, and so the loss after it, changes.
    let tight = losses("tight", Some("finetune.clip_grad=1e-12"));
    assert_ne!(tight.0, plain.0, "clip_grad=1e-12 trained as if unclipped");
}

#[test]
fn a_refused_start_leaves_the_folder_as_it_was_and_paths_resolve_from_anywhere() {
    let dir = Dir::new();
    tiny_study_with_proxy(&dir);
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--manifest", "p.manifest", "--max-steps", "2", "--out", "ft", "--quiet"]);
    run(c).success();
    let spec = std::fs::read_to_string(dir.join("ft/finetune.json")).unwrap();
    // Other settings into the same folder: refused, and the folder still describes its checkpoint.
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--manifest", "p.manifest", "--llrd", "0.6", "--max-steps", "2", "--out", "ft", "--quiet"]);
    run(c).code_is(2).stderr_has("holds a checkpoint of other settings");
    assert_eq!(std::fs::read_to_string(dir.join("ft/finetune.json")).unwrap(), spec);
    // The same command from another folder, its paths spelled from there: the same spec.
    std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
    let mut c = dir.maestro();
    c.current_dir(dir.join("elsewhere"));
    c.args(["finetune", "--study", "../tiny.yaml", "--manifest", "../p.manifest", "--max-steps", "2", "--out", "../ft", "--quiet"]);
    run(c).success();
    // A start refused for its settings creates no folder.
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "tiny.yaml", "--set", "finetune.batch_size=1000", "--out", "never"]);
    run(c).code_is(2);
    assert!(!dir.join("never").exists(), "a refused start left a folder");
}

#[test]
fn dataset_flags_name_the_data_without_a_study() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 4, 24, 6);
    std::fs::rename(dir.join("data/train"), dir.join("data/training")).unwrap();
    std::fs::rename(dir.join("data/val"), dir.join("data/validation")).unwrap();
    let model = ["--set", "model={image_size: 16, patch_size: 4, embed_dim: 32, depth: 1, num_heads: 2}", "--set", "finetune.batch_size=8"];
    let mut c = dir.maestro();
    c.args(["finetune", "--dataset", "data", "--train-split", "training", "--val-split", "validation", "--max-steps", "1", "--out", "ft", "--quiet"]);
    c.args(model);
    run(c).success();
    let mut c = dir.maestro();
    c.args(["finetune", "--dataset", "data", "--root", "elsewhere", "--out", "x"]);
    run(c).code_is(2).stderr_has("--root is Fashion-MNIST's folder");
    // A preset keeps its other fields under --set model.X.
    let mut c = dir.maestro();
    c.args(["finetune", "--dataset", "data", "--train-split", "training", "--val-split", "validation", "--model", "vit_tiny_patch16"]);
    c.args(["--set", "model.image_size=16", "--set", "model.mlp_ratio=0.001", "--out", "x"]);
    run(c).code_is(2).stderr_has("model.mlp_ratio: 0.001 gives the MLP no hidden unit at embed_dim 192");
    // A study made from the flags has no line and column to show.
    let mut c = dir.maestro();
    c.args(["finetune", "--dataset", "data", "--model", "vit_nope", "--out", "x"]);
    run(c).code_is(2).stderr_has("error: <command line>: model.preset: unknown model \"vit_nope\"");
}
