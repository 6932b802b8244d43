//! Proxy manifests: what a proxy is (source, seed, rule, class map, items) in a file that is
//! byte-identical whenever the same proxy is built again, on any machine.
//!
//! The file is JSON with one item per line, so a diff of two manifests reads as a list of
//! images. `content_hash` is the SHA-256 of everything but the source's root folder (which
//! says where the data sits on this machine, not what was drawn); loading a manifest checks it.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::{Item, ItemKey};
use super::error::DataError;
use super::proxy::ProxyRule;
use super::source::Source;

pub const FORMAT: &str = "maestro.proxy-manifest/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassEntry {
    /// The label in the proxy, 0..K-1.
    pub label: u32,
    /// The label in the source dataset.
    pub source_label: u32,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSplit {
    /// The split's name in the source.
    pub split: String,
    pub items: Vec<Item>,
}

impl ManifestSplit {
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for it in &self.items {
            counts[it.label as usize] += 1;
        }
        counts
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub source: Source,
    pub seed: u64,
    pub rule: ProxyRule,
    pub classes: Vec<ClassEntry>,
    pub train: ManifestSplit,
    pub val: ManifestSplit,
    /// `sha256:<hex>`.
    pub content_hash: String,
}

/// The on-disk shape, for reading.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: String,
    name: String,
    source: Source,
    seed: u64,
    rule: ProxyRule,
    classes: Vec<ClassEntry>,
    train: RawSplit,
    val: RawSplit,
    content_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    split: String,
    count: usize,
    items: Vec<(ItemKey, u32)>,
}

impl Manifest {
    pub fn new(
        name: String,
        source: Source,
        seed: u64,
        rule: ProxyRule,
        classes: Vec<ClassEntry>,
        train: ManifestSplit,
        val: ManifestSplit,
    ) -> Self {
        let mut m = Manifest { name, source, seed, rule, classes, train, val, content_hash: String::new() };
        m.content_hash = m.compute_hash();
        m
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn compute_hash(&self) -> String {
        let mut anonymous = self.source.clone();
        match &mut anonymous {
            Source::Imagefolder { root, .. } | Source::FashionMnist { root } => *root = Default::default(),
        }
        let body = self.body(&anonymous);
        format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes())))
    }

    /// Everything but the hash and the closing brace.
    fn body(&self, source: &Source) -> String {
        let mut s = String::new();
        s.push_str("{\n");
        let _ = writeln!(s, "  \"format\": {},", js(&FORMAT));
        let _ = writeln!(s, "  \"name\": {},", js(&self.name));
        let _ = writeln!(s, "  \"source\": {},", js(source));
        let _ = writeln!(s, "  \"seed\": {},", self.seed);
        let _ = writeln!(s, "  \"rule\": {},", js(&self.rule));
        s.push_str("  \"classes\": [\n");
        for (i, c) in self.classes.iter().enumerate() {
            let sep = if i + 1 < self.classes.len() { "," } else { "" };
            let _ = writeln!(s, "    {}{sep}", js(c));
        }
        s.push_str("  ],\n");
        for (label, split) in [("train", &self.train), ("val", &self.val)] {
            let _ = writeln!(
                s,
                "  \"{label}\": {{\"split\": {}, \"count\": {}, \"items\": [",
                js(&split.split),
                split.items.len()
            );
            for (i, it) in split.items.iter().enumerate() {
                let sep = if i + 1 < split.items.len() { "," } else { "" };
                let _ = writeln!(s, "    [{}, {}]{sep}", js(&it.key), it.label);
            }
            s.push_str("  ]},\n");
        }
        s
    }

    /// The file's exact text.
    pub fn to_canonical_string(&self) -> String {
        let mut s = self.body(&self.source);
        let _ = writeln!(s, "  \"content_hash\": \"{}\"", self.content_hash);
        s.push_str("}\n");
        s
    }

    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        // Write beside, then rename: a crash never leaves half a manifest.
        let tmp = path.with_extension("manifest.tmp");
        std::fs::write(&tmp, self.to_canonical_string()).map_err(|e| DataError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
    }

    /// Where to read this proxy's images: the manifest says which images were drawn, the
    /// study's `current` dataset where that dataset sits now (the root is not part of the
    /// manifest's hash, so a manifest moves with its data). When `current`'s folder does not
    /// exist but the one the manifest was built from does (`--dataset fashion-mnist`, which
    /// means the default folder, with a manifest built elsewhere), the recorded folder. Err
    /// when `current` is another kind of dataset or an ImageFolder with other split folders.
    pub fn source_at(&self, current: &Source) -> Result<Source, String> {
        let moved = match (&self.source, current) {
            (Source::FashionMnist { .. }, Source::FashionMnist { root }) => Source::FashionMnist { root: root.clone() },
            (Source::Imagefolder { train, val, .. }, Source::Imagefolder { root, train: t, val: v }) if train == t && val == v => {
                Source::Imagefolder { root: root.clone(), train: train.clone(), val: val.clone() }
            }
            (mine, _) => {
                return Err(format!(
                    "the manifest is of another dataset ({}) than the study's ({})",
                    mine.describe(),
                    current.describe()
                ));
            }
        };
        Ok(if !moved.root().is_dir() && self.source.root().is_dir() { self.source.clone() } else { moved })
    }

    /// Read a manifest and check its hash and counts.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let bad = |reason: String| DataError::BadManifest { path: path.to_path_buf(), reason };
        // Not a folder or a device (reading /dev/zero would never end).
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(bad("not a regular file".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::NotFound {
                what: "proxy manifest",
                path: path.to_path_buf(),
                hint: Some("build it with `maestro proxy build` (or `--study STUDY.yaml` for all of a study's proxies)".into()),
            },
            _ => DataError::io(path, e),
        })?;
        let raw: RawManifest = serde_json::from_str(&text).map_err(|e| bad(format!("not a maestro manifest: {e}")))?;
        if raw.format != FORMAT {
            return Err(bad(format!("format `{}` is not `{FORMAT}`", raw.format)));
        }
        let split = |r: RawSplit, which: &str| -> Result<ManifestSplit, DataError> {
            if r.count != r.items.len() {
                return Err(bad(format!("{which}.count is {} but {} items are listed", r.count, r.items.len())));
            }
            if let Some((k, l)) = r.items.iter().find(|(_, l)| *l as usize >= raw.classes.len()) {
                return Err(bad(format!("{which} item {k} has label {l}, but there are {} classes", raw.classes.len())));
            }
            Ok(ManifestSplit { split: r.split, items: r.items.into_iter().map(|(key, label)| Item { key, label }).collect() })
        };
        let m = Manifest {
            name: raw.name,
            source: raw.source,
            seed: raw.seed,
            rule: raw.rule,
            train: split(raw.train, "train")?,
            val: split(raw.val, "val")?,
            classes: raw.classes,
            content_hash: raw.content_hash,
        };
        let expected = m.compute_hash();
        if expected != m.content_hash {
            return Err(bad(format!(
                "content hash {} does not match its content ({expected}): the file was edited or is damaged; rebuild it with `maestro proxy build`",
                m.content_hash
            )));
        }
        Ok(m)
    }
}

/// serde_json of one value on one line.
fn js<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("manifest values always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest::new(
            "p".into(),
            Source::Imagefolder { root: "/data/x".into(), train: "train".into(), val: "val".into() },
            3,
            ProxyRule { classes: Some(1), fraction: Some(0.1) },
            vec![ClassEntry { label: 0, source_label: 4, name: "n0144\"x".into() }],
            ManifestSplit { split: "train".into(), items: vec![Item { key: ItemKey::Path("a/b.jpg".into()), label: 0 }] },
            ManifestSplit { split: "val".into(), items: vec![] },
        )
    }

    #[test]
    fn round_trips_and_detects_edits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.manifest");
        let m = sample();
        m.write(&p).unwrap();
        assert_eq!(Manifest::read(&p).unwrap(), m);
        let text = std::fs::read_to_string(&p).unwrap().replace("a/b.jpg", "a/c.jpg");
        std::fs::write(&p, text).unwrap();
        let e = Manifest::read(&p).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
    }

    #[test]
    fn images_are_read_where_the_study_says_the_data_sits_now() {
        let m = sample();
        let moved = Source::Imagefolder { root: "/mnt/x".into(), train: "train".into(), val: "val".into() };
        assert_eq!(m.source_at(&moved).unwrap(), moved);
        let other_splits = Source::Imagefolder { root: "/data/x".into(), train: "training".into(), val: "val".into() };
        let e = m.source_at(&other_splits).unwrap_err();
        assert!(e.contains("another dataset") && e.contains("training"), "{e}");
        let e = m.source_at(&Source::fashion_mnist()).unwrap_err();
        assert!(e.contains("ImageFolder /data/x") && e.contains("Fashion-MNIST"), "{e}");
        // The study's folder is missing but the recorded one is there: the recorded one.
        let d = tempfile::tempdir().unwrap();
        let mut built_here = sample();
        built_here.source = Source::Imagefolder { root: d.path().into(), train: "train".into(), val: "val".into() };
        assert_eq!(built_here.source_at(&moved).unwrap(), built_here.source);
        let present = Source::Imagefolder { root: d.path().join("."), train: "train".into(), val: "val".into() };
        assert_eq!(built_here.source_at(&present).unwrap(), present);
    }

    #[test]
    fn hash_ignores_where_the_data_sits() {
        let a = sample();
        let mut b = sample();
        b.source = Source::Imagefolder { root: "/elsewhere".into(), train: "train".into(), val: "val".into() };
        b.content_hash = b.compute_hash();
        assert_eq!(a.content_hash, b.content_hash);
    }
}
