//! ViT architectures by name (timm / MAE) and custom ones for small images.
//!
//! This is only the shape of a model; the burn modules are built from it.

use serde::{Deserialize, Serialize};

/// The architecture of a Vision Transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitShape {
    pub image_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
}

/// The named presets, as timm and MAE spell them.
pub const PRESETS: &[&str] = &[
    "vit_tiny_patch16",
    "vit_small_patch16",
    "vit_base_patch16",
    "vit_large_patch16",
    "vit_huge_patch14",
];

impl VitShape {
    /// A preset by name (`vit_base_patch16`; a timm-style `_224` suffix is accepted).
    pub fn preset(name: &str) -> Option<VitShape> {
        let base = name.strip_suffix("_224").unwrap_or(name);
        let (patch, dim, depth, heads) = match base {
            "vit_tiny_patch16" => (16, 192, 12, 3),
            "vit_small_patch16" => (16, 384, 12, 6),
            "vit_base_patch16" => (16, 768, 12, 12),
            "vit_large_patch16" => (16, 1024, 24, 16),
            "vit_huge_patch14" => (14, 1280, 32, 16),
            _ => return None,
        };
        Some(VitShape {
            image_size: 224,
            patch_size: patch,
            in_chans: 3,
            embed_dim: dim,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
        })
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }

    /// Parameters of the fine-tune model (global pool, fc_norm, head), pos_embed included.
    pub fn finetune_params(&self, num_classes: usize) -> usize {
        let d = self.embed_dim;
        let h = self.mlp_hidden();
        let patch = d * self.in_chans * self.patch_size * self.patch_size + d;
        let tokens = d + (self.num_patches() + 1) * d; // cls_token + pos_embed
        let block = 2 * 2 * d // norm1, norm2
            + 3 * d * d + 3 * d // qkv
            + d * d + d // proj
            + h * d + h // fc1
            + d * h + d; // fc2
        let head = 2 * d + num_classes * d + num_classes; // fc_norm + head
        patch + tokens + self.depth * block + head
    }

    /// What is wrong with this shape, if anything: (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("in_chans", self.in_chans),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                out.push((field, format!("must be at least 1, got {v}")));
            }
        }
        if self.patch_size > 0 && self.image_size % self.patch_size != 0 {
            out.push((
                "patch_size",
                format!(
                    "{} does not divide the image size {}; pick a patch size that does (e.g. 4 or 7 for 28 px)",
                    self.patch_size, self.image_size
                ),
            ));
        }
        if self.num_heads > 0 && self.embed_dim % self.num_heads != 0 {
            out.push((
                "num_heads",
                format!("{} heads do not divide embed_dim {}", self.num_heads, self.embed_dim),
            ));
        }
        if self.embed_dim % 4 != 0 {
            out.push((
                "embed_dim",
                format!("{} is not a multiple of 4, which MAE's 2-D sin-cos position embedding (pre-training, and the encoders it writes) needs", self.embed_dim),
            ));
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            out.push(("mlp_ratio", format!("must be positive, got {}", self.mlp_ratio)));
        } else if self.embed_dim > 0 && self.mlp_hidden() == 0 {
            out.push((
                "mlp_ratio",
                format!("{} gives the MLP no hidden unit at embed_dim {} (it has int(embed_dim x mlp_ratio) of them)", self.mlp_ratio, self.embed_dim),
            ));
        }
        out
    }
}

impl std::fmt::Display for VitShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ViT {}px/{} ({} ch), dim {}, depth {}, heads {}, mlp {}x",
            self.image_size,
            self.patch_size,
            self.in_chans,
            self.embed_dim,
            self.depth,
            self.num_heads,
            self.mlp_ratio
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_base_parameter_count_matches_mae() {
        // MAE's fine-tune model for ViT-B/16 at 224 px and 1000 classes: 86,567,656.
        let b = VitShape::preset("vit_base_patch16").unwrap();
        assert_eq!(b.finetune_params(1000), 86_567_656);
        assert_eq!(b.num_patches(), 196);
    }

    #[test]
    fn bad_shapes_are_named() {
        let mut s = VitShape::preset("vit_tiny_patch16").unwrap();
        s.image_size = 28;
        s.patch_size = 5;
        assert_eq!(s.problems()[0].0, "patch_size");
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let mut s = VitShape::preset("vit_tiny_patch16").unwrap();
        s.depth = 0;
        s.patch_size = 5;
        s.num_heads = 5;
        s.mlp_ratio = 0.001;
        let fields: Vec<_> = s.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["depth", "patch_size", "num_heads", "mlp_ratio"]);
        s.num_heads = 0;
        s.patch_size = 0;
        let fields: Vec<_> = s.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["patch_size", "depth", "num_heads", "mlp_ratio"]);
    }
}
