//! `maestro finetune` and `maestro trial`: one fine-tune from a study (or flags), on a proxy
//! manifest or the whole dataset.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::study::LoadedStudy;
use crate::train::finetune::{self, TrainError};
use crate::train::spec::{FinetuneResult, FinetuneSpec, RunStatus};

/// What a training command trains on and where it writes (finetune and pretrain alike).
pub struct TrainTarget {
    pub study: Option<PathBuf>,
    pub dataset: Option<String>,
    pub model: Option<String>,
    pub manifest: Option<PathBuf>,
    pub sets: Vec<String>,
    pub device: String,
    pub seed: Option<u64>,
    pub max_steps: Option<usize>,
    pub out: PathBuf,
    pub quiet: bool,
}

pub struct FinetuneRequest {
    pub target: TrainTarget,
    pub llrd: Option<f64>,
    pub blr: Option<f64>,
    pub checkpoint: Option<PathBuf>,
}

/// Apply `a.b.c=value` overrides (value in YAML) to a YAML text.
pub fn apply_sets(text: &str, sets: &[String]) -> Result<String, Error> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| Error::Usage(format!("cannot apply --set: {e}")))?;
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--set {set}: expected KEY=VALUE, e.g. --set finetune.epochs=5")))?;
        let value: serde_yaml::Value =
            serde_yaml::from_str(value).map_err(|e| Error::Usage(format!("--set {set}: the value is not YAML: {e}")))?;
        let mut node = &mut doc;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map = match node {
                serde_yaml::Value::Mapping(m) => m,
                other => {
                    *other = serde_yaml::Value::Mapping(Default::default());
                    match other {
                        serde_yaml::Value::Mapping(m) => m,
                        _ => unreachable!(),
                    }
                }
            };
            let k = serde_yaml::Value::String(part.to_string());
            if i + 1 == parts.len() {
                map.insert(k, value.clone());
                break;
            }
            node = map.entry(k).or_insert(serde_yaml::Value::Mapping(Default::default()));
        }
    }
    serde_yaml::to_string(&doc).map_err(|e| Error::Usage(e.to_string()))
}

/// A study from `--study` (with `--set` overrides), or one made from `--dataset` and `--model`.
pub fn study_for_cli(t: &TrainTarget) -> Result<LoadedStudy, Error> {
    let (file, text) = match &t.study {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
            (path.clone(), text)
        }
        None => {
            let dataset = t.dataset.as_deref().ok_or_else(|| Error::Usage("give --study STUDY.yaml, or --dataset and --model".into()))?;
            let ds = if dataset == "fashion-mnist" {
                "{ kind: fashion-mnist }".to_string()
            } else {
                format!("{{ kind: imagefolder, root: {} }}", serde_json::to_string(dataset).unwrap())
            };
            let model = t.model.as_deref().unwrap_or("vit_base_patch16");
            (PathBuf::from("<command line>"), format!("name: finetune\ndataset: {ds}\nmodel: {model}\n"))
        }
    };
    let edited = apply_sets(&text, &t.sets)?;
    LoadedStudy::from_text(&file, &edited).map_err(|mut e| {
        if !t.sets.is_empty() {
            // Positions are in the edited text, not the file: a problem with a value from
            // --set names the flag, any other takes its position in the file as written.
            let original = crate::study::locate::LocationIndex::build(&text);
            for p in &mut e.problems {
                let set = t.sets.iter().find(|s| s.split_once('=').is_some_and(|(k, _)| p.field == k || p.field.starts_with(&format!("{k}.")) || p.field.starts_with(&format!("{k}["))));
                match set {
                    Some(set) => {
                        p.location = None;
                        p.message = format!("{} (from --set {set})", p.message);
                    }
                    None => p.location = original.value(&p.field),
                }
            }
        }
        Error::from(e)
    })
}

pub fn spec_from_request(r: &FinetuneRequest) -> Result<FinetuneSpec, Error> {
    let t = &r.target;
    let loaded = study_for_cli(t)?;
    let s = &loaded.study;
    let model = s.model.shape().expect("validated");
    Ok(FinetuneSpec {
        name: t.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "finetune".into()),
        source: loaded.source(),
        manifest: t.manifest.clone(),
        model,
        recipe: s.finetune.clone(),
        llrd: r.llrd.unwrap_or(s.finetune.layer_decay),
        blr: r.blr.unwrap_or(s.finetune.blr),
        checkpoint: r.checkpoint.clone(),
        seed: t.seed.unwrap_or(s.seed),
        device: t.device.clone(),
        max_steps: t.max_steps,
        eval_batch_size: 256,
    })
}

pub(crate) fn train_error(e: TrainError) -> Error {
    match e {
        TrainError::Setup(m) => Error::Usage(m),
        TrainError::Data(d) => Error::Data(d),
        TrainError::Checkpoint(c) => Error::Usage(c.to_string()),
        TrainError::Io { path, message } => Error::Io { path, source: std::io::Error::other(message) },
    }
}

fn report(result: &FinetuneResult, out: &Path) -> Result<(), Error> {
    println!(
        "{}: {:?} after {} steps: top-1 {:.2}%, top-5 {:.2}% (best top-1 {:.2}%), {:.0} img/s, {:.0} s",
        out.display(),
        result.status,
        result.steps,
        result.top1,
        result.top5,
        result.best_top1,
        result.images_per_s,
        result.wall_s
    );
    match result.status {
        RunStatus::Completed => Ok(()),
        _ => Err(Error::Failed(result.error.clone().unwrap_or_else(|| format!("{:?}", result.status)))),
    }
}

pub fn finetune(r: &FinetuneRequest) -> Result<(), Error> {
    let spec = spec_from_request(r)?;
    // --llrd, --blr and --max-steps bypass the study's checks: check the spec as a whole.
    crate::study::validate::problems_of(|c| crate::study::validate::check_finetune_spec(c, &spec)).map_err(Error::Usage)?;
    let result = finetune::run(&spec, &r.target.out, r.target.quiet).map_err(train_error)?;
    report(&result, &r.target.out)
}

/// `maestro trial SPEC.json`: run a trial spec (or a bare fine-tune spec) into its folder.
pub fn trial(spec_path: &Path, quiet: bool) -> Result<(), Error> {
    use crate::orchestrate::plan::TrialSpec;
    let out = spec_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let text = std::fs::read_to_string(spec_path).map_err(|e| Error::Io { path: spec_path.into(), source: e })?;
    let bad_spec = |e: String| Error::Usage(format!("{}:\n{e}", spec_path.display()));
    if let Ok(t) = serde_json::from_str::<TrialSpec>(&text) {
        if let Some(spec) = &t.finetune {
            crate::study::validate::problems_of(|c| crate::study::validate::check_finetune_spec(c, spec)).map_err(bad_spec)?;
            let result = finetune::run(spec, &out, quiet).map_err(train_error)?;
            return report(&result, &out);
        }
        if let Some(cmd) = &t.command {
            // run/trials/<id>/spec.json: the run folder holds the study and the proxies.
            let run_dir = out.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
            let loaded = crate::study::load_run_copy(&run_dir).map_err(Error::Usage)?;
            let data = match &t.proxy {
                Some(p) => std::fs::canonicalize(run_dir.join("proxies").join(p)).unwrap_or_else(|_| run_dir.join("proxies").join(p)),
                None => loaded.source().root().to_path_buf(),
            };
            let abs_out = std::fs::canonicalize(&out).unwrap_or(out.clone());
            let s = &loaded.study;
            let seed = s.seed.wrapping_add(t.repeat as u64);
            let result = crate::orchestrate::command::run(&t, cmd, &abs_out, &data.display().to_string(), seed, s.finetune.epochs, s.finetune.batch_size);
            result.write(&out.join("result.json")).map_err(|e| Error::Io { path: out.join("result.json"), source: e })?;
            return report(&result, &out);
        }
        if let Some(spec) = &t.pretrain {
            crate::study::validate::problems_of(|c| crate::study::validate::check_pretrain_spec(c, spec)).map_err(bad_spec)?;
            let result = crate::train::pretrain::run(spec, &out, quiet).map_err(train_error)?;
            println!("{}: pre-training {} after {} steps; loss by epoch {:?}", out.display(), result.status, result.steps, result.epoch_loss);
            return match result.error {
                Some(e) => Err(Error::Failed(e)),
                None => Ok(()),
            };
        }
        return Err(Error::Usage(format!("{}: the trial has neither a fine-tune, a command nor a pre-training", spec_path.display())));
    }
    let spec = FinetuneSpec::read(spec_path).map_err(Error::Usage)?;
    crate::study::validate::problems_of(|c| crate::study::validate::check_finetune_spec(c, &spec)).map_err(bad_spec)?;
    let result = finetune::run(&spec, &out, quiet).map_err(train_error)?;
    report(&result, &out)
}
