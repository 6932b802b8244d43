//! Every kind of bad study input gives one clear error naming file:line:column, the field and
//! the value, with exit code 2 and no panic.

mod util;
use util::*;

/// (case, study text, expected "line:column", expected text in the message)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "a top-level key set twice",
        "name: s\ndataset: { kind: imagefolder, root: data }\nname: t\n",
        "3:1",
        "name: `name` is set twice; it is first set at line 1",
    ),
    (
        "a nested key set twice",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune:\n  epochs: 3\n  epochs: 4\n",
        "5:3",
        "finetune.epochs: `epochs` is set twice; it is first set at line 4",
    ),
    (
        "a Slurm setting with the local executor",
        "name: s\ndataset: { kind: imagefolder, root: data }\nexecution:\n  partition: gpu\n",
        "4:14",
        "execution.partition: `partition` is a Slurm setting, but the executor is local\n  hint: add `executor: slurm`",
    ),
    (
        "an sbatch option maestro sets itself",
        "name: s\ndataset: { kind: imagefolder, root: data }\nexecution:\n  executor: slurm\n  extra_sbatch_args: [\"--qos=high\", \"--clusters=b\"]\n",
        "5:37",
        "execution.extra_sbatch_args[1]: `--clusters=b`: maestro sets this itself",
    ),
    (
        "two sample-efficiency fractions with one name",
        "name: s\ndataset: { kind: imagefolder, root: data }\nsample_efficiency:\n  fractions: [0.1, 0.10001]\n",
        "4:20",
        "sample_efficiency.fractions[1]: 0.10001 gives the setup name `data-10pct` a previous fraction already has",
    ),
    (
        "one metric file for trials that run at once",
        "name: s\ndataset: { kind: imagefolder, root: data }\ntrial:\n  kind: command\n  command: \"sh x.sh {llrd}\"\n  metric: { file: \"/tmp/log.txt\", jsonl_key: acc }\nexecution: { devices: [cpu, cpu] }\n",
        "6:19",
        "trial.metric.file: `/tmp/log.txt` is the same file for every trial, and trials run at once here",
    ),
    (
        "unknown top-level key, with a suggestion",
        "name: s\ndataset: { kind: imagefolder, root: data }\nserach: { llrd: [0.7] }\n",
        "3:1",
        "unknown field `serach`\n  hint: did you mean `search`?",
    ),
    (
        "unknown nested key, with a suggestion",
        "name: s\ndataset: { kind: imagefolder, root: data }\nsearch:\n  llrd: [0.7]\n  repeat: 2\n",
        "5:3",
        "search.repeat: unknown field `repeat`\n  hint: did you mean `repeats`?",
    ),
    (
        "wrong type",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune:\n  epochs: many\n",
        "4:11",
        "finetune.epochs: invalid type: string \"many\", expected a number",
    ),
    (
        "LLRD above 1",
        "name: s\ndataset: { kind: imagefolder, root: data }\nsearch:\n  llrd: [0.65, 0.75,\n         1.2]\n",
        "5:10",
        "search.llrd[2]: LLRD must be in (0, 1], got 1.2",
    ),
    (
        "LLRD of zero",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { layer_decay: 0 }\n",
        "3:26",
        "finetune.layer_decay: LLRD must be in (0, 1], got 0",
    ),
    (
        "negative learning rate",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune:\n  blr: -1.0e-3\n",
        "4:8",
        "finetune.blr: the learning rate must be positive, got -0.001",
    ),
    (
        "zero learning rate in the grid",
        "name: s\ndataset: { kind: imagefolder, root: data }\nsearch: { llrd: [0.7], blr: [1.0e-3, 0] }\n",
        "3:38",
        "search.blr[1]: the learning rate must be positive, got 0",
    ),
    (
        "zero epochs",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune:\n  epochs: 0\n",
        "4:11",
        "finetune.epochs: epochs must be positive, got 0",
    ),
    (
        "empty LLRD grid",
        "name: s\ndataset: { kind: imagefolder, root: data }\nsearch:\n  llrd: []\n",
        "4:9",
        "search.llrd: the LLRD grid is empty",
    ),
    (
        "fraction above 1",
        "name: s\ndataset: { kind: imagefolder, root: data }\nproxies:\n  - { name: p, fraction: 1.5 }\n",
        "4:26",
        "proxies[0].fraction: must be in (0, 1], got 1.5",
    ),
    (
        "more classes than the dataset has",
        "name: s\ndataset: { kind: imagefolder, root: data }\nproxies:\n  - name: p\n    classes: 4\nfinetune: { batch_size: 2 }\n",
        "5:14",
        "proxies[0].classes: 4 classes asked for, but the dataset has only 3",
    ),
    (
        "dataset path that does not exist",
        "name: s\ndataset:\n  kind: imagefolder\n  root: /no/such/imagenet\n",
        "4:9",
        "dataset.root: /no/such/imagenet does not exist",
    ),
    (
        "unknown dataset kind, with a suggestion",
        "name: s\ndataset: { kind: image-folder, root: data }\n",
        "2:18",
        "dataset.kind: unknown value `image-folder`\n  hint: did you mean `imagefolder`?",
    ),
    (
        "missing required field",
        "dataset: { kind: imagefolder, root: data }\nsearch: { llrd: [0.7] }\n",
        "1:1",
        "missing field `name`",
    ),
    (
        "YAML syntax error",
        "name: s\ndataset: { kind: imagefolder, root: data\nsearch: {}\n",
        "3:",
        "YAML syntax error: did not find expected",
    ),
    (
        "unknown device",
        "name: s\ndataset: { kind: imagefolder, root: data }\nexecution: { devices: [cpu, gpu0] }\n",
        "3:29",
        "execution.devices[1]: `gpu0` is not a device; use cpu, cuda:N, libtorch-cuda:N, libtorch-cpu or wgpu",
    ),
    (
        "devices of two backends",
        "name: s\ndataset: { kind: imagefolder, root: data }\nexecution: { devices: [cpu, cpu, libtorch-cpu] }\n",
        "3:",
        "execution.devices[2]: `libtorch-cpu` is another backend than `cpu`; a study's trials run on one backend (cards may differ), so that their results compare",
    ),
    (
        "a decoder of width 0",
        "name: s\ndataset: { kind: imagefolder, root: data }\npretrain_setups:\n  - name: m\n    pretrain: { decoder_embed_dim: 0, decoder_num_heads: 2 }\n",
        "5:",
        "pretrain_setups[0].pretrain.decoder_embed_dim: decoder_embed_dim must be at least 1, got 0",
    ),
    (
        "an AdamW beta of 1",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { betas: [1.0, 0.999] }\n",
        "3:",
        "finetune.betas[0]: must be in [0, 1), got 1",
    ),
    (
        "a schedule floor above the peak learning rate",
        "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { min_lr: 10, batch_size: 256 }\nsearch: { blr: [1.0e-3, 2.0e-3] }\n",
        "3:",
        "finetune.min_lr: 10 is not below the peak learning rate 1.000e-3 (blr 0.001 x batch 256 / 256)",
    ),
    (
        "a placeholder misspelt in an external command",
        "name: s\ndataset: { kind: imagefolder, root: data }\ntrial:\n  kind: command\n  command: python main_finetune.py --layer_decay {llrd} --output_dir {output}\n  metric: { file: \"{out}/log.txt\", jsonl_key: test_acc1 }\n",
        "5:",
        "trial.command: {output} is no placeholder",
    ),
    (
        "a proxy of one class",
        "name: s\ndataset: { kind: imagefolder, root: data }\nproxies: [{ name: one, classes: 1 }]\n",
        "3:",
        "proxies[0].classes: must be at least 2, got 1",
    ),
    (
        "patch size that does not divide the image",
        "name: s\ndataset: { kind: imagefolder, root: data }\nmodel: { preset: vit_tiny_patch16, image_size: 28, patch_size: 5, in_chans: 1 }\n",
        "3:",
        "model.patch_size: 5 does not divide the image size 28",
    ),
    (
        "a mask ratio that hides every patch",
        "name: s\ndataset: { kind: imagefolder, root: data }\nmodel: { preset: vit_tiny_patch16, image_size: 28, patch_size: 14, in_chans: 1 }\npretrain_setups:\n  - name: m\n    pretrain: { mask_ratio: 0.9 }\n",
        "6:",
        "pretrain_setups[0].pretrain.mask_ratio: 0.9 leaves no visible patch out of the model's 4",
    ),
    (
        "unknown model preset",
        "name: s\ndataset: { kind: imagefolder, root: data }\nmodel: vit_base_patch32\n",
        "3:8",
        "model.preset: unknown model \"vit_base_patch32\"",
    ),
];

#[test]
fn each_broken_study_gives_one_located_error() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    let mut failures = Vec::new();
    for (i, (case, text, loc, expected)) in CASES.iter().enumerate() {
        let file = format!("broken-{i:02}.yaml");
        dir.write(&file, text);
        let mut c = dir.maestro();
        c.args(["validate", &file]);
        let r = run(c);
        let err = r.stderr();
        let prefix = format!("error: {file}:{loc}");
        let ok = r.code() == 2 && err.starts_with(&prefix) && err.contains(expected) && !err.contains("panicked");
        if !ok {
            failures.push(format!("[{case}] expected exit 2, `{prefix}...` and {expected:?}; got exit {}:\n{err}", r.code()));
        }
        // One problem, one error line.
        if ok && err.matches(&format!("{file}:")).count() != 1 {
            failures.push(format!("[{case}] more than one error:\n{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_problems_are_listed_at_once() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { epochs: 0, blr: -1 }\nsearch: { llrd: [1.5] }\n");
    let mut c = dir.maestro();
    c.args(["validate", "s.yaml"]);
    run(c).code_is(2).stderr_has("s.yaml:3:21: finetune.epochs").stderr_has("s.yaml:3:29: finetune.blr").stderr_has("s.yaml:4:18: search.llrd[0]");
    // Unknown keys and wrong types too, beside the values' problems, in the file's order
    // (the README's example).
    dir.write("t.yaml", "name: t\ndataset: { kind: imagefolder, root: data }\nsearch:\n  llrdd: [0.7]\n  llrd: [0.7, 0.8, 1.2]\nfinetune: { epochs: many, blr: -1 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "t.yaml"]);
    let r = run(c).code_is(2);
    let lines: Vec<String> = r.stderr().lines().filter(|l| l.contains("t.yaml:")).map(|l| l.trim_start_matches("error: ").to_string()).collect();
    assert_eq!(
        lines,
        [
            "t.yaml:4:3: search.llrdd: unknown field `llrdd`",
            "t.yaml:5:20: search.llrd[2]: LLRD must be in (0, 1], got 1.2",
            "t.yaml:6:21: finetune.epochs: invalid type: string \"many\", expected a number",
            "t.yaml:6:32: finetune.blr: the learning rate must be positive, got -1",
        ]
    );
}

/// `validate --json` on a study that cannot be used prints its problems as JSON on stdout (a
/// script reads them there), with the same exit code and text on stderr.
#[test]
fn validate_json_gives_the_problems_as_json() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { epochs: 0, blr: -1 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "--json", "s.yaml"]);
    let r = run(c);
    let r = r.code_is(2).stderr_has("s.yaml:3:21: finetune.epochs");
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("stdout is JSON");
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{v}");
    assert_eq!(problems[0]["field"], "finetune.epochs");
    assert_eq!((problems[0]["line"].as_u64(), problems[0]["column"].as_u64()), (Some(3), Some(21)));
    assert_eq!(problems[1]["field"], "finetune.blr");
    // A dataset that is not there: one problem, no location.
    dir.write("m.yaml", "name: m\ndataset: { kind: imagefolder, root: missing }\n");
    let mut c = dir.maestro();
    c.args(["validate", "--json", "m.yaml"]);
    let r = run(c);
    let r = r.code_is(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("stdout is JSON");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["problems"][0]["message"].as_str().unwrap().contains("missing"), "{v}");
    // A usable study: its plan, with `ok: true`.
    dir.write("good.yaml", "name: good\ndataset: { kind: imagefolder, root: data }\nfinetune: { batch_size: 2 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "--json", "good.yaml"]);
    let r = run(c).success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout()).expect("stdout is JSON");
    assert_eq!(v["ok"], true, "{v}");
}

/// What only the scanned dataset shows: a batch larger than a proxy, a dataset of one class.
#[test]
fn a_batch_larger_than_a_proxy_and_a_single_class_are_refused_before_any_trial() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 4, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nproxies: [{ name: p, fraction: 0.5 }]\nfinetune: { batch_size: 8 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "s.yaml"]);
    run(c).code_is(2).stderr_has("s.yaml:4:25: finetune.batch_size: 8 is more than the 6 training images of proxy `p` (proxies[0])");
    // With accumulation, an epoch must hold accum_iter micro-batches.
    dir.write("a.yaml", "name: a\ndataset: { kind: imagefolder, root: data }\nproxies: [{ name: p, fraction: 0.5 }]\nfinetune: { batch_size: 2, accum_iter: 4 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "a.yaml"]);
    run(c).code_is(2).stderr_has("finetune.batch_size: batch_size 2 x accum_iter 4 is more than the 6 training images of proxy `p`");
    image_tree(&dir.join("one"), 1, 4, 1);
    dir.write("one.yaml", "name: one\ndataset: { kind: imagefolder, root: one }\nfinetune: { batch_size: 2 }\n");
    let mut c = dir.maestro();
    c.args(["validate", "one.yaml"]);
    run(c).code_is(2).stderr_has("dataset: the training split has 1 class; classification needs at least 2");
}

/// Where MAE's recipe depends on the model: a ViT-L's baseline is its own (LLRD 0.75, blr 1e-3,
/// said in the plan), and an evaluation crop of 224/256 above 224 px is warned about.
#[test]
fn model_dependent_recipe_choices_are_said() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    dir.write(
        "l.yaml",
        "name: l\ndataset: { kind: imagefolder, root: data }\nmodel: { preset: vit_large_patch16, image_size: 384 }\nfinetune: { batch_size: 2 }\ntransfer: { full_run: true, baseline: true }\n",
    );
    let mut c = dir.maestro();
    c.args(["validate", "l.yaml"]);
    run(c)
        .success()
        .stdout_has("warning: finetune.eval_crop_pct is 224/256 at 384 px; MAE evaluates above 224 px at crop 1.0")
        .stdout_has("warning: the baseline runs at MAE's ViT-L/H LLRD 0.75 and blr 1e-3");
}

/// A device of a backend this build lacks: `validate` warns (a GPU study's plan can be checked
/// on a laptop), `run` refuses before any trial, rather than every trial failing on it.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_device_this_build_lacks_is_refused_by_run() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune: { batch_size: 2 }\nexecution: { devices: [cuda:7, cuda:1] }\n");
    let mut c = dir.maestro();
    c.args(["validate", "s.yaml"]);
    run(c).success().stdout_has("execution.devices[0]: `cuda:7` needs maestro built with the `cuda` feature");
    let mut c = dir.maestro();
    c.args(["run", "s.yaml"]);
    run(c).code_is(2).stderr_has("s.yaml:4:24: execution.devices[0]: `cuda:7` needs maestro built with the `cuda` feature");
    assert!(!dir.join("runs").exists(), "nothing was started");
}

/// Values from `--set` are named by the flag, others keep their place in the file.
#[test]
fn set_overrides_are_blamed_on_the_flag() {
    let dir = Dir::new();
    image_tree(&dir.join("data"), 3, 2, 1);
    dir.write("s.yaml", "name: s\ndataset: { kind: imagefolder, root: data }\nfinetune:\n  epochs: 0\n");
    let mut c = dir.maestro();
    c.args(["finetune", "--study", "s.yaml", "--set", "finetune.batch_size=0", "--out", "o"]);
    run(c)
        .code_is(2)
        .stderr_has("s.yaml: finetune.batch_size: batch_size must be at least 1, got 0 (from --set finetune.batch_size=0)")
        .stderr_has("s.yaml:4:11: finetune.epochs");
}

#[test]
fn a_missing_study_file_is_a_user_error() {
    let dir = Dir::new();
    let mut c = dir.maestro();
    c.args(["validate", "nope.yaml"]);
    run(c).code_is(2).stderr_has("nope.yaml: cannot read the study");
}

#[test]
fn missing_fashion_mnist_says_how_to_install() {
    let dir = Dir::new();
    dir.write("s.yaml", "name: s\ndataset: { kind: fashion-mnist, root: fm }\n");
    std::fs::create_dir(dir.join("fm")).unwrap();
    let mut c = dir.maestro();
    c.args(["validate", "s.yaml"]);
    run(c).code_is(2).stderr_has("s.yaml:2:").stderr_has("apt-get install dataset-fashion-mnist");
}
