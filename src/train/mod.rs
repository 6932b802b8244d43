//! Fine-tuning with MAE's recipe: layer-wise LR decay, the per-step schedule, the loop.

pub mod llrd;
pub mod schedule;
