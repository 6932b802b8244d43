//! The run's journal: an append-only JSON-lines file of every state change, fsync'd on each
//! append, replayed to know where a run stands. A torn last line (the runner died while
//! writing it) is ignored when read and cut off when the journal is next opened for appending,
//! so the next record starts a line of its own; the rest of the history is never rewritten.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::plan::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunnerStarted { pid: u32 },
    RunnerStopped { reason: String },
    Queued { trial: String, role: Role, proxy: Option<String>, setup: String, llrd: f64, blr: f64, repeat: usize },
    Running { trial: String, attempt: usize, pid: u32, slot: String },
    /// Handed to a cluster scheduler as job `job` (Slurm: `<array job>_<task>`); running from
    /// here on until an outcome is recorded.
    Submitted { trial: String, attempt: usize, job: String },
    Heartbeat { trial: String, attempt: usize },
    /// `top5` is absent for a trial that has none (an external command that prints only top-1).
    Completed { trial: String, attempt: usize, top1: f64, top5: Option<f64> },
    Diverged { trial: String, attempt: usize, step: Option<usize> },
    Failed { trial: String, attempt: usize, reason: String },
    /// Found running with no live runner (the runner died); it will run again.
    Stale { trial: String, attempt: usize },
    /// Stopped by the user (Ctrl-C); it will run again.
    Interrupted { trial: String, attempt: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Seconds since the Unix epoch.
    pub t: f64,
    #[serde(flatten)]
    pub event: Event,
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Journal {
    /// Open for appending. A last line without its newline was torn by a crash mid-write: it
    /// is completed when it holds a whole record and cut off when it does not (it never
    /// recorded anything), so that the next record is not glued onto it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let bytes = std::fs::read(path)?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let start = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if serde_json::from_slice::<Record>(&bytes[start..]).is_ok() {
                file.write_all(b"\n")?;
            } else {
                file.set_len(start as u64)?;
            }
            file.sync_data()?;
        }
        Ok(Journal { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one event and make it durable before returning. An error names the journal.
    pub fn append(&mut self, event: Event) -> std::io::Result<()> {
        let mut line = serde_json::to_string(&Record { t: now(), event }).expect("events serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}

/// Every record of a journal; a torn final line is dropped, a bad line elsewhere is an error.
pub fn read(path: &Path) -> Result<Vec<Record>, String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // Bytes, not text: a line torn inside a multi-byte character is a torn line like any other.
    let mut bytes = Vec::new();
    BufReader::new(f).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let lines = if lines.last().is_some_and(|l| l.is_empty()) { &lines[..lines.len() - 1] } else { &lines[..] };
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {} // torn by a crash mid-write
            Err(e) => return Err(format!("{}:{}: unreadable journal line: {e}", path.display(), i + 1)),
        }
    }
    Ok(out)
}

/// Where a trial stands after replaying the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    Queued,
    Running,
    Completed,
    Diverged,
    Failed,
    Stale,
    Interrupted,
}

impl TrialState {
    /// Done for good: never run again.
    pub fn is_final(self) -> bool {
        matches!(self, TrialState::Completed | TrialState::Diverged)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialStatus {
    pub state: TrialState,
    /// Attempts started.
    pub attempts: usize,
    /// Attempts that failed (retries are counted against this).
    pub failures: usize,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub last_reason: Option<String>,
    pub started: Option<f64>,
    pub last_seen: Option<f64>,
    /// The cluster job of the latest attempt, when it was submitted to one.
    pub job: Option<String>,
    pub role: Option<Role>,
    pub proxy: Option<String>,
    pub setup: Option<String>,
    pub llrd: Option<f64>,
    pub blr: Option<f64>,
    pub repeat: Option<usize>,
}

/// Replay a journal into per-trial states (in first-queued order).
pub fn replay(records: &[Record]) -> BTreeMap<String, TrialStatus> {
    let mut states: BTreeMap<String, TrialStatus> = BTreeMap::new();
    let blank = || TrialStatus {
        state: TrialState::Queued,
        attempts: 0,
        failures: 0,
        top1: None,
        top5: None,
        last_reason: None,
        started: None,
        last_seen: None,
        job: None,
        role: None,
        proxy: None,
        setup: None,
        llrd: None,
        blr: None,
        repeat: None,
    };
    for r in records {
        let t = r.t;
        match &r.event {
            Event::Queued { trial, role, proxy, setup, llrd, blr, repeat } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                s.role = Some(*role);
                s.proxy = proxy.clone();
                s.setup = Some(setup.clone());
                s.llrd = Some(*llrd);
                s.blr = Some(*blr);
                s.repeat = Some(*repeat);
            }
            Event::Running { trial, attempt, .. } | Event::Submitted { trial, attempt, .. } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                // A finished trial is never reopened, whatever a confused writer says.
                if !s.state.is_final() {
                    s.state = TrialState::Running;
                    s.attempts = s.attempts.max(*attempt);
                    s.started = Some(t);
                    s.last_seen = Some(t);
                    s.job = match &r.event {
                        Event::Submitted { job, .. } => Some(job.clone()),
                        _ => None,
                    };
                }
            }
            Event::Heartbeat { trial, .. } => {
                if let Some(s) = states.get_mut(trial) {
                    s.last_seen = Some(t);
                }
            }
            Event::Completed { trial, top1, top5, .. } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                s.state = TrialState::Completed;
                // A pre-training stage has no accuracy (its result's top-1 reads as 0).
                s.top1 = (s.role != Some(Role::Pretrain)).then_some(*top1);
                s.top5 = *top5;
                s.last_seen = Some(t);
            }
            Event::Diverged { trial, step, .. } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                if s.state != TrialState::Completed {
                    s.state = TrialState::Diverged;
                    s.last_reason = Some(match step {
                        Some(st) => format!("diverged at step {st}"),
                        None => "diverged".into(),
                    });
                }
            }
            Event::Failed { trial, reason, .. } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                if !s.state.is_final() {
                    s.state = TrialState::Failed;
                    s.failures += 1;
                    s.last_reason = Some(reason.clone());
                }
            }
            Event::Stale { trial, .. } | Event::Interrupted { trial, .. } => {
                let s = states.entry(trial.clone()).or_insert_with(blank);
                if !s.state.is_final() {
                    s.state = if matches!(r.event, Event::Stale { .. }) { TrialState::Stale } else { TrialState::Interrupted };
                }
            }
            Event::RunnerStarted { .. } | Event::RunnerStopped { .. } => {}
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_states_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        let q = |t: &str| Event::Queued { trial: t.into(), role: Role::Search, proxy: None, setup: "s".into(), llrd: 0.7, blr: 1e-3, repeat: 0 };
        j.append(q("a")).unwrap();
        j.append(q("b")).unwrap();
        j.append(Event::Running { trial: "a".into(), attempt: 1, pid: 1, slot: "cpu".into() }).unwrap();
        j.append(Event::Completed { trial: "a".into(), attempt: 1, top1: 50.0, top5: Some(90.0) }).unwrap();
        j.append(Event::Running { trial: "b".into(), attempt: 1, pid: 2, slot: "cpu".into() }).unwrap();
        j.append(Event::Failed { trial: "b".into(), attempt: 1, reason: "killed".into() }).unwrap();
        // A late "running" for a completed trial does not reopen it.
        j.append(Event::Running { trial: "a".into(), attempt: 2, pid: 3, slot: "cpu".into() }).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"t\": 1, \"event\": \"compl").unwrap();
        let states = replay(&read(&p).unwrap());
        assert_eq!(states["a"].state, TrialState::Completed);
        assert_eq!(states["a"].top1, Some(50.0));
        assert_eq!((states["b"].state, states["b"].failures), (TrialState::Failed, 1));
    }

    #[test]
    fn a_pretraining_stage_has_no_accuracy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&p).unwrap();
        j.append(Event::Queued { trial: "p".into(), role: Role::Pretrain, proxy: None, setup: "s".into(), llrd: 0.0, blr: 1.5e-4, repeat: 0 }).unwrap();
        j.append(Event::Completed { trial: "p".into(), attempt: 1, top1: 0.0, top5: None }).unwrap();
        let states = replay(&read(&p).unwrap());
        assert_eq!((states["p"].state, states["p"].top1), (TrialState::Completed, None));
    }

    /// The runner that resumes after a crash mid-write appends after the torn line, not onto
    /// it: the journal stays readable, and a torn line that holds a whole record (only its
    /// newline was lost) keeps it.
    #[test]
    fn appending_after_a_torn_tail_keeps_the_journal_readable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("journal.jsonl");
        let run = |t: &str| Event::Running { trial: t.into(), attempt: 1, pid: 1, slot: "cpu".into() };
        let mut j = Journal::open(&p).unwrap();
        j.append(run("a")).unwrap();
        j.append(Event::Completed { trial: "a".into(), attempt: 1, top1: 50.0, top5: Some(90.0) }).unwrap();
        drop(j);
        let whole = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &whole[..whole.len() - 20]).unwrap(); // torn inside the record
        let mut j = Journal::open(&p).unwrap();
        j.append(run("b")).unwrap();
        drop(j);
        let records = read(&p).unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(replay(&records)["a"].state, TrialState::Running);
        assert_eq!(replay(&records)["b"].state, TrialState::Running);

        std::fs::write(&p, whole.trim_end()).unwrap(); // only the newline lost
        let mut j = Journal::open(&p).unwrap();
        j.append(run("b")).unwrap();
        drop(j);
        let states = replay(&read(&p).unwrap());
        assert_eq!((states["a"].state, states["a"].top1), (TrialState::Completed, Some(50.0)));
        assert_eq!(states["b"].state, TrialState::Running);
        assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n'));
    }
}
