//! `maestro pretrain`: MAE pre-training with the light recipe (or MAE's), from a study's
//! dataset and model.

use super::finetune::{TrainTarget, study_for_cli, train_error};
use crate::Error;
use crate::study::schema::PretrainRecipe;
use crate::train::pretrain::{self, PretrainSpec};

pub struct PretrainRequest {
    pub target: TrainTarget,
    pub setup: Option<String>,
    pub preset: Option<String>,
    pub epochs: Option<f64>,
    pub warmup: Option<f64>,
    pub mask_ratio: Option<f64>,
    pub decoder_depth: Option<usize>,
    pub decoder_dim: Option<usize>,
    pub decoder_heads: Option<usize>,
    pub batch_size: Option<usize>,
    pub blr: Option<f64>,
    pub supmae: bool,
}

pub fn pretrain(r: &PretrainRequest) -> Result<(), Error> {
    let t = &r.target;
    let loaded = study_for_cli(t)?;
    let s = &loaded.study;
    let mut recipe = match (&r.setup, &r.preset) {
        (Some(name), _) => s
            .pretrain_setups
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| p.pretrain.clone())
            .ok_or_else(|| Error::Usage(format!("the study has no pre-training setup `{name}` with a `pretrain:` block")))?,
        (None, Some(p)) => PretrainRecipe::preset(p).ok_or_else(|| Error::Usage(format!("unknown preset `{p}`; use efficient or mae")))?,
        (None, None) => PretrainRecipe::default(),
    };
    if let Some(v) = r.epochs {
        recipe.epochs = v;
    }
    if let Some(v) = r.warmup {
        recipe.warmup_epochs = v;
    }
    if let Some(v) = r.mask_ratio {
        recipe.mask_ratio = v;
    }
    if let Some(v) = r.decoder_depth {
        recipe.decoder_depth = v;
    }
    if let Some(v) = r.decoder_dim {
        recipe.decoder_embed_dim = v;
    }
    if let Some(v) = r.decoder_heads {
        recipe.decoder_num_heads = v;
    }
    if recipe.decoder_num_heads == 0 || recipe.decoder_embed_dim % recipe.decoder_num_heads != 0 || recipe.decoder_embed_dim % 4 != 0 {
        return Err(Error::Usage(format!(
            "decoder: {} heads must divide the width {}, which must be a multiple of 4",
            recipe.decoder_num_heads, recipe.decoder_embed_dim
        )));
    }
    if let Some(v) = r.batch_size {
        recipe.batch_size = v;
    }
    if let Some(v) = r.blr {
        recipe.blr = v;
    }
    recipe.supmae |= r.supmae;
    if !(recipe.mask_ratio > 0.0 && recipe.mask_ratio < 1.0) {
        return Err(Error::Usage(format!("--mask-ratio must be in (0, 1), got {}", recipe.mask_ratio)));
    }
    let shape = s.model.shape().expect("validated");
    if crate::model::mae::kept_patches(shape.num_patches(), recipe.mask_ratio) == 0 {
        return Err(Error::Usage(format!(
            "--mask-ratio {} leaves no visible patch out of {} ({}px images, patch {})",
            recipe.mask_ratio,
            shape.num_patches(),
            shape.image_size,
            shape.patch_size
        )));
    }
    let spec = PretrainSpec {
        source: loaded.source(),
        // Absolute, so the spec (and the resume check on it) does not depend on the working folder.
        manifest: t.manifest.as_deref().map(super::finetune::absolute).transpose()?,
        model: shape,
        recipe,
        seed: t.seed.unwrap_or(s.seed),
        device: t.device.clone(),
        max_steps: t.max_steps,
    };
    // The recipe after the flags, checked as a study's (`pretrain.epochs` is --epochs, ...).
    crate::study::validate::problems_of(|c| crate::study::validate::check_pretrain_spec(c, &spec)).map_err(Error::Usage)?;
    let result = pretrain::run(&spec, &t.out, t.quiet).map_err(train_error)?;
    let round = |v: &[f64]| v.iter().map(|l| (l * 1e4).round() / 1e4).collect::<Vec<_>>();
    let cls = if result.epoch_cls_loss.is_empty() { String::new() } else { format!("; SupMAE classification loss {:?}", round(&result.epoch_cls_loss)) };
    println!(
        "{}: {} after {} steps; reconstruction loss by epoch {:?}{cls}; {:.0} img/s; checkpoint {}",
        t.out.display(),
        result.status,
        result.steps,
        round(&result.epoch_loss),
        result.images_per_s,
        result.checkpoint.display()
    );
    match result.error {
        Some(e) => Err(Error::Failed(e)),
        None => Ok(()),
    }
}

pub fn reconstruct(r: &crate::report::reconstruct::Request) -> Result<(), Error> {
    let (path, loss) = crate::report::reconstruct::reconstruct(r).map_err(Error::Usage)?;
    println!("{}: reconstruction loss on the removed patches {loss:.4}", path.display());
    Ok(())
}
