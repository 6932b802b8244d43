//! A proxy as an ImageFolder tree any PyTorch script can read: `DIR/{train,val}/<class>/...`.
//! ImageFolder sources become symbolic links to the original files; IDX sources become PNGs.
//! Class folders sort in label order, so torchvision assigns the proxy's own labels.

use std::path::{Path, PathBuf};

use super::catalog::ItemKey;
use super::error::DataError;
use super::image::SplitReader;
use super::manifest::Manifest;
use super::source::Source;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    pub train: usize,
    pub val: usize,
}

/// A folder name for each class, sorting in label order.
pub fn class_folders(m: &Manifest) -> Vec<String> {
    match m.source {
        // A class subset keeps source order, so the original (sorted) names still sort right.
        Source::Imagefolder { .. } => m.classes.iter().map(|c| c.name.clone()).collect(),
        Source::FashionMnist { .. } => {
            let width = m.classes.len().saturating_sub(1).to_string().len().max(2);
            m.classes.iter().map(|c| format!("{:0width$}_{}", c.label, slug(&c.name))).collect()
        }
    }
}

fn slug(name: &str) -> String {
    let mut s = String::new();
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            s.push(ch.to_ascii_lowercase());
        } else if ch == '-' {
            // "T-shirt" -> "tshirt"
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_string()
}

pub fn materialize(m: &Manifest, out: &Path) -> Result<Materialized, DataError> {
    if out.exists() && std::fs::read_dir(out).map_err(|e| DataError::io(out, e))?.next().is_some() {
        return Err(DataError::Invalid {
            what: out.display().to_string(),
            reason: "the folder exists and is not empty; choose a new folder so two proxies never mix".into(),
        });
    }
    let folders = class_folders(m);
    let mut done = Materialized::default();
    for (which, split) in [("train", &m.train), ("val", &m.val)] {
        let split_out = out.join(which);
        for f in &folders {
            let d = split_out.join(f);
            std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        }
        let count = match &m.source {
            Source::Imagefolder { .. } => link_files(m, &split.split, &split.items, &folders, &split_out)?,
            Source::FashionMnist { .. } => write_pngs(m, &split.split, &split.items, &folders, &split_out)?,
        };
        if which == "train" {
            done.train = count;
        } else {
            done.val = count;
        }
    }
    Ok(done)
}

fn link_files(
    m: &Manifest,
    split: &str,
    items: &[super::Item],
    folders: &[String],
    split_out: &Path,
) -> Result<usize, DataError> {
    let src_dir = m.source.split_dir(split);
    let src_dir = std::fs::canonicalize(&src_dir).map_err(|e| DataError::io(&src_dir, e))?;
    for it in items {
        let ItemKey::Path(rel) = &it.key else {
            return Err(DataError::BadManifest { path: PathBuf::from(&m.name), reason: format!("item {} is not a path", it.key) });
        };
        // `rel` is `<source class>/<...>/<file>`; keep what follows the class folder.
        let inner = rel.split_once('/').map(|(_, r)| r).unwrap_or(rel);
        let dst = split_out.join(&folders[it.label as usize]).join(inner);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        symlink(&src_dir.join(rel), &dst).map_err(|e| DataError::io(&dst, e))?;
    }
    Ok(items.len())
}

#[cfg(unix)]
fn symlink(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dst)
}

#[cfg(not(unix))]
fn symlink(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::copy(src, dst).map(|_| ())
}

fn write_pngs(m: &Manifest, split: &str, items: &[super::Item], folders: &[String], split_out: &Path) -> Result<usize, DataError> {
    let reader = SplitReader::open(&m.source, split)?;
    for it in items {
        let img = reader.read(&it.key, 1).map_err(|reason| DataError::Invalid { what: reader.describe(&it.key), reason })?;
        let ItemKey::Index(i) = it.key else { unreachable!("IDX items are indices") };
        let dst = split_out.join(&folders[it.label as usize]).join(format!("{i:05}.png"));
        image::GrayImage::from_raw(img.width, img.height, img.pixels)
            .expect("buffer matches its size")
            .save(&dst)
            .map_err(|e| DataError::Invalid { what: dst.display().to_string(), reason: e.to_string() })?;
    }
    Ok(items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("T-shirt/top"), "tshirt_top");
        assert_eq!(slug("Ankle boot"), "ankle_boot");
    }
}
