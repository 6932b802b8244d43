//! Fashion-MNIST in the IDX.gz files of Debian's `dataset-fashion-mnist`.
//!
//! An IDX file is a big-endian header (magic 0x0000_08_NN, where NN is the number of
//! dimensions, then one u32 per dimension) followed by the raw u8 values.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::catalog::{Catalog, Item, ItemKey, Split};
use super::error::DataError;

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The IDX split names: `train` (60,000) and `test` (10,000, the validation split).
pub fn files_of(root: &Path, split: &str) -> (PathBuf, PathBuf) {
    let prefix = if split == "train" { "train" } else { "t10k" };
    (
        root.join(format!("{prefix}-images-idx3-ubyte.gz")),
        root.join(format!("{prefix}-labels-idx1-ubyte.gz")),
    )
}

fn check_installed(root: &Path) -> Result<(), DataError> {
    let missing: Vec<String> = ["train", "test"]
        .iter()
        .flat_map(|s| {
            let (i, l) = files_of(root, s);
            [i, l]
        })
        .filter(|p| !p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DataError::FashionMnistMissing { root: root.to_path_buf(), missing: missing.join(", ") })
    }
}

/// Read the labels of both splits and check the image headers agree; no pixel is read.
pub fn scan_fashion_mnist(root: &Path) -> Result<Catalog, DataError> {
    check_installed(root)?;
    let split = |name: &str| -> Result<Split, DataError> {
        let (images, labels) = files_of(root, name);
        let labels_data = read_idx(&labels, 1)?;
        let dims = read_idx_header(&images, 3)?;
        if dims[0] as usize != labels_data.data.len() {
            return Err(DataError::BadIdx {
                path: images,
                reason: format!("{} images but {} labels", dims[0], labels_data.data.len()),
            });
        }
        let items = labels_data
            .data
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                if l as usize >= FASHION_MNIST_CLASSES.len() {
                    Err(DataError::BadIdx { path: labels.clone(), reason: format!("label {l} at #{i} is not a class 0..9") })
                } else {
                    Ok(Item { key: ItemKey::Index(i as u32), label: l as u32 })
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Split { name: name.into(), items })
    };
    Ok(Catalog {
        classes: FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        train: split("train")?,
        val: split("test")?,
        warnings: Vec::new(),
    })
}

/// A decoded IDX array.
pub struct IdxArray {
    pub dims: Vec<u32>,
    pub data: Vec<u8>,
}

fn open_gz(path: &Path) -> Result<impl Read, DataError> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(GzDecoder::new(BufReader::new(f)))
}

fn header(r: &mut impl Read, path: &Path, ndims: u8) -> Result<Vec<u32>, DataError> {
    let bad = |reason: String| DataError::BadIdx { path: path.to_path_buf(), reason };
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|e| bad(format!("cannot read the header: {e}")))?;
    if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 {
        return Err(bad(format!("magic {:02x?} is not an unsigned-byte IDX magic", magic)));
    }
    if magic[3] != ndims {
        return Err(bad(format!("{} dimensions, expected {ndims}", magic[3])));
    }
    (0..ndims)
        .map(|_| {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|e| bad(format!("truncated header: {e}")))?;
            Ok(u32::from_be_bytes(b))
        })
        .collect()
}

pub fn read_idx_header(path: &Path, ndims: u8) -> Result<Vec<u32>, DataError> {
    header(&mut open_gz(path)?, path, ndims)
}

/// Read a whole IDX.gz file.
pub fn read_idx(path: &Path, ndims: u8) -> Result<IdxArray, DataError> {
    let mut r = open_gz(path)?;
    let dims = header(&mut r, path, ndims)?;
    let len: usize = dims.iter().map(|&d| d as usize).product();
    let mut data = Vec::with_capacity(len);
    r.read_to_end(&mut data).map_err(|e| DataError::BadIdx { path: path.into(), reason: format!("cannot decompress: {e}") })?;
    if data.len() != len {
        return Err(DataError::BadIdx {
            path: path.into(),
            reason: format!("{} bytes of data, the header {dims:?} says {len}", data.len()),
        });
    }
    Ok(IdxArray { dims, data })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    /// Write a tiny Fashion-MNIST-shaped dataset: `per_class` train and `per_class / 2 + 1`
    /// test images per class, pixel value = label * 20 + index.
    pub fn write_fake_fashion_mnist(root: &Path, per_class: usize) {
        std::fs::create_dir_all(root).unwrap();
        for (split, n) in [("train", per_class), ("test", per_class / 2 + 1)] {
            let labels: Vec<u8> = (0..n * 10).map(|i| (i % 10) as u8).collect();
            let images: Vec<u8> = labels.iter().enumerate().flat_map(|(i, &l)| vec![l * 20 + (i % 7) as u8; 784]).collect();
            let (ip, lp) = files_of(root, split);
            let write = |path: PathBuf, magic: u8, dims: &[u32], data: &[u8]| {
                let mut enc = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
                enc.write_all(&[0, 0, 8, magic]).unwrap();
                for d in dims {
                    enc.write_all(&d.to_be_bytes()).unwrap();
                }
                enc.write_all(data).unwrap();
                enc.finish().unwrap();
            };
            write(ip, 3, &[(n * 10) as u32, 28, 28], &images);
            write(lp, 1, &[(n * 10) as u32], &labels);
        }
    }

    #[test]
    fn scans_labels_without_pixels() {
        let dir = tempfile::tempdir().unwrap();
        write_fake_fashion_mnist(dir.path(), 4);
        let cat = scan_fashion_mnist(dir.path()).unwrap();
        assert_eq!(cat.train.items.len(), 40);
        assert_eq!(cat.val.items.len(), 30);
        assert_eq!(cat.train.class_counts(10), vec![4; 10]);
    }

    #[test]
    fn missing_files_say_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let msg = scan_fashion_mnist(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
    }
}
