//! The report of a run, under `reports/<study>/`, built only from what the run folder holds
//! (the study, the journal, each trial's spec and result), so `maestro report RUN_DIR`
//! regenerates it at any time: figures, results tables, a recipe per setup, a summary.

pub mod plots;
pub mod recipe;
pub mod reconstruct;
pub mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::analysis::recommend::{self, Curve, Recommendation, TrialRow};
use crate::orchestrate::journal::{self, TrialState};
use crate::orchestrate::plan::{Role, TrialSpec};
use crate::orchestrate::scheduler::trial_dir;
use crate::study::LoadedStudy;
use crate::train::spec::FinetuneResult;

/// Everything a report shows.
pub struct RunView {
    pub run_dir: PathBuf,
    pub study: LoadedStudy,
    pub rows: Vec<TrialRow>,
    pub curves: Vec<Curve>,
    pub recommendations: Vec<Recommendation>,
    /// Search trials in the folder that the study as it now reads does not plan (left out of
    /// the fits).
    pub unplanned: usize,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Search => "search",
        Role::Full => "full",
        Role::Baseline => "baseline",
        Role::Pretrain => "pretrain",
    }
}

/// A setup's full run at (llrd, blr): a folder may also hold the full run of an earlier
/// recommendation (the grid grew since). An LLRD within 5e-4 is the same value: the
/// recommendation is reported to 0.001, and a run of an earlier version of maestro, which
/// reported it to 0.0001, is not to be run again for that.
pub fn full_run_of<'a>(rows: &'a [TrialRow], setup: &str, llrd: f64, blr: f64) -> Option<&'a TrialRow> {
    rows.iter()
        .filter(|r| r.role == "full" && r.setup == setup && (r.blr - blr).abs() <= 1e-9 * blr.abs().max(r.blr.abs()) && (r.llrd - llrd).abs() <= 5e-4 + 1e-12)
        .min_by(|a, b| (a.llrd - llrd).abs().total_cmp(&(b.llrd - llrd).abs()))
}

/// Read a run folder into rows and fits.
pub fn view(run_dir: &Path) -> Result<RunView, String> {
    let study = crate::study::load_run_copy(run_dir)?;
    let states = journal::replay(&journal::read(&run_dir.join("journal.jsonl"))?);
    let mut rows = Vec::new();
    let trials = run_dir.join("trials");
    let mut ids: Vec<String> = match std::fs::read_dir(&trials) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    for id in ids {
        let dir = trial_dir(run_dir, &id);
        let Ok(text) = std::fs::read_to_string(dir.join("spec.json")) else { continue };
        let spec = serde_json::from_str::<TrialSpec>(&text).map_err(|e| format!("{}: not a trial spec: {e}", dir.join("spec.json").display()))?;
        let result: Option<FinetuneResult> = std::fs::read_to_string(dir.join("result.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let st = states.get(&id);
        let status = match st.map(|s| s.state) {
            Some(TrialState::Completed) => "completed",
            Some(TrialState::Diverged) => "diverged",
            Some(TrialState::Failed) => "failed",
            Some(TrialState::Running) => "running",
            _ => "pending",
        };
        let done = status == "completed";
        // A completed trial's numbers are in the journal too: a result file damaged after the
        // fact loses the best epoch's top-1, not the trial.
        // (A pre-training stage's result is of another kind, and has no top-1.)
        let recorded = st.filter(|_| done && spec.role != Role::Pretrain).and_then(|s| s.top1.map(|t| (t, s.top5)));
        if done && spec.role != Role::Pretrain && result.is_none() {
            eprintln!("warning: {}: unreadable; taking the trial's top-1 from the journal", dir.join("result.json").display());
        }
        rows.push(TrialRow {
            id: id.clone(),
            role: role_name(spec.role).into(),
            proxy: spec.proxy.clone().unwrap_or_default(),
            setup: spec.setup.clone(),
            llrd: spec.llrd,
            blr: spec.blr,
            repeat: spec.repeat,
            status: status.into(),
            top1: result.as_ref().filter(|_| done).map(|r| r.top1).or(recorded.map(|r| r.0)),
            top5: result.as_ref().filter(|_| done).map(|r| r.top5).or(recorded.and_then(|r| r.1)).filter(|t| t.is_finite()),
            best_top1: result.as_ref().filter(|_| done).map(|r| r.best_top1),
            attempts: st.map_or(0, |s| s.attempts),
            unreadable_images: result.as_ref().map_or(0, |r| r.unreadable_images),
            val_images: result.as_ref().filter(|_| done).map(|r| r.val_images).filter(|&v| v > 0),
        });
    }
    // Search trials of an earlier version of the study (another LR, proxy, setup or repeat
    // count) stay in the table but not in the fits: the recommendation is the current study's.
    let s = &study.study;
    let blrs = if s.search.blr.is_empty() { vec![s.finetune.blr] } else { s.search.blr.clone() };
    let planned = |r: &TrialRow| {
        r.role != "search"
            || ((if s.proxies.is_empty() { r.proxy.is_empty() } else { s.proxies.iter().any(|p| p.name == r.proxy) })
                && s.pretrain_setups.iter().any(|p| p.name == r.setup)
                && blrs.iter().any(|&b| (b - r.blr).abs() <= 1e-9 * b.abs())
                && r.repeat < s.search.repeats)
    };
    let unplanned = rows.iter().filter(|r| !planned(r)).count();
    let fitted: Vec<TrialRow> = rows.iter().filter(|r| planned(r)).cloned().collect();
    let curves = recommend::curves(&fitted, study.study.seed);
    let recommendations = recommend::recommend(&curves);
    Ok(RunView { run_dir: run_dir.to_path_buf(), study, rows, curves, recommendations, unplanned })
}

/// Per pre-training stage: its loss curve and the reconstruction figure (the paper's Figure 2).
/// A figure that cannot be drawn is a warning: the numbers are in the run folder regardless.
/// Also returns the summary's section on them.
fn pretrain_figures(run_dir: &Path, v: &RunView, out: &Path) -> (Vec<PathBuf>, String) {
    use std::fmt::Write as _;
    let mut files = Vec::new();
    let mut md = String::new();
    for row in v.rows.iter().filter(|r| r.role == "pretrain" && r.status == "completed") {
        let dir = trial_dir(run_dir, &row.id);
        let result: Option<crate::train::pretrain::PretrainResult> = std::fs::read_to_string(dir.join("result.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let spec: Option<crate::train::pretrain::PretrainSpec> = std::fs::read_to_string(dir.join("pretrain.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let (Some(result), Some(spec)) = (result, spec) else { continue };
        if md.is_empty() {
            let _ = writeln!(md, "## Pre-training
");
            let _ = writeln!(md, "| setup | epochs | data | mask | decoder | batch | blr | loss first -> last epoch | img/s | time |");
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        }
        let r = &spec.recipe;
        let _ = writeln!(
            md,
            "| {} | {} | {} images | {} | {} x {} | {} | {} | {:.4} -> {:.4} | {:.0} | {:.0} s |",
            row.setup,
            r.epochs,
            result.train_images,
            r.mask_ratio,
            r.decoder_depth,
            r.decoder_embed_dim,
            r.batch_size,
            r.blr,
            result.epoch_loss.first().copied().unwrap_or(f64::NAN),
            result.epoch_loss.last().copied().unwrap_or(f64::NAN),
            result.images_per_s,
            result.wall_s
        );
        let loss = out.join(format!("pretrain-{}-loss.png", row.setup));
        match plots::pretrain_loss(&result, &loss) {
            Ok(()) => files.push(loss),
            Err(e) => eprintln!("warning: {}: {e}", loss.display()),
        }
        let fig = out.join(format!("reconstruction-{}.png", row.setup));
        let req = reconstruct::Request { checkpoint: dir.clone(), images: Vec::new(), count: 6, mask_ratio: None, seed: 0, out: fig.clone() };
        match reconstruct::reconstruct(&req) {
            Ok(_) => files.push(fig),
            Err(e) => eprintln!("warning: {}: {e}", fig.display()),
        }
    }
    for f in files.iter().filter_map(|f| f.file_name()) {
        let name = f.to_string_lossy();
        let _ = writeln!(md, "\n![{name}]({name})");
    }
    (files, md)
}

/// The sample-efficiency experiment: per data fraction, the full run's top-1 and each proxy's
/// best search trial; a figure and the summary's section.
fn sample_efficiency(v: &RunView, out: &Path) -> (Vec<PathBuf>, String) {
    use std::fmt::Write as _;
    let s = &v.study.study;
    let Some(se) = &s.sample_efficiency else { return (Vec::new(), String::new()) };
    let mut fractions = se.fractions.clone();
    fractions.sort_by(f64::total_cmp);
    let setup = |f: f64| crate::study::schema::SampleEfficiency::setup_name(f);
    // The full run of the setup's current recommendation, not of an earlier one.
    let full = |f: f64| {
        let rec = v.recommendations.iter().find(|r| r.setup == setup(f))?;
        full_run_of(&v.rows, &rec.setup, rec.llrd, rec.blr)?.top1
    };
    let best = |f: f64, proxy: &str| {
        v.rows.iter().filter(|r| r.role == "search" && r.setup == setup(f) && r.proxy == proxy).filter_map(|r| r.top1).fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let full_pts: Vec<(f64, f64)> = fractions.iter().filter_map(|&f| full(f).map(|t| (f, t))).collect();
    if !full_pts.is_empty() {
        series.push(("full dataset, recommended LLRD".into(), full_pts));
    }
    for p in &s.proxies {
        let pts: Vec<(f64, f64)> = fractions.iter().filter_map(|&f| best(f, &p.name).map(|t| (f, t))).collect();
        if !pts.is_empty() {
            series.push((format!("{}: best search trial", p.name), pts));
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "## Sample efficiency
");
    let _ = writeln!(md, "Pre-training on a fraction f of every class for {} / f epochs (equal compute).
", se.pretrain.epochs);
    let _ = write!(md, "| fraction | setup | pre-training epochs | full run top-1 |");
    for p in &s.proxies {
        let _ = write!(md, " best on {} |", p.name);
    }
    let _ = writeln!(md, "\n|---|---|---|---|{}", "---|".repeat(s.proxies.len()));
    let f2 = |x: Option<f64>| x.map(|t| format!("{t:.2}")).unwrap_or_else(|| "-".into());
    for &f in &fractions {
        let epochs = (se.pretrain.epochs / f * 100.0).round() / 100.0;
        let _ = write!(md, "| {f} | {} | {epochs} | {} |", setup(f), f2(full(f)));
        for p in &s.proxies {
            let _ = write!(md, " {} |", f2(best(f, &p.name)));
        }
        let _ = writeln!(md);
    }
    let png = out.join("sample_efficiency.png");
    if series.is_empty() {
        return (Vec::new(), md);
    }
    match plots::sample_efficiency(&series, &png) {
        Ok(()) => {
            let _ = writeln!(md, "\n![sample efficiency](sample_efficiency.png)");
            (vec![png], md)
        }
        Err(e) => {
            eprintln!("warning: {}: {e}", png.display());
            (Vec::new(), md)
        }
    }
}

/// Write the report into `out`; returns the files written.
pub fn write(run_dir: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let v = view(run_dir)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    tables::write(&v.rows, out)?;
    let mut files = vec![out.join("results.csv"), out.join("results.parquet")];
    let blrs: std::collections::BTreeSet<u64> = v.curves.iter().map(|c| c.blr.to_bits()).collect();
    if !v.curves.is_empty() {
        // With one LR, Figure 3; with several, Figure 3 at each proxy's chosen LR and Figure 5.
        let chosen: Vec<Curve> = v
            .curves
            .iter()
            .filter(|c| v.recommendations.iter().any(|r| r.setup == c.setup && r.blr == c.blr))
            .cloned()
            .map(|mut c| {
                if blrs.len() == 1 {
                    c.blr = 0.0; // one LR: no need to name it in the legend
                }
                c
            })
            .collect();
        plots::llrd_curve(&chosen, out, &format!("{}: top-1 against LLRD", v.study.study.name))?;
        files.push(out.join("llrd_curve.png"));
        files.push(out.join("llrd_curve.svg"));
        if v.study.study.search.blr.len() > 1 {
            plots::lr_llrd(&v.curves, out)?;
            files.push(out.join("lr_llrd.png"));
        }
        if v.recommendations.len() > 1 {
            plots::optimum_vs_pretrain(&v.recommendations, out)?;
            files.push(out.join("optimum_vs_pretrain.png"));
        }
    }
    let (figures, mut sections) = pretrain_figures(run_dir, &v, out);
    files.extend(figures);
    let (figures, md) = sample_efficiency(&v, out);
    files.extend(figures);
    sections.push_str(&md);
    let mut full: BTreeMap<(String, String), &TrialRow> = BTreeMap::new();
    for r in v.rows.iter().filter(|r| r.role == "baseline") {
        full.insert((r.setup.clone(), r.role.clone()), r);
    }
    for rec in &v.recommendations {
        if let Some(r) = full_run_of(&v.rows, &rec.setup, rec.llrd, rec.blr) {
            full.insert((r.setup.clone(), r.role.clone()), r);
        }
    }
    for rec in &v.recommendations {
        let path = out.join(format!("recipe-{}.yaml", rec.setup));
        let text = recipe::render(&v, rec, full.get(&(rec.setup.clone(), "full".into())).copied(), full.get(&(rec.setup.clone(), "baseline".into())).copied());
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
    }
    let unreadable: usize = v.rows.iter().map(|r| r.unreadable_images).sum();
    if unreadable > 0 {
        let worst = v.rows.iter().max_by_key(|r| r.unreadable_images).expect("non-empty");
        eprintln!(
            "warning: {unreadable} unreadable images were skipped over the run's trials ({} in {}); see summary.md",
            worst.unreadable_images, worst.id
        );
    }
    let summary = out.join("summary.md");
    std::fs::write(&summary, recipe::summary(&v, &full, &files, &sections)).map_err(|e| format!("{}: {e}", summary.display()))?;
    files.push(summary);
    Ok(files)
}
