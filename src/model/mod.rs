//! Models: ViT shapes by name or by hand, the burn ViT, position embeddings, checkpoints.

pub mod checkpoint;
pub mod config;
pub mod fused;
pub mod mae;
pub mod pos_embed;
pub mod vit;
