//! Layer-wise learning-rate decay exactly as MAE's util/lr_decay.py (param_groups_lrd), as burn
//! parameter groups.
//!
//! A parameter's layer id is 0 for cls_token, pos_embed and patch_embed.*, i+1 for blocks.i.*,
//! and depth+1 for everything after the blocks; its lr_scale is decay^(depth + 1 - layer_id).
//! Weight decay is 0 for 1-D parameters and for pos_embed and cls_token (timm's no_weight_decay).

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use serde::Serialize;

use super::adamw::AdamW;
use super::schedule::{CosineSchedule, ScaledSchedule};

/// One parameter's place in the recipe.
#[derive(Debug, Clone, Serialize)]
pub struct ParamRecipe {
    /// The timm / MAE state-dict key.
    pub name: String,
    /// burn's path of the same parameter (LayerNorm weight/bias are gamma/beta).
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub id: ParamId,
    #[serde(skip)]
    pub ndim: usize,
    #[serde(skip)]
    pub layer_id: usize,
    pub lr_scale: f64,
    pub weight_decay: f64,
}

/// burn path -> timm key.
pub fn timm_name(path: &str) -> String {
    for (burn, official) in crate::model::mae::CLS_HEAD_KEYS {
        if let Some(rest) = path.strip_prefix(burn) {
            return timm_name(&format!("{official}{rest}"));
        }
    }
    if let Some(p) = path.strip_suffix(".gamma") {
        format!("{p}.weight")
    } else if let Some(p) = path.strip_suffix(".beta") {
        format!("{p}.bias")
    } else {
        path.to_string()
    }
}

/// MAE's get_layer_id_for_vit, with num_layers = depth + 1.
pub fn layer_id(name: &str, num_layers: usize) -> usize {
    if name == "cls_token" || name == "pos_embed" || name.starts_with("patch_embed") {
        0
    } else if let Some(rest) = name.strip_prefix("blocks.") {
        rest.split('.').next().and_then(|i| i.parse::<usize>().ok()).map(|i| i + 1).unwrap_or(num_layers)
    } else {
        num_layers
    }
}

/// Every float parameter with its burn path, in declaration order.
#[derive(Default)]
struct Collect {
    stack: Vec<String>,
    out: Vec<(String, ParamId, usize)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.stack.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        self.out.push((self.stack.join("."), p.id, D));
    }
}

/// The parameters of a module, in timm's `named_parameters` order when the fields are declared
/// in timm's order.
pub fn parameters<M: Module>(module: &M) -> Vec<(String, ParamId, usize)> {
    let mut c = Collect::default();
    module.visit(&mut c);
    c.out
}

/// Keys whose weight decay is always 0 in fine-tuning (timm's `no_weight_decay()`).
pub const NO_WEIGHT_DECAY: [&str; 3] = ["pos_embed", "cls_token", "dist_token"];

/// The recipe of every parameter: MAE's param_groups_lrd flattened to one row per parameter.
pub fn param_recipes<M: Module>(module: &M, depth: usize, layer_decay: f64, weight_decay: f64) -> Vec<ParamRecipe> {
    let num_layers = depth + 1;
    parameters(module)
        .into_iter()
        .map(|(path, id, ndim)| {
            let name = timm_name(&path);
            let lid = layer_id(&name, num_layers);
            let no_decay = ndim == 1 || NO_WEIGHT_DECAY.contains(&name.as_str());
            ParamRecipe {
                lr_scale: layer_decay.powf((num_layers - lid) as f64),
                weight_decay: if no_decay { 0.0 } else { weight_decay },
                name,
                path,
                id,
                ndim,
                layer_id: lid,
            }
        })
        .collect()
}

/// AdamW with the recipe's weight decay per parameter: the fallback decays, a second group
/// (by exact path) does not.
pub fn optimizer(recipes: &[ParamRecipe], weight_decay: f64, betas: [f64; 2], eps: f64) -> ModuleOptimizer {
    let no_decay: Vec<String> = recipes.iter().filter(|r| r.weight_decay == 0.0).map(|r| r.path.clone()).collect();
    let optim = AdamW::new(betas, eps, weight_decay).init();
    if no_decay.is_empty() {
        optim
    } else {
        optim.with_group(ParamGroup::from_paths(no_decay), AdamW::new(betas, eps, 0.0), None)
    }
}

/// The LR scheduler: one group per layer id (exact paths), each the schedule times its scale.
pub fn scheduler(recipes: &[ParamRecipe], schedule: &CosineSchedule, start_step: usize) -> ModuleLrScheduler {
    let make = |scale| ScaledSchedule { schedule: schedule.clone(), scale, step: start_step };
    let mut sched = ModuleLrScheduler::new(make(1.0));
    let max_layer = recipes.iter().map(|r| r.layer_id).max().unwrap_or(0);
    for lid in 0..=max_layer {
        let members: Vec<&ParamRecipe> = recipes.iter().filter(|r| r.layer_id == lid).collect();
        if let Some(first) = members.first() {
            let paths: Vec<String> = members.iter().map(|r| r.path.clone()).collect();
            sched = sched.with_group(ParamGroup::from_paths(paths), make(first.lr_scale));
        }
    }
    sched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::VitShape;
    use crate::model::vit::VitConfig;
    use burn::tensor::Device;

    #[test]
    fn layer_ids_follow_mae() {
        assert_eq!(layer_id("cls_token", 13), 0);
        assert_eq!(layer_id("patch_embed.proj.weight", 13), 0);
        assert_eq!(layer_id("blocks.0.norm1.weight", 13), 1);
        assert_eq!(layer_id("blocks.11.mlp.fc2.bias", 13), 12);
        assert_eq!(layer_id("fc_norm.weight", 13), 13);
        assert_eq!(layer_id("head.bias", 13), 13);
    }

    #[test]
    fn vit_b_has_timms_152_parameters_in_order() {
        let _rng = crate::device::burn_rng();
        let cfg = VitConfig { shape: VitShape::preset("vit_base_patch16").unwrap(), num_classes: 1000, drop_path: 0.1, global_pool: true, bf16: false };
        let model = cfg.init(&Device::flex());
        let r = param_recipes(&model, 12, 0.75, 0.05);
        assert_eq!(r.len(), 152);
        let names: Vec<&str> = r.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(&names[..5], &["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight"]);
        assert_eq!(&names[148..], &["fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"]);
        let head = r.iter().find(|p| p.name == "head.weight").unwrap();
        assert_eq!((head.lr_scale, head.weight_decay), (1.0, 0.05));
        let pos = r.iter().find(|p| p.name == "pos_embed").unwrap();
        assert_eq!((pos.lr_scale, pos.weight_decay), (0.75f64.powf(13.0), 0.0));
    }
}
