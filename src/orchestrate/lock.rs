//! One runner per run folder: a lock file held with `flock` (released by the kernel when its
//! runner dies, even by `kill -9`), holding the runner's pid and host for `status` and
//! `cancel`. A file left by a runner that is gone is taken over; several runners that find it
//! at once cannot all take it, since only one of them gets the `flock`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// Held open: the `flock` lives as long as this file description (close-on-exec, so
    /// trials do not inherit it).
    _file: File,
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

/// Whether a live pid is a maestro (its command name); true when that cannot be read.
fn is_maestro(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or(true, |c| c.trim() == "maestro")
}

/// The pid and host a lock file names.
fn holder(text: &str) -> (Option<u32>, String) {
    let mut parts = text.split_whitespace();
    (parts.next().and_then(|p| p.parse().ok()), parts.next().unwrap_or("").to_string())
}

impl RunLock {
    /// Take the lock, or say who holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self, String> {
        let path = run_dir.join("runner.lock");
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        // A few tries: the file may be removed by its holder between our open and our flock.
        for _ in 0..5 {
            let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
            let mut text = String::new();
            // SAFETY: flock on a file descriptor this File owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    return Err(io(err));
                }
                let _ = file.read_to_string(&mut text);
                let (pid, _) = holder(&text);
                return Err(format!(
                    "{} is already being run by another maestro{}; wait for it, or stop it first",
                    run_dir.display(),
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                ));
            }
            // Locked; but if the holder removed the file meanwhile, this is a file nobody sees.
            let same = std::fs::metadata(&path).ok().zip(file.metadata().ok()).is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
            if !same {
                continue;
            }
            let _ = file.read_to_string(&mut text);
            match holder(&text) {
                // Another host's runner: its flock may not reach here (NFS), so its word stands.
                (Some(pid), host) if !host.is_empty() && host != hostname() => {
                    return Err(format!(
                        "{} is being run by maestro (pid {pid}) on host {host}; if that runner is gone, delete {}",
                        run_dir.display(),
                        path.display()
                    ));
                }
                // A live maestro this lock file names, which does not hold the flock: a runner
                // of a maestro that locked by the file alone. (A live process of another name
                // took a dead runner's pid.)
                (Some(pid), _) if pid != std::process::id() && alive(pid) && is_maestro(pid) => {
                    return Err(format!(
                        "{} is already being run by another maestro (pid {pid}); wait for it, or stop it first (if pid {pid} is not that runner, delete {})",
                        run_dir.display(),
                        path.display()
                    ));
                }
                (Some(_), _) => eprintln!("taking over a stale lock from a runner that is gone ({})", text.trim()),
                (None, _) => {}
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{} {}", std::process::id(), hostname()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(RunLock { path, _file: file });
        }
        Err(format!("{}: could not take the lock", path.display()))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so no runner takes a file that is about to go.
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
        // Held (flock): refused, whatever the file says.
        assert!(RunLock::acquire(d.path()).unwrap_err().contains("already being run"));
        drop(lock);
        assert!(!d.path().join("runner.lock").exists());
        // A file naming a live process that is not a maestro (pid 1 took a dead runner's pid):
        // taken over.
        std::fs::write(d.path().join("runner.lock"), format!("1 {}\n", hostname())).unwrap();
        assert!(!is_maestro(1));
        drop(RunLock::acquire(d.path()).unwrap());
        // A pid that cannot exist, no flock: taken over.
        std::fs::write(d.path().join("runner.lock"), format!("4194303 {}\n", hostname())).unwrap();
        let again = RunLock::acquire(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join("runner.lock")).unwrap();
        assert_eq!(text, format!("{} {}\n", std::process::id(), hostname()));
        drop(again);
    }

    /// Several runners that find the same stale lock at once: exactly one takes it.
    #[test]
    fn one_of_many_simultaneous_takeovers_wins() {
        for _ in 0..20 {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("runner.lock"), format!("4194303 {}\n", hostname())).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let locks: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, b) = (d.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        RunLock::acquire(&dir).ok()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            assert_eq!(locks.iter().filter(|l| l.is_some()).count(), 1);
        }
    }
}
