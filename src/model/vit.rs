//! The Vision Transformer of MAE's fine-tuning (models_vit.py on timm's VisionTransformer).
//!
//! Field names are timm's state-dict keys, so `.pth` and safetensors checkpoints load without
//! remapping (burn's LayerNorm calls weight/bias gamma/beta; the PyTorch adapter maps them).

use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Gelu, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, FloatDType, Tensor};

use super::config::VitShape;
use super::fused;

/// What the fine-tune model needs beyond its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    pub shape: VitShape,
    pub num_classes: usize,
    /// Stochastic depth: rates linspace(0, drop_path, depth).
    pub drop_path: f64,
    /// Mean of the patch tokens + fc_norm (MAE's default); else norm + cls token.
    pub global_pool: bool,
    /// Mixed precision: the blocks' matmuls and attention in bf16 (see `Block::bf16`).
    pub bf16: bool,
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub num_heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    /// timm's `act` (no parameters). The forward pass calls `fused::gelu`, whose derivative is
    /// the erf form's on every backend.
    pub act: Gelu,
    pub fc2: Linear,
}

/// Per-sample stochastic depth, active only while training (an autodiff input and the flag on).
#[derive(Module, Debug)]
pub struct DropPath {
    pub prob: f64,
    pub training: Param<Flag>,
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    pub drop_path: DropPath,
    /// Mixed precision as PyTorch's bf16 autocast does it: the linear layers and attention
    /// compute in bf16 (weights cast on the fly, so parameters, gradients and optimizer state
    /// stay f32), while LayerNorm and the residual stream stay f32.
    pub bf16: bool,
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    // Declared in timm's order, so parameters list as `named_parameters()` does.
    pub cls_token: Param<Tensor<3>>,
    pub pos_embed: Param<Tensor<3>>,
    pub patch_embed: PatchEmbed,
    pub blocks: Vec<Block>,
    /// Present without global pooling.
    pub norm: Option<LayerNorm>,
    /// Present with global pooling.
    pub fc_norm: Option<LayerNorm>,
    pub head: Linear,
}

/// timm's LayerNorm epsilon (burn's default is 1e-5).
pub(crate) const LN_EPSILON: f64 = 1e-6;

pub(crate) fn layer_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(LN_EPSILON).init(device)
}

/// A LayerNorm made by [`layer_norm`], applied as one fused operation where the backend has it.
pub(crate) fn norm<const D: usize>(n: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    fused::layer_norm(n, x, LN_EPSILON)
}

/// timm's Linear init: trunc_normal(std 0.02) (the cut-off at +-2 is 100 sigma away), zero bias
/// (burn draws the bias with the weight's initializer; timm's `_init_weights` zeroes it).
pub(crate) fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 }).init(device);
    if let Some(b) = l.bias.as_mut() {
        *b = Param::from_tensor(Tensor::zeros([d_out], device));
    }
    l
}

/// MAE pre-training's Linear init: xavier_uniform weight, zero bias.
pub(crate) fn linear_xavier(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).with_initializer(Initializer::XavierUniform { gain: 1.0 }).init(device);
    if let Some(b) = l.bias.as_mut() {
        *b = Param::from_tensor(Tensor::zeros([d_out], device));
    }
    l
}

/// A pre-norm transformer block (timm's Block: qkv with bias, GELU MLP).
pub(crate) fn block(d: usize, heads: usize, mlp_ratio: f64, drop_path: f64, xavier: bool, device: &Device) -> Block {
    let lin = |i, o| if xavier { linear_xavier(i, o, device) } else { linear(i, o, device) };
    let hidden = (d as f64 * mlp_ratio) as usize;
    Block {
        norm1: layer_norm(d, device),
        attn: Attention { qkv: lin(d, 3 * d), proj: lin(d, d), num_heads: heads },
        norm2: layer_norm(d, device),
        mlp: Mlp { fc1: lin(d, hidden), act: Gelu::new(), fc2: lin(hidden, d) },
        drop_path: DropPath { prob: drop_path, training: Param::from_bool(true) },
        bf16: false,
    }
}

/// A Linear on `[rows, dim]`, in bf16 when asked: input, weight and bias cast (the casts are
/// differentiable, and the gradient reaches the f32 weight as f32). The bias is added by the
/// product where the backend can (see `fused::linear`).
pub(crate) fn linear_2d(l: &Linear, x: Tensor<2>, bf16: bool) -> Tensor<2> {
    let (w, b) = (l.weight.val(), l.bias.as_ref().map(|b| b.val()));
    if bf16 {
        let bf = FloatDType::BF16;
        return fused::linear(x.cast(bf), w.cast(bf), b.map(|b| b.cast(bf)));
    }
    fused::linear(x, w, b)
}

/// A Linear on `[batch, tokens, dim]` as one `[batch * tokens, dim]` product, as PyTorch's
/// `F.linear` folds it. burn's `linear` keeps the batched form when the token count is not a
/// multiple of 32 (a tiling rule for its own kernels), which on LibTorch runs `batch` small
/// GEMMs of 197 rows each instead of one large one.
pub(crate) fn linear_tokens(l: &Linear, x: Tensor<3>, bf16: bool) -> Tensor<3> {
    let [b, n, c] = x.dims();
    let y = linear_2d(l, x.reshape([b * n, c]), bf16);
    let out = y.dims()[1];
    y.reshape([b, n, out])
}

/// The patch projection. MAE pre-training (`xavier`) initialises its weight like a Linear on
/// its [D, C*p*p] view (xavier uniform); timm's ViT keeps PyTorch's Conv2d init, which is
/// burn's default (uniform within 1/sqrt(fan_in), weight and bias), in both.
pub(crate) fn patch_embed(in_chans: usize, d: usize, p: usize, xavier: bool, device: &Device) -> PatchEmbed {
    let mut proj = Conv2dConfig::new([in_chans, d], [p, p]).with_stride([p, p]).init(device);
    if xavier {
        let fan = (in_chans * p * p + d) as f64;
        let bound = (6.0 / fan).sqrt();
        proj.weight = Param::from_tensor(Tensor::random([d, in_chans, p, p], Distribution::Uniform(-bound, bound), device));
    }
    PatchEmbed { proj }
}

impl VitConfig {
    /// timm's VisionTransformer init (what `main_finetune.py` trains from scratch, and what a
    /// checkpoint's tensors then replace): trunc_normal(.02) position embedding and cls token,
    /// trunc_normal(.02) Linear weights with zero biases, LayerNorms 1 and 0, PyTorch's Conv2d
    /// init for the patch projection.
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let s = &self.shape;
        let d = s.embed_dim;
        let n = s.num_patches() + 1;
        let blocks = linspace(self.drop_path, s.depth)
            .into_iter()
            .map(|rate| Block { bf16: self.bf16, ..block(d, s.num_heads, s.mlp_ratio, rate, false, device) })
            .collect();
        VisionTransformer {
            cls_token: Param::from_tensor(Tensor::random([1, 1, d], Distribution::Normal(0.0, 0.02), device)),
            pos_embed: Param::from_tensor(Tensor::random([1, n, d], Distribution::Normal(0.0, 0.02), device)),
            patch_embed: patch_embed(s.in_chans, d, s.patch_size, false, device),
            blocks,
            norm: (!self.global_pool).then(|| layer_norm(d, device)),
            fc_norm: self.global_pool.then(|| layer_norm(d, device)),
            head: linear(d, self.num_classes, device),
        }
    }
}

/// torch.linspace(0, max, n).
fn linspace(max: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![0.0],
        _ => (0..n).map(|i| max * i as f64 / (n - 1) as f64).collect(),
    }
}

impl DropPath {
    /// `x / keep * floor(keep + U)` per sample, as timm's drop_path.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.prob == 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return x;
        }
        let keep = 1.0 - self.prob;
        let [b, _, _] = x.dims();
        let mask = Tensor::<3>::random([b, 1, 1], Distribution::Bernoulli(keep), &x.device());
        x * mask / keep
    }
}

impl Attention {
    /// # Shapes
    /// x: [batch, tokens, dim] -> [batch, tokens, dim]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_in(x, false)
    }

    /// With `bf16`, in bf16 from the qkv projection to the output projection.
    fn forward_in(&self, x: Tensor<3>, bf16: bool) -> Tensor<3> {
        let qkv = linear_tokens(&self.qkv, x, bf16); // [b, n, 3 * c]
        linear_tokens(&self.proj, fused::qkv_attention(qkv, self.num_heads), bf16)
    }
}

impl Block {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if self.bf16 {
            let f32 = FloatDType::F32;
            let a = self.attn.forward_in(norm(&self.norm1, x.clone()), true).cast(f32);
            let x = x + self.drop_path.forward(a);
            let hidden = fused::gelu(linear_tokens(&self.mlp.fc1, norm(&self.norm2, x.clone()), true));
            let y = linear_tokens(&self.mlp.fc2, hidden, true).cast(f32);
            return x + self.drop_path.forward(y);
        }
        let x = x.clone() + self.drop_path.forward(self.attn.forward(norm(&self.norm1, x)));
        let hidden = fused::gelu(linear_tokens(&self.mlp.fc1, norm(&self.norm2, x.clone()), false));
        let y = linear_tokens(&self.mlp.fc2, hidden, false);
        x + self.drop_path.forward(y)
    }
}

impl VisionTransformer {
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Tokens after the last block (cls first).
    ///
    /// # Shapes
    /// images: [batch, channels, height, width] -> [batch, 1 + patches, dim]
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<3> {
        let x = self.patch_embed.proj.forward(images); // [b, d, gh, gw]
        let [b, d, _, _] = x.dims();
        let x = x.flatten::<3>(2, 3).swap_dims(1, 2); // [b, n, d]
        let cls = self.cls_token.val().expand([b, 1, d]);
        let mut x = Tensor::cat(vec![cls, x], 1) + self.pos_embed.val();
        for blk in &self.blocks {
            x = blk.forward(x);
        }
        x
    }

    /// Class logits.
    ///
    /// # Shapes
    /// images: [batch, channels, height, width] -> [batch, classes]
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.forward_features(images);
        let [b, n, d] = x.dims();
        let pooled: Tensor<2> = match (&self.fc_norm, &self.norm) {
            (Some(fc_norm), _) => norm(fc_norm, x.slice([0..b, 1..n, 0..d]).mean_dim(1).squeeze_dim(1)),
            (None, Some(n)) => norm(n, x).slice([0..b, 0..1, 0..d]).squeeze_dim(1),
            (None, None) => unreachable!("a ViT has either norm or fc_norm"),
        };
        linear_2d(&self.head, pooled, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tiny(global_pool: bool) -> VitConfig {
        VitConfig {
            shape: VitShape { image_size: 8, patch_size: 4, in_chans: 1, embed_dim: 8, depth: 2, num_heads: 2, mlp_ratio: 2.0 },
            num_classes: 3,
            drop_path: 0.1,
            global_pool,
            bf16: false,
        }
    }

    #[test]
    fn shapes_and_param_count() {
        let _rng = crate::device::burn_rng();
        let dev = Device::flex();
        for gp in [true, false] {
            let m = tiny(gp).init(&dev);
            let out = m.forward(Tensor::random([2, 1, 8, 8], Distribution::Default, &dev));
            assert_eq!(out.dims(), [2, 3]);
            assert_eq!(m.num_params(), tiny(gp).shape.finetune_params(3));
        }
    }

    /// timm's init: zero Linear biases, trunc_normal(.02) position embedding (not a fixed
    /// sin-cos grid), PyTorch's Conv2d bound 1/sqrt(fan_in) for the patch projection.
    #[test]
    fn init_is_timms() {
        let _rng = crate::device::burn_rng();
        let cfg = VitConfig {
            shape: VitShape { image_size: 32, patch_size: 4, in_chans: 3, embed_dim: 64, depth: 2, num_heads: 2, mlp_ratio: 4.0 },
            ..tiny(true)
        };
        let m = cfg.init(&Device::flex());
        let v = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        let std = |x: &[f32]| (x.iter().map(|a| (a * a) as f64).sum::<f64>() / x.len() as f64).sqrt();
        for b in &m.blocks {
            for l in [&b.attn.qkv, &b.attn.proj, &b.mlp.fc1, &b.mlp.fc2] {
                assert!(v(l.bias.as_ref().unwrap().val()).iter().all(|&x| x == 0.0));
                let w = v(l.weight.val().flatten(0, 1));
                assert!((std(&w) - 0.02).abs() < 0.002, "{}", std(&w));
            }
        }
        assert!(v(m.head.bias.as_ref().unwrap().val()).iter().all(|&x| x == 0.0));
        let pos = v(m.pos_embed.val().flatten(0, 2));
        assert!((std(&pos) - 0.02).abs() < 0.002, "pos_embed std {}", std(&pos));
        let fan_in = (3 * 4 * 4) as f32;
        let w = v(m.patch_embed.proj.weight.val().flatten(0, 3));
        let bound = 1.0 / fan_in.sqrt();
        assert!(w.iter().all(|x| x.abs() <= bound) && w.iter().any(|x| x.abs() > 0.9 * bound));
    }

    #[test]
    fn drop_path_rates_are_linspace() {
        let _rng = crate::device::burn_rng();
        let m = VitConfig { drop_path: 0.3, ..tiny(true) }.init(&Device::flex());
        let rates: Vec<f64> = m.blocks.iter().map(|b| b.drop_path.prob).collect();
        assert_eq!(rates, vec![0.0, 0.3]);
    }

    #[test]
    fn eval_forward_is_deterministic_despite_drop_path() {
        let _rng = crate::device::burn_rng();
        let dev = Device::flex();
        let m = tiny(true).init(&dev);
        let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Default, &dev);
        let a = m.forward(x.clone()).into_data();
        let b = m.forward(x).into_data();
        assert_eq!(a, b);
    }

    /// bf16 mixed precision trains like f32: the same seeded model and data, 40 AdamW steps,
    /// losses within 1% over the first 15 steps and 10% on average over the last 10, yet not
    /// bit-identical (bf16 really computes), and the parameters stay f32.
    #[test]
    fn bf16_mixed_precision_follows_the_f32_loss_curve() {
        let _rng = crate::device::burn_rng();
        use burn::optim::GradientsParams;
        use burn::tensor::activation::log_softmax;
        // One model and one batch for both runs. The batch comes from a local RNG and the
        // device is seeded right before the model is drawn (its RNG is shared with other tests).
        use rand::{Rng, SeedableRng};
        let ad = crate::device::test_device().autodiff();
        if !ad.supports_dtype(burn::tensor::FloatDType::BF16) {
            return; // wgpu: maestro refuses bf16 where the device has none
        }
        let cfg = VitConfig {
            shape: VitShape { image_size: 16, patch_size: 4, in_chans: 1, embed_dim: 32, depth: 2, num_heads: 2, mlp_ratio: 4.0 },
            num_classes: 4,
            drop_path: 0.0,
            global_pool: true,
            bf16: false,
        };
        ad.seed(3);
        let m0 = cfg.init(&ad);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let pixels: Vec<f32> = (0..32 * 16 * 16).map(|_| rng.random::<f32>()).collect();
        // A learnable problem: the label is the quadrant with the brightest mean.
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [32, 1, 16, 16]), &ad);
        let q = x.clone().reshape([32, 1, 2, 8, 2, 8]).mean_dim(3).mean_dim(5).reshape([32, 4]);
        let t = q.clone().equal(q.max_dim(1)).float();
        let curve = |bf16: bool| -> Vec<f32> {
            let mut m = m0.clone();
            for b in &mut m.blocks {
                b.bf16 = bf16;
            }
            let mut opt = crate::train::adamw::AdamW::new([0.9, 0.999], 1e-5, 0.05).init();
            (0..40)
                .map(|_| {
                    let loss = (log_softmax(m.forward(x.clone()), 1) * t.clone()).sum_dim(1).neg().mean();
                    let v = loss.clone().into_scalar::<f32>();
                    let g = GradientsParams::from_grads(loss.backward(), &m);
                    m = opt.step(2e-3, m.clone(), g);
                    assert_eq!(m.blocks[0].attn.qkv.weight.val().dtype(), burn::tensor::DType::F32);
                    v
                })
                .collect()
        };
        let (f, b) = (curve(false), curve(true));
        assert!(f[39] < 0.95 * f[0], "the f32 run learns: {f:?}");
        // Step by step while the two runs have not drifted apart, then on average: training is
        // chaotic enough that rounding differences grow, as between two f32 runs on different
        // hardware.
        for (i, (x, y)) in f.iter().zip(&b).enumerate().take(15) {
            assert!(((x - y) / x).abs() < 0.01, "step {i}: f32 {x} vs bf16 {y}\n{f:?}\n{b:?}");
        }
        let tail = |v: &[f32]| v[30..].iter().sum::<f32>() / 10.0;
        assert!(((tail(&f) - tail(&b)) / tail(&f)).abs() < 0.1, "last 10 steps: f32 {} vs bf16 {}\n{f:?}\n{b:?}", tail(&f), tail(&b));
        assert_ne!(f, b, "bf16 must actually compute in bf16");
    }
}
