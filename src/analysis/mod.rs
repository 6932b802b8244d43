//! Analysis: pure functions over results. The rise-peak-fall fit of accuracy against LLRD,
//! its interval, and the recommendation per pre-training setup.

pub mod fit;
pub mod recommend;
