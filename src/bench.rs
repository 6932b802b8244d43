//! `maestro bench`: what a training step and the input pipeline cost. The step benchmarks run
//! the trainer's own model, loss and optimizer on a fixed random batch (so data loading is not
//! counted) and report images/s, the model FLOPs per image and, given the device's peak, the
//! model FLOP utilisation. The pipeline benchmark decodes and augments image files the way a
//! fine-tune trial does and reports images/s per core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::augment::{MixupCutmix, Normalize, TrainTransform};
use crate::data::catalog::{Item, ItemKey};
use crate::data::image::{ReadFailures, SplitReader, decode_file};
use crate::data::loader::{SplitData, TrainLoader};
use crate::model::config::VitShape;
use crate::model::mae::MaeConfig;
use crate::model::vit::VitConfig;
use crate::train::llrd;

/// Matmul FLOPs (2 per multiply-add) of a ViT forward pass on `tokens` tokens per image:
/// per block qkv, attention scores, attention x values, projection, MLP.
fn blocks_flops(tokens: f64, dim: f64, depth: usize, mlp_ratio: f64) -> f64 {
    let per_block = 2.0 * tokens * dim * 3.0 * dim // qkv
        + 2.0 * tokens * tokens * dim // q k^T
        + 2.0 * tokens * tokens * dim // attn v
        + 2.0 * tokens * dim * dim // proj
        + 2.0 * 2.0 * tokens * dim * mlp_ratio * dim; // fc1 + fc2
    per_block * depth as f64
}

/// Forward FLOPs per image of a fine-tune ViT with `classes` outputs.
pub fn vit_forward_flops(s: &VitShape, classes: usize) -> f64 {
    let l = s.num_patches() as f64;
    let d = s.embed_dim as f64;
    let patch = (s.patch_size * s.patch_size * s.in_chans) as f64;
    2.0 * l * patch * d + blocks_flops(l + 1.0, d, s.depth, s.mlp_ratio) + 2.0 * d * classes as f64
}

/// Forward FLOPs per image of MAE pre-training: the encoder on the visible patches (+ class
/// token), the decoder on all patches (+ class token), the pixel prediction.
pub fn mae_forward_flops(s: &VitShape, mask_ratio: f64, decoder_dim: usize, decoder_depth: usize) -> f64 {
    let l = s.num_patches();
    let keep = (l as f64 * (1.0 - mask_ratio)) as usize;
    let (l, keep) = (l as f64, keep as f64);
    let d = s.embed_dim as f64;
    let dd = decoder_dim as f64;
    let patch = (s.patch_size * s.patch_size * s.in_chans) as f64;
    2.0 * l * patch * d // the patch embedding runs on every patch before masking
        + blocks_flops(keep + 1.0, d, s.depth, s.mlp_ratio)
        + 2.0 * (keep + 1.0) * d * dd
        + blocks_flops(l + 1.0, dd, decoder_depth, s.mlp_ratio)
        + 2.0 * l * dd * patch
}

#[derive(Debug, Clone, Serialize)]
pub struct StepStats {
    pub what: String,
    pub batch: usize,
    pub steps: usize,
    pub images_per_s: f64,
    /// Median wall time of one optimizer step.
    pub step_ms: f64,
    /// Wall time of the very first step, which pays kernel compilation and autotuning.
    pub first_step_s: f64,
    /// Forward + backward, counted as 3x the forward's matmul FLOPs (1x for the forward phase).
    pub train_gflops_per_image: f64,
    pub achieved_tflops: f64,
    /// achieved / peak, when the peak was given.
    pub mfu: Option<f64>,
    /// The kernels PyTorch ran in one more (untimed) step, when a census was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<KernelCount>>,
    /// What PyTorch's profiler saw in one more (untimed) step, when kernel times were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_times: Option<KernelTimes>,
    /// MiB of the device's memory held by one allocation for the whole run (`--hold-mib`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_mib: Option<usize>,
}

/// `mib` MiB of `device`'s memory, allocated and written (so no allocator can defer it), held
/// for as long as the tensor lives: a larger card then has only what a smaller one would, as
/// far as the steps can tell (`bench step --hold-mib`). An allocation the device refuses is an
/// error, not a panic.
pub fn hold_memory(device: &Device, mib: usize) -> Result<Tensor<1>, String> {
    let elements = mib.checked_mul(1 << 18).ok_or_else(|| format!("--hold-mib {mib} is too large"))?; // f32: 2^18 per MiB
    // A refused allocation panics in the backend (tch unwraps PyTorch's error): caught, and its
    // message becomes the error, without the panic hook's report. The hook is the process's;
    // this runs before the steps, with no other thread at work.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let held = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::zeros([elements], device);
        device.sync().map(|_| t).map_err(|e| format!("{e:?}"))
    });
    std::panic::set_hook(hook);
    held.unwrap_or_else(|panic| {
        let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(why.map_or_else(|| "the allocation failed".into(), |w| first_line_of_torch_error(&w)))
    })
    .map_err(|e| format!("holding {mib} MiB of the device's memory: {e}"))
}

/// One step under PyTorch's profiler. On a GPU: every kernel, copy and fill it ran, timed on the
/// GPU (CUPTI), and how much of the step the GPU was busy; the rest of the wall time the GPU
/// waited for the host. On the CPU: the operations the calling thread ran, each timed with
/// those it runs inside it, so the times of nested operations add up to more than the step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTimes {
    /// "gpu" or "cpu": which side's events these are.
    pub device: String,
    /// The step's wall time on the host, from its first launch to the device synced.
    pub wall_ms: f64,
    /// The union of the events' intervals: the time the device ran anything.
    pub busy_ms: f64,
    /// The events' times summed (above `busy_ms` where they overlap or nest).
    pub total_ms: f64,
    /// Each event name with its count and summed time, the longest first.
    pub kernels: Vec<KernelTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTime {
    pub name: String,
    pub count: u64,
    pub total_us: f64,
}

impl KernelTimes {
    /// The profile of a step that took `wall_ms`, from the profiler's events on `device`
    /// ("gpu" or "cpu"): each its start and duration in ns, and its name.
    pub fn of<'a>(device: &str, events: impl IntoIterator<Item = (u64, u64, &'a str)>, wall_ms: f64) -> KernelTimes {
        let mut spans = Vec::new();
        let mut by_name: std::collections::HashMap<&str, (u64, u64)> = std::collections::HashMap::new();
        for (start, duration, name) in events {
            spans.push((start, start.saturating_add(duration)));
            let k = by_name.entry(name).or_default();
            k.0 += 1;
            k.1 += duration;
        }
        spans.sort_unstable();
        let (mut busy, mut reach) = (0u64, 0u64);
        for &(start, end) in &spans {
            let from = start.max(reach);
            if end > from {
                busy += end - from;
            }
            reach = reach.max(end);
        }
        let total_ns: u64 = by_name.values().map(|k| k.1).sum();
        let mut kernels: Vec<KernelTime> =
            by_name.into_iter().map(|(name, (count, ns))| KernelTime { name: name.to_string(), count, total_us: ns as f64 / 1e3 }).collect();
        kernels.sort_by(|a, b| b.total_us.total_cmp(&a.total_us).then_with(|| a.name.cmp(&b.name)));
        KernelTimes { device: device.into(), wall_ms, busy_ms: busy as f64 / 1e6, total_ms: total_ns as f64 / 1e6, kernels }
    }
}

/// One kind of kernel in a census of a step: how often it ran, and the elements of its tensor
/// inputs summed (a proxy for the memory it reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelCount {
    pub name: String,
    pub count: u64,
    pub input_elements: u64,
}

/// PyTorch's own message out of tch's panic text (`...unwrap()... Torch("MESSAGE\nframe #0: ...")`):
/// its first line, without the C++ backtrace.
fn first_line_of_torch_error(panic: &str) -> String {
    let message = panic.split_once("Torch(\"").map_or(panic, |(_, m)| m);
    let end = [message.find("\\n"), message.find('\n')].into_iter().flatten().min().unwrap_or(message.len());
    message[..end].trim_end_matches("\")").to_string()
}

/// Whether a step benchmark ends with a step under PyTorch's profiler, and whose events it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Off,
    /// The GPU's kernels, copies and fills (a `libtorch-cuda` device).
    Gpu,
    /// The CPU's operations (a `libtorch-cpu` device).
    Cpu,
}

/// Whether a step benchmark ends with a kernel census, and how it names the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Census {
    Off,
    /// By operation name.
    ByName,
    /// By operation name and the dtype, sizes and strides of its tensor inputs.
    ByShape,
}

/// The kernels PyTorch runs during `step` (LibTorch devices only; see `torch_ops::census`).
#[cfg(feature = "tch")]
fn census(by_shape: bool, step: impl FnOnce() -> Result<(), String>) -> Result<Vec<KernelCount>, String> {
    let (r, counts) = crate::torch_ops::census(by_shape, step)?;
    r?;
    Ok(counts.into_iter().map(|(name, count, input_elements)| KernelCount { name, count, input_elements }).collect())
}

#[cfg(not(feature = "tch"))]
fn census(_by_shape: bool, _step: impl FnOnce() -> Result<(), String>) -> Result<Vec<KernelCount>, String> {
    Err("a kernel census needs a build with the `tch` feature and a libtorch device".into())
}

/// `step` under PyTorch's profiler, on the GPU's events or the CPU's (LibTorch devices only; see
/// `torch_ops::profile`).
#[cfg(feature = "tch")]
fn kernel_times(gpu: bool, step: impl FnOnce() -> Result<(), String>) -> Result<KernelTimes, String> {
    let mut wall_ms = 0.0;
    let (r, events) = crate::torch_ops::profile(gpu, || {
        let t = Instant::now();
        let r = step();
        wall_ms = t.elapsed().as_secs_f64() * 1e3;
        r
    })?;
    r?;
    let mine = events.iter().filter(|e| e.on_gpu == gpu).map(|e| (e.start_ns, e.duration_ns, e.name.as_str()));
    Ok(KernelTimes::of(if gpu { "gpu" } else { "cpu" }, mine, wall_ms))
}

#[cfg(not(feature = "tch"))]
fn kernel_times(_gpu: bool, _step: impl FnOnce() -> Result<(), String>) -> Result<KernelTimes, String> {
    Err("kernel times need a build with the `tch` feature and a libtorch device".into())
}

fn stats(what: String, r: &StepRequest, Timed { first, times, kernels, kernel_times }: Timed, forward_flops_per_image: f64) -> StepStats {
    let (batch, peak_tflops) = (r.batch, r.peak_tflops);
    let what = if crate::model::fused::enabled() { what } else { format!("{what}, unfused attention + LayerNorm + linear + burn's AdamW") };
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let total: f64 = times.iter().sum();
    let images_per_s = (batch * times.len()) as f64 / total;
    let train = match r.phase {
        Phase::Forward => forward_flops_per_image,
        Phase::Backward | Phase::Step => 3.0 * forward_flops_per_image,
        Phase::Optimizer => 0.0,
    };
    let achieved = images_per_s * train / 1e12;
    StepStats {
        what,
        batch,
        steps: times.len(),
        images_per_s,
        step_ms: median * 1e3,
        first_step_s: first,
        train_gflops_per_image: train / 1e9,
        achieved_tflops: achieved,
        mfu: peak_tflops.map(|p| achieved / p),
        kernels,
        kernel_times,
        held_mib: None,
    }
}

/// How much of a training step a benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The loss in inference (the model without autodiff, read back). burn keeps the graph of
    /// a loss that is dropped without a backward pass, so a graph-recording forward cannot be
    /// repeated on its own.
    Forward,
    /// Forward and backward.
    Backward,
    /// Forward, backward and the optimizer update.
    Step,
    /// The optimizer update alone, on random gradients made (untimed) before each update.
    Optimizer,
}

pub struct StepRequest {
    pub shape: VitShape,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    pub device: Device,
    pub classes: usize,
    pub peak_tflops: Option<f64>,
    /// bf16 mixed precision in the transformer blocks.
    pub bf16: bool,
    pub phase: Phase,
    /// Count the kernels PyTorch runs in one more step after the timed ones.
    pub census: Census,
    /// Profile one more step after the timed ones (and the census).
    pub profile: Profile,
}

/// What [`time_steps`] measured.
struct Timed {
    /// The first step's seconds (compilation and autotuning included).
    first: f64,
    /// The timed steps' seconds.
    times: Vec<f64>,
    kernels: Option<Vec<KernelCount>>,
    kernel_times: Option<KernelTimes>,
}

/// Time `steps` steps after `warmup` untimed ones; every step ends with the device synced, and
/// `prepare` (untimed, synced before the clock starts) readies each one. Each warm-up step's
/// time goes to stderr as it ends, so a slow cold start shows where it is. With a census or a
/// profile asked for, one more step runs under each.
fn time_steps(
    r: &StepRequest,
    what: &str,
    mut prepare: impl FnMut() -> Result<(), String>,
    mut step: impl FnMut() -> Result<(), String>,
) -> Result<Timed, String> {
    let sync = || r.device.sync().map_err(|e| format!("{e:?}"));
    let (mut first, mut times) = (None, Vec::with_capacity(r.steps));
    for i in 0..r.warmup + r.steps {
        prepare()?;
        sync()?;
        let t = Instant::now();
        step()?;
        sync()?;
        let s = t.elapsed().as_secs_f64();
        if i < r.warmup {
            first.get_or_insert(s);
            eprintln!("{what}: warm-up step {} took {s:.2} s", i + 1);
        } else {
            times.push(s);
        }
    }
    let kernels = if r.census != Census::Off {
        prepare()?;
        sync()?;
        Some(census(r.census == Census::ByShape, || {
            step()?;
            sync()
        })?)
    } else {
        None
    };
    let kernel_times = if r.profile != Profile::Off {
        prepare()?;
        sync()?;
        Some(kernel_times(r.profile == Profile::Gpu, || {
            step()?;
            sync()
        })?)
    } else {
        None
    };
    Ok(Timed { first: first.unwrap_or(times[0]), times, kernels, kernel_times })
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Backward => "forward + backward",
            Phase::Step => "step",
            Phase::Optimizer => "AdamW update",
        }
    }
}

/// Random gradients for every float parameter of a module, on its device without autodiff.
struct RandomGrads(GradientsParams);

impl ModuleVisitor for RandomGrads {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let g = Tensor::<D>::random(t.shape(), Distribution::Normal(0.0, 1e-3), &t.device().inner());
        self.0.register(p.id, g);
    }
}

/// Times the optimizer update alone, each on fresh random gradients made before its clock starts.
fn time_optimizer<M: Module>(r: &StepRequest, what: &str, model: &mut Option<M>, optim: &mut ModuleOptimizer) -> Result<Timed, String> {
    let grads = std::cell::RefCell::new(GradientsParams::new());
    let model = std::cell::RefCell::new(model);
    time_steps(
        r,
        what,
        || {
            let mut g = RandomGrads(GradientsParams::new());
            model.borrow().as_ref().expect("the model").visit(&mut g);
            *grads.borrow_mut() = g.0;
            Ok(())
        },
        || {
            optimizer_step(&mut model.borrow_mut(), optim, grads.take());
            Ok(())
        },
    )
}

/// Steps the optimizer with the model moved in, as the trainer does, so that parameters no
/// other handle shares can be updated in place.
fn optimizer_step<M: Module>(model: &mut Option<M>, optim: &mut ModuleOptimizer, grads: GradientsParams) {
    let m = model.take().expect("the model");
    *model = Some(optim.step(1e-4, m, grads));
}

/// The rest of a step after the loss, as far as `phase` goes (the caller syncs the device).
fn finish<M: Module>(phase: Phase, loss: Tensor<1>, model: &mut Option<M>, optim: &mut ModuleOptimizer) {
    match phase {
        // Read back: a lazy backend could otherwise drop work whose result nobody uses.
        Phase::Forward => drop(loss.into_data()),
        Phase::Backward => drop(loss.backward()),
        Phase::Step => {
            let grads = GradientsParams::from_grads(loss.backward(), model.as_ref().expect("the model"));
            optimizer_step(model, optim, grads);
        }
        Phase::Optimizer => unreachable!("timed by time_optimizer"),
    }
}

/// One fine-tune step as the trainer takes it: forward, soft-target cross-entropy, backward,
/// AdamW with the LLRD parameter groups.
pub fn finetune_step(r: &StepRequest) -> Result<StepStats, String> {
    let ad = r.device.clone().autodiff();
    ad.seed(0);
    let s = &r.shape;
    let model = VitConfig { shape: s.clone(), num_classes: r.classes, drop_path: 0.1, global_pool: true, bf16: r.bf16 }.init(&ad);
    let recipes = llrd::param_recipes(&model, s.depth, 0.75, 0.05);
    let mut model = Some(model);
    let mut optim = llrd::optimizer(&recipes, 0.05, [0.9, 0.999], 1e-8);
    let x = Tensor::<4>::random([r.batch, s.in_chans, s.image_size, s.image_size], Distribution::Normal(0.0, 1.0), &ad);
    let t = log_softmax(Tensor::<2>::random([r.batch, r.classes], Distribution::Normal(0.0, 1.0), &ad), 1).exp();
    let (xi, ti) = (x.clone().inner(), t.clone().inner());
    let times = if r.phase == Phase::Optimizer {
        time_optimizer(r, "fine-tune", &mut model, &mut optim)?
    } else {
        time_steps(r, "fine-tune", || Ok(()), || {
            let loss = if r.phase == Phase::Forward {
                (log_softmax(model.as_ref().expect("the model").valid().forward(xi.clone()), 1) * ti.clone()).sum_dim(1).neg().mean()
            } else {
                (log_softmax(model.as_ref().expect("the model").forward(x.clone()), 1) * t.clone()).sum_dim(1).neg().mean()
            };
            finish(r.phase, loss, &mut model, &mut optim);
            Ok(())
        })?
    };
    let precision = if r.bf16 { "bf16 mixed" } else { "f32" };
    Ok(stats(format!("fine-tune {}, {s}, {precision}", r.phase.name()), r, times, vit_forward_flops(s, r.classes)))
}

/// One MAE pre-training step: masking, encoder on the visible patches, decoder, loss on the
/// removed patches, backward, AdamW (0.9, 0.95).
pub fn pretrain_step(r: &StepRequest, mask_ratio: f64, decoder_dim: usize, decoder_depth: usize, decoder_heads: usize) -> Result<StepStats, String> {
    let ad = r.device.clone().autodiff();
    ad.seed(0);
    let s = &r.shape;
    let cfg = MaeConfig {
        encoder: s.clone(),
        decoder_embed_dim: decoder_dim,
        decoder_depth,
        decoder_num_heads: decoder_heads,
        norm_pix_loss: true,
        supervised_classes: None,
        bf16: r.bf16,
    };
    let mut model = Some(cfg.init(&ad));
    let mut optim = crate::train::adamw::AdamW::new([0.9, 0.95], 1e-8, 0.05).init();
    let x = Tensor::<4>::random([r.batch, s.in_chans, s.image_size, s.image_size], Distribution::Normal(0.0, 1.0), &ad);
    let l = s.num_patches();
    let xi = x.clone().inner();
    let times = if r.phase == Phase::Optimizer {
        time_optimizer(r, "pre-training", &mut model, &mut optim)?
    } else {
        time_steps(r, "pre-training", || Ok(()), || {
            let noise = Tensor::<2>::random([r.batch, l], Distribution::Uniform(0.0, 1.0), &ad);
            let loss = if r.phase == Phase::Forward {
                model.as_ref().expect("the model").valid().forward(xi.clone(), noise.inner(), mask_ratio, None).loss
            } else {
                model.as_ref().expect("the model").forward(x.clone(), noise, mask_ratio, None).loss
            };
            finish(r.phase, loss, &mut model, &mut optim);
            Ok(())
        })?
    };
    let precision = if r.bf16 { "bf16 mixed" } else { "f32" };
    let what = format!("pre-training {}, {s}, mask {mask_ratio}, decoder {decoder_depth}x{decoder_dim}, {precision}", r.phase.name());
    Ok(stats(what, r, times, mae_forward_flops(s, mask_ratio, decoder_dim, decoder_depth)))
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineStats {
    pub files: usize,
    pub threads: usize,
    pub input_size: usize,
    /// Decoding only, per core.
    pub decode_per_core: f64,
    /// Decode + RandomResizedCrop + flip + RandAugment + erasing + normalise, per core.
    pub train_per_core: f64,
    /// The same on all `threads` together.
    pub train_total: f64,
    /// The trainer's loader: whole batches of `batch` (the transform on all cores (rayon's global pool), MAE's
    /// mixup/cutmix, the batch buffer), one prepared ahead, as a fine-tune trial takes them.
    pub batch: usize,
    pub loader_total: f64,
}

/// The fine-tune input pipeline (timm's ImageNet training transform, MAE's settings) on image
/// files: `rounds` passes over them, single-threaded and then on `threads` threads.
pub fn pipeline(files: &[PathBuf], input_size: usize, rounds: usize, threads: usize, batch: usize) -> Result<PipelineStats, String> {
    if files.is_empty() {
        return Err("no image files to read".into());
    }
    let transform = TrainTransform::new(input_size, Normalize::imagenet());
    let n = files.len() * rounds;
    let t = Instant::now();
    for _ in 0..rounds {
        for f in files {
            std::hint::black_box(decode_file(f, 3).map_err(|e| format!("{}: {e}", f.display()))?);
        }
    }
    let decode_per_core = n as f64 / t.elapsed().as_secs_f64();
    let one = |i: usize| -> Result<usize, String> {
        let f = &files[i % files.len()];
        let img = decode_file(f, 3).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        Ok(std::hint::black_box(transform.apply(&img, &mut rng)).len())
    };
    let t = Instant::now();
    for i in 0..n {
        one(i)?;
    }
    let train_per_core = n as f64 / t.elapsed().as_secs_f64();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(|e| e.to_string())?;
    let t = Instant::now();
    pool.install(|| {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(one).collect::<Result<Vec<_>, _>>()
    })?;
    let train_total = n as f64 / t.elapsed().as_secs_f64();
    let batch = batch.clamp(1, files.len());
    let loader_total = loader_rate(files, transform.clone(), batch, rounds.max(1));
    Ok(PipelineStats { files: files.len(), threads: threads.max(1), input_size, decode_per_core, train_per_core, train_total, batch, loader_total })
}

/// Images/s of `TrainLoader` over `files` (each file an item of class 0 of 1000) with MAE's
/// mixup/cutmix (timm's `--mixup 0.8 --cutmix 1.0`, smoothing 0.1), for `rounds` epochs.
fn loader_rate(files: &[PathBuf], transform: TrainTransform, batch: usize, rounds: usize) -> f64 {
    let items = files.iter().map(|f| Item { key: ItemKey::Path(f.to_string_lossy().into_owned()), label: 0 }).collect();
    // An absolute item path replaces the reader's folder when joined to it.
    let data = SplitData { reader: SplitReader::Files { dir: PathBuf::new() }, items, channels: 3, failures: ReadFailures::default() };
    let mix = MixupCutmix { mixup_alpha: 0.8, cutmix_alpha: 1.0, prob: 1.0, switch_prob: 0.5, label_smoothing: 0.1, num_classes: 1000 };
    let loader = TrainLoader { data: Arc::new(data), transform: Arc::new(transform), mix: Some(Arc::new(mix)), batch, seed: 0 };
    let t = Instant::now();
    let mut n = 0;
    for epoch in 0..rounds {
        for b in loader.epoch(epoch as u64, 0).iter() {
            n += std::hint::black_box(b).size;
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_errors_lose_their_backtrace() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("CUDA out of memory. Tried to allocate 60.00 GiB.\nframe #0: c10::Error")"#;
        assert_eq!(first_line_of_torch_error(panic), "CUDA out of memory. Tried to allocate 60.00 GiB.");
        assert_eq!(first_line_of_torch_error(r#"Torch("short")"#), "short");
        assert_eq!(first_line_of_torch_error("out of memory\nmore"), "out of memory");
    }

    #[test]
    fn kernel_times_count_overlaps_once_in_the_busy_time() {
        // a: 0-10 and 30-35; b: 5-20 (overlapping a); c: 40-41. Busy: 0-20, 30-35, 40-41.
        let events = [(30, 5, "a"), (0, 10, "a"), (5, 15, "b"), (40, 1, "c")];
        let t = KernelTimes::of("gpu", events.iter().map(|&(s, d, n)| (s * 1000, d * 1000, n)), 0.05);
        assert_eq!(t.busy_ms, 0.026);
        assert_eq!(t.total_ms, 0.031);
        let rows: Vec<_> = t.kernels.iter().map(|k| (k.name.as_str(), k.count, k.total_us)).collect();
        assert_eq!(rows, [("a", 2, 15.0), ("b", 1, 15.0), ("c", 1, 1.0)]);
    }

    #[test]
    fn vit_b_flops_match_the_usual_count() {
        // ViT-B/16 at 224: 17.56 GMACs (timm's model card and fvcore count multiply-adds), so
        // 35.1 GFLOPs at 2 FLOPs per multiply-add.
        let s = VitShape { image_size: 224, patch_size: 16, in_chans: 3, embed_dim: 768, depth: 12, num_heads: 12, mlp_ratio: 4.0 };
        let g = vit_forward_flops(&s, 1000) / 1e9;
        assert!((g - 2.0 * 17.56).abs() < 0.1, "{g}");
        // MAE pre-training with mask 0.75 and an 8x512 decoder: the encoder sees 50 tokens.
        let m = mae_forward_flops(&s, 0.75, 512, 8) / 1e9;
        let enc = blocks_flops(50.0, 768.0, 12, 4.0) / 1e9;
        assert!(m > enc && m < g, "{m}");
    }
}
