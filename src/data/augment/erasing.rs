//! timm's `RandomErasing` in 'pixel' mode, one box, on a normalised CHW image.

use rand::Rng;

use super::dist::{fill_standard_normal, uniform};

const MIN_AREA: f64 = 0.02;
const MAX_AREA: f64 = 1.0 / 3.0;
const MIN_ASPECT: f64 = 0.3;

/// With probability `prob`, up to 10 tries for a box of 2%..33% of the area with a log-uniform
/// aspect in (0.3, 1/0.3) that fits; the first that fits is filled with N(0, 1) noise in every
/// channel.
pub(crate) fn random_erasing<R: Rng + ?Sized>(img: &mut [f32], c: usize, h: usize, w: usize, prob: f64, rng: &mut R) {
    debug_assert_eq!(img.len(), c * h * w);
    if prob <= 0.0 || rng.random::<f64>() > prob {
        return;
    }
    let area = (h * w) as f64;
    let log_aspect = (MIN_ASPECT.ln(), (1.0 / MIN_ASPECT).ln());
    for _ in 0..10 {
        let target_area = uniform(rng, MIN_AREA, MAX_AREA) * area;
        let aspect = uniform(rng, log_aspect.0, log_aspect.1).exp();
        let eh = (target_area * aspect).sqrt().round_ties_even() as usize;
        let ew = (target_area / aspect).sqrt().round_ties_even() as usize;
        if ew < w && eh < h {
            let top = rng.random_range(0..=h - eh);
            let left = rng.random_range(0..=w - ew);
            for ch in 0..c {
                for y in top..top + eh {
                    let row = (ch * h + y) * w;
                    fill_standard_normal(rng, &mut img[row + left..row + left + ew]);
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The bounding box (top, left, bottom, right) of the changed pixels of channel `ch`.
    fn changed_box(img: &[f32], ch: usize, h: usize, w: usize) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for y in 0..h {
            for x in 0..w {
                if img[(ch * h + y) * w + x] != 0.0 {
                    let (t, l, bo, r) = b.unwrap_or((y, x, y, x));
                    b = Some((t.min(y), l.min(x), bo.max(y), r.max(x)));
                }
            }
        }
        b
    }

    #[test]
    fn erasing_fills_one_rectangle_in_every_channel() {
        let (c, h, w) = (3, 20, 24);
        for seed in 0..50 {
            let mut img = vec![0.0f32; c * h * w];
            random_erasing(&mut img, c, h, w, 1.0, &mut ChaCha8Rng::seed_from_u64(seed));
            let Some((t, l, b, r)) = changed_box(&img, 0, h, w) else { continue }; // no box fitted
            let (bh, bw) = (b - t + 1, r - l + 1);
            assert!(bh < h && bw < w);
            // Every pixel inside the box changed (noise is never exactly 0), none outside did.
            for ch in 0..c {
                assert_eq!(changed_box(&img, ch, h, w), Some((t, l, b, r)));
                let inside = (t..=b).flat_map(|y| (l..=r).map(move |x| (y, x)));
                assert!(inside.clone().all(|(y, x)| img[(ch * h + y) * w + x] != 0.0));
                let nonzero = img[ch * h * w..(ch + 1) * h * w].iter().filter(|v| **v != 0.0).count();
                assert_eq!(nonzero, bh * bw);
            }
            let frac = (bh * bw) as f64 / (h * w) as f64;
            assert!((0.01..0.45).contains(&frac), "{frac}");
        }
    }

    #[test]
    fn erasing_with_zero_probability_changes_nothing() {
        let mut img: Vec<f32> = (0..3 * 8 * 8).map(|i| i as f32).collect();
        let before = img.clone();
        random_erasing(&mut img, 3, 8, 8, 0.0, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(img, before);
    }

    #[test]
    fn erased_values_are_standard_normal() {
        let (c, h, w) = (3, 64, 64);
        let mut vals = Vec::new();
        for seed in 0..20 {
            let mut img = vec![0.0f32; c * h * w];
            random_erasing(&mut img, c, h, w, 1.0, &mut ChaCha8Rng::seed_from_u64(seed));
            vals.extend(img.into_iter().filter(|v| *v != 0.0).map(f64::from));
        }
        let n = vals.len() as f64;
        let mean = vals.iter().sum::<f64>() / n;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        assert!(n > 10_000.0 && mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{n} {mean} {var}");
    }
}
