//! Checkpoints: official MAE / timm `.pth` (state dict under `model`, or bare) and safetensors
//! with timm's key names, burn's own burnpack, and export to safetensors with timm's names.
//!
//! Before anything is applied, every checkpoint tensor the model has is checked against the
//! model's shape, so a checkpoint of another architecture fails with the first mismatching key
//! and both shapes instead of a half-loaded model. A pos_embed for another image size is
//! resized as MAE's interpolate_pos_embed does (bicubic, align_corners=False, cls kept).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PathFilter, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, Tensor, TensorData};

use super::vit::VisionTransformer;
use crate::train::llrd::timm_name;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "{path}: `{key}` has shape {found:?} in the checkpoint but {expected:?} in the model ({model}); is this checkpoint for another architecture?"
    )]
    ShapeMismatch { path: PathBuf, key: String, found: Vec<usize>, expected: Vec<usize>, model: String },
    #[error("{path}: the checkpoint lacks {} the model needs: {}{}", keys.len(), keys.join(", "), hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    MissingKeys { path: PathBuf, keys: Vec<String>, hint: Option<String> },
    #[error("{path}: the checkpoint has {found} encoder blocks, the model {expected} ({model}); is this checkpoint for another architecture?")]
    DepthMismatch { path: PathBuf, found: usize, expected: usize, model: String },
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// What a checkpoint is expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// A pre-trained encoder (mae_pretrain_vit_*.pth): only the classifier (head.* and fc_norm.*
    /// with global pooling) may be missing; a head of another class count is dropped, as MAE's
    /// main_finetune.py does.
    Pretrained,
    /// A fine-tuned model: nothing may be missing.
    Finetuned,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub applied: usize,
    /// timm names the checkpoint did not provide.
    pub missing: Vec<String>,
    /// Checkpoint keys the model has no use for (decoder, mask_token, norm with global pool).
    pub unused: Vec<String>,
    /// (checkpoint grid, model grid) when pos_embed was interpolated.
    pub interpolated: Option<(usize, usize)>,
    /// A head dropped because its class count differs.
    pub dropped_head: bool,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tensors loaded", self.applied)?;
        if !self.missing.is_empty() {
            write!(f, "; newly initialised: {}", self.missing.join(", "))?;
        }
        if !self.unused.is_empty() {
            write!(f, "; {} checkpoint tensors unused", self.unused.len())?;
        }
        if let Some((a, b)) = self.interpolated {
            write!(f, "; pos_embed interpolated {a}x{a} -> {b}x{b}")?;
        }
        if self.dropped_head {
            write!(f, "; head of another class count dropped")?;
        }
        Ok(())
    }
}

/// (burn path, timm name, shape in PyTorch's layout) of every float parameter.
fn model_params<M: Module>(model: &M) -> Vec<(String, String, Vec<usize>)> {
    #[derive(Default)]
    struct V {
        stack: Vec<String>,
        out: Vec<(String, String, Vec<usize>)>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let path = self.stack.join(".");
            let mut shape = p.val().dims().to_vec();
            // burn's Linear stores [in, out]; PyTorch's nn.Linear [out, in]. Compare (and report)
            // in PyTorch's layout, the one the checkpoint and the user know.
            if D == 2 {
                shape.reverse();
            }
            self.out.push((path.clone(), timm_name(&path), shape));
        }
    }
    let mut v = V::default();
    model.visit(&mut v);
    v.out
}

enum Format {
    Pth,
    Safetensors,
    Burnpack,
}

fn format_of(path: &Path) -> Result<Format, CheckpointError> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("pth" | "pt" | "bin" | "ckpt") => Ok(Format::Pth),
        Some("safetensors") => Ok(Format::Safetensors),
        Some("bpk" | "burnpack") => Ok(Format::Burnpack),
        _ => Err(CheckpointError::Read {
            path: path.into(),
            message: "unknown checkpoint format: expected .pth (PyTorch), .safetensors or .bpk (burnpack)".into(),
        }),
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// Read official layer names that burn cannot spell as field names (SupMAE's `cls_head.0`).
fn official_names(mut store: PytorchStore) -> PytorchStore {
    for (burn, official) in crate::model::mae::CLS_HEAD_KEYS {
        store = store.with_key_remapping(format!("^{}", regex_escape(official)), burn);
    }
    store
}

/// A store over the file; `.pth` files are read under `model` when they have that key.
enum Store {
    Pth(PytorchStore),
    St(SafetensorsStore),
}

impl Store {
    fn open(path: &Path, format: &Format) -> Result<Self, CheckpointError> {
        let read_err = |e: String| CheckpointError::Read { path: path.into(), message: e };
        if !path.is_file() {
            return Err(read_err("no such file".into()));
        }
        match format {
            Format::Pth => {
                let mut with_key = official_names(PytorchStore::from_file(path).with_top_level_key("model"));
                match with_key.keys() {
                    Ok(keys) if !keys.is_empty() => Ok(Store::Pth(with_key)),
                    _ => {
                        let mut bare = official_names(PytorchStore::from_file(path));
                        bare.keys().map_err(|e| read_err(format!("not a readable PyTorch checkpoint: {e}")))?;
                        Ok(Store::Pth(bare))
                    }
                }
            }
            Format::Safetensors => {
                let mut st = SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter);
                for (burn, official) in crate::model::mae::CLS_HEAD_KEYS {
                    st = st.with_key_remapping(format!("^{}", regex_escape(official)), burn);
                }
                Ok(Store::St(st))
            }
            Format::Burnpack => unreachable!("burnpack is loaded natively"),
        }
    }

    /// timm name -> (shape, f32 values if asked) of every tensor.
    fn shapes(&mut self) -> Result<BTreeMap<String, Vec<usize>>, String> {
        let tensors = match self {
            Store::Pth(s) => s.get_all_tensors().map_err(|e| e.to_string())?,
            Store::St(s) => s.get_all_tensors().map_err(|e| e.to_string())?,
        };
        Ok(tensors.iter().map(|(k, t)| (timm_name(k), t.shape.to_vec())).collect())
    }

    fn f32_tensor(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let t = match self {
            Store::Pth(s) => s.get_tensor(name).map_err(|e| e.to_string())?,
            Store::St(s) => s.get_tensor(name).map_err(|e| e.to_string())?,
        }
        .ok_or_else(|| format!("no tensor `{name}`"))?;
        let shape = t.shape.to_vec();
        let bytes = t.to_bytes().map_err(|e| format!("{e:?}"))?;
        let data = TensorData::from_bytes_vec(bytes.to_vec(), shape.clone(), t.dtype);
        let data = data.convert::<f32>();
        Ok((shape, data.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?))
    }

    fn apply<M: Module + ModuleSnapshot>(&mut self, model: &mut M, only: Vec<String>) -> Result<burn::store::ApplyResult, String> {
        let filter = PathFilter::new().with_full_paths(only);
        match self {
            Store::Pth(s) => {
                let mut s = std::mem::replace(s, PytorchStore::from_file(""));
                s = s.filter(filter).allow_partial(true);
                model.load_from(&mut s).map_err(|e| e.to_string())
            }
            Store::St(s) => {
                let mut s = std::mem::replace(s, SafetensorsStore::from_file(""));
                s = s.filter(filter).allow_partial(true);
                model.load_from(&mut s).map_err(|e| e.to_string())
            }
        }
    }
}

/// burn's own format holds the whole module (and its parameter ids, which a resumed optimizer
/// needs); it loads as it was saved.
fn load_burnpack<M: Module>(model: &mut M, path: &Path) -> Result<LoadReport, CheckpointError> {
    let loaded = model.clone().try_load_file(path).map_err(|e| CheckpointError::Read { path: path.into(), message: e.to_string() })?;
    *model = loaded;
    Ok(LoadReport { applied: model_params(model).len(), ..Default::default() })
}

/// A PyTorch or safetensors checkpoint and the shape of each tensor by timm name; None for
/// burnpack, which loads whole.
fn open_with_shapes(path: &Path) -> Result<Option<(Store, BTreeMap<String, Vec<usize>>)>, CheckpointError> {
    let format = format_of(path)?;
    if let Format::Burnpack = format {
        return Ok(None);
    }
    let mut store = Store::open(path, &format)?;
    let shapes = store.shapes().map_err(|message| CheckpointError::Read { path: path.into(), message })?;
    Ok(Some((store, shapes)))
}

/// Load weights into a fine-tune ViT.
pub fn load(model: &mut VisionTransformer, path: &Path, mode: LoadMode, describe: &str) -> Result<LoadReport, CheckpointError> {
    let Some((mut store, ckpt)) = open_with_shapes(path)? else { return load_burnpack(model, path) };
    let params = model_params(model);

    let mut report = LoadReport::default();
    let mut apply = Vec::new();
    let mut interpolate_from = None;
    for (burn_path, name, shape) in &params {
        let Some(found) = ckpt.get(name) else { continue };
        if found == shape {
            apply.push(burn_path.clone());
            continue;
        }
        let same_width = found.last() == shape.last() && found.len() == 3 && shape.len() == 3;
        if name == "pos_embed" && same_width && is_square(found[1] - 1) && is_square(shape[1] - 1) {
            interpolate_from = Some(found.clone());
            continue;
        }
        if mode == LoadMode::Pretrained && name.starts_with("head.") {
            report.dropped_head = true;
            continue;
        }
        return Err(CheckpointError::ShapeMismatch {
            path: path.into(),
            key: name.clone(),
            found: found.clone(),
            expected: shape.clone(),
            model: describe.into(),
        });
    }

    // A deeper encoder's extra blocks would otherwise be dropped as unused (a shallower one's
    // missing blocks are caught as missing keys below).
    let block = |k: &str| k.strip_prefix("blocks.")?.split('.').next()?.parse::<usize>().ok();
    let depth = |names: &mut dyn Iterator<Item = &String>| names.filter_map(|k| block(k)).max().map_or(0, |b| b + 1);
    let (found, expected) = (depth(&mut ckpt.keys()), depth(&mut params.iter().map(|(_, n, _)| n)));
    if found > expected && expected > 0 {
        return Err(CheckpointError::DepthMismatch { path: path.into(), found, expected, model: describe.into() });
    }

    // Read the old table before applying: applying consumes the store.
    let old_pos = match &interpolate_from {
        Some(_) => Some(store.f32_tensor("pos_embed").map_err(|message| CheckpointError::Read { path: path.into(), message })?),
        None => None,
    };
    let result = store.apply(model, apply).map_err(|message| CheckpointError::Read { path: path.into(), message })?;
    if let Some(e) = result.errors.first() {
        return Err(CheckpointError::Read { path: path.into(), message: e.to_string() });
    }
    report.applied = result.applied.len();

    if let (Some(found), Some((_, values))) = (interpolate_from, old_pos) {
        let target = model.pos_embed.val().dims();
        let resized = interpolate_pos_embed(values, &found, target[1] - 1, &model.pos_embed.val().device());
        model.pos_embed = Param::from_tensor(resized);
        report.applied += 1;
        report.interpolated = Some((isqrt(found[1] - 1), isqrt(target[1] - 1)));
    }

    let ckpt_names: std::collections::BTreeSet<&String> = ckpt.keys().collect();
    report.missing = params
        .iter()
        .map(|(_, n, _)| n.clone())
        .filter(|n| !ckpt_names.contains(n) || (report.dropped_head && n.starts_with("head.")))
        .collect();
    let model_names: std::collections::BTreeSet<&String> = params.iter().map(|(_, n, _)| n).collect();
    report.unused = ckpt.keys().filter(|k| !model_names.contains(k)).cloned().collect();

    let allowed = |n: &str| mode == LoadMode::Pretrained && (n.starts_with("head.") || n.starts_with("fc_norm."));
    let bad: Vec<String> = report.missing.iter().filter(|n| !allowed(n)).cloned().collect();
    if !bad.is_empty() {
        let hint = match mode {
            LoadMode::Pretrained => Some("a pre-trained encoder may lack only head.* and fc_norm.*; check that the checkpoint is a ViT with timm/MAE key names".to_string()),
            LoadMode::Finetuned => Some("to start a fine-tune from a pre-trained encoder, load it as pre-trained (--checkpoint)".to_string()),
        };
        return Err(CheckpointError::MissingKeys { path: path.into(), keys: bad, hint });
    }
    Ok(report)
}

/// Load every parameter of a module from a `.pth` or safetensors checkpoint with the same key
/// names (an MAE pre-training model from an official `*_full.pth`, say). Nothing may be missing
/// and every shape must agree.
pub fn load_exact<M: Module + ModuleSnapshot>(model: &mut M, path: &Path, describe: &str) -> Result<LoadReport, CheckpointError> {
    let Some((mut store, ckpt)) = open_with_shapes(path)? else { return load_burnpack(model, path) };
    let params = model_params(model);
    let mut missing = Vec::new();
    for (_, name, shape) in &params {
        match ckpt.get(name) {
            None => missing.push(name.clone()),
            Some(found) if found != shape => {
                return Err(CheckpointError::ShapeMismatch { path: path.into(), key: name.clone(), found: found.clone(), expected: shape.clone(), model: describe.into() });
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(CheckpointError::MissingKeys { path: path.into(), keys: missing, hint: None });
    }
    let all = params.iter().map(|(p, _, _)| p.clone()).collect();
    let result = store.apply(model, all).map_err(|message| CheckpointError::Read { path: path.into(), message })?;
    if let Some(e) = result.errors.first() {
        return Err(CheckpointError::Read { path: path.into(), message: e.to_string() });
    }
    let names: std::collections::BTreeSet<&String> = params.iter().map(|(_, n, _)| n).collect();
    Ok(LoadReport { applied: result.applied.len(), unused: ckpt.keys().filter(|k| !names.contains(k)).cloned().collect(), ..Default::default() })
}

fn isqrt(n: usize) -> usize {
    (n as f64).sqrt().round() as usize
}

fn is_square(n: usize) -> bool {
    let r = isqrt(n);
    r * r == n
}

/// MAE's interpolate_pos_embed on a `[1, 1 + g*g, d]` table.
pub fn interpolate_pos_embed(values: Vec<f32>, shape: &[usize], new_tokens: usize, device: &burn::tensor::Device) -> Tensor<3> {
    let (n, d) = (shape[1], shape[2]);
    let old = isqrt(n - 1);
    let new = isqrt(new_tokens);
    let t = Tensor::<3>::from_data(TensorData::new(values, [1, n, d]), device);
    let cls = t.clone().slice([0..1, 0..1, 0..d]);
    let grid = t.slice([0..1, 1..n, 0..d]).reshape([1, old, old, d]).permute([0, 3, 1, 2]);
    let opts = InterpolateOptions::new(InterpolateMode::Bicubic).with_align_corners(false).with_output_size([new, new]);
    let grid = interpolate(grid, opts).permute([0, 2, 3, 1]).reshape([1, new * new, d]);
    Tensor::cat(vec![cls, grid], 1)
}

/// Write the model as safetensors with timm's key names and PyTorch's layouts.
pub fn export_safetensors(model: &VisionTransformer, path: &Path) -> Result<(), CheckpointError> {
    let mut store = SafetensorsStore::from_file(path).with_to_adapter(BurnToPyTorchAdapter).overwrite(true);
    model.save_into(&mut store).map_err(|e| CheckpointError::Write { path: path.into(), message: e.to_string() })
}

/// The dtype a checkpoint's floats arrive in is kept by burn; training runs in f32.
pub fn is_f32(model: &VisionTransformer) -> bool {
    model.pos_embed.val().dtype() == DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares() {
        assert!(is_square(196) && is_square(16) && !is_square(50));
    }
}
