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
    /// Fashion-MNIST's folder (without --study).
    pub root: Option<PathBuf>,
    /// An ImageFolder dataset's split folders (without --study).
    pub train_split: Option<String>,
    pub val_split: Option<String>,
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
            // A model named by its preset takes overrides as `{ preset: NAME, field: value }`.
            if i == 1 && parts[0] == "model"
                && let serde_yaml::Value::String(name) = node
            {
                let mut m = serde_yaml::Mapping::new();
                m.insert("preset".into(), serde_yaml::Value::String(std::mem::take(name)));
                *node = serde_yaml::Value::Mapping(m);
            }
            let map = match node {
                serde_yaml::Value::Mapping(m) => m,
                serde_yaml::Value::Null => {
                    *node = serde_yaml::Value::Mapping(Default::default());
                    match node {
                        serde_yaml::Value::Mapping(m) => m,
                        _ => unreachable!(),
                    }
                }
                other => {
                    let at = parts[..i].join(".");
                    let value = serde_yaml::to_string(other).unwrap_or_default();
                    return Err(Error::Usage(format!("--set {set}: `{at}` is the value {}, not a map with a `{part}` field", value.trim())));
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
            let dataset = t.dataset.as_deref().ok_or_else(|| Error::Usage("give --study STUDY.yaml, or --dataset (fashion-mnist or an ImageFolder root; --model picks the ViT, default vit_base_patch16)".into()))?;
            let quote = |s: &str| serde_json::to_string(s).unwrap();
            let ds = if dataset == "fashion-mnist" {
                if t.train_split.is_some() || t.val_split.is_some() {
                    return Err(Error::Usage("--train-split and --val-split name an ImageFolder dataset's folders; Fashion-MNIST has its own files".into()));
                }
                match &t.root {
                    Some(root) => format!("{{ kind: fashion-mnist, root: {} }}", quote(&root.to_string_lossy())),
                    None => "{ kind: fashion-mnist }".to_string(),
                }
            } else {
                if t.root.is_some() {
                    return Err(Error::Usage(format!("--root is Fashion-MNIST's folder; an ImageFolder dataset's root is --dataset itself ({dataset})")));
                }
                let split = |key: &str, v: &Option<String>| v.as_deref().map(|v| format!(", {key}: {}", quote(v))).unwrap_or_default();
                format!(
                    "{{ kind: imagefolder, root: {}{}{} }}",
                    quote(dataset),
                    split("train", &t.train_split),
                    split("val", &t.val_split)
                )
            };
            let model = quote(t.model.as_deref().unwrap_or("vit_base_patch16"));
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
        if t.study.is_none() {
            // The study was made from the flags: a position in it means nothing to the user.
            for p in &mut e.problems {
                p.location = None;
            }
        }
        Error::from(e)
    })
}

/// An input file's path as one spelling from every working folder: canonical when it exists
/// (`..` and links resolved), else absolute (its absence is then reported where it is read).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

pub fn spec_from_request(r: &FinetuneRequest) -> Result<FinetuneSpec, Error> {
    let t = &r.target;
    let loaded = study_for_cli(t)?;
    let s = &loaded.study;
    let model = s.model.shape().expect("validated");
    Ok(FinetuneSpec {
        name: t.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "finetune".into()),
        source: loaded.source(),
        // Absolute, so the spec (and the resume check on it) does not depend on the working folder.
        manifest: t.manifest.as_deref().map(absolute).transpose()?,
        model,
        recipe: s.finetune.clone(),
        llrd: r.llrd.unwrap_or(s.finetune.layer_decay),
        blr: r.blr.unwrap_or(s.finetune.blr),
        checkpoint: r.checkpoint.as_deref().map(absolute).transpose()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, sets: &[&str]) -> Result<serde_yaml::Value, Error> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Ok(serde_yaml::from_str(&apply_sets(text, &sets)?).unwrap())
    }

    #[test]
    fn a_preset_model_keeps_its_preset_under_overrides() {
        let doc = set("name: x\nmodel: vit_tiny_patch16\n", &["model.image_size=28", "model.patch_size=7"]).unwrap();
        let model: crate::study::schema::ModelSpec = serde_yaml::from_value(doc["model"].clone()).unwrap();
        let shape = model.shape().unwrap();
        assert_eq!((shape.image_size, shape.patch_size, shape.embed_dim, shape.depth), (28, 7, 192, 12));
        // Replacing the whole model still works.
        let doc = set("name: x\nmodel: vit_tiny_patch16\n", &["model=vit_small_patch16"]).unwrap();
        assert_eq!(doc["model"], serde_yaml::Value::String("vit_small_patch16".into()));
    }

    #[test]
    fn descending_into_a_plain_value_is_refused_not_overwritten() {
        let e = set("name: x\nseed: 3\n", &["seed.deep=1"]).unwrap_err().to_string();
        assert!(e.contains("`seed` is the value 3, not a map with a `deep` field"), "{e}");
        let doc = set("name: x\nfinetune:\n", &["finetune.epochs=2"]).unwrap();
        assert_eq!(doc["finetune"]["epochs"], serde_yaml::Value::from(2));
    }
}
