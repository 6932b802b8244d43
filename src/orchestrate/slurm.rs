//! The Slurm executor. Each round of trials becomes one `sbatch --array` job whose task `i` runs
//! `maestro trial <run>/trials/<id>/spec.json` for line `i` of the round's list file; the run
//! folder (on a filesystem the nodes share) carries specs, results and logs. The runner polls
//! the queue (`squeue --json`, falling back to `scontrol show job`), and the trial's result file,
//! not Slurm's state, decides how a trial went. A runner that dies leaves its jobs running; the
//! next `maestro run` re-attaches to them from the journal instead of submitting them again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::watch;

use super::journal::{self, Event, Journal, TrialState};
use super::scheduler::{self, Finished, SchedulerConfig};
use crate::study::schema::ExecutionSpec;

/// One array task as the queue reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
    pub state: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: String,
    pub name: String,
}

impl TaskState {
    /// Still queued or running: keep waiting.
    pub fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESIZING"
                | "SIGNALING" | "STAGE_OUT" | "STOPPED" | "RESV_DEL_HOLD"
        )
    }
}

/// Task keys (`<array job>_<task>`) of a task list such as `0-3%2`, `1,4-5` (the `%` throttle is
/// not a task).
fn expand_tasks(array: u64, list: &str) -> Vec<String> {
    let list = list.split('%').next().unwrap_or("");
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        // `0-15:4` steps are not produced by maestro's submissions; read them anyway.
        let (b, step) = b.split_once(':').map(|(b, s)| (b, s.parse().unwrap_or(1))).unwrap_or((b, 1usize));
        if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
            out.extend((a..=b).step_by(step.max(1)).map(|t| format!("{array}_{t}")));
        }
    }
    out
}

/// A number of `squeue --json`: plain (Slurm 22.05) or `{"set": true, "number": 5}` (23+).
fn number(x: Option<&Value>) -> Option<u64> {
    match x? {
        Value::Number(n) => n.as_u64(),
        Value::Object(o) if o.get("set").and_then(Value::as_bool) != Some(false) => o.get("number")?.as_u64(),
        _ => None,
    }
}

/// `squeue --json` (OpenAPI v0.0.38 of Slurm 22.05, and the object forms of later versions):
/// every task of the given array jobs. Some versions ignore `--jobs` with `--json`, so the
/// filtering is done here.
pub fn parse_squeue_json(text: &str, arrays: &BTreeSet<u64>) -> Result<BTreeMap<String, TaskState>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("squeue --json gave unreadable output: {e}"))?;
    if let Some(errors) = v.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        // A busy or failing controller may answer with errors and no jobs: not "all done".
        return Err(format!("squeue --json reported errors: {}", Value::Array(errors.clone())));
    }
    let jobs = v.get("jobs").and_then(Value::as_array).ok_or("squeue --json gave no `jobs` list")?;
    let mut out = BTreeMap::new();
    for j in jobs {
        let Some(array) = number(j.get("array_job_id")) else { continue };
        if !arrays.contains(&array) {
            continue;
        }
        let state = match j.get("job_state") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).unwrap_or("UNKNOWN").to_string(),
            _ => "UNKNOWN".into(),
        };
        let (exit_code, signal) = match j.get("exit_code") {
            // A wait status: code in the high byte, signal in the low bits.
            Some(Value::Number(n)) => n.as_i64().map(|w| (Some(((w >> 8) & 0xff) as i32), Some((w & 0x7f) as i32).filter(|s| *s != 0))).unwrap_or((None, None)),
            Some(Value::Object(o)) => (
                number(o.get("return_code")).map(|c| c as i32),
                o.get("signal").and_then(|s| number(s.get("id"))).map(|s| s as i32).filter(|s| *s != 0),
            ),
            _ => (None, None),
        };
        let task = TaskState {
            state,
            exit_code,
            signal,
            reason: j.get("state_reason").and_then(Value::as_str).unwrap_or("").to_string(),
            name: j.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
        };
        match number(j.get("array_task_id")) {
            Some(t) => {
                out.insert(format!("{array}_{t}"), task);
            }
            None => {
                // Pending tasks of an array are one record: `array_task_string` = "2-3%2".
                for key in expand_tasks(array, j.get("array_task_string").and_then(Value::as_str).unwrap_or("")) {
                    out.insert(key, task.clone());
                }
            }
        }
    }
    Ok(out)
}

/// `scontrol show job -o <array job>`: one line per task (pending tasks grouped).
pub fn parse_scontrol(text: &str) -> BTreeMap<String, TaskState> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let kv: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|t| t.split_once('=')).collect();
        let Some(array) = kv.get("ArrayJobId").and_then(|a| a.parse::<u64>().ok()) else { continue };
        let (exit_code, signal) = kv
            .get("ExitCode")
            .and_then(|e| e.split_once(':'))
            .map(|(c, s)| (c.parse().ok(), s.parse().ok().filter(|s: &i32| *s != 0)))
            .unwrap_or((None, None));
        let task = TaskState {
            state: kv.get("JobState").unwrap_or(&"UNKNOWN").to_string(),
            exit_code,
            signal,
            reason: kv.get("Reason").unwrap_or(&"").to_string(),
            name: kv.get("JobName").unwrap_or(&"").to_string(),
        };
        for key in expand_tasks(array, kv.get("ArrayTaskId").unwrap_or(&"")) {
            out.insert(key, task.clone());
        }
    }
    out
}

/// Why an attempt that left no result ended, in Slurm's words made plain.
fn describe(key: &str, task: Option<&TaskState>) -> String {
    let Some(t) = task else {
        return format!("Slurm job {key} ended and Slurm no longer lists it, and the trial wrote no result");
    };
    match t.state.as_str() {
        "FAILED" => match (t.exit_code, t.signal) {
            (_, Some(s)) => format!("Slurm job {key} failed: killed by signal {s}"),
            (Some(c), _) => format!("Slurm job {key} failed: exited with code {c}"),
            _ => format!("Slurm job {key} failed ({})", t.reason),
        },
        "TIMEOUT" => format!("Slurm job {key} reached its time limit"),
        "OUT_OF_MEMORY" => format!("Slurm job {key} ran out of memory (raise execution.mem)"),
        "NODE_FAIL" => format!("Slurm job {key}: its node failed"),
        "BOOT_FAIL" => format!("Slurm job {key}: its node failed to boot"),
        "CANCELLED" => format!("Slurm job {key} was cancelled outside maestro"),
        "COMPLETED" => format!("Slurm job {key} completed but the trial wrote no result"),
        other => format!("Slurm job {key} ended in state {other}"),
    }
}

/// Quote for a POSIX shell.
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn capture(program: &str, args: &[String]) -> Result<String, String> {
    let mut cmd = Command::new(program);
    // Its own process group: a Ctrl-C at the terminal must not kill an sbatch that the
    // controller has already accepted. Full task lists, not "0-99,101-..." cut at 64 characters.
    cmd.args(args).process_group(0).env("SLURM_BITSTR_LEN", "0");
    // A query given up on (`maestro status`'s timeout) ends with its future; a submission or a
    // cancellation always runs to its end.
    cmd.kill_on_drop(matches!(program, "squeue" | "scontrol"));
    let out = cmd.output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{program}` was not found on PATH: `executor: slurm` needs Slurm's client commands (sbatch, squeue, scancel) where maestro runs, e.g. on a login node"
            )
        } else {
            format!("cannot run `{program}`: {e}")
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(format!("`{program} {}` failed ({}): {err}", args.join(" "), out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every task of these array jobs that the queue still knows; Err when it cannot be asked.
async fn poll_tasks(arrays: &BTreeSet<u64>) -> Result<BTreeMap<String, TaskState>, String> {
    let ids = arrays.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let json = capture("squeue", &["--json".into(), "--states=all".into(), format!("--jobs={ids}")]).await;
    match json.and_then(|t| parse_squeue_json(&t, arrays)) {
        Ok(tasks) => Ok(tasks),
        Err(first) => {
            // Older Slurm (no --json), or a purged id that squeue refuses: ask scontrol.
            let mut out = BTreeMap::new();
            for a in arrays {
                match capture("scontrol", &["show".into(), "job".into(), "-o".into(), a.to_string()]).await {
                    Ok(t) => out.extend(parse_scontrol(&t)),
                    Err(e) if e.contains("Invalid job id") => {}
                    Err(e) => return Err(format!("{first}; and {e}")),
                }
            }
            Ok(out)
        }
    }
}

/// What the queue says of these tasks (`A_T` keys), for `maestro status`; None when Slurm
/// cannot be asked (no client commands here, or the queue does not answer).
pub fn queue_states(keys: &[String]) -> Option<BTreeMap<String, TaskState>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    rt.block_on(ask_queue(keys))
}

/// [`queue_states`] from async code.
pub async fn ask_queue(keys: &[String]) -> Option<BTreeMap<String, TaskState>> {
    let arrays: BTreeSet<u64> = keys.iter().filter_map(|k| array_of(k)).collect();
    if arrays.is_empty() {
        return None;
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), poll_tasks(&arrays)).await.ok()?.ok()
}

/// scancel jobs (`A` or `A_T`); ids Slurm no longer knows are not an error.
async fn scancel(ids: &[String]) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    match capture("scancel", ids).await {
        Ok(_) => Ok(()),
        Err(e) if e.contains("Invalid job id") || e.contains("already completing or completed") => Ok(()),
        Err(e) => Err(e),
    }
}

fn array_of(key: &str) -> Option<u64> {
    key.split('_').next()?.parse().ok()
}

/// Cancel these tasks and wait (up to a minute) until Slurm has ended them, so nothing still
/// writes into their trial folders when this returns.
async fn cancel_and_wait(keys: &[String]) -> Result<(), String> {
    let arrays: BTreeSet<u64> = keys.iter().filter_map(|k| array_of(k)).collect();
    scancel(&arrays.iter().map(u64::to_string).collect::<Vec<_>>()).await?;
    for _ in 0..120 {
        match poll_tasks(&arrays).await {
            Ok(t) if !keys.iter().any(|k| t.get(k).is_some_and(TaskState::active)) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(format!("Slurm still runs some of {} a minute after scancel", keys.join(", ")))
}

/// Tasks per array job at most (under Slurm's default MaxArraySize of 1001).
const MAX_ARRAY_TASKS: usize = 1000;

pub struct SlurmExecutor {
    /// The maestro binary the jobs run; the nodes must see it at this path.
    pub program: PathBuf,
    pub run_dir: PathBuf,
    /// Names every job of this run: `maestro-<study>-<hash of the run folder>`.
    pub job_name: String,
    pub exec: ExecutionSpec,
}

impl SlurmExecutor {
    pub fn new(study: &str, run_dir: &Path, exec: &ExecutionSpec) -> Result<Self, String> {
        let on_path = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sbatch").is_file()));
        if !on_path {
            return Err(
                "`executor: slurm` needs Slurm's client commands (sbatch, squeue, scancel), but `sbatch` is not on PATH; run maestro where they are, e.g. on a login node".into(),
            );
        }
        let program = std::env::current_exe().map_err(|e| format!("cannot find the maestro binary: {e}"))?;
        // Relative paths would resolve against the job's working directory on the node.
        let run_dir = std::path::absolute(run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let hash = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(run_dir.display().to_string().as_bytes());
            d.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>()
        };
        Ok(SlurmExecutor { program, run_dir, job_name: format!("maestro-{study}-{hash}"), exec: exec.clone() })
    }

    /// The device a trial trains on inside its allocation.
    /// The device a task trains on: its allocation's first card when `gres` asks for a GPU,
    /// through the LibTorch backend when the study's devices name it, else the CPU.
    pub fn device(&self) -> String {
        use crate::device::DeviceSpec;
        let gpu = self.exec.gres.as_deref().is_some_and(|g| g.contains("gpu"));
        let libtorch = self.exec.devices.iter().any(|d| matches!(d.parse(), Ok(DeviceSpec::LibTorchCuda(_) | DeviceSpec::LibTorchCpu)));
        match (gpu, libtorch) {
            (true, true) => DeviceSpec::LibTorchCuda(0),
            (true, false) => DeviceSpec::Cuda(0),
            (false, true) => DeviceSpec::LibTorchCpu,
            (false, false) => DeviceSpec::Cpu,
        }
        .to_string()
    }

    fn slurm_dir(&self) -> PathBuf {
        self.run_dir.join("slurm")
    }

    /// The sbatch options of every submission, before the array and the script.
    pub fn sbatch_args(&self) -> Vec<String> {
        let e = &self.exec;
        let mut args = vec!["--parsable".to_string(), format!("--job-name={}", self.job_name)];
        let opt = |k: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{k}={v}"));
        args.extend(opt("partition", &e.partition));
        args.extend(opt("gres", &e.gres));
        args.extend(e.cpus_per_task.map(|c| format!("--cpus-per-task={c}")));
        args.extend(opt("mem", &e.mem));
        let time = e.time.clone().or_else(|| e.trial_timeout_s.map(|s| format!("{}", (s / 60.0).ceil().max(1.0) as u64)));
        args.extend(opt("time", &time));
        args.extend(e.extra_sbatch_args.iter().cloned());
        args
    }

    /// Submit one round as an array job; returns the array job id.
    async fn submit(&self, batch: &[(String, usize)]) -> Result<u64, String> {
        let dir = self.slurm_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The next round number: one past the highest, so a deleted list never gets reused.
        let n = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .filter_map(|f| f.file_name().to_string_lossy().strip_prefix("round-")?.strip_suffix(".tsv")?.parse::<usize>().ok())
            .max()
            .map_or(0, |m| m + 1);
        let list = dir.join(format!("round-{n:04}.tsv"));
        let script = dir.join(format!("round-{n:04}.sh"));
        let lines: String = batch.iter().map(|(id, attempt)| format!("{id}\t{attempt}\n")).collect();
        std::fs::write(&list, lines).map_err(|e| format!("{}: {e}", list.display()))?;
        let trials = self.run_dir.join("trials");
        let text = format!(
            r#"#!/bin/bash
# maestro: round {n} of {run}; array task i runs the trial on line i+1 of the list.
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {list})
trial=${{line%%$'\t'*}}
attempt=${{line##*$'\t'}}
dir={trials}/"$trial"
exec >>"$dir/log.txt" 2>&1
echo "[maestro] Slurm job ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} on $(hostname), attempt $attempt, $(date -u +%FT%TZ)"
export MAESTRO_TRIAL="$trial" MAESTRO_ATTEMPT="$attempt" RAYON_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}" OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
{setup}
exec {program} trial "$dir/spec.json" --quiet
"#,
            run = self.run_dir.display(),
            list = sh_quote(&list.display().to_string()),
            trials = sh_quote(&trials.display().to_string()),
            setup = self.exec.setup.as_deref().unwrap_or(""),
            program = sh_quote(&self.program.display().to_string()),
        );
        std::fs::write(&script, text).map_err(|e| format!("{}: {e}", script.display()))?;
        let mut args = self.sbatch_args();
        let throttle = self.exec.array_parallelism.map(|p| format!("%{p}")).unwrap_or_default();
        args.push(format!("--array=0-{}{throttle}", batch.len() - 1));
        args.push(format!("--output={}", dir.join(format!("round-{n:04}_%a.out")).display()));
        args.push(format!("--comment={}", list.display()));
        args.push(script.display().to_string());
        let out = match capture("sbatch", &args).await {
            Ok(out) => out,
            Err(e) => {
                // Nothing was submitted: leave no round behind.
                let _ = std::fs::remove_file(&list);
                let _ = std::fs::remove_file(&script);
                return Err(format!("Slurm refused the submission of {} trial(s): {e}", batch.len()));
            }
        };
        // --parsable prints `jobid` or `jobid;cluster`.
        let id = out.trim().split(';').next().unwrap_or("");
        id.parse::<u64>().map_err(|_| format!("sbatch printed `{}` instead of a job id", out.trim()))
    }

    /// Active tasks with this run's name that the journal does not record: submitted by a
    /// runner that died before it recorded them (a whole array, or its last tasks). They are
    /// cancelled so no trial runs twice.
    async fn cancel_orphans(&self, recorded: &BTreeSet<String>) -> Result<usize, String> {
        let Ok(text) = capture("squeue", &["--json".into(), format!("--name={}", self.job_name)]).await else { return Ok(0) };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let arrays: BTreeSet<u64> = v
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|j| j.get("name").and_then(Value::as_str) == Some(self.job_name.as_str()))
            .filter_map(|j| number(j.get("array_job_id")))
            .collect();
        let Ok(all) = parse_squeue_json(&text, &arrays) else { return Ok(0) };
        let orphans: Vec<String> = all.iter().filter(|(k, t)| t.active() && !recorded.contains(*k)).map(|(k, _)| k.clone()).collect();
        if !orphans.is_empty() {
            scancel(&orphans).await?;
        }
        Ok(orphans.len())
    }

    /// Run `trials` as Slurm jobs; `attached` are trials already submitted by an earlier runner
    /// (trial id -> (task key, attempt)) that are watched instead of submitted again.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_trials(
        &self,
        trials: Vec<String>,
        failures: BTreeMap<String, usize>,
        attached: BTreeMap<String, (String, usize)>,
        recorded: BTreeSet<String>,
        journal: &mut Journal,
        cfg: &SchedulerConfig,
        mut stop: watch::Receiver<bool>,
    ) -> Result<BTreeMap<String, Finished>, String> {
        let io = |e: std::io::Error| e.to_string(); // names its file
        let say = |line: String| {
            if !cfg.quiet {
                eprintln!("{line}");
            }
        };
        let orphans = self.cancel_orphans(&recorded).await?;
        if orphans > 0 {
            say(format!("cancelled {orphans} Slurm job(s) of this run that were submitted but never recorded"));
        }
        let mut failures = failures;
        let mut queue: VecDeque<String> = trials.into();
        let mut watched: BTreeMap<String, (String, usize)> = BTreeMap::new();
        let mut arrays = BTreeSet::new();
        for (id, (key, attempt)) in attached {
            if let Some(a) = array_of(&key) {
                arrays.insert(a);
                say(format!("re-attached {id} (Slurm job {key})"));
                watched.insert(key, (id, attempt));
            } else {
                queue.push_back(id);
            }
        }
        let mut missing: BTreeMap<String, u32> = BTreeMap::new();
        let mut done = BTreeMap::new();
        let mut last_beat = Instant::now();
        let poll = Duration::from_secs_f64(self.exec.poll_s);
        let mut stop_closed = false;
        loop {
            while !queue.is_empty() && !*stop.borrow() {
                // Slurm's default MaxArraySize is 1001: larger rounds go as several arrays.
                let n = queue.len().min(MAX_ARRAY_TASKS);
                let mut batch: Vec<(String, usize)> = Vec::with_capacity(n);
                for id in queue.drain(..n).collect::<Vec<_>>() {
                    let attempt = failures.get(&id).copied().unwrap_or(0) + 1;
                    match scheduler::prepare_attempt(journal, &scheduler::trial_dir(&self.run_dir, &id), &id, attempt).map_err(io)? {
                        Some(f) => {
                            say(f.line(&id));
                            done.insert(id, f);
                        }
                        None => batch.push((id, attempt)),
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let array = self.submit(&batch).await?;
                arrays.insert(array);
                for (i, (id, attempt)) in batch.iter().enumerate() {
                    let key = format!("{array}_{i}");
                    journal.append(Event::Submitted { trial: id.clone(), attempt: *attempt, job: key.clone() }).map_err(io)?;
                    watched.insert(key, (id.clone(), *attempt));
                }
                say(format!("submitted {} trial(s) as Slurm array job {array}", batch.len()));
            }
            if watched.is_empty() {
                break;
            }
            let stopping = *stop.borrow();
            tokio::select! {
                _ = tokio::time::sleep(poll), if !stopping => {}
                changed = stop.changed(), if !stop_closed && !stopping => {
                    if changed.is_err() {
                        stop_closed = true; // no one can ask us to stop any more
                    }
                    continue;
                }
                _ = std::future::ready(()), if stopping => {
                    say(format!("stopping: cancelling {} Slurm job(s); they run again on the next `maestro run`", watched.len()));
                    let keys: Vec<String> = watched.keys().cloned().collect();
                    if let Err(e) = cancel_and_wait(&keys).await {
                        say(format!("warning: {e}"));
                    }
                    for (key, (id, attempt)) in std::mem::take(&mut watched) {
                        let dir = scheduler::trial_dir(&self.run_dir, &id);
                        // One may have finished just before the cancel.
                        let f = scheduler::settle_if_finished(journal, &dir, &id, attempt).map_err(io)?;
                        let f = match f {
                            Some(f) => f,
                            None => {
                                journal.append(Event::Interrupted { trial: id.clone(), attempt }).map_err(io)?;
                                say(format!("cancelled {id} (Slurm job {key})"));
                                Finished::Interrupted
                            }
                        };
                        done.insert(id, f);
                    }
                    break;
                }
            }
            let tasks = match poll_tasks(&arrays).await {
                Ok(t) => t,
                Err(e) => {
                    say(format!("cannot read the Slurm queue ({e}); trying again"));
                    continue;
                }
            };
            for (key, (id, attempt)) in watched.clone() {
                let task = tasks.get(&key);
                if task.is_some_and(TaskState::active) {
                    missing.remove(&key);
                    continue;
                }
                if task.is_none() {
                    // Seen gone twice before believing it.
                    let n = missing.entry(key.clone()).or_default();
                    *n += 1;
                    if *n < 2 {
                        continue;
                    }
                }
                watched.remove(&key);
                let dir = scheduler::trial_dir(&self.run_dir, &id);
                if task.is_some_and(|t| t.state == "PREEMPTED") {
                    if let Some(f) = scheduler::settle_if_finished(journal, &dir, &id, attempt).map_err(io)? {
                        say(f.line(&id));
                        done.insert(id, f);
                    } else {
                        // Not the trial's fault: run it again without counting a failure.
                        journal.append(Event::Interrupted { trial: id.clone(), attempt }).map_err(io)?;
                        say(format!("preempted {id} (Slurm job {key}); submitting it again"));
                        queue.push_back(id);
                    }
                    continue;
                }
                let no_result = format!("{} (see {})", describe(&key, task), dir.join("log.txt").display());
                let f = scheduler::settle(journal, &dir, &id, attempt, &mut failures, &mut queue, cfg.max_retries, no_result).map_err(io)?;
                say(f.line(&id));
                if !queue.contains(&id) {
                    done.insert(id, f);
                }
            }
            if last_beat.elapsed() >= cfg.heartbeat {
                last_beat = Instant::now();
                for (key, (id, attempt)) in &watched {
                    if tasks.get(key).is_some_and(|t| t.state == "RUNNING") {
                        journal.append(Event::Heartbeat { trial: id.clone(), attempt: *attempt }).map_err(io)?;
                    }
                }
            }
        }
        Ok(done)
    }
}

/// The Slurm tasks the journal records for this run, and the trials still running in them.
pub fn journal_jobs(records: &[journal::Record]) -> (BTreeSet<String>, BTreeMap<String, (String, usize)>) {
    let recorded = records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Submitted { job, .. } => Some(job.clone()),
            _ => None,
        })
        .collect();
    let running = journal::replay(records)
        .into_iter()
        .filter(|(_, s)| s.state == TrialState::Running)
        .filter_map(|(id, s)| Some((id, (s.job?, s.attempts))))
        .collect();
    (recorded, running)
}

/// `maestro cancel RUN_DIR`: stop a run's Slurm jobs. A live runner on this host is asked to
/// stop (it cancels its jobs and records them); without one, the jobs the journal lists as
/// running are cancelled here, and each is recorded as finished (it may have just finished) or
/// interrupted.
pub async fn cancel(run_dir: &Path) -> Result<String, String> {
    let lock = run_dir.join("runner.lock");
    let jpath = run_dir.join("journal.jsonl");
    if !jpath.exists() {
        return Err(format!("{}: no journal here; is this a maestro run folder?", run_dir.display()));
    }
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let mut parts = text.split_whitespace();
        let pid = parts.next().and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > 0);
        let host = parts.next().unwrap_or("");
        if let Some(pid) = pid {
            if !host.is_empty() && host != super::lock::hostname() {
                return Err(format!("{} is run by maestro (pid {pid}) on host {host}; run `maestro cancel` there, or stop that runner", run_dir.display()));
            }
            if super::lock::alive(pid as u32) {
                unsafe {
                    libc::kill(pid, libc::SIGINT);
                }
                for _ in 0..1200 {
                    if !lock.exists() {
                        return Ok(format!("the runner (pid {pid}) stopped and cancelled its jobs; `maestro run` resumes the study"));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return Err(format!("asked the runner (pid {pid}) to stop, but it still holds {} after 2 minutes", lock.display()));
            }
        }
    }
    let _lock = super::lock::RunLock::acquire(run_dir)?;
    let records = journal::read(&jpath)?;
    let (_, running) = journal_jobs(&records);
    if running.is_empty() {
        return Ok("no Slurm jobs of this run are running; nothing to cancel".into());
    }
    let keys: Vec<String> = running.values().map(|(k, _)| k.clone()).collect();
    cancel_and_wait(&keys).await?;
    let mut journal = Journal::open(&jpath).map_err(|e| format!("{}: {e}", jpath.display()))?;
    let io = |e: std::io::Error| e.to_string(); // names its file
    let (mut finished, mut interrupted) = (0, 0);
    for (id, (_, attempt)) in &running {
        let dir = scheduler::trial_dir(run_dir, id);
        if scheduler::settle_if_finished(&mut journal, &dir, id, *attempt).map_err(io)?.is_some() {
            finished += 1;
        } else {
            journal.append(Event::Interrupted { trial: id.clone(), attempt: *attempt }).map_err(io)?;
            interrupted += 1;
        }
    }
    let arrays: BTreeSet<u64> = keys.iter().filter_map(|k| array_of(k)).collect();
    Ok(format!(
        "cancelled {interrupted} trial(s) in Slurm job(s) {}{}; `maestro run` resumes the study",
        arrays.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        if finished > 0 { format!(" ({finished} had finished and are recorded so)") } else { String::new() }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_json_of_slurm_22_05() {
        // Trimmed from a real `squeue --json` of slurm-wlm 22.05.8: two running tasks, the
        // pending rest of the array as one record, a task of another job.
        let text = r#"{"meta": {}, "errors": [], "jobs": [
          {"array_job_id": 7, "array_task_id": 0, "array_task_string": "", "job_state": "RUNNING", "exit_code": 0, "state_reason": "None", "name": "m"},
          {"array_job_id": 7, "array_task_id": 1, "array_task_string": "", "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode", "name": "m"},
          {"array_job_id": 7, "array_task_id": null, "array_task_string": "2-3%2", "job_state": "PENDING", "exit_code": 0, "state_reason": "JobArrayTaskLimit", "name": "m"},
          {"array_job_id": 9, "array_task_id": 0, "array_task_string": "", "job_state": "RUNNING", "exit_code": 0, "state_reason": "None", "name": "x"}]}"#;
        let t = parse_squeue_json(text, &BTreeSet::from([7])).unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["7_0", "7_1", "7_2", "7_3"]);
        assert!(t["7_0"].active() && t["7_2"].active());
        assert_eq!((t["7_1"].state.as_str(), t["7_1"].exit_code, t["7_1"].signal), ("FAILED", Some(3), None));
        assert!(describe("7_1", t.get("7_1")).contains("exited with code 3"));
    }

    #[test]
    fn squeue_json_of_later_slurm_uses_objects() {
        let text = r#"{"jobs": [{"array_job_id": {"set": true, "number": 5}, "array_task_id": {"set": true, "number": 2},
          "job_state": ["OUT_OF_MEMORY"], "exit_code": {"status": ["SIGNALED"], "return_code": {"set": true, "number": 0}, "signal": {"id": {"set": true, "number": 9}}},
          "state_reason": "OutOfMemory", "name": "m"}]}"#;
        let t = parse_squeue_json(text, &BTreeSet::from([5])).unwrap();
        assert_eq!((t["5_2"].state.as_str(), t["5_2"].signal), ("OUT_OF_MEMORY", Some(9)));
        assert!(!t["5_2"].active());
    }

    #[test]
    fn scontrol_lines() {
        let text = "JobId=12 ArrayJobId=11 ArrayTaskId=1 JobName=m JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n\
                    JobId=11 ArrayJobId=11 ArrayTaskId=2,4-5%1 JobName=m JobState=PENDING Reason=JobArrayTaskLimit ExitCode=0:0\n";
        let t = parse_scontrol(text);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["11_1", "11_2", "11_4", "11_5"]);
        assert_eq!((t["11_1"].state.as_str(), t["11_1"].signal), ("TIMEOUT", Some(15)));
        assert!(describe("11_1", t.get("11_1")).contains("time limit"));
        assert!(t["11_5"].active());
    }

    #[test]
    fn sbatch_options_from_the_study() {
        let exec = ExecutionSpec {
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            cpus_per_task: Some(8),
            mem: Some("32G".into()),
            trial_timeout_s: Some(3601.0),
            extra_sbatch_args: vec!["--qos=high".into()],
            ..ExecutionSpec::default()
        };
        let s = SlurmExecutor { program: "/x/maestro".into(), run_dir: "/r".into(), job_name: "maestro-s-0".into(), exec };
        assert_eq!(
            s.sbatch_args(),
            ["--parsable", "--job-name=maestro-s-0", "--partition=gpu", "--gres=gpu:1", "--cpus-per-task=8", "--mem=32G", "--time=61", "--qos=high"]
        );
        assert_eq!(s.device(), "cuda:0");
        let mut s = s;
        s.exec.devices = vec!["libtorch-cuda:0".into()];
        assert_eq!(s.device(), "libtorch-cuda:0", "the study's LibTorch backend on the task's card");
        s.exec.gres = None;
        assert_eq!(s.device(), "libtorch-cpu");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
