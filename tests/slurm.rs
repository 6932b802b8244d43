//! The Slurm executor against a real Slurm (`scripts/slurm-single-node` starts one; CI does).
//! Without Slurm these tests say so and pass, unless MAESTRO_SLURM_TESTS=1 demands it.

mod util;
use std::process::{Child, Stdio};
use std::time::Duration;

use util::*;

fn slurm_up() -> bool {
    let up = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    if !up {
        assert!(std::env::var("MAESTRO_SLURM_TESTS").as_deref() != Ok("1"), "MAESTRO_SLURM_TESTS=1 but no Slurm answers; run scripts/slurm-single-node");
        eprintln!("no Slurm here (start one with scripts/slurm-single-node); skipping");
    }
    up
}

/// The same tiny study with the given execution block.
fn study(dir: &Dir, file: &str, execution: &str) {
    if !dir.join("data").exists() {
        image_tree(&dir.join("data"), 4, 16, 6);
    }
    dir.write(
        file,
        &format!(
            "name: s\ndataset: {{ kind: imagefolder, root: data }}\n\
             proxies:\n  - {{ name: half, fraction: 0.5 }}\n  - {{ name: two, classes: 2 }}\n\
             model: {{ image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 2 }}\n\
             finetune: {{ epochs: 2, warmup_epochs: 1, batch_size: 8, eval_crop_pct: 1.0 }}\n\
             search: {{ llrd: [0.4, 0.6, 0.8, 1.0] }}\n\
             transfer: {{ full_run: true, baseline: true }}\n\
             execution: {execution}\n"
        ),
    );
}

fn count(j: &[serde_json::Value], event: &str) -> usize {
    events(j, event).len()
}

/// Active jobs of this run's study in the queue.
fn active_jobs(run_dir: &std::path::Path) -> usize {
    let j: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let arrays: std::collections::BTreeSet<String> =
        j.iter().filter(|e| e["event"] == "submitted").filter_map(|e| e["job"].as_str()?.split('_').next().map(str::to_string)).collect();
    if arrays.is_empty() {
        return 0;
    }
    let out = std::process::Command::new("squeue").args(["-h", "-r", "-j", &arrays.into_iter().collect::<Vec<_>>().join(",")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// results.csv without its `attempts` column (no field of these tables holds a comma).
fn table_without_attempts(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text.lines().next().unwrap().split(',').position(|h| h == "attempts").expect("an attempts column");
    text.lines().map(|l| l.split(',').enumerate().filter(|(i, _)| *i != at).map(|(_, f)| f).collect::<Vec<_>>().join(",") + "\n").collect()
}

#[test]
fn a_study_through_slurm_equals_the_local_run_and_retries_a_failed_task() {
    if !slurm_up() {
        return;
    }
    let dir = Dir::new();
    study(&dir, "local.yaml", "{ devices: [cpu, cpu] }");
    // The setup lines make one array task fail on its first attempt, as a broken node would.
    let failing = "two__scratch__llrd0.6__blr0.001__r0";
    study(
        &dir,
        "slurm.yaml",
        &format!(
            "{{ executor: slurm, partition: debug, array_parallelism: 2, poll_s: 0.5, max_retries: 1,\n    \
             setup: 'if [ \"$MAESTRO_TRIAL\" = {failing} ] && [ \"$MAESTRO_ATTEMPT\" = 1 ]; then echo injected failure; exit 3; fi' }}"
        ),
    );
    let mut c = dir.maestro();
    c.args(["run", "local.yaml", "--quiet", "--run-dir", "runs/local", "--report-dir", "reports/local"]);
    run(c).success();
    let mut c = dir.maestro();
    c.args(["run", "slurm.yaml", "--run-dir", "runs/slurm", "--report-dir", "reports/slurm"]);
    let r = run(c).success();
    assert!(r.stderr().contains("as Slurm array job"), "{}", r.stderr());

    let j = journal(&dir, "runs/slurm");
    assert_eq!(count(&j, "completed"), 10);
    assert_eq!(count(&j, "submitted"), 11, "ten trials and one retry");
    let failed: Vec<_> = j.iter().filter(|e| e["event"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["trial"], failing);
    assert!(failed[0]["reason"].as_str().unwrap().contains("exited with code 3"), "{failed:?}");
    assert!(std::fs::read_to_string(dir.join("runs/slurm/trials").join(failing).join("log.txt")).unwrap().contains("injected failure"));
    // Same seeds, same threads per trial: the same table whichever executor ran it.
    assert_eq!(table_without_attempts(&dir.join("reports/local/results.csv")), table_without_attempts(&dir.join("reports/slurm/results.csv")));
    assert!(dir.join("reports/slurm/recipe-scratch.yaml").is_file());
}

fn start(dir: &Dir, args: &[&str]) -> Child {
    let mut c = dir.maestro();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().unwrap()
}

#[test]
fn a_killed_runner_reattaches_and_cancel_stops_the_jobs() {
    if !slurm_up() {
        return;
    }
    let dir = Dir::new();
    study(&dir, "s.yaml", "{ executor: slurm, array_parallelism: 1, poll_s: 0.5 }");
    let run_dir = dir.join("runs/s");

    // 1. The runner dies (kill -9) while its jobs run; they go on, and the next runner watches
    //    them instead of submitting them again.
    let mut runner = start(&dir, &["run", "s.yaml", "--quiet"]);
    wait_for("a submission", Duration::from_secs(60), || count(&journal(&dir, "runs/s"), "submitted") > 0);
    runner.kill().unwrap();
    runner.wait().unwrap();
    let before = count(&journal(&dir, "runs/s"), "submitted");
    assert!(active_jobs(&run_dir) > 0, "the jobs outlive their runner");
    // One task at a time: the others wait in the queue, and `status` says so rather than
    // calling them running.
    let mut c = dir.maestro();
    c.args(["status", "runs/s"]);
    run(c).success().stdout_has(" queued ").stdout_has("waits in the queue");
    // The same study run by the local executor would run those tasks a second time, at once.
    study(&dir, "local.yaml", "{ devices: [cpu] }");
    let mut c = dir.maestro();
    c.args(["run", "local.yaml", "--run-dir", "runs/s"]);
    let r = run(c);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("Slurm tasks still in the queue"), "{}", r.stderr());
    assert!(std::fs::read_to_string(run_dir.join("study.yaml")).unwrap().contains("executor: slurm"), "the refused run left the folder's study as it was");
    // A task that ends with no runner to watch it is said to have ended, not to be running.
    wait_for("status to show an ended task", Duration::from_secs(90), || {
        let mut c = dir.maestro();
        c.args(["status", "runs/s"]);
        run(c).stdout().contains("ended (COMPLETED); `maestro run` records its outcome")
    });

    // 2. `maestro cancel` without a runner: scancel from the journal, recorded as interrupted.
    let mut c = dir.maestro();
    c.args(["cancel", "runs/s"]);
    run(c).success().stdout_has("cancelled");
    wait_for("the queue to drain", Duration::from_secs(30), || active_jobs(&run_dir) == 0);
    let j = journal(&dir, "runs/s");
    assert!(count(&j, "interrupted") > 0);

    // 3. Run again, and cancel it through its runner mid-way.
    let mut runner = start(&dir, &["run", "s.yaml", "--quiet"]);
    wait_for("a new submission", Duration::from_secs(60), || count(&journal(&dir, "runs/s"), "submitted") > before);
    let mut c = dir.maestro();
    c.args(["cancel", "runs/s"]);
    run(c).success().stdout_has("the runner");
    assert_eq!(runner.wait().unwrap().code(), Some(130));
    wait_for("the queue to drain", Duration::from_secs(30), || active_jobs(&run_dir) == 0);

    // 4. Kill the runner again after a submission; the next run re-attaches and finishes.
    let mut runner = start(&dir, &["run", "s.yaml", "--quiet"]);
    let n = count(&journal(&dir, "runs/s"), "submitted");
    wait_for("another submission", Duration::from_secs(60), || count(&journal(&dir, "runs/s"), "submitted") > n);
    runner.kill().unwrap();
    runner.wait().unwrap();
    let n = count(&journal(&dir, "runs/s"), "submitted");
    let mut c = dir.maestro();
    c.args(["run", "s.yaml"]);
    let r = run(c).success();
    assert!(r.stderr().contains("re-attached"), "{}", r.stderr());
    let j = journal(&dir, "runs/s");
    assert_eq!(count(&j, "completed"), 10);
    assert_eq!(count(&j, "failed"), 0, "cancelled and re-attached jobs are not failures");
    // The re-attached trials were not submitted again: only the rest of that round was.
    let resubmitted = count(&j, "submitted") - n;
    assert!(resubmitted < 10, "{resubmitted} submissions after re-attaching");
}

#[test]
fn a_rejected_submission_is_a_clear_error() {
    if !slurm_up() {
        return;
    }
    let dir = Dir::new();
    study(&dir, "s.yaml", "{ executor: slurm, partition: no-such-partition }");
    let mut c = dir.maestro();
    c.args(["run", "s.yaml", "--quiet"]);
    let r = run(c);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("Slurm refused the submission") && r.stderr().contains("invalid partition"), "{}", r.stderr());
    // Nothing was recorded as submitted or failed: the study is intact for a corrected run.
    let j = journal(&dir, "runs/s");
    assert_eq!((count(&j, "submitted"), count(&j, "failed")), (0, 0));
    // The runner's stop is recorded, with why.
    assert_eq!((count(&j, "runner_started"), count(&j, "runner_stopped")), (1, 1));
    assert!(events(&j, "runner_stopped")[0]["reason"].as_str().unwrap().starts_with("error: "), "{j:?}");
}

#[test]
fn without_sbatch_on_path_the_error_says_so() {
    let dir = Dir::new();
    study(&dir, "s.yaml", "{ executor: slurm }");
    let mut c = dir.maestro();
    c.args(["run", "s.yaml", "--quiet"]).env("PATH", dir.path());
    run(c).code_is(2).stderr_has("`sbatch` is not on PATH");
    // Refused before it started: no runner is recorded as started (and never stopped).
    assert_eq!(count(&journal(&dir, "runs/s"), "runner_started"), 0);
}

#[test]
fn cancel_refuses_a_runner_on_another_host() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.join("runs/s")).unwrap();
    dir.write("runs/s/journal.jsonl", "");
    dir.write("runs/s/runner.lock", "4242 some-other-host\n");
    let mut c = dir.maestro();
    c.args(["cancel", "runs/s"]);
    run(c).code_is(2).stderr_has("on host some-other-host; run `maestro cancel` there");
}
