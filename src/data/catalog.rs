//! The listing of a dataset: classes and the items of each split, nothing decoded.

use serde::{Deserialize, Serialize};

/// How one item is found in its source: an index into an IDX file, or a path relative to the
/// split's folder (always with `/` separators, so manifests are the same on every machine).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemKey {
    Index(u32),
    Path(String),
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemKey::Index(i) => write!(f, "#{i}"),
            ItemKey::Path(p) => f.write_str(p),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: ItemKey,
    pub label: u32,
}

/// One split (train or val) of a source.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// The split's name in the source: a folder under the root, or `train`/`test` for IDX.
    pub name: String,
    pub items: Vec<Item>,
}

impl Split {
    /// Item indices grouped by label, each group in the split's order.
    pub fn by_class(&self, num_classes: usize) -> Vec<Vec<usize>> {
        let mut groups = vec![Vec::new(); num_classes];
        for (i, item) in self.items.iter().enumerate() {
            groups[item.label as usize].push(i);
        }
        groups
    }

    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for item in &self.items {
            counts[item.label as usize] += 1;
        }
        counts
    }
}

/// A scanned dataset.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Class names; the index is the label (sorted folder names for ImageFolder).
    pub classes: Vec<String>,
    pub train: Split,
    pub val: Split,
    /// Things worth telling the user that do not stop the work (an empty class folder).
    pub warnings: Vec<String>,
}

impl Catalog {
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}
