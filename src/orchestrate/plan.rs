//! From a study to trials: proxies x pre-training setups x LLRD x LR x repeats, each a
//! TrialSpec with an id that depends only on what the trial is, so the same study always plans
//! the same trials and a resumed run recognises the ones it has done.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::study::LoadedStudy;
use crate::study::schema::TrialKind;
use crate::train::spec::FinetuneSpec;

/// What a trial is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A grid point on a proxy.
    Search,
    /// The full-dataset run with the recommended recipe.
    Full,
    /// The full-dataset run with MAE's default recipe (`baseline`).
    Baseline,
    /// A pre-training stage a setup's trials start from.
    Pretrain,
}

/// An external command that trains and writes its metric (MAE's main_finetune.py and alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandTrial {
    /// With `{llrd}`, `{blr}`, `{out}`, `{seed}`, `{epochs}`, `{data}` (the proxy's ImageFolder,
    /// materialised for the command) substituted.
    pub command: String,
    /// The metric file (placeholders allowed), JSON lines.
    pub metric_file: String,
    pub jsonl_key: String,
    /// `max`: the best value over the lines; `last`: the last line's.
    pub mode: String,
}

/// One trial: what it is and how to run it. Written as `trials/<id>/spec.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    pub study: String,
    pub id: String,
    pub role: Role,
    /// The proxy's name; None for a full-dataset run.
    pub proxy: Option<String>,
    pub setup: String,
    pub llrd: f64,
    pub blr: f64,
    pub repeat: usize,
    /// A maestro fine-tune...
    pub finetune: Option<FinetuneSpec>,
    /// ...or an external command...
    pub command: Option<CommandTrial>,
    /// ...or an MAE pre-training stage.
    #[serde(default)]
    pub pretrain: Option<crate::train::pretrain::PretrainSpec>,
}

/// `0.825` -> `0.825`, `1e-3` -> `0.001`: short, exact, file-name safe.
pub fn fmt_value(v: f64) -> String {
    let s = format!("{v}");
    s.replace('+', "")
}

pub fn trial_id(role: Role, proxy: Option<&str>, setup: &str, llrd: f64, blr: f64, repeat: usize) -> String {
    let scope = match (role, proxy) {
        (Role::Search, Some(p)) => p.to_string(),
        (Role::Full, _) => "full".into(),
        (Role::Baseline, _) => "baseline".into(),
        (Role::Search, None) => "full-search".into(),
        (Role::Pretrain, _) => "pretrain".into(),
    };
    format!("{scope}__{setup}__llrd{}__blr{}__r{repeat}", fmt_value(llrd), fmt_value(blr))
}

/// Where a study's proxies' manifests are: `proxies/<name>.manifest` beside the run folder's
/// parent, i.e. in the project folder the study is run from.
pub fn manifest_path(proxy_dir: &Path, proxy: &str) -> PathBuf {
    proxy_dir.join(format!("{proxy}.manifest"))
}

/// The inputs a plan needs besides the study.
pub struct PlanContext<'a> {
    pub proxy_dir: &'a Path,
    /// The checkpoint each setup starts from (None: random init).
    pub setup_checkpoint: &'a dyn Fn(&str) -> Option<PathBuf>,
}

pub struct Point {
    pub proxy: Option<String>,
    pub setup: String,
    pub llrd: f64,
    pub blr: f64,
    pub repeat: usize,
    pub role: Role,
}

/// Build one trial's spec.
pub fn make_trial(loaded: &LoadedStudy, ctx: &PlanContext, p: &Point) -> TrialSpec {
    let s = &loaded.study;
    let id = trial_id(p.role, p.proxy.as_deref(), &p.setup, p.llrd, p.blr, p.repeat);
    let seed = s.seed.wrapping_add(p.repeat as u64);
    let (finetune, command) = match &s.trial {
        TrialKind::Maestro => (
            Some(FinetuneSpec {
                name: id.clone(),
                source: loaded.source(),
                manifest: p.proxy.as_ref().map(|name| manifest_path(ctx.proxy_dir, name)),
                model: s.model.shape().expect("validated"),
                recipe: s.finetune.clone(),
                llrd: p.llrd,
                blr: p.blr,
                checkpoint: (ctx.setup_checkpoint)(&p.setup),
                seed,
                device: "cpu".into(),
                max_steps: None,
                eval_batch_size: 256,
            }),
            None,
        ),
        TrialKind::Command { command, metric } => (
            None,
            Some(CommandTrial {
                command: command.clone(),
                metric_file: metric.file.clone(),
                jsonl_key: metric.jsonl_key.clone(),
                mode: metric.mode.clone(),
            }),
        ),
    };
    TrialSpec {
        study: s.name.clone(),
        id,
        role: p.role,
        proxy: p.proxy.clone(),
        setup: p.setup.clone(),
        llrd: p.llrd,
        blr: p.blr,
        repeat: p.repeat,
        finetune,
        command,
        pretrain: None,
    }
}

/// The pre-training stage of a setup with a `pretrain:` block, on the full training split. Its
/// id carries a hash of its settings, so a stage is run once per configuration and reused.
pub fn pretrain_trial(loaded: &LoadedStudy, setup: &str, recipe: &crate::study::schema::PretrainRecipe) -> TrialSpec {
    use sha2::{Digest, Sha256};
    let s = &loaded.study;
    let spec = crate::train::pretrain::PretrainSpec {
        source: loaded.source(),
        manifest: None,
        model: s.model.shape().expect("validated"),
        recipe: recipe.clone(),
        seed: s.seed,
        device: "cpu".into(),
        max_steps: None,
    };
    let mut identity = spec.clone();
    identity.device.clear();
    let h = hex::encode(&Sha256::digest(serde_json::to_string(&identity).expect("spec serialises").as_bytes())[..4]);
    TrialSpec {
        study: s.name.clone(),
        id: format!("pretrain__{setup}__{h}"),
        role: Role::Pretrain,
        proxy: None,
        setup: setup.to_string(),
        llrd: 0.0,
        blr: recipe.blr,
        repeat: 0,
        finetune: None,
        command: None,
        pretrain: Some(spec),
    }
}

/// Where a pre-training stage leaves its model.
pub fn pretrain_checkpoint(run_dir: &Path, trial: &TrialSpec) -> PathBuf {
    run_dir.join("trials").join(&trial.id).join("mae.safetensors")
}

/// The search trials for a grid, in a stable order: proxy, setup, LLRD, LR, repeat.
pub fn search_trials(loaded: &LoadedStudy, ctx: &PlanContext, llrd_grid: &[f64]) -> Vec<TrialSpec> {
    let s = &loaded.study;
    let blrs = if s.search.blr.is_empty() { vec![s.finetune.blr] } else { s.search.blr.clone() };
    let proxies: Vec<Option<String>> =
        if s.proxies.is_empty() { vec![None] } else { s.proxies.iter().map(|p| Some(p.name.clone())).collect() };
    let mut out = Vec::new();
    for proxy in &proxies {
        for setup in &s.pretrain_setups {
            for &llrd in llrd_grid {
                for &blr in &blrs {
                    for repeat in 0..s.search.repeats {
                        let p = Point { proxy: proxy.clone(), setup: setup.name.clone(), llrd, blr, repeat, role: Role::Search };
                        out.push(make_trial(loaded, ctx, &p));
                    }
                }
            }
        }
    }
    out
}

/// MAE's default fine-tune recipe for ViT-B (and smaller), the paper's baseline.
pub const BASELINE_LLRD: f64 = 0.65;
pub const BASELINE_BLR: f64 = 5e-4;

/// MAE's default (LLRD, blr) for a model (FINETUNE.md): ViT-L and ViT-H (width 1024 and
/// more) fine-tune at LLRD 0.75 and blr 1e-3; ViT-B, and the smaller models MAE has no recipe
/// for, at 0.65 and 5e-4.
pub fn baseline(shape: &crate::model::config::VitShape) -> (f64, f64) {
    if shape.embed_dim >= 1024 { (0.75, 1e-3) } else { (BASELINE_LLRD, BASELINE_BLR) }
}

/// [`baseline`] of a study's model (ViT-B's for a model that does not resolve, which
/// validation refuses anyway).
pub fn study_baseline(model: &crate::study::schema::ModelSpec) -> (f64, f64) {
    model.shape().map(|m| baseline(&m)).unwrap_or((BASELINE_LLRD, BASELINE_BLR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_readable_and_stable() {
        assert_eq!(trial_id(Role::Search, Some("in200"), "ep100", 0.825, 1e-3, 0), "in200__ep100__llrd0.825__blr0.001__r0");
        assert_eq!(trial_id(Role::Baseline, None, "s", 0.65, 5e-4, 0), "baseline__s__llrd0.65__blr0.0005__r0");
        let preset = |n| crate::model::config::VitShape::preset(n).unwrap();
        assert_eq!(baseline(&preset("vit_base_patch16")), (0.65, 5e-4));
        assert_eq!(baseline(&preset("vit_large_patch16")), (0.75, 1e-3));
        assert_eq!(baseline(&preset("vit_huge_patch14")), (0.75, 1e-3));
    }
}
