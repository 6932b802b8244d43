//! MAE's pre-training model (facebookresearch/mae models_mae.py): the encoder sees only the
//! visible patches, a light decoder predicts the pixels of the removed ones, and the loss is
//! taken on the removed patches only. Key names match the official file, so official
//! `*_full.pth` checkpoints load, and an encoder written here loads in the official fine-tune
//! once wrapped as the `{'model': state_dict}` `.pth` it reads (the recipe's command says how).

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::loss::cross_entropy_with_logits;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use super::config::VitShape;
use super::pos_embed::sincos_2d;
use super::vit::{Block, PatchEmbed, block, layer_norm, linear_tokens, linear_xavier, norm, patch_embed};

#[derive(Debug, Clone, PartialEq)]
pub struct MaeConfig {
    pub encoder: VitShape,
    pub decoder_embed_dim: usize,
    pub decoder_depth: usize,
    pub decoder_num_heads: usize,
    pub norm_pix_loss: bool,
    /// SupMAE: classes of the supervised branch on the visible tokens; None for plain MAE.
    pub supervised_classes: Option<usize>,
    /// Mixed precision in the encoder's and decoder's blocks (see `vit::Block::bf16`).
    pub bf16: bool,
}

/// SupMAE's supervised branch (enyac-group/supmae models_supmae.py, `cls_head`): Linear(D, 4D)
/// -> BatchNorm1d -> ReLU -> Linear(4D, classes). In checkpoints the layers are `cls_head.0`,
/// `cls_head.1` and `cls_head.3`, as in the nn.Sequential of the official file.
#[derive(Module, Debug)]
pub struct ClsHead {
    pub fc1: Linear,
    pub bn: BatchNorm,
    pub fc2: Linear,
}

impl ClsHead {
    /// [N, D] -> [N, classes]
    pub fn forward(&self, feat: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.bn.forward(self.fc1.forward(feat))))
    }
}

/// (burn path prefix, official key prefix) of the SupMAE head's layers.
pub const CLS_HEAD_KEYS: [(&str, &str); 3] = [("cls_head.fc1.", "cls_head.0."), ("cls_head.bn.", "cls_head.1."), ("cls_head.fc2.", "cls_head.3.")];

/// SupMAE's loss weights (main_pretrain_supmae.py defaults): CE on logits / 10, times 0.01.
pub const SUPMAE_TEMPERATURE: f64 = 10.0;
pub const SUPMAE_CLS_LOSS_RATIO: f64 = 0.01;

#[derive(Module, Debug)]
pub struct MaskedAutoencoder {
    // Encoder, in the official file's order.
    pub cls_token: Param<Tensor<3>>,
    /// Fixed 2-D sin-cos (not trained).
    pub pos_embed: Param<Tensor<3>>,
    pub patch_embed: PatchEmbed,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    // Decoder.
    pub mask_token: Param<Tensor<3>>,
    /// Fixed 2-D sin-cos (not trained).
    pub decoder_pos_embed: Param<Tensor<3>>,
    pub decoder_embed: Linear,
    pub decoder_blocks: Vec<Block>,
    pub decoder_norm: LayerNorm,
    pub decoder_pred: Linear,
    /// SupMAE only.
    pub cls_head: Option<ClsHead>,
    pub patch_size: usize,
    pub norm_pix_loss: bool,
}

/// What one forward pass gives.
pub struct MaeOutput {
    /// What training minimises: the reconstruction loss, plus SupMAE's weighted cross-entropy.
    pub loss: Tensor<1>,
    /// Mean squared error on the removed patches.
    pub rec_loss: Tensor<1>,
    /// SupMAE's logits [batch, classes] from the visible tokens.
    pub logits: Option<Tensor<2>>,
    /// [batch, patches, p*p*channels]
    pub pred: Tensor<3>,
    /// [batch, patches], 1 = removed.
    pub mask: Tensor<2>,
    /// [batch, patches]
    pub ids_restore: Tensor<2, Int>,
}

fn fixed(values: Vec<f32>, n: usize, d: usize, device: &Device) -> Param<Tensor<3>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [1, n, d]), device)).set_require_grad(false)
}

/// Patches the encoder sees out of `patches` at `mask_ratio`: `int(L * (1 - mask_ratio))`, as the
/// official random_masking. Callers check it is at least 1 before training.
pub fn kept_patches(patches: usize, mask_ratio: f64) -> usize {
    (patches as f64 * (1.0 - mask_ratio)) as usize
}

impl MaeConfig {
    pub fn init(&self, device: &Device) -> MaskedAutoencoder {
        let s = &self.encoder;
        let (d, dd, n) = (s.embed_dim, self.decoder_embed_dim, s.num_patches() + 1);
        let p = s.patch_size;
        MaskedAutoencoder {
            cls_token: Param::from_tensor(Tensor::random([1, 1, d], Distribution::Normal(0.0, 0.02), device)),
            pos_embed: fixed(sincos_2d(d, s.grid(), true), n, d, device),
            patch_embed: patch_embed(s.in_chans, d, p, true, device),
            blocks: (0..s.depth).map(|_| Block { bf16: self.bf16, ..block(d, s.num_heads, s.mlp_ratio, 0.0, true, device) }).collect(),
            norm: layer_norm(d, device),
            mask_token: Param::from_tensor(Tensor::random([1, 1, dd], Distribution::Normal(0.0, 0.02), device)),
            decoder_pos_embed: fixed(sincos_2d(dd, s.grid(), true), n, dd, device),
            decoder_embed: linear_xavier(d, dd, device),
            decoder_blocks: (0..self.decoder_depth)
                .map(|_| Block { bf16: self.bf16, ..block(dd, self.decoder_num_heads, s.mlp_ratio, 0.0, true, device) })
                .collect(),
            decoder_norm: layer_norm(dd, device),
            decoder_pred: linear_xavier(dd, p * p * s.in_chans, device),
            cls_head: self.supervised_classes.map(|k| ClsHead {
                fc1: linear_xavier(d, 4 * d, device),
                bn: BatchNormConfig::new(4 * d).init(device),
                fc2: linear_xavier(4 * d, k, device),
            }),
            patch_size: p,
            norm_pix_loss: self.norm_pix_loss,
        }
    }
}

impl MaskedAutoencoder {
    /// [N, C, H, W] -> [N, L, p*p*C]; row-major patches, channel fastest inside a patch.
    pub fn patchify(&self, imgs: Tensor<4>) -> Tensor<3> {
        let [n, c, h, w] = imgs.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        imgs.reshape([n, c, gh, p, gw, p]).permute([0, 2, 4, 3, 5, 1]).reshape([n, gh * gw, p * p * c])
    }

    /// The inverse of `patchify` for square images.
    pub fn unpatchify(&self, x: Tensor<3>, channels: usize) -> Tensor<4> {
        let [n, l, _] = x.dims();
        let p = self.patch_size;
        let g = (l as f64).sqrt().round() as usize;
        x.reshape([n, g, g, p, p, channels]).permute([0, 5, 1, 3, 2, 4]).reshape([n, channels, g * p, g * p])
    }

    /// Keep the patches with the smallest noise: argsort, as the official random_masking.
    fn random_masking(x: Tensor<3>, noise: Tensor<2>, mask_ratio: f64) -> (Tensor<3>, Tensor<2>, Tensor<2, Int>) {
        let [n, l, d] = x.dims();
        let keep = kept_patches(l, mask_ratio);
        let ids_shuffle = noise.argsort(1);
        let ids_restore = ids_shuffle.clone().argsort(1);
        let ids_keep = ids_shuffle.slice([0..n, 0..keep]);
        let x_masked = x.gather(1, ids_keep.unsqueeze_dim::<3>(2).expand([n, keep, d]));
        let dev = x_masked.device();
        let mask = Tensor::cat(vec![Tensor::<2>::zeros([n, keep], &dev), Tensor::<2>::ones([n, l - keep], &dev)], 1);
        let mask = mask.gather(1, ids_restore.clone());
        (x_masked, mask, ids_restore)
    }

    /// # Shapes
    /// imgs [N, C, H, W], noise [N, L] -> latent [N, 1 + keep, D], mask [N, L], ids_restore [N, L]
    pub fn forward_encoder(&self, imgs: Tensor<4>, noise: Tensor<2>, mask_ratio: f64) -> (Tensor<3>, Tensor<2>, Tensor<2, Int>) {
        let x = self.patch_embed.proj.forward(imgs).flatten::<3>(2, 3).swap_dims(1, 2); // [N, L, D]
        let [n, l, d] = x.dims();
        let pos = self.pos_embed.val();
        let x = x + pos.clone().slice([0..1, 1..l + 1, 0..d]);
        let (x, mask, ids_restore) = Self::random_masking(x, noise, mask_ratio);
        let cls = (self.cls_token.val() + pos.slice([0..1, 0..1, 0..d])).expand([n, 1, d]);
        let mut x = Tensor::cat(vec![cls, x], 1);
        for blk in &self.blocks {
            x = blk.forward(x);
        }
        (norm(&self.norm, x), mask, ids_restore)
    }

    /// # Shapes
    /// latent [N, 1 + keep, D], ids_restore [N, L] -> pred [N, L, p*p*C]
    pub fn forward_decoder(&self, latent: Tensor<3>, ids_restore: Tensor<2, Int>) -> Tensor<3> {
        let x = linear_tokens(&self.decoder_embed, latent, false);
        let [n, t, dd] = x.dims();
        let l = ids_restore.dims()[1];
        let mask_tokens = self.mask_token.val().expand([n, l + 1 - t, dd]);
        let x_ = Tensor::cat(vec![x.clone().slice([0..n, 1..t, 0..dd]), mask_tokens], 1);
        let x_ = x_.gather(1, ids_restore.unsqueeze_dim::<3>(2).expand([n, l, dd])); // unshuffle
        let mut x = Tensor::cat(vec![x.slice([0..n, 0..1, 0..dd]), x_], 1) + self.decoder_pos_embed.val();
        for blk in &self.decoder_blocks {
            x = blk.forward(x);
        }
        let x = linear_tokens(&self.decoder_pred, norm(&self.decoder_norm, x), false);
        let [_, _, o] = x.dims();
        x.slice([0..n, 1..l + 1, 0..o])
    }

    /// Mean squared error per removed patch; with norm_pix_loss the target patch is normalised
    /// by its mean and unbiased variance (eps 1e-6).
    pub fn forward_loss(&self, imgs: Tensor<4>, pred: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
        let mut target = self.patchify(imgs);
        if self.norm_pix_loss {
            let k = target.dims()[2] as f64;
            let mean = target.clone().mean_dim(2);
            let centred = target - mean;
            let var = centred.clone().powi_scalar(2).sum_dim(2) / (k - 1.0);
            target = centred / (var + 1e-6).sqrt();
        }
        let per_patch = (pred - target).powi_scalar(2).mean_dim(2).squeeze_dim::<2>(2); // [N, L]
        (per_patch * mask.clone()).sum() / mask.sum()
    }

    /// SupMAE's logits: the mean of the visible patch tokens (not the class token) through the head.
    pub fn forward_classification(&self, latent: Tensor<3>) -> Option<Tensor<2>> {
        let head = self.cls_head.as_ref()?;
        let [n, t, d] = latent.dims();
        let feat = latent.slice([0..n, 1..t, 0..d]).mean_dim(1).reshape([n, d]);
        Some(head.forward(feat))
    }

    /// `labels` are needed for SupMAE (and ignored by plain MAE).
    pub fn forward(&self, imgs: Tensor<4>, noise: Tensor<2>, mask_ratio: f64, labels: Option<Tensor<1, Int>>) -> MaeOutput {
        let (latent, mask, ids_restore) = self.forward_encoder(imgs.clone(), noise, mask_ratio);
        let pred = self.forward_decoder(latent.clone(), ids_restore.clone());
        let rec_loss = self.forward_loss(imgs, pred.clone(), mask.clone());
        let logits = self.forward_classification(latent);
        let loss = match (&logits, labels) {
            (Some(logits), Some(labels)) => {
                let k = logits.dims()[1];
                let targets = labels.one_hot(k).float();
                let ce = cross_entropy_with_logits(logits.clone() / SUPMAE_TEMPERATURE, targets);
                rec_loss.clone() + ce * SUPMAE_CLS_LOSS_RATIO
            }
            _ => rec_loss.clone(),
        };
        MaeOutput { loss, rec_loss, logits, pred, mask, ids_restore }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain MAE (f32, norm_pix_loss) with a 1-block decoder of 2 heads.
    fn small(encoder: VitShape, decoder_embed_dim: usize) -> MaeConfig {
        MaeConfig { encoder, decoder_embed_dim, decoder_depth: 1, decoder_num_heads: 2, norm_pix_loss: true, supervised_classes: None, bf16: false }
    }

    #[test]
    fn patchify_round_trips_and_orders_channel_fastest() {
        let _rng = crate::device::burn_rng();
        let dev = Device::flex();
        let cfg = small(VitShape { image_size: 4, patch_size: 2, in_chans: 3, embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2.0 }, 8);
        let m = cfg.init(&dev);
        let vals: Vec<f32> = (0..48).map(|v| v as f32).collect();
        let imgs = Tensor::<4>::from_data(TensorData::new(vals.clone(), [1, 3, 4, 4]), &dev);
        let p = m.patchify(imgs.clone());
        assert_eq!(p.dims(), [1, 4, 12]);
        // Patch 0, element (row 0, col 1, channel 2) -> index (0*2+1)*3+2 = 5 holds img[2][0][1] = 33.
        let flat = p.clone().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        assert_eq!(flat[5], 33.0);
        let back = m.unpatchify(p, 3).into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        assert_eq!(back, vals);
    }

    #[test]
    fn bf16_blocks_give_nearly_the_f32_loss() {
        let _rng = crate::device::burn_rng();
        let dev = Device::flex();
        let cfg = small(VitShape { image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 2, mlp_ratio: 4.0 }, 16);
        let m = cfg.init(&dev);
        let mut b = cfg.init(&dev);
        b = b.load_record(m.clone().into_record());
        for blk in b.blocks.iter_mut().chain(b.decoder_blocks.iter_mut()) {
            blk.bf16 = true;
        }
        let x = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &dev);
        let noise = Tensor::<2>::random([4, 16], Distribution::Uniform(0.0, 1.0), &dev);
        let f = m.forward(x.clone(), noise.clone(), 0.75, None).loss.into_scalar::<f32>();
        let h = b.forward(x, noise, 0.75, None).loss.into_scalar::<f32>();
        assert!(f != h && ((f - h) / f).abs() < 0.01, "f32 {f} vs bf16 {h}");
    }
}
