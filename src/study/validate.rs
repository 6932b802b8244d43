//! Checks a parsed study: values in range, names unique, files present, and (with the dataset
//! scanned) proxies that the dataset can supply. Every problem is collected, each with the
//! position of the value it is about.

use std::collections::HashSet;
use std::path::Path;

use super::error::Problem;
use super::locate::LocationIndex;
use super::schema::Study;
use crate::data::Catalog;
use crate::data::augment::RandAugmentSpec;
use crate::device::DeviceSpec;

/// Collects problems, locating each by its field path.
pub struct Checker<'a> {
    index: &'a LocationIndex,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(index: &'a LocationIndex) -> Self {
        Checker { index, problems: Vec::new() }
    }

    pub fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.fail_hint(field, message, None::<String>);
    }

    pub fn fail_hint(&mut self, field: impl Into<String>, message: impl Into<String>, hint: Option<impl Into<String>>) {
        let field = field.into();
        self.problems.push(Problem {
            location: self.index.value(&field),
            field,
            message: message.into(),
            hint: hint.map(Into::into),
        });
    }

    fn positive(&mut self, field: &str, v: f64, what: &str) {
        if !(v.is_finite() && v > 0.0) {
            let finite = if v.is_finite() { "" } else { " and finite" };
            self.fail(field, format!("{what} must be positive{finite}, got {v}"));
        }
    }

    fn non_negative(&mut self, field: &str, v: f64, what: &str) {
        if !(v.is_finite() && v >= 0.0) {
            let finite = if v.is_finite() { "" } else { " and finite" };
            self.fail(field, format!("{what} must be zero or positive{finite}, got {v}"));
        }
    }

    fn probability(&mut self, field: &str, v: f64) {
        if !(0.0..=1.0).contains(&v) {
            self.fail(field, format!("a probability must be in [0, 1], got {v}"));
        }
    }

    fn at_least_one(&mut self, field: &str, v: usize, what: &str) {
        if v == 0 {
            self.fail(field, format!("{what} must be at least 1, got 0"));
        }
    }
}

/// The problems `check` finds in values that come from no study file (a trial spec, command-line
/// flags), one per line, each naming its field.
pub fn problems_of(check: impl FnOnce(&mut Checker)) -> Result<(), String> {
    let index = LocationIndex::build("");
    let mut c = Checker::new(&index);
    check(&mut c);
    if c.problems.is_empty() {
        return Ok(());
    }
    Err(c.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

/// A fine-tune spec's settings, as a study's are checked (a spec may be written by hand).
pub fn check_finetune_spec(c: &mut Checker, spec: &crate::train::spec::FinetuneSpec) {
    check_shape(c, &spec.model);
    check_finetune(c, &spec.recipe, &[spec.blr]);
    check_llrd(c, "llrd", spec.llrd);
    c.positive("blr", spec.blr, "the learning rate");
    c.at_least_one("eval_batch_size", spec.eval_batch_size, "eval_batch_size");
    if spec.max_steps == Some(0) {
        c.fail("max_steps", "must be at least 1, got 0");
    }
}

/// A pre-training spec's settings, as a study's are checked.
pub fn check_pretrain_spec(c: &mut Checker, spec: &crate::train::pretrain::PretrainSpec) {
    check_shape(c, &spec.model);
    check_recipe(c, "pretrain", &spec.recipe);
    check_against_model(c, "pretrain", &spec.recipe, &spec.model);
    if spec.max_steps == Some(0) {
        c.fail("max_steps", "must be at least 1, got 0");
    }
}

fn check_shape(c: &mut Checker, shape: &crate::model::config::VitShape) {
    for (field, msg) in shape.problems() {
        c.fail(format!("model.{field}"), msg);
    }
}

/// A name used in file and folder names.
fn check_name(c: &mut Checker, field: &str, name: &str) {
    if name.is_empty() {
        c.fail(field, "must not be empty");
    } else if !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) || name.starts_with('.') {
        c.fail_hint(
            field,
            format!("\"{name}\" cannot be used in file names"),
            Some("use letters, digits, '.', '_' and '-' only"),
        );
    }
}

/// Everything that can be checked without reading the dataset.
pub fn check_static(study: &Study, study_dir: &Path, c: &mut Checker) {
    check_name(c, "name", &study.name);

    // dataset
    let ds = &study.dataset;
    match (ds.kind, &ds.root) {
        (super::schema::DatasetKind::Imagefolder, None) => {
            c.fail_hint("dataset", "an imagefolder dataset needs a `root`", Some("dataset: { kind: imagefolder, root: /data/imagenet, train: train, val: val }"))
        }
        (_, Some(root)) => {
            let full = if root.is_relative() { study_dir.join(root) } else { root.clone() };
            if !full.exists() {
                c.fail(
                    "dataset.root",
                    format!("{} does not exist{}", root.display(), if root.is_relative() { format!(" (relative to the study: {})", full.display()) } else { String::new() }),
                );
            }
        }
        _ => {}
    }

    // proxies
    let mut names = HashSet::new();
    for (i, p) in study.proxies.iter().enumerate() {
        let f = format!("proxies[{i}]");
        check_name(c, &format!("{f}.name"), &p.name);
        if !names.insert(p.name.as_str()) {
            c.fail(format!("{f}.name"), format!("proxy name \"{}\" is used twice", p.name));
        }
        if p.classes.is_none() && p.fraction.is_none() {
            c.fail_hint(f.clone(), "a proxy needs `classes` (a random class subset), `fraction` (a share of every class), or both", Some("{ name: imagenet-200, classes: 200 } or { name: imagenet-10pct, fraction: 0.1 }"));
        }
        if let Some(k @ (0 | 1)) = p.classes {
            c.fail(format!("{f}.classes"), format!("must be at least 2, got {k}: a proxy of one class scores 100% at any LLRD"));
        }
        if let Some(fr) = p.fraction {
            if !(fr > 0.0 && fr <= 1.0) {
                c.fail(format!("{f}.fraction"), format!("must be in (0, 1], got {fr}"));
            }
        }
    }

    // pre-training setups
    if study.pretrain_setups.is_empty() {
        c.fail("pretrain_setups", "needs at least one setup (a `checkpoint:`, a `pretrain:` block, or just a name for training from scratch)");
    }
    let mut names = HashSet::new();
    for (i, s) in study.pretrain_setups.iter().enumerate() {
        let f = format!("pretrain_setups[{i}]");
        check_name(c, &format!("{f}.name"), &s.name);
        // Sample-efficiency setups (after the listed ones) are checked at their fractions.
        if !names.insert(s.name.as_str()) && i < study.listed_setups {
            c.fail(format!("{f}.name"), format!("setup name \"{}\" is used twice", s.name));
        }
        if s.checkpoint.is_some() && s.pretrain.is_some() {
            c.fail(f.clone(), "give either `checkpoint` or `pretrain`, not both");
        }
        if let Some(ck) = &s.checkpoint {
            let full = if ck.is_relative() { study_dir.join(ck) } else { ck.clone() };
            if !full.is_file() {
                c.fail(format!("{f}.checkpoint"), format!("{} does not exist", full.display()));
            }
        }
        if let (Some(p), true) = (&s.pretrain, i < study.listed_setups) {
            check_recipe(c, &format!("{f}.pretrain"), p);
            check_visible_patches(c, &format!("{f}.pretrain"), p, study);
        }
    }
    if let Some(se) = &study.sample_efficiency {
        if se.fractions.is_empty() {
            c.fail("sample_efficiency.fractions", "needs at least one fraction");
        }
        let mut seen = HashSet::new();
        for (i, &f) in se.fractions.iter().enumerate() {
            let name = crate::study::schema::SampleEfficiency::setup_name(f);
            if f > 0.0 && f <= 1.0 && !seen.insert(name.clone()) {
                c.fail(format!("sample_efficiency.fractions[{i}]"), format!("{f} gives the setup name `{name}` a previous fraction already has"));
            }
            if f > 0.0 && f < 0.001 {
                c.fail(format!("sample_efficiency.fractions[{i}]"), format!("{f} is below 0.1% of the data"));
            }
            if !(f > 0.0 && f <= 1.0) {
                c.fail(format!("sample_efficiency.fractions[{i}]"), format!("a fraction of the data must be in (0, 1], got {f}"));
            } else if study.pretrain_setups[..study.listed_setups].iter().any(|s| s.name == crate::study::schema::SampleEfficiency::setup_name(f)) {
                c.fail(format!("sample_efficiency.fractions[{i}]"), format!("its setup `{}` is also in pretrain_setups", crate::study::schema::SampleEfficiency::setup_name(f)));
            }
        }
        check_recipe(c, "sample_efficiency.pretrain", &se.pretrain);
        check_visible_patches(c, "sample_efficiency.pretrain", &se.pretrain, study);
    }

    // model
    match study.model.shape() {
        Err((field, msg)) => c.fail(format!("model.{field}"), msg),
        Ok(shape) => {
            check_shape(c, &shape);
            if shape.in_chans != 1 && shape.in_chans != 3 {
                c.fail("model.in_chans", format!("images are read as 1 (grey) or 3 (colour) channels, not {}", shape.in_chans));
            }
        }
    }

    // fine-tune recipe, at every LR it runs with: the searched ones and MAE's baseline
    let mut blrs = if study.search.blr.is_empty() { vec![study.finetune.blr] } else { study.search.blr.clone() };
    if study.transfer.baseline {
        blrs.push(crate::orchestrate::plan::study_baseline(&study.model).1);
    }
    check_finetune(c, &study.finetune, &blrs);

    // search grid
    let s = &study.search;
    if s.llrd.is_empty() {
        c.fail_hint("search.llrd", "the LLRD grid is empty", Some("the paper searches llrd: [0.65, 0.70, 0.75, 0.80, 0.825, 0.85, 0.875, 0.90]"));
    }
    for (i, &v) in s.llrd.iter().enumerate() {
        check_llrd(c, &format!("search.llrd[{i}]"), v);
        if s.llrd[..i].contains(&v) {
            c.fail(format!("search.llrd[{i}]"), format!("{v} is listed twice"));
        }
    }
    for (i, &v) in s.blr.iter().enumerate() {
        c.positive(&format!("search.blr[{i}]"), v, "the learning rate");
        if s.blr[..i].contains(&v) {
            c.fail(format!("search.blr[{i}]"), format!("{v} is listed twice"));
        }
    }
    c.at_least_one("search.repeats", s.repeats, "repeats");

    // external trials
    if let super::schema::TrialKind::Command { command, metric } = &study.trial {
        if command.trim().is_empty() {
            c.fail("trial.command", "the command is empty");
        }
        if !command.contains("{llrd}") {
            c.fail_hint("trial.command", "the command never uses {llrd}, so every trial would train the same thing", Some("e.g. python main_finetune.py --layer_decay {llrd} --blr {blr} --output_dir {out}"));
        }
        for (field, template) in [("trial.command", command.as_str()), ("trial.metric.file", metric.file.as_str())] {
            let unknown = crate::orchestrate::command::unknown_placeholders(template);
            if !unknown.is_empty() {
                c.fail_hint(
                    field,
                    format!("{} is no placeholder", unknown.join(", ")),
                    Some(format!("placeholders: {}", crate::orchestrate::command::PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", "))),
                );
            }
        }
        if metric.mode != "max" && metric.mode != "last" {
            c.fail("trial.metric.mode", format!("`{}` is not a mode; use max or last", metric.mode));
        }
        // One file for every trial: trials that run at once would read each other's metrics.
        let at_once = study.execution.executor == crate::study::schema::ExecutorKind::Slurm || study.execution.devices.len() > 1;
        if at_once && !metric.file.contains("{out}") {
            c.fail_hint(
                "trial.metric.file",
                format!("`{}` is the same file for every trial, and trials run at once here: each would read the others' metrics", metric.file),
                Some("put it in the trial's folder, e.g. {out}/mae/log.txt (and --output_dir {out}/mae)"),
            );
        }
    }

    // execution
    if study.execution.devices.is_empty() {
        c.fail("execution.devices", "needs at least one device (cpu, cuda:N, libtorch-cuda:N or wgpu)");
    }
    let mut first: Option<DeviceSpec> = None;
    for (i, d) in study.execution.devices.iter().enumerate() {
        match d.parse::<DeviceSpec>() {
            Err(msg) => c.fail(format!("execution.devices[{i}]"), msg),
            // Every trial of a run is written for one backend (and its precision), so their
            // accuracies compare; slots differ only in which card they use.
            Ok(spec) => match first {
                Some(f) if f.on_card(0) != spec.on_card(0) => c.fail(
                    format!("execution.devices[{i}]"),
                    format!("`{spec}` is another backend than `{f}`; a study's trials run on one backend (cards may differ), so that their results compare"),
                ),
                Some(_) => {}
                None => first = Some(spec),
            },
        }
    }
    if let Some(t) = study.execution.trial_timeout_s {
        c.positive("execution.trial_timeout_s", t, "trial_timeout_s");
    }
    let e = &study.execution;
    if e.executor == crate::study::schema::ExecutorKind::Local {
        let slurm_only = [
            ("partition", e.partition.is_some()),
            ("gres", e.gres.is_some()),
            ("cpus_per_task", e.cpus_per_task.is_some()),
            ("mem", e.mem.is_some()),
            ("time", e.time.is_some()),
            ("array_parallelism", e.array_parallelism.is_some()),
            ("extra_sbatch_args", !e.extra_sbatch_args.is_empty()),
            ("setup", e.setup.is_some()),
        ];
        for (key, set) in slurm_only {
            if set {
                c.fail_hint(format!("execution.{key}"), format!("`{key}` is a Slurm setting, but the executor is local"), Some("add `executor: slurm`, or remove it"));
            }
        }
    } else {
        if e.cpus_per_task == Some(0) {
            c.fail("execution.cpus_per_task", "cpus_per_task must be at least 1");
        }
        if e.array_parallelism == Some(0) {
            c.fail("execution.array_parallelism", "array_parallelism must be at least 1");
        }
        for (i, a) in e.extra_sbatch_args.iter().enumerate() {
            let flag = a.split('=').next().unwrap_or("");
            if ["-M", "--clusters", "--cluster", "-a", "--array", "-o", "--output", "-J", "--job-name", "--parsable"].contains(&flag) || a.starts_with("-M") {
                c.fail(format!("execution.extra_sbatch_args[{i}]"), format!("`{a}`: maestro sets this itself (or cannot follow jobs across clusters)"));
            }
        }
        for (key, v) in [("partition", &e.partition), ("gres", &e.gres), ("mem", &e.mem), ("time", &e.time)] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.chars().any(char::is_whitespace) {
                    c.fail(format!("execution.{key}"), format!("`{v}` is not a valid sbatch --{} value", key.replace('_', "-")));
                }
            }
        }
    }
    c.positive("execution.poll_s", e.poll_s, "poll_s");
}

/// The fine-tune recipe's values, and its schedule's floor against every peak LR it will run
/// at (`blrs`: the searched base LRs, or none for the recipe's own).
pub fn check_finetune(c: &mut Checker, ft: &crate::study::schema::FinetuneRecipe, blrs: &[f64]) {
    c.positive("finetune.epochs", ft.epochs, "epochs");
    c.non_negative("finetune.warmup_epochs", ft.warmup_epochs, "warmup_epochs");
    if ft.epochs > 0.0 && ft.warmup_epochs > ft.epochs {
        c.fail("finetune.warmup_epochs", format!("{} warmup epochs is more than the {} epochs of training", ft.warmup_epochs, ft.epochs));
    }
    c.at_least_one("finetune.batch_size", ft.batch_size, "batch_size");
    c.at_least_one("finetune.accum_iter", ft.accum_iter, "accum_iter");
    c.positive("finetune.blr", ft.blr, "the learning rate");
    c.non_negative("finetune.min_lr", ft.min_lr, "min_lr");
    c.non_negative("finetune.weight_decay", ft.weight_decay, "weight_decay");
    check_llrd(c, "finetune.layer_decay", ft.layer_decay);
    if !(0.0..1.0).contains(&ft.drop_path) {
        c.fail("finetune.drop_path", format!("must be in [0, 1), got {}", ft.drop_path));
    }
    if !(0.0..1.0).contains(&ft.smoothing) {
        c.fail("finetune.smoothing", format!("must be in [0, 1), got {}", ft.smoothing));
    }
    c.non_negative("finetune.mixup", ft.mixup, "mixup alpha");
    c.non_negative("finetune.cutmix", ft.cutmix, "cutmix alpha");
    c.probability("finetune.mixup_prob", ft.mixup_prob);
    c.probability("finetune.mixup_switch_prob", ft.mixup_switch_prob);
    c.probability("finetune.reprob", ft.reprob);
    c.probability("finetune.hflip", ft.hflip);
    if let Err(msg) = RandAugmentSpec::parse(&ft.aa) {
        c.fail("finetune.aa", msg);
    }
    let [lo, hi] = ft.crop_scale;
    if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
        c.fail("finetune.crop_scale", format!("must be [low, high] with 0 < low <= high <= 1, got [{lo}, {hi}]"));
    }
    if !(ft.eval_crop_pct > 0.0 && ft.eval_crop_pct <= 1.0) {
        c.fail("finetune.eval_crop_pct", format!("must be in (0, 1], got {}", ft.eval_crop_pct));
    }
    if let Some(g) = ft.clip_grad {
        c.positive("finetune.clip_grad", g, "clip_grad");
    }

    for (i, &b) in ft.betas.iter().enumerate() {
        if !(0.0..1.0).contains(&b) {
            c.fail(format!("finetune.betas[{i}]"), format!("must be in [0, 1), got {b}"));
        }
    }
    c.positive("finetune.eps", ft.eps, "eps");
    check_floor(c, "finetune", ft.min_lr, if blrs.is_empty() { std::slice::from_ref(&ft.blr) } else { blrs }, ft.batch_size * ft.accum_iter);
}

/// The cosine schedule ends at `min_lr`: it must lie below the peak LR, blr x batch / 256, or
/// the schedule climbs instead of decaying.
fn check_floor(c: &mut Checker, g: &str, min_lr: f64, blrs: &[f64], batch: usize) {
    let Some(lowest) = blrs.iter().copied().filter(|b| b.is_finite() && *b > 0.0).reduce(f64::min) else { return };
    let peak = lowest * batch as f64 / 256.0;
    if batch > 0 && min_lr.is_finite() && min_lr >= peak {
        c.fail_hint(
            format!("{g}.min_lr"),
            format!("{min_lr} is not below the peak learning rate {peak:.3e} (blr {lowest} x batch {batch} / 256)"),
            Some("min_lr is the cosine schedule's absolute floor; MAE uses 1e-6"),
        );
    }
}

/// Devices whose backend this build lacks: `validate` warns (a plan may be checked anywhere),
/// `run` refuses before any trial would fail on them.
pub fn check_devices_built(study: &Study, c: &mut Checker) {
    if let Some((i, spec)) = unbuilt_device(study) {
        let feature = spec.feature().unwrap_or_default();
        c.fail_hint(
            format!("execution.devices[{i}]"),
            format!("`{spec}` needs maestro built with the `{feature}` feature, which this build lacks"),
            Some(format!("cargo build --release --features {feature}; `maestro doctor` lists what this build has")),
        );
    }
}

/// The first device (its index) of a backend this build lacks.
pub fn unbuilt_device(study: &Study) -> Option<(usize, DeviceSpec)> {
    study.execution.devices.iter().enumerate().find_map(|(i, d)| d.parse::<DeviceSpec>().ok().filter(|s| !s.compiled_in()).map(|s| (i, s)))
}

/// [`check_against_model`] with the study's model, where it resolves.
fn check_visible_patches(c: &mut Checker, g: &str, p: &crate::study::schema::PretrainRecipe, study: &Study) {
    if let Ok(shape) = study.model.shape() {
        check_against_model(c, g, p, &shape);
    }
}

/// What a pre-training recipe needs of its encoder: at least one visible patch at the model's
/// resolution, and a decoder MLP with a hidden unit (the decoder takes the model's mlp_ratio).
fn check_against_model(c: &mut Checker, g: &str, p: &crate::study::schema::PretrainRecipe, shape: &crate::model::config::VitShape) {
    if shape.patch_size > 0
        && shape.image_size % shape.patch_size == 0
        && p.mask_ratio > 0.0
        && p.mask_ratio < 1.0
        && crate::model::mae::kept_patches(shape.num_patches(), p.mask_ratio) == 0
    {
        c.fail(
            format!("{g}.mask_ratio"),
            format!("{} leaves no visible patch out of the model's {}", p.mask_ratio, shape.num_patches()),
        );
    }
    if shape.mlp_ratio.is_finite() && shape.mlp_ratio > 0.0 && p.decoder_embed_dim > 0 && (p.decoder_embed_dim as f64 * shape.mlp_ratio) as usize == 0 {
        c.fail(
            format!("{g}.decoder_embed_dim"),
            format!("{} with the model's mlp_ratio {} gives the decoder's MLP no hidden unit", p.decoder_embed_dim, shape.mlp_ratio),
        );
    }
}

pub fn check_recipe(c: &mut Checker, g: &str, p: &crate::study::schema::PretrainRecipe) {
    c.positive(&format!("{g}.epochs"), p.epochs, "epochs");
    c.non_negative(&format!("{g}.warmup_epochs"), p.warmup_epochs, "warmup_epochs");
    if p.epochs > 0.0 && p.warmup_epochs > p.epochs {
        c.fail(format!("{g}.warmup_epochs"), format!("{} warmup epochs is more than the {} epochs of training", p.warmup_epochs, p.epochs));
    }
    if !(p.mask_ratio > 0.0 && p.mask_ratio < 1.0) {
        c.fail(format!("{g}.mask_ratio"), format!("must be in (0, 1), got {}", p.mask_ratio));
    }
    c.at_least_one(&format!("{g}.decoder_depth"), p.decoder_depth, "decoder_depth");
    c.at_least_one(&format!("{g}.decoder_embed_dim"), p.decoder_embed_dim, "decoder_embed_dim");
    c.at_least_one(&format!("{g}.batch_size"), p.batch_size, "batch_size");
    c.at_least_one(&format!("{g}.accum_iter"), p.accum_iter, "accum_iter");
    c.positive(&format!("{g}.blr"), p.blr, "the learning rate");
    c.non_negative(&format!("{g}.min_lr"), p.min_lr, "min_lr");
    c.non_negative(&format!("{g}.weight_decay"), p.weight_decay, "weight_decay");
    check_floor(c, g, p.min_lr, &[p.blr], p.batch_size * p.accum_iter);
    if p.decoder_num_heads == 0 || p.decoder_embed_dim % p.decoder_num_heads.max(1) != 0 {
        c.fail(format!("{g}.decoder_num_heads"), format!("{} heads do not divide decoder_embed_dim {}", p.decoder_num_heads, p.decoder_embed_dim));
    }
    if p.decoder_embed_dim % 4 != 0 {
        c.fail(format!("{g}.decoder_embed_dim"), format!("{} is not a multiple of 4, which the 2-D sin-cos position embedding needs", p.decoder_embed_dim));
    }
    if !(p.data_fraction > 0.0 && p.data_fraction <= 1.0) {
        c.fail(format!("{g}.data_fraction"), format!("a fraction of the data must be in (0, 1], got {}", p.data_fraction));
    }
}

fn check_llrd(c: &mut Checker, field: &str, v: f64) {
    if !(v > 0.0 && v <= 1.0) {
        c.fail_hint(field, format!("LLRD must be in (0, 1], got {v}"), Some("1.0 means no layer-wise decay; MAE's default is 0.65, the paper's optimum about 0.8"));
    }
}

/// What needs the scanned dataset: proxies the dataset can supply.
pub fn check_against_dataset(study: &Study, catalog: &Catalog, c: &mut Checker) {
    for (i, p) in study.proxies.iter().enumerate() {
        if let Some(k) = p.classes.filter(|k| *k > catalog.num_classes()) {
            c.fail(format!("proxies[{i}].classes"), format!("{k} classes asked for, but the dataset has only {}", catalog.num_classes()));
        }
    }
    if catalog.train.items.is_empty() {
        c.fail("dataset", "the training split has no images");
    } else if catalog.num_classes() < 2 {
        c.fail("dataset", format!("the training split has {} class; classification needs at least 2", catalog.num_classes()));
    }
    if catalog.val.items.is_empty() {
        c.fail("dataset", "the validation split has no images");
    }
}
