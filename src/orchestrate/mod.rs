//! Running a study: the plan of trials, the journal, the lock, the executor seam (local child
//! processes, or Slurm array jobs), the scheduler, external command trials, and `maestro run` itself.

pub mod command;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod plan;
pub mod run;
pub mod scheduler;
pub mod slurm;
pub mod status;
