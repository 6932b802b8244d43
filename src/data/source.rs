//! A dataset source as a study or a manifest names it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Catalog, DataError, idx, imagefolder};
use crate::study::schema::{DatasetKind, DatasetSpec};

/// Debian's `dataset-fashion-mnist` installs here.
pub const FASHION_MNIST_DEFAULT_ROOT: &str = "/usr/share/datasets/fashion-mnist";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    Imagefolder { root: PathBuf, train: String, val: String },
    FashionMnist { root: PathBuf },
}

impl Source {
    pub fn fashion_mnist() -> Self {
        Source::FashionMnist { root: PathBuf::from(FASHION_MNIST_DEFAULT_ROOT) }
    }

    /// The source a study's `dataset` block names; relative roots are taken from `base`
    /// (the study file's folder). None when an ImageFolder has no root.
    pub fn from_spec(spec: &DatasetSpec, base: &Path) -> Option<Self> {
        let resolve = |p: &PathBuf| if p.is_relative() { base.join(p) } else { p.clone() };
        match spec.kind {
            DatasetKind::Imagefolder => Some(Source::Imagefolder {
                root: resolve(spec.root.as_ref()?),
                train: spec.train.clone(),
                val: spec.val.clone(),
            }),
            DatasetKind::FashionMnist => Some(Source::FashionMnist {
                root: spec.root.as_ref().map(resolve).unwrap_or_else(|| FASHION_MNIST_DEFAULT_ROOT.into()),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        match self {
            Source::Imagefolder { root, .. } | Source::FashionMnist { root } => root,
        }
    }

    /// List classes and items without decoding any image.
    pub fn scan(&self) -> Result<Catalog, DataError> {
        match self {
            Source::Imagefolder { root, train, val } => imagefolder::scan(root, train, val),
            Source::FashionMnist { root } => idx::scan_fashion_mnist(root),
        }
    }

    /// Where a split's items are: the split folder for ImageFolder, the root for IDX.
    pub fn split_dir(&self, split: &str) -> PathBuf {
        match self {
            Source::Imagefolder { root, .. } => root.join(split),
            Source::FashionMnist { root } => root.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Imagefolder { root, train, val } => {
                format!("ImageFolder {} (train: {train}, val: {val})", root.display())
            }
            Source::FashionMnist { root } => format!("Fashion-MNIST {}", root.display()),
        }
    }

    /// A short identity for file names and trial ids.
    pub fn short_name(&self) -> String {
        match self {
            Source::Imagefolder { root, .. } => {
                root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "imagefolder".into())
            }
            Source::FashionMnist { .. } => "fashion-mnist".into(),
        }
    }
}
