//! What a study will run: the numbers `maestro validate` prints.

use serde::Serialize;

use super::LoadedStudy;
use crate::data::Catalog;
use crate::data::proxy::{ProxyRule, kept_per_class};

#[derive(Debug, Serialize)]
pub struct ProxySummary {
    pub name: String,
    pub rule: String,
    pub seed: u64,
    pub classes: usize,
    pub train_images: usize,
    pub val_images: usize,
    pub trials: usize,
    /// Fine-tune epochs over all of this proxy's trials.
    pub epochs: f64,
    /// The same work in epochs of the full training set.
    pub full_dataset_epochs: f64,
}

#[derive(Debug, Serialize)]
pub struct PlanSummary {
    pub study: String,
    pub dataset: String,
    pub dataset_classes: usize,
    pub dataset_train_images: usize,
    pub dataset_val_images: usize,
    pub model: String,
    pub model_params: usize,
    pub setups: Vec<String>,
    pub llrd: Vec<f64>,
    pub blr: Vec<f64>,
    pub repeats: usize,
    pub epochs_per_trial: f64,
    pub proxies: Vec<ProxySummary>,
    pub search_trials: usize,
    /// Full-dataset fine-tunes after the search (recommendation, baseline) over all setups.
    pub full_runs: usize,
    pub total_full_dataset_epochs: f64,
    pub warnings: Vec<String>,
}

/// A proxy's classes and training and validation images. Counts follow from the rule alone when
/// it keeps every class; otherwise the exact figure needs the draw, so it is built (cheap: no
/// image is read). Zeros when the draw fails (validation reports why).
pub fn proxy_counts(loaded: &LoadedStudy, catalog: &Catalog, name: &str, rule: &ProxyRule, seed: u64) -> (usize, usize, usize) {
    match rule.classes {
        None => (
            catalog.num_classes(),
            catalog.train.class_counts(catalog.num_classes()).iter().map(|&n| kept_per_class(n, rule.fraction)).sum(),
            catalog.val.items.len(),
        ),
        Some(_) => match crate::data::proxy::build(name, &loaded.source(), catalog, *rule, seed) {
            Ok(m) => (m.num_classes(), m.train.items.len(), m.val.items.len()),
            Err(_) => (0, 0, 0),
        },
    }
}

/// For people: 30/7 epochs as 4.285714, 0.07 x 100 as 7.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub fn summarize(loaded: &LoadedStudy, catalog: &Catalog) -> PlanSummary {
    let s = &loaded.study;
    let blr = if s.search.blr.is_empty() { vec![s.finetune.blr] } else { s.search.blr.clone() };
    let grid = s.search.llrd.len() * blr.len() * s.search.repeats;
    let per_proxy_trials = s.pretrain_setups.len() * grid;
    let full_train = catalog.train.items.len().max(1) as f64;

    let proxies: Vec<ProxySummary> = loaded
        .proxy_rules()
        .into_iter()
        .map(|(name, rule, seed)| {
            let (classes, train, val) = proxy_counts(loaded, catalog, &name, &rule, seed);
            let epochs = per_proxy_trials as f64 * s.finetune.epochs;
            ProxySummary {
                rule: rule.describe(),
                name,
                seed,
                classes,
                train_images: train,
                val_images: val,
                trials: per_proxy_trials,
                epochs,
                full_dataset_epochs: epochs * train as f64 / full_train,
            }
        })
        .collect();

    let search_on_full = proxies.is_empty();
    let search_trials = if search_on_full { per_proxy_trials } else { proxies.iter().map(|p| p.trials).sum() };
    let runs_per_setup = usize::from(s.transfer.full_run) + usize::from(s.transfer.baseline);
    let full_runs = runs_per_setup * s.pretrain_setups.len();
    let search_equiv = if search_on_full {
        per_proxy_trials as f64 * s.finetune.epochs
    } else {
        proxies.iter().map(|p| p.full_dataset_epochs).sum()
    };
    let shape = s.model.shape().expect("validated");
    let mut warnings = catalog.warnings.clone();
    if search_on_full {
        warnings.push("no proxies: the search runs on the full dataset".into());
    }
    if shape.image_size > 224 && (s.finetune.eval_crop_pct - 224.0 / 256.0).abs() < 1e-9 {
        warnings.push(format!(
            "finetune.eval_crop_pct is 224/256 at {} px; MAE evaluates above 224 px at crop 1.0 (util/datasets.py): set it to 1.0 to match",
            shape.image_size
        ));
    }
    if s.transfer.baseline && shape.embed_dim >= 1024 {
        warnings.push("the baseline runs at MAE's ViT-L/H LLRD 0.75 and blr 1e-3; MAE's recipe there also has drop_path 0.2 (ViT-L) or 0.3 (ViT-H) and 50 epochs, which are the study's own settings here".into());
    }
    if let Some((i, d)) = crate::study::validate::unbuilt_device(s) {
        warnings.push(format!("execution.devices[{i}]: `{d}` needs maestro built with the `{}` feature, which this build lacks; `run` refuses it", d.feature().unwrap_or_default()));
    }
    PlanSummary {
        study: s.name.clone(),
        dataset: loaded.source().describe(),
        dataset_classes: catalog.num_classes(),
        dataset_train_images: catalog.train.items.len(),
        dataset_val_images: catalog.val.items.len(),
        model: format!("{} = {}", s.model.describe(), shape),
        model_params: shape.finetune_params(catalog.num_classes()),
        setups: s
            .pretrain_setups
            .iter()
            .map(|p| match (&p.checkpoint, &p.pretrain) {
                (Some(c), _) => format!("{}: checkpoint {}", p.name, c.display()),
                (_, Some(r)) => format!(
                    "{}: pre-train {} epochs{}, mask {}, decoder {}x{}{}",
                    p.name,
                    round6(r.epochs),
                    if r.data_fraction < 1.0 { format!(" on {}% of every class", round6(r.data_fraction * 100.0)) } else { String::new() },
                    r.mask_ratio,
                    r.decoder_depth,
                    r.decoder_embed_dim,
                    if r.supmae { ", SupMAE" } else { "" }
                ),
                _ => format!("{}: from scratch (random init)", p.name),
            })
            .collect(),
        llrd: s.search.llrd.clone(),
        blr,
        repeats: s.search.repeats,
        epochs_per_trial: s.finetune.epochs,
        proxies,
        search_trials,
        full_runs,
        total_full_dataset_epochs: search_equiv + full_runs as f64 * s.finetune.epochs,
        warnings,
    }
}

impl std::fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "study {}", self.study)?;
        writeln!(
            f,
            "  dataset   {}: {} classes, {} train / {} val images",
            self.dataset, self.dataset_classes, self.dataset_train_images, self.dataset_val_images
        )?;
        writeln!(f, "  model     {} ({:.2} M parameters)", self.model, self.model_params as f64 / 1e6)?;
        writeln!(f, "  setups    {}", self.setups.len())?;
        for s in &self.setups {
            writeln!(f, "            - {s}")?;
        }
        let fmt_list = |v: &[f64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "  grid      LLRD [{}] x blr [{}] x {} repeat(s), {} fine-tune epochs each",
            fmt_list(&self.llrd),
            fmt_list(&self.blr),
            self.repeats,
            self.epochs_per_trial
        )?;
        if self.proxies.is_empty() {
            writeln!(f, "  proxies   none: {} trials on the full dataset", self.search_trials)?;
        } else {
            writeln!(f, "  proxies")?;
            for p in &self.proxies {
                writeln!(
                    f,
                    "    {:<16} {} (seed {}): {} classes, {} train / {} val images; {} trials, {} epochs = {:.1} full-dataset epochs",
                    p.name, p.rule, p.seed, p.classes, p.train_images, p.val_images, p.trials, round6(p.epochs), p.full_dataset_epochs
                )?;
            }
        }
        writeln!(f, "  search    {} trials in total", self.search_trials)?;
        writeln!(f, "  transfer  {} full-dataset run(s) of {} epochs", self.full_runs, self.epochs_per_trial)?;
        writeln!(f, "  cost      {:.1} full-dataset fine-tune epochs in all", self.total_full_dataset_epochs)?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}
