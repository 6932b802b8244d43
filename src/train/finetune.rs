//! One fine-tune run with MAE's recipe (main_finetune.py + engine_finetune.py), on any device.
//!
//! The loop: seeded epoch order, augmented batches prepared one ahead, soft-target
//! cross-entropy (mixup/cutmix + label smoothing), gradient accumulation, gradient clipping by
//! the global norm when `clip_grad` is set (`clip.rs`), the per-step LLRD
//! schedule, and an evaluation of top-1/top-5 after every epoch. A checkpoint (model,
//! optimizer, progress) is written atomically after every epoch; a run started again on the
//! same folder with the same spec resumes from it and ends where an uninterrupted run would.
//! A non-finite loss ends the run as diverged, with the step, and still writes a result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::llrd;
use super::losses::DeviceLosses;
use super::schedule::CosineSchedule;
use super::spec::{EpochMetrics, FinetuneResult, FinetuneSpec, RunStatus, write_atomic};
use crate::data::augment::{EvalTransform, MixupCutmix, Normalize, RandAugmentSpec, TrainTransform};
use crate::data::image::{ReadFailures, SplitReader};
use crate::data::loader::{Batch, SplitData, TrainLoader, eval_batches, iters_per_epoch};
use crate::data::manifest::Manifest;
use crate::data::{Item, Source};
use crate::device::DeviceSpec;
use crate::model::checkpoint::{self, LoadMode};
use crate::model::vit::{VisionTransformer, VitConfig};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Settings that cannot work (exit code 2).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Progress saved after every epoch.
#[derive(Debug, Serialize, Deserialize)]
struct ResumeState {
    spec_hash: String,
    epochs_done: usize,
    step: usize,
    epochs: Vec<EpochMetrics>,
    train_wall_s: f64,
    train_images: usize,
    wall_s: f64,
}

/// Per-dataset normalisation (ImageNet for colour folders, Fashion-MNIST's own statistics).
pub fn normalization(source: &Source, channels: usize) -> Normalize {
    match source {
        Source::FashionMnist { .. } => Normalize { mean: vec![0.2860; channels], std: vec![0.3530; channels] },
        Source::Imagefolder { .. } => Normalize::for_channels(channels),
    }
}

struct Data {
    train: Arc<SplitData>,
    val: SplitData,
    num_classes: usize,
}

fn split_data(source: &Source, split: &str, items: Vec<Item>, channels: u8) -> Result<SplitData, TrainError> {
    Ok(SplitData { reader: SplitReader::open(source, split)?, items, channels, failures: ReadFailures::default() })
}

/// The channels images are read with: 1 (grey) or 3 (colour).
pub(crate) fn read_channels(in_chans: usize) -> Result<u8, TrainError> {
    match in_chans {
        1 => Ok(1),
        3 => Ok(3),
        c => Err(TrainError::Setup(format!("in_chans {c}: images are read as 1 (grey) or 3 (colour) channels"))),
    }
}

fn load_data(spec: &FinetuneSpec) -> Result<Data, TrainError> {
    let channels = read_channels(spec.model.in_chans)?;
    let (train, val, classes) = match &spec.manifest {
        Some(path) => {
            let m = Manifest::read(path)?;
            let source = m.source_at(&spec.source).map_err(|e| TrainError::Setup(format!("{}: {e}", path.display())))?;
            let n = m.num_classes();
            (
                split_data(&source, &m.train.split, m.train.items, channels)?,
                split_data(&source, &m.val.split, m.val.items, channels)?,
                n,
            )
        }
        None => {
            let cat = spec.source.scan()?;
            let n = cat.num_classes();
            (split_data(&spec.source, &cat.train.name, cat.train.items, channels)?, split_data(&spec.source, &cat.val.name, cat.val.items, channels)?, n)
        }
    };
    Ok(Data { train: Arc::new(train), val, num_classes: classes })
}

/// Soft-target cross-entropy, mean over the batch.
fn soft_ce(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).neg().mean()
}

/// Adds losses read from the device to the epoch's sum, in order; the optimizer step of the
/// first that is NaN or infinite stops it.
fn absorb(read: Vec<(usize, Vec<f64>)>, sum: &mut f64, n: &mut usize) -> Option<usize> {
    for (step, v) in read {
        if !v[0].is_finite() {
            return Some(step);
        }
        *sum += v[0];
        *n += 1;
    }
    None
}

/// The batch's images as a tensor; takes the buffer rather than copying it.
fn to_images(b: &mut Batch, device: &Device) -> Tensor<4> {
    super::upload::images(std::mem::take(&mut b.images), [b.size, b.channels, b.height, b.width], device)
}

struct Eval {
    loss: f64,
    top1: f64,
    top5: f64,
    /// Images evaluated (unreadable ones are skipped).
    images: usize,
    /// Images whose logits were not all finite: the weights have diverged.
    nonfinite: usize,
}

/// Whether the label is within the top `k` of a row of logits. Ties count against (a class
/// that scores the same as the label ranks above it), and a row with a NaN or infinite logit
/// is a miss: `v > target` is false against NaN, which would otherwise score it as a hit.
fn in_top_k(row: &[f32], label: usize, k: usize) -> bool {
    let target = row[label];
    if row.iter().any(|v| !v.is_finite()) {
        return false;
    }
    let above = row.iter().enumerate().filter(|&(i, &v)| i != label && v >= target).count();
    above < k
}

fn evaluate(model: &VisionTransformer, data: &SplitData, transform: &EvalTransform, batch: usize, classes: usize, device: &Device) -> Eval {
    let model = model.valid();
    let k = classes.min(5);
    let (mut n, mut loss, mut c1, mut c5, mut nonfinite) = (0usize, 0f64, 0usize, 0usize, 0usize);
    // Batches are read and transformed on all cores, one ahead of the model.
    std::thread::scope(|scope| {
        for mut b in eval_batches(scope, data, transform, batch) {
            if b.size == 0 {
                continue;
            }
            let logits = model.forward(to_images(&mut b, device));
            let values: Vec<f32> = logits.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 logits");
            for (row, &label) in values.chunks_exact(classes).zip(&b.labels) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
                loss += (lse - row[label as usize]) as f64;
                nonfinite += usize::from(row.iter().any(|v| !v.is_finite()));
                c1 += usize::from(in_top_k(row, label as usize, 1));
                c5 += usize::from(in_top_k(row, label as usize, k));
            }
            n += b.size;
        }
    });
    let images = n;
    let n = n.max(1) as f64;
    Eval { loss: loss / n, top1: 100.0 * c1 as f64 / n, top5: 100.0 * c5 as f64 / n, images, nonfinite }
}

/// The checkpoint to resume from: `dir`, or the previous one (`dir.old`) when a crash came
/// between moving it out and the new one in.
pub(crate) fn checkpoint_to_resume(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.with_extension("old")].into_iter().find(|d| d.join("state.json").is_file())
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A checkpoint that cannot be read (a damaged disk, a crash the file system did not survive)
/// is moved to `<dir>.damaged` and the run starts over, rather than failing on it at every
/// retry. Said on stderr, which a trial's log keeps, quiet or not.
pub(crate) fn set_aside(dir: &Path, why: &str) -> Result<(), TrainError> {
    let aside = dir.with_extension("damaged");
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(dir, &aside).map_err(io_err(dir))?;
    eprintln!("warning: cannot resume from {} ({why}); moved it to {} and starting over", dir.display(), aside.display());
    Ok(())
}

/// Make a file's contents durable.
fn sync(path: &Path) -> Result<(), TrainError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

/// Write model, optimizer and progress into `dir` atomically: a new folder beside it, then swapped
/// in, so a crash leaves the previous epoch's checkpoint whole. Shared by fine-tune and pre-training.
pub(crate) fn save_checkpoint<M: Module, S: Serialize>(dir: &Path, model: &M, optim: &ModuleOptimizer, state: &S) -> Result<(), TrainError> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    model.clone().save_file(tmp.join("model.bpk")).map_err(|e| TrainError::Io { path: tmp.join("model.bpk"), message: e.to_string() })?;
    optim.save(tmp.join("optim.bpk")).map_err(|e| TrainError::Io { path: tmp.join("optim.bpk"), message: e.to_string() })?;
    write_atomic(&tmp.join("state.json"), serde_json::to_string_pretty(state).unwrap().as_bytes()).map_err(io_err(&tmp))?;
    for f in ["model.bpk", "optim.bpk", "state.json"] {
        sync(&tmp.join(f))?;
    }
    // Swap in the new checkpoint; the old one stays until the new one is complete (a crash
    // between the two renames leaves `dir.old`, which a resume takes).
    let old = dir.with_extension("old");
    if dir.join("state.json").is_file() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
    } else if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent() {
        let _ = std::fs::File::open(parent).and_then(|f| f.sync_all());
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg} ({eta} left)")
            .expect("valid template"),
    );
    pb
}

/// Run (or resume) a fine-tune into `out_dir`: `finetune.json` (the spec), `result.json`,
/// `checkpoint/`, `model.safetensors`.
pub fn run(spec: &FinetuneSpec, out_dir: &Path, quiet: bool) -> Result<FinetuneResult, TrainError> {
    let r = &spec.recipe;
    if !(spec.llrd > 0.0 && spec.llrd <= 1.0) {
        return Err(TrainError::Setup(format!("LLRD must be in (0, 1], got {}", spec.llrd)));
    }
    let dev_spec: DeviceSpec = spec.device.parse().map_err(TrainError::Setup)?;
    let device = dev_spec.burn_device().map_err(TrainError::Setup)?;
    let ad = device.clone().autodiff();
    let data = load_data(spec)?;
    let classes = data.num_classes;
    let batch = r.batch_size;
    let ipe = iters_per_epoch(data.train.items.len(), batch);
    if ipe == 0 {
        return Err(TrainError::Setup(format!(
            "batch_size {batch} is larger than the {} training images; lower finetune.batch_size",
            data.train.items.len()
        )));
    }
    if ipe < r.accum_iter {
        return Err(TrainError::Setup(format!(
            "batch_size {batch} x accum_iter {} is more than the {} training images: an epoch would make no optimizer step; lower finetune.accum_iter",
            r.accum_iter,
            data.train.items.len()
        )));
    }
    let schedule = CosineSchedule::from_blr(spec.blr, batch, r.accum_iter, r.min_lr, r.warmup_epochs, r.epochs, ipe);
    let total_steps = schedule.steps_capped(spec.max_steps);

    let shape = &spec.model;
    let normalize = normalization(&spec.source, shape.in_chans);
    let randaug = RandAugmentSpec::parse(&r.aa).map_err(TrainError::Setup)?;
    let train_tf = TrainTransform {
        input_size: shape.image_size,
        scale: (r.crop_scale[0], r.crop_scale[1]),
        ratio: (3.0 / 4.0, 4.0 / 3.0),
        hflip: r.hflip,
        randaug,
        reprob: r.reprob,
        normalize: normalize.clone(),
    };
    let eval_tf = EvalTransform { input_size: shape.image_size, crop_pct: r.eval_crop_pct, normalize };
    let mix = MixupCutmix {
        mixup_alpha: r.mixup,
        cutmix_alpha: r.cutmix,
        prob: r.mixup_prob,
        switch_prob: r.mixup_switch_prob,
        label_smoothing: r.smoothing,
        num_classes: classes,
    };
    let loader = TrainLoader { data: data.train.clone(), transform: Arc::new(train_tf), mix: Some(Arc::new(mix)), batch, seed: spec.seed };

    // The model: seeded init, then the pre-trained encoder if any.
    ad.seed(spec.seed);
    let bf16 = r.precision.bf16_on(&dev_spec);
    if bf16 && !ad.supports_dtype(burn::tensor::FloatDType::BF16) {
        return Err(TrainError::Setup(format!("finetune.precision: {} cannot compute in bf16; use precision: f32", spec.device)));
    }
    let cfg = VitConfig { shape: shape.clone(), num_classes: classes, drop_path: r.drop_path, global_pool: r.global_pool, bf16 };
    let mut model = cfg.init(&ad);
    if let Some(ckpt) = &spec.checkpoint {
        let report = checkpoint::load(&mut model, ckpt, LoadMode::Pretrained, &shape.to_string())?;
        if !quiet {
            eprintln!("{}: {report}", ckpt.display());
        }
        // main_finetune.py: trunc_normal_(head.weight, std=2e-5) after loading.
        let w = model.head.weight.val();
        model.head.weight = Param::from_tensor(Tensor::random(w.dims(), Distribution::Normal(0.0, 2e-5), &ad));
    }
    let recipes = llrd::param_recipes(&model, shape.depth, spec.llrd, r.weight_decay);
    let mut optim = llrd::optimizer(&recipes, r.weight_decay, r.betas, r.eps);

    // Resume from this folder's checkpoint when it is of the same spec.
    let ckpt_dir = out_dir.join("checkpoint");
    let hash = spec.hash();
    let mut state = ResumeState { spec_hash: hash.clone(), epochs_done: 0, step: 0, epochs: Vec::new(), train_wall_s: 0.0, train_images: 0, wall_s: 0.0 };
    if let Some(dir) = checkpoint_to_resume(&ckpt_dir) {
        let loaded = read_json::<ResumeState>(&dir.join("state.json")).and_then(|saved| {
            if saved.spec_hash != hash && saved.spec_hash != spec.legacy_hash() {
                return Ok(Err(saved.spec_hash));
            }
            let m = model.clone().try_load_file(dir.join("model.bpk")).map_err(|e| format!("{}: {e}", dir.join("model.bpk").display()))?;
            let o = optim.clone().load(dir.join("optim.bpk")).map_err(|e| format!("{}: {e}", dir.join("optim.bpk").display()))?;
            Ok(Ok((saved, m, o)))
        });
        match loaded {
            Ok(Ok((saved, m, o))) => {
                // Said when quiet too: a trial's log then shows where it took up.
                eprintln!("resuming {} after epoch {} (step {})", out_dir.display(), saved.epochs_done, saved.step);
                (model, optim, state) = (m, o, saved);
            }
            Ok(Err(other)) => {
                return Err(TrainError::Setup(format!(
                    "{}: holds a checkpoint of other settings (spec {other} vs {hash}); use another output folder",
                    out_dir.display()
                )));
            }
            Err(why) => set_aside(&dir, &why)?,
        }
    }
    // Written once the settings are known to be usable and of this folder's checkpoint, so a
    // refused start leaves the folder as it was.
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    write_atomic(&out_dir.join("finetune.json"), serde_json::to_string_pretty(spec).unwrap().as_bytes()).map_err(io_err(out_dir))?;
    let mut sched = llrd::scheduler(&recipes, &schedule, state.step);

    let pb = progress_bar(total_steps as u64, quiet);
    pb.set_position(state.step as u64);
    let mut status = RunStatus::Completed;
    let mut diverged_at = None;
    // Validation images whose logits were NaN or infinite, when that is how divergence showed.
    let mut diverged_in_eval = 0usize;
    let mut epoch = state.epochs_done;
    while state.step < total_steps {
        // A new epoch starts with no gradient: the micro-batches the last one left over are
        // dropped, as MAE's engine drops them.
        let mut accumulator = GradientsAccumulator::<VisionTransformer>::new();
        // Reseeding per epoch makes a resumed run draw the same drop-path masks.
        ad.seed(spec.seed.wrapping_add(1 + epoch as u64));
        let t_epoch = Instant::now();
        let (mut loss_sum, mut loss_n, mut images) = (0f64, 0usize, 0usize);
        let mut micro = 0usize;
        let mut lr_now = 0.0;
        let mut losses = DeviceLosses::default();
        for mut b in loader.epoch(epoch as u64, 0).iter() {
            if b.size == 0 {
                continue;
            }
            let x = to_images(&mut b, &ad);
            let t = Tensor::<2>::from_data(TensorData::new(std::mem::take(&mut b.targets), [b.size, classes]), &ad);
            let loss = soft_ce(model.forward(x), t);
            losses.push(state.step, vec![loss.clone().inner()]);
            images += b.size;
            let scaled = if r.accum_iter > 1 { loss / r.accum_iter as f32 } else { loss };
            let mut grads = GradientsParams::from_grads(scaled.backward(), &model);
            micro += 1;
            if r.accum_iter > 1 {
                accumulator.accumulate(&model, grads);
                if micro % r.accum_iter != 0 {
                    continue;
                }
                grads = accumulator.grads();
            }
            if let Some(max_norm) = r.clip_grad {
                grads = super::clip::clip_grad_norm(&model, grads, max_norm);
            }
            let lr = sched.step();
            lr_now = schedule.lr_at(state.step);
            model = optim.step(lr, model, grads);
            state.step += 1;
            pb.set_position(state.step as u64);
            if losses.is_due() {
                diverged_at = absorb(losses.read(), &mut loss_sum, &mut loss_n);
                if diverged_at.is_some() {
                    break;
                }
                pb.set_message(format!("epoch {} loss {:.4} lr {:.2e}", epoch + 1, loss_sum / loss_n.max(1) as f64, lr_now));
            }
            if state.step >= total_steps {
                break;
            }
        }
        if diverged_at.is_none() {
            diverged_at = absorb(losses.read(), &mut loss_sum, &mut loss_n);
        }
        if diverged_at.is_some() {
            status = RunStatus::Diverged;
        }
        if micro == 0 {
            return Err(TrainError::Setup(format!(
                "the data loader produced no batch this epoch{}",
                data.train.failures.report().map(|r| format!(": {r}")).unwrap_or_default()
            )));
        }
        let train_s = t_epoch.elapsed().as_secs_f64();
        state.train_wall_s += train_s;
        state.train_images += images;
        if status == RunStatus::Diverged {
            break;
        }
        let ev = evaluate(&model, &data.val, &eval_tf, spec.eval_batch_size, classes, &device);
        if ev.images == 0 {
            // A top-1 of no image is no measurement: it must not become a point of the fit.
            return Err(TrainError::Setup(format!(
                "no validation image could be read, so there is no accuracy to report{}",
                data.val.failures.report().map(|r| format!("; {r}")).unwrap_or_default()
            )));
        }
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / loss_n.max(1) as f64,
            val_loss: ev.loss,
            top1: ev.top1,
            top5: ev.top5,
            lr: lr_now,
            images_per_s: images as f64 / train_s.max(1e-9),
            wall_s: t_epoch.elapsed().as_secs_f64(),
        };
        pb.suspend(|| {
            if !quiet {
                eprintln!(
                    "epoch {:>3}: train loss {:.4}, val loss {:.4}, top-1 {:.2}%, top-5 {:.2}%, {:.0} img/s",
                    m.epoch, m.train_loss, m.val_loss, m.top1, m.top5, m.images_per_s
                );
            }
        });
        state.epochs.push(m);
        if ev.nonfinite > 0 {
            // The losses were finite, but the last updates made the weights NaN or infinite:
            // diverged, never a measurement (NaN logits must not score).
            status = RunStatus::Diverged;
            diverged_at = Some(state.step);
            diverged_in_eval = ev.nonfinite;
            break;
        }
        epoch += 1;
        state.epochs_done = epoch;
        state.wall_s += t_epoch.elapsed().as_secs_f64();
        save_checkpoint(&ckpt_dir, &model, &optim, &state)?;
    }
    pb.finish_and_clear();

    let last = state.epochs.last();
    let result = FinetuneResult {
        name: spec.name.clone(),
        spec_hash: hash,
        status,
        top1: last.map_or(0.0, |m| m.top1),
        top5: last.map_or(0.0, |m| m.top5),
        best_top1: state.epochs.iter().map(|m| m.top1).fold(0.0, f64::max),
        steps: state.step,
        wall_s: state.wall_s,
        images_per_s: state.train_images as f64 / state.train_wall_s.max(1e-9),
        train_images: data.train.items.len(),
        val_images: data.val.items.len(),
        num_classes: classes,
        diverged_at_step: diverged_at,
        error: diverged_at.map(|s| {
            if diverged_in_eval > 0 {
                format!("the model's outputs became NaN or infinite on {diverged_in_eval} validation images after optimizer step {s}")
            } else {
                format!("the loss became NaN or infinite at optimizer step {s}")
            }
        }),
        unreadable_images: data.train.failures.count() + data.val.failures.count(),
        epochs: state.epochs,
        precision: if bf16 { "bf16".into() } else { "f32".into() },
    };
    for f in [&data.train.failures, &data.val.failures] {
        if let Some(report) = f.report() {
            eprintln!("warning: {report}");
        }
    }
    if status == RunStatus::Completed {
        checkpoint::export_safetensors(&model.valid(), &out_dir.join("model.safetensors"))?;
    }
    result.write(&out_dir.join("result.json")).map_err(io_err(out_dir))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::in_top_k;

    #[test]
    fn top_k_counts_ties_and_non_finite_logits_as_misses() {
        assert!(in_top_k(&[0.1, 0.9, 0.3], 1, 1));
        assert!(!in_top_k(&[0.1, 0.9, 0.3], 2, 1));
        assert!(in_top_k(&[0.1, 0.9, 0.3], 2, 2));
        // Constant logits: every other class ties with the label, so no hit (timm's topk
        // picks one index per row; counting ties in favour would give 100%).
        assert!(!in_top_k(&[0.5; 4], 0, 1));
        assert!(!in_top_k(&[0.5; 4], 3, 3));
        assert!(in_top_k(&[0.5; 4], 3, 4));
        // NaN or infinite logits: diverged weights, never a hit.
        assert!(!in_top_k(&[f32::NAN; 4], 0, 1));
        assert!(!in_top_k(&[f32::NAN, 0.0, 0.0], 0, 1));
        assert!(!in_top_k(&[0.0, f32::INFINITY, 0.0], 1, 1));
        assert!(!in_top_k(&[1.0, f32::NAN, 0.0], 0, 3));
    }
}
