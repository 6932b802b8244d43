//! Proxy subsets: the paper's ImageNet-200 (K classes drawn at random) and ImageNet-10% (a
//! stratified fraction of every class), or both at once.
//!
//! Every draw comes from ChaCha8 seeded with the proxy's seed: stream 0 draws the classes,
//! stream 1 + c draws the images of source class c, so a class's images do not depend on
//! which other classes were drawn. Selections keep the split's order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, Item, Split};
use super::error::DataError;
use super::manifest::{ClassEntry, Manifest, ManifestSplit};
use super::source::Source;

/// How a proxy is drawn from its dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProxyRule {
    /// Draw this many classes (labels re-indexed 0..K-1 in source order).
    pub classes: Option<usize>,
    /// Keep this fraction of each (drawn) class's training images, at least one.
    pub fraction: Option<f64>,
}

impl ProxyRule {
    pub fn describe(&self) -> String {
        // 0.07 x 100 is 7.000000000000001 in binary floating point: round for people.
        let pct = |f: f64| (f * 100.0 * 1e6).round() / 1e6;
        match (self.classes, self.fraction) {
            (Some(k), Some(f)) => format!("{k} random classes, {}% of each", pct(f)),
            (Some(k), None) => format!("{k} random classes"),
            (None, Some(f)) => format!("{}% of every class", pct(f)),
            (None, None) => "the whole dataset".into(),
        }
    }

    /// Why this rule cannot be drawn from a dataset with `num_classes` classes.
    pub fn check(&self, num_classes: usize) -> Result<(), String> {
        if let Some(k) = self.classes {
            if k == 0 {
                return Err("classes must be at least 1".into());
            }
            if k > num_classes {
                return Err(format!("{k} classes asked for, but the dataset has only {num_classes}"));
            }
        }
        if let Some(f) = self.fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("fraction must be in (0, 1], got {f}"));
            }
        }
        Ok(())
    }
}

/// Images kept from a class of `n`: round(fraction x n), at least one.
pub fn kept_per_class(n: usize, fraction: Option<f64>) -> usize {
    match fraction {
        _ if n == 0 => 0,
        None => n,
        Some(f) => ((f * n as f64).round() as usize).clamp(1, n),
    }
}

/// `k` distinct values of 0..n, drawn by a partial Fisher-Yates shuffle, returned sorted.
fn draw(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    let mut pool: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        pool.swap(i, j);
    }
    let mut chosen = pool[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

/// Draw a proxy from a scanned dataset.
pub fn build(name: &str, source: &Source, catalog: &Catalog, rule: ProxyRule, seed: u64) -> Result<Manifest, DataError> {
    rule.check(catalog.num_classes()).map_err(|reason| DataError::Invalid { what: format!("proxy `{name}`"), reason })?;

    let n_classes = catalog.num_classes();
    let chosen: Vec<usize> = match rule.classes {
        Some(k) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(0);
            draw(&mut rng, n_classes, k)
        }
        None => (0..n_classes).collect(),
    };
    let mut relabel = vec![None; n_classes];
    for (new, &old) in chosen.iter().enumerate() {
        relabel[old] = Some(new as u32);
    }

    // Training images: a stratified draw inside each chosen class.
    let groups = catalog.train.by_class(n_classes);
    let mut keep = vec![false; catalog.train.items.len()];
    for &c in &chosen {
        let members = &groups[c];
        let k = kept_per_class(members.len(), rule.fraction);
        if k == members.len() {
            members.iter().for_each(|&i| keep[i] = true);
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(1 + c as u64);
            for j in draw(&mut rng, members.len(), k) {
                keep[members[j]] = true;
            }
        }
    }
    let select = |split: &Split, keep: &dyn Fn(usize) -> bool| -> ManifestSplit {
        let items: Vec<Item> = split
            .items
            .iter()
            .enumerate()
            .filter(|(i, it)| relabel[it.label as usize].is_some() && keep(*i))
            .map(|(_, it)| Item { key: it.key.clone(), label: relabel[it.label as usize].unwrap() })
            .collect();
        ManifestSplit { split: split.name.clone(), items }
    };
    let train = select(&catalog.train, &|i| keep[i]);
    // Validation: every validation image of the chosen classes.
    let val = select(&catalog.val, &|_| true);

    let classes = chosen
        .iter()
        .enumerate()
        .map(|(new, &old)| ClassEntry { label: new as u32, source_label: old as u32, name: catalog.classes[old].clone() })
        .collect();
    Ok(Manifest::new(name.to_string(), source.clone(), seed, rule, classes, train, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::catalog::ItemKey;

    fn catalog(classes: usize, per_class: usize) -> Catalog {
        let split = |name: &str, n: usize| Split {
            name: name.into(),
            items: (0..classes * n).map(|i| Item { key: ItemKey::Index(i as u32), label: (i % classes) as u32 }).collect(),
        };
        Catalog {
            classes: (0..classes).map(|c| format!("c{c:03}")).collect(),
            train: split("train", per_class),
            val: split("test", 3),
            warnings: vec![],
        }
    }

    fn src() -> Source {
        Source::fashion_mnist()
    }

    #[test]
    fn class_subset_relabels_and_keeps_val_of_same_classes() {
        let cat = catalog(10, 20);
        let m = build("p", &src(), &cat, ProxyRule { classes: Some(4), fraction: None }, 0).unwrap();
        assert_eq!(m.classes.len(), 4);
        assert!(m.classes.windows(2).all(|w| w[0].source_label < w[1].source_label));
        assert_eq!(m.train.items.len(), 80);
        assert_eq!(m.val.items.len(), 12);
        assert!(m.train.items.iter().all(|i| i.label < 4));
        // Item keys keep their source label's class.
        for it in &m.train.items {
            let ItemKey::Index(i) = it.key else { panic!() };
            assert_eq!(m.classes[it.label as usize].source_label as usize, i as usize % 10);
        }
    }

    #[test]
    fn fraction_is_stratified_with_at_least_one() {
        let cat = catalog(5, 33);
        let m = build("p", &src(), &cat, ProxyRule { classes: None, fraction: Some(0.1) }, 1).unwrap();
        assert_eq!(m.train.class_counts(5), vec![3; 5]);
        let m = build("p", &src(), &cat, ProxyRule { classes: None, fraction: Some(0.001) }, 1).unwrap();
        assert_eq!(m.train.class_counts(5), vec![1; 5]);
        assert_eq!(m.val.items.len(), 15);
    }

    #[test]
    fn same_seed_same_draw_other_seed_other_draw() {
        let cat = catalog(100, 10);
        let rule = ProxyRule { classes: Some(10), fraction: Some(0.5) };
        let a = build("p", &src(), &cat, rule, 7).unwrap();
        let b = build("p", &src(), &cat, rule, 7).unwrap();
        let c = build("p", &src(), &cat, rule, 8).unwrap();
        assert_eq!(a.to_canonical_string(), b.to_canonical_string());
        assert_ne!(a.content_hash, c.content_hash);
    }

    #[test]
    fn too_many_classes_is_an_error() {
        let cat = catalog(3, 2);
        let e = build("p", &src(), &cat, ProxyRule { classes: Some(4), fraction: None }, 0).unwrap_err();
        assert!(e.to_string().contains("only 3"), "{e}");
    }
}
