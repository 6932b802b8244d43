//! recipe-<setup>.yaml (the recommendation, ready to use) and summary.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::RunView;
use crate::analysis::recommend::{Recommendation, TrialRow};
use crate::study::schema::FinetuneRecipe;

#[derive(Serialize)]
struct RecipeFile<'a> {
    study: &'a str,
    setup: &'a str,
    recommended: Recommended<'a>,
    flags: &'a [String],
    recipe: FinetuneRecipe,
    model: String,
    checkpoint: Option<String>,
    provenance: Provenance,
    full_run: Option<RunOutcome>,
    baseline: Option<RunOutcome>,
    gain_over_baseline: Option<f64>,
    pytorch_command: String,
}

#[derive(Serialize)]
struct Recommended<'a> {
    layer_decay: f64,
    blr: f64,
    interval_95: [f64; 2],
    near_optimal: &'a [f64],
    per_proxy: Vec<BTreeMap<&'static str, serde_yaml::Value>>,
}

#[derive(Serialize)]
struct Provenance {
    proxies: Vec<String>,
    search_trials: usize,
    completed: usize,
    diverged: usize,
    failed: usize,
    seeds: Vec<u64>,
    llrd_grid: Vec<f64>,
    blr_grid: Vec<f64>,
}

#[derive(Serialize)]
struct RunOutcome {
    layer_decay: f64,
    blr: f64,
    status: String,
    top1: Option<f64>,
    top5: Option<f64>,
}

fn outcome(r: Option<&TrialRow>) -> Option<RunOutcome> {
    r.map(|r| RunOutcome { layer_decay: r.llrd, blr: r.blr, status: r.status.clone(), top1: r.top1, top5: r.top5 })
}

/// The same recipe for facebookresearch/mae's main_finetune.py.
pub fn pytorch_command(v: &RunView, rec: &Recommendation, checkpoint: Option<&str>) -> String {
    let s = &v.study.study;
    let r = &s.finetune;
    let gpus = s.execution.devices.iter().filter(|d| d.starts_with("cuda")).count().max(1);
    let per_gpu = (r.batch_size / gpus).max(1);
    // A shape no preset has gets a comment line of its own above the command: inside it, a
    // comment would swallow the rest of the line and its continuation.
    let (model, note) = match s.model.preset.as_deref() {
        Some(p) if s.model.overrides.image_size.is_none() && s.model.overrides.patch_size.is_none() => (p.trim_end_matches("_224").to_string(), String::new()),
        _ => (
            "CUSTOM_VIT".to_string(),
            format!("# {}: not a models_vit.py model; add it there as CUSTOM_VIT\n", s.model.shape().map(|m| m.to_string()).unwrap_or_default()),
        ),
    };
    format!(
        "{note}torchrun --nproc_per_node={gpus} main_finetune.py --model {model} --finetune {} \\\n  --batch_size {per_gpu} --accum_iter {} --epochs {} --warmup_epochs {} \\\n  --blr {} --layer_decay {} --min_lr {} --weight_decay {} --drop_path {} \\\n  --smoothing {} --mixup {} --cutmix {} --reprob {} --aa {} --input_size {} \\\n  --dist_eval --data_path DATA --nb_classes CLASSES --output_dir OUT",
        checkpoint.unwrap_or("PRETRAINED.pth"),
        r.accum_iter,
        r.epochs,
        r.warmup_epochs,
        rec.blr,
        rec.llrd,
        r.min_lr,
        r.weight_decay,
        r.drop_path,
        r.smoothing,
        r.mixup,
        r.cutmix,
        r.reprob,
        r.aa,
        s.model.shape().map(|m| m.image_size).unwrap_or(224),
    )
}

pub fn render(v: &RunView, rec: &Recommendation, full: Option<&TrialRow>, baseline: Option<&TrialRow>) -> String {
    let s = &v.study.study;
    let mut recipe = s.finetune.clone();
    recipe.layer_decay = rec.llrd;
    recipe.blr = rec.blr;
    let checkpoint = s.pretrain_setups.iter().find(|p| p.name == rec.setup).and_then(|p| p.checkpoint.as_ref()).map(|c| c.display().to_string());
    let search: Vec<&TrialRow> = v.rows.iter().filter(|r| r.role == "search" && r.setup == rec.setup).collect();
    let count = |st: &str| search.iter().filter(|r| r.status == st).count();
    let mut seeds: Vec<u64> = search.iter().map(|r| s.seed.wrapping_add(r.repeat as u64)).collect();
    seeds.sort();
    seeds.dedup();
    let mut grid: Vec<f64> = search.iter().map(|r| r.llrd).collect();
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let mut blrs: Vec<f64> = search.iter().map(|r| r.blr).collect();
    blrs.sort_by(f64::total_cmp);
    blrs.dedup();
    let per_proxy = rec
        .per_proxy
        .iter()
        .map(|p| {
            let mut m = BTreeMap::new();
            m.insert("proxy", serde_yaml::Value::from(p.proxy.clone()));
            m.insert("layer_decay", serde_yaml::Value::from(p.llrd));
            m.insert("blr", serde_yaml::Value::from(p.blr));
            m.insert("interval_95", serde_yaml::to_value([p.interval.0, p.interval.1]).unwrap());
            m.insert("best_top1", serde_yaml::Value::from(p.best_top1));
            m
        })
        .collect();
    let (full_o, base_o) = (outcome(full), outcome(baseline));
    let gain = match (full.and_then(|r| r.top1), baseline.and_then(|r| r.top1)) {
        (Some(a), Some(b)) => Some(((a - b) * 100.0).round() / 100.0),
        _ => None,
    };
    let file = RecipeFile {
        study: &s.name,
        setup: &rec.setup,
        recommended: Recommended {
            layer_decay: rec.llrd,
            blr: rec.blr,
            interval_95: [rec.interval.0, rec.interval.1],
            near_optimal: &rec.near_optimal,
            per_proxy,
        },
        flags: &rec.flags,
        recipe,
        model: s.model.shape().map(|m| m.to_string()).unwrap_or_default(),
        pytorch_command: pytorch_command(v, rec, checkpoint.as_deref()),
        checkpoint,
        provenance: Provenance {
            proxies: s.proxies.iter().map(|p| p.name.clone()).collect(),
            search_trials: search.len(),
            completed: count("completed"),
            diverged: count("diverged"),
            failed: count("failed"),
            seeds,
            llrd_grid: grid,
            blr_grid: blrs,
        },
        full_run: full_o,
        baseline: base_o,
        gain_over_baseline: gain,
    };
    format!("# The recommended fine-tuning recipe for `{}` (written by maestro)\n{}", rec.setup, serde_yaml::to_string(&file).expect("recipe serialises"))
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into())
}

/// `sections`: more markdown (pre-training, sample efficiency) placed before the file list.
pub fn summary(v: &RunView, full: &BTreeMap<(String, String), &TrialRow>, files: &[PathBuf], sections: &str) -> String {
    let s = &v.study.study;
    let mut out = String::new();
    let _ = writeln!(out, "# {}: LLRD search\n", s.name);
    let search = v.rows.iter().filter(|r| r.role == "search").count();
    let done = v.rows.iter().filter(|r| r.role == "search" && r.status == "completed").count();
    let _ = writeln!(
        out,
        "Dataset {}; model {}; {} search trials ({} completed) over proxies [{}] and setups [{}].\n",
        v.study.source().describe(),
        s.model.shape().map(|m| m.to_string()).unwrap_or_default(),
        search,
        done,
        s.proxies.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", "),
        s.pretrain_setups.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    if v.unplanned > 0 {
        let _ = writeln!(
            out,
            "**Trials of an earlier version of the study:** {} search trial(s) in this run folder are not in the study as it now reads (another LR, proxy, setup or repeat count); results.csv lists them, the fits leave them out.\n",
            v.unplanned
        );
    }
    let unfinished = v.rows.iter().filter(|r| r.role == "search" && (r.status == "pending" || r.status == "running")).count();
    if unfinished > 0 {
        let _ = writeln!(out, "**The search is not finished:** {unfinished} search trial(s) are still pending or running; the fits below use the completed ones only.\n");
    }
    let unreadable: Vec<&TrialRow> = v.rows.iter().filter(|r| r.unreadable_images > 0).collect();
    if !unreadable.is_empty() {
        let _ = writeln!(
            out,
            "**Unreadable images:** {} trial(s) skipped images they could not read (up to {} in one trial; `unreadable_images` in results.csv, the reasons in each trial's log.txt).\n",
            unreadable.len(),
            unreadable.iter().map(|r| r.unreadable_images).max().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "## Recommendation\n");
    let _ = writeln!(out, "| setup | LLRD | blr | 95% interval | near-optimal | full run top-1 | baseline top-1 (0.65, 5e-4) | gain | flags |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in &v.recommendations {
        let f = full.get(&(r.setup.clone(), "full".into())).and_then(|x| x.top1);
        let b = full.get(&(r.setup.clone(), "baseline".into())).and_then(|x| x.top1);
        let gain = match (f, b) {
            (Some(a), Some(b)) => format!("{:+.2}", a - b),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | [{:.3}, {:.3}] | {} | {} | {} | {} | {} |",
            r.setup,
            r.llrd,
            r.blr,
            r.interval.0,
            r.interval.1,
            r.near_optimal.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", "),
            pct(f),
            pct(b),
            gain,
            if r.flags.is_empty() { "-".into() } else { r.flags.join("; ") }
        );
    }
    if files.iter().any(|f| f.ends_with("llrd_curve.png")) {
        let _ = writeln!(out, "\n## Curves\n\n![top-1 against LLRD](llrd_curve.png)\n");
    } else {
        let _ = writeln!(out, "\n## Curves\n\nNo search trial has completed yet: no curve to draw.\n");
    }
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "lr_llrd.png" || name == "optimum_vs_pretrain.png" {
            let _ = writeln!(out, "![{name}]({name})\n");
        }
    }
    let _ = writeln!(out, "| proxy | setup | blr | LLRD | top-1 mean | spread | estimate | interval |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for c in &v.curves {
        for (i, x) in c.fit.grid.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                c.proxy,
                c.setup,
                c.blr,
                x,
                c.fit.means[i],
                c.fit.stds[i],
                if i == 0 { format!("{:.4}", c.fit.estimate) } else { String::new() },
                if i == 0 { format!("[{:.3}, {:.3}]", c.fit.interval.0, c.fit.interval.1) } else { String::new() },
            );
        }
        for x in &c.diverged {
            let _ = writeln!(out, "| {} | {} | {} | {} | diverged | | | |", c.proxy, c.setup, c.blr, x);
        }
    }
    if !sections.is_empty() {
        let _ = writeln!(out, "\n{sections}");
    }
    let _ = writeln!(out, "\nFiles: {}.", files.iter().filter_map(|f| f.file_name()).map(|n| format!("`{}`", n.to_string_lossy())).collect::<Vec<_>>().join(", "));
    out
}
