//! Cropping, flipping and resizing as torchvision does them on PIL images.
//!
//! The resampler is Pillow's (`Resample.c`): separable bicubic (Keys, a = -0.5) whose support
//! widens with the shrink factor (antialiasing), 22-bit fixed-point coefficients, and a u8
//! image between the two passes, in Pillow 13's order (vertical first when the height shrinks by
//! more than twice as many pixels as the width; Pillow <= 12 always went horizontal first).
//! Matching it keeps our inputs identical to what the reference recipe trains on, not merely
//! close.

use rand::Rng;

use super::dist::uniform;
use crate::data::image::Image;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic_weight(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: the first input index and its fixed-point weights, stored flat (`ksize`
/// weights per output, zero-padded) so the inner loops run over plain slices.
struct Coeffs {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

impl Coeffs {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 2.0 * filterscale;
        let inv = 1.0 / filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let one = f64::from(1u32 << PRECISION_BITS);
        let mut c = Coeffs { start: Vec::with_capacity(out_size), len: Vec::with_capacity(out_size), ksize, k: vec![0; out_size * ksize] };
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates; a negative start is clamped to 0 either way.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax).map(|x| bicubic_weight((x as f64 - center + 0.5) * inv)).collect();
            let total: f64 = w.iter().sum();
            for (i, &v) in w.iter().enumerate() {
                let v = if total != 0.0 { v / total } else { v };
                c.k[xx * ksize + i] = if v < 0.0 { (-0.5 + v * one) as i32 } else { (0.5 + v * one) as i32 };
            }
            c.start.push(xmin);
            c.len.push(xmax - xmin);
        }
        c
    }

    #[inline(always)]
    fn taps(&self, out: usize) -> (usize, &[i32]) {
        (self.start[out], &self.k[out * self.ksize..out * self.ksize + self.len[out]])
    }
}

/// Pillow accumulates in a 32-bit int from half a unit; the 22-bit weights of one output sum to
/// one unit, so 255 x (sum of |weights|) stays far inside i32.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

#[inline(always)]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One row, horizontally: `out[xx]` from `row` with `c` interleaved channels.
#[inline(always)]
fn resample_row(row: &[u8], c: usize, horiz: &Coeffs, out: &mut [u8]) {
    let n = out.len() / c;
    match c {
        1 => {
            for (xx, o) in out.iter_mut().enumerate() {
                let (start, k) = horiz.taps(xx);
                let src = &row[start..start + k.len()];
                let mut ss = HALF;
                for (&p, &kv) in src.iter().zip(k) {
                    ss += i32::from(p) * kv;
                }
                *o = clip8(ss);
            }
        }
        3 => {
            for xx in 0..n {
                let (start, k) = horiz.taps(xx);
                let src = &row[start * 3..(start + k.len()) * 3];
                let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
                for (px, &kv) in src.chunks_exact(3).zip(k) {
                    s0 += i32::from(px[0]) * kv;
                    s1 += i32::from(px[1]) * kv;
                    s2 += i32::from(px[2]) * kv;
                }
                out[xx * 3] = clip8(s0);
                out[xx * 3 + 1] = clip8(s1);
                out[xx * 3 + 2] = clip8(s2);
            }
        }
        _ => {
            for xx in 0..n {
                let (start, k) = horiz.taps(xx);
                for ch in 0..c {
                    let mut ss = HALF;
                    for (i, &kv) in k.iter().enumerate() {
                        ss += i32::from(row[(start + i) * c + ch]) * kv;
                    }
                    out[xx * c + ch] = clip8(ss);
                }
            }
        }
    }
}

/// PIL `Image.resize((out_w, out_h), BICUBIC)`.
pub(crate) fn resize_bicubic(img: &Image, out_w: usize, out_h: usize) -> Image {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { resize_bicubic_avx2(img, out_w, out_h) };
    }
    resize_bicubic_any(img, out_w, out_h)
}

/// The same integer arithmetic compiled for AVX2 (eight 32-bit products at once in the
/// vertical pass); the bytes are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn resize_bicubic_avx2(img: &Image, out_w: usize, out_h: usize) -> Image {
    resize_bicubic_any(img, out_w, out_h)
}

#[inline(always)]
fn resize_bicubic_any(img: &Image, out_w: usize, out_h: usize) -> Image {
    let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize);
    if (w, h) == (out_w, out_h) {
        return img.clone();
    }
    let horiz = (out_w != w).then(|| Coeffs::new(w, out_w));
    let vert = (out_h != h).then(|| Coeffs::new(h, out_h));
    let pixels = match (horiz, vert) {
        (Some(horiz), None) => horizontal_pass(&img.pixels, w, c, 0..h, &horiz),
        (None, Some(vert)) => vertical_pass(&img.pixels, w * c, &vert, 0),
        (Some(horiz), Some(vert)) if vertical_first(w, h, out_w, out_h) => {
            horizontal_pass(&vertical_pass(&img.pixels, w * c, &vert, 0), w, c, 0..out_h, &horiz)
        }
        (Some(horiz), Some(vert)) => {
            // Only the rows the vertical pass reads are resampled horizontally.
            let (first, last) = (vert.start[0], vert.start[out_h - 1] + vert.len[out_h - 1]);
            vertical_pass(&horizontal_pass(&img.pixels, w, c, first..last, &horiz), out_w * c, &vert, first)
        }
        (None, None) => unreachable!("the sizes differ"),
    };
    Image { width: out_w as u32, height: out_h as u32, channels: img.channels, pixels }
}

/// Pillow 13's order of the two passes: vertical first when the height loses more than twice
/// as many pixels as the width (`ImagingResampleInner`). Pillow <= 12 always ran the horizontal
/// pass first; the two orders round the u8 image between the passes differently, by at most 1.
fn vertical_first(w: usize, h: usize, out_w: usize, out_h: usize) -> bool {
    let shrink_h = h as i64 - out_h as i64;
    shrink_h > 0 && shrink_h > (w as i64 - out_w as i64) * 2
}

/// The rows `rows` of a `w`-wide image with `c` channels, each resampled to `horiz`'s width.
#[inline(always)]
fn horizontal_pass(src: &[u8], w: usize, c: usize, rows: std::ops::Range<usize>, horiz: &Coeffs) -> Vec<u8> {
    let out_stride = horiz.start.len() * c;
    let mut out = vec![0u8; rows.len() * out_stride];
    for (y, dst) in rows.zip(out.chunks_exact_mut(out_stride)) {
        resample_row(&src[y * w * c..(y + 1) * w * c], c, horiz, dst);
    }
    out
}

/// Resamples columns: output row `yy` from the rows `vert` names, counted from row `first` of
/// `src` (rows of `stride` bytes).
#[inline(always)]
fn vertical_pass(src: &[u8], stride: usize, vert: &Coeffs, first: usize) -> Vec<u8> {
    let out_h = vert.start.len();
    let mut out = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, dst) in out.chunks_exact_mut(stride).enumerate() {
        let (start, k) = vert.taps(yy);
        let start = start - first;
        acc.fill(HALF);
        for (j, &kv) in k.iter().enumerate() {
            let row = &src[(start + j) * stride..(start + j + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * kv;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

/// The `h x w` window at (`top`, `left`); what falls outside the image is 0, as PIL's crop
/// (and torchvision's zero padding before a centre crop) gives.
pub(crate) fn crop(img: &Image, top: i64, left: i64, h: usize, w: usize) -> Image {
    let (iw, ih, c) = (img.width as i64, img.height as i64, img.channels as usize);
    let mut pixels = vec![0u8; h * w * c];
    // The columns that fall inside, as a range of x: whole row segments are copied.
    let x_lo = (-left).clamp(0, w as i64) as usize;
    let x_hi = (iw - left).clamp(0, w as i64) as usize;
    for y in 0..h {
        let sy = top + y as i64;
        if !(0..ih).contains(&sy) || x_lo >= x_hi {
            continue;
        }
        let s = ((sy * iw + left + x_lo as i64) as usize) * c;
        pixels[(y * w + x_lo) * c..(y * w + x_hi) * c].copy_from_slice(&img.pixels[s..s + (x_hi - x_lo) * c]);
    }
    Image { width: w as u32, height: h as u32, channels: img.channels, pixels }
}

pub(crate) fn hflip(img: &Image) -> Image {
    let (w, c) = (img.width as usize, img.channels as usize);
    let mut pixels = Vec::with_capacity(img.pixels.len());
    for row in img.pixels.chunks_exact(w * c) {
        for px in row.chunks_exact(c).rev() {
            pixels.extend_from_slice(px);
        }
    }
    img.with_pixels(pixels)
}

/// torchvision `RandomResizedCrop.get_params`: `(top, left, height, width)` of the crop.
pub(crate) fn rrc_params<R: Rng + ?Sized>(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (usize, usize, usize, usize) {
    let (w, h) = (width as usize, height as usize);
    let area = (w * h) as f64;
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_ratio.0, log_ratio.1).exp();
        let cw = (target_area * aspect).sqrt().round_ties_even() as usize;
        let ch = (target_area / aspect).sqrt().round_ties_even() as usize;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.random_range(0..=h - ch);
            let left = rng.random_range(0..=w - cw);
            return (top, left, ch, cw);
        }
    }
    // Fallback: the central crop with the aspect ratio clamped into `ratio`.
    let in_ratio = w as f64 / h as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (cw, ch) = if in_ratio < lo {
        (w, ((w as f64 / lo).round_ties_even() as usize).clamp(1, h))
    } else if in_ratio > hi {
        (((h as f64 * hi).round_ties_even() as usize).clamp(1, w), h)
    } else {
        (w, h)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer one
/// `int(size * long / short)`.
pub(crate) fn resize_shorter(img: &Image, size: usize) -> Image {
    let (w, h) = (img.width as usize, img.height as usize);
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    resize_bicubic(img, nw, nh)
}

/// torchvision `CenterCrop`: offset `int(round((len - crop) / 2))` (Python rounds half to
/// even), or zero padding of `(crop - len) // 2` before when the crop is the larger.
pub(crate) fn center_crop(img: &Image, h: usize, w: usize) -> Image {
    let offset = |len: usize, crop: usize| -> i64 {
        if crop > len { -(((crop - len) / 2) as i64) } else { ((len - crop) as f64 / 2.0).round_ties_even() as i64 }
    };
    crop(img, offset(img.height as usize, h), offset(img.width as usize, w), h, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

/// Per output index: the first input index and its fixed-point weights.
    struct RefCoeffs {
        taps: Vec<(usize, Vec<i32>)>,
    }
    
    impl RefCoeffs {
        fn new(in_size: usize, out_size: usize) -> Self {
            let scale = in_size as f64 / out_size as f64;
            let filterscale = scale.max(1.0);
            let support = 2.0 * filterscale;
            let inv = 1.0 / filterscale;
            let taps = (0..out_size)
                .map(|xx| {
                    let center = (xx as f64 + 0.5) * scale;
                    // C's (int) truncates; a negative start is clamped to 0 either way.
                    let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                    let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                    let w: Vec<f64> = (xmin..xmax).map(|x| bicubic_weight((x as f64 - center + 0.5) * inv)).collect();
                    let total: f64 = w.iter().sum();
                    let one = f64::from(1u32 << PRECISION_BITS);
                    let k = w
                        .iter()
                        .map(|&v| {
                            let v = if total != 0.0 { v / total } else { v };
                            if v < 0.0 { (-0.5 + v * one) as i32 } else { (0.5 + v * one) as i32 }
                        })
                        .collect();
                    (xmin, k)
                })
                .collect();
            RefCoeffs { taps }
        }
    }
    
    fn clip8_ref(ss: i64) -> u8 {
        (ss >> PRECISION_BITS).clamp(0, 255) as u8
    }
    
    /// PIL `Image.resize((out_w, out_h), BICUBIC)` written plainly (each output a fold over its
    /// taps in i64), with `ImagingResampleInner`'s order of the passes as Pillow 13 has it.
    fn resize_reference(img: &Image, out_w: usize, out_h: usize) -> Image {
        let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize);
        if (w, h) == (out_w, out_h) {
            return img.clone();
        }
        let half = 1i64 << (PRECISION_BITS - 1);
        // `rows` rows `sw` pixels wide, each resampled to `out_w`.
        let horizontal = |src: &[u8], sw: usize, rows: usize| -> Vec<u8> {
            let horiz = RefCoeffs::new(sw, out_w);
            let mut out = vec![0u8; rows * out_w * c];
            for y in 0..rows {
                for (xx, (start, k)) in horiz.taps.iter().enumerate() {
                    for ch in 0..c {
                        let ss = k.iter().enumerate().fold(half, |ss, (i, &kv)| ss + i64::from(src[(y * sw + start + i) * c + ch]) * i64::from(kv));
                        out[(y * out_w + xx) * c + ch] = clip8_ref(ss);
                    }
                }
            }
            out
        };
        // Columns of an image `sw` pixels wide whose first row is the source's row `first`.
        let vertical = |src: &[u8], sw: usize, first: usize| -> Vec<u8> {
            let vert = RefCoeffs::new(h, out_h);
            let stride = sw * c;
            let mut out = vec![0u8; out_h * stride];
            for (yy, (start, k)) in vert.taps.iter().enumerate() {
                for i in 0..stride {
                    let ss = k.iter().enumerate().fold(half, |ss, (j, &kv)| ss + i64::from(src[(start - first + j) * stride + i]) * i64::from(kv));
                    out[yy * stride + i] = clip8_ref(ss);
                }
            }
            out
        };
        let (dh, dw) = (h as i64 - out_h as i64, w as i64 - out_w as i64);
        let pixels = if out_w == w {
            vertical(&img.pixels, w, 0)
        } else if out_h == h {
            horizontal(&img.pixels, w, h)
        } else if dh > 0 && dh > dw * 2 {
            horizontal(&vertical(&img.pixels, w, 0), w, out_h)
        } else {
            // Horizontal first, over the rows the vertical pass reads.
            let vert = RefCoeffs::new(h, out_h);
            let first = vert.taps[0].0;
            let last = vert.taps.last().map(|(s, k)| s + k.len()).unwrap_or(first);
            vertical(&horizontal(&img.pixels[first * w * c..last * w * c], w, last - first), out_w, first)
        };
        Image { width: out_w as u32, height: out_h as u32, channels: img.channels, pixels }
    }

    #[test]
    fn the_fast_resampler_equals_the_straightforward_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..60 {
            let c = [1u8, 3, 3, 4][case % 4];
            let (w, h) = (rng.random_range(1..90u32), rng.random_range(1..90u32));
            let pixels = (0..(w * h) as usize * c as usize).map(|_| rng.random::<u8>()).collect();
            let img = Image { width: w, height: h, channels: c, pixels };
            let (mut ow, mut oh) = (rng.random_range(1..120usize), rng.random_range(1..120usize));
            // One pass only: the same width, or the same height.
            match case % 5 {
                1 => ow = w as usize,
                2 => oh = h as usize,
                _ => {}
            }
            let want = resize_reference(&img, ow, oh).pixels;
            assert_eq!(resize_bicubic(&img, ow, oh).pixels, want, "{w}x{h}x{c} -> {ow}x{oh}");
            // The copy compiled without AVX2 (what a CPU without it runs) gives the same bytes.
            assert_eq!(resize_bicubic_any(&img, ow, oh).pixels, want, "{w}x{h}x{c} -> {ow}x{oh}, generic");
        }
    }

    fn gray(w: u32, h: u32, pixels: Vec<u8>) -> Image {
        Image { width: w, height: h, channels: 1, pixels }
    }

    #[test]
    fn resize_follows_pillows_bicubic() {
        // Pillow: Image.frombytes("L", (4, 1), bytes([0, 0, 255, 255])).resize((2, 1), BICUBIC)
        // -> [21, 234] (support 4 when halving, so all four inputs feed each output).
        let img = gray(4, 1, vec![0, 0, 255, 255]);
        assert_eq!(resize_bicubic(&img, 2, 1).pixels, vec![21, 234]);
        // Upscaling: Pillow gives [0, 53, 202, 255] (edge taps clamp, the lobes are clipped).
        let img = gray(2, 1, vec![0, 255]);
        assert_eq!(resize_bicubic(&img, 4, 1).pixels, vec![0, 53, 202, 255]);
        // Widening while shortening: Pillow 13 runs the vertical pass first (the height loses
        // more than twice the pixels the width does), rounds to u8, then the horizontal one.
        // Pillow 12.3 went horizontal first and gave 124, 87, 80, 139, 124 where this has 123,
        // 86, 77, 138, 123. The transpose keeps horizontal first in both versions.
        let img = gray(6, 8, (0..48u32).map(|i| ((i * 53 + 17) % 256) as u8).collect());
        assert_eq!(resize_bicubic(&img, 9, 3).pixels, PIL13_6X8_TO_9X3.to_vec());
        let img = gray(8, 6, (0..48u32).map(|i| ((i * 53 + 17) % 256) as u8).collect());
        assert_eq!(resize_bicubic(&img, 3, 9).pixels, PIL13_8X6_TO_3X9.to_vec());
        // A constant image stays constant whatever the factors.
        let img = Image { width: 13, height: 7, channels: 3, pixels: vec![77; 13 * 7 * 3] };
        let out = resize_bicubic(&img, 5, 11);
        assert_eq!((out.width, out.height, out.pixels.len()), (5, 11, 5 * 11 * 3));
        assert!(out.pixels.iter().all(|&p| p == 77));
    }

    /// Pillow 13.0 `Image.frombytes("L", (6, 8), bytes((i * 53 + 17) % 256 for i in range(48)))
    /// .resize((9, 3), BICUBIC)`, and the same bytes as an 8x6 image resized to 3x9.
    const PIL13_6X8_TO_9X3: [u8; 27] = [
        83, 99, 131, 170, 174, 155, 123, 102, 92, 108, 86, 77, 124, 138, 138, 143, 128, 113, 123, 157, 187, 164, 134, 108, 98, 118, 138,
    ];
    const PIL13_8X6_TO_3X9: [u8; 27] = [
        64, 164, 83, 115, 144, 127, 166, 109, 173, 149, 69, 166, 94, 110, 114, 69, 152, 85, 142, 114, 151, 157, 127, 157, 149, 148, 143,
    ];

    #[test]
    fn hflip_mirrors_each_row() {
        let img = Image { width: 3, height: 2, channels: 3, pixels: (0..18).collect() };
        let f = hflip(&img);
        assert_eq!(f.pixels, vec![6, 7, 8, 3, 4, 5, 0, 1, 2, 15, 16, 17, 12, 13, 14, 9, 10, 11]);
    }

    #[test]
    fn rrc_crops_lie_inside_with_area_in_scale() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let (top, left, h, w) = rrc_params(64, 48, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(h > 0 && w > 0 && top + h <= 48 && left + w <= 64);
            let frac = (h * w) as f64 / (64.0 * 48.0);
            assert!((0.06..=1.05).contains(&frac), "{frac}");
            let ar = w as f64 / h as f64;
            assert!((0.6..=1.6).contains(&ar), "{ar}");
        }
        assert_eq!(rrc_params(20, 20, (1.0, 1.0), (1.0, 1.0), &mut rng), (0, 0, 20, 20));
    }

    #[test]
    fn rrc_falls_back_to_a_central_crop_with_clamped_ratio() {
        // A 100x10 strip cannot hold 90% of its area at ratio <= 4/3: centre 13x10 crop.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(rrc_params(100, 10, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng), (0, 43, 10, 13));
        assert_eq!(rrc_params(10, 100, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut rng), (43, 0, 13, 10));
    }

    #[test]
    fn center_crop_rounds_half_to_even_and_pads_with_zero() {
        let img = gray(5, 4, (0..20).collect());
        // (5 - 2) / 2 = 1.5 -> 2, (4 - 3) / 2 = 0.5 -> 0.
        assert_eq!(center_crop(&img, 3, 2).pixels, vec![2, 3, 7, 8, 12, 13]);
        // 7 wide from 5: one zero column before, one after; 4 high from 4: unchanged.
        let out = center_crop(&img, 4, 7);
        assert_eq!(&out.pixels[..7], &[0, 0, 1, 2, 3, 4, 0]);
    }

    /// Row-segment copying gives what reading pixel by pixel, zero outside, gives: windows
    /// inside, overlapping each side, and wholly outside.
    #[test]
    fn crop_reads_inside_and_zero_fills_outside() {
        for c in [1u8, 3] {
            let img = Image { width: 6, height: 5, channels: c, pixels: (1..=30 * u32::from(c)).map(|v| v as u8).collect() };
            for (top, left, h, w) in [(0, 0, 5, 6), (1, 2, 3, 3), (-2, -3, 9, 12), (3, 4, 4, 4), (-1, 5, 2, 3), (7, 0, 2, 2), (0, -8, 2, 3)] {
                let got = crop(&img, top, left, h, w);
                let mut want = Vec::new();
                for y in 0..h as i64 {
                    for x in 0..w as i64 {
                        let (sy, sx) = (top + y, left + x);
                        for ch in 0..i64::from(c) {
                            let inside = (0..5).contains(&sy) && (0..6).contains(&sx);
                            want.push(if inside { img.pixels[((sy * 6 + sx) * i64::from(c) + ch) as usize] } else { 0 });
                        }
                    }
                }
                assert_eq!((got.width, got.height, got.pixels), (w as u32, h as u32, want), "{c} ch, {top} {left} {h} {w}");
            }
        }
    }

    #[test]
    fn resize_shorter_keeps_the_aspect_ratio_truncated() {
        let img = gray(32, 40, vec![9; 32 * 40]);
        let out = resize_shorter(&img, 15);
        assert_eq!((out.width, out.height), (15, 18)); // int(15 * 40 / 32) = int(18.75)
        let out = resize_shorter(&img, 32);
        assert_eq!(out, img);
    }
}
