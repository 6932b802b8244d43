//! The report of a run, under `reports/<study>/`, built only from what the run folder holds
//! (the study, the journal, each trial's spec and result), so `maestro report RUN_DIR`
//! regenerates it at any time: figures, results tables, a recipe per setup, a summary.

pub mod plots;
pub mod recipe;
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
    pub study: LoadedStudy,
    pub rows: Vec<TrialRow>,
    pub curves: Vec<Curve>,
    pub recommendations: Vec<Recommendation>,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Search => "search",
        Role::Full => "full",
        Role::Baseline => "baseline",
        Role::Pretrain => "pretrain",
    }
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
        rows.push(TrialRow {
            id: id.clone(),
            role: role_name(spec.role).into(),
            proxy: spec.proxy.clone().unwrap_or_default(),
            setup: spec.setup.clone(),
            llrd: spec.llrd,
            blr: spec.blr,
            repeat: spec.repeat,
            status: status.into(),
            top1: result.as_ref().filter(|_| done).map(|r| r.top1),
            top5: result.as_ref().filter(|_| done).map(|r| r.top5).filter(|t| t.is_finite()),
            best_top1: result.as_ref().filter(|_| done).map(|r| r.best_top1),
            attempts: st.map_or(0, |s| s.attempts),
        });
    }
    let curves = recommend::curves(&rows, study.study.seed);
    let recommendations = recommend::recommend(&curves);
    Ok(RunView { study, rows, curves, recommendations })
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
    let full: BTreeMap<(String, String), &TrialRow> =
        v.rows.iter().filter(|r| r.role == "full" || r.role == "baseline").map(|r| ((r.setup.clone(), r.role.clone()), r)).collect();
    for rec in &v.recommendations {
        let path = out.join(format!("recipe-{}.yaml", rec.setup));
        let text = recipe::render(&v, rec, full.get(&(rec.setup.clone(), "full".into())).copied(), full.get(&(rec.setup.clone(), "baseline".into())).copied());
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
    }
    let summary = out.join("summary.md");
    std::fs::write(&summary, recipe::summary(&v, &full, &files)).map_err(|e| format!("{}: {e}", summary.display()))?;
    files.push(summary);
    Ok(files)
}
