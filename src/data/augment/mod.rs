//! Augmentation as the MAE fine-tuning recipe applies it through timm: the settings in timm's
//! notation, the train and eval transforms, Mixup/CutMix and label smoothing.
//!
//! Image ops reproduce Pillow's arithmetic (fixed-point resampling, truncating blends and
//! affine warps) so that a transformed image is the one torchvision/timm would give for the
//! same random draws; the draws themselves come from the caller's rng, so a seed reproduces a
//! batch.

mod dist;
mod erasing;
pub(crate) mod mixup;
mod randaug;
mod resize;

#[cfg(test)]
mod pillow_parity;

pub use mixup::{MixupCutmix, smoothed_targets};

use rand::Rng;

use super::image::Image;

/// timm's RandAugment config string, e.g. `rand-m9-mstd0.5-inc1`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandAugmentSpec {
    /// Mean magnitude (0..10 scale).
    pub magnitude: f64,
    /// Ops per image.
    pub num_ops: usize,
    /// Std of the per-op magnitude noise.
    pub magnitude_std: f64,
    /// Magnitude upper bound.
    pub magnitude_max: f64,
    /// Use the "increasing" op set (higher magnitude = stronger for every op).
    pub increasing: bool,
    /// Probability that each chosen op is applied.
    pub prob: f64,
}

impl RandAugmentSpec {
    /// Parse `rand-m9-mstd0.5-inc1`; `none` (or empty) means no RandAugment.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let mut parts = s.split('-');
        if parts.next() != Some("rand") {
            return Err(format!("`{s}` is not a RandAugment policy: it must start with `rand-` (e.g. rand-m9-mstd0.5-inc1), or be `none`"));
        }
        let mut spec = RandAugmentSpec {
            magnitude: 10.0,
            num_ops: 2,
            magnitude_std: 0.0,
            magnitude_max: 10.0,
            increasing: false,
            prob: 0.5,
        };
        for part in parts {
            let split = part.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(part.len());
            let (key, val) = part.split_at(split);
            let num = |v: &str| v.parse::<f64>().map_err(|_| format!("`{part}` in `{s}`: `{v}` is not a number"));
            match key {
                "m" => spec.magnitude = num(val)?,
                "n" => spec.num_ops = num(val)? as usize,
                "mstd" => spec.magnitude_std = num(val)?,
                "mmax" => spec.magnitude_max = num(val)?,
                "inc" => spec.increasing = num(val)? != 0.0,
                "p" => spec.prob = num(val)?,
                _ => return Err(format!("`{part}` in `{s}` is not a RandAugment setting (m, n, mstd, mmax, inc, p)")),
            }
        }
        Ok(Some(spec))
    }
}

/// Per-channel normalisation, in 0..1 units: `(x / 255 - mean) / std`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    pub fn imagenet() -> Self {
        Normalize { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    /// ImageNet statistics for 3 channels, mean 0.5 / std 0.5 per channel otherwise.
    pub fn for_channels(c: usize) -> Self {
        if c == 3 { Self::imagenet() } else { Normalize { mean: vec![0.5; c], std: vec![0.5; c] } }
    }

    /// timm's `img_mean`, the fill of RandAugment's geometric ops: `min(255, round(255 mean))`.
    fn fill(&self) -> Vec<u8> {
        self.mean.iter().map(|&m| (255.0 * f64::from(m)).round_ties_even().clamp(0.0, 255.0) as u8).collect()
    }

    /// `ToTensor` + `Normalize`: HWC u8 to CHW f32, in float32 as torch computes it.
    #[cfg(test)]
    fn to_chw(&self, img: &Image) -> Vec<f32> {
        let mut out = vec![0f32; img.pixels.len()];
        self.to_chw_into(img, &mut out);
        out
    }

    /// `ToTensor` + `Normalize` into `out` (the image's size): HWC u8 to CHW f32, in float32 as
    /// torch computes it.
    fn to_chw_into(&self, img: &Image, out: &mut [f32]) {
        let c = img.channels as usize;
        assert!(
            self.mean.len() == c && self.std.len() == c,
            "normalisation has {} means and {} stds for a {c}-channel image",
            self.mean.len(),
            self.std.len()
        );
        let hw = img.pixels.len() / c.max(1);
        // One table per channel: the same f32 expression, evaluated once per value.
        let luts: Vec<[f32; 256]> =
            (0..c).map(|ch| std::array::from_fn(|p| (p as f32 / 255.0 - self.mean[ch]) / self.std[ch])).collect();
        assert_eq!(out.len(), img.pixels.len(), "the output holds the image");
        if c == 3 {
            let (r, gb) = out.split_at_mut(hw);
            let (g, b) = gb.split_at_mut(hw);
            for (((px, r), g), b) in img.pixels.chunks_exact(3).zip(r).zip(g).zip(b) {
                (*r, *g, *b) = (luts[0][px[0] as usize], luts[1][px[1] as usize], luts[2][px[2] as usize]);
            }
        } else {
            for (i, px) in img.pixels.chunks_exact(c).enumerate() {
                for (ch, &p) in px.iter().enumerate() {
                    out[ch * hw + i] = luts[ch][p as usize];
                }
            }
        }
    }
}

/// timm's training transform (`create_transform(is_training=True)` as MAE's fine-tuning
/// builds it): RandomResizedCrop (bicubic) -> horizontal flip -> RandAugment -> ToTensor +
/// Normalize -> RandomErasing ('pixel' mode, one box).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    /// Output is `input_size x input_size`.
    pub input_size: usize,
    /// RandomResizedCrop's range of the crop's share of the image area.
    pub scale: (f64, f64),
    /// RandomResizedCrop's range of the crop's aspect ratio (w / h), sampled log-uniformly.
    pub ratio: (f64, f64),
    /// Probability of a horizontal flip.
    pub hflip: f64,
    pub randaug: Option<RandAugmentSpec>,
    /// RandomErasing probability.
    pub reprob: f64,
    pub normalize: Normalize,
}

impl TrainTransform {
    /// MAE's fine-tuning defaults: scale (0.08, 1), ratio (3/4, 4/3), flip 0.5,
    /// `rand-m9-mstd0.5-inc1`, erasing 0.25.
    pub fn new(input_size: usize, normalize: Normalize) -> Self {
        TrainTransform {
            input_size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
            randaug: RandAugmentSpec::parse("rand-m9-mstd0.5-inc1").ok().flatten(),
            reprob: 0.25,
            normalize,
        }
    }

    /// Returns CHW f32, normalised, erased; length channels*input_size*input_size.
    pub fn apply(&self, img: &Image, rng: &mut impl Rng) -> Vec<f32> {
        let x = self.augment(img, rng);
        let mut out = vec![0f32; x.pixels.len()];
        self.finish(&x, rng, &mut out);
        out
    }

    /// `apply` written into `out` (a batch's slot for the sample), with no buffer of its own.
    pub fn apply_into(&self, img: &Image, rng: &mut impl Rng, out: &mut [f32]) {
        let x = self.augment(img, rng);
        self.finish(&x, rng, out);
    }

    /// The u8 stages: RandomResizedCrop, flip, RandAugment.
    fn augment(&self, img: &Image, rng: &mut impl Rng) -> Image {
        let n = self.input_size;
        let (top, left, h, w) = resize::rrc_params(img.width, img.height, self.scale, self.ratio, rng);
        let crop = resize::crop(img, top as i64, left as i64, h, w);
        let mut x = resize::resize_bicubic(&crop, n, n);
        if rng.random::<f64>() < self.hflip {
            x = resize::hflip(&x);
        }
        if let Some(spec) = &self.randaug {
            x = randaug::rand_augment(x, spec, &self.normalize.fill(), rng);
        }
        x
    }

    /// ToTensor + Normalize into `out`, then RandomErasing there.
    fn finish(&self, x: &Image, rng: &mut impl Rng, out: &mut [f32]) {
        self.normalize.to_chw_into(x, out);
        erasing::random_erasing(out, x.channels as usize, x.height as usize, x.width as usize, self.reprob, rng);
    }
}

/// The evaluation transform of MAE's fine-tuning: resize the shorter side to
/// `int(input_size / crop_pct)` (bicubic), centre crop `input_size`, ToTensor + Normalize.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    pub input_size: usize,
    pub crop_pct: f64,
    pub normalize: Normalize,
}

impl EvalTransform {
    /// MAE's choice: crop_pct 224/256 up to 224 pixels, 1.0 above.
    pub fn new(input_size: usize, normalize: Normalize) -> Self {
        let crop_pct = if input_size <= 224 { 224.0 / 256.0 } else { 1.0 };
        EvalTransform { input_size, crop_pct, normalize }
    }

    /// CHW f32, normalised; length channels*input_size*input_size.
    pub fn apply(&self, img: &Image) -> Vec<f32> {
        let mut out = vec![0f32; usize::from(img.channels) * self.input_size * self.input_size];
        self.apply_into(img, &mut out);
        out
    }

    /// `apply` written into `out`.
    pub fn apply_into(&self, img: &Image, out: &mut [f32]) {
        let size = (self.input_size as f64 / self.crop_pct) as usize;
        let resized = resize::resize_shorter(img, size);
        let crop = resize::center_crop(&resized, self.input_size, self.input_size);
        self.normalize.to_chw_into(&crop, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn texture(w: u32, h: u32, c: u8) -> Image {
        let pixels = (0..w * h * u32::from(c)).map(|i| ((i * 37 + (i / 5) * 13) % 253) as u8).collect();
        Image { width: w, height: h, channels: c, pixels }
    }

    fn plain(input_size: usize, normalize: Normalize) -> TrainTransform {
        let base = TrainTransform::new(input_size, normalize);
        TrainTransform { scale: (1.0, 1.0), ratio: (1.0, 1.0), hflip: 0.0, randaug: None, reprob: 0.0, ..base }
    }

    #[test]
    fn normalize_statistics_and_fill() {
        assert_eq!(Normalize::for_channels(3), Normalize::imagenet());
        assert_eq!(Normalize::imagenet().fill(), vec![124, 116, 104]);
        let g = Normalize::for_channels(1);
        assert_eq!((g.mean.clone(), g.std.clone(), g.fill()), (vec![0.5], vec![0.5], vec![128]));
        let img = Image { width: 2, height: 1, channels: 1, pixels: vec![0, 255] };
        assert_eq!(g.to_chw(&img), vec![-1.0, 1.0]);
        // CHW order: all of channel 0, then channel 1, then channel 2.
        let img = Image { width: 2, height: 1, channels: 3, pixels: vec![255, 0, 0, 255, 0, 0] };
        let t = Normalize { mean: vec![0.0; 3], std: vec![1.0; 3] }.to_chw(&img);
        assert_eq!(t, vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    /// The per-channel tables give torch's float32 `(x / 255 - mean) / std` for every value.
    #[test]
    fn normalisation_tables_equal_the_formula() {
        let norm = Normalize::imagenet();
        let pixels: Vec<u8> = (0..=255u8).flat_map(|v| [v, 255 - v, v.wrapping_mul(7)]).collect();
        let img = Image { width: 16, height: 16, channels: 3, pixels };
        let t = norm.to_chw(&img);
        for (i, px) in img.pixels.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                let want = (f32::from(px[ch]) / 255.0 - norm.mean[ch]) / norm.std[ch];
                assert_eq!(t[ch * 256 + i].to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn train_output_is_chw_of_input_size_and_seeded() {
        let tf = TrainTransform::new(16, Normalize::imagenet());
        let img = texture(50, 37, 3);
        let a = tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a.len(), 3 * 16 * 16);
        assert_eq!(a, tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(1)));
        assert_ne!(a, tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(2)));
        // Grayscale goes through every stage too.
        let tf = TrainTransform::new(12, Normalize::for_channels(1));
        let img = texture(20, 31, 1);
        for seed in 0..40 {
            assert_eq!(tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(seed)).len(), 12 * 12);
        }
    }

    #[test]
    fn full_square_crop_is_a_plain_resize_and_flip_mirrors() {
        let norm = Normalize::imagenet();
        let img = texture(24, 24, 3);
        let tf = plain(10, norm.clone());
        let want = norm.to_chw(&resize::resize_bicubic(&img, 10, 10));
        assert_eq!(tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(4)), want);
        let flipped = TrainTransform { hflip: 1.0, ..tf }.apply(&img, &mut ChaCha8Rng::seed_from_u64(4));
        for ch in 0..3 {
            for y in 0..10 {
                for x in 0..10 {
                    assert_eq!(flipped[(ch * 10 + y) * 10 + x], want[(ch * 10 + y) * 10 + 9 - x]);
                }
            }
        }
    }

    #[test]
    fn erasing_happens_after_normalisation() {
        let norm = Normalize::for_channels(1);
        let img = Image { width: 16, height: 16, channels: 1, pixels: vec![255; 256] };
        let tf = TrainTransform { reprob: 1.0, ..plain(16, norm) };
        let erased = (0..10)
            .map(|s| tf.apply(&img, &mut ChaCha8Rng::seed_from_u64(s)).iter().filter(|v| **v != 1.0).count())
            .max()
            .unwrap();
        assert!(erased > 0);
    }

    #[test]
    fn eval_takes_the_torchvision_centre_crop() {
        // 32 wide, 40 high; R = x, G = y. int(27 / (27 / 32)) = 32 = the shorter side: no resize.
        let mut pixels = Vec::new();
        for y in 0..40u8 {
            for x in 0..32u8 {
                pixels.extend([x, y, 0]);
            }
        }
        let img = Image { width: 32, height: 40, channels: 3, pixels };
        let id = Normalize { mean: vec![0.0; 3], std: vec![1.0 / 255.0; 3] };
        let tf = EvalTransform { input_size: 27, crop_pct: 27.0 / 32.0, normalize: id };
        let t = tf.apply(&img);
        assert_eq!(t.len(), 3 * 27 * 27);
        // top = round((40 - 27) / 2) = round(6.5) = 6, left = round(2.5) = 2 (half to even).
        for y in 0..27 {
            for x in 0..27 {
                assert!((t[y * 27 + x] - (x + 2) as f32).abs() < 1e-3);
                assert!((t[(27 + y) * 27 + x] - (y + 6) as f32).abs() < 1e-3);
            }
        }
        // With a resize: shorter side 16, longer int(16 * 40 / 32) = 20, then the centre 14x14.
        let flat = Image { width: 32, height: 40, channels: 3, pixels: vec![200; 32 * 40 * 3] };
        let tf = EvalTransform { input_size: 14, crop_pct: 14.0 / 16.0, normalize: Normalize::imagenet() };
        let t = tf.apply(&flat);
        assert_eq!(t.len(), 3 * 14 * 14);
        assert!((t[0] - (200.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
        assert_eq!(EvalTransform::new(224, Normalize::imagenet()).crop_pct, 0.875);
    }

    #[test]
    fn parses_the_mae_policy() {
        let s = RandAugmentSpec::parse("rand-m9-mstd0.5-inc1").unwrap().unwrap();
        assert_eq!((s.magnitude, s.num_ops, s.magnitude_std, s.increasing, s.prob), (9.0, 2, 0.5, true, 0.5));
        assert!(RandAugmentSpec::parse("none").unwrap().is_none());
        assert!(RandAugmentSpec::parse("rand-q9").is_err());
        assert!(RandAugmentSpec::parse("autoaug").is_err());
    }
}
