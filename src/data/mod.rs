//! Datasets: where images come from, how a split is listed without decoding it, how one image
//! is read, and the proxy subsets built from them.
//!
//! A source (an ImageFolder tree or Fashion-MNIST's IDX files) is scanned into a [`Catalog`]:
//! class names and, per split, every item's key and label, with no image decoded. Proxy
//! subsets select from a catalog and are written as manifests; readers decode items on demand
//! and count the ones that fail instead of stopping.

pub mod augment;
pub mod catalog;
pub mod error;
pub mod idx;
pub mod image;
pub mod imagefolder;
pub mod loader;
pub mod manifest;
pub mod materialize;
pub mod proxy;
pub mod source;

pub use catalog::{Catalog, Item, ItemKey, Split};
pub use error::DataError;
pub use source::Source;
