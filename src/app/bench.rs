//! `maestro bench step | pipeline`: what the benchmarks print.

use std::path::PathBuf;

use crate::Error;
use crate::bench::{self, StepRequest, StepStats};
use crate::device::DeviceSpec;
use crate::model::config::VitShape;

pub struct StepArgs {
    pub model: String,
    pub batch: usize,
    pub image_size: Option<usize>,
    pub precision: String,
    pub device: String,
    pub steps: usize,
    pub warmup: usize,
    pub peak_tflops: Option<f64>,
    pub only: String,
    pub phase: String,
    pub mask_ratio: f64,
    pub decoder_depth: usize,
    pub decoder_dim: usize,
    pub decoder_heads: usize,
    pub unfused: bool,
    pub ops: bool,
    pub ops_by_shape: bool,
    pub kernel_times: bool,
    pub hold_mib: usize,
    pub json: bool,
}

fn line(s: &StepStats) -> String {
    format!(
        "{}: batch {}, {} timed steps: {:.1} img/s, {:.1} ms/step (median), first step {:.1} s, {:.2} GFLOP/img (fwd+bwd), {:.3} TFLOP/s{}",
        s.what,
        s.batch,
        s.steps,
        s.images_per_s,
        s.step_ms,
        s.first_step_s,
        s.train_gflops_per_image,
        s.achieved_tflops,
        s.mfu.map(|m| format!(", MFU {:.1}%", m * 100.0)).unwrap_or_default()
    )
}

fn print_step(s: &StepStats) {
    println!("{}", line(s));
    if let Some(mib) = s.held_mib {
        println!("  with {mib} MiB of the device's memory held by one allocation throughout");
    }
    print_census(s);
    print_kernel_times(s);
}

fn print_census(s: &StepStats) {
    let Some(kernels) = &s.kernels else { return };
    let mut rows: Vec<_> = kernels.iter().collect();
    rows.sort_by(|a, b| b.input_elements.cmp(&a.input_elements).then(a.name.cmp(&b.name)));
    let (count, elements) = rows.iter().fold((0, 0), |(c, e), k| (c + k.count, e + k.input_elements));
    println!("  kernels of one step: {count}, reading {:.1} M elements", elements as f64 / 1e6);
    for k in rows {
        println!("  {:>6}  {:>10.1} M  {}", k.count, k.input_elements as f64 / 1e6, k.name);
    }
}

/// How many of a profile's event names `bench step --kernel-times` prints (the JSON has all).
const PROFILE_ROWS: usize = 40;

fn print_kernel_times(s: &StepStats) {
    let Some(t) = &s.kernel_times else { return };
    let count: u64 = t.kernels.iter().map(|k| k.count).sum();
    println!(
        "  profiled step ({}): wall {:.2} ms, busy {:.2} ms ({:.0}%), {count} events summing {:.2} ms",
        t.device,
        t.wall_ms,
        t.busy_ms,
        100.0 * t.busy_ms / t.wall_ms.max(1e-9),
        t.total_ms
    );
    for k in t.kernels.iter().take(PROFILE_ROWS) {
        let name: String = k.name.chars().take(120).collect();
        println!("  {:>6}  {:>10.1} us  {name}", k.count, k.total_us);
    }
    if t.kernels.len() > PROFILE_ROWS {
        println!("  ... {} more names (--json lists them all)", t.kernels.len() - PROFILE_ROWS);
    }
}

pub fn step(a: &StepArgs) -> Result<(), Error> {
    let mut shape = VitShape::preset(&a.model).ok_or_else(|| Error::Usage(format!("unknown model `{}`; use a preset such as vit_base_patch16", a.model)))?;
    if let Some(size) = a.image_size {
        if size == 0 || size % shape.patch_size != 0 {
            return Err(Error::Usage(format!("--image-size {size} must be a positive multiple of the patch size {}", shape.patch_size)));
        }
        shape.image_size = size;
    }
    let bf16 = match a.precision.as_str() {
        "f32" => false,
        "bf16" => true,
        p => return Err(Error::Usage(format!("--precision {p}: use f32 or bf16"))),
    };
    if a.batch == 0 || a.steps == 0 {
        return Err(Error::Usage("--batch and --steps must be at least 1".into()));
    }
    if !["finetune", "pretrain", "both"].contains(&a.only.as_str()) {
        return Err(Error::Usage(format!("--only {}: use finetune, pretrain or both", a.only)));
    }
    if !(a.mask_ratio > 0.0 && a.mask_ratio < 1.0) {
        return Err(Error::Usage(format!("--mask-ratio must be in (0, 1), got {}", a.mask_ratio)));
    }
    if a.decoder_depth == 0 || a.decoder_dim == 0 || a.decoder_dim % 4 != 0 || a.decoder_heads == 0 || a.decoder_dim % a.decoder_heads != 0 {
        return Err(Error::Usage(format!(
            "decoder {}x{} with {} heads: --decoder-depth must be at least 1, --decoder-dim a positive multiple of 4 that --decoder-heads divides",
            a.decoder_depth, a.decoder_dim, a.decoder_heads
        )));
    }
    if let Some(p) = a.peak_tflops.filter(|p| !(p.is_finite() && *p > 0.0)) {
        return Err(Error::Usage(format!("--peak-tflops must be positive, got {p}")));
    }
    if a.only != "finetune" && crate::model::mae::kept_patches(shape.num_patches(), a.mask_ratio) == 0 {
        return Err(Error::Usage(format!("--mask-ratio {} leaves no visible patch out of {}", a.mask_ratio, shape.num_patches())));
    }
    let phase = match a.phase.as_str() {
        "forward" => bench::Phase::Forward,
        "backward" => bench::Phase::Backward,
        "step" => bench::Phase::Step,
        "optimizer" => bench::Phase::Optimizer,
        p => return Err(Error::Usage(format!("--phase {p}: use forward, backward, step or optimizer"))),
    };
    let spec = a.device.parse::<DeviceSpec>().map_err(Error::Usage)?;
    let device = spec.burn_device().map_err(Error::Usage)?;
    if bf16 && !device.supports_dtype(burn::tensor::FloatDType::BF16) {
        return Err(Error::Usage(format!("{} cannot compute in bf16", a.device)));
    }
    let census = match (a.ops, a.ops_by_shape) {
        (_, true) => bench::Census::ByShape,
        (true, false) => bench::Census::ByName,
        (false, false) => bench::Census::Off,
    };
    if census != bench::Census::Off && !crate::device::is_libtorch(&device) {
        return Err(Error::Usage(format!("--ops counts PyTorch's kernels: use a libtorch device, not {}", a.device)));
    }
    let profile = match (a.kernel_times, spec.cuda_index()) {
        (false, _) => bench::Profile::Off,
        (true, Some(_)) => bench::Profile::Gpu,
        (true, None) => bench::Profile::Cpu,
    };
    if profile != bench::Profile::Off && !crate::device::is_libtorch(&device) {
        return Err(Error::Usage(format!("--kernel-times reads PyTorch's profiler: use a libtorch device, not {}", a.device)));
    }
    if a.hold_mib > 0 && spec == DeviceSpec::Cpu {
        return Err(Error::Usage("--hold-mib holds a card's memory: use a GPU or libtorch device, not cpu".into()));
    }
    crate::model::fused::set_enabled(!a.unfused);
    let req = StepRequest { shape, batch: a.batch, steps: a.steps, warmup: a.warmup, device, classes: 1000, peak_tflops: a.peak_tflops, bf16, phase, census, profile };
    // Held until the steps are done.
    let _held = if a.hold_mib > 0 { Some(bench::hold_memory(&req.device, a.hold_mib).map_err(Error::Failed)?) } else { None };
    let held_mib = (a.hold_mib > 0).then_some(a.hold_mib);
    let mut out = Vec::new();
    if a.only != "pretrain" {
        out.push(StepStats { held_mib, ..bench::finetune_step(&req).map_err(Error::Failed)? });
        if !a.json {
            print_step(out.last().unwrap());
        }
    }
    if a.only != "finetune" {
        let s = bench::pretrain_step(&req, a.mask_ratio, a.decoder_dim, a.decoder_depth, a.decoder_heads).map_err(Error::Failed)?;
        out.push(StepStats { held_mib, ..s });
        if !a.json {
            print_step(out.last().unwrap());
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
    }
    Ok(())
}

/// The largest relative difference `maestro bench fused` accepts, per precision: f32 leaves
/// room for a different summation order (and TF32 where the card uses it); bf16 for its 8-bit
/// mantissa.
const FUSED_TOLERANCE: [(&str, f32); 2] = [("f32", 2e-3), ("bf16", 3e-2)];

/// AdamW's state and update are f32 on every backend; only the order of a few operations differs.
const ADAMW_TOLERANCE: f32 = 1e-5;

pub fn fused(device: &str, batch: usize, json: bool) -> Result<(), Error> {
    if batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    let spec = device.parse::<DeviceSpec>().map_err(Error::Usage)?;
    let dev = spec.burn_device().map_err(Error::Usage)?;
    let shape = [batch, 12, 197, 64];
    let mut failed = Vec::new();
    let mut all = Vec::new();
    for (precision, tolerance) in FUSED_TOLERANCE {
        let bf16 = precision == "bf16";
        if bf16 && !dev.supports_dtype(burn::tensor::FloatDType::BF16) {
            continue;
        }
        let a = crate::model::fused::compare(&dev, shape, bf16);
        if !json {
            let errors: Vec<String> = a.errors.iter().map(|(n, e)| format!("{n} {e:.1e}")).collect();
            println!("{spec} {precision} {shape:?}: {} (tolerance {tolerance:.0e})", errors.join(", "));
        }
        if a.worst() > tolerance {
            failed.push(format!("{precision}: {:.1e} > {tolerance:.0e}", a.worst()));
        }
        all.push(a);
    }
    // The optimizer's half of the fused path: on LibTorch PyTorch's fused AdamW kernel.
    let adamw = crate::train::adamw::compare(&dev);
    if !json {
        println!(
            "{spec} AdamW, 5 steps against burn's: weight {:.1e}, bias {:.1e} (tolerance {ADAMW_TOLERANCE:.0e}; the steps moved the weight by {:.1e})",
            adamw.weight, adamw.bias, adamw.moved
        );
    }
    if adamw.weight.max(adamw.bias) > ADAMW_TOLERANCE || adamw.moved < 1e-3 {
        failed.push(format!("AdamW: weight {:.1e}, bias {:.1e}, moved {:.1e}", adamw.weight, adamw.bias, adamw.moved));
    }
    if json {
        let out = serde_json::json!({ "operations": all, "adamw": adamw });
        println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!("the fused path disagrees with burn's on {spec}: {}", failed.join("; "))))
    }
}

fn collect(paths: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            entries.sort();
            collect(&entries, out)?;
        } else if p.is_file() {
            let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
            if crate::data::imagefolder::IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                out.push(p.clone());
            }
        } else {
            return Err(Error::Usage(format!("{}: no such file or folder", p.display())));
        }
    }
    Ok(())
}

pub fn pipeline(paths: &[PathBuf], input_size: usize, rounds: usize, threads: Option<usize>, batch: usize, json: bool) -> Result<(), Error> {
    let mut files = Vec::new();
    collect(paths, &mut files)?;
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let s = bench::pipeline(&files, input_size, rounds.max(1), threads, batch).map_err(Error::Usage)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("serialises"));
    } else {
        println!(
            "{} files x {} rounds, {} px: decode {:.0} img/s per core; decode + train transform {:.0} img/s per core, {:.0} img/s on {} threads; \
             the trainer's loader (batches of {}, mixup/cutmix) {:.0} img/s",
            s.files, rounds, s.input_size, s.decode_per_core, s.train_per_core, s.train_total, s.threads, s.batch, s.loader_total
        );
    }
    Ok(())
}
