//! Models: ViT shapes by name or by hand.

pub mod config;
