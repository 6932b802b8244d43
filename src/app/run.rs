//! `maestro run`, `maestro status`, `maestro report`.

// A listing that cannot be written (stdout on a full disk) must not turn a finished run into
// a crash: the run folder and the report are what it made.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::orchestrate::run::{self, RunOptions};
use crate::study::LoadedStudy;

pub fn run_study(study: &Path, run_dir: Option<PathBuf>, report_dir: Option<PathBuf>, quiet: bool) -> Result<(), Error> {
    let loaded = LoadedStudy::load(study)?;
    loaded.check_runnable()?;
    let name = loaded.study.name.clone();
    let opts = RunOptions {
        run_dir: run_dir.unwrap_or_else(|| PathBuf::from("runs").join(&name)),
        report_dir: report_dir.unwrap_or_else(|| PathBuf::from("reports").join(&name)),
        quiet,
        heartbeat_s: 30,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Failed(e.to_string()))?;
    let outcome = rt.block_on(run::run(&loaded, &opts)).map_err(Error::Usage)?;
    let _ = writeln!(std::io::stdout(), "report: {}", opts.report_dir.display());
    for f in &outcome.report {
        let _ = writeln!(std::io::stdout(), "  {}", f.display());
    }
    if outcome.interrupted {
        return Err(Error::Interrupted(format!("stopped; run `maestro run {}` again to resume", study.display())));
    }
    if !outcome.unrecommended.is_empty() {
        return Err(Error::Failed(format!(
            "no recommendation for setup(s) {}: none of their search trials completed (each diverged or failed; see {}/trials/<id>/log.txt){}",
            outcome.unrecommended.join(", "),
            opts.run_dir.display(),
            if outcome.failed.is_empty() { String::new() } else { format!("; {} trial(s) failed after their retries: {}", outcome.failed.len(), outcome.failed.join(", ")) }
        )));
    }
    if !outcome.failed.is_empty() {
        return Err(Error::Failed(format!(
            "{} trial(s) failed after their retries: {} (logs under {}/trials/<id>/log.txt); once fixed, raise execution.max_retries in the study and run it again to give them more attempts",
            outcome.failed.len(),
            outcome.failed.join(", "),
            opts.run_dir.display()
        )));
    }
    Ok(())
}

pub fn status(run_dir: &Path) -> Result<(), Error> {
    print!("{}", crate::orchestrate::status::render(run_dir).map_err(Error::Usage)?);
    Ok(())
}

pub fn cancel(run_dir: &Path) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Failed(e.to_string()))?;
    let msg = rt.block_on(crate::orchestrate::slurm::cancel(run_dir)).map_err(Error::Usage)?;
    let _ = writeln!(std::io::stdout(), "{msg}");
    Ok(())
}

pub fn report(run_dir: &Path, out: Option<PathBuf>) -> Result<(), Error> {
    let out = match out {
        Some(o) => o,
        None => {
            let v = crate::report::view(run_dir).map_err(Error::Usage)?;
            PathBuf::from("reports").join(&v.study.study.name)
        }
    };
    for f in crate::report::write(run_dir, &out).map_err(Error::Usage)? {
        let _ = writeln!(std::io::stdout(), "{}", f.display());
    }
    Ok(())
}
