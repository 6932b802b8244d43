//! Reading one image, and counting the ones that cannot be read instead of stopping.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::catalog::ItemKey;
use super::error::DataError;
use super::idx;
use super::source::Source;

/// A decoded image, HWC, u8.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub pixels: Vec<u8>,
}

/// Decodes the items of one split of a source.
pub enum SplitReader {
    /// ImageFolder: files under the split folder.
    Files { dir: PathBuf },
    /// IDX: the whole split held in memory (47 MB for Fashion-MNIST's train split).
    Idx { pixels: Vec<u8>, height: u32, width: u32 },
}

impl SplitReader {
    pub fn open(source: &Source, split: &str) -> Result<Self, DataError> {
        match source {
            Source::Imagefolder { .. } => Ok(SplitReader::Files { dir: source.split_dir(split) }),
            Source::FashionMnist { root } => {
                let (images, _) = idx::files_of(root, split);
                let arr = idx::read_idx(&images, 3)?;
                Ok(SplitReader::Idx { height: arr.dims[1], width: arr.dims[2], pixels: arr.data })
            }
        }
    }

    /// Where an item lives, for messages.
    pub fn describe(&self, key: &ItemKey) -> String {
        match (self, key) {
            (SplitReader::Files { dir }, ItemKey::Path(p)) => dir.join(p).display().to_string(),
            (_, k) => format!("item {k}"),
        }
    }

    /// Decode one item. `channels` (1 or 3) is what the model wants: colour images are
    /// converted to grayscale or back as needed.
    pub fn read(&self, key: &ItemKey, channels: u8) -> Result<Image, String> {
        match (self, key) {
            (SplitReader::Idx { pixels, height, width }, ItemKey::Index(i)) => {
                let n = (*height * *width) as usize;
                let start = *i as usize * n;
                let gray = pixels.get(start..start + n).ok_or_else(|| format!("index {i} is past the end of the IDX file"))?;
                let pixels = if channels == 1 { gray.to_vec() } else { gray.iter().flat_map(|&g| [g, g, g]).collect() };
                Ok(Image { width: *width, height: *height, channels, pixels })
            }
            (SplitReader::Files { dir }, ItemKey::Path(p)) => decode_file(&dir.join(p), channels),
            (_, k) => Err(format!("item {k} does not fit this source")),
        }
    }
}

pub fn decode_file(path: &Path, channels: u8) -> Result<Image, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let img = image::load_from_memory(&bytes).map_err(|e| e.to_string())?;
    let (width, height) = (img.width(), img.height());
    let pixels = if channels == 1 { img.into_luma8().into_raw() } else { img.into_rgb8().into_raw() };
    Ok(Image { width, height, channels, pixels })
}

/// Items that could not be read: counted, the first few kept with their reason.
#[derive(Debug, Default)]
pub struct ReadFailures {
    inner: Mutex<(usize, Vec<(String, String)>)>,
}

impl ReadFailures {
    const KEEP: usize = 10;

    pub fn record(&self, what: String, why: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += 1;
        if g.1.len() < Self::KEEP {
            g.1.push((what, why));
        }
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// "3 images could not be read and were skipped; first: ..." or None when all were read.
    pub fn report(&self) -> Option<String> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == 0 {
            return None;
        }
        let mut s = format!("{} image(s) could not be read and were skipped; the first:", g.0);
        for (what, why) in &g.1 {
            s.push_str(&format!("\n  {what}: {why}"));
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_files_are_counted_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.png");
        image::GrayImage::from_pixel(5, 4, image::Luma([7])).save(&good).unwrap();
        std::fs::write(d.path().join("bad.png"), b"not a png").unwrap();
        let reader = SplitReader::Files { dir: d.path().to_path_buf() };
        let failures = ReadFailures::default();
        let mut ok = 0;
        for name in ["good.png", "bad.png", "missing.jpg"] {
            let key = ItemKey::Path(name.into());
            match reader.read(&key, 3) {
                Ok(img) => {
                    assert_eq!((img.width, img.height, img.channels, img.pixels.len()), (5, 4, 3, 60));
                    ok += 1;
                }
                Err(e) => failures.record(reader.describe(&key), e),
            }
        }
        assert_eq!((ok, failures.count()), (1, 2));
        let report = failures.report().unwrap();
        assert!(report.contains("bad.png") && report.contains("missing.jpg"), "{report}");
    }
}
