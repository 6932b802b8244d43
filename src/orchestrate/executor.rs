//! Where a trial's process runs. The scheduler sees only this seam: launch a trial, get its pid,
//! wait for its outcome, cancel it. The local executor runs `maestro trial SPEC` as a child on
//! this machine; a cluster executor submits the same command elsewhere.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use crate::device::DeviceSpec;

/// An execution slot: one trial at a time runs on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Shown to the user and written to the journal: `cuda:1`, `cpu#0`.
    pub name: String,
    pub device: DeviceSpec,
    /// CPU threads a trial on this slot may use.
    pub threads: usize,
}

/// Slots from the study's device list.
pub fn slots(devices: &[String]) -> Vec<Slot> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    slots_on(devices, cores)
}

/// Slots on a machine of `cores` cores: the slots that compute on the CPU (`cpu`,
/// `libtorch-cpu`) share them evenly, so parallel trials do not oversubscribe the cores.
fn slots_on(devices: &[String], cores: usize) -> Vec<Slot> {
    let specs: Vec<DeviceSpec> = devices.iter().filter_map(|d| d.parse().ok()).collect();
    let on_cpu = |d: &DeviceSpec| matches!(d, DeviceSpec::Cpu | DeviceSpec::LibTorchCpu);
    let cpu_slots = specs.iter().filter(|d| on_cpu(d)).count().max(1);
    let mut numbered = std::collections::HashMap::new();
    specs
        .into_iter()
        .map(|device| {
            let (name, threads) = if on_cpu(&device) {
                let no = numbered.entry(device).or_insert(0);
                *no += 1;
                (format!("{device}#{}", *no - 1), (cores / cpu_slots).max(1))
            } else {
                (device.to_string(), cores)
            };
            Slot { name, device, threads }
        })
        .collect()
}

pub struct Job {
    pub trial: String,
    pub spec: PathBuf,
    pub log: PathBuf,
    pub slot: Slot,
    pub attempt: usize,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The process ended by itself: exit code, or the signal that killed it.
    Exited { code: Option<i32>, signal: Option<i32> },
    TimedOut(Duration),
    /// Stopped because the runner was asked to stop.
    Cancelled,
}

pub type OutcomeFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub struct Launched {
    pub pid: u32,
    pub wait: OutcomeFuture,
}

pub trait Executor: Send + Sync {
    /// Start a job. `cancel` turns true when the runner stops.
    fn launch(&self, job: Job, cancel: watch::Receiver<bool>) -> Result<Launched, String>;
}

/// Children of this machine, pinned to their device.
pub struct LocalExecutor {
    /// The maestro binary to run trials with.
    pub program: PathBuf,
    /// Time a stopping trial gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl LocalExecutor {
    pub fn new() -> Result<Self, String> {
        let program = std::env::current_exe().map_err(|e| format!("cannot find the maestro binary: {e}"))?;
        Ok(LocalExecutor { program, grace: Duration::from_secs(10) })
    }
}

fn signal(pid: u32, sig: i32) {
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// A signal to the process group `pgid` leads (a trial is the leader of its own).
fn signal_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        unsafe {
            libc::kill(-(pgid as libc::pid_t), sig);
        }
    }
}

/// Kill what a trial left behind when its runner died: `maestro trial` dies with the runner
/// (PR_SET_PDEATHSIG), but an external command it started, and that command's children, do
/// not. They carry the trial's spec in MAESTRO_SPEC (inherited from `maestro trial`), which
/// identifies them however the process tree was re-parented. Returns how many were killed.
pub fn kill_leftovers(spec: &Path) -> usize {
    let want = format!("MAESTRO_SPEC={}", spec.display());
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return 0 };
    let mut killed = 0;
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(p.path().join("environ")) else { continue };
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            signal(pid, libc::SIGKILL);
            killed += 1;
        }
    }
    killed
}

impl Executor for LocalExecutor {
    fn launch(&self, job: Job, mut cancel: watch::Receiver<bool>) -> Result<Launched, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&job.log)
            .map_err(|e| format!("{}: {e}", job.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("trial").arg(&job.spec).arg("--quiet");
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2));
        cmd.env("MAESTRO_ATTEMPT", job.attempt.to_string());
        // Inherited by whatever the trial starts: how a later runner finds it (kill_leftovers).
        cmd.env("MAESTRO_SPEC", &job.spec);
        // burn's CPU backend and the data loader use rayon; PyTorch's intra-op pool (libtorch)
        // reads OMP_NUM_THREADS when it starts.
        cmd.env("RAYON_NUM_THREADS", job.slot.threads.to_string());
        cmd.env("OMP_NUM_THREADS", job.slot.threads.to_string());
        if let Some(i) = job.slot.device.cuda_index() {
            // The trial sees its card as cuda:0.
            cmd.env("CUDA_VISIBLE_DEVICES", i.to_string());
        }
        // A trial must not outlive its runner: if the runner is killed, the kernel kills the
        // trial too, and the next run re-runs (and resumes) it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Its own process group: a Ctrl-C at the terminal reaches the runner only,
                // which then stops its trials in order.
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let pid = child.id().unwrap_or(0);
        let grace = self.grace;
        let timeout = job.timeout;
        let wait = Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            let limit = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            let stop = |reason: Outcome| async move { reason };
            let reason = tokio::select! {
                status = child.wait() => {
                    return match status {
                        Ok(s) => Outcome::Exited { code: s.code(), signal: s.signal() },
                        Err(_) => Outcome::Exited { code: None, signal: None },
                    };
                }
                _ = limit => stop(Outcome::TimedOut(timeout.unwrap_or_default())).await,
                _ = async {
                    loop {
                        if *cancel.borrow_and_update() {
                            return;
                        }
                        if cancel.changed().await.is_err() {
                            // No one can cancel any more: wait for the child alone.
                            std::future::pending::<()>().await;
                        }
                    }
                } => stop(Outcome::Cancelled).await,
            };
            // The trial's whole process group: an external command it started goes with it.
            signal_group(pid, libc::SIGTERM);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                signal_group(pid, libc::SIGKILL);
                let _ = child.kill().await;
            }
            let _ = child.wait().await;
            reason
        });
        Ok(Launched { pid, wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_slots_share_the_cores_and_gpu_slots_get_them_all() {
        let devices: Vec<String> = ["cpu", "libtorch-cpu", "libtorch-cpu", "cuda:1"].iter().map(|d| d.to_string()).collect();
        let slots = slots_on(&devices, 16);
        let got: Vec<(&str, usize)> = slots.iter().map(|s| (s.name.as_str(), s.threads)).collect();
        assert_eq!(got, [("cpu#0", 5), ("libtorch-cpu#0", 5), ("libtorch-cpu#1", 5), ("cuda:1", 16)]);
        // More CPU slots than cores still leaves each one thread.
        let many: Vec<String> = vec!["cpu".into(); 3];
        assert!(slots_on(&many, 2).iter().all(|s| s.threads == 1));
    }
}
