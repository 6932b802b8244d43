//! Fine-tuning with MAE's recipe: layer-wise LR decay, the per-step schedule, the loop, and
//! the spec/result pair that is the trial contract.

pub mod adamw;
pub mod clip;
pub mod finetune;
pub mod llrd;
pub mod losses;
pub mod pretrain;
pub mod schedule;
pub mod spec;
pub mod upload;
