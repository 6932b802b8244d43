//! Augmentation settings as a study names them (timm's notation), and the Pillow-exact
//! image ops behind timm's transforms.

mod dist;
mod erasing;
mod mixup;
mod randaug;
mod resize;

pub use mixup::{MixupCutmix, smoothed_targets};


/// timm's RandAugment config string, e.g. `rand-m9-mstd0.5-inc1`.
#[derive(Debug, Clone, PartialEq)]
pub struct RandAugmentSpec {
    /// Mean magnitude (0..10 scale).
    pub magnitude: f64,
    /// Ops per image.
    pub num_ops: usize,
    /// Std of the per-op magnitude noise.
    pub magnitude_std: f64,
    /// Magnitude upper bound.
    pub magnitude_max: f64,
    /// Use the "increasing" op set (higher magnitude = stronger for every op).
    pub increasing: bool,
    /// Probability that each chosen op is applied.
    pub prob: f64,
}

impl RandAugmentSpec {
    /// Parse `rand-m9-mstd0.5-inc1`; `none` (or empty) means no RandAugment.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let mut parts = s.split('-');
        if parts.next() != Some("rand") {
            return Err(format!("`{s}` is not a RandAugment policy: it must start with `rand-` (e.g. rand-m9-mstd0.5-inc1), or be `none`"));
        }
        let mut spec = RandAugmentSpec {
            magnitude: 10.0,
            num_ops: 2,
            magnitude_std: 0.0,
            magnitude_max: 10.0,
            increasing: false,
            prob: 0.5,
        };
        for part in parts {
            let split = part.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(part.len());
            let (key, val) = part.split_at(split);
            let num = |v: &str| v.parse::<f64>().map_err(|_| format!("`{part}` in `{s}`: `{v}` is not a number"));
            match key {
                "m" => spec.magnitude = num(val)?,
                "n" => spec.num_ops = num(val)? as usize,
                "mstd" => spec.magnitude_std = num(val)?,
                "mmax" => spec.magnitude_max = num(val)?,
                "inc" => spec.increasing = num(val)? != 0.0,
                "p" => spec.prob = num(val)?,
                _ => return Err(format!("`{part}` in `{s}` is not a RandAugment setting (m, n, mstd, mmax, inc, p)")),
            }
        }
        Ok(Some(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_mae_policy() {
        let s = RandAugmentSpec::parse("rand-m9-mstd0.5-inc1").unwrap().unwrap();
        assert_eq!((s.magnitude, s.num_ops, s.magnitude_std, s.increasing, s.prob), (9.0, 2, 0.5, true, 0.5));
        assert!(RandAugmentSpec::parse("none").unwrap().is_none());
        assert!(RandAugmentSpec::parse("rand-q9").is_err());
        assert!(RandAugmentSpec::parse("autoaug").is_err());
    }
}
