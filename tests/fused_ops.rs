//! The fused attention and LayerNorm (src/model/fused.rs) against timm's gradients and against
//! burn's own composition, and maestro's AdamW (src/train/adamw.rs) against burn's, on the device `MAESTRO_TEST_DEVICE` names (burn's CPU backend by
//! default; `libtorch-cpu` or `libtorch-cuda:0` in a `tch` build runs PyTorch's kernels and
//! derivatives through the fused path).

mod util;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use maestro::model::checkpoint::{self, LoadMode};
use maestro::model::config::VitShape;
use maestro::model::fused;
use maestro::model::vit::VitConfig;
use serde_json::Value;

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(util::fixture(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest absolute difference relative to the largest magnitude of `want`.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    got.iter().zip(want).fold(0f32, |m, (g, w)| m.max((g - w).abs())) / scale
}

/// A timm ViT (2 blocks, 3 heads) with random weights: every parameter's gradient of the mean
/// cross-entropy matches the one PyTorch computed (scripts/fixtures/timm_vit_grads.py).
#[test]
fn vit_gradients_match_timm() {
    let device = util::test_device().autodiff();
    let config = VitConfig {
        shape: VitShape { image_size: 32, patch_size: 8, in_chans: 3, embed_dim: 48, depth: 2, num_heads: 3, mlp_ratio: 4.0 },
        num_classes: 7,
        drop_path: 0.0,
        global_pool: true,
        bf16: false,
    };
    let mut model = config.init(&device);
    checkpoint::load(&mut model, &util::fixture("vit_parity.pth"), LoadMode::Finetuned, "test").unwrap();

    let io = json("vit_parity_io.json");
    let want = json("vit_parity_grads.json");
    let x = Tensor::<4>::from_data(TensorData::new(floats(&io["input"]), [2, 3, 32, 32]), &device);
    let labels: Vec<i64> = want["labels"].as_array().unwrap().iter().map(|l| l.as_i64().unwrap()).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [2]), &device).one_hot::<2>(7).float();
    let loss = (log_softmax(model.forward(x), 1) * targets).sum_dim(1).neg().mean();
    let loss_value = values(loss.clone())[0];
    assert!((loss_value - want["loss"].as_f64().unwrap() as f32).abs() < 1e-4, "loss {loss_value} vs {}", want["loss"]);
    let grads = loss.backward();

    // (timm name, maestro's gradient in timm's layout).
    let mut got: Vec<(String, Vec<f32>)> = vec![
        ("cls_token".into(), values(model.cls_token.grad(&grads).unwrap())),
        ("pos_embed".into(), values(model.pos_embed.grad(&grads).unwrap())),
        ("patch_embed.proj.weight".into(), values(model.patch_embed.proj.weight.grad(&grads).unwrap())),
        ("patch_embed.proj.bias".into(), values(model.patch_embed.proj.bias.as_ref().unwrap().grad(&grads).unwrap())),
    ];
    let linear = |name: String, l: &burn::nn::Linear, got: &mut Vec<(String, Vec<f32>)>| {
        got.push((format!("{name}.weight"), values(l.weight.grad(&grads).unwrap().transpose())));
        got.push((format!("{name}.bias"), values(l.bias.as_ref().unwrap().grad(&grads).unwrap())));
    };
    let norm = |name: String, n: &burn::nn::LayerNorm, got: &mut Vec<(String, Vec<f32>)>| {
        got.push((format!("{name}.weight"), values(n.gamma.grad(&grads).unwrap())));
        got.push((format!("{name}.bias"), values(n.beta.as_ref().unwrap().grad(&grads).unwrap())));
    };
    for (i, b) in model.blocks.iter().enumerate() {
        norm(format!("blocks.{i}.norm1"), &b.norm1, &mut got);
        linear(format!("blocks.{i}.attn.qkv"), &b.attn.qkv, &mut got);
        linear(format!("blocks.{i}.attn.proj"), &b.attn.proj, &mut got);
        norm(format!("blocks.{i}.norm2"), &b.norm2, &mut got);
        linear(format!("blocks.{i}.mlp.fc1"), &b.mlp.fc1, &mut got);
        linear(format!("blocks.{i}.mlp.fc2"), &b.mlp.fc2, &mut got);
    }
    norm("fc_norm".into(), model.fc_norm.as_ref().unwrap(), &mut got);
    linear("head".into(), &model.head, &mut got);

    let want = want["grads"].as_object().unwrap();
    assert_eq!(got.len(), want.len(), "every timm parameter is compared");
    for (name, g) in &got {
        let w = floats(&want[name]["values"]);
        let err = rel_err(g, &w);
        assert!(err < 1e-4, "{name}: gradient off by {err:.2e} of its largest value");
    }
}

/// The fused operations compute what burn's composition does, values and gradients: attention
/// on the qkv projection (q, k and v are views of it, as in the model), LayerNorm, and the
/// linear layer with its bias added by the product.
#[test]
fn fused_ops_match_burns_composition() {
    let a = fused::compare(&util::test_device(), [2, 3, 5, 4], false);
    assert_eq!(a.errors.len(), 9, "{a:?}");
    assert!(a.worst() < 1e-4, "{a:?}");
    // bf16 keeps 8 bits of mantissa; `maestro bench fused` allows 3e-2 as well. The inputs are
    // random and the RNG is shared with the tests running beside this one, so the margin must
    // hold for any draw (seen: up to 2.04e-2 in d qkv on libtorch-cpu).
    let device = util::test_device();
    if !device.supports_dtype(burn::tensor::FloatDType::BF16) {
        return; // wgpu: WGSL has no bf16, and maestro refuses bf16 there
    }
    let a = fused::compare(&device, [2, 3, 5, 4], true);
    assert!(a.worst() < 3e-2, "bf16 attention: {a:?}");
}

/// GELU's gradient is the derivative of the erf form it computes, as in PyTorch's `nn.GELU()`.
/// burn's CubeCL backends (`cuda`, `wgpu`) differentiate the tanh approximation instead: off by
/// 8.7e-4 near |x| = 2 (`MAESTRO_TEST_DEVICE=wgpu` shows it without `fused::gelu`'s backward).
#[test]
fn gelu_gradient_is_that_of_the_erf_form() {
    let xs: Vec<f32> = (0..=1200).map(|i| -6.0 + i as f32 / 100.0).collect();
    let device = util::test_device().autodiff();
    let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &device).require_grad();
    let y = fused::gelu(x.clone());
    let got_y = values(y.clone());
    let grads = y.sum().backward();
    let got = values(x.grad(&grads).unwrap());
    for (i, &x) in xs.iter().enumerate() {
        let t = x as f64;
        let cdf = 0.5 * (1.0 + erf(t / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
        // Written so that a NaN fails too.
        let (ey, e) = ((got_y[i] as f64 - t * cdf).abs(), (got[i] as f64 - (cdf + t * pdf)).abs());
        assert!(ey <= 1e-5, "gelu({x}) = {} off by {ey:.2e}", got_y[i]);
        assert!(e <= 1e-5, "gelu's derivative at {x} = {} off by {e:.2e}", got[i]);
    }
}

/// erf to double precision, independent of the Abramowitz-Stegun approximation CubeCL itself
/// uses: its Maclaurin series below 3, and 1 - erfc's continued fraction above.
fn erf(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (a + f);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
    };
    v.copysign(x)
}

/// maestro's AdamW follows burn's AdamW step for step (decay and no-decay groups, a first step
/// at lr 0 as the warm-up starts, then changing rates); on LibTorch it is PyTorch's arithmetic.
#[test]
fn adamw_matches_burns() {
    let a = maestro::train::adamw::compare(&util::test_device());
    assert!(a.moved > 1e-3, "the steps moved the weights: {a:?}");
    assert!(a.weight < 1e-5 && a.bias < 1e-5, "{a:?}");
}
