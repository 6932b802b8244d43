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

impl Image {
    /// An image of the same size and channels holding `pixels`.
    pub fn with_pixels(&self, pixels: Vec<u8>) -> Image {
        debug_assert_eq!(pixels.len(), self.pixels.len());
        Image { width: self.width, height: self.height, channels: self.channels, pixels }
    }
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
    if image::guess_format(&bytes).is_ok_and(|f| f == image::ImageFormat::Jpeg) && !jpeg_is_complete(&bytes) {
        // The decoder would fill the missing rows with grey; PIL refuses ("image file is
        // truncated"), and so do we: the image is counted as unreadable.
        return Err("truncated JPEG: no end-of-image marker after its last scan".into());
    }
    let img = image::load_from_memory(&bytes).map_err(|e| e.to_string())?;
    let (width, height) = (img.width(), img.height());
    let pixels = match channels {
        1 if img.color().has_color() => to_gray(&img.into_rgb8().into_raw()),
        1 => img.into_luma8().into_raw(),
        _ => img.into_rgb8().into_raw(),
    };
    Ok(Image { width, height, channels, pixels })
}

/// Whether a JPEG stream ends its last scan: no start-of-scan (FF DA) follows its last
/// end-of-image marker (FF D9), and there is one. Entropy-coded data never holds FF D9 (an FF
/// there is followed by 00 or a restart marker), so a file cut inside a scan has no end marker
/// after that scan (an EXIF thumbnail's comes before it). Searched from the end, where a whole
/// file's end marker is: a few bytes, not the file.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    match bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]) {
        Some(eoi) => !bytes[eoi..].windows(2).any(|w| w == [0xFF, 0xDA]),
        None => false,
    }
}

/// RGB to grayscale as PIL's `convert('L')` (ITU-R 601-2 luma, in PIL's fixed point), which
/// torchvision's `Grayscale` also uses; the image crate's `into_luma8` weighs by Rec. 709.
fn to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3).map(|p| ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8).collect()
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

    /// Colour to grayscale as PIL's convert('L'): these values are PIL 13's for the same pixels
    /// (the image crate's Rec. 709 weights give 54, 182, 18, ... instead).
    #[test]
    fn grayscale_is_pils_convert_l() {
        let d = tempfile::tempdir().unwrap();
        let px: [[u8; 3]; 8] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30], [128, 128, 128], [1, 2, 3], [250, 251, 252], [77, 0, 199]];
        let img = image::RgbImage::from_fn(8, 1, |x, _| image::Rgb(px[x as usize]));
        img.save(d.path().join("c.png")).unwrap();
        let got = decode_file(&d.path().join("c.png"), 1).unwrap().pixels;
        assert_eq!(got, vec![76, 150, 29, 124, 128, 2, 251, 46]);
    }

    /// A JPEG cut short is unreadable, as PIL has it, not decoded with grey rows; one with bytes
    /// after its end is whole.
    #[test]
    fn a_truncated_jpeg_is_unreadable() {
        let d = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x ^ y) * 4) as u8]));
        let path = d.path().join("a.jpg");
        img.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(decode_file(&path, 3).is_ok());
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        assert!(decode_file(&path, 3).unwrap_err().contains("truncated JPEG"));
        // An end marker before the scan (an EXIF thumbnail's) does not make a cut file whole.
        let mut with_thumbnail = bytes[..2].to_vec();
        with_thumbnail.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xD8, 0xFF, 0xD9]);
        with_thumbnail.extend_from_slice(&bytes[2..bytes.len() * 2 / 3]);
        std::fs::write(&path, &with_thumbnail).unwrap();
        assert!(decode_file(&path, 3).unwrap_err().contains("truncated JPEG"));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"trailing bytes a camera wrote");
        std::fs::write(&path, &trailing).unwrap();
        assert!(decode_file(&path, 3).is_ok());
    }
}
