//! Batches for training and evaluation: items decoded and augmented on all cores, one batch
//! prepared ahead on a background thread while the model works on the current one.
//!
//! Every random choice is seeded from (seed, epoch, position), so an epoch's batches are the
//! same whatever the thread timing, and a run resumed at an epoch boundary sees exactly the
//! batches an uninterrupted run would have seen.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::augment::{EvalTransform, MixupCutmix, TrainTransform, smoothed_targets};
use super::catalog::Item;
use super::image::{Image, ReadFailures, SplitReader};

/// A split ready to be read: its items and a reader for them.
pub struct SplitData {
    pub reader: SplitReader,
    pub items: Vec<Item>,
    pub channels: u8,
    pub failures: ReadFailures,
}

/// One batch, CHW f32 images and per-sample targets.
pub struct Batch {
    pub images: Vec<f32>,
    pub size: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u32>,
    /// Soft targets (mixup/cutmix + smoothing), batch x classes; empty for evaluation.
    pub targets: Vec<f32>,
}

fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(index);
    rng
}

/// The training order of an epoch: a seeded permutation; the last partial batch is dropped
/// (MAE's train loader uses drop_last).
pub fn epoch_batches(n: usize, batch: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut sample_rng(seed, epoch, u64::MAX));
    order.chunks_exact(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// Micro-batches per epoch for `n` training items.
pub fn iters_per_epoch(n: usize, batch: usize) -> usize {
    n / batch.max(1)
}

pub struct TrainLoader {
    pub data: Arc<SplitData>,
    pub transform: Arc<TrainTransform>,
    /// Mixup/CutMix + smoothing for classification; None (pre-training) gives no targets.
    pub mix: Option<Arc<MixupCutmix>>,
    pub batch: usize,
    pub seed: u64,
}

impl TrainLoader {
    /// The batches of `epoch`, from micro-batch `skip` on, produced one ahead on a thread.
    pub fn epoch(&self, epoch: u64, skip: usize) -> Receiver<Batch> {
        let (tx, rx) = sync_channel(1);
        let batches = epoch_batches(self.data.items.len(), self.batch, self.seed, epoch);
        let (data, transform, mix, seed) = (self.data.clone(), self.transform.clone(), self.mix.clone(), self.seed);
        std::thread::spawn(move || {
            for (b, idx) in batches.into_iter().enumerate().skip(skip) {
                let batch = make_train_batch(&data, &transform, mix.as_deref(), &idx, seed, epoch, b as u64);
                if tx.send(batch).is_err() {
                    return; // the trainer stopped early
                }
            }
        });
        rx
    }
}

fn make_train_batch(
    data: &SplitData,
    transform: &TrainTransform,
    mix: Option<&MixupCutmix>,
    idx: &[usize],
    seed: u64,
    epoch: u64,
    batch_no: u64,
) -> Batch {
    let size = transform.input_size;
    let c = data.channels as usize;
    let (mut images, labels) = gather(data, idx, c * size * size, |i, img, slot| {
        let mut rng = sample_rng(seed, epoch, i as u64);
        transform.apply_into(img, &mut rng, slot);
    });
    let mut rng = sample_rng(seed, epoch, (1u64 << 62) + batch_no);
    let targets = match mix {
        Some(m) => m.apply(&mut images, c, size, size, &labels, &mut rng),
        None => Vec::new(),
    };
    Batch { size: labels.len(), images, channels: c, height: size, width: size, labels, targets }
}

/// The items `idx` read and made into samples of `n` floats by `make` (given the item's index,
/// its image and its slot of the batch buffer, which it fills) on all cores: on many cores a
/// serial gather of the batch (77 MB at 128 x 224 px) would cost as much as the augmentation
/// itself, and a buffer per sample would add an allocation and a copy. Unreadable images are recorded and leave the batch. Returns the images
/// and their labels, in `idx` order.
fn gather(data: &SplitData, idx: &[usize], n: usize, make: impl Fn(usize, &Image, &mut [f32]) + Sync) -> (Vec<f32>, Vec<u32>) {
    let mut images = vec![0f32; idx.len() * n];
    let labels: Vec<Option<u32>> = images
        .par_chunks_mut(n.max(1))
        .zip(idx.par_iter())
        .map(|(slot, &i)| {
            let item = &data.items[i];
            match data.reader.read(&item.key, data.channels) {
                Ok(img) => {
                    make(i, &img, slot);
                    Some(item.label)
                }
                Err(e) => {
                    data.failures.record(data.reader.describe(&item.key), e);
                    None
                }
            }
        })
        .collect();
    if labels.iter().all(Option::is_some) {
        return (images, labels.into_iter().flatten().collect());
    }
    // Unreadable images leave the batch: close the gaps they left.
    let mut kept = Vec::with_capacity(labels.len());
    for (k, label) in labels.iter().enumerate() {
        if let Some(label) = label {
            images.copy_within(k * n..(k + 1) * n, kept.len() * n);
            kept.push(*label);
        }
    }
    images.truncate(kept.len() * n);
    (images, kept)
}

/// Evaluation batches in split order, all items (no drop_last), each made while the caller works
/// on the one before: a thread of `scope` prepares one batch ahead.
pub fn eval_batches<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    data: &'env SplitData,
    transform: &'env EvalTransform,
    batch: usize,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(1);
    let c = data.channels as usize;
    let size = transform.input_size;
    scope.spawn(move || {
        let all: Vec<usize> = (0..data.items.len()).collect();
        for idx in all.chunks(batch.max(1)) {
            let (images, labels) = gather(data, idx, c * size * size, |_, img, slot| transform.apply_into(img, slot));
            let b = Batch { size: labels.len(), images, channels: c, height: size, width: size, labels, targets: Vec::new() };
            if tx.send(b).is_err() {
                return; // the caller stopped early
            }
        }
    });
    rx
}

/// Soft targets for a batch without mixing (label smoothing only).
pub fn plain_targets(labels: &[u32], classes: usize, smoothing: f64) -> Vec<f32> {
    smoothed_targets(labels, classes, smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::catalog::ItemKey;
    use crate::data::image::{ReadFailures, SplitReader};

    #[test]
    fn epochs_are_seeded_permutations_without_the_last_partial_batch() {
        let a = epoch_batches(10, 3, 7, 0);
        assert_eq!(a.len(), 3);
        let mut seen: Vec<usize> = a.concat();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert_eq!(a, epoch_batches(10, 3, 7, 0));
        assert_ne!(a, epoch_batches(10, 3, 7, 1));
    }

    /// The batch as a plain serial loop builds it: each readable sample's transform, in order,
    /// then timm's mixup/cutmix pair by pair.
    fn serial_batch(data: &SplitData, tf: &TrainTransform, mix: &MixupCutmix, idx: &[usize], seed: u64, epoch: u64, b: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for &i in idx {
            if let Ok(img) = data.reader.read(&data.items[i].key, data.channels) {
                images.extend(tf.apply(&img, &mut sample_rng(seed, epoch, i as u64)));
                labels.push(data.items[i].label);
            }
        }
        let mut rng = sample_rng(seed, epoch, (1u64 << 62) + b);
        let (lam, cut) = mix.params(&mut rng);
        let n = images.len() / labels.len();
        let lam = if lam == 1.0 {
            1.0
        } else if cut {
            let (yl, yh, xl, xh) = crate::data::augment::mixup::rand_bbox(tf.input_size, tf.input_size, lam, &mut rng);
            for i in 0..labels.len() / 2 {
                let j = labels.len() - 1 - i;
                for y in yl..yh {
                    for x in xl..xh {
                        images.swap(i * n + y * tf.input_size + x, j * n + y * tf.input_size + x);
                    }
                }
            }
            1.0 - ((yh - yl) * (xh - xl)) as f64 / n as f64
        } else {
            let (l, r) = (lam as f32, (1.0 - lam) as f32);
            for i in 0..labels.len().div_ceil(2) {
                let j = labels.len() - 1 - i;
                for k in 0..n {
                    let (xi, xj) = (images[i * n + k], images[j * n + k]);
                    images[i * n + k] = xi * l + xj * r;
                    images[j * n + k] = xj * l + xi * r;
                }
            }
            lam
        };
        let targets = crate::data::augment::mixup::mixed_targets(&labels, mix.num_classes, lam, mix.label_smoothing);
        (images, labels, targets)
    }

    /// Nine 12x10 grey images in three classes; item 4 points past the end of the pixels, so it
    /// is unreadable and leaves its batch.
    fn nine_items_one_unreadable() -> SplitData {
        let (h, w, count) = (12u32, 10u32, 9usize);
        let pixels = (0..count * (h * w) as usize).map(|i| ((i * 37 + i / 7) % 251) as u8).collect();
        let items = (0..count).map(|i| Item { key: ItemKey::Index(if i == 4 { 99 } else { i as u32 }), label: (i % 3) as u32 }).collect();
        SplitData { reader: SplitReader::Idx { pixels, height: h, width: w }, items, channels: 1, failures: ReadFailures::default() }
    }

    #[test]
    fn parallel_batches_equal_the_serial_loop_with_mixing_and_unreadable_images() {
        let data = nine_items_one_unreadable();
        let tf = TrainTransform::new(8, crate::data::augment::Normalize::for_channels(1));
        for (mixup_alpha, cutmix_alpha) in [(0.8, 0.0), (0.0, 1.0), (0.0, 0.0)] {
            let mix = MixupCutmix { mixup_alpha, cutmix_alpha, prob: 1.0, switch_prob: 0.5, label_smoothing: 0.1, num_classes: 3 };
            for (b, idx) in [vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8], vec![8, 4, 2]].iter().enumerate() {
                let got = make_train_batch(&data, &tf, Some(&mix), idx, 3, 1, b as u64);
                let (images, labels, targets) = serial_batch(&data, &tf, &mix, idx, 3, 1, b as u64);
                assert_eq!(got.labels, labels, "{mixup_alpha} {cutmix_alpha} batch {b}");
                assert_eq!(got.size, labels.len());
                assert_eq!(got.images, images, "{mixup_alpha} {cutmix_alpha} batch {b}");
                assert_eq!(got.targets, targets);
            }
        }
        assert_eq!(data.failures.count(), 6);
    }

    /// Evaluation batches, made one ahead on a thread, are the serial loop's: split order, every
    /// readable item, the unreadable one left out, the last batch partial.
    #[test]
    fn eval_batches_equal_the_serial_loop() {
        let (data, count) = (nine_items_one_unreadable(), 9);
        let tf = EvalTransform::new(8, crate::data::augment::Normalize::for_channels(1));
        let got: Vec<Batch> = std::thread::scope(|s| eval_batches(s, &data, &tf, 4).into_iter().collect());
        assert_eq!(got.iter().map(|b| b.size).collect::<Vec<_>>(), [4, 3, 1]);
        for (b, batch) in got.iter().enumerate() {
            let (mut images, mut labels) = (Vec::new(), Vec::new());
            for i in (4 * b..(4 * b + 4).min(count)).filter(|&i| i != 4) {
                images.extend(tf.apply(&data.reader.read(&data.items[i].key, 1).unwrap()));
                labels.push(data.items[i].label);
            }
            assert_eq!((&batch.images, &batch.labels), (&images, &labels), "batch {b}");
        }
        assert_eq!(data.failures.count(), 1);
    }
}
