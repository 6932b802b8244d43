//! `maestro run`: proxies -> search trials -> fit (-> refinement) -> full runs -> report, on a
//! run folder that can be stopped and resumed at any point.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use super::executor::{self, Executor, LocalExecutor};
use super::journal::{self, Event, Journal, TrialState};
use super::lock::RunLock;
use super::plan::{self, PlanContext, Point, Role, TrialSpec};
use super::scheduler::{self, Finished, SchedulerConfig};
use super::slurm::{self, SlurmExecutor};
use crate::analysis::recommend;
use crate::data::proxy;
use crate::study::LoadedStudy;
use crate::study::schema::{ExecutorKind, TrialKind};

pub struct RunOptions {
    pub run_dir: PathBuf,
    pub report_dir: PathBuf,
    pub quiet: bool,
    /// Seconds between heartbeats in the journal.
    pub heartbeat_s: u64,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub failed: Vec<String>,
    pub interrupted: bool,
    /// Setups without a recommendation: none of their search trials completed.
    pub unrecommended: Vec<String>,
    pub report: Vec<PathBuf>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

/// A spec as the same trial anywhere: without its device (a run may move to another machine
/// or other cards) and with the files it names resolved (a spec written by an older runner
/// names them relative to the folder it ran in).
fn identity(spec: &TrialSpec) -> TrialSpec {
    let resolve = |p: &mut Option<PathBuf>| {
        if let Some(path) = p.as_mut() {
            if let Ok(abs) = std::fs::canonicalize(&*path) {
                *path = abs;
            }
        }
    };
    let mut s = spec.clone();
    if let Some(f) = s.finetune.as_mut() {
        f.device.clear();
        resolve(&mut f.manifest);
        resolve(&mut f.checkpoint);
    }
    if let Some(p) = s.pretrain.as_mut() {
        p.device.clear();
        resolve(&mut p.manifest);
    }
    s
}

/// The trial's spec as this run writes it: on the slots' device.
fn on_device(spec: &TrialSpec, slot_device: &str) -> TrialSpec {
    let mut spec = spec.clone();
    if let Some(f) = spec.finetune.as_mut() {
        f.device = slot_device.to_string();
    }
    if let Some(p) = spec.pretrain.as_mut() {
        p.device = slot_device.to_string();
    }
    spec
}

/// Check that the spec a run folder holds for this trial, if any, is of the same trial.
fn check_spec(run_dir: &Path, spec: &TrialSpec) -> Result<(), String> {
    let path = scheduler::trial_dir(run_dir, &spec.id).join("spec.json");
    let Ok(old) = std::fs::read_to_string(&path) else { return Ok(()) };
    let old: TrialSpec = serde_json::from_str(&old).map_err(|e| format!("{}: not a trial spec: {e}", path.display()))?;
    let (old, new) = (identity(&old), identity(spec));
    if old == new {
        return Ok(());
    }
    // The same trial with its run folder's files elsewhere: every path that differs names the
    // same file under the run folder (`proxies/...`, `trials/...`) at another place.
    let moved_path = |new: &Option<PathBuf>, old: &Option<PathBuf>| match (new, old) {
        (Some(n), Some(o)) => n == o || n.strip_prefix(run_dir).is_ok_and(|rel| !rel.as_os_str().is_empty() && o.ends_with(rel)),
        (n, o) => n == o,
    };
    let mut moved = new.clone();
    let mut same_files = true;
    if let (Some(a), Some(b)) = (moved.finetune.as_mut(), old.finetune.as_ref()) {
        same_files &= moved_path(&a.manifest, &b.manifest) && moved_path(&a.checkpoint, &b.checkpoint);
        (a.manifest, a.checkpoint) = (b.manifest.clone(), b.checkpoint.clone());
    }
    if let (Some(a), Some(b)) = (moved.pretrain.as_mut(), old.pretrain.as_ref()) {
        same_files &= moved_path(&a.manifest, &b.manifest);
        a.manifest = b.manifest.clone();
    }
    if moved == old && same_files {
        return Err(format!(
            "{}: this trial was planned with its files at other paths (was the run folder moved or copied?); run it where it was made, or use a new run folder (--run-dir)",
            path.display()
        ));
    }
    Err(format!(
        "{}: this run folder holds a different trial under the same id; the study changed since the run started. Use a new run folder (--run-dir) or delete this one",
        path.display()
    ))
}

/// The trials the run folder already holds, as the (edited) study would plan them now: those
/// of proxies and setups it still has (a pre-training stage's id carries its settings, so an
/// edited stage is a new one).
fn existing_trials(run_dir: &Path, loaded: &LoadedStudy, ctx: &PlanContext) -> Result<Vec<TrialSpec>, String> {
    let s = &loaded.study;
    let Ok(dirs) = std::fs::read_dir(run_dir.join("trials")) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for d in dirs.filter_map(Result::ok) {
        let path = d.path().join("spec.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let old: TrialSpec = serde_json::from_str(&text).map_err(|e| format!("{}: not a trial spec: {e}", path.display()))?;
        let proxy_known = old.proxy.as_ref().is_none_or(|p| s.proxies.iter().any(|q| &q.name == p));
        if old.role == Role::Pretrain || !proxy_known || !s.pretrain_setups.iter().any(|p| p.name == old.setup) {
            continue;
        }
        let p = Point { proxy: old.proxy.clone(), setup: old.setup.clone(), llrd: old.llrd, blr: old.blr, repeat: old.repeat, role: old.role };
        out.push(plan::make_trial(loaded, ctx, &p));
    }
    Ok(out)
}

/// Write the trial's spec, or check that the one already there is the same trial.
fn write_spec(run_dir: &Path, spec: &TrialSpec, slot_device: &str) -> Result<(), String> {
    let spec = on_device(spec, slot_device);
    check_spec(run_dir, &spec)?;
    let dir = scheduler::trial_dir(run_dir, &spec.id);
    let path = dir.join("spec.json");
    let text = serde_json::to_string_pretty(&spec).expect("spec serialises");
    // The same trial on the same device: the spec stays as written. A spec of an older runner
    // (relative paths) thus keeps the identity its trial's checkpoint was saved under.
    let device = |t: &TrialSpec| (t.finetune.as_ref().map(|f| f.device.clone()), t.pretrain.as_ref().map(|p| p.device.clone()));
    if let Ok(old) = std::fs::read_to_string(&path) {
        if old == text || serde_json::from_str::<TrialSpec>(&old).is_ok_and(|o| device(&o) == device(&spec)) {
            return Ok(());
        }
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    crate::train::spec::write_atomic(&path, text.as_bytes()).map_err(io(&path))
}

/// Where trials run: child processes on slots of this machine, or Slurm jobs.
enum Backend {
    Local(Box<dyn Executor>),
    Slurm(SlurmExecutor),
}

struct Runner {
    run_dir: PathBuf,
    journal: Journal,
    backend: Backend,
    cfg: SchedulerConfig,
    stop: watch::Receiver<bool>,
    failed: Vec<String>,
    interrupted: bool,
}

impl Runner {
    /// Run the trials that are not done yet; returns false when stopped.
    async fn run(&mut self, trials: Vec<TrialSpec>) -> Result<bool, String> {
        let journal_path = self.journal.path().to_path_buf();
        let records = journal::read(&journal_path)?;
        let states = journal::replay(&records);
        // Validation keeps a study's slots on one backend, so the first slot's backend (on the
        // trial's card, which it sees as index 0) is every trial's.
        let device = match (&self.backend, self.cfg.slots.first().map(|s| s.device)) {
            (Backend::Slurm(s), _) => s.device(),
            (_, Some(d)) => d.on_card(0).to_string(),
            (_, None) => "cpu".into(),
        };
        let mut pending = Vec::new();
        let mut failures = BTreeMap::new();
        let mut attached = BTreeMap::new();
        for t in trials {
            write_spec(&self.run_dir, &t, &device)?;
            match states.get(&t.id) {
                None => {
                    self.journal
                        .append(Event::Queued {
                            trial: t.id.clone(),
                            role: t.role,
                            proxy: t.proxy.clone(),
                            setup: t.setup.clone(),
                            llrd: t.llrd,
                            blr: t.blr,
                            repeat: t.repeat,
                        })
                        .map_err(|e| e.to_string())?;
                    pending.push(t);
                }
                Some(s) if s.state.is_final() => {}
                Some(s) if s.state == TrialState::Failed && s.failures > self.cfg.max_retries => {
                    self.failed.push(t.id.clone());
                }
                Some(s) => {
                    failures.insert(t.id.clone(), s.failures);
                    match (&s.job, &self.backend) {
                        // A Slurm job outlives its runner: watch it again instead of resubmitting.
                        (Some(job), Backend::Slurm(_)) if s.state == TrialState::Running => {
                            attached.insert(t.id.clone(), (job.clone(), s.attempts));
                        }
                        _ => {
                            if s.state == TrialState::Running {
                                // Its runner is gone (we hold the lock): the trial died with it,
                                // but an external command it started may not have.
                                let spec = scheduler::trial_dir(&self.run_dir, &t.id).join("spec.json");
                                let killed = executor::kill_leftovers(&spec);
                                if killed > 0 {
                                    eprintln!("{}: killed {killed} process(es) its trial left running when its runner died", t.id);
                                }
                                self.journal.append(Event::Stale { trial: t.id.clone(), attempt: s.attempts }).map_err(|e| e.to_string())?;
                            }
                            pending.push(t);
                        }
                    }
                }
            }
        }
        if pending.is_empty() && attached.is_empty() {
            return Ok(true);
        }
        let done = match &self.backend {
            Backend::Local(executor) => {
                scheduler::run_trials(pending, failures, &self.run_dir, &mut self.journal, executor.as_ref(), &self.cfg, self.stop.clone())
                    .await
                    .map_err(|e| e.to_string())?
            }
            Backend::Slurm(slurm) => {
                let (recorded, _) = slurm::journal_jobs(&records);
                let ids = pending.into_iter().map(|t| t.id).collect();
                slurm.run_trials(ids, failures, attached, recorded, &mut self.journal, &self.cfg, self.stop.clone()).await?
            }
        };
        if *self.stop.borrow() {
            // Asked to stop: whatever did not run yet waits for the next run.
            self.interrupted = true;
        }
        for (id, f) in &done {
            match f {
                Finished::Failed(_) => self.failed.push(id.clone()),
                Finished::Interrupted => self.interrupted = true,
                _ => {}
            }
        }
        Ok(!self.interrupted)
    }
}

/// Each setup's checkpoint: a given file, the model of its pre-training stage, or none.
fn setup_checkpoints(loaded: &LoadedStudy, run_dir: &Path, stages: &[TrialSpec]) -> BTreeMap<String, Option<PathBuf>> {
    let mut out = BTreeMap::new();
    for s in &loaded.study.pretrain_setups {
        let ck = match (&s.checkpoint, stages.iter().find(|t| t.setup == s.name)) {
            (Some(c), _) => Some(if c.is_relative() { loaded.dir().join(c) } else { c.clone() }),
            (None, Some(stage)) => Some(plan::pretrain_checkpoint(run_dir, stage)),
            (None, None) => None,
        };
        out.insert(s.name.clone(), ck);
    }
    out
}

/// A run folder whose trials were Slurm tasks, run now by the local executor: tasks still in
/// the queue would run beside their local copies, into the same folders. Refused while Slurm
/// says any of them may still run; where Slurm cannot be asked, they are taken for gone.
async fn refuse_live_slurm_tasks(run_dir: &Path) -> Result<(), String> {
    let Ok(records) = journal::read(&run_dir.join("journal.jsonl")) else { return Ok(()) };
    let states = journal::replay(&records);
    let jobs: Vec<String> = states.values().filter(|s| s.state == TrialState::Running).filter_map(|s| s.job.clone()).collect();
    let Some(queue) = (if jobs.is_empty() { None } else { slurm::ask_queue(&jobs).await }) else { return Ok(()) };
    let live: Vec<&String> = jobs.iter().filter(|j| queue.get(*j).is_some_and(slurm::TaskState::active)).collect();
    match live.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{}: {} trial(s) are Slurm tasks still in the queue ({first}{}); the local executor would run them a second time, at once and into the same folders. \
             Run the study with `executor: slurm` to take them up again, or `maestro cancel {}` first",
            run_dir.display(),
            live.len(),
            if live.len() > 1 { format!(" and {} more", live.len() - 1) } else { String::new() },
            run_dir.display()
        )),
    }
}

/// Signals this close after the first stop request repeat it (see `run`).
const SAME_SIGNAL: Duration = Duration::from_secs(1);

/// The folders of a list that did not exist when it was made (outermost first); dropped, it
/// removes those that are empty then, innermost first. Non-empty folders stay.
struct CreatedFolders(Vec<PathBuf>);

impl CreatedFolders {
    fn new<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> Self {
        let mut out = Vec::new();
        for p in paths {
            // Each missing ancestor too, so `runs/new/x` leaves no empty `runs/new`.
            let mut missing: Vec<PathBuf> = p.ancestors().filter(|a| !a.as_os_str().is_empty() && !a.exists()).map(Path::to_path_buf).collect();
            missing.reverse();
            out.extend(missing);
        }
        CreatedFolders(out)
    }
}

impl Drop for CreatedFolders {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            // remove_dir refuses a folder with anything in it.
            let _ = std::fs::remove_dir(p);
        }
    }
}

pub async fn run(loaded: &LoadedStudy, opts: &RunOptions) -> Result<RunOutcome, String> {
    let s = &loaded.study;
    let catalog = loaded.scan().map_err(|e| e.to_string())?;
    if opts.run_dir.exists() && !opts.run_dir.is_dir() {
        return Err(format!("--run-dir {}: is a file, not a folder", opts.run_dir.display()));
    }
    // A run folder holds maestro's files only: a folder with others is not one to write into.
    // The report may be one of them (`--report-dir RUN/report`).
    const OURS: [&str; 7] = ["study.yaml", "study.base", "journal.jsonl", "runner.lock", "proxies", "trials", "slurm"];
    let report_entry = std::path::absolute(&opts.report_dir)
        .ok()
        .zip(std::path::absolute(&opts.run_dir).ok())
        .and_then(|(report, run)| report.strip_prefix(&run).ok().and_then(|rest| rest.components().next()).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if let Some(entry) = report_entry.as_deref().filter(|e| OURS.contains(e)) {
        return Err(format!("--report-dir {}: would write into the run folder's own `{entry}`; give the report another folder", opts.report_dir.display()));
    }
    if let Ok(entries) = std::fs::read_dir(&opts.run_dir) {
        let foreign: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !OURS.contains(&n.as_str()) && report_entry.as_deref() != Some(n.as_str()))
            .collect();
        if let Some(first) = foreign.first() {
            return Err(format!(
                "--run-dir {}: holds files that are not a maestro run's ({first}{}); give an empty or new folder, or a run folder",
                opts.run_dir.display(),
                if foreign.len() > 1 { format!(" and {} more", foreign.len() - 1) } else { String::new() }
            ));
        }
    }

    // Folders this call creates are removed again if it stops with them still empty (a run
    // refused before it wrote anything, say), whatever the reason.
    let _created = CreatedFolders::new([&opts.run_dir, &opts.report_dir]);
    std::fs::create_dir_all(&opts.run_dir).map_err(io(&opts.run_dir))?;
    // The report is written at the end: a folder it cannot go to is found before any trial.
    std::fs::create_dir_all(&opts.report_dir).map_err(|e| format!("{}: cannot create the report folder: {e}", opts.report_dir.display()))?;
    if std::fs::canonicalize(&opts.report_dir).ok().zip(std::fs::canonicalize(&opts.run_dir).ok()).is_some_and(|(a, b)| a == b) {
        return Err(format!("--report-dir {}: is the run folder; give the report a folder of its own", opts.report_dir.display()));
    }
    // Trial specs name the run folder's files by absolute path: a trial, a resumed run or a
    // report then finds them from any working directory.
    let run_dir = std::fs::canonicalize(&opts.run_dir).map_err(io(&opts.run_dir))?;
    let opts = &RunOptions { run_dir, report_dir: opts.report_dir.clone(), quiet: opts.quiet, heartbeat_s: opts.heartbeat_s };
    let _lock = RunLock::acquire(&opts.run_dir)?;
    if s.execution.executor == ExecutorKind::Local {
        refuse_live_slurm_tasks(&opts.run_dir).await?;
    }

    // The study as run; a resumed run must be of the same study.
    let text = std::fs::read_to_string(&loaded.file).map_err(io(&loaded.file))?;
    let copy = opts.run_dir.join("study.yaml");
    let base = opts.run_dir.join("study.base");
    let proxy_dir = opts.run_dir.join("proxies");
    let stages: Vec<TrialSpec> =
        s.pretrain_setups.iter().filter_map(|p| p.pretrain.as_ref().map(|r| plan::pretrain_trial(loaded, &p.name, r))).collect();
    let checkpoints = setup_checkpoints(loaded, &opts.run_dir, &stages);
    let ctx = PlanContext { proxy_dir: &proxy_dir, setup_checkpoint: &|name: &str| checkpoints.get(name).cloned().flatten() };
    // The proxies as the study draws them now: one that differs from the folder's is another
    // dataset or rule, refused before anything in the folder changes.
    let mut proxies = Vec::new();
    for (name, rule, seed) in loaded.proxy_rules() {
        let m = proxy::build(&name, &loaded.source(), &catalog, rule, seed).map_err(|e| e.to_string())?;
        let path = plan::manifest_path(&proxy_dir, &name);
        if crate::data::manifest::Manifest::read(&path).map(|old| old.content_hash != m.content_hash).unwrap_or(false) {
            return Err(format!("{}: the dataset or the proxy's rule changed since this run started; use a new run folder", path.display()));
        }
        proxies.push((name, m));
    }
    match std::fs::read_to_string(&copy) {
        Ok(old) if old != text => {
            let old_study = LoadedStudy::from_text_in(&copy, &old, &loaded.dir()).map_err(|e| e.to_string())?;
            if old_study.study.name != s.name {
                return Err(format!("{} holds a run of study `{}`, not `{}`", opts.run_dir.display(), old_study.study.name, s.name));
            }
            // The same study edited: it may add grid values, LRs, proxies or setups, drop some,
            // or change how trials run, not what a trial already in the folder is. Checked
            // before anything in the folder changes.
            for t in existing_trials(&opts.run_dir, loaded, &ctx)? {
                check_spec(&opts.run_dir, &t)?;
            }
            std::fs::write(&copy, &text).map_err(io(&copy))?;
        }
        Ok(_) => {}
        Err(_) => std::fs::write(&copy, &text).map_err(io(&copy))?,
    }
    std::fs::write(&base, loaded.dir().display().to_string()).map_err(io(&base))?;

    // Proxies, drawn into the run folder (identical to `maestro proxy build`); checked above.
    for (name, m) in proxies {
        let path = plan::manifest_path(&proxy_dir, &name);
        m.write(&path).map_err(|e| e.to_string())?;
        if let TrialKind::Command { .. } = s.trial {
            // Written beside and renamed into place: a runner killed half-way leaves no
            // half-written tree that a resume would take for the proxy.
            let tree = proxy_dir.join(&name);
            if !tree.exists() {
                let part = proxy_dir.join(format!("{name}.partial"));
                let _ = std::fs::remove_dir_all(&part);
                crate::data::materialize::materialize(&m, &part).map_err(|e| e.to_string())?;
                std::fs::rename(&part, &tree).map_err(io(&tree))?;
            }
        }
    }

    let journal_path = opts.run_dir.join("journal.jsonl");
    let journal = Journal::open(&journal_path).map_err(|e| e.to_string())?;

    // Ctrl-C, or SIGTERM (what `kill`, systemd and Slurm's scancel or time limit send), stops
    // the run cleanly: trials are ended and journalled as interrupted, and a resume takes them up.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    tokio::spawn(async move {
        let asked = tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            r = term.recv() => r.is_some(),
        };
        if asked {
            let _ = stop_tx.send(true);
            // A second signal ends maestro at once; the journal is already consistent. One that
            // follows within a second is the same request delivered twice (`timeout -s INT`
            // and `kill -INT -PGID` signal the process and then its group), not a second one.
            let first = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                if first.elapsed() >= SAME_SIGNAL {
                    std::process::exit(130);
                }
            }
        }
    });
    let cfg = SchedulerConfig {
        slots: executor::slots(&s.execution.devices),
        max_retries: s.execution.max_retries,
        timeout: s.execution.trial_timeout_s.map(Duration::from_secs_f64),
        heartbeat: Duration::from_secs(opts.heartbeat_s.max(1)),
        quiet: opts.quiet,
    };
    let mut runner = Runner {
        run_dir: opts.run_dir.clone(),
        journal,
        backend: match s.execution.executor {
            ExecutorKind::Local => Backend::Local(Box::new(LocalExecutor::new()?)),
            ExecutorKind::Slurm => Backend::Slurm(SlurmExecutor::new(&s.name, &opts.run_dir, &s.execution)?),
        },
        cfg,
        stop: stop_rx,
        failed: Vec::new(),
        interrupted: false,
    };
    // From here on every way out is journalled as the runner's stop, errors included.
    runner.journal.append(Event::RunnerStarted { pid: std::process::id() }).map_err(|e| e.to_string())?;
    let steps = run_steps(&mut runner, loaded, &ctx, &stages, opts).await;
    let stopped = match &steps {
        Err(e) => format!("error: {e}"),
        Ok(_) if runner.interrupted => "interrupted".into(),
        Ok(_) => "finished".into(),
    };
    let _ = runner.journal.append(Event::RunnerStopped { reason: stopped });
    let unrecommended = steps?;
    let report = crate::report::write(&opts.run_dir, &opts.report_dir)?;
    let mut failed = runner.failed.clone();
    failed.sort();
    failed.dedup();
    Ok(RunOutcome { failed, interrupted: runner.interrupted, unrecommended, report })
}

/// The run's steps, in order: pre-training stages, the search grid, its refinement, the
/// transfer runs. Returns the setups left without a recommendation.
async fn run_steps(runner: &mut Runner, loaded: &LoadedStudy, ctx: &PlanContext<'_>, stages: &[TrialSpec], opts: &RunOptions) -> Result<Vec<String>, String> {
    let s = &loaded.study;
    // 0. Pre-training stages, once per configuration (a resumed or repeated run reuses them).
    let mut ok = stages.is_empty() || runner.run(stages.to_vec()).await?;
    if ok && !runner.failed.is_empty() {
        ok = false; // a setup without its pre-trained model cannot be searched
    }

    // 1. The search grid.
    let mut grid = s.search.llrd.clone();
    if ok {
        ok = runner.run(plan::search_trials(loaded, &ctx, &grid)).await?;
    }

    // 2. One refinement round where a fit sits at an edge or is too uncertain.
    if ok && s.search.refine {
        // Decided by the study's own grid alone, so that running a finished run again asks
        // for the same values (done) rather than refining its refinement without end.
        let v = crate::report::view(&opts.run_dir)?;
        let on_grid: Vec<_> = v.rows.iter().filter(|r| r.role != "search" || grid.iter().any(|g| (g - r.llrd).abs() < 1e-9)).cloned().collect();
        let curves = recommend::curves(&on_grid, s.seed);
        // Never past a value that diverged: beyond a stability cliff there is nothing to find.
        let mut extra: Vec<f64> = curves
            .iter()
            .flat_map(|c| {
                // (A diverged repeat at the best value itself is no cliff between it and x.)
                let past_cliff = |x: f64| {
                    c.diverged.iter().any(|&d| (d - c.fit.best_x).abs() > 1e-9 && d > c.fit.best_x.min(x) - 1e-9 && d < c.fit.best_x.max(x) + 1e-9)
                };
                crate::analysis::fit::refinement(&c.fit).into_iter().filter(move |&x| !past_cliff(x))
            })
            .collect();
        extra.sort_by(f64::total_cmp);
        extra.dedup();
        extra.retain(|x| !grid.contains(x));
        if !extra.is_empty() {
            if !opts.quiet {
                eprintln!("refining: adding LLRD {extra:?}");
            }
            grid.extend(&extra);
            ok = runner.run(plan::search_trials(loaded, &ctx, &extra)).await?;
        }
    }

    // 3. Transfer: the recommendation (and MAE's default recipe) on the full dataset. A setup
    // none of whose search trials completed has no recommendation, transfer or not.
    let mut unrecommended = Vec::new();
    if ok && !(s.transfer.full_run || s.transfer.baseline) {
        let recs = crate::report::view(&opts.run_dir)?.recommendations;
        unrecommended = s.pretrain_setups.iter().filter(|p| !recs.iter().any(|r| r.setup == p.name)).map(|p| p.name.clone()).collect();
    }
    if ok && (s.transfer.full_run || s.transfer.baseline) {
        let v = crate::report::view(&opts.run_dir)?;
        let recs = recommend::recommend(&v.curves);
        let mut full = Vec::new();
        for setup in &s.pretrain_setups {
            let mut points = Vec::new();
            match recs.iter().find(|r| r.setup == setup.name) {
                Some(rec) if s.transfer.full_run => {
                    // A full run already made at this value (as rounded by an earlier version) is it.
                    let llrd = crate::report::full_run_of(&v.rows, &rec.setup, rec.llrd, rec.blr).map_or(rec.llrd, |r| r.llrd);
                    points.push(Point { proxy: None, setup: rec.setup.clone(), llrd, blr: rec.blr, repeat: 0, role: Role::Full })
                }
                Some(_) => {}
                // Every search trial of the setup diverged or failed: nothing to transfer.
                None => unrecommended.push(setup.name.clone()),
            }
            // MAE's default recipe does not depend on the search.
            if s.transfer.baseline {
                let (llrd, blr) = plan::study_baseline(&s.model);
                points.push(Point { proxy: None, setup: setup.name.clone(), llrd, blr, repeat: 0, role: Role::Baseline });
            }
            full.extend(points.iter().map(|p| plan::make_trial(loaded, &ctx, p)));
        }
        runner.run(full).await?;
    }
    Ok(unrecommended)
}
