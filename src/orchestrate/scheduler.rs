//! Runs a set of trials on the execution slots: a slot refills as soon as its trial ends, a
//! failed trial is retried with the same parameters up to `max_retries`, every state change
//! goes to the journal before anything else happens, and a stop request ends the children and
//! leaves the journal saying which trials were interrupted.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::executor::{Executor, Job, Outcome, Slot};
use super::journal::{Event, Journal};
use super::plan::TrialSpec;
use crate::train::spec::RunStatus;

pub struct SchedulerConfig {
    pub slots: Vec<Slot>,
    pub max_retries: usize,
    pub timeout: Option<Duration>,
    pub heartbeat: Duration,
    pub quiet: bool,
}

/// How a trial ended for this scheduling round.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Top-1, or for a pre-training (which has none) its last epoch's loss as the second field.
    Completed(f64, Option<f64>),
    Diverged,
    /// Gave up after the last retry.
    Failed(String),
    /// Not finished because the runner stopped.
    Interrupted,
}

/// The trial folder of a run: `trials/<id>/` with spec.json, log.txt, result.json.
pub fn trial_dir(run_dir: &Path, id: &str) -> std::path::PathBuf {
    run_dir.join("trials").join(id)
}

/// The parts of a trial's result the scheduler needs; any kind of trial (fine-tune, command,
/// pre-training) writes at least `status`.
struct TrialOutcome {
    status: RunStatus,
    top1: f64,
    top5: Option<f64>,
    diverged_at_step: Option<usize>,
    error: Option<String>,
    /// A pre-training's last epoch loss.
    last_loss: Option<f64>,
}

fn read_result(dir: &Path) -> Option<TrialOutcome> {
    let text = std::fs::read_to_string(dir.join("result.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let status = match v.get("status")?.as_str()? {
        "completed" => RunStatus::Completed,
        "diverged" => RunStatus::Diverged,
        _ => RunStatus::Failed,
    };
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    Some(TrialOutcome {
        status,
        top1: num("top1"),
        top5: v.get("top5").and_then(|x| x.as_f64()).filter(|t| t.is_finite()),
        diverged_at_step: v.get("diverged_at_step").and_then(|x| x.as_u64()).map(|x| x as usize),
        error: v.get("error").and_then(|x| x.as_str()).map(str::to_string),
        last_loss: v.get("epoch_loss").and_then(|l| l.as_array()?.last()?.as_f64()),
    })
}

/// The error a trial's log ends with (its last `error:` line), so the runner's line says why.
fn log_error(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().rev().find_map(|l| l.trim().strip_prefix("error: "))?;
    Some(if line.chars().count() > 300 { format!("{}...", line.chars().take(300).collect::<String>()) } else { line.to_string() })
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (_, Some(9)) => "killed (SIGKILL)".into(),
        (_, Some(s)) => format!("killed by signal {s}"),
        (Some(c), _) => format!("exited with code {c}"),
        _ => "ended without an exit status".into(),
    }
}

/// Run `trials` (each `failures[id]` times failed before). Returns how each ended.
pub async fn run_trials(
    trials: Vec<TrialSpec>,
    failures: BTreeMap<String, usize>,
    run_dir: &Path,
    journal: &mut Journal,
    executor: &dyn Executor,
    cfg: &SchedulerConfig,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<BTreeMap<String, Finished>> {
    let mut failures = failures;
    let mut queue: VecDeque<String> = trials.iter().map(|t| t.id.clone()).collect();
    let mut free: Vec<Slot> = cfg.slots.iter().rev().cloned().collect();
    let mut running: JoinSet<(String, Slot, Outcome)> = JoinSet::new();
    let mut pids: BTreeMap<String, u32> = BTreeMap::new();
    let mut done: BTreeMap<String, Finished> = BTreeMap::new();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let total = trials.len();
    let mut best: Option<(f64, String)> = None;

    let pb = if cfg.quiet || total == 0 { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} trials {msg} [{elapsed_precise}, ETA {eta}]").expect("template"));
    let mut stopping = false;
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.tick().await;

    loop {
        // Fill every free slot.
        while !stopping && !*stop.borrow() && !free.is_empty() && !queue.is_empty() {
            let id = queue.pop_front().expect("non-empty");
            let dir = trial_dir(run_dir, &id);
            // Attempts are counted by failures: a retry is attempt failures + 1.
            let attempt = failures.get(&id).copied().unwrap_or(0) + 1;
            if let Some(f) = prepare_attempt(journal, &dir, &id, attempt)? {
                done.insert(id, f);
                continue;
            }
            let slot = free.pop().expect("non-empty");
            let job = Job {
                trial: id.clone(),
                spec: dir.join("spec.json"),
                log: dir.join("log.txt"),
                slot: slot.clone(),
                attempt,
                timeout: cfg.timeout,
            };
            match executor.launch(job, cancel_rx.clone()) {
                Ok(launched) => {
                    journal.append(Event::Running { trial: id.clone(), attempt, pid: launched.pid, slot: slot.name.clone() })?;
                    pids.insert(id.clone(), launched.pid);
                    let wait = launched.wait;
                    running.spawn(async move { (id, slot, wait.await) });
                }
                Err(reason) => {
                    journal.append(Event::Failed { trial: id.clone(), attempt, reason: reason.clone() })?;
                    done.insert(id, Finished::Failed(reason));
                    free.push(slot);
                }
            }
        }
        let n_failed = done.values().filter(|f| matches!(f, Finished::Failed(_))).count();
        pb.set_position(done.len() as u64);
        pb.set_message(format!(
            "{} running, {} failed{}",
            running.len(),
            n_failed,
            best.as_ref().map(|(v, id)| format!(", best {v:.2}% ({id})")).unwrap_or_default()
        ));
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                let Some(Ok((id, slot, outcome))) = joined else { continue };
                free.push(slot);
                pids.remove(&id);
                let attempt = failures.get(&id).copied().unwrap_or(0) + 1;
                let dir = trial_dir(run_dir, &id);
                // Stopped by us, or killed by a signal while we were stopping, or by a stop signal
                // sent to the whole process group (Ctrl-C in a terminal without our process group,
                // Slurm's scancel or time limit, systemd), which can reach a trial before the runner
                // has seen it: the trial is interrupted, not failed.
                let asked = stopping || *stop.borrow();
                let stop_signal = |s: Option<i32>| matches!(s, Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP));
                let finished = match outcome {
                    ref o if matches!(o, Outcome::Cancelled)
                        || matches!(o, Outcome::Exited { signal: Some(sig), .. } if asked || stop_signal(Some(*sig))) =>
                    {
                        journal.append(Event::Interrupted { trial: id.clone(), attempt })?;
                        Finished::Interrupted
                    }
                    Outcome::Exited { code, signal } => {
                        let log = dir.join("log.txt");
                        let why = log_error(&log).map(|e| format!(": {e}")).unwrap_or_default();
                        let no_result = format!("{}; no result{why} (see {})", describe_exit(code, signal), log.display());
                        let f = settle(journal, &dir, &id, attempt, &mut failures, &mut queue, cfg.max_retries, no_result)?;
                        if let Finished::Completed(top1, None) = f {
                            if best.as_ref().is_none_or(|(b, _)| top1 > *b) {
                                best = Some((top1, id.clone()));
                            }
                        }
                        f
                    }
                    Outcome::Cancelled => unreachable!("handled by the first arm"),
                    Outcome::TimedOut(t) => {
                        let reason = format!("timed out after {:.0} s", t.as_secs_f64());
                        retry_or_fail(journal, &mut failures, &mut queue, &id, attempt, reason, cfg.max_retries)?
                    }
                };
                if !matches!(finished, Finished::Interrupted) || stopping {
                    pb.suspend(|| if !cfg.quiet { eprintln!("{}", finished.line(&id)) });
                }
                if !queue.contains(&id) {
                    done.insert(id, finished);
                }
            }
            _ = heartbeat.tick() => {
                for id in pids.keys() {
                    let attempt = failures.get(id).copied().unwrap_or(0) + 1;
                    journal.append(Event::Heartbeat { trial: id.clone(), attempt })?;
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_ok() && *stop.borrow() {
                    stopping = true;
                    pb.suspend(|| eprintln!("stopping: ending {} running trial(s); they will resume on the next run", running.len()));
                    let _ = cancel_tx.send(true);
                }
            }
        }
    }
    pb.finish_and_clear();
    Ok(done)
}

impl Finished {
    /// The line printed when a trial ends.
    pub fn line(&self, id: &str) -> String {
        match self {
            Finished::Completed(_, Some(loss)) => format!("done    {id}: loss {loss:.4}"),
            Finished::Completed(t, None) => format!("done    {id}: top-1 {t:.2}%"),
            Finished::Diverged => format!("diverged {id}"),
            Finished::Failed(r) => format!("FAILED  {id}: {r}"),
            Finished::Interrupted => format!("stopped {id}"),
        }
    }
}

/// Decide how an ended attempt went and journal it. The trial's result file decides, never the
/// process's or the cluster's word alone (a cluster may call a failed job completed);
/// `no_result` says why when there is no result file. A failure is queued again while retries
/// are left.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    journal: &mut Journal,
    dir: &Path,
    id: &str,
    attempt: usize,
    failures: &mut BTreeMap<String, usize>,
    queue: &mut VecDeque<String>,
    max_retries: usize,
    no_result: String,
) -> std::io::Result<Finished> {
    if let Some(f) = settle_if_finished(journal, dir, id, attempt)? {
        return Ok(f);
    }
    let reason = match read_result(dir) {
        Some(r) => r.error.unwrap_or_else(|| "failed".into()),
        None => no_result,
    };
    retry_or_fail(journal, failures, queue, id, attempt, reason, max_retries)
}

/// Before an attempt starts: a result that is already final (the trial finished, but its runner
/// died before recording it) is recorded and the trial is not run again; any other result is
/// an earlier attempt's and is removed, so it cannot stand for this attempt's.
pub(super) fn prepare_attempt(journal: &mut Journal, dir: &Path, id: &str, attempt: usize) -> std::io::Result<Option<Finished>> {
    if let Some(f) = settle_if_finished(journal, dir, id, attempt)? {
        return Ok(Some(f));
    }
    let old = dir.join("result.json");
    match std::fs::remove_file(&old) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(e.kind(), format!("{}: {e}", old.display()))),
        _ => Ok(None),
    }
}

/// Journal the attempt's result when it finished for good (completed or diverged); None otherwise.
pub(super) fn settle_if_finished(journal: &mut Journal, dir: &Path, id: &str, attempt: usize) -> std::io::Result<Option<Finished>> {
    match read_result(dir) {
        Some(r) if r.status == RunStatus::Completed => {
            journal.append(Event::Completed { trial: id.to_string(), attempt, top1: r.top1, top5: r.top5 })?;
            Ok(Some(Finished::Completed(r.top1, r.last_loss)))
        }
        Some(r) if r.status == RunStatus::Diverged => {
            journal.append(Event::Diverged { trial: id.to_string(), attempt, step: r.diverged_at_step })?;
            Ok(Some(Finished::Diverged))
        }
        _ => Ok(None),
    }
}

pub(super) fn retry_or_fail(
    journal: &mut Journal,
    failures: &mut BTreeMap<String, usize>,
    queue: &mut VecDeque<String>,
    id: &str,
    attempt: usize,
    reason: String,
    max_retries: usize,
) -> std::io::Result<Finished> {
    journal.append(Event::Failed { trial: id.to_string(), attempt, reason: reason.clone() })?;
    let n = failures.entry(id.to_string()).or_default();
    *n += 1;
    if *n <= max_retries {
        queue.push_back(id.to_string());
        Ok(Finished::Failed(format!("{reason} (retrying, attempt {} of {})", *n + 1, max_retries + 1)))
    } else {
        Ok(Finished::Failed(format!("{reason} (gave up after {} attempts)", *n)))
    }
}
