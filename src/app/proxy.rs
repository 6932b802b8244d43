//! `maestro proxy build` and `maestro proxy stats`.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::data::image::{ReadFailures, SplitReader};
use crate::data::manifest::Manifest;
use crate::data::materialize::{class_folders, materialize};
use crate::data::proxy::{self, ProxyRule};
use crate::data::{Catalog, Source};
use crate::study::LoadedStudy;

/// One proxy to build.
pub struct BuildRequest {
    pub name: String,
    pub rule: ProxyRule,
    pub seed: u64,
    pub out: PathBuf,
    pub materialize: Option<PathBuf>,
}

/// Build proxies from one scanned source, printing a line per proxy.
pub fn build_all(source: &Source, catalog: &Catalog, requests: &[BuildRequest]) -> Result<Vec<Manifest>, Error> {
    for w in &catalog.warnings {
        eprintln!("warning: {w}");
    }
    let mut out = Vec::new();
    for r in requests {
        if let Some(k) = r.rule.classes.filter(|k| *k < 2) {
            return Err(Error::Usage(format!("--classes must be at least 2, got {k}: a proxy of one class scores 100% at any LLRD")));
        }
        let m = proxy::build(&r.name, source, catalog, r.rule, r.seed)?;
        if m.val.items.is_empty() {
            return Err(Error::Usage(format!(
                "{}: the {} drawn classes have no validation images in `{}`; a proxy is scored on them",
                r.name,
                m.num_classes(),
                m.val.split
            )));
        }
        let (train, val) = (m.train.class_counts(m.num_classes()), m.val.class_counts(m.num_classes()));
        let empty: Vec<String> = m
            .classes
            .iter()
            .zip(class_folders(&m))
            .filter(|(c, _)| train[c.label as usize] == 0 || val[c.label as usize] == 0)
            .map(|(c, folder)| format!("{folder} ({} train, {} val)", train[c.label as usize], val[c.label as usize]))
            .collect();
        if !empty.is_empty() {
            // torchvision's ImageFolder refuses a class folder with no image in it.
            eprintln!("warning: {}: {} of its classes have no image in a split: {}", r.name, empty.len(), empty.join(", "));
        }
        let unchanged = Manifest::read(&r.out).map(|old| old.to_canonical_string() == m.to_canonical_string()).unwrap_or(false);
        m.write(&r.out)?;
        println!(
            "{}: {} ({}, seed {}): {} classes, {} train / {} val images, {}{}",
            r.out.display(),
            r.name,
            r.rule.describe(),
            r.seed,
            m.num_classes(),
            m.train.items.len(),
            m.val.items.len(),
            m.content_hash,
            if unchanged { " (unchanged)" } else { "" }
        );
        if let Some(dir) = &r.materialize {
            let done = materialize(&m, dir)?;
            println!("  materialized {} train + {} val images under {}", done.train, done.val, dir.display());
        }
        out.push(m);
    }
    Ok(out)
}

/// `proxy build --study`: every proxy of a study, into `out_dir/<name>.manifest`.
pub fn build_for_study(file: &Path, out_dir: &Path, materialize_dir: Option<&Path>) -> Result<(), Error> {
    let loaded = LoadedStudy::load(file)?;
    if loaded.study.proxies.is_empty() {
        return Err(Error::Usage(format!("{}: the study has no proxies to build", file.display())));
    }
    let catalog = loaded.scan()?;
    let requests: Vec<BuildRequest> = loaded
        .proxy_rules()
        .into_iter()
        .map(|(name, rule, seed)| BuildRequest {
            out: out_dir.join(format!("{name}.manifest")),
            materialize: materialize_dir.map(|d| d.join(&name)),
            name,
            rule,
            seed,
        })
        .collect();
    build_all(&loaded.source(), &catalog, &requests)?;
    Ok(())
}

/// `proxy stats MANIFEST`: per-class counts, and with `decode` every image read once.
pub fn stats(path: &Path, decode: bool) -> Result<(), Error> {
    let m = Manifest::read(path)?;
    println!("{} ({}): {}, seed {}, {}", m.name, m.source.describe(), m.rule.describe(), m.seed, m.content_hash);
    let train = m.train.class_counts(m.num_classes());
    let val = m.val.class_counts(m.num_classes());
    let folders = class_folders(&m);
    println!("  {:>5}  {:>6}  {:<24} {:>8} {:>8}", "label", "source", "class", "train", "val");
    for (c, folder) in m.classes.iter().zip(&folders) {
        let label = c.label as usize;
        println!("  {:>5}  {:>6}  {:<24} {:>8} {:>8}", c.label, c.source_label, folder, train[label], val[label]);
    }
    println!("  {:>5}  {:>6}  {:<24} {:>8} {:>8}", "", "", "total", m.train.items.len(), m.val.items.len());
    if decode {
        let failures = ReadFailures::default();
        let mut ok = 0usize;
        for split in [&m.train, &m.val] {
            let reader = SplitReader::open(&m.source, &split.split)?;
            for it in &split.items {
                match reader.read(&it.key, 3) {
                    Ok(_) => ok += 1,
                    Err(e) => failures.record(reader.describe(&it.key), e),
                }
            }
        }
        println!("  decoded {ok} images");
        if let Some(report) = failures.report() {
            eprintln!("warning: {report}");
        }
    }
    Ok(())
}
