//! MAE's learning-rate schedule (util/lr_sched.py): linear warmup from 0, then half-cycle
//! cosine to min_lr, evaluated at a fractional epoch at every optimizer step.

use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};

#[derive(Debug, Clone, PartialEq)]
pub struct CosineSchedule {
    /// Peak learning rate: blr x effective batch / 256.
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_epochs: f64,
    pub epochs: f64,
    /// Micro-batches per epoch (`len(data_loader)`).
    pub iters_per_epoch: usize,
    pub accum_iter: usize,
}

impl CosineSchedule {
    /// MAE's rule for the peak: lr = blr x effective batch / 256, with
    /// effective batch = batch x accumulation.
    pub fn from_blr(blr: f64, batch: usize, accum_iter: usize, min_lr: f64, warmup_epochs: f64, epochs: f64, iters_per_epoch: usize) -> Self {
        CosineSchedule { lr: blr * (batch * accum_iter) as f64 / 256.0, min_lr, warmup_epochs, epochs, iters_per_epoch, accum_iter }
    }

    /// Optimizer steps to run: the whole schedule, or fewer when capped.
    pub fn steps_capped(&self, max_steps: Option<usize>) -> usize {
        max_steps.map_or(self.total_steps(), |m| m.min(self.total_steps()))
    }

    /// Optimizer steps per epoch: one every `accum_iter` micro-batches. The micro-batches left
    /// over at the end of an epoch are dropped, as MAE's engine drops them (their gradients are
    /// zeroed when the next epoch starts). The trainers refuse fewer micro-batches than
    /// `accum_iter`.
    pub fn steps_per_epoch(&self) -> usize {
        (self.iters_per_epoch / self.accum_iter.max(1)).max(1)
    }

    /// The fractional epoch MAE uses at optimizer step `step` (0-based):
    /// epoch + data_iter_step / len(data_loader), where data_iter_step = k x accum_iter.
    pub fn epoch_at(&self, step: usize) -> f64 {
        let spe = self.steps_per_epoch();
        let (epoch, k) = (step / spe, step % spe);
        epoch as f64 + (k * self.accum_iter) as f64 / self.iters_per_epoch.max(1) as f64
    }

    pub fn lr_at_epoch(&self, e: f64) -> f64 {
        if e < self.warmup_epochs {
            self.lr * e / self.warmup_epochs
        } else {
            let t = (e - self.warmup_epochs) / (self.epochs - self.warmup_epochs);
            self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }

    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr_at_epoch(self.epoch_at(step))
    }

    /// Total optimizer steps for `epochs` (a fractional last epoch is cut short).
    pub fn total_steps(&self) -> usize {
        (self.epochs * self.steps_per_epoch() as f64).ceil() as usize
    }
}

/// The schedule times one group's `lr_scale`, as burn's per-group scheduler.
#[derive(Debug, Clone)]
pub struct ScaledSchedule {
    pub schedule: CosineSchedule,
    pub scale: f64,
    pub step: usize,
}

impl LrScheduler for ScaledSchedule {
    fn step(&mut self) -> f64 {
        let lr = self.schedule.lr_at(self.step) * self.scale;
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(s) = record.scalar::<usize>("step") {
            self.step = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mae_b() -> CosineSchedule {
        CosineSchedule { lr: 1e-3 * 1024.0 / 256.0, min_lr: 1e-6, warmup_epochs: 5.0, epochs: 100.0, iters_per_epoch: 1251, accum_iter: 1 }
    }

    #[test]
    fn warmup_starts_at_zero_and_peaks_at_warmup_end() {
        let s = mae_b();
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(1251) - 4e-3 * 1.0 / 5.0).abs() < 1e-15);
        assert!((s.lr_at(5 * 1251) - 4e-3).abs() < 1e-15);
        // Half-way through the cosine: the mean of peak and floor.
        let mid = s.lr_at_epoch(52.5);
        assert!((mid - (1e-6 + (4e-3 - 1e-6) * 0.5)).abs() < 1e-12);
        assert!((s.lr_at_epoch(100.0) - 1e-6).abs() < 1e-15);
    }

    #[test]
    fn accumulation_steps_through_micro_batches() {
        let s = CosineSchedule { accum_iter: 4, iters_per_epoch: 10, ..mae_b() };
        // Micro-batches 8 and 9 make no step (engine_finetune.py steps at (i + 1) % 4 == 0).
        assert_eq!(s.steps_per_epoch(), 2);
        // Steps 0,1 are at micro-batches 0,4 of epoch 0; step 2 starts epoch 1.
        assert_eq!(s.epoch_at(1), 0.4);
        assert_eq!(s.epoch_at(2), 1.0);
    }

    #[test]
    fn scaled_schedule_steps_and_resumes() {
        let mut a = ScaledSchedule { schedule: mae_b(), scale: 0.5, step: 0 };
        let first: Vec<f64> = (0..3).map(|_| a.step()).collect();
        assert_eq!(first[0], 0.0);
        let mut b = ScaledSchedule { schedule: mae_b(), scale: 0.5, step: 0 };
        b.load_record(a.to_record());
        assert_eq!(a.step(), b.step());
    }
}
