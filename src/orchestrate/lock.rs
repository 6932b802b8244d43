//! One runner per run folder: a lock file created exclusively, holding the runner's pid and
//! host. A lock whose process is gone (a runner killed with -9) is stale and is taken over.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Whether a process with this pid exists on this machine.
pub fn alive(pid: u32) -> bool {
    // Signal 0 checks existence and permission without sending anything.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl RunLock {
    /// Take the lock, or say who holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self, String> {
        let path = run_dir.join("runner.lock");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{} {}", std::process::id(), hostname());
                    let _ = f.sync_all();
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut parts = text.split_whitespace();
                    let pid: Option<u32> = parts.next().and_then(|p| p.parse().ok());
                    let host = parts.next().unwrap_or("").to_string();
                    match pid {
                        Some(pid) if host != hostname() && !host.is_empty() => {
                            return Err(format!(
                                "{} is being run by maestro (pid {pid}) on host {host}; if that runner is gone, delete {}",
                                run_dir.display(),
                                path.display()
                            ));
                        }
                        Some(pid) if alive(pid) && pid != std::process::id() => {
                            return Err(format!(
                                "{} is already being run by another maestro (pid {pid}); wait for it, or stop it first",
                                run_dir.display()
                            ));
                        }
                        _ => {
                            // The holder is dead: a stale lock from a killed runner.
                            eprintln!("taking over a stale lock from a runner that is gone ({})", text.trim());
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Err(format!("{}: could not take the lock", path.display()))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_a_dead_holder_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(d.path()).unwrap();
        // Same process holding it counts as ours; simulate another live process with pid 1.
        std::fs::write(d.path().join("runner.lock"), format!("1 {}\n", hostname())).unwrap();
        assert!(RunLock::acquire(d.path()).unwrap_err().contains("already being run"));
        // A pid that cannot exist.
        std::fs::write(d.path().join("runner.lock"), format!("4194303 {}\n", hostname())).unwrap();
        let again = RunLock::acquire(d.path()).unwrap();
        drop(again);
        drop(lock);
    }
}
