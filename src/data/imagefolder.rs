//! ImageFolder trees as torchvision reads them: `root/<split>/<class>/**/<image>`.
//!
//! The order matches torchvision's `make_dataset` so a label and an item index mean the same
//! thing here and in a PyTorch script: classes are the split's sub-folders sorted by name;
//! inside a class, folders are visited in sorted path order (`sorted(os.walk(...))`, links
//! followed) and each folder's files in sorted name order. Nothing is opened or decoded.

use std::fs;
use std::path::Path;

use super::catalog::{Catalog, Item, ItemKey, Split};
use super::error::DataError;

/// torchvision's IMG_EXTENSIONS.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

pub fn is_image_name(name: &str) -> bool {
    name.rsplit_once('.')
        .map(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
        .unwrap_or(false)
}

/// The class folders of a split, sorted by name.
pub fn class_names(split_dir: &Path) -> Result<Vec<String>, DataError> {
    if !split_dir.is_dir() {
        return Err(DataError::NotFound {
            what: "split folder",
            path: split_dir.to_path_buf(),
            hint: Some("an ImageFolder dataset needs <root>/<split>/<class>/<image>; set dataset.train / dataset.val to the split folder names".into()),
        });
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(split_dir).map_err(|e| DataError::io(split_dir, e))? {
        let entry = entry.map_err(|e| DataError::io(split_dir, e))?;
        // Follow links, as torchvision's `entry.is_dir()` does.
        if entry.path().is_dir() {
            match entry.file_name().into_string() {
                Ok(n) => names.push(n),
                Err(n) => {
                    return Err(DataError::Invalid {
                        what: split_dir.join(&n).display().to_string(),
                        reason: "class folder name is not valid UTF-8".into(),
                    });
                }
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Every image file under a class folder, relative to the split folder, in torchvision order.
/// Returns the files, the number of non-image files skipped, and the paths of files skipped
/// for a name that is not UTF-8 (manifests and specs hold names as text).
fn class_files(split_dir: &Path, class: &str) -> Result<(Vec<String>, usize, Vec<String>), DataError> {
    // (folder relative to split_dir, its sorted image names); sorted by folder path string.
    let mut folders: Vec<(String, Vec<String>)> = Vec::new();
    let mut skipped = 0;
    let mut not_utf8 = Vec::new();
    let mut stack = vec![class.to_string()];
    while let Some(rel) = stack.pop() {
        let dir = split_dir.join(&rel);
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let name = match entry.file_name().into_string() {
                Ok(n) => n,
                Err(_) => {
                    not_utf8.push(entry.path().display().to_string());
                    continue;
                }
            };
            let ft = entry.file_type().map_err(|e| DataError::io(entry.path(), e))?;
            let is_dir = if ft.is_symlink() { entry.path().is_dir() } else { ft.is_dir() };
            if is_dir {
                stack.push(format!("{rel}/{name}"));
            } else if is_image_name(&name) {
                files.push(name);
            } else {
                skipped += 1;
            }
        }
        files.sort();
        folders.push((rel, files));
    }
    // Python sorts os.walk's (dirpath, ...) tuples by dirpath: compare the joined path strings.
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    let files = folders.into_iter().flat_map(|(rel, files)| files.into_iter().map(move |f| format!("{rel}/{f}"))).collect();
    Ok((files, skipped, not_utf8))
}

fn scan_split(split_dir: &Path, name: &str, classes: &[String], warnings: &mut Vec<String>) -> Result<Split, DataError> {
    let mut items = Vec::new();
    let mut skipped_total = 0;
    let mut not_utf8_total = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        if !split_dir.join(class).is_dir() {
            warnings.push(format!("{}: split `{name}` has no folder for class `{class}`", split_dir.display()));
            continue;
        }
        let (files, skipped, not_utf8) = class_files(split_dir, class)?;
        skipped_total += skipped;
        not_utf8_total.extend(not_utf8);
        if files.is_empty() {
            warnings.push(format!("{}: class folder is empty (no image files)", split_dir.join(class).display()));
        }
        items.extend(files.into_iter().map(|f| Item { key: ItemKey::Path(f), label: label as u32 }));
    }
    if let Some(first) = not_utf8_total.first() {
        warnings.push(format!(
            "{}: {} files were skipped because their names are not valid UTF-8 (first: {first}); rename them to keep them (torchvision would read them, so its item indices differ from here on)",
            split_dir.display(),
            not_utf8_total.len()
        ));
    }
    if skipped_total > 0 {
        warnings.push(format!(
            "{}: {skipped_total} files without an image extension ({}) were skipped",
            split_dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        ));
    }
    Ok(Split { name: name.into(), items })
}

/// Scan both splits. The training split's class folders define the labels; the validation
/// split must not have classes the training split lacks.
pub fn scan(root: &Path, train: &str, val: &str) -> Result<Catalog, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound { what: "dataset root", path: root.to_path_buf(), hint: None });
    }
    let train_dir = root.join(train);
    let classes = class_names(&train_dir)?;
    if classes.is_empty() {
        return Err(DataError::NoClasses { path: train_dir });
    }
    let val_dir = root.join(val);
    for c in class_names(&val_dir)? {
        if classes.binary_search(&c).is_err() {
            return Err(DataError::UnknownValClass { path: val_dir.clone(), class: c });
        }
    }
    let mut warnings = Vec::new();
    let train_split = scan_split(&train_dir, train, &classes, &mut warnings)?;
    let val_split = scan_split(&val_dir, val, &classes, &mut warnings)?;
    Ok(Catalog { classes, train: train_split, val: val_split, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn order_and_labels_follow_torchvision() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["train/b/2.png", "train/b/1.JPG", "train/a/z.jpg", "train/a/sub/0.png", "train/a/notes.txt", "val/a/v.png"] {
            touch(&r.join(f));
        }
        fs::create_dir_all(r.join("train/c")).unwrap();
        let cat = scan(r, "train", "val").unwrap();
        assert_eq!(cat.classes, vec!["a", "b", "c"]);
        let keys: Vec<String> = cat.train.items.iter().map(|i| i.key.to_string()).collect();
        assert_eq!(keys, vec!["a/z.jpg", "a/sub/0.png", "b/1.JPG", "b/2.png"]);
        assert_eq!(cat.train.items[2].label, 1);
        assert!(cat.warnings.iter().any(|w| w.contains("empty")), "{:?}", cat.warnings);
        assert!(cat.warnings.iter().any(|w| w.contains("1 files without an image extension")));
        assert_eq!(cat.val.items.len(), 1);
    }

    #[test]
    fn val_class_unknown_to_train_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("train/a/1.png"));
        touch(&d.path().join("val/zz/1.png"));
        assert!(matches!(scan(d.path(), "train", "val"), Err(DataError::UnknownValClass { .. })));
    }
}
