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
    /// How `layer_decay` was made (see summary.md's Method).
    method: &'a str,
    blr: f64,
    interval_95: [f64; 2],
    /// What `interval_95` is: the proxy's interval, or the hull of the proxies' intervals.
    interval_kind: &'static str,
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

/// The same recipe for facebookresearch/mae's main_finetune.py: one process with the trial's
/// whole batch, as maestro ran it, every setting the script has a flag for that differs from its
/// default, and a comment line for each setting it has no flag for. `classes`: the full
/// dataset's, when a full-dataset trial recorded it.
pub fn pytorch_command(v: &RunView, rec: &Recommendation, checkpoint: Option<&str>, classes: Option<usize>) -> String {
    let s = &v.study.study;
    let r = &s.finetune;
    let shape = s.model.shape().ok();
    let mut notes: Vec<String> = Vec::new();
    // models_vit.py has three models, built at 224 px from 3 channels.
    let official = ["vit_base_patch16", "vit_large_patch16", "vit_huge_patch14"]
        .into_iter()
        .find(|p| crate::model::config::VitShape::preset(p).is_some_and(|o| shape.as_ref() == Some(&o)));
    let model = match official {
        Some(p) => p.to_string(),
        None => {
            notes.push(format!(
                "{}: not a models_vit.py model; add it there as CUSTOM_VIT (img_size, in_chans and the rest as here)",
                shape.as_ref().map(|m| m.to_string()).unwrap_or_default()
            ));
            "CUSTOM_VIT".to_string()
        }
    };
    let mut args = vec![format!("--model {model}")];
    if let Some(ck) = checkpoint {
        if let Some(stem) = ck.strip_suffix(".safetensors") {
            // main_finetune.py reads torch.load(path)['model']: the same tensors, wrapped.
            let pth = format!("{stem}.pth");
            notes.push(format!(
                "main_finetune.py loads a .pth holding {{'model': state_dict}}; make it from {ck} first: python -c \"import torch, safetensors.torch as st; torch.save({{'model': st.load_file('{ck}')}}, '{pth}')\""
            ));
            args.push(format!("--finetune {pth}"));
        } else {
            args.push(format!("--finetune {ck}"));
        }
    }
    let aa = if r.aa.is_empty() || r.aa == "none" { "''".to_string() } else { r.aa.clone() };
    args.extend([
        format!("--batch_size {}", r.batch_size),
        format!("--accum_iter {}", r.accum_iter),
        format!("--epochs {}", r.epochs),
        format!("--warmup_epochs {}", r.warmup_epochs),
        format!("--blr {}", rec.blr),
        format!("--layer_decay {}", rec.llrd),
        format!("--min_lr {}", r.min_lr),
        format!("--weight_decay {}", r.weight_decay),
        format!("--drop_path {}", r.drop_path),
        format!("--smoothing {}", r.smoothing),
        format!("--mixup {}", r.mixup),
        format!("--cutmix {}", r.cutmix),
        format!("--reprob {}", r.reprob),
        format!("--aa {aa}"),
        format!("--input_size {}", shape.as_ref().map_or(224, |m| m.image_size)),
        format!("--seed {}", s.seed),
    ]);
    if r.epochs.fract() != 0.0 || r.warmup_epochs.fract() != 0.0 {
        notes.push("main_finetune.py reads --epochs and --warmup_epochs as whole numbers (type=int): make them float there to run these".into());
    }
    if r.mixup_prob != 1.0 {
        args.push(format!("--mixup_prob {}", r.mixup_prob));
    }
    if r.mixup_switch_prob != 0.5 {
        args.push(format!("--mixup_switch_prob {}", r.mixup_switch_prob));
    }
    if let Some(c) = r.clip_grad {
        args.push(format!("--clip_grad {c}"));
    }
    if !r.global_pool {
        args.push("--cls_token".into());
    }
    // What the script has no flag for.
    if r.crop_scale != [0.08, 1.0] {
        notes.push(format!("crop_scale {:?}: main_finetune.py uses timm's (0.08, 1.0)", r.crop_scale));
    }
    if (r.eval_crop_pct - 224.0 / 256.0).abs() > 1e-9 {
        notes.push(format!("eval_crop_pct {}: main_finetune.py crops 224/256 of the resized image", r.eval_crop_pct));
    }
    if r.hflip != 0.5 {
        notes.push(format!("hflip {}: main_finetune.py flips with probability 0.5", r.hflip));
    }
    if r.betas != [0.9, 0.999] || r.eps != 1e-8 {
        notes.push(format!("AdamW betas {:?}, eps {}: main_finetune.py uses (0.9, 0.999), 1e-8", r.betas, r.eps));
    }
    if shape.as_ref().is_some_and(|m| m.in_chans == 1) {
        notes.push("1-channel images: main_finetune.py reads RGB and normalises with ImageNet's mean and std".into());
    }
    if r.precision == crate::study::schema::Precision::Bf16 || (r.precision.is_auto() && s.execution.devices.iter().any(|d| d.contains("cuda"))) {
        notes.push("maestro computed in bf16 mixed precision; main_finetune.py uses fp16 autocast".into());
    }
    args.push("--data_path DATA".into());
    args.push(format!("--nb_classes {}", classes.map_or("CLASSES".to_string(), |c| c.to_string())));
    args.push("--output_dir OUT".into());
    notes.push(format!(
        "one process with the whole batch, as maestro ran it; on N GPUs give --batch_size {}/N (the LR follows the effective batch)",
        r.batch_size
    ));

    // A comment inside the command would swallow its line continuation: notes go above it.
    let mut out: String = notes.iter().map(|n| format!("# {n}\n")).collect();
    out.push_str("torchrun --nproc_per_node=1 main_finetune.py");
    for chunk in args.chunks(5) {
        out.push_str(" \\\n  ");
        out.push_str(&chunk.join(" "));
    }
    out
}

pub fn render(v: &RunView, rec: &Recommendation, full: Option<&TrialRow>, baseline: Option<&TrialRow>) -> String {
    let s = &v.study.study;
    let mut recipe = s.finetune.clone();
    recipe.layer_decay = rec.llrd;
    recipe.blr = rec.blr;
    // The checkpoint the setup's trials started from: its own, or its pre-training stage's.
    let setup = s.pretrain_setups.iter().find(|p| p.name == rec.setup);
    let checkpoint = match setup.and_then(|p| p.checkpoint.as_ref()) {
        Some(c) => Some(if c.is_relative() { v.study.dir().join(c) } else { c.clone() }.display().to_string()),
        None => v
            .rows
            .iter()
            .find(|r| r.role == "pretrain" && r.setup == rec.setup && r.status == "completed")
            .map(|r| crate::orchestrate::scheduler::trial_dir(&v.run_dir, &r.id).join("mae.safetensors").display().to_string()),
    };
    let classes = full.or(baseline).and_then(|r| {
        let text = std::fs::read_to_string(crate::orchestrate::scheduler::trial_dir(&v.run_dir, &r.id).join("result.json")).ok()?;
        serde_json::from_str::<crate::train::spec::FinetuneResult>(&text).ok().map(|res| res.num_classes)
    });
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
            m.insert("layer_decay", serde_yaml::Value::from(round4(p.llrd)));
            m.insert("method", serde_yaml::Value::from(p.method.clone()));
            m.insert("blr", serde_yaml::Value::from(p.blr));
            m.insert("interval_95", serde_yaml::to_value([round4(p.interval.0), round4(p.interval.1)]).unwrap());
            m.insert("best_top1", serde_yaml::Value::from((p.best_top1 * 100.0).round() / 100.0));
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
            method: &rec.method,
            blr: rec.blr,
            interval_95: [round4(rec.interval.0), round4(rec.interval.1)],
            interval_kind: if rec.method.starts_with("mean of") { "hull of the proxies' 95% bootstrap intervals" } else { "95% bootstrap interval of the estimate" },
            near_optimal: &rec.near_optimal,
            per_proxy,
        },
        flags: &rec.flags,
        recipe,
        model: s.model.shape().map(|m| m.to_string()).unwrap_or_default(),
        pytorch_command: pytorch_command(v, rec, checkpoint.as_deref(), classes),
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

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
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
    // The baseline as run (a folder may predate a change of MAE's recipe for its model), else as
    // it will run.
    let (base_llrd, base_blr) = full
        .iter()
        .find(|((_, role), _)| role == "baseline")
        .map(|(_, r)| (r.llrd, r.blr))
        .unwrap_or_else(|| crate::orchestrate::plan::study_baseline(&s.model));
    let _ = writeln!(out, "| setup | LLRD | how | blr | 95% interval | near-optimal | full run top-1 | baseline top-1 ({base_llrd}, {base_blr:e}) | gain | flags |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for r in &v.recommendations {
        let f = full.get(&(r.setup.clone(), "full".into())).and_then(|x| x.top1);
        let b = full.get(&(r.setup.clone(), "baseline".into())).and_then(|x| x.top1);
        let gain = match (f, b) {
            (Some(a), Some(b)) => format!("{:+.2}", a - b),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | [{:.3}, {:.3}]{} | {} | {} | {} | {} | {} |",
            r.setup,
            r.llrd,
            r.method,
            r.blr,
            r.interval.0,
            r.interval.1,
            if r.method.starts_with("mean of") { " (hull)" } else { "" },
            r.near_optimal.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", "),
            pct(f),
            pct(b),
            gain,
            if r.flags.is_empty() { "-".into() } else { r.flags.join("; ") }
        );
    }
    let _ = writeln!(out, "\n{}", method_note(v));
    if files.iter().any(|f| f.ends_with("llrd_curve.png")) {
        let _ = writeln!(
            out,
            "\n## Curves\n\n![top-1 against LLRD](llrd_curve.png)\n\nPoints: mean top-1 per LLRD (bars: one standard deviation over seeds); thin line: the two-sided fit, drawn where its peak is the estimate; triangle and dashed line: the estimate; horizontal bar through it: its 95% interval; crosses at the bottom: diverged trials.\n"
        );
    } else {
        let _ = writeln!(out, "\n## Curves\n\nNo search trial has completed yet: no curve to draw.\n");
    }
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "lr_llrd.png" || name == "optimum_vs_pretrain.png" {
            let _ = writeln!(out, "![{name}]({name})\n");
        }
    }
    let _ = writeln!(out, "| proxy | setup | blr | LLRD | top-1 mean | spread | estimate | how | interval | noise |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for c in &v.curves {
        for (i, x) in c.fit.grid.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} |",
                c.proxy,
                c.setup,
                c.blr,
                x,
                c.fit.means[i],
                if c.fit.repeats > 1 { format!("{:.2}", c.fit.stds[i]) } else { "n/a (1 seed)".into() },
                if i == 0 { format!("{:.4}", c.fit.estimate) } else { String::new() },
                if i == 0 { c.fit.method.clone() } else { String::new() },
                if i == 0 { format!("[{:.3}, {:.3}]", c.fit.interval.0, c.fit.interval.1) } else { String::new() },
                if i == 0 { format!("{:.2}", c.fit.tolerance) } else { String::new() },
            );
        }
        for x in &c.diverged {
            let _ = writeln!(out, "| {} | {} | {} | {} | diverged | | | | | |", c.proxy, c.setup, c.blr, x);
        }
    }
    if !sections.is_empty() {
        let _ = writeln!(out, "\n{sections}");
    }
    let _ = writeln!(out, "\nFiles: {}.", files.iter().filter_map(|f| f.file_name()).map(|n| format!("`{}`", n.to_string_lossy())).collect::<Vec<_>>().join(", "));
    out
}

/// What was fitted and how the recommendation is made, for the summary.
fn method_note(v: &RunView) -> String {
    let s = &v.study.study;
    let seeds = s.search.repeats;
    let fitted = "each trial's top-1 after its last epoch (an external command's: its metric file's `mode`)";
    format!(
        "**Method.** Per proxy, setup and LR, {fitted} is averaged over the seeds at each LLRD (the study asks for {seeds}), \
and a two-sided quadratic (its own curvature on each side of the peak; LLRD on a linear scale) is fitted to the means, its \
peak searched between the second and the second-to-last LLRD (two values on each side). The estimate is that **fitted \
peak** when a local quadratic through the best value and its neighbours puts the peak within the grid's step there and the \
peak is inside the grid; otherwise it is the **best grid value**, and the reason is flagged. *noise* is one point's \
standard error in top-1 points (the largest of the seeds' standard error, the fit's residual spread and the validation \
set's binomial error). The interval is the 2.5-97.5 percentiles of 400 bootstrap resamples (over the seeds, with that \
floor added, where every value has several; else Gaussian noise of that size around the fit), of the refitted peak, at \
least a tenth of the grid's step either side of it and running on to the next value where resamples stop at the \
search's bound; for a best grid value, of the resamples' best values, widened to its neighbours and to where the fit puts \
the peak. *near-optimal* lists the LLRDs within one noise level of the best (a one-standard-error rule, not a test). \
Each proxy takes the LR whose curve peaks highest (ties: the smaller); the setup the LR most proxies took; with several \
proxies the LLRD is the mean of their estimates at that LR and the interval the hull of theirs."
    )
}
