//! timm's `Mixup` in 'batch' mode (one lambda per batch, partner = the batch reversed) and
//! its label-smoothed soft targets.

use rand::Rng;
use rayon::prelude::*;

use super::dist::beta;

/// Mixup/CutMix settings, timm's names (`--mixup`, `--cutmix`, `--mixup_prob`,
/// `--mixup_switch_prob`, `--smoothing`).
#[derive(Debug, Clone, PartialEq)]
pub struct MixupCutmix {
    /// Beta(alpha, alpha) for mixup; 0 disables mixup.
    pub mixup_alpha: f64,
    /// Beta(alpha, alpha) for cutmix; 0 disables cutmix.
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed at all.
    pub prob: f64,
    /// With both enabled, probability of cutmix rather than mixup.
    pub switch_prob: f64,
    pub label_smoothing: f64,
    pub num_classes: usize,
}

impl MixupCutmix {
    /// In place on a batch of CHW images (`batch x c x h x w`, contiguous); returns soft targets
    /// `batch x num_classes`, row-major. The batch size is `labels.len()`.
    pub fn apply(&self, images: &mut [f32], c: usize, h: usize, w: usize, labels: &[u32], rng: &mut impl Rng) -> Vec<f32> {
        assert_eq!(images.len(), labels.len() * c * h * w, "images must be labels.len() x {c} x {h} x {w}");
        let (lam, use_cutmix) = self.params(rng);
        let lam = if lam == 1.0 {
            1.0
        } else if use_cutmix {
            cutmix(images, labels.len(), c, h, w, lam, rng)
        } else {
            mixup(images, labels.len(), lam);
            lam
        };
        mixed_targets(labels, self.num_classes, lam, self.label_smoothing)
    }

    /// timm `_params_per_batch`: `(lam, use_cutmix)`, lam = 1 when the batch is left unmixed.
    pub(crate) fn params<R: Rng + ?Sized>(&self, rng: &mut R) -> (f64, bool) {
        let (mix, cut) = (self.mixup_alpha > 0.0, self.cutmix_alpha > 0.0);
        // timm asserts here; with nothing enabled there is simply nothing to mix.
        if !(mix || cut) || rng.random::<f64>() >= self.prob {
            return (1.0, false);
        }
        let use_cutmix = match (mix, cut) {
            (true, true) => rng.random::<f64>() < self.switch_prob,
            (false, true) => true,
            _ => false,
        };
        let alpha = if use_cutmix { self.cutmix_alpha } else { self.mixup_alpha };
        (beta(rng, alpha, alpha), use_cutmix)
    }
}

/// Image `i` of the batch and its partner `batch - 1 - i`, for every `i < batch / 2`, in
/// parallel, and the middle image of an odd batch (its own partner).
fn pairs_mut(images: &mut [f32], batch: usize, pair: impl Fn(&mut [f32], &mut [f32]) + Sync, middle: impl FnOnce(&mut [f32])) {
    if batch == 0 {
        return;
    }
    let n = images.len() / batch;
    let half = batch / 2;
    let (left, rest) = images.split_at_mut(half * n);
    let (mid, right) = rest.split_at_mut((batch - 2 * half) * n);
    left.par_chunks_mut(n.max(1)).zip(right.par_chunks_mut(n.max(1)).rev()).for_each(|(a, b)| pair(a, b));
    if !mid.is_empty() {
        middle(mid);
    }
}

/// `x = lam * x + (1 - lam) * x.flip(0)`, in float32 as torch computes it.
pub(crate) fn mixup(images: &mut [f32], batch: usize, lam: f64) {
    let (l, r) = (lam as f32, (1.0 - lam) as f32);
    pairs_mut(
        images,
        batch,
        |a, b| {
            for (xi, xj) in a.iter_mut().zip(b.iter_mut()) {
                (*xi, *xj) = (*xi * l + *xj * r, *xj * l + *xi * r);
            }
        },
        |m| m.iter_mut().for_each(|x| *x = *x * l + *x * r),
    );
}

/// timm `rand_bbox`: a box of `int(H sqrt(1 - lam)) x int(W sqrt(1 - lam))` around a uniform
/// centre, clipped to the image: `(y_lo, y_hi, x_lo, x_hi)`.
pub(crate) fn rand_bbox<R: Rng + ?Sized>(h: usize, w: usize, lam: f64, rng: &mut R) -> (usize, usize, usize, usize) {
    let ratio = (1.0 - lam).sqrt();
    let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
    let cy = rng.random_range(0..h) as i64;
    let cx = rng.random_range(0..w) as i64;
    let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    (clip(cy - cut_h / 2, h), clip(cy + cut_h / 2, h), clip(cx - cut_w / 2, w), clip(cx + cut_w / 2, w))
}

/// Pastes the box from the reversed batch and returns lam corrected to the pasted area,
/// `1 - box / (H W)`.
pub(crate) fn cutmix<R: Rng + ?Sized>(images: &mut [f32], batch: usize, c: usize, h: usize, w: usize, lam: f64, rng: &mut R) -> f64 {
    let (yl, yh, xl, xh) = rand_bbox(h, w, lam, rng);
    // Image i takes its partner's box and the partner takes i's: a swap, so no copy is needed.
    pairs_mut(
        images,
        batch,
        |a, b| {
            for ch in 0..c {
                for y in yl..yh {
                    let row = (ch * h + y) * w;
                    a[row + xl..row + xh].swap_with_slice(&mut b[row + xl..row + xh]);
                }
            }
        },
        |_| {},
    );
    1.0 - ((yh - yl) * (xh - xl)) as f64 / (h * w) as f64
}

/// timm `mixup_target`: `lam * smooth(y) + (1 - lam) * smooth(y.flip(0))`.
pub(crate) fn mixed_targets(labels: &[u32], num_classes: usize, lam: f64, smoothing: f64) -> Vec<f32> {
    let off = smoothing / num_classes as f64;
    let on = 1.0 - smoothing + off;
    let (on, off) = (on as f32, off as f32);
    let (l, r) = (lam as f32, (1.0 - lam) as f32);
    let b = labels.len();
    let mut out = vec![0f32; b * num_classes];
    for (i, row) in out.chunks_exact_mut(num_classes.max(1)).enumerate().take(b) {
        let (a, p) = (labels[i] as usize, labels[b - 1 - i] as usize);
        assert!(a < num_classes && p < num_classes, "label out of range for {num_classes} classes");
        for (k, v) in row.iter_mut().enumerate() {
            let y1 = if k == a { on } else { off };
            let y2 = if k == p { on } else { off };
            *v = y1 * l + y2 * r;
        }
    }
    out
}

/// Soft targets without mixing (label smoothing only): off = s/K, on = 1 - s + off.
pub fn smoothed_targets(labels: &[u32], num_classes: usize, smoothing: f64) -> Vec<f32> {
    mixed_targets(labels, num_classes, 1.0, smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn smoothed_targets_put_on_and_off_values() {
        let t = smoothed_targets(&[2, 0], 4, 0.1);
        assert_eq!(t.len(), 8);
        // off = 0.025, on = 0.925.
        let want = [0.025, 0.025, 0.925, 0.025, 0.925, 0.025, 0.025, 0.025];
        assert!(t.iter().zip(want).all(|(a, b)| close(*a, b)), "{t:?}");
        for row in t.chunks(4) {
            assert!(close(row.iter().sum(), 1.0));
        }
        assert_eq!(smoothed_targets(&[1], 3, 0.0), vec![0.0, 1.0, 0.0]);
    }

    #[test]
    fn mixup_blends_with_the_reversed_batch() {
        // Batch of 3 one-pixel, one-channel images: partners are 0<->2, 1<->1.
        let mut x = vec![1.0f32, 5.0, 9.0];
        mixup(&mut x, 3, 0.75);
        assert!(close(x[0], 0.75 + 0.25 * 9.0) && close(x[1], 5.0) && close(x[2], 0.75 * 9.0 + 0.25));
        let t = mixed_targets(&[0, 1, 2], 3, 0.75, 0.0);
        assert!(t.iter().zip([0.75, 0.0, 0.25, 0.0, 1.0, 0.0, 0.25, 0.0, 0.75]).all(|(a, b)| close(*a, b)), "{t:?}");
        let t = mixed_targets(&[0, 1, 2, 0], 3, 0.3, 0.1);
        for row in t.chunks(3) {
            assert!(close(row.iter().sum(), 1.0), "{row:?}");
        }
        // Row 1 mixes class 1 (0.3) with its partner's class 2 (0.7), smoothed.
        let (on, off) = (1.0 - 0.1 + 0.1 / 3.0, 0.1 / 3.0);
        assert!(close(t[3], off as f32) && close(t[4], (0.3 * on + 0.7 * off) as f32) && close(t[5], (0.3 * off + 0.7 * on) as f32));
    }

    #[test]
    fn cutmix_pastes_the_partner_box_and_corrects_lam() {
        let (b, c, h, w) = (2, 2, 8, 10);
        for seed in 0..30 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // Image 0 is all 0, image 1 all 1.
            let mut x: Vec<f32> = (0..b * c * h * w).map(|i| (i / (c * h * w)) as f32).collect();
            let lam = cutmix(&mut x, b, c, h, w, 0.6, &mut rng);
            let n = c * h * w;
            let pasted = x[..n].iter().filter(|v| **v == 1.0).count();
            assert!(close(lam as f32, 1.0 - pasted as f32 / (c * h * w) as f32), "{lam} {pasted}");
            // The other image got exactly the complementary pixels.
            assert_eq!(x[n..].iter().filter(|v| **v == 0.0).count(), pasted);
            // cut = int(8 sqrt(.4)) = 5 rows, int(10 sqrt(.4)) = 6 columns, but the box spans
            // cut // 2 either side of its centre: at most 4 x 6.
            assert!(pasted <= c * 4 * 6);
        }
    }

    #[test]
    fn apply_mixes_or_not_by_probability() {
        let cfg = MixupCutmix { mixup_alpha: 0.8, cutmix_alpha: 1.0, prob: 0.0, switch_prob: 0.5, label_smoothing: 0.1, num_classes: 5 };
        let mut x: Vec<f32> = (0..4 * 3 * 4 * 4).map(|i| i as f32).collect();
        let before = x.clone();
        let labels = [0, 1, 2, 3];
        let t = cfg.apply(&mut x, 3, 4, 4, &labels, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(x, before);
        assert_eq!(t, smoothed_targets(&labels, 5, 0.1));
        let cfg = MixupCutmix { prob: 1.0, ..cfg };
        let mut changed = 0;
        for seed in 0..20 {
            let mut x = before.clone();
            let t = cfg.apply(&mut x, 3, 4, 4, &labels, &mut ChaCha8Rng::seed_from_u64(seed));
            changed += usize::from(x != before);
            for (i, row) in t.chunks(5).enumerate() {
                assert!(close(row.iter().sum(), 1.0));
                // Only a sample's own class and its partner's carry more than the off value.
                let (a, p) = (labels[i] as usize, labels[3 - i] as usize);
                assert!(row.iter().enumerate().all(|(k, v)| k == a || k == p || close(*v, 0.02)));
            }
        }
        assert!(changed >= 15, "{changed}");
    }
}
