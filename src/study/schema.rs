//! The study file format. Every field a user may leave out defaults to the paper's Table 1
//! (the efficient recipe), so a short study file is a complete one.

use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::config::VitShape;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub name: String,
    pub dataset: DatasetSpec,
    #[serde(default)]
    pub proxies: Vec<ProxySpec>,
    #[serde(default = "default_setups")]
    pub pretrain_setups: Vec<PretrainSetup>,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub finetune: FinetuneRecipe,
    #[serde(default)]
    pub search: SearchSpec,
    #[serde(default)]
    pub transfer: TransferSpec,
    #[serde(default)]
    pub execution: ExecutionSpec,
    /// What a trial runs: maestro's own fine-tune (the default) or an external command.
    #[serde(default)]
    pub trial: TrialKind,
    #[serde(default)]
    pub seed: u64,
    /// The paper's sample-efficiency experiment (Figure 6): one pre-training setup per data
    /// fraction, added to `pretrain_setups` as `data-<pct>pct`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_efficiency: Option<SampleEfficiency>,
    /// How many of `pretrain_setups` the file lists (the rest come from `sample_efficiency`).
    #[serde(skip)]
    pub listed_setups: usize,
}

/// `sample_efficiency: { fractions: [0.1, 0.2, 1.0], pretrain: { epochs: 100, ... } }`: the
/// recipe is the one at fraction 1.0; at fraction f the setup pre-trains on f of every class's
/// training images for epochs / f (and warmup / f) epochs, so every setup costs the same compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleEfficiency {
    pub fractions: Vec<f64>,
    #[serde(default)]
    pub pretrain: PretrainRecipe,
}

impl SampleEfficiency {
    pub fn setup_name(fraction: f64) -> String {
        format!("data-{}pct", (fraction * 1000.0).round() / 10.0)
    }
}

impl Study {
    /// Add the sample-efficiency setups to `pretrain_setups` (once, right after parsing).
    pub fn expand(&mut self) {
        self.listed_setups = self.pretrain_setups.len();
        let Some(se) = &self.sample_efficiency else { return };
        for &f in &se.fractions {
            if !(f > 0.0 && f <= 1.0) {
                continue; // reported by validation
            }
            let mut r = se.pretrain.clone();
            r.epochs /= f;
            r.warmup_epochs /= f;
            r.data_fraction = f;
            self.pretrain_setups.push(PretrainSetup { name: SampleEfficiency::setup_name(f), checkpoint: None, pretrain: Some(r) });
        }
    }

    /// The data fraction of each sample-efficiency setup.
    pub fn fraction_of(&self, setup: &str) -> Option<f64> {
        self.sample_efficiency.as_ref()?.fractions.iter().copied().find(|&f| SampleEfficiency::setup_name(f) == setup)
    }
}

/// `trial: { kind: command, command: "python main_finetune.py --layer_decay {llrd} ...",
///           metric: { file: "{out}/log.txt", jsonl_key: test_acc1, mode: max } }`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TrialKind {
    #[default]
    Maestro,
    Command {
        command: String,
        metric: MetricSpec,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// JSON-lines file the command writes, e.g. `{out}/log.txt`.
    pub file: String,
    #[serde(default = "default_metric_key")]
    pub jsonl_key: String,
    /// `max` (best line) or `last`.
    #[serde(default = "default_metric_mode")]
    pub mode: String,
}

fn default_metric_key() -> String {
    "test_acc1".into()
}
fn default_metric_mode() -> String {
    "max".into()
}

// ---------------------------------------------------------------------------------------------
// dataset

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `root/<split>/<class>/<image>`, as torchvision's ImageFolder reads it.
    Imagefolder,
    /// The IDX.gz files of Debian's `dataset-fashion-mnist`.
    FashionMnist,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    /// Required for `imagefolder`; for `fashion-mnist` it defaults to Debian's install path.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// The training split's folder under `root` (imagefolder).
    #[serde(default = "default_train")]
    pub train: String,
    /// The validation split's folder under `root` (imagefolder).
    #[serde(default = "default_val")]
    pub val: String,
}

fn default_train() -> String {
    "train".into()
}
fn default_val() -> String {
    "val".into()
}

// ---------------------------------------------------------------------------------------------
// proxies

/// A proxy dataset: a random class subset (ImageNet-200), a stratified fraction of every class
/// (ImageNet-10%), or both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    pub name: String,
    #[serde(default)]
    pub classes: Option<usize>,
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Overrides the study's seed for this proxy's draw.
    #[serde(default)]
    pub seed: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// pre-training setups

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSetup {
    pub name: String,
    /// A pre-trained encoder (.pth / .safetensors / .bpk).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// A pre-training stage the study runs first.
    #[serde(default)]
    pub pretrain: Option<PretrainRecipe>,
}

fn default_setups() -> Vec<PretrainSetup> {
    vec![PretrainSetup { name: "scratch".into(), checkpoint: None, pretrain: None }]
}

/// Table 1a, the efficient recipe: 100 epochs, 90% masking, a 1-block decoder, batch 1024.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainRecipe {
    pub epochs: f64,
    pub warmup_epochs: f64,
    pub mask_ratio: f64,
    pub decoder_depth: usize,
    pub decoder_embed_dim: usize,
    pub decoder_num_heads: usize,
    pub batch_size: usize,
    pub accum_iter: usize,
    pub blr: f64,
    pub min_lr: f64,
    pub weight_decay: f64,
    pub norm_pix_loss: bool,
    pub supmae: bool,
    /// Pre-train on this fraction of every class's training images (drawn with the study's seed).
    #[serde(skip_serializing_if = "is_one")]
    pub data_fraction: f64,
    /// `auto` (bf16 mixed precision on CUDA, f32 elsewhere), `bf16` or `f32`.
    #[serde(skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl PretrainRecipe {
    /// `efficient` (the paper's Table 1a, the default) or `mae` (the original: 1600 epochs, mask
    /// 0.75, an 8-block decoder, warmup 40, batch 4096).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "efficient" => Some(PretrainRecipe::default()),
            "mae" => Some(PretrainRecipe { epochs: 1600.0, warmup_epochs: 40.0, mask_ratio: 0.75, decoder_depth: 8, batch_size: 4096, ..Default::default() }),
            _ => None,
        }
    }
}

impl Default for PretrainRecipe {
    fn default() -> Self {
        PretrainRecipe {
            epochs: 100.0,
            warmup_epochs: 5.0,
            mask_ratio: 0.9,
            decoder_depth: 1,
            decoder_embed_dim: 512,
            decoder_num_heads: 16,
            batch_size: 1024,
            accum_iter: 1,
            blr: 1.5e-4,
            min_lr: 0.0,
            weight_decay: 0.05,
            norm_pix_loss: true,
            supmae: false,
            data_fraction: 1.0,
            precision: Precision::Auto,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// model

/// `model: vit_base_patch16`, or a map: a preset with overrides, or a custom shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub preset: Option<String>,
    pub overrides: ModelOverrides,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec { preset: Some("vit_base_patch16".into()), overrides: ModelOverrides::default() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub image_size: Option<usize>,
    #[serde(default)]
    pub patch_size: Option<usize>,
    #[serde(default)]
    pub in_chans: Option<usize>,
    #[serde(default)]
    pub embed_dim: Option<usize>,
    #[serde(default)]
    pub depth: Option<usize>,
    #[serde(default)]
    pub num_heads: Option<usize>,
    #[serde(default)]
    pub mlp_ratio: Option<f64>,
}

impl ModelSpec {
    /// The architecture; Err((field, message)) for an unknown preset or a custom shape with
    /// fields missing.
    pub fn shape(&self) -> Result<VitShape, (&'static str, String)> {
        let base = match &self.preset {
            Some(name) => Some(VitShape::preset(name).ok_or_else(|| {
                ("preset", format!("unknown model \"{name}\"; known: {}", crate::model::config::PRESETS.join(", ")))
            })?),
            None => None,
        };
        let o = &self.overrides;
        let pick = |field: &'static str, over: Option<usize>, base: Option<usize>| {
            over.or(base).ok_or((field, format!("a custom model needs `{field}` (or a `preset` to start from)")))
        };
        Ok(VitShape {
            image_size: pick("image_size", o.image_size, base.as_ref().map(|b| b.image_size))?,
            patch_size: pick("patch_size", o.patch_size, base.as_ref().map(|b| b.patch_size))?,
            in_chans: o.in_chans.or(base.as_ref().map(|b| b.in_chans)).unwrap_or(3),
            embed_dim: pick("embed_dim", o.embed_dim, base.as_ref().map(|b| b.embed_dim))?,
            depth: pick("depth", o.depth, base.as_ref().map(|b| b.depth))?,
            num_heads: pick("num_heads", o.num_heads, base.as_ref().map(|b| b.num_heads))?,
            mlp_ratio: o.mlp_ratio.or(base.as_ref().map(|b| b.mlp_ratio)).unwrap_or(4.0),
        })
    }

    pub fn describe(&self) -> String {
        match (&self.preset, self.overrides == ModelOverrides::default()) {
            (Some(p), true) => p.clone(),
            (Some(p), false) => format!("{p} (customised)"),
            (None, _) => "custom".into(),
        }
    }
}

impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a model name such as vit_base_patch16, or a map of its shape")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelSpec, E> {
                Ok(ModelSpec { preset: Some(v.to_string()), overrides: ModelOverrides::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelSpec, A::Error> {
                let o = ModelOverrides::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ModelSpec { preset: o.preset.clone(), overrides: o })
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// fine-tuning

/// Table 1b (the efficient recipe) and MAE's `main_finetune.py` defaults for everything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneRecipe {
    pub epochs: f64,
    pub warmup_epochs: f64,
    /// Images per optimizer step, before accumulation.
    pub batch_size: usize,
    pub accum_iter: usize,
    /// Base learning rate: lr = blr x effective batch / 256.
    pub blr: f64,
    pub min_lr: f64,
    pub weight_decay: f64,
    /// LLRD used when the study does not search it (the searched grid overrides it).
    pub layer_decay: f64,
    pub drop_path: f64,
    pub smoothing: f64,
    pub mixup: f64,
    pub cutmix: f64,
    pub mixup_prob: f64,
    pub mixup_switch_prob: f64,
    /// RandomErasing probability.
    pub reprob: f64,
    /// RandAugment policy in timm's notation, or "none".
    pub aa: String,
    /// RandomResizedCrop scale range.
    pub crop_scale: [f64; 2],
    pub hflip: f64,
    /// Eval: resize the shorter side to input/crop_pct, then centre crop.
    pub eval_crop_pct: f64,
    pub global_pool: bool,
    pub clip_grad: Option<f64>,
    pub betas: [f64; 2],
    pub eps: f64,
    /// `auto` (bf16 mixed precision on CUDA, f32 elsewhere), `bf16` or `f32`.
    #[serde(skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
}

/// The compute precision of the transformer blocks; parameters and optimizer state are f32
/// in every case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
}

impl Precision {
    pub fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }

    /// Whether the blocks compute in bf16 on this device.
    pub fn bf16_on(self, device: &crate::device::DeviceSpec) -> bool {
        match self {
            Precision::Auto => device.cuda_index().is_some(),
            Precision::F32 => false,
            Precision::Bf16 => true,
        }
    }
}

impl Default for FinetuneRecipe {
    fn default() -> Self {
        FinetuneRecipe {
            epochs: 100.0,
            warmup_epochs: 5.0,
            batch_size: 1024,
            accum_iter: 1,
            blr: 1e-3,
            min_lr: 1e-6,
            weight_decay: 0.05,
            layer_decay: 0.75,
            drop_path: 0.1,
            smoothing: 0.1,
            mixup: 0.8,
            cutmix: 1.0,
            mixup_prob: 1.0,
            mixup_switch_prob: 0.5,
            reprob: 0.25,
            aa: "rand-m9-mstd0.5-inc1".into(),
            crop_scale: [0.08, 1.0],
            hflip: 0.5,
            eval_crop_pct: 224.0 / 256.0,
            global_pool: true,
            clip_grad: None,
            betas: [0.9, 0.999],
            eps: 1e-8,
            precision: Precision::Auto,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// search, transfer, execution

/// The paper's LLRD grid for ViT-B (Figure 3).
pub const PAPER_LLRD_GRID: [f64; 8] = [0.65, 0.70, 0.75, 0.80, 0.825, 0.85, 0.875, 0.90];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpec {
    pub llrd: Vec<f64>,
    /// Base learning rates to search; empty means the fine-tune recipe's `blr` alone.
    pub blr: Vec<f64>,
    /// Seeds per grid point.
    pub repeats: usize,
    /// Plan a narrower or extended grid when the optimum sits at an edge or is uncertain.
    pub refine: bool,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec { llrd: PAPER_LLRD_GRID.to_vec(), blr: Vec::new(), repeats: 1, refine: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferSpec {
    /// Fine-tune on the full dataset with the recommended LLRD and LR.
    pub full_run: bool,
    /// Also run MAE's default recipe on the full dataset: LLRD 0.65, blr 5e-4 (ViT-B and
    /// smaller); LLRD 0.75, blr 1e-3 (ViT-L and ViT-H).
    pub baseline: bool,
}

impl Default for TransferSpec {
    fn default() -> Self {
        TransferSpec { full_run: true, baseline: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutorKind {
    Local,
    /// Each round of trials is one `sbatch --array` job; see `orchestrate::slurm`.
    Slurm,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionSpec {
    pub executor: ExecutorKind,
    /// One trial runs on each entry at a time: `cuda:0`, `cuda:1`, `wgpu`, `cpu`.
    pub devices: Vec<String>,
    pub max_retries: usize,
    /// Per-trial wall-clock limit in seconds.
    pub trial_timeout_s: Option<f64>,
    // Slurm only (`executor: slurm`); each maps to the sbatch option of the same name.
    pub partition: Option<String>,
    /// e.g. `gpu:1`; with a GPU in it, trials train on `cuda:0` (Slurm sets CUDA_VISIBLE_DEVICES).
    pub gres: Option<String>,
    pub cpus_per_task: Option<usize>,
    /// e.g. `32G`.
    pub mem: Option<String>,
    /// Slurm's time limit per trial, e.g. `12:00:00`; defaults to `trial_timeout_s` rounded up to minutes.
    pub time: Option<String>,
    /// At most this many trials of a round run at once (`--array=0-N%K`).
    pub array_parallelism: Option<usize>,
    /// More sbatch options, passed as given: `["--qos=high", "--account=vision"]`.
    pub extra_sbatch_args: Vec<String>,
    /// Shell lines run before each trial, e.g. `module load cuda/12.4`.
    pub setup: Option<String>,
    /// Seconds between polls of the queue.
    pub poll_s: f64,
}

impl Default for ExecutionSpec {
    fn default() -> Self {
        ExecutionSpec {
            executor: ExecutorKind::Local,
            devices: vec!["cpu".into()],
            max_retries: 2,
            trial_timeout_s: None,
            partition: None,
            gres: None,
            cpus_per_task: None,
            mem: None,
            time: None,
            array_parallelism: None,
            extra_sbatch_args: Vec::new(),
            setup: None,
            poll_s: 10.0,
        }
    }
}
