//! Parity with facebookresearch/mae's own MaskedAutoencoderViT (scripts/fixtures/
//! mae_official_parity.py ran the official models_mae.py): the same weights, input and masking
//! noise give the same mask, the same unshuffling and the same loss.

mod util;

use burn::tensor::{Tensor, TensorData};
use maestro::model::checkpoint;
use maestro::model::config::VitShape;
use maestro::model::mae::MaeConfig;
use serde_json::Value;

/// The model of a fixture's `config` (the official constructor's arguments).
fn config(c: &Value, supervised_classes: Option<usize>) -> MaeConfig {
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    MaeConfig {
        encoder: VitShape {
            image_size: u("img_size"),
            patch_size: u("patch_size"),
            in_chans: u("in_chans"),
            embed_dim: u("embed_dim"),
            depth: u("depth"),
            num_heads: u("num_heads"),
            mlp_ratio: c["mlp_ratio"].as_f64().unwrap(),
        },
        decoder_embed_dim: u("decoder_embed_dim"),
        decoder_depth: u("decoder_depth"),
        decoder_num_heads: u("decoder_num_heads"),
        norm_pix_loss: c["norm_pix_loss"].as_bool().unwrap(),
        supervised_classes,
        bf16: false,
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn loss_mask_and_prediction_match_the_official_model() {
    let io: Value = serde_json::from_str(&std::fs::read_to_string(util::fixture("mae_parity_io.json")).unwrap()).unwrap();
    let cfg = config(&io["config"], None);
    let dev = util::test_device();
    let mut model = cfg.init(&dev);
    let report = checkpoint::load_exact(&mut model, &util::fixture("mae_parity.pth"), "mae parity").unwrap();
    assert!(report.unused.is_empty(), "{report}");

    let imgs = Tensor::<4>::from_data(TensorData::new(floats(&io["input"]), [2, 3, 32, 32]), &dev);
    let noise = Tensor::<2>::from_data(TensorData::new(floats(&io["noise"]), [2, 16]), &dev);
    let out = model.forward(imgs, noise, io["mask_ratio"].as_f64().unwrap(), None);

    let mask = out.mask.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    assert_eq!(mask, floats(&io["mask"]), "the mask must be identical");
    let restore: Vec<i64> = out.ids_restore.into_data().convert::<i64>().try_into_vec::<i64>().unwrap();
    let want: Vec<i64> = io["ids_restore"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(restore, want);

    let loss = out.loss.into_scalar::<f32>() as f64;
    let expected = io["loss"].as_f64().unwrap();
    assert!(((loss - expected) / expected).abs() < 1e-4, "loss {loss} vs official {expected}");

    let pred = out.pred.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let want = floats(&io["pred"]);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in pred.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "pred[{i}]: {g} vs {w}");
    }
}

/// SupMAE (enyac-group/supmae models_supmae.py, in training mode as in pre-training): the same
/// reconstruction loss, the same logits from the visible tokens, and the same total loss
/// rec + 0.01 x CE(logits / 10). Fixture: scripts/fixtures/supmae_official_parity.py.
#[test]
fn supmae_logits_and_loss_match_the_official_model() {
    let io: Value = serde_json::from_str(&std::fs::read_to_string(util::fixture("supmae_parity_io.json")).unwrap()).unwrap();
    let c = &io["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let cfg = config(c, Some(u("nb_classes")));
    assert_eq!(u("cls_hidden_mlp"), 4 * u("embed_dim"));
    // Training mode: BatchNorm1d normalises with the batch's statistics.
    let dev = util::test_device().autodiff();
    let mut model = cfg.init(&dev);
    let report = checkpoint::load_exact(&mut model, &util::fixture("supmae_parity.pth"), "supmae parity").unwrap();
    assert!(report.unused.iter().all(|k| k == "cls_head.1.num_batches_tracked"), "{report}");

    let n = io["labels"].as_array().unwrap().len();
    let imgs = Tensor::<4>::from_data(TensorData::new(floats(&io["input"]), [n, 3, 32, 32]), &dev);
    let noise = Tensor::<2>::from_data(TensorData::new(floats(&io["noise"]), [n, 16]), &dev);
    let labels: Vec<i64> = io["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let labels = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(labels, [n]), &dev);
    let out = model.forward(imgs, noise, io["mask_ratio"].as_f64().unwrap(), Some(labels));

    assert_eq!(out.mask.into_data().convert::<f32>().try_into_vec::<f32>().unwrap(), floats(&io["mask"]));
    let rel = |got: f64, want: f64| ((got - want) / want).abs();
    let rec = out.rec_loss.into_scalar::<f32>() as f64;
    assert!(rel(rec, io["rec_loss"].as_f64().unwrap()) < 1e-4, "reconstruction {rec} vs {}", io["rec_loss"]);
    let logits = out.logits.expect("SupMAE has logits").into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let want = floats(&io["logits"]);
    assert_eq!(logits.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in logits.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "logits[{i}]: {g} vs {w}");
    }
    let loss = out.loss.into_scalar::<f32>() as f64;
    assert!(rel(loss, io["loss"].as_f64().unwrap()) < 1e-4, "total {loss} vs {}", io["loss"]);
    // The supervised branch really adds to the loss (0.01 x CE, about 0.016 here).
    assert!(loss - rec > 1e-3);
}
