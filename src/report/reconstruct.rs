//! The paper's Figure 2: what a pre-trained MAE makes of masked images. For each image, four
//! tiles: the original, the visible patches (removed ones grey), the reconstruction, and the
//! reconstruction with the visible patches pasted back (as the official visualisation does).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::augment::{EvalTransform, Normalize};
use crate::data::image::{Image, SplitReader, decode_file};
use crate::model::checkpoint;
use crate::model::mae::{MaeConfig, MaskedAutoencoder};
use crate::train::finetune::normalization;
use crate::train::pretrain::PretrainSpec;

pub struct Request {
    /// A `maestro pretrain` output folder (or its `mae.safetensors`, with `pretrain.json` beside it).
    pub checkpoint: PathBuf,
    /// Image files; none: `count` images spread over the pre-training dataset's validation split.
    pub images: Vec<PathBuf>,
    pub count: usize,
    /// Default: the ratio the model was pre-trained with.
    pub mask_ratio: Option<f64>,
    pub seed: u64,
    pub out: PathBuf,
}

/// The figure's rows (images) at most: 64 rows of 224 px are a 14k px tall bitmap already.
const MAX_ROWS: usize = 64;

/// Where the model's settings and weights are.
fn locate(ckpt: &Path) -> Result<(PretrainSpec, PathBuf), String> {
    if !ckpt.exists() {
        return Err(format!("{}: no such file or folder; give a `maestro pretrain` output folder or its mae.safetensors", ckpt.display()));
    }
    let (dir, weights) = if ckpt.is_dir() { (ckpt.to_path_buf(), ckpt.join("mae.safetensors")) } else { (ckpt.parent().unwrap_or(Path::new(".")).to_path_buf(), ckpt.to_path_buf()) };
    let spec_path = dir.join("pretrain.json");
    let text = std::fs::read_to_string(&spec_path).map_err(|e| {
        format!("{}: {e}; reconstruct reads the model's settings from a `maestro pretrain` folder (its pretrain.json)", spec_path.display())
    })?;
    let spec: PretrainSpec = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    if let Ok(r) = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(dir.join("result.json")).unwrap_or_default()) {
        if r["status"] != "completed" {
            return Err(format!("{}: the pre-training did not complete ({}); there is no model to reconstruct with", dir.display(), r["status"]));
        }
    }
    if !weights.is_file() {
        return Err(format!("{}: no such file; has the pre-training finished?", weights.display()));
    }
    Ok((spec, weights))
}

fn to_u8(v: f32, mean: f32, std: f32) -> u8 {
    ((v * std + mean) * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Reconstruct and draw; returns the figure's path and the mean loss on removed patches.
pub fn reconstruct(r: &Request) -> Result<(PathBuf, f64), String> {
    let ext = r.out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if r.out.is_dir() || !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg" | "bmp")) {
        return Err(format!("--out {}: the figure is a bitmap image; name a .png (or .jpg, .bmp) file", r.out.display()));
    }
    if r.images.is_empty() && !(1..=MAX_ROWS).contains(&r.count) {
        return Err(format!("--count must be 1 to {MAX_ROWS} (one figure row each), got {}", r.count));
    }
    if r.images.len() > MAX_ROWS {
        return Err(format!("{} images given with --images; the figure takes {MAX_ROWS} at most (one row each)", r.images.len()));
    }
    let (spec, weights) = locate(&r.checkpoint)?;
    let shape = spec.model.clone();
    let rec = &spec.recipe;
    let mask_ratio = r.mask_ratio.unwrap_or(rec.mask_ratio);
    if !(mask_ratio > 0.0 && mask_ratio < 1.0) {
        return Err(format!("--mask-ratio must be in (0, 1), got {mask_ratio}"));
    }
    if (shape.num_patches() as f64 * (1.0 - mask_ratio)) as usize == 0 {
        return Err(format!("mask ratio {mask_ratio} leaves none of the {} patches visible", shape.num_patches()));
    }
    let channels = shape.in_chans;
    if channels != 1 && channels != 3 {
        return Err(format!("in_chans {channels}: images are read as 1 (grey) or 3 (colour) channels"));
    }
    let norm: Normalize = normalization(&spec.source, channels);
    let transform = EvalTransform { input_size: shape.image_size, crop_pct: 1.0, normalize: norm.clone() };

    // The images, as the model sees them.
    let mut images: Vec<Image> = Vec::new();
    for p in &r.images {
        images.push(decode_file(p, channels as u8).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    if images.is_empty() {
        let cat = spec.source.scan().map_err(|e| e.to_string())?;
        if cat.val.items.is_empty() {
            return Err(format!("{} has no validation images to reconstruct; pass some with --images", spec.source.describe()));
        }
        let reader = SplitReader::open(&spec.source, &cat.val.name).map_err(|e| e.to_string())?;
        // Evenly spread over the split; an unreadable image is passed over for the next one.
        let n = r.count.clamp(1, cat.val.items.len().max(1));
        let len = cat.val.items.len();
        let mut unreadable = Vec::new();
        for i in 0..n {
            let found = (i * len / n..len).find_map(|j| {
                let key = &cat.val.items[j].key;
                reader.read(key, channels as u8).map_err(|e| unreadable.push(format!("{}: {e}", reader.describe(key)))).ok()
            });
            images.extend(found);
        }
        if images.is_empty() {
            return Err(format!("no validation image could be read; the first: {}", unreadable.first().cloned().unwrap_or_default()));
        }
        if let Some(first) = unreadable.first() {
            eprintln!("warning: {} unreadable validation image(s) passed over; the first: {first}", unreadable.len());
        }
    }
    let n = images.len();
    let size = shape.image_size;
    let input: Vec<f32> = images.iter().flat_map(|img| transform.apply(img)).collect();

    let device = Device::flex();
    let cfg = MaeConfig {
        encoder: shape.clone(),
        decoder_embed_dim: rec.decoder_embed_dim,
        decoder_depth: rec.decoder_depth,
        decoder_num_heads: rec.decoder_num_heads,
        norm_pix_loss: rec.norm_pix_loss,
        supervised_classes: None,
        bf16: false,
    };
    let mut model: MaskedAutoencoder = cfg.init(&device);
    // SupMAE's head is not needed to reconstruct.
    checkpoint::load_exact(&mut model, &weights, "the MAE of pretrain.json").map_err(|e| e.to_string())?;
    let model = model.no_grad();

    let l = shape.num_patches();
    let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
    let noise: Vec<f32> = (0..n * l).map(|_| rng.random::<f32>()).collect();
    let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [n, channels, size, size]), &device);
    let out = model.forward(x.clone(), Tensor::from_data(TensorData::new(noise, [n, l]), &device), mask_ratio, None);
    let loss = out.loss.into_scalar::<f32>() as f64;

    // With norm_pix_loss the model predicts each patch normalised by its own mean and variance;
    // shown in pixels with the original patch's statistics, as is usual.
    let mut pred = out.pred;
    if rec.norm_pix_loss {
        let target = model.patchify(x);
        let k = target.dims()[2] as f64;
        let mean = target.clone().mean_dim(2);
        let var = (target - mean.clone()).powi_scalar(2).sum_dim(2) / (k - 1.0);
        pred = pred * (var + 1e-6).sqrt() + mean;
    }
    let recon = model.unpatchify(pred, channels).into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    let mask = out.mask.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| format!("{e:?}"))?;

    draw(&r.out, &input, &recon, &mask, n, channels, size, shape.patch_size, &norm, mask_ratio)?;
    Ok((r.out.clone(), loss))
}

#[allow(clippy::too_many_arguments)]
fn draw(out: &Path, input: &[f32], recon: &[f32], mask: &[f32], n: usize, c: usize, size: usize, p: usize, norm: &Normalize, ratio: f64) -> Result<(), String> {
    crate::report::plots::register_font();
    let scale = (112 / size).max(1) as i32;
    let tile = size as i32 * scale;
    let (gap, head) = (6, 28);
    let w = 4 * tile + 5 * gap;
    let h = head + n as i32 * (tile + gap) + gap;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let root = BitMapBackend::new(out, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let titles = ["original".to_string(), format!("masked {:.0}%", ratio * 100.0), "reconstruction".into(), "+ visible patches".into()];
    for (j, t) in titles.iter().enumerate() {
        let x = gap + j as i32 * (tile + gap);
        root.draw(&Text::new(t.as_str(), (x, 8), ("sans-serif", 13).into_font())).map_err(|e| e.to_string())?;
    }
    let g = size / p;
    let px = |img: &[f32], i: usize, ch: usize, y: usize, x: usize| img[((i * c + ch) * size + y) * size + x];
    for i in 0..n {
        for y in 0..size {
            for x in 0..size {
                let removed = mask[i * g * g + (y / p) * g + x / p] > 0.5;
                let colour = |img: &[f32]| -> RGBColor {
                    let v: Vec<u8> = (0..c).map(|ch| to_u8(px(img, i, ch, y, x), norm.mean[ch], norm.std[ch])).collect();
                    if c == 1 { RGBColor(v[0], v[0], v[0]) } else { RGBColor(v[0], v[1], v[2]) }
                };
                let orig = colour(input);
                let rec = colour(recon);
                let grey = RGBColor(128, 128, 128);
                let tiles = [orig, if removed { grey } else { orig }, rec, if removed { rec } else { orig }];
                for (j, col) in tiles.iter().enumerate() {
                    let x0 = gap + j as i32 * (tile + gap) + x as i32 * scale;
                    let y0 = head + gap + i as i32 * (tile + gap) + y as i32 * scale;
                    for dy in 0..scale {
                        for dx in 0..scale {
                            root.draw_pixel((x0 + dx, y0 + dy), col).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
        }
    }
    root.present().map_err(|e| format!("{}: {e}", out.display()))
}
