//! MAE pre-training (main_pretrain.py + engine_pretrain.py) with the light recipe by default.
//!
//! AdamW betas (0.9, 0.95), weight decay 0.05 except 1-D parameters and biases (cls_token and
//! mask_token are decayed; the sin-cos position embeddings are frozen), per-step warmup +
//! cosine, lr = blr x batch x accumulation / 256, RandomResizedCrop (scale 0.2-1, bicubic) +
//! flip. Resumable from its epoch checkpoint like the fine-tune; writes the whole model as
//! safetensors with the official key names, which the fine-tune loads as a pre-trained encoder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::adamw::AdamW;
use super::losses::DeviceLosses;
use super::finetune::{TrainError, normalization, read_channels, save_checkpoint};
use super::llrd::parameters;
use super::schedule::{CosineSchedule, ScaledSchedule};
use super::spec::write_atomic;
use crate::data::Source;
use crate::data::augment::TrainTransform;
use crate::data::image::{ReadFailures, SplitReader};
use crate::data::loader::{SplitData, TrainLoader, iters_per_epoch};
use crate::data::manifest::Manifest;
use crate::device::DeviceSpec;
use crate::model::checkpoint;
use crate::model::config::VitShape;
use crate::model::mae::{MaeConfig, MaskedAutoencoder};
use crate::study::schema::PretrainRecipe;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainSpec {
    pub source: Source,
    pub manifest: Option<PathBuf>,
    pub model: VitShape,
    pub recipe: PretrainRecipe,
    pub seed: u64,
    pub device: String,
    #[serde(default)]
    pub max_steps: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainResult {
    pub status: String,
    /// Mean reconstruction loss of each epoch.
    pub epoch_loss: Vec<f64>,
    /// SupMAE: mean weighted classification loss (0.01 x CE(logits / 10)) of each epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epoch_cls_loss: Vec<f64>,
    /// The reconstruction loss along training: [epoch position, mean over the last stretch of
    /// steps], about 100 points in all.
    #[serde(default)]
    pub loss_curve: Vec<[f64; 2]>,
    pub steps: usize,
    pub wall_s: f64,
    pub images_per_s: f64,
    pub train_images: usize,
    /// The pre-trained model (official key names), loadable by `maestro finetune --checkpoint`.
    pub checkpoint: PathBuf,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    spec_hash: String,
    epochs_done: usize,
    step: usize,
    epoch_loss: Vec<f64>,
    #[serde(default)]
    epoch_cls_loss: Vec<f64>,
    #[serde(default)]
    loss_curve: Vec<[f64; 2]>,
    train_s: f64,
    images: usize,
    wall_s: f64,
}

/// Identifies the run's settings, the device aside (a run stopped on one resumes on another).
fn hash(spec: &PretrainSpec) -> String {
    let mut identity = spec.clone();
    identity.device.clear();
    legacy_hash(&identity)
}

/// The identity older versions saved checkpoints under (the device included), still accepted
/// so that their interrupted runs resume.
fn legacy_hash(spec: &PretrainSpec) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(serde_json::to_string(spec).unwrap().as_bytes())[..8])
}

fn io_err(path: &Path) -> impl Fn(String) -> TrainError + '_ {
    move |message| TrainError::Io { path: path.to_path_buf(), message }
}

/// One epoch's loss sums and the loss curve's running window, fed in step order with the
/// losses read from the device.
struct EpochSums {
    rec: f64,
    cls: f64,
    n: usize,
    window: (f64, usize),
    every: usize,
    total: usize,
    steps_per_epoch: f64,
}

impl EpochSums {
    fn new(every: usize, total: usize, steps_per_epoch: f64) -> Self {
        EpochSums { rec: 0.0, cls: 0.0, n: 0, window: (0.0, 0), every, total, steps_per_epoch }
    }

    /// Adds read values (the loss, and SupMAE's reconstruction loss after it) of the optimizer
    /// steps before `completed` and, at an epoch's end, of the micro-batches of a step still to
    /// come; the curve gets a point after every `every`-th completed step and the last. Stops at
    /// the first loss that is NaN or infinite.
    fn absorb(&mut self, read: Vec<(usize, Vec<f64>)>, completed: usize, curve: &mut Vec<[f64; 2]>) -> Result<(), String> {
        let mut read = read.into_iter().peekable();
        while let Some((step, v)) = read.next() {
            let value = v[0];
            if !value.is_finite() {
                return Err(format!("the loss became NaN or infinite at optimizer step {step}"));
            }
            let rec = v.get(1).copied().unwrap_or(value);
            self.rec += rec;
            self.cls += value - rec;
            self.n += 1;
            self.window.0 += rec;
            self.window.1 += 1;
            let done = step + 1;
            let last_of_step = step < completed && read.peek().is_none_or(|(next, _)| *next != step);
            if last_of_step && (done % self.every == 0 || done == self.total) {
                curve.push([done as f64 / self.steps_per_epoch, self.window.0 / self.window.1 as f64]);
                self.window = (0.0, 0);
            }
        }
        Ok(())
    }
}

pub fn run(spec: &PretrainSpec, out: &Path, quiet: bool) -> Result<PretrainResult, TrainError> {
    let r = &spec.recipe;
    let device = spec.device.parse::<DeviceSpec>().map_err(TrainError::Setup)?.burn_device().map_err(TrainError::Setup)?;
    let ad = device.clone().autodiff();
    let channels = read_channels(spec.model.in_chans)?;
    // Only the training images: pre-training sees no labels (and no validation split).
    // SupMAE also reads the labels.
    let (source, split, items, num_classes) = match &spec.manifest {
        Some(p) => {
            let m = Manifest::read(p)?;
            let source = m.source_at(&spec.source).map_err(|e| TrainError::Setup(format!("{}: {e}", p.display())))?;
            (source, m.train.split.clone(), m.train.items, m.classes.len())
        }
        None => {
            let cat = spec.source.scan()?;
            let items = if r.data_fraction < 1.0 {
                // The sample-efficiency experiment: a seeded per-class draw, as a proxy's.
                let rule = crate::data::proxy::ProxyRule { classes: None, fraction: Some(r.data_fraction) };
                crate::data::proxy::build("pretrain-data", &spec.source, &cat, rule, spec.seed)?.train.items
            } else {
                cat.train.items
            };
            (spec.source.clone(), cat.train.name.clone(), items, cat.classes.len())
        }
    };
    if spec.manifest.is_some() && r.data_fraction < 1.0 {
        return Err(TrainError::Setup("data_fraction draws from the whole dataset; it cannot be combined with --manifest".into()));
    }
    let data = Arc::new(SplitData { reader: SplitReader::open(&source, &split)?, items, channels, failures: ReadFailures::default() });
    let batch = r.batch_size;
    let ipe = iters_per_epoch(data.items.len(), batch);
    if ipe == 0 {
        return Err(TrainError::Setup(format!("batch_size {batch} is larger than the {} training images", data.items.len())));
    }
    if ipe < r.accum_iter {
        return Err(TrainError::Setup(format!(
            "batch_size {batch} x accum_iter {} is more than the {} training images: an epoch would make no optimizer step; lower accum_iter",
            r.accum_iter,
            data.items.len()
        )));
    }
    let schedule = CosineSchedule::from_blr(r.blr, batch, r.accum_iter, r.min_lr, r.warmup_epochs, r.epochs, ipe);
    let total = schedule.steps_capped(spec.max_steps);
    let transform = TrainTransform {
        input_size: spec.model.image_size,
        scale: (0.2, 1.0),
        ratio: (3.0 / 4.0, 4.0 / 3.0),
        hflip: 0.5,
        randaug: None,
        reprob: 0.0,
        normalize: normalization(&spec.source, spec.model.in_chans),
    };
    let loader = TrainLoader { data: data.clone(), transform: Arc::new(transform), mix: None, batch, seed: spec.seed };

    ad.seed(spec.seed);
    let cfg = MaeConfig {
        encoder: spec.model.clone(),
        decoder_embed_dim: r.decoder_embed_dim,
        decoder_depth: r.decoder_depth,
        decoder_num_heads: r.decoder_num_heads,
        norm_pix_loss: r.norm_pix_loss,
        supervised_classes: r.supmae.then_some(num_classes),
        bf16: r.precision.bf16_on(&spec.device.parse::<DeviceSpec>().map_err(TrainError::Setup)?),
    };
    if cfg.bf16 && !ad.supports_dtype(burn::tensor::FloatDType::BF16) {
        return Err(TrainError::Setup(format!("pretrain precision: {} cannot compute in bf16; use precision: f32", spec.device)));
    }
    let mut model = cfg.init(&ad);
    // timm's add_weight_decay: no decay for 1-D parameters and biases.
    let no_decay: Vec<String> = parameters(&model).into_iter().filter(|(p, _, nd)| *nd <= 1 || p.ends_with(".bias")).map(|(p, _, _)| p).collect();
    let adamw = |weight_decay| AdamW::new([0.9, 0.95], 1e-8, weight_decay);
    let mut optim = adamw(r.weight_decay).init().with_group(ParamGroup::from_paths(no_decay), adamw(0.0), None);

    let ckpt = out.join("checkpoint");
    let h = hash(spec);
    let mut st = State { spec_hash: h.clone(), epochs_done: 0, step: 0, epoch_loss: Vec::new(), epoch_cls_loss: Vec::new(), loss_curve: Vec::new(), train_s: 0.0, images: 0, wall_s: 0.0 };
    if let Some(dir) = super::finetune::checkpoint_to_resume(&ckpt) {
        let loaded = super::finetune::read_json::<State>(&dir.join("state.json")).and_then(|saved| {
            if saved.spec_hash != h && saved.spec_hash != legacy_hash(spec) {
                return Ok(None);
            }
            let m = model.clone().try_load_file(dir.join("model.bpk")).map_err(|e| format!("{}: {e}", dir.join("model.bpk").display()))?;
            let o = optim.clone().load(dir.join("optim.bpk")).map_err(|e| format!("{}: {e}", dir.join("optim.bpk").display()))?;
            Ok(Some((saved, m, o)))
        });
        match loaded {
            Ok(Some((saved, m, o))) => {
                // Said when quiet too: a trial's log then shows where it took up.
                eprintln!("resuming {} after epoch {}", out.display(), saved.epochs_done);
                (model, optim, st) = (m, o, saved);
            }
            Ok(None) => {
                return Err(TrainError::Setup(format!("{}: holds a pre-training of other settings; use another output folder", out.display())));
            }
            Err(why) => super::finetune::set_aside(&dir, &why)?,
        }
    }
    let l = spec.model.num_patches();
    if (l as f64 * (1.0 - r.mask_ratio)) as usize == 0 {
        return Err(TrainError::Setup(format!("mask_ratio {} leaves none of the {l} patches visible; lower it", r.mask_ratio)));
    }
    // Written once the settings are known to be usable and of this folder's checkpoint, so a
    // refused start leaves the folder as it was.
    std::fs::create_dir_all(out).map_err(|e| io_err(out)(e.to_string()))?;
    write_atomic(&out.join("pretrain.json"), serde_json::to_string_pretty(spec).unwrap().as_bytes()).map_err(|e| io_err(out)(e.to_string()))?;
    let mut sched = ModuleLrScheduler::new(ScaledSchedule { schedule: schedule.clone(), scale: 1.0, step: st.step });

    let pb = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    pb.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {msg} ({eta} left)").expect("template"));
    pb.set_position(st.step as u64);
    let mut epoch = st.epochs_done;
    let mut error = None;
    // The loss curve keeps about 100 points, each the mean over the steps since the last.
    let every = (total / 100).max(1);
    let mut window = (0f64, 0usize);
    let steps_per_epoch = schedule.steps_per_epoch() as f64;
    'epochs: while st.step < total {
        // Leftover micro-batches of the last epoch are dropped, as in MAE's engine.
        let mut acc = GradientsAccumulator::<MaskedAutoencoder>::new();
        ad.seed(spec.seed.wrapping_add(1 + epoch as u64));
        let t = Instant::now();
        let (mut images, mut micro) = (0usize, 0usize);
        let mut sums = EpochSums { window: std::mem::take(&mut window), ..EpochSums::new(every, total, steps_per_epoch) };
        let mut losses = DeviceLosses::default();
        for b in loader.epoch(epoch as u64, 0).iter() {
            if b.size == 0 {
                continue;
            }
            let x = super::upload::images(b.images, [b.size, b.channels, b.height, b.width], &ad);
            let noise = Tensor::<2>::random([b.size, l], Distribution::Uniform(0.0, 1.0), &ad);
            let labels = r.supmae.then(|| Tensor::<1, Int>::from_data(TensorData::new(b.labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [b.size]), &ad));
            let out = model.forward(x, noise, r.mask_ratio, labels);
            let loss = out.loss;
            // The loss, and for SupMAE its reconstruction part after it.
            let values = if r.supmae { vec![loss.clone().inner(), out.rec_loss.inner()] } else { vec![loss.clone().inner()] };
            losses.push(st.step, values);
            images += b.size;
            micro += 1;
            let scaled = if r.accum_iter > 1 { loss / r.accum_iter as f32 } else { loss };
            let mut grads = GradientsParams::from_grads(scaled.backward(), &model);
            if r.accum_iter > 1 {
                acc.accumulate(&model, grads);
                if micro % r.accum_iter != 0 {
                    continue;
                }
                grads = acc.grads();
            }
            model = optim.step(sched.step(), model, grads);
            st.step += 1;
            pb.set_position(st.step as u64);
            if losses.is_due() {
                if let Err(e) = sums.absorb(losses.read(), st.step, &mut st.loss_curve) {
                    error = Some(e);
                    break 'epochs;
                }
                pb.set_message(format!("epoch {} loss {:.4}", epoch + 1, sums.rec / sums.n.max(1) as f64));
            }
            if st.step >= total {
                break;
            }
        }
        if let Err(e) = sums.absorb(losses.read(), st.step, &mut st.loss_curve) {
            error = Some(e);
            break 'epochs;
        }
        let (sum, cls_sum, n) = (sums.rec, sums.cls, sums.n);
        window = sums.window;
        if micro == 0 {
            return Err(TrainError::Setup(format!(
                "the data loader produced no batch this epoch{}",
                data.failures.report().map(|r| format!(": {r}")).unwrap_or_default()
            )));
        }
        st.train_s += t.elapsed().as_secs_f64();
        st.images += images;
        st.epoch_loss.push(sum / n.max(1) as f64);
        if r.supmae {
            st.epoch_cls_loss.push(cls_sum / n.max(1) as f64);
        }
        epoch += 1;
        st.epochs_done = epoch;
        st.wall_s += t.elapsed().as_secs_f64();
        pb.suspend(|| {
            if !quiet {
                eprintln!("epoch {:>3}: reconstruction loss {:.4}, {:.0} img/s", epoch, sum / n.max(1) as f64, images as f64 / t.elapsed().as_secs_f64());
            }
        });
        save_checkpoint(&ckpt, &model, &optim, &st)?;
    }
    pb.finish_and_clear();
    let path = out.join("mae.safetensors");
    if error.is_none() {
        let mut store = burn::store::SafetensorsStore::from_file(&path).with_to_adapter(burn::store::BurnToPyTorchAdapter).overwrite(true);
        for (burn, official) in crate::model::mae::CLS_HEAD_KEYS {
            store = store.with_key_remapping(format!("^{}", burn.replace('.', r"\.")), official);
        }
        use burn::store::ModuleSnapshot;
        model.valid().save_into(&mut store).map_err(|e| checkpoint::CheckpointError::Write { path: path.clone(), message: e.to_string() })?;
    }
    let result = PretrainResult {
        status: if error.is_none() { "completed".into() } else { "diverged".into() },
        epoch_loss: st.epoch_loss,
        epoch_cls_loss: st.epoch_cls_loss,
        loss_curve: st.loss_curve,
        steps: st.step,
        wall_s: st.wall_s,
        images_per_s: st.images as f64 / st.train_s.max(1e-9),
        train_images: data.items.len(),
        checkpoint: path,
        error,
    };
    write_atomic(&out.join("result.json"), serde_json::to_string_pretty(&result).unwrap().as_bytes()).map_err(|e| io_err(out)(e.to_string()))?;
    if !result.epoch_loss.is_empty() {
        // The figure is a convenience: the numbers are in result.json whatever happens to it.
        if let Err(e) = crate::report::plots::pretrain_loss(&result, &out.join("loss.png")) {
            eprintln!("warning: could not draw {}: {e}", out.join("loss.png").display());
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::EpochSums;

    fn read(v: &[(usize, f64)]) -> Vec<(usize, Vec<f64>)> {
        v.iter().map(|&(s, x)| (s, vec![x])).collect()
    }

    #[test]
    fn the_curve_takes_a_point_after_whole_optimizer_steps() {
        // Two micro-batches per optimizer step; a point every step, then every second step.
        let micro = read(&[(0, 1.0), (0, 3.0), (1, 5.0), (1, 7.0)]);
        let mut curve = Vec::new();
        let mut sums = EpochSums::new(1, 2, 2.0);
        sums.absorb(micro.clone(), 2, &mut curve).unwrap();
        assert_eq!(curve, [[0.5, 2.0], [1.0, 6.0]]);
        assert_eq!((sums.rec, sums.n), (16.0, 4));
        let mut curve = Vec::new();
        let mut sums = EpochSums::new(2, 4, 2.0);
        sums.absorb(micro[..2].to_vec(), 1, &mut curve).unwrap();
        sums.absorb(micro[2..].to_vec(), 2, &mut curve).unwrap();
        assert_eq!(curve, [[1.0, 4.0]]);
        assert_eq!(sums.window, (0.0, 0));
        // An epoch that ends between two micro-batches of step 1 (a batch it could not read):
        // step 1's first loss joins the window, and the point waits for the step to complete.
        let mut curve = Vec::new();
        let mut sums = EpochSums::new(2, 4, 2.0);
        sums.absorb(micro[..3].to_vec(), 1, &mut curve).unwrap();
        assert!(curve.is_empty());
        sums.absorb(micro[3..].to_vec(), 2, &mut curve).unwrap();
        assert_eq!(curve, [[1.0, 4.0]]);
    }

    #[test]
    fn supmae_splits_the_loss_and_a_nan_names_its_step() {
        let mut sums = EpochSums::new(10, 100, 10.0);
        let mut curve = Vec::new();
        sums.absorb(vec![(0, vec![1.5, 1.0]), (1, vec![2.5, 2.0])], 2, &mut curve).unwrap();
        assert_eq!((sums.rec, sums.cls, sums.n), (3.0, 1.0, 2));
        let e = sums.absorb(read(&[(2, 1.0), (3, f64::NAN), (4, 1.0)]), 5, &mut curve).unwrap_err();
        assert_eq!(e, "the loss became NaN or infinite at optimizer step 3");
        assert_eq!(sums.n, 3);
    }
}
