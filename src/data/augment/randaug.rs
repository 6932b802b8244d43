//! timm's RandAugment (`auto_augment.py`) on u8 images, with each op computed the way Pillow
//! computes it (LUTs, truncating blends, the 3x3 SMOOTH filter, the a = -1 cubic of
//! `Image.transform`), for 1- and 3-channel images alike.

use rand::Rng;

use super::RandAugmentSpec;
use super::dist::{standard_normal, uniform};
use crate::data::image::Image;

/// timm's `_LEVEL_DENOM`: magnitudes are on a 0..10 scale.
const LEVEL_DENOM: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    PosterizeIncreasing,
    Solarize,
    SolarizeIncreasing,
    SolarizeAdd,
    Color,
    ColorIncreasing,
    Contrast,
    ContrastIncreasing,
    Brightness,
    BrightnessIncreasing,
    Sharpness,
    SharpnessIncreasing,
    ShearX,
    ShearY,
    TranslateXRel,
    TranslateYRel,
}

/// timm `_RAND_TRANSFORMS`.
const RAND_TRANSFORMS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateXRel,
    Op::TranslateYRel,
];

/// timm `_RAND_INCREASING_TRANSFORMS` (`inc1`).
const RAND_INCREASING_TRANSFORMS: [Op; 15] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::PosterizeIncreasing,
    Op::SolarizeIncreasing,
    Op::SolarizeAdd,
    Op::ColorIncreasing,
    Op::ContrastIncreasing,
    Op::BrightnessIncreasing,
    Op::SharpnessIncreasing,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateXRel,
    Op::TranslateYRel,
];

/// `RandAugment.__call__`: `num_ops` ops drawn with replacement, then each applied in turn.
/// `fill` is the colour (one value per channel) of pixels moved in from outside the image.
pub(crate) fn rand_augment<R: Rng + ?Sized>(img: Image, spec: &RandAugmentSpec, fill: &[u8], rng: &mut R) -> Image {
    let ops: &[Op] = if spec.increasing { &RAND_INCREASING_TRANSFORMS } else { &RAND_TRANSFORMS };
    let chosen: Vec<Op> = (0..spec.num_ops).map(|_| ops[rng.random_range(0..ops.len())]).collect();
    chosen.into_iter().fold(img, |img, op| augment_op(img, op, spec, fill, rng))
}

/// timm `_randomly_negate`.
fn negate<R: Rng + ?Sized>(v: f64, rng: &mut R) -> f64 {
    if rng.random::<f64>() > 0.5 { -v } else { v }
}

/// `AugmentOp.__call__`: the probability gate, the magnitude noise and clip, the op's level
/// function, then the op.
fn augment_op<R: Rng + ?Sized>(img: Image, op: Op, spec: &RandAugmentSpec, fill: &[u8], rng: &mut R) -> Image {
    if spec.prob < 1.0 && rng.random::<f64>() > spec.prob {
        return img;
    }
    let mut magnitude = spec.magnitude;
    if spec.magnitude_std > 100.0 {
        // timm reads mstd > 100 as infinite: uniform in [0, m].
        magnitude = uniform(rng, 0.0, magnitude);
    } else if spec.magnitude_std > 0.0 {
        magnitude += spec.magnitude_std * standard_normal(rng);
    }
    let upper = if spec.magnitude_max > 0.0 { spec.magnitude_max } else { LEVEL_DENOM };
    let level = magnitude.min(upper).max(0.0) / LEVEL_DENOM;
    let enhance = level * 1.8 + 0.1;
    let enhance_increasing = |rng: &mut R| (1.0 + negate(level * 0.9, rng)).max(0.1);
    match op {
        Op::AutoContrast => auto_contrast(&img),
        Op::Equalize => equalize(&img),
        Op::Invert => invert(&img),
        Op::Rotate => rotate(&img, negate(level * 30.0, rng), fill),
        Op::Posterize => posterize(&img, (level * 4.0) as i32),
        Op::PosterizeIncreasing => posterize(&img, 4 - (level * 4.0) as i32),
        Op::Solarize => solarize(&img, ((level * 256.0) as i32).min(256)),
        Op::SolarizeIncreasing => solarize(&img, 256 - ((level * 256.0) as i32).min(256)),
        Op::SolarizeAdd => solarize_add(&img, ((level * 110.0) as i32).min(128), 128),
        Op::Color => color(&img, enhance),
        Op::ColorIncreasing => color(&img, enhance_increasing(rng)),
        Op::Contrast => contrast(&img, enhance),
        Op::ContrastIncreasing => contrast(&img, enhance_increasing(rng)),
        Op::Brightness => brightness(&img, enhance),
        Op::BrightnessIncreasing => brightness(&img, enhance_increasing(rng)),
        Op::Sharpness => sharpness(&img, enhance),
        Op::SharpnessIncreasing => sharpness(&img, enhance_increasing(rng)),
        Op::ShearX => affine(&img, [1.0, negate(level * 0.3, rng), 0.0, 0.0, 1.0, 0.0], fill),
        Op::ShearY => affine(&img, [1.0, 0.0, 0.0, negate(level * 0.3, rng), 1.0, 0.0], fill),
        Op::TranslateXRel => {
            let px = negate(level * 0.45, rng) * f64::from(img.width);
            affine(&img, [1.0, 0.0, px, 0.0, 1.0, 0.0], fill)
        }
        Op::TranslateYRel => {
            let px = negate(level * 0.45, rng) * f64::from(img.height);
            affine(&img, [1.0, 0.0, 0.0, 0.0, 1.0, px], fill)
        }
    }
}

fn channels(img: &Image) -> usize {
    img.channels as usize
}

/// `Image.point` with one 256-entry table per channel.
fn apply_luts(img: &Image, luts: &[[u8; 256]]) -> Image {
    debug_assert_eq!(luts.len(), channels(img));
    let pixels = match luts {
        [lut] => img.pixels.iter().map(|&p| lut[p as usize]).collect(),
        [r, g, b] => img.pixels.chunks_exact(3).flat_map(|p| [r[p[0] as usize], g[p[1] as usize], b[p[2] as usize]]).collect(),
        _ => img.pixels.iter().enumerate().map(|(i, &p)| luts[i % luts.len()][p as usize]).collect(),
    };
    img.with_pixels(pixels)
}

fn same_lut(img: &Image, f: impl Fn(usize) -> u8) -> Image {
    let lut: [u8; 256] = std::array::from_fn(f);
    apply_luts(img, &vec![lut; channels(img)])
}

fn histograms(img: &Image) -> Vec<[u64; 256]> {
    let c = channels(img);
    let mut h = vec![[0u64; 256]; c];
    for (i, &p) in img.pixels.iter().enumerate() {
        h[i % c][p as usize] += 1;
    }
    h
}

pub(crate) fn invert(img: &Image) -> Image {
    same_lut(img, |i| 255 - i as u8)
}

/// `ImageOps.posterize` behind timm's guard (8+ bits is a no-op). 0 bits (PosterizeIncreasing
/// when the magnitude noise reaches the cap) clears all, as Pillow <= 12 did and MAE's own runs
/// had it; Pillow 13 raises instead, and timm's transform then fails on that image.
pub(crate) fn posterize(img: &Image, bits: i32) -> Image {
    if bits >= 8 {
        return img.clone();
    }
    let mask: u8 = if bits <= 0 { 0 } else { !((1u16 << (8 - bits)) - 1) as u8 };
    same_lut(img, |i| i as u8 & mask)
}

/// `ImageOps.solarize`: values at or above the threshold are inverted.
pub(crate) fn solarize(img: &Image, threshold: i32) -> Image {
    same_lut(img, |i| if (i as i32) < threshold { i as u8 } else { 255 - i as u8 })
}

/// timm `solarize_add`: `add` is added (saturating) to values below the threshold.
pub(crate) fn solarize_add(img: &Image, add: i32, threshold: i32) -> Image {
    same_lut(img, |i| if (i as i32) < threshold { (i as i32 + add).min(255) as u8 } else { i as u8 })
}

/// `ImageOps.autocontrast` (cutoff 0): each channel's [lo, hi] stretched to [0, 255].
pub(crate) fn auto_contrast(img: &Image) -> Image {
    let luts: Vec<[u8; 256]> = histograms(img)
        .iter()
        .map(|h| {
            let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
            let hi = h.iter().rposition(|&n| n > 0).unwrap_or(0);
            if hi <= lo {
                return std::array::from_fn(|i| i as u8);
            }
            let scale = 255.0 / (hi - lo) as f64;
            let offset = -(lo as f64) * scale;
            std::array::from_fn(|i| ((i as f64 * scale + offset) as i64).clamp(0, 255) as u8)
        })
        .collect();
    apply_luts(img, &luts)
}

/// `ImageOps.equalize`: each channel through its cumulative histogram, Pillow's integer steps.
pub(crate) fn equalize(img: &Image) -> Image {
    let luts: Vec<[u8; 256]> = histograms(img)
        .iter()
        .map(|h| {
            let identity = std::array::from_fn(|i| i as u8);
            let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
            if used.len() <= 1 {
                return identity;
            }
            let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
            if step == 0 {
                return identity;
            }
            let mut n = step / 2;
            std::array::from_fn(|i| {
                let v = (n / step).min(255) as u8;
                n += h[i];
                v
            })
        })
        .collect();
    apply_luts(img, &luts)
}

/// `Image.blend(degenerate, img, factor)`: Pillow's float32 arithmetic, truncated to u8
/// (clamped first when extrapolating).
fn blend(degenerate: &[u8], img: &Image, factor: f64) -> Image {
    let alpha = factor as f32;
    if alpha == 0.0 {
        return img.with_pixels(degenerate.to_vec());
    }
    if alpha == 1.0 {
        return img.clone();
    }
    let pixels = degenerate
        .iter()
        .zip(&img.pixels)
        .map(|(&d, &p)| {
            let v = f32::from(d) + alpha * (f32::from(p) - f32::from(d));
            if v <= 0.0 {
                0
            } else if v >= 255.0 {
                255
            } else {
                v as u8
            }
        })
        .collect();
    img.with_pixels(pixels)
}

/// Pillow's RGB -> L: `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`; grey is itself.
fn luminance(img: &Image) -> Vec<u8> {
    if img.channels == 1 {
        return img.pixels.clone();
    }
    img.pixels
        .chunks_exact(channels(img))
        .map(|p| ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8)
        .collect()
}

/// One grey value per pixel, repeated over the image's channels.
fn broadcast(grey: &[u8], c: usize) -> Vec<u8> {
    grey.iter().flat_map(|&g| std::iter::repeat_n(g, c)).collect()
}

/// `ImageEnhance.Color`: towards the image's own grey version (no change for grey images).
pub(crate) fn color(img: &Image, factor: f64) -> Image {
    if img.channels == 1 {
        return img.clone();
    }
    blend(&broadcast(&luminance(img), channels(img)), img, factor)
}

/// `ImageEnhance.Contrast`: towards the mean grey level, rounded as `int(mean + 0.5)`.
pub(crate) fn contrast(img: &Image, factor: f64) -> Image {
    let l = luminance(img);
    let mean = l.iter().map(|&v| u64::from(v)).sum::<u64>() as f64 / l.len().max(1) as f64;
    let grey = (mean + 0.5) as u8;
    blend(&vec![grey; img.pixels.len()], img, factor)
}

/// `ImageEnhance.Brightness`: towards black.
pub(crate) fn brightness(img: &Image, factor: f64) -> Image {
    blend(&vec![0; img.pixels.len()], img, factor)
}

/// `ImageEnhance.Sharpness`: towards `ImageFilter.SMOOTH`, whose border pixels are copied.
pub(crate) fn sharpness(img: &Image, factor: f64) -> Image {
    blend(&smooth(img), img, factor)
}

/// `ImageFilter.SMOOTH`: kernel [[1,1,1],[1,5,1],[1,1,1]] / 13 in float32, +0.5 and truncated,
/// on interior pixels; images under 3x3 are returned unchanged, as Pillow does.
fn smooth(img: &Image) -> Vec<u8> {
    let (w, h, c) = (img.width as usize, img.height as usize, channels(img));
    let mut out = img.pixels.clone();
    if w < 3 || h < 3 {
        return out;
    }
    let (k, k5) = (1.0f32 / 13.0, 5.0f32 / 13.0);
    let stride = w * c;
    for y in 1..h - 1 {
        let (up, mid, down) = (&img.pixels[(y - 1) * stride..][..stride], &img.pixels[y * stride..][..stride], &img.pixels[(y + 1) * stride..][..stride]);
        // Position i is (x, ch) of this row; its left and right neighbours are i -+ c.
        let row = |r: &[u8], i: usize, m: f32| f32::from(r[i - c]) * k + f32::from(r[i]) * m + f32::from(r[i + c]) * k;
        for (i, o) in out[y * stride..(y + 1) * stride].iter_mut().enumerate().take(stride - c).skip(c) {
            let mut ss = 0.5f32;
            ss += row(down, i, k);
            ss += row(mid, i, k5);
            ss += row(up, i, k);
            *o = ss.clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The cubic of Pillow's `Image.transform` (Geometry.c), which is a = -1, not resize's -0.5.
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

/// `Image.transform(size, AFFINE, m, BICUBIC, fillcolor=fill)`: output pixel centre
/// (x + .5, y + .5) reads input point (m0 x + m1 y + m2, m3 x + m4 y + m5); points outside the
/// image keep the fill, edge taps are clamped.
pub(crate) fn affine(img: &Image, m: [f64; 6], fill: &[u8]) -> Image {
    match channels(img) {
        1 => affine_n::<1>(img, m, fill),
        3 => affine_n::<3>(img, m, fill),
        _ => affine_any(img, m, fill),
    }
}

/// Pillow's `FLOOR` of a coordinate, as an integer (exact for the image-sized values here).
fn floor_i(v: f64) -> i64 {
    let t = v as i64;
    if t as f64 > v { t - 1 } else { t }
}

/// The clamped 4x4 neighbourhood's cubic at (`xs`, `ys`) (pixel-corner coordinates), channel
/// `ch`: Pillow's `BICUBIC_BODY`, whose edge rows repeat the nearest row inside.
fn bicubic_at(img: &Image, x0: i64, y0: i64, dx: f64, dy: f64, ch: usize) -> f64 {
    let (w, h, c, src) = (img.width as usize, img.height as usize, channels(img), &img.pixels);
    let at = |x: i64, y: i64| f64::from(src[(y.clamp(0, h as i64 - 1) as usize * w + x.clamp(0, w as i64 - 1) as usize) * c + ch]);
    let r = |j: i64| cubic(at(x0, y0 + j), at(x0 + 1, y0 + j), at(x0 + 2, y0 + j), at(x0 + 3, y0 + j), dx);
    cubic(r(0), r(1), r(2), r(3), dy)
}

fn to_u8(v: f64) -> u8 {
    if v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v as u8
    }
}

/// `affine` for `C` interleaved channels: the interior's 16 taps are read from four fixed-size
/// row slices (no per-tap clamping or bounds checks); the arithmetic is the same at every pixel.
fn affine_n<const C: usize>(img: &Image, m: [f64; 6], fill: &[u8]) -> Image {
    let (w, h) = (img.width as usize, img.height as usize);
    let fill: [u8; C] = fill.try_into().expect("one fill value per channel");
    let mut pixels = vec![0u8; w * h * C];
    for px in pixels.chunks_exact_mut(C) {
        px.copy_from_slice(&fill);
    }
    let src = &img.pixels[..w * h * C];
    let (wf, hf) = (w as f64, h as f64);
    for (y, out_row) in pixels.chunks_exact_mut(w * C).enumerate() {
        let yo = y as f64 + 0.5;
        for (x, out) in out_row.chunks_exact_mut(C).enumerate() {
            let xo = x as f64 + 0.5;
            let xin = m[0] * xo + m[1] * yo + m[2];
            let yin = m[3] * xo + m[4] * yo + m[5];
            if !(xin >= 0.0 && xin < wf && yin >= 0.0 && yin < hf) {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (xf, yf) = (floor_i(xs), floor_i(ys));
            let (dx, dy) = (xs - xf as f64, ys - yf as f64);
            let (x0, y0) = (xf - 1, yf - 1);
            if x0 >= 0 && y0 >= 0 && x0 + 3 < w as i64 && y0 + 3 < h as i64 {
                let (x0, y0) = (x0 as usize, y0 as usize);
                let tap = |j: usize, i: usize, ch: usize| f64::from(src[((y0 + j) * w + x0 + i) * C + ch]);
                if dy == 0.0 {
                    // Shears and translations along x: the cubic in y at d = 0 is its second row
                    // exactly (p1 + 0 * (...)), so only that row is computed.
                    for (ch, o) in out.iter_mut().enumerate() {
                        *o = to_u8(cubic(tap(1, 0, ch), tap(1, 1, ch), tap(1, 2, ch), tap(1, 3, ch), dx));
                    }
                } else if dx == 0.0 {
                    // Along y: each row's cubic at d = 0 is its second tap exactly.
                    for (ch, o) in out.iter_mut().enumerate() {
                        *o = to_u8(cubic(tap(0, 1, ch), tap(1, 1, ch), tap(2, 1, ch), tap(3, 1, ch), dy));
                    }
                } else {
                    let mut r = [[0f64; 4]; C];
                    for j in 0..4 {
                        let s = ((y0 + j) * w + x0) * C;
                        let row: &[u8] = &src[s..s + 4 * C];
                        for (ch, rc) in r.iter_mut().enumerate() {
                            let p = |i: usize| f64::from(row[i * C + ch]);
                            rc[j] = cubic(p(0), p(1), p(2), p(3), dx);
                        }
                    }
                    for (ch, o) in out.iter_mut().enumerate() {
                        *o = to_u8(cubic(r[ch][0], r[ch][1], r[ch][2], r[ch][3], dy));
                    }
                }
            } else {
                for (ch, o) in out.iter_mut().enumerate() {
                    *o = to_u8(bicubic_at(img, x0, y0, dx, dy, ch));
                }
            }
        }
    }
    img.with_pixels(pixels)
}

/// `affine` for any channel count, every tap clamped.
fn affine_any(img: &Image, m: [f64; 6], fill: &[u8]) -> Image {
    let (w, h, c) = (img.width as usize, img.height as usize, channels(img));
    let mut pixels: Vec<u8> = (0..w * h).flat_map(|_| fill.iter().copied()).collect();
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let xin = m[0] * xo + m[1] * yo + m[2];
            let yin = m[3] * xo + m[4] * yo + m[5];
            if !(xin >= 0.0 && xin < w as f64 && yin >= 0.0 && yin < h as f64) {
                continue;
            }
            let (xs, ys) = (xin - 0.5, yin - 0.5);
            let (xf, yf) = (floor_i(xs), floor_i(ys));
            let (dx, dy) = (xs - xf as f64, ys - yf as f64);
            for ch in 0..c {
                pixels[(y * w + x) * c + ch] = to_u8(bicubic_at(img, xf - 1, yf - 1, dx, dy, ch));
            }
        }
    }
    img.with_pixels(pixels)
}

/// Exact quarter turns, as `Image.transpose` does them; `quarter` counter-clockwise turns.
fn rotate_quarters(img: &Image, quarter: u8) -> Image {
    let (w, h, c) = (img.width as usize, img.height as usize, channels(img));
    let (ow, oh) = if quarter % 2 == 1 { (h, w) } else { (w, h) };
    let mut pixels = vec![0u8; img.pixels.len()];
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = match quarter % 4 {
                1 => (w - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                3 => (y, h - 1 - x),
                _ => (x, y),
            };
            let s = (sy * w + sx) * c;
            pixels[(y * ow + x) * c..(y * ow + x + 1) * c].copy_from_slice(&img.pixels[s..s + c]);
        }
    }
    Image { width: ow as u32, height: oh as u32, channels: img.channels, pixels }
}

/// Python's `round(v, 15)` (which `Image.rotate` applies to cos and sin, snapping exact quarter
/// angles to 0 and 1): the exact value rounded to 15 decimals, then the nearest double. Scaling
/// by 1e15 instead rounds an already rounded product and is one unit off for a few % of angles.
fn round15(v: f64) -> f64 {
    format!("{v:.15}").parse().unwrap_or(v)
}

/// `Image.rotate(degrees, BICUBIC, fillcolor=fill)`: counter-clockwise about the centre, same
/// size; Pillow's exact paths for 0, 180 and (square images) 90/270 degrees.
pub(crate) fn rotate(img: &Image, degrees: f64, fill: &[u8]) -> Image {
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    if angle == 180.0 {
        return rotate_quarters(img, 2);
    }
    if (angle == 90.0 || angle == 270.0) && img.width == img.height {
        return rotate_quarters(img, if angle == 90.0 { 1 } else { 3 });
    }
    let a = -angle.to_radians();
    let mut m = [round15(a.cos()), round15(a.sin()), 0.0, round15(-a.sin()), round15(a.cos()), 0.0];
    let (cx, cy) = (f64::from(img.width) / 2.0, f64::from(img.height) / 2.0);
    m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
    m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
    affine(img, m, fill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn gray(w: u32, h: u32, pixels: Vec<u8>) -> Image {
        Image { width: w, height: h, channels: 1, pixels }
    }

    fn rgb(w: u32, h: u32, pixels: Vec<u8>) -> Image {
        Image { width: w, height: h, channels: 3, pixels }
    }

    /// A deterministic, textured RGB image.
    fn texture(w: u32, h: u32, c: u8) -> Image {
        let pixels = (0..w * h * u32::from(c)).map(|i| ((i * 37 + (i / 7) * 11) % 251) as u8).collect();
        Image { width: w, height: h, channels: c, pixels }
    }

    #[test]
    fn lut_ops_match_pillow() {
        let img = gray(6, 1, vec![0, 31, 100, 127, 128, 255]);
        assert_eq!(invert(&img).pixels, vec![255, 224, 155, 128, 127, 0]);
        assert_eq!(posterize(&img, 2).pixels, vec![0, 0, 64, 64, 128, 192]);
        assert_eq!(posterize(&img, 0).pixels, vec![0; 6]);
        assert_eq!(posterize(&img, 8), img);
        assert_eq!(solarize(&img, 128).pixels, vec![0, 31, 100, 127, 127, 0]);
        assert_eq!(solarize(&img, 256), img);
        assert_eq!(solarize(&img, 0).pixels, vec![255, 224, 155, 128, 127, 0]);
        assert_eq!(solarize_add(&img, 99, 128).pixels, vec![99, 130, 199, 226, 128, 255]);
        assert_eq!(solarize_add(&img, 200, 128).pixels, vec![200, 231, 255, 255, 128, 255]);
    }

    #[test]
    fn auto_contrast_stretches_each_channel() {
        // Pillow: R spans 50..150 and is stretched, G is constant and left alone, B spans
        // 100..200 and its 200 lands on int(200 * 2.55 - 255) = int(254.99999..) = 254.
        let img = rgb(2, 1, vec![50, 7, 200, 150, 7, 100]);
        assert_eq!(auto_contrast(&img).pixels, vec![0, 7, 254, 255, 7, 0]);
        let img = gray(3, 1, vec![50, 100, 150]);
        assert_eq!(auto_contrast(&img).pixels, vec![0, 127, 255]); // int(127.5) = 127
    }

    #[test]
    fn equalize_uses_pillows_integer_steps() {
        // Pillow, ImageOps.equalize: 300 pixels cycling 0, 30, .., 180 (step = (300 - 42) // 255
        // = 1) map to 0, 43, 86, 129, 172, 215, 255.
        let px: Vec<u8> = (0..300).map(|i| (i % 7 * 30) as u8).collect();
        let out = equalize(&gray(300, 1, px.clone()));
        let want = [0u8, 43, 86, 129, 172, 215, 255];
        assert!(px.iter().zip(&out.pixels).all(|(&p, &o)| o == want[p as usize / 30]));
        // Table entries past 255 are clipped: 300 x 10, 200 x 20, 100 x 30 -> 0, 255, 255.
        let mut px = vec![10u8; 300];
        px.extend([20u8; 200]);
        px.extend([30u8; 100]);
        let out = equalize(&gray(600, 1, px));
        assert_eq!((out.pixels[0], out.pixels[300], out.pixels[599]), (0, 255, 255));
        // Too few pixels for a step of at least 1: unchanged.
        let img = gray(4, 1, vec![0, 0, 100, 255]);
        assert_eq!(equalize(&img), img);
    }

    #[test]
    fn enhance_ops_blend_like_pillow() {
        let img = rgb(2, 1, vec![200, 100, 50, 10, 20, 30]);
        // Brightness: towards black, truncated: 200 * 0.5 = 100, 10 * 0.5 = 5, 25, 15.
        assert_eq!(brightness(&img, 0.5).pixels, vec![100, 50, 25, 5, 10, 15]);
        // Extrapolation clamps: 200 * 1.5 = 300 -> 255.
        assert_eq!(brightness(&img, 1.5).pixels, vec![255, 150, 75, 15, 30, 45]);
        // Contrast: L = [124, 18] (Pillow's L24), mean 71 -> grey 71.
        assert_eq!(luminance(&img), vec![124, 18]);
        assert_eq!(contrast(&img, 0.0).pixels, vec![71; 6]);
        // 71 + 0.5 * (200 - 71) = 135.5 -> 135; 71 + 0.5 * (10 - 71) = 40.5 -> 40.
        assert_eq!(contrast(&img, 0.5).pixels, vec![135, 85, 60, 40, 45, 50]);
        // Color: towards each pixel's grey.
        assert_eq!(color(&img, 0.0).pixels, vec![124, 124, 124, 18, 18, 18]);
        let g = gray(2, 2, vec![0, 50, 100, 255]);
        assert_eq!(color(&g, 0.1), g);
        assert_eq!(contrast(&g, 0.0).pixels, vec![101; 4]); // mean 101.25
    }

    #[test]
    fn sharpness_blends_with_the_smooth_filter() {
        // 3x3 with a bright centre: only the centre is interior, so only it is filtered.
        let mut px = vec![10u8; 9];
        px[4] = 140;
        let img = gray(3, 3, px);
        // SMOOTH centre: (8 * 10 + 5 * 140) / 13 = 60 (+0.5, truncated: 60.5 -> 60).
        assert_eq!(smooth(&img)[4], 60);
        let soft = sharpness(&img, 0.0);
        assert_eq!(soft.pixels[4], 60);
        assert!(soft.pixels.iter().enumerate().all(|(i, &v)| i == 4 || v == 10));
        // Factor 2 pushes away from the smooth value: 60 + 2 * 80 = 220.
        assert_eq!(sharpness(&img, 2.0).pixels[4], 220);
    }

    /// The row-slice filter gives the per-pixel transcription's bytes, grey and RGB.
    #[test]
    fn smooth_equals_the_transcription() {
        fn smooth_reference(img: &Image) -> Vec<u8> {
            let (w, h, c) = (img.width as usize, img.height as usize, channels(img));
            let mut out = img.pixels.clone();
            let (k, k5) = (1.0f32 / 13.0, 5.0f32 / 13.0);
            let px = |x: usize, y: usize, ch: usize| f32::from(img.pixels[(y * w + x) * c + ch]);
            let row = |x: usize, y: usize, ch: usize, mid: f32| px(x - 1, y, ch) * k + px(x, y, ch) * mid + px(x + 1, y, ch) * k;
            for y in 1..h - 1 {
                for x in 1..w - 1 {
                    for ch in 0..c {
                        let mut ss = 0.5f32;
                        ss += row(x, y + 1, ch, k);
                        ss += row(x, y, ch, k5);
                        ss += row(x, y - 1, ch, k);
                        out[(y * w + x) * c + ch] = ss.clamp(0.0, 255.0) as u8;
                    }
                }
            }
            out
        }
        for c in [1u8, 3] {
            for (w, h) in [(3, 3), (17, 11), (64, 5)] {
                let img = texture(w, h, c);
                assert_eq!(smooth(&img), smooth_reference(&img), "{c} channels {w}x{h}");
            }
        }
        // Per-channel tables reach every channel of an RGB image.
        let img = texture(7, 5, 3);
        let luts: Vec<[u8; 256]> = (0..3).map(|ch| std::array::from_fn(|v| (v as u8).wrapping_mul(3 + ch as u8))).collect();
        let want: Vec<u8> = img.pixels.iter().enumerate().map(|(i, &p)| luts[i % 3][p as usize]).collect();
        assert_eq!(apply_luts(&img, &luts).pixels, want);
    }

    #[test]
    fn magnitude_zero_enhance_is_identity() {
        let img = texture(9, 7, 3);
        for f in [color, contrast, brightness, sharpness] {
            assert_eq!(f(&img, 1.0), img);
        }
        let spec = RandAugmentSpec { magnitude: 0.0, num_ops: 1, magnitude_std: 0.0, magnitude_max: 10.0, increasing: true, prob: 1.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let ops = [
            Op::ColorIncreasing,
            Op::ContrastIncreasing,
            Op::BrightnessIncreasing,
            Op::SharpnessIncreasing,
            Op::Rotate,
            Op::ShearX,
            Op::ShearY,
            Op::TranslateXRel,
            Op::TranslateYRel,
            Op::SolarizeIncreasing,
            Op::SolarizeAdd,
        ];
        for op in ops {
            for _ in 0..4 {
                assert_eq!(augment_op(img.clone(), op, &spec, &[1, 2, 3], &mut rng), img, "{op:?}");
            }
        }
    }

    #[test]
    fn rotate_quarter_turn_of_a_square_is_transpose_and_flip() {
        let img = gray(3, 3, (1..=9).collect());
        // 90 degrees counter-clockwise: the right column becomes the top row.
        assert_eq!(rotate(&img, 90.0, &[0]).pixels, vec![3, 6, 9, 2, 5, 8, 1, 4, 7]);
        assert_eq!(rotate(&img, -90.0, &[0]).pixels, vec![7, 4, 1, 8, 5, 2, 9, 6, 3]);
        assert_eq!(rotate(&img, 180.0, &[0]).pixels, (1..=9).rev().collect::<Vec<u8>>());
        // The generic affine path gives the same exact result at pixel centres.
        let m = [0.0, -1.0, 3.0, 1.0, 0.0, 0.0];
        assert_eq!(affine(&img, m, &[0]).pixels, rotate(&img, 90.0, &[0]).pixels);
        // Non-square: not a transpose; the corners come from outside and take the fill.
        let wide = rgb(4, 2, vec![50; 24]);
        let out = rotate(&wide, 90.0, &[124, 116, 104]);
        let (f, p) = ([124, 116, 104], [50, 50, 50]);
        let row: Vec<u8> = [f, p, p, f].concat();
        assert_eq!(out.pixels, [row.clone(), row].concat()); // as Pillow gives
    }

    #[test]
    fn rotate_small_angle_matches_pillow() {
        // Pillow: Image.frombytes("L", (4, 4), bytes(range(0, 160, 10))).rotate(
        //     10, resample=BICUBIC, fillcolor=128)
        let img = gray(4, 4, (0..16).map(|i| i * 10).collect());
        let out = rotate(&img, 10.0, &[128]);
        assert_eq!(out.pixels, ROTATE10_PIL.to_vec());
    }

    /// Python 3: `round(math.cos(-math.radians(-29.6689)), 15)` and friends.
    #[test]
    fn round15_is_pythons_round() {
        let cases = [
            (0.8689003201386946, 0.868900320138695),
            (0.8737976862986775, 0.873797686298677),
            (0.8745630089480345, 0.874563008948035),
            (0.8760871354294495, 0.876087135429449),
            (0.48169249518046453, 0.481692495180465),
            (6.123233995736766e-17, 0.0),
            (-0.9999999999999999, -1.0),
        ];
        for (v, want) in cases {
            assert_eq!(round15(v).to_bits(), f64::to_bits(want), "{v}");
        }
    }

    const ROTATE10_PIL: [u8; 16] = [0, 11, 27, 40, 25, 45, 68, 84, 65, 81, 104, 124, 109, 122, 138, 153];

    #[test]
    fn translate_shifts_and_fills() {
        let img = gray(4, 2, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // Reading from x + 1: content moves one pixel left, the right column is filled.
        let out = affine(&img, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[99]);
        assert_eq!(out.pixels, vec![2, 3, 4, 99, 6, 7, 8, 99]);
        let out = affine(&img, [1.0, 0.0, 0.0, 0.0, 1.0, -1.0], &[99]);
        assert_eq!(out.pixels, vec![99, 99, 99, 99, 1, 2, 3, 4]);
        let rgb_img = rgb(2, 1, vec![1, 2, 3, 4, 5, 6]);
        let out = affine(&rgb_img, [1.0, 0.0, -1.0, 0.0, 1.0, 0.0], &[124, 116, 104]);
        assert_eq!(out.pixels, vec![124, 116, 104, 1, 2, 3]);
    }

    #[test]
    fn shear_matches_pillow() {
        // Pillow: Image.frombytes("L", (4, 4), bytes(range(0, 160, 10))).transform(
        //     (4, 4), AFFINE, (1, 0.3, 0, 0, 1, 0), BICUBIC, fillcolor=128)
        let img = gray(4, 4, (0..16).map(|i| i * 10).collect());
        let out = affine(&img, [1.0, 0.3, 0.0, 0.0, 1.0, 0.0], &[128]);
        assert_eq!(out.pixels, SHEAR03_PIL.to_vec());
    }

    const SHEAR03_PIL: [u8; 16] = [1, 12, 22, 31, 43, 54, 65, 71, 86, 96, 107, 128, 130, 140, 150, 128];

    /// Pillow's FLOOR (C's `floor` below 0, truncation above), around integers and zero.
    #[test]
    fn floor_i_is_floor() {
        for v in [-0.5f64, -0.25, -0.0, 0.0, 0.3, 1.0, 2.9999999, 223.5, 17.0, -1.0, -1.5] {
            let up = f64::from_bits(v.to_bits() + 1);
            let down = if v == 0.0 { -f64::MIN_POSITIVE } else { f64::from_bits(v.to_bits() - 1) };
            for x in [v, up, down] {
                assert_eq!(floor_i(x), x.floor() as i64, "{x}");
            }
        }
    }

    /// The fast paths give the bytes of the plain per-tap transcription (`affine_any`, which
    /// clamps every tap) exactly, interior and edges, for the ops' matrices and for arbitrary
    /// ones (scaled, rotated, off the image); pillow_parity.rs checks them against Pillow.
    #[test]
    fn affine_fast_paths_equal_the_transcription() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for c in [1u8, 3] {
            for (w, h) in [(37, 29), (4, 4), (1, 5), (64, 48)] {
                let img = texture(w, h, c);
                let fill: Vec<u8> = (0..c).map(|i| 100 + i * 7).collect();
                for _ in 0..25 {
                    let a = uniform(&mut rng, -0.6, 0.6);
                    let s = uniform(&mut rng, 0.7, 1.4);
                    let m = [
                        s * a.cos(),
                        uniform(&mut rng, -0.4, 0.4) + a.sin(),
                        uniform(&mut rng, -20.0, 20.0),
                        -a.sin(),
                        s * a.cos(),
                        uniform(&mut rng, -20.0, 20.0),
                    ];
                    assert_eq!(affine(&img, m, &fill), affine_any(&img, m, &fill), "{c} channels, {w}x{h}, {m:?}");
                }
                // RandAugment's own: shears and translations (dx or dy exactly 0), whole pixels.
                let ops = [
                    [1.0, 0.27, 0.0, 0.0, 1.0, 0.0],
                    [1.0, -0.3, 0.0, 0.0, 1.0, 0.0],
                    [1.0, 0.0, 0.0, -0.19, 1.0, 0.0],
                    [1.0, 0.0, 3.7, 0.0, 1.0, 0.0],
                    [1.0, 0.0, 0.0, 0.0, 1.0, -5.3],
                    [1.0, 0.0, -2.0, 0.0, 1.0, 1.0],
                ];
                for m in ops {
                    assert_eq!(affine(&img, m, &fill), affine_any(&img, m, &fill), "{c} channels, {w}x{h}, {m:?}");
                }
            }
        }
    }

    #[test]
    fn every_op_runs_on_grey_and_rgb() {
        let spec = RandAugmentSpec { magnitude: 9.0, num_ops: 2, magnitude_std: 0.5, magnitude_max: 10.0, increasing: true, prob: 1.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for c in [1u8, 3] {
            let img = texture(12, 9, c);
            let fill = vec![128u8; c as usize];
            for op in RAND_INCREASING_TRANSFORMS.iter().chain(&RAND_TRANSFORMS) {
                let out = augment_op(img.clone(), *op, &spec, &fill, &mut rng);
                assert_eq!((out.width, out.height, out.channels, out.pixels.len()), (12, 9, c, img.pixels.len()), "{op:?}");
            }
        }
    }

    #[test]
    fn rand_augment_is_deterministic_and_prob_zero_is_identity() {
        let img = texture(16, 16, 3);
        let spec = RandAugmentSpec::parse("rand-m9-mstd0.5-inc1").unwrap().unwrap();
        let run = |seed| rand_augment(img.clone(), &spec, &[124, 116, 104], &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(run(1), run(1));
        assert!((0..20).any(|s| run(s) != img));
        let off = RandAugmentSpec { prob: 0.0, ..spec };
        assert_eq!(rand_augment(img.clone(), &off, &[0, 0, 0], &mut ChaCha8Rng::seed_from_u64(2)), img);
    }
}
