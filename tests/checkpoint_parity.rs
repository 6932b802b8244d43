//! Parity with timm: a small timm ViT with random weights (scripts/fixtures/timm_vit_parity.py)
//! loaded from `.pth` and safetensors gives timm's logits; pre-trained encoders, pos_embed
//! interpolation, mismatched checkpoints and export behave as MAE's code expects.

mod util;

use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use maestro::model::checkpoint::{self, CheckpointError, LoadMode};
use maestro::model::config::VitShape;
use maestro::model::vit::{VisionTransformer, VitConfig};
use serde_json::Value;

fn io() -> Value {
    serde_json::from_str(&std::fs::read_to_string(util::fixture("vit_parity_io.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn config(image_size: usize, embed_dim: usize) -> VitConfig {
    VitConfig {
        shape: VitShape { image_size, patch_size: 8, in_chans: 3, embed_dim, depth: 2, num_heads: 3, mlp_ratio: 4.0 },
        num_classes: 7,
        drop_path: 0.0,
        global_pool: true,
        bf16: false,
    }
}

fn model(image_size: usize) -> VisionTransformer {
    config(image_size, 48).init(&util::test_device())
}

fn logits(m: &VisionTransformer) -> Vec<f32> {
    let io = io();
    let x = Tensor::<4>::from_data(TensorData::new(floats(&io["input"]), [2, 3, 32, 32]), &util::test_device());
    m.forward(x).into_data().try_to_vec::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rel * scale, "{what}[{i}]: {g} vs {w} (tolerance {} )", rel * scale);
    }
}

#[test]
fn pth_logits_match_timm() {
    let mut m = model(32);
    let report = checkpoint::load(&mut m, &util::fixture("vit_parity.pth"), LoadMode::Finetuned, "test").unwrap();
    assert!(report.missing.is_empty(), "{report}");
    assert_close(&logits(&m), &floats(&io()["logits"]), 1e-4, "logits");
}

#[test]
fn safetensors_logits_match_timm() {
    let mut m = model(32);
    checkpoint::load(&mut m, &util::fixture("vit_parity.safetensors"), LoadMode::Finetuned, "test").unwrap();
    assert_close(&logits(&m), &floats(&io()["logits"]), 1e-4, "logits");
}

#[test]
fn pretrained_encoder_may_lack_exactly_the_classifier() {
    let mut m = model(32);
    let report = checkpoint::load(&mut m, &util::fixture("vit_parity_encoder.pth"), LoadMode::Pretrained, "test").unwrap();
    assert_eq!(report.missing, vec!["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]);
    for k in ["norm.weight", "norm.bias", "mask_token", "decoder_embed.weight"] {
        assert!(report.unused.iter().any(|u| u == k), "{k} should be unused: {:?}", report.unused);
    }
    // The same file is not a fine-tuned model.
    let mut m = model(32);
    match checkpoint::load(&mut m, &util::fixture("vit_parity_encoder.pth"), LoadMode::Finetuned, "test") {
        Err(CheckpointError::MissingKeys { keys, .. }) => assert_eq!(keys.len(), 4),
        other => panic!("expected missing keys, got {other:?}"),
    }
}

#[test]
fn pos_embed_is_interpolated_like_mae() {
    let mut m = model(48);
    let report = checkpoint::load(&mut m, &util::fixture("vit_parity.pth"), LoadMode::Finetuned, "test").unwrap();
    assert_eq!(report.interpolated, Some((4, 6)));
    let got = m.pos_embed.val().into_data().try_to_vec::<f32>().unwrap();
    assert_close(&got, &floats(&io()["pos_embed_48"]), 1e-5, "pos_embed");
}

#[test]
fn a_checkpoint_of_another_shape_names_the_key_and_both_shapes() {
    let mut m = config(32, 60).init(&util::test_device());
    let err = checkpoint::load(&mut m, &util::fixture("vit_parity.pth"), LoadMode::Pretrained, "vit 60").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`cls_token` has shape [1, 1, 48] in the checkpoint but [1, 1, 60] in the model"), "{msg}");
}

#[test]
fn export_uses_timm_names_and_round_trips() {
    let mut m = model(32);
    checkpoint::load(&mut m, &util::fixture("vit_parity.pth"), LoadMode::Finetuned, "test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.safetensors");
    checkpoint::export_safetensors(&m, &out).unwrap();
    let mut back = model(32);
    let report = checkpoint::load(&mut back, &out, LoadMode::Finetuned, "test").unwrap();
    assert!(report.missing.is_empty() && report.unused.is_empty(), "{report}");
    assert_close(&logits(&back), &floats(&io()["logits"]), 1e-4, "logits after export");
    // The exported names are timm's: the reference safetensors file has the same key set.
    let text = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let mut keys: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(text(&out), text(&util::fixture("vit_parity.safetensors")));
}
