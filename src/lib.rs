//! maestro: find the fine-tuning recipe (above all the layer-wise LR decay) that unlocks a
//! lightly pre-trained Masked Autoencoder, by searching it on cheap proxy datasets.
//!
//! # Layout
//!
//! - [`study`]: the YAML study format, its defaults (the paper's Table 1) and validation.
//! - [`data`]: dataset sources (ImageFolder, Fashion-MNIST IDX), scanning, image reading,
//!   proxy subsets and their manifests.
//! - [`model`]: ViT shapes (and, with the trainer, the burn modules).
//! - [`device`]: the devices a trial can run on and what this build can see.
//!
//! Data flows one way: study -> plan -> trials -> analysis -> report (see docs/design.md).

/// `eprintln!` that never panics, for every module below. std's panics when stderr cannot be
/// written (a log file on a full disk, a closed terminal): a runner must go on, since its
/// journal, not its messages, is what records the run.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod analysis;
pub mod app;
pub mod bench;
pub mod data;
pub mod device;
pub mod error;
pub mod model;
pub mod orchestrate;
pub mod report;
pub mod study;
pub mod train;
#[cfg(feature = "tch")]
mod torch_ops;

pub use error::Error;
