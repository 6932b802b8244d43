//! `maestro run` end to end on tiny generated data: the report, resuming after kill -9 of the
//! runner, a killed trial retried, a diverged trial recorded, a second runner refused, and
//! external command trials.

mod util;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use util::*;

fn study(dir: &Dir, name: &str, extra: &str) {
    if !dir.join("data").exists() {
        image_tree(&dir.join("data"), 4, 16, 6);
    }
    dir.write(
        &format!("{name}.yaml"),
        &format!(
            "name: {name}\ndataset: {{ kind: imagefolder, root: data }}\n\
             proxies:\n  - {{ name: half, fraction: 0.5 }}\n  - {{ name: two, classes: 2 }}\n\
             model: {{ image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 2 }}\n\
             finetune: {{ epochs: 2, warmup_epochs: 1, batch_size: 8, eval_crop_pct: 1.0 }}\n\
             search: {{ llrd: [0.4, 0.6, 0.8, 1.0] }}\n\
             transfer: {{ full_run: true, baseline: true }}\n\
             execution: {{ devices: [cpu, cpu], max_retries: 2 }}\n{extra}"
        ),
    );
}

fn start(dir: &Dir, args: &[&str]) -> Child {
    let mut c = dir.maestro();
    c.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    c.spawn().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn runs_a_study_to_its_report() {
    let dir = Dir::new();
    study(&dir, "s", "");
    let mut c = dir.maestro();
    c.args(["run", "s.yaml", "--quiet"]);
    run(c).success().stdout_has("reports/s");
    for f in ["llrd_curve.png", "llrd_curve.svg", "results.csv", "results.parquet", "recipe-scratch.yaml", "summary.md"] {
        assert!(dir.join("reports/s").join(f).is_file(), "{f} missing");
    }
    let csv = read(&dir.join("reports/s/results.csv"));
    assert_eq!(csv.lines().count(), 1 + 8 + 2, "{csv}");
    assert_eq!(csv.matches(",completed,").count(), 10, "{csv}");
    let recipe = read(&dir.join("reports/s/recipe-scratch.yaml"));
    for key in ["layer_decay:", "interval_95:", "near_optimal:", "full_run:", "baseline:", "pytorch_command:", "main_finetune.py"] {
        assert!(recipe.contains(key), "recipe lacks {key}:\n{recipe}");
    }
    // The main_finetune.py command runs as pasted: notes only on lines of their own, no
    // checkpoint for a setup trained from scratch, the class count filled in, and a value
    // for --aa that timm accepts.
    let recipe_yaml: serde_yaml::Value = serde_yaml::from_str(&recipe).unwrap();
    let command = recipe_yaml["pytorch_command"].as_str().unwrap();
    assert!(command.lines().all(|l| l.trim_start().starts_with('#') || !l.contains('#')), "{command}");
    assert!(!command.contains("--finetune") && command.contains("--nb_classes 4") && command.contains("--model CUSTOM_VIT"), "{command}");
    assert!(command.contains("--seed 0") && !command.contains("--aa none"), "{command}");
    let j = journal(&dir, "runs/s");
    assert_eq!(events(&j, "completed").len(), 10);
    assert_eq!(events(&j, "running").len(), 10, "each trial ran once");
    // The report can be made again from the run folder alone.
    let mut c = dir.maestro();
    c.args(["report", "runs/s", "--out", "again"]);
    run(c).success();
    assert_eq!(read(&dir.join("again/results.csv")), csv);
    let mut c = dir.maestro();
    c.args(["status", "runs/s"]);
    run(c).success().stdout_has("10/10 done");
}

#[test]
fn a_killed_runner_resumes_without_rerunning_completed_trials_and_ends_the_same() {
    let dir = Dir::new();
    study(&dir, "k", "");
    let mut c = dir.maestro();
    c.args(["run", "k.yaml", "--quiet", "--run-dir", "straight", "--report-dir", "rep-straight"]);
    run(c).success();

    let mut child = start(&dir, &["run", "k.yaml", "--quiet", "--run-dir", "killed", "--report-dir", "rep-killed"]);
    wait_for("two completed trials", Duration::from_secs(300), || events(&journal(&dir, "killed"), "completed").len() >= 2);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before: Vec<String> = events(&journal(&dir, "killed"), "completed").iter().map(|e| e["trial"].as_str().unwrap().to_string()).collect();
    assert!(before.len() < 10, "the run finished before it was killed");
    // The trials it left running died with it, and status says so.
    let mut c = dir.maestro();
    c.args(["status", "killed"]);
    let r = run(c).success();
    if events(&journal(&dir, "killed"), "running").len() > events(&journal(&dir, "killed"), "completed").len() {
        assert!(r.stdout().contains("its runner is gone"), "{}", r.stdout());
    }

    let mut c = dir.maestro();
    c.args(["run", "k.yaml", "--quiet", "--run-dir", "killed", "--report-dir", "rep-killed"]);
    run(c).success();
    let j = journal(&dir, "killed");
    for id in &before {
        let runs = j.iter().filter(|e| e["event"] == "running" && e["trial"] == id.as_str()).count();
        assert_eq!(runs, 1, "{id} completed before the kill and must not run again");
    }
    assert_eq!(read(&dir.join("rep-killed/results.csv")).replace(",2\n", ",1\n"), read(&dir.join("rep-straight/results.csv")).replace(",2\n", ",1\n"));
    let strip = |t: String| t.lines().filter(|l| !l.contains("attempts")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(read(&dir.join("rep-killed/recipe-scratch.yaml"))), strip(read(&dir.join("rep-straight/recipe-scratch.yaml"))));
}

#[test]
fn a_killed_trial_is_retried_and_a_second_runner_is_refused() {
    let dir = Dir::new();
    study(&dir, "t", "");
    let mut child = start(&dir, &["run", "t.yaml", "--quiet"]);
    wait_for("a running trial", Duration::from_secs(120), || !events(&journal(&dir, "runs/t"), "running").is_empty());

    // A second runner on the same folder is refused while the first lives.
    let mut c = dir.maestro();
    c.args(["run", "t.yaml", "--quiet"]);
    run(c).code_is(2).stderr_has("already being run by another maestro");

    let j = journal(&dir, "runs/t");
    let first = events(&j, "running")[0].clone();
    let (id, pid) = (first["trial"].as_str().unwrap().to_string(), first["pid"].as_u64().unwrap());
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the run should recover from a killed trial");
    let j = journal(&dir, "runs/t");
    let mine: Vec<&str> = j.iter().filter(|e| e["trial"] == id.as_str()).map(|e| e["event"].as_str().unwrap()).collect();
    assert!(mine.contains(&"failed") && mine.last() == Some(&"completed"), "{id}: {mine:?}");
}

#[test]
fn a_diverged_trial_is_recorded_and_the_fit_goes_on() {
    let dir = Dir::new();
    study(&dir, "d", "search_blr: true\n");
    // A second learning rate so large that its trials diverge.
    let text = read(&dir.join("d.yaml")).replace("search: { llrd: [0.4, 0.6, 0.8, 1.0] }", "search: { llrd: [0.4, 0.6, 0.8, 1.0], blr: [1.0e-3, 1.0e+12] }").replace("search_blr: true\n", "finetune: { epochs: 2, warmup_epochs: 0, batch_size: 8, eval_crop_pct: 1.0 }\n");
    let text = text.replacen("finetune: { epochs: 2, warmup_epochs: 1, batch_size: 8, eval_crop_pct: 1.0 }\n", "", 1);
    dir.write("d.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "d.yaml", "--quiet"]);
    run(c).success();
    let csv = read(&dir.join("reports/d/results.csv"));
    assert!(csv.matches(",diverged,").count() >= 4, "{csv}");
    let recipe = read(&dir.join("reports/d/recipe-scratch.yaml"));
    assert!(recipe.contains("blr: 0.001"), "{recipe}");
    assert!(dir.join("reports/d/lr_llrd.png").is_file());
}

/// When every search trial diverges there is nothing to recommend: the run says so and fails
/// (exit 1), the baseline (which needs no search) still runs, and the summary draws no curve.
#[test]
fn a_search_where_every_trial_diverges_fails_and_still_runs_the_baseline() {
    let dir = Dir::new();
    study(&dir, "x", "");
    let text = read(&dir.join("x.yaml"))
        .replace("finetune: { epochs: 2, warmup_epochs: 1,", "finetune: { blr: 1.0e+12, epochs: 1, warmup_epochs: 0,")
        .replace("llrd: [0.4, 0.6, 0.8, 1.0]", "llrd: [0.6, 0.8]")
        .replace("  - { name: two, classes: 2 }\n", "");
    dir.write("x.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "x.yaml", "--quiet"]);
    run(c).code_is(1).stderr_has("no recommendation for setup(s) scratch: none of their search trials completed");
    let j = journal(&dir, "runs/x");
    assert_eq!(events(&j, "diverged").len(), 2, "the search");
    let completed = events(&j, "completed");
    assert!(completed.len() == 1 && completed[0]["trial"].as_str().unwrap().starts_with("baseline__"), "the baseline ran: {completed:?}");
    let summary = read(&dir.join("reports/x/summary.md"));
    assert!(!summary.contains("llrd_curve.png") && !dir.join("reports/x/llrd_curve.png").exists(), "{summary}");
}

#[test]
fn external_command_trials_are_scheduled_fitted_and_reported() {
    let dir = Dir::new();
    let script = util::fixture("fake_main_finetune.py");
    study(
        &dir,
        "e",
        &format!(
            "trial:\n  kind: command\n  command: \"python3 {} --layer_decay {{llrd}} --blr {{blr}} --epochs 3 --data_path {{data}} --output_dir {{out}}/mae\"\n  metric: {{ file: \"{{out}}/mae/log.txt\", jsonl_key: test_acc1, mode: max }}\n",
            script.display()
        ),
    );
    let text = read(&dir.join("e.yaml")).replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: false }").replace("[0.4, 0.6, 0.8, 1.0]", "[0.6, 0.7, 0.75, 0.8, 0.85, 0.9]");
    dir.write("e.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "e.yaml", "--quiet"]);
    run(c).success();
    let recipe = read(&dir.join("reports/e/recipe-scratch.yaml"));
    // The fake script peaks at 0.8 exactly.
    let line = recipe.lines().find(|l| l.trim_start().starts_with("layer_decay:")).unwrap();
    let v: f64 = line.split(':').nth(1).unwrap().trim().parse().unwrap();
    assert!((v - 0.8).abs() < 0.01, "{recipe}");
    assert_eq!(events(&journal(&dir, "runs/e"), "completed").len(), 12);
}

/// A study of one external-command trial (one proxy, LLRD 0.6, no transfer) whose metric is
/// `acc`; `retries` stands for the default `max_retries: 2` (a timeout may join it).
fn one_command_trial(dir: &Dir, name: &str, command: &str, metric_file: &str, retries: &str) {
    study(dir, name, &format!("trial:\n  kind: command\n  command: \"{command}\"\n  metric: {{ file: \"{metric_file}\", jsonl_key: acc }}\n"));
    let text = read(&dir.join(&format!("{name}.yaml")))
        .replace("llrd: [0.4, 0.6, 0.8, 1.0]", "llrd: [0.6]")
        .replace("  - { name: two, classes: 2 }\n", "")
        .replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: false, baseline: false }")
        .replace("max_retries: 2", retries);
    dir.write(&format!("{name}.yaml"), &text);
}

/// A study of command trials whose fake training peaks at LLRD 0.8.
fn command_study(dir: &Dir, name: &str, grid: &str, extra: &str) {
    let script = util::fixture("fake_main_finetune.py");
    study(
        dir,
        name,
        &format!(
            "trial:\n  kind: command\n  command: \"python3 {} --layer_decay {{llrd}} --blr {{blr}} --epochs 3 --output_dir {{out}}/mae\"\n  metric: {{ file: \"{{out}}/mae/log.txt\", jsonl_key: test_acc1, mode: max }}\n{extra}",
            script.display()
        ),
    );
    let text = read(&dir.join(&format!("{name}.yaml")))
        .replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: false }")
        .replace("search: { llrd: [0.4, 0.6, 0.8, 1.0] }", &format!("search: {{ llrd: {grid}, refine: true }}"));
    dir.write(&format!("{name}.yaml"), &text);
}

#[test]
fn refine_extends_a_grid_whose_optimum_is_at_the_edge() {
    let dir = Dir::new();
    command_study(&dir, "r", "[0.5, 0.6, 0.7]", "");
    let mut c = dir.maestro();
    c.args(["run", "r.yaml", "--quiet"]);
    run(c).success();
    let csv = read(&dir.join("reports/r/results.csv"));
    assert!(csv.contains(",0.8,") && csv.contains(",0.9,"), "the grid was not extended:\n{csv}");
    let recipe = read(&dir.join("reports/r/recipe-scratch.yaml"));
    let line = recipe.lines().find(|l| l.trim_start().starts_with("layer_decay:")).unwrap();
    let v: f64 = line.split(':').nth(1).unwrap().trim().parse().unwrap();
    assert!((v - 0.8).abs() < 0.02, "{recipe}");
    // Running the finished run again refines nothing more: the refinement follows from the
    // study's own grid, whose results have not changed.
    let ran = events(&journal(&dir, "runs/r"), "running").len();
    let mut c = dir.maestro();
    c.args(["run", "r.yaml", "--quiet"]);
    run(c).success();
    assert_eq!(events(&journal(&dir, "runs/r"), "running").len(), ran, "a finished run ran trials again");
    assert_eq!(read(&dir.join("reports/r/recipe-scratch.yaml")), recipe);
}

#[test]
fn several_setups_get_a_recipe_each_and_the_optimum_figure() {
    let dir = Dir::new();
    dir.write("a.pth", "");
    dir.write("b.pth", "");
    command_study(&dir, "p", "[0.6, 0.7, 0.8, 0.9]", "pretrain_setups:\n  - { name: ep100, checkpoint: a.pth }\n  - { name: ep200, checkpoint: b.pth }\n");
    let text = read(&dir.join("p.yaml")).replace("refine: true", "refine: false");
    dir.write("p.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "p.yaml", "--quiet"]);
    run(c).success();
    for f in ["recipe-ep100.yaml", "recipe-ep200.yaml", "optimum_vs_pretrain.png"] {
        assert!(dir.join("reports/p").join(f).is_file(), "{f} missing");
    }
}

#[test]
fn ctrl_c_stops_cleanly_and_the_next_run_finishes() {
    // SIGTERM (kill, systemd, Slurm's scancel and time limit) stops a run as Ctrl-C does. A
    // signal sent twice at once (`timeout -s INT` signals the process, then its group) is one
    // request, not the second Ctrl-C that quits without waiting for the trials.
    for (name, signal, times) in [("c", libc::SIGINT, 1), ("t", libc::SIGTERM, 1), ("d", libc::SIGINT, 2)] {
        let dir = Dir::new();
        study(&dir, name, "");
        let runs = format!("runs/{name}");
        let mut child = start(&dir, &["run", &format!("{name}.yaml"), "--quiet"]);
        wait_for("a running trial", Duration::from_secs(120), || !events(&journal(&dir, &runs), "running").is_empty());
        for i in 0..times {
            if i > 0 {
                // The group's copy follows the first by about this much.
                std::thread::sleep(Duration::from_millis(20));
            }
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "signal {signal}: the run stops with 130");
        let j = journal(&dir, &runs);
        assert_eq!(events(&j, "runner_stopped").len(), 1, "signal {signal} x{times}: the runner journals its stop");
        assert!(!events(&j, "interrupted").is_empty() || events(&j, "completed").len() == 10, "running trials are marked interrupted");
        assert!(!dir.join(&runs).join("runner.lock").exists(), "the lock is released");
        let mut c = dir.maestro();
        c.args(["run", &format!("{name}.yaml"), "--quiet"]);
        run(c).success();
        assert_eq!(events(&journal(&dir, &runs), "completed").len(), 10);
    }
}

#[test]
fn a_pretraining_stage_runs_once_and_its_setup_searches_from_it() {
    let dir = Dir::new();
    study(
        &dir,
        "m",
        "pretrain_setups:\n  - { name: scratch }\n  - name: mae1\n    pretrain: { epochs: 1, warmup_epochs: 0, batch_size: 8, decoder_embed_dim: 16, decoder_num_heads: 2, mask_ratio: 0.75 }\n",
    );
    let text = read(&dir.join("m.yaml")).replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: true, baseline: false }");
    dir.write("m.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "m.yaml", "--quiet"]);
    run(c).success();
    let j = journal(&dir, "runs/m");
    let stage: Vec<&serde_json::Value> = events(&j, "completed").into_iter().filter(|e| e["trial"].as_str().unwrap().starts_with("pretrain__mae1__")).collect();
    assert_eq!(stage.len(), 1, "the stage ran once");
    let id = stage[0]["trial"].as_str().unwrap();
    assert!(dir.join("runs/m/trials").join(id).join("mae.safetensors").is_file());
    // The mae1 setup's trials start from the stage's model.
    let spec = read(&dir.join("runs/m/trials/half__mae1__llrd0.6__blr0.001__r0/spec.json"));
    assert!(spec.contains(&format!("{id}/mae.safetensors")), "{spec}");
    for f in ["recipe-scratch.yaml", "recipe-mae1.yaml", "optimum_vs_pretrain.png", "pretrain-mae1-loss.png", "reconstruction-mae1.png"] {
        assert!(dir.join("reports/m").join(f).is_file(), "{f} missing");
    }
    assert!(read(&dir.join("reports/m/summary.md")).contains("## Pre-training"));
    // Running again reuses everything.
    let mut c = dir.maestro();
    c.args(["run", "m.yaml", "--quiet"]);
    run(c).success();
    assert_eq!(events(&journal(&dir, "runs/m"), "running").len(), events(&j, "running").len());
}

#[test]
fn a_sample_efficiency_study_pretrains_each_fraction_at_equal_compute() {
    let dir = Dir::new();
    study(
        &dir,
        "e",
        "pretrain_setups: []\nsample_efficiency:\n  fractions: [0.5, 1.0]\n  \
         pretrain: { epochs: 1, warmup_epochs: 0.5, batch_size: 8, decoder_embed_dim: 16, decoder_num_heads: 2, mask_ratio: 0.75 }\n",
    );
    let text = read(&dir.join("e.yaml"))
        .replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: true, baseline: false }")
        .replace("search: { llrd: [0.4, 0.6, 0.8, 1.0] }", "search: { llrd: [0.6, 1.0] }");
    dir.write("e.yaml", &text);
    let mut c = dir.maestro();
    c.args(["validate", "e.yaml"]);
    run(c).success().stdout_has("data-50pct");
    let mut c = dir.maestro();
    c.args(["run", "e.yaml", "--quiet"]);
    run(c).success();
    // Half the data for twice the epochs: the same number of optimizer steps.
    let mut stages = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir.join("runs/e/trials")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("pretrain__") {
            let r: serde_json::Value = serde_json::from_str(&read(&dir.join("runs/e/trials").join(&name).join("result.json"))).unwrap();
            let setup = rest.split("__").next().unwrap().to_string();
            stages.insert(setup, (r["train_images"].as_u64().unwrap(), r["steps"].as_u64().unwrap(), r["epoch_loss"].as_array().unwrap().len()));
        }
    }
    assert_eq!(stages.len(), 2, "{stages:?}");
    let (half, whole) = (stages["data-50pct"], stages["data-100pct"]);
    assert_eq!(half.0 * 2, whole.0, "{stages:?}");
    assert_eq!((half.2, whole.2), (2, 1), "epochs scale with 1 / fraction");
    assert_eq!(half.1, whole.1, "equal compute: {stages:?}");
    let summary = read(&dir.join("reports/e/summary.md"));
    assert!(summary.contains("## Sample efficiency") && summary.contains("| 0.5 | data-50pct | 2 |"), "{summary}");
    for f in ["sample_efficiency.png", "recipe-data-50pct.yaml", "recipe-data-100pct.yaml", "reconstruction-data-50pct.png"] {
        assert!(dir.join("reports/e").join(f).is_file(), "{f} missing");
    }
}

#[test]
fn a_finished_trial_its_runner_did_not_record_is_not_run_again() {
    let dir = Dir::new();
    study(&dir, "u", "");
    let mut c = dir.maestro();
    c.args(["run", "u.yaml", "--quiet"]);
    run(c).success();
    // As if the runner died between the trial's result and its journal line.
    let trial = "half__scratch__llrd0.6__blr0.001__r0";
    let path = dir.join("runs/u/journal.jsonl");
    let kept: String = read(&path)
        .lines()
        .filter(|l| !(l.contains("\"event\":\"completed\"") && l.contains(trial)) && !l.contains("\"event\":\"runner_stopped\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).unwrap();
    let before = events(&journal(&dir, "runs/u"), "running").len();
    let mut c = dir.maestro();
    c.args(["run", "u.yaml", "--quiet"]);
    run(c).success();
    let j = journal(&dir, "runs/u");
    assert_eq!(events(&j, "running").len(), before, "nothing ran again");
    assert_eq!(events(&j, "completed").len(), 10);
    assert!(events(&j, "completed").iter().any(|e| e["trial"] == trial));
}

/// A run folder is resumed from another working directory (trial specs name its files by
/// absolute path), after a crash tore the journal's last line (the next runner appends after
/// it, not onto it), and a refused edit of the study leaves the folder's copy as it was.
#[test]
fn a_run_folder_resumes_from_anywhere_after_a_torn_journal_and_a_refused_edit() {
    let dir = Dir::new();
    study(&dir, "w", "");
    let mut c = dir.maestro();
    c.args(["run", "w.yaml", "--quiet"]);
    run(c).success();
    let ran = events(&journal(&dir, "runs/w"), "running").len();

    std::fs::create_dir(dir.join("elsewhere")).unwrap();
    let mut c = dir.maestro();
    c.current_dir(dir.join("elsewhere")).args(["run", "../w.yaml", "--quiet", "--run-dir", "../runs/w", "--report-dir", "../reports/w"]);
    run(c).success();
    let mut c = dir.maestro();
    c.current_dir(dir.join("elsewhere")).args(["trial", "../runs/w/trials/half__scratch__llrd0.6__blr0.001__r0/spec.json", "--quiet"]);
    run(c).success();

    let path = dir.join("runs/w/journal.jsonl");
    let text = read(&path);
    std::fs::write(&path, &text[..text.len() - 15]).unwrap(); // killed mid-write
    let mut c = dir.maestro();
    c.args(["run", "w.yaml", "--quiet"]);
    run(c).success();
    let j = journal(&dir, "runs/w");
    assert_eq!(events(&j, "running").len(), ran, "nothing ran again");
    assert_eq!(events(&j, "completed").len(), 10);

    let study_copy = read(&dir.join("runs/w/study.yaml"));
    dir.write("w-edited.yaml", &read(&dir.join("w.yaml")).replace("warmup_epochs: 1", "warmup_epochs: 0.5"));
    let mut c = dir.maestro();
    c.args(["run", "w-edited.yaml", "--quiet", "--run-dir", "runs/w"]);
    run(c).code_is(2).stderr_has("the study changed since the run started");
    assert_eq!(read(&dir.join("runs/w/study.yaml")), study_copy, "the refused study was not recorded as the run's");

    // A completed trial whose result file was damaged keeps its journalled top-1 in the report.
    let trial = "half__scratch__llrd0.6__blr0.001__r0";
    let result = dir.join("runs/w/trials").join(trial).join("result.json");
    std::fs::write(&result, &read(&result)[..100]).unwrap();
    let mut c = dir.maestro();
    c.args(["report", "runs/w", "--out", "damaged"]);
    run(c).success().stderr_has("taking the trial's top-1 from the journal");
    let row = read(&dir.join("damaged/results.csv")).lines().find(|l| l.starts_with(trial)).unwrap().to_string();
    assert!(row.contains(",completed,") && !row.contains(",completed,,"), "{row}");
}

/// Images a trial could not read reach the run's output and summary, not only the trial's log.
#[test]
fn unreadable_images_are_reported_by_the_run() {
    let dir = Dir::new();
    study(&dir, "g", "");
    let text = read(&dir.join("g.yaml")).replace("llrd: [0.4, 0.6, 0.8, 1.0]", "llrd: [0.6, 0.8]").replace("  - { name: two, classes: 2 }\n", "");
    dir.write("g.yaml", &text.replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: false, baseline: false }"));
    dir.write("data/train/class_000/img_9999.png", "not an image");
    let mut c = dir.maestro();
    c.args(["run", "g.yaml", "--quiet"]);
    run(c).success().stderr_has("unreadable images were skipped over the run's trials");
    let summary = read(&dir.join("reports/g/summary.md"));
    assert!(summary.contains("**Unreadable images:**"), "{summary}");
    assert!(read(&dir.join("reports/g/results.csv")).lines().next().unwrap().ends_with(",unreadable_images"));
}

/// A study edited to search another LR resumes into the same folder: the new trials run, the
/// earlier LR's stay in results.csv but out of the fits, and the summary's full run is the new
/// recommendation's. An edit of the recipe itself changes every trial already run: refused.
#[test]
fn an_edited_grid_resumes_and_fits_only_what_the_study_now_plans() {
    let dir = Dir::new();
    study(&dir, "e", "");
    let text = read(&dir.join("e.yaml")).replace("  - { name: two, classes: 2 }\n", "").replace("transfer: { full_run: true, baseline: true }", "transfer: { full_run: true, baseline: false }");
    dir.write("e.yaml", &text);
    let mut c = dir.maestro();
    c.args(["run", "e.yaml", "--quiet"]);
    run(c).success();
    dir.write("e.yaml", &text.replace("search: { llrd: [0.4, 0.6, 0.8, 1.0] }", "search: { llrd: [0.4, 0.6, 0.8, 1.0], blr: [2.0e-3] }"));
    let mut c = dir.maestro();
    c.args(["run", "e.yaml", "--quiet"]);
    run(c).success();
    let csv = read(&dir.join("reports/e/results.csv"));
    assert_eq!(csv.lines().filter(|l| l.contains(",search,")).count(), 8, "{csv}");
    let recipe = read(&dir.join("reports/e/recipe-scratch.yaml"));
    assert!(recipe.contains("blr: 0.002"), "{recipe}");
    let summary = read(&dir.join("reports/e/summary.md"));
    assert!(summary.contains("4 search trial(s) in this run folder are not in the study as it now reads"), "{summary}");
    let full = csv.lines().filter(|l| l.contains(",full,")).count();
    assert_eq!(full, 2, "one full run per recommendation: {csv}");

    dir.write("e.yaml", &text.replace("warmup_epochs: 1", "warmup_epochs: 0"));
    let mut c = dir.maestro();
    c.args(["run", "e.yaml", "--quiet"]);
    run(c).code_is(2).stderr_has("the study changed since the run started");
}

/// A run folder holds maestro's files only: a folder with others, or the report's own, is not
/// written into.
#[test]
fn a_folder_of_other_files_is_not_taken_for_a_run_folder() {
    let dir = Dir::new();
    study(&dir, "f", "");
    dir.write("mine/notes.txt", "my notes");
    let mut c = dir.maestro();
    c.args(["run", "f.yaml", "--run-dir", "mine"]);
    run(c).code_is(2).stderr_has("--run-dir mine: holds files that are not a maestro run's (notes.txt)");
    let mut c = dir.maestro();
    c.args(["run", "f.yaml", "--run-dir", "r", "--report-dir", "r"]);
    run(c).code_is(2).stderr_has("--report-dir r: is the run folder");
    assert!(!dir.join("mine/journal.jsonl").exists());
    // A refused run leaves no empty folder of its making behind.
    assert!(!dir.join("r").exists(), "the refused run left its folder");
    let mut c = dir.maestro();
    c.args(["run", "f.yaml", "--run-dir", "r", "--report-dir", "r/trials"]);
    run(c).code_is(2).stderr_has("would write into the run folder's own `trials`");
    assert!(!dir.join("r").exists());
}

/// The report may live inside its run folder: the run, and a resume of it, write it there.
#[test]
fn a_report_inside_the_run_folder_is_the_run_s_own() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 2, 8, 2);
    dir.write(
        "i.yaml",
        "name: i\ndataset: { kind: imagefolder, root: data }\n\
         model: { image_size: 16, patch_size: 8, in_chans: 3, embed_dim: 16, depth: 1, num_heads: 2 }\n\
         finetune: { epochs: 1, warmup_epochs: 0, batch_size: 4, eval_crop_pct: 1.0 }\n\
         search: { llrd: [0.8] }\ntransfer: { full_run: true, baseline: false }\n",
    );
    for _ in 0..2 {
        let mut c = dir.maestro();
        c.args(["run", "i.yaml", "--quiet", "--run-dir", "runs/i", "--report-dir", "runs/i/report"]);
        run(c).success();
        assert!(dir.join("runs/i/report/summary.md").is_file());
    }
}

/// An external command ends with its trial: a timed-out trial takes the processes its command
/// started with it, instead of leaving them to write into a trial already recorded as failed.
#[test]
fn a_timed_out_command_trial_leaves_no_process_behind() {
    let dir = Dir::new();
    one_command_trial(&dir, "z", "sh -c 'sleep 59.7311; echo done' && echo {llrd}", "{out}/m.txt", "max_retries: 0, trial_timeout_s: 1");
    let mut c = dir.maestro();
    c.args(["run", "z.yaml", "--quiet"]);
    run(c).code_is(1);
    let failed = events(&journal(&dir, "runs/z"), "failed").iter().map(|e| e["reason"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(failed.len() == 1 && failed[0].contains("timed out after 1 s"), "{failed:?}");
    // The command's sleep, found by its unusual argument.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|p| std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("59.7311")))
        .map(|p| p.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "the command's processes are still alive: {left:?}");
}

/// When the runner was killed outright, its trials die with it but a command they started does
/// not: the next runner finds the trial stale and ends what it left.
#[test]
fn a_killed_runners_command_is_ended_by_the_next_runner() {
    let dir = Dir::new();
    one_command_trial(&dir, "y", "sh -c 'sleep 59.7312; echo done' && echo {llrd}", "{out}/m.txt", "max_retries: 2");
    let sleeping = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|p| std::fs::read(p.path().join("cmdline")).is_ok_and(|c| c.starts_with(b"sleep\x0059.7312")))
            .filter_map(|p| p.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect()
    };
    let mut first = start(&dir, &["run", "y.yaml", "--quiet"]);
    wait_for("the command's sleep", Duration::from_secs(60), || !sleeping().is_empty());
    let orphan = sleeping();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sleeping(), orphan, "the command outlived its killed runner (what the next runner must end)");
    let mut second = start(&dir, &["run", "y.yaml", "--quiet"]);
    wait_for("the stale trial", Duration::from_secs(60), || !events(&journal(&dir, "runs/y"), "stale").is_empty());
    wait_for("the orphan ended", Duration::from_secs(10), || !orphan.iter().any(|p| sleeping().contains(p)));
    unsafe {
        libc::kill(second.id() as i32, libc::SIGTERM);
    }
    assert_eq!(second.wait().unwrap().code(), Some(130));
    std::thread::sleep(Duration::from_millis(300));
    assert!(sleeping().is_empty(), "the second runner's command ended with it: {:?}", sleeping());
}

/// A command that appends to its metric file (main_finetune.py does) must not have a crashed
/// attempt's lines counted as its retry's.
#[test]
fn a_retried_commands_metrics_are_its_own() {
    let dir = Dir::new();
    dir.write(
        "flaky.sh",
        "mkdir -p \"$1/m\"\nif [ \"$MAESTRO_ATTEMPT\" = 1 ]; then echo '{\"acc\": 99}' >> \"$1/m/log.txt\"; exit 1; fi\necho '{\"acc\": 10}' >> \"$1/m/log.txt\"\n",
    );
    one_command_trial(&dir, "q", "sh flaky.sh {out} # {llrd}", "{out}/m/log.txt", "max_retries: 2");
    let mut c = dir.maestro();
    c.args(["run", "q.yaml", "--quiet"]);
    run(c).success();
    let completed = events(&journal(&dir, "runs/q"), "completed").iter().map(|e| e["top1"].as_f64().unwrap()).collect::<Vec<_>>();
    assert_eq!(completed, vec![10.0], "the retry's metric, not the crashed attempt's");
    // The command printed no top-5: none is recorded (not a top-5 of 0).
    let top5 = events(&journal(&dir, "runs/q"), "completed").iter().map(|e| e["top5"].clone()).collect::<Vec<_>>();
    assert_eq!(top5, vec![serde_json::Value::Null]);
}

/// A refinement that ends at a new edge (the optimum, 0.85, past the grid [0.5, 0.6, 0.7]:
/// refined to 0.8 and 0.9, where 0.9 is the new edge) is not refined again when the finished
/// run is run again.
#[test]
fn running_a_refined_run_again_refines_nothing_more() {
    let dir = Dir::new();
    dir.write("peak.sh", "awk -v x=\"$1\" 'BEGIN { printf \"{\\\"acc\\\": %f}\\n\", 80 - 300 * (x - 0.85) ^ 2 }' > \"$2/m.txt\"\n");
    one_command_trial(&dir, "rk", "sh peak.sh {llrd} {out}", "{out}/m.txt", "max_retries: 0");
    dir.write("rk.yaml", &read(&dir.join("rk.yaml")).replace("llrd: [0.6]", "llrd: [0.5, 0.6, 0.7], refine: true"));
    let mut c = dir.maestro();
    c.args(["run", "rk.yaml", "--quiet"]);
    run(c).success();
    let first = events(&journal(&dir, "runs/rk"), "running").len();
    assert_eq!(first, 5, "three grid values and two refined ones");
    let mut c = dir.maestro();
    c.args(["run", "rk.yaml", "--quiet"]);
    run(c).success();
    assert_eq!(events(&journal(&dir, "runs/rk"), "running").len(), first, "the second run ran trials");
}

/// Messages that cannot be written (stderr and stdout on a full disk) do not stop a run: it
/// finishes, records its trials as any other, and exits 0.
#[test]
fn a_run_whose_stderr_cannot_be_written_still_finishes() {
    let dir = Dir::new();
    dir.write("ok.sh", "echo '{\"acc\": 50}' > \"$1/m.txt\"\n");
    one_command_trial(&dir, "full", "sh ok.sh {out} # {llrd}", "{out}/m.txt", "max_retries: 0");
    let mut c = dir.maestro();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    c.args(["run", "full.yaml"]).stderr(full()).stdout(full());
    let r = run(c);
    assert_eq!(r.code(), 0, "{}", r.stdout());
    assert_eq!(events(&journal(&dir, "runs/full"), "completed").len(), 1);
}
