//! `maestro bench`: the step and pipeline benchmarks run and report what they measured.

mod util;
use serde_json::Value;
use util::*;

#[test]
fn step_benchmarks_report_throughput_flops_and_utilisation() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--batch", "2", "--steps", "2", "--warmup", "1", "--peak-tflops", "1", "--json"]);
    let r = run(c).success();
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    let steps = v.as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        assert!(s["images_per_s"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(s["steps"], 2);
        let mfu = s["mfu"].as_f64().unwrap();
        assert!((mfu - s["achieved_tflops"].as_f64().unwrap()).abs() < 1e-9, "MFU = achieved / peak (1 TFLOP/s here)");
    }
    // ViT-Ti/16: 1.26 GMACs forward, so 3 x 2.5 GFLOPs for forward + backward.
    let ft = steps[0]["train_gflops_per_image"].as_f64().unwrap();
    assert!((ft - 7.5).abs() < 0.1, "{ft}");
    // Pre-training with 90% masking costs less than the fine-tune step.
    assert!(steps[1]["train_gflops_per_image"].as_f64().unwrap() < ft);
    assert!(steps.iter().all(|s| s["first_step_s"].as_f64().unwrap() > 0.0));
    let mut c = dir.maestro();
    c.args(["bench", "step", "--precision", "fp8"]);
    run(c).code_is(2).stderr_has("use f32 or bf16");
}

#[test]
fn step_benchmark_phases_and_bad_shapes() {
    let dir = Dir::new();
    let (mut names, mut flops) = (Vec::new(), Vec::new());
    for phase in ["forward", "backward"] {
        let mut c = dir.maestro();
        c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "2", "--warmup", "1"]);
        c.args(["--phase", phase, "--json"]);
        let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
        names.extend(v.as_array().unwrap().iter().map(|s| s["what"].as_str().unwrap().to_string()));
        flops.extend(v.as_array().unwrap().iter().map(|s| s["train_gflops_per_image"].as_f64().unwrap()));
    }
    assert!(names[0].starts_with("fine-tune forward, ViT 64px/16"), "{names:?}");
    assert!(names[1].starts_with("pre-training forward,"), "{names:?}");
    assert!(names[2].starts_with("fine-tune forward + backward,"), "{names:?}");
    // The forward alone is counted at a third of forward + backward's FLOPs.
    assert!((flops[2] / flops[0] - 3.0).abs() < 1e-9, "{flops:?}");
    let mut c = dir.maestro();
    c.args(["bench", "step", "--phase", "adam"]);
    run(c).code_is(2).stderr_has("use forward, backward, step or optimizer");
    // 4 patches at 32 px: 90% masking would leave the encoder nothing to see.
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "32"]);
    run(c).code_is(2).stderr_has("leaves no visible patch out of 4");
    let mut c = dir.maestro();
    c.args(["bench", "step", "--image-size", "30"]);
    run(c).code_is(2).stderr_has("multiple of the patch size 16");
}

#[test]
fn pipeline_benchmark_reads_a_folder_of_images() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 2, 4, 1);
    let mut c = dir.maestro();
    c.args(["bench", "pipeline", "data", "--input-size", "32", "--rounds", "1", "--threads", "2", "--json"]);
    let r = run(c).success();
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["files"], 10);
    assert!(v["train_per_core"].as_f64().unwrap() > 0.0 && v["decode_per_core"].as_f64().unwrap() > 0.0);
    let mut c = dir.maestro();
    c.args(["bench", "pipeline", "nowhere"]);
    run(c).code_is(2).stderr_has("no such file or folder");
}

#[test]
fn fused_check_compares_both_paths_and_the_unfused_step_says_so() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["bench", "fused", "--batch", "1", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    let checks = v["operations"].as_array().unwrap();
    assert_eq!(checks[0]["precision"], "f32");
    assert_eq!(checks[0]["shape"], serde_json::json!([1, 12, 197, 64]));
    let names: Vec<&str> = checks[0]["errors"].as_array().unwrap().iter().map(|e| e[0].as_str().unwrap()).collect();
    assert_eq!(names, ["attention", "layer_norm", "linear", "d qkv", "d x", "d gamma", "d beta", "d weight", "d bias"]);
    assert!(v["adamw"]["weight"].as_f64().unwrap() < 1e-5 && v["adamw"]["moved"].as_f64().unwrap() > 1e-3, "{v}");
    let mut c = dir.maestro();
    c.args(["bench", "fused", "--device", "libtorch-cuda:0"]);
    if !cfg!(feature = "tch") {
        run(c).code_is(2).stderr_has("needs maestro built with the `tch` feature");
    }
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--warmup", "1"]);
    c.args(["--only", "finetune", "--unfused", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    assert!(v[0]["what"].as_str().unwrap().ends_with("unfused attention + LayerNorm + linear + burn's AdamW"), "{v}");
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "2", "--warmup", "1"]);
    c.args(["--phase", "optimizer", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    for s in v.as_array().unwrap() {
        assert!(s["what"].as_str().unwrap().contains("AdamW update"), "{s}");
        assert!(s["step_ms"].as_f64().unwrap() > 0.0 && s["train_gflops_per_image"] == 0.0, "{s}");
    }
}

/// `--ops` counts PyTorch's kernels: a clear error elsewhere; on LibTorch, one forward + backward
/// of a ViT launches what timm's does: every linear layer one `addmm` (its bias added by the
/// product) and two `mm` in the backward pass, one attention kernel and one LayerNorm per use,
/// and no zero-filled qkv-sized buffer (which splitting q, k and v with slices would cost).
#[test]
fn kernel_census_of_a_step() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--ops"]);
    run(c).code_is(2).stderr_has("--ops counts PyTorch's kernels: use a libtorch device");
    if !cfg!(feature = "tch") {
        return;
    }
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--warmup", "1"]);
    c.args(["--device", "libtorch-cpu", "--only", "finetune", "--phase", "backward", "--ops-by-shape", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    let kernels = v[0]["kernels"].as_array().unwrap();
    let count = |prefix: &str| -> u64 {
        kernels.iter().filter(|k| k["name"].as_str().unwrap().starts_with(prefix)).map(|k| k["count"].as_u64().unwrap()).sum()
    };
    let (depth, linears) = (12, 12 * 4 + 1);
    assert_eq!(count("aten::addmm "), linears, "{kernels:?}");
    assert_eq!(count("aten::mm "), 2 * linears, "{kernels:?}");
    assert_eq!(count("aten::_scaled_dot_product"), depth, "{kernels:?}");
    assert_eq!(count("aten::native_layer_norm "), 2 * depth + 1, "{kernels:?}");
    // vit_tiny: 3 heads of 64, 17 tokens; q, k and v stacked as [3, batch, heads, tokens, 64].
    assert_eq!(count("aten::fill_ Float[3, 2, 3, 17, 64]"), 0, "{kernels:?}");
}

/// `--kernel-times` reads PyTorch's profiler: a clear error elsewhere; on `libtorch-cpu`, one
/// more step's operations (on a card, its kernels) with their times, a busy time no longer than
/// the step, and every linear layer's `addmm` among them.
#[test]
fn kernel_times_of_a_step() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--kernel-times"]);
    run(c).code_is(2).stderr_has("--kernel-times reads PyTorch's profiler: use a libtorch device");
    if !cfg!(feature = "tch") {
        return;
    }
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--warmup", "1"]);
    c.args(["--device", "libtorch-cpu", "--only", "finetune", "--phase", "backward", "--kernel-times", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    let t = &v[0]["kernel_times"];
    assert_eq!(t["device"], "cpu", "{t}");
    let (wall, busy, total) = (t["wall_ms"].as_f64().unwrap(), t["busy_ms"].as_f64().unwrap(), t["total_ms"].as_f64().unwrap());
    assert!(0.0 < busy && busy <= wall && busy <= total, "{t}");
    let kernels = t["kernels"].as_array().unwrap();
    let addmm = kernels.iter().find(|k| k["name"] == "aten::addmm").unwrap_or_else(|| panic!("no addmm in {t}"));
    assert_eq!(addmm["count"], 12 * 4 + 1, "{addmm}");
    assert!(addmm["total_us"].as_f64().unwrap() > 0.0, "{addmm}");
    let times: Vec<f64> = kernels.iter().map(|k| k["total_us"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "the longest first: {times:?}");
    // The linear layers and LayerNorm run their backward formulas directly; only attention's
    // backward goes through autograd's engine.
    let engine = |node: &str| -> u64 {
        kernels
            .iter()
            .filter(|k| k["name"].as_str().unwrap().starts_with("autograd::engine::evaluate_function: ") && k["name"].as_str().unwrap().contains(node))
            .map(|k| k["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(engine("LayerNorm"), 0, "{t}");
    assert_eq!(engine("Addmm"), 0, "{t}");
    assert_eq!(engine("ScaledDotProduct"), 12, "{t}");
}

/// `--hold-mib` keeps part of a card's memory in one allocation for the whole run: refused on
/// burn's CPU backend; on LibTorch the steps run beside it and say so, and an allocation the
/// device refuses is an error that names it, not a crash.
#[test]
fn memory_held_beside_the_steps() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--hold-mib", "16"]);
    run(c).code_is(2).stderr_has("--hold-mib holds a card's memory: use a GPU or libtorch device, not cpu");
    if !cfg!(feature = "tch") {
        return;
    }
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1", "--warmup", "1"]);
    c.args(["--device", "libtorch-cpu", "--only", "finetune", "--hold-mib", "16", "--json"]);
    let v: Value = serde_json::from_str(&run(c).success().stdout()).unwrap();
    assert_eq!(v[0]["held_mib"], 16, "{v}");
    let mut c = dir.maestro();
    c.args(["bench", "step", "--model", "vit_tiny_patch16", "--image-size", "64", "--batch", "2", "--steps", "1"]);
    c.args(["--device", "libtorch-cpu", "--only", "finetune", "--hold-mib", "4000000000"]);
    run(c).code_is(1).stderr_has("holding 4000000000 MiB of the device's memory");
}
