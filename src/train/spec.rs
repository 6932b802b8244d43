//! What one fine-tune run is (the trial contract's input) and what it produced (its result).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Source;
use crate::model::config::VitShape;
use crate::study::schema::FinetuneRecipe;

/// Everything a fine-tune needs; written as JSON before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSpec {
    pub name: String,
    pub source: Source,
    /// A proxy manifest; None trains on the whole dataset.
    pub manifest: Option<PathBuf>,
    pub model: VitShape,
    pub recipe: FinetuneRecipe,
    pub llrd: f64,
    pub blr: f64,
    /// A pre-trained encoder to start from; None starts from random weights.
    pub checkpoint: Option<PathBuf>,
    pub seed: u64,
    pub device: String,
    /// Stop after this many optimizer steps (smoke runs and benchmarks).
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Evaluation batch size.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
}

fn default_eval_batch() -> usize {
    256
}

impl FinetuneSpec {
    /// Identifies the run's settings; a resume refuses a checkpoint of other settings. The
    /// device is not one: a run stopped on one device resumes on another.
    pub fn hash(&self) -> String {
        let mut identity = self.clone();
        identity.device.clear();
        let text = serde_json::to_string(&identity).expect("spec serialises");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    /// The identity older versions saved checkpoints under (the device included), still
    /// accepted so that their interrupted runs resume.
    pub fn legacy_hash(&self) -> String {
        let text = serde_json::to_string(self).expect("spec serialises");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a fine-tune spec: {e}", path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Completed,
    Diverged,
    Failed,
}

/// JSON has no NaN: serde_json writes it as null; read null back as NaN (a value an external
/// trial did not report).
mod nan_null {
    use serde::{Deserialize, Deserializer};
    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    #[serde(deserialize_with = "nan_null::de")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_null::de")]
    pub val_loss: f64,
    #[serde(deserialize_with = "nan_null::de")]
    pub top1: f64,
    #[serde(deserialize_with = "nan_null::de")]
    pub top5: f64,
    /// Learning rate (lr_scale 1) at the epoch's last step.
    #[serde(deserialize_with = "nan_null::de")]
    pub lr: f64,
    pub images_per_s: f64,
    pub wall_s: f64,
}

/// The result of a run: the TrialResult a study collects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneResult {
    pub name: String,
    pub spec_hash: String,
    pub status: RunStatus,
    /// Final-epoch top-1 / top-5 on the validation split (percent).
    #[serde(deserialize_with = "nan_null::de")]
    pub top1: f64,
    #[serde(deserialize_with = "nan_null::de")]
    pub top5: f64,
    #[serde(deserialize_with = "nan_null::de")]
    pub best_top1: f64,
    pub epochs: Vec<EpochMetrics>,
    pub steps: usize,
    pub wall_s: f64,
    /// Training images per second over the run.
    pub images_per_s: f64,
    pub train_images: usize,
    pub val_images: usize,
    pub num_classes: usize,
    pub diverged_at_step: Option<usize>,
    pub error: Option<String>,
    /// Images that could not be read and were skipped.
    pub unreadable_images: usize,
    /// What the blocks computed in: `f32` or `bf16` (mixed precision).
    #[serde(default)]
    pub precision: String,
}

impl FinetuneResult {
    /// Write atomically: a reader never sees half a result.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self).expect("result serialises").as_bytes())
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_with_nan_metrics_reads_back() {
        // serde_json writes NaN as null: a diverged command trial's epochs hold such values.
        let m: EpochMetrics = serde_json::from_str(
            r#"{"epoch": 1, "train_loss": null, "val_loss": null, "top1": null, "top5": null, "lr": null, "images_per_s": 0, "wall_s": 0}"#,
        )
        .unwrap();
        assert!(m.top1.is_nan() && m.top5.is_nan());
        assert_eq!(serde_json::to_string(&m).unwrap().matches("null").count(), 5);
    }
}
