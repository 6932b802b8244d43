//! Study files: the YAML schema with the paper's defaults, parsing with positions, validation
//! and the plan summary `maestro validate` prints.

pub mod error;
pub mod locate;
pub mod parse;
pub mod schema;
pub mod summary;
pub mod validate;

use std::path::{Path, PathBuf};

pub use error::{Problem, StudyError};
pub use schema::Study;

use crate::data::proxy::ProxyRule;
use crate::data::{Catalog, Source};
use locate::LocationIndex;
use validate::Checker;

/// The copy of a study kept in a run folder, with the folder its paths are relative to.
pub fn load_run_copy(run_dir: &Path) -> Result<LoadedStudy, String> {
    let file = run_dir.join("study.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e} (is this a maestro run folder?)", file.display()))?;
    let base = std::fs::read_to_string(run_dir.join("study.base")).map(|b| PathBuf::from(b.trim_end_matches('\n'))).unwrap_or_else(|_| run_dir.to_path_buf());
    LoadedStudy::from_text_in(&file, &text, &base).map_err(|e| e.to_string())
}

/// A study read from a file and checked as far as possible without its dataset.
#[derive(Debug)]
pub struct LoadedStudy {
    pub file: PathBuf,
    pub study: Study,
    pub index: LocationIndex,
    /// The folder relative paths in the study are taken from (absolute when it exists).
    base: PathBuf,
}

impl LoadedStudy {
    pub fn load(file: &Path) -> Result<Self, StudyError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            StudyError::single(
                file,
                Problem { location: None, field: String::new(), message: format!("cannot read the study: {e}"), hint: None },
            )
        })?;
        Self::from_text(file, &text)
    }

    pub fn from_text(file: &Path, text: &str) -> Result<Self, StudyError> {
        let parent = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
        Self::from_text_in(file, text, &std::fs::canonicalize(&parent).unwrap_or(parent))
    }

    /// A study whose relative paths are taken from `base` (a copy kept in a run folder).
    pub fn from_text_in(file: &Path, text: &str, base: &Path) -> Result<Self, StudyError> {
        let (study, index, schema) = parse::parse_all(text);
        let Some(mut study) = study else { return Err(StudyError { file: file.to_path_buf(), problems: schema }) };
        study.expand();
        let loaded = LoadedStudy { file: file.to_path_buf(), study, index, base: base.to_path_buf() };
        let mut c = Checker::new(&loaded.index);
        validate::check_static(&loaded.study, &loaded.dir(), &mut c);
        if !schema.is_empty() {
            // The values of what did parse are checked too: every problem is listed at once,
            // in the order of the file.
            let mut problems = schema;
            problems.extend(c.problems);
            problems.sort_by_key(|p| p.location.map_or((usize::MAX, usize::MAX), |l| (l.line, l.column)));
            return Err(StudyError { file: file.to_path_buf(), problems });
        }
        loaded.finish(c)?;
        Ok(loaded)
    }

    /// The folder relative paths in the study are taken from.
    pub fn dir(&self) -> PathBuf {
        self.base.clone()
    }

    pub fn source(&self) -> Source {
        Source::from_spec(&self.study.dataset, &self.dir()).expect("checked by validation: imagefolder has a root")
    }

    /// Scan the dataset (no decoding) and check the proxies against it.
    pub fn scan(&self) -> Result<Catalog, StudyError> {
        let catalog = self.source().scan().map_err(|e| {
            let field = if self.study.dataset.root.is_some() { "dataset.root" } else { "dataset" };
            StudyError::single(
                &self.file,
                Problem { location: self.index.value(field), field: field.into(), message: e.to_string(), hint: None },
            )
        })?;
        let mut c = Checker::new(&self.index);
        validate::check_against_dataset(&self.study, &catalog, &mut c);
        self.check_batches(&catalog, &mut c);
        self.finish(c)?;
        Ok(catalog)
    }

    /// Every trial needs a whole batch of training images: the search on each proxy, the full
    /// runs on the dataset, each pre-training stage on its share of it. The trainer would refuse
    /// each trial, retried, after the run started.
    fn check_batches(&self, catalog: &Catalog, c: &mut Checker) {
        let s = &self.study;
        let batch = s.finetune.batch_size;
        let full = catalog.train.items.len();
        if batch == 0 || full == 0 {
            return;
        }
        let default = if self.index.key("finetune.batch_size").is_none() { " (the default; the study does not set it)" } else { "" };
        // An epoch must hold one optimizer step: accum_iter micro-batches of batch_size (the
        // loader drops a last partial batch, MAE's engine the micro-batches left over).
        let accum = s.finetune.accum_iter.max(1);
        let (needed, what) = if accum > 1 { (batch * accum, format!("batch_size {batch} x accum_iter {accum}")) } else { (batch, format!("{batch}{default}")) };
        for (i, (name, rule, seed)) in self.proxy_rules().into_iter().enumerate() {
            let (_, train, _) = summary::proxy_counts(self, catalog, &name, &rule, seed);
            if train > 0 && train < needed {
                c.fail_hint(
                    "finetune.batch_size",
                    format!("{what} is more than the {train} training images of proxy `{name}` (proxies[{i}])"),
                    Some(if accum > 1 { "lower finetune.batch_size or finetune.accum_iter, or draw a larger proxy" } else { "lower finetune.batch_size, or draw a larger proxy" }),
                );
            }
        }
        if (s.transfer.full_run || s.transfer.baseline || s.proxies.is_empty()) && full < needed {
            c.fail("finetune.batch_size", format!("{what} is more than the dataset's {full} training images"));
        }
        let counts = catalog.train.class_counts(catalog.num_classes());
        for (i, setup) in s.pretrain_setups.iter().enumerate() {
            let Some(p) = &setup.pretrain else { continue };
            let kept: usize = counts.iter().map(|&n| crate::data::proxy::kept_per_class(n, Some(p.data_fraction))).sum();
            let needed = p.batch_size * p.accum_iter.max(1);
            if p.batch_size > 0 && kept < needed {
                let field = if i < s.listed_setups { format!("pretrain_setups[{i}].pretrain.batch_size") } else { "sample_efficiency.pretrain.batch_size".into() };
                let what = if p.accum_iter > 1 { format!("batch_size {} x accum_iter {}", p.batch_size, p.accum_iter) } else { p.batch_size.to_string() };
                c.fail(field, format!("{what} is more than the {kept} training images setup `{}` pre-trains on", setup.name));
            }
        }
    }

    /// What `run` needs beyond a valid study: a build with the devices' backend.
    pub fn check_runnable(&self) -> Result<(), StudyError> {
        let mut c = Checker::new(&self.index);
        validate::check_devices_built(&self.study, &mut c);
        self.finish(c)
    }

    /// Each proxy's name, rule and seed.
    pub fn proxy_rules(&self) -> Vec<(String, ProxyRule, u64)> {
        self.study
            .proxies
            .iter()
            .map(|p| (p.name.clone(), ProxyRule { classes: p.classes, fraction: p.fraction }, p.seed.unwrap_or(self.study.seed)))
            .collect()
    }

    fn finish(&self, c: Checker) -> Result<(), StudyError> {
        if c.problems.is_empty() { Ok(()) } else { Err(StudyError { file: self.file.clone(), problems: c.problems }) }
    }
}
