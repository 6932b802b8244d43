use std::path::PathBuf;

/// What can go wrong reading a dataset or a manifest. Every variant names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("{path}: {what} does not exist{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    NotFound { what: &'static str, path: PathBuf, hint: Option<String> },

    #[error(
        "Fashion-MNIST is not installed at {root} (missing {missing})\n  hint: install Debian's package: sudo apt-get install dataset-fashion-mnist\n        or point the study at another copy: dataset: {{ kind: fashion-mnist, root: /path/to/fashion-mnist }}"
    )]
    FashionMnistMissing { root: PathBuf, missing: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: not a valid IDX file: {reason}")]
    BadIdx { path: PathBuf, reason: String },

    #[error("{path}: no class folders found (expected <split>/<class>/<image>, as torchvision's ImageFolder reads)")]
    NoClasses { path: PathBuf },

    #[error("{path}: class folder `{class}` is not among the training split's classes")]
    UnknownValClass { path: PathBuf, class: String },

    #[error("{path}: {reason}")]
    BadManifest { path: PathBuf, reason: String },

    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}
