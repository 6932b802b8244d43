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
use super::image::{ReadFailures, SplitReader};

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
    let samples: Vec<Option<(Vec<f32>, u32)>> = idx
        .par_iter()
        .map(|&i| {
            let item = &data.items[i];
            match data.reader.read(&item.key, data.channels) {
                Ok(img) => {
                    let mut rng = sample_rng(seed, epoch, i as u64);
                    Some((transform.apply(&img, &mut rng), item.label))
                }
                Err(e) => {
                    data.failures.record(data.reader.describe(&item.key), e);
                    None
                }
            }
        })
        .collect();
    let mut images = Vec::with_capacity(idx.len() * c * size * size);
    let mut labels = Vec::with_capacity(idx.len());
    for (img, label) in samples.into_iter().flatten() {
        images.extend_from_slice(&img);
        labels.push(label);
    }
    let mut rng = sample_rng(seed, epoch, (1u64 << 62) + batch_no);
    let targets = match mix {
        Some(m) => m.apply(&mut images, c, size, size, &labels, &mut rng),
        None => Vec::new(),
    };
    Batch { size: labels.len(), images, channels: c, height: size, width: size, labels, targets }
}

/// Evaluation batches in split order, all items (no drop_last).
pub fn eval_batches<'a>(data: &'a SplitData, transform: &EvalTransform, batch: usize) -> impl Iterator<Item = Batch> + 'a {
    let c = data.channels as usize;
    let size = transform.input_size;
    let transform = transform.clone();
    (0..data.items.len()).step_by(batch.max(1)).map(move |start| {
        let end = (start + batch).min(data.items.len());
        let samples: Vec<Option<(Vec<f32>, u32)>> = (start..end)
            .into_par_iter()
            .map(|i| {
                let item = &data.items[i];
                match data.reader.read(&item.key, data.channels) {
                    Ok(img) => Some((transform.apply(&img), item.label)),
                    Err(e) => {
                        data.failures.record(data.reader.describe(&item.key), e);
                        None
                    }
                }
            })
            .collect();
        let mut images = Vec::with_capacity((end - start) * c * size * size);
        let mut labels = Vec::new();
        for (img, label) in samples.into_iter().flatten() {
            images.extend_from_slice(&img);
            labels.push(label);
        }
        Batch { size: labels.len(), images, channels: c, height: size, width: size, labels, targets: Vec::new() }
    })
}

/// Soft targets for a batch without mixing (label smoothing only).
pub fn plain_targets(labels: &[u32], classes: usize, smoothing: f64) -> Vec<f32> {
    smoothed_targets(labels, classes, smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
