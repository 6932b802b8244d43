//! `maestro status RUN_DIR`: the trial table, from another terminal while a run goes on.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::journal::{self, TrialState};
use super::lock::alive;

pub fn render(run_dir: &Path) -> Result<String, String> {
    let records = journal::read(&run_dir.join("journal.jsonl"))?;
    if records.is_empty() {
        return Err(format!("{}: no journal here; is this a maestro run folder?", run_dir.display()));
    }
    let states = journal::replay(&records);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let runner = std::fs::read_to_string(run_dir.join("runner.lock")).ok().and_then(|t| t.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()));
    let runner_alive = runner.is_some_and(alive);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {}",
        run_dir.display(),
        match runner {
            Some(pid) if alive(pid) => format!("running (pid {pid})"),
            Some(pid) => format!("runner {pid} is gone (stale lock); `maestro run` resumes"),
            None => "no runner".into(),
        }
    );
    let _ = writeln!(out, "{:<58} {:<10} {:>8} {:>8} {:>4}  {}", "trial", "state", "top-1", "top-5", "try", "note");
    // Trials handed to Slurm: what the queue says of them (a task still waiting is not running).
    let jobs: Vec<String> = states.values().filter(|s| s.state == TrialState::Running).filter_map(|s| s.job.clone()).collect();
    let queue = if jobs.is_empty() { None } else { super::slurm::queue_states(&jobs) };
    let mut counts = std::collections::BTreeMap::new();
    let mut durations = Vec::new();
    for (id, s) in &states {
        // What the queue says of this trial's task, when it is a running Slurm task.
        let task = s.job.as_ref().filter(|_| s.state == TrialState::Running).and_then(|j| queue.as_ref()?.get(j));
        let queued = task.is_some_and(|t| t.state == "PENDING");
        let state_name = if queued { "queued".to_string() } else { format!("{:?}", s.state).to_lowercase() };
        *counts.entry(state_name.clone()).or_insert(0usize) += 1;
        if let (TrialState::Completed, Some(a), Some(b)) = (s.state, s.started, s.last_seen) {
            durations.push(b - a);
        }
        let note = match s.state {
            // A Slurm job outlives its runner; a local trial dies with it.
            TrialState::Running if s.job.is_none() && !runner_alive => "its runner is gone; `maestro run` runs it again".to_string(),
            TrialState::Running => {
                let beat = s.last_seen.map(|t| format!("{:.0} s since last heartbeat", now - t)).unwrap_or_default();
                match (&s.job, task) {
                    (Some(job), Some(t)) if queued => {
                        format!("Slurm job {job} waits in the queue{}", if t.reason.is_empty() || t.reason == "None" { String::new() } else { format!(" ({})", t.reason) })
                    }
                    // Ended in Slurm while no runner watched it: the next run records how.
                    (Some(job), Some(t)) if !runner_alive && !t.active() => {
                        format!("Slurm job {job} ended ({}); `maestro run` records its outcome", t.state)
                    }
                    (Some(job), None) if !runner_alive && queue.is_some() => {
                        format!("Slurm job {job} is no longer in the queue; `maestro run` records its outcome")
                    }
                    (Some(job), _) => format!("Slurm job {job}; {beat}"),
                    (None, _) => beat,
                }
            }
            // An earlier attempt's failure says nothing about a trial that has since finished.
            TrialState::Completed | TrialState::Diverged => String::new(),
            _ => s.last_reason.clone().unwrap_or_default(),
        };
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "{:<58} {:<10} {:>8} {:>8} {:>4}  {}", id, state_name, f(s.top1), f(s.top5), s.attempts, note);
    }
    let total = states.len();
    let done = states.values().filter(|s| s.state.is_final()).count();
    let mean = if durations.is_empty() { None } else { Some(durations.iter().sum::<f64>() / durations.len() as f64) };
    let _ = writeln!(
        out,
        "{done}/{total} done; {}{}",
        counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        mean.map(|m| format!("; {:.0} s per trial", m)).unwrap_or_default()
    );
    Ok(out)
}
