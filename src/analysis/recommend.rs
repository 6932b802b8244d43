//! From trial results to one recommended recipe per pre-training setup.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fit::{CurveFit, Observation, fit_curve};

/// One trial as the analysis sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRow {
    pub id: String,
    /// search | full | baseline
    pub role: String,
    /// The proxy ("" for full-dataset runs).
    pub proxy: String,
    pub setup: String,
    pub llrd: f64,
    pub blr: f64,
    pub repeat: usize,
    /// completed | diverged | failed | pending
    pub status: String,
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    pub best_top1: Option<f64>,
    pub attempts: usize,
    /// Images the trial could not read and skipped.
    pub unreadable_images: usize,
    /// Validation images its top-1 is over (unknown for an external command's trials).
    #[serde(default)]
    pub val_images: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub proxy: String,
    pub setup: String,
    pub blr: f64,
    pub fit: CurveFit,
    /// Diverged grid points (plotted at the bottom, left out of the fit).
    pub diverged: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyOptimum {
    pub proxy: String,
    pub blr: f64,
    pub llrd: f64,
    pub interval: (f64, f64),
    pub best_top1: f64,
    /// How `llrd` was made: `fitted peak` or `best grid value`.
    pub method: String,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub setup: String,
    pub llrd: f64,
    pub blr: f64,
    /// The proxy's 95% interval with one proxy; with several, the hull of theirs.
    pub interval: (f64, f64),
    /// How `llrd` was made: a proxy's `fitted peak` or `best grid value`, or with several
    /// proxies the mean of their estimates (each named).
    pub method: String,
    pub near_optimal: Vec<f64>,
    pub per_proxy: Vec<ProxyOptimum>,
    pub flags: Vec<String>,
}

fn flags_of(curve: &Curve) -> Vec<String> {
    let fit = &curve.fit;
    let mut f = Vec::new();
    if fit.grid.len() < 3 {
        f.push(format!("only {} LLRD value(s) measured: no curve to fit, the interval says nothing", fit.grid.len()));
    }
    if fit.edge {
        f.push("optimum at the edge of the grid".to_string());
    }
    if fit.unbracketed {
        f.push(if fit.grid.len() == 3 {
            "three LLRD values cannot place a peak between them".to_string()
        } else {
            "the fitted peak is past the second-to-last LLRD on its side: one value beyond it cannot place it".to_string()
        });
    }
    if fit.disagree && fit.grid.len() >= 3 {
        f.push(match (fit.two_sided, fit.local) {
            (Some(_), Some(_)) => "the two-sided and local fits disagree".to_string(),
            _ => "a fit could not be solved".to_string(),
        });
    }
    if fit.flat {
        f.push("flat: every LLRD is within noise of the best".to_string());
    } else if fit.wide {
        f.push("wide interval".to_string());
    }
    if fit.no_noise {
        f.push("no noise measured (one repeat, too few values, no validation-set size): the interval is not a confidence interval".to_string());
    }
    // A setting that diverged near the estimate: the optimum may sit at a stability cliff.
    // (With one value there is no step: only a divergence inside the interval counts.)
    let step = fit.grid.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
    let step = if step.is_finite() { step } else { 0.0 };
    let mut near: Vec<f64> = curve
        .diverged
        .iter()
        .copied()
        .filter(|d| (d - fit.estimate).abs() <= step.max(1e-9) + 1e-9 || (fit.interval.0 <= *d && *d <= fit.interval.1))
        .collect();
    near.sort_by(f64::total_cmp);
    near.dedup();
    if !near.is_empty() {
        f.push(format!("LLRD {} diverged, next to the estimate", near.iter().map(|d| format!("{d}")).collect::<Vec<_>>().join(", ")));
    }
    f
}

/// Fit every (proxy, setup, blr) curve of the search trials.
pub fn curves(rows: &[TrialRow], seed: u64) -> Vec<Curve> {
    let mut groups: BTreeMap<(String, String, u64), BTreeMap<u64, (f64, Vec<f64>)>> = BTreeMap::new();
    let mut diverged: BTreeMap<(String, String, u64), Vec<f64>> = BTreeMap::new();
    // The smallest validation set of a curve's trials whose size is known. They all score on
    // one proxy's validation split, so one known size is every trial's; a trial whose
    // result.json was lost (its top-1 kept from the journal) must not void it.
    let mut val_images: BTreeMap<(String, String, u64), Option<usize>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.role == "search") {
        let key = (r.proxy.clone(), r.setup.clone(), r.blr.to_bits());
        match (r.status.as_str(), r.top1) {
            ("completed", Some(t)) => {
                let v = val_images.entry(key.clone()).or_insert(r.val_images);
                *v = match (*v, r.val_images) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                groups.entry(key).or_default().entry(r.llrd.to_bits()).or_insert((r.llrd, Vec::new())).1.push(t)
            }
            ("diverged", _) => diverged.entry(key).or_default().push(r.llrd),
            _ => {}
        }
    }
    groups
        .into_iter()
        .map(|((proxy, setup, blr), pts)| {
            let obs: Vec<Observation> = pts.into_values().map(|(x, ys)| Observation { x, ys }).collect();
            let key = (proxy.clone(), setup.clone(), blr);
            Curve { fit: fit_curve(&obs, val_images.remove(&key).flatten(), seed), diverged: diverged.remove(&key).unwrap_or_default(), proxy, setup, blr: f64::from_bits(blr) }
        })
        .collect()
}

/// One recommendation per setup: per proxy, the LR whose curve peaks highest and the LLRD
/// estimate on it; across proxies, the mean estimate and the hull of their intervals.
pub fn recommend(curves: &[Curve]) -> Vec<Recommendation> {
    let mut by_setup: BTreeMap<&str, Vec<&Curve>> = BTreeMap::new();
    for c in curves {
        by_setup.entry(&c.setup).or_default().push(c);
    }
    let mut out = Vec::new();
    for (setup, cs) in by_setup {
        let mut by_proxy: BTreeMap<&str, Vec<&Curve>> = BTreeMap::new();
        for c in &cs {
            by_proxy.entry(&c.proxy).or_default().push(c);
        }
        let mut per_proxy = Vec::new();
        let mut flags: Vec<String> = Vec::new();
        for (proxy, pcs) in &by_proxy {
            // The LR whose curve peaks highest (ties: the smaller LR, the safer one).
            let best = pcs.iter().max_by(|a, b| a.fit.best_y.total_cmp(&b.fit.best_y).then(b.blr.total_cmp(&a.blr))).expect("non-empty");
            let mut pf = flags_of(best);
            // Another LR within noise of the chosen one: the LR choice (and the LLRD taken
            // on it) rests on a difference the measurements cannot tell.
            for other in pcs.iter().filter(|c| c.blr != best.blr && c.fit.best_y >= best.fit.best_y - best.fit.tolerance) {
                pf.push(format!(
                    "blr {} peaks within noise of blr {} ({:.2} vs {:.2}, at LLRD {})",
                    other.blr,
                    best.blr,
                    other.fit.best_y,
                    best.fit.best_y,
                    round3(other.fit.estimate)
                ));
            }
            per_proxy.push(ProxyOptimum {
                proxy: proxy.to_string(),
                blr: best.blr,
                llrd: best.fit.estimate,
                interval: best.fit.interval,
                best_top1: best.fit.best_y,
                method: best.fit.method.clone(),
                flags: pf,
            });
        }
        // The LR most proxies chose (ties: the smaller LR, the safer one).
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for p in &per_proxy {
            *votes.entry(p.blr.to_bits()).or_default() += 1;
        }
        let blr = votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(f64::from_bits(*b.0).total_cmp(&f64::from_bits(*a.0))))
            .map(|(b, _)| f64::from_bits(*b))
            .unwrap_or(0.0);
        if votes.len() > 1 {
            flags.push(format!(
                "the proxies chose different LRs ({}); the LLRD is taken at blr {blr}",
                per_proxy.iter().map(|p| format!("{}: {}", p.proxy, p.blr)).collect::<Vec<_>>().join(", ")
            ));
        }
        let chosen: Vec<&Curve> = cs.iter().copied().filter(|c| c.blr == blr).collect();
        let llrd = chosen.iter().map(|c| c.fit.estimate).sum::<f64>() / chosen.len().max(1) as f64;
        let interval = chosen.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| (lo.min(c.fit.interval.0), hi.max(c.fit.interval.1)));
        let method = match chosen.as_slice() {
            [one] => one.fit.method.clone(),
            many => format!(
                "mean of the proxies' estimates ({})",
                many.iter().map(|c| format!("{}: {} {}", c.proxy, c.fit.method, round3(c.fit.estimate))).collect::<Vec<_>>().join("; ")
            ),
        };
        // Values near-optimal on every proxy; if none is, on any.
        let sets: Vec<&Vec<f64>> = chosen.iter().map(|c| &c.fit.near_optimal).collect();
        let mut near: Vec<f64> = sets.first().map(|s| s.iter().copied().filter(|x| sets.iter().all(|t| t.contains(x))).collect()).unwrap_or_default();
        if near.is_empty() {
            near = sets.iter().flat_map(|s| s.iter().copied()).collect();
            near.sort_by(f64::total_cmp);
            near.dedup();
        }
        flags.extend(per_proxy.iter().flat_map(|p| p.flags.iter().map(move |f| format!("{}: {f}", p.proxy))));
        let methods: std::collections::BTreeSet<&str> = chosen.iter().map(|c| c.fit.method.as_str()).collect();
        if methods.len() > 1 {
            flags.push("averages a fitted peak with a best grid value: the value is neither proxy's estimate".into());
        }
        let overlap = chosen.iter().all(|a| chosen.iter().all(|b| a.fit.interval.0 <= b.fit.interval.1 && b.fit.interval.0 <= a.fit.interval.1));
        if !overlap {
            flags.push("the proxies' intervals do not overlap".into());
        }
        out.push(Recommendation {
            setup: setup.to_string(),
            llrd: round3(llrd),
            blr,
            interval,
            method,
            near_optimal: near,
            per_proxy,
            flags,
        });
    }
    out
}

/// LLRD values as reported: to 0.001, finer than any interval and than the vertex search's
/// resolution (a thousandth of the searched span), so that the value does not move with it.
fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [f64; 6] = [0.6, 0.7, 0.75, 0.8, 0.85, 0.9];

    fn row(proxy: &str, blr: f64, llrd: f64, top1: Option<f64>) -> TrialRow {
        TrialRow {
            id: format!("{proxy}-{blr}-{llrd}"),
            role: "search".into(),
            proxy: proxy.into(),
            setup: "s".into(),
            llrd,
            blr,
            repeat: 0,
            status: if top1.is_some() { "completed" } else { "diverged" }.into(),
            top1,
            top5: None,
            best_top1: top1,
            attempts: 1,
            unreadable_images: 0,
            val_images: Some(10_000),
        }
    }

    /// A peaked curve, its top at `peak` with height `top`.
    fn curve(proxy: &str, blr: f64, peak: f64, top: f64) -> Vec<TrialRow> {
        GRID.iter().map(|&x| row(proxy, blr, x, Some(top - 800.0 * (x - peak).powi(2)))).collect()
    }

    fn rec(rows: &[TrialRow]) -> Recommendation {
        let mut r = recommend(&curves(rows, 0));
        assert_eq!(r.len(), 1);
        r.remove(0)
    }

    #[test]
    fn an_lr_tie_goes_to_the_smaller_lr_and_is_flagged_as_within_noise() {
        let rows = [curve("p", 1e-3, 0.8, 80.0), curve("p", 4e-3, 0.7, 80.0)].concat();
        let r = rec(&rows);
        assert_eq!(r.blr, 1e-3, "{r:?}");
        assert!(r.flags.iter().any(|f| f.contains("blr 0.004 peaks within noise of blr 0.001")), "{:?}", r.flags);
        // Far apart: no flag.
        let rows = [curve("p", 1e-3, 0.8, 80.0), curve("p", 4e-3, 0.7, 75.0)].concat();
        assert!(rec(&rows).flags.iter().all(|f| !f.contains("within noise")));
    }

    #[test]
    fn proxies_that_choose_different_lrs_are_flagged() {
        let rows = [curve("a", 1e-3, 0.8, 80.0), curve("a", 4e-3, 0.7, 70.0), curve("b", 1e-3, 0.8, 60.0), curve("b", 4e-3, 0.75, 70.0)].concat();
        let r = rec(&rows);
        assert!(r.flags.iter().any(|f| f.starts_with("the proxies chose different LRs (a: 0.001, b: 0.004)")), "{:?}", r.flags);
    }

    #[test]
    fn the_method_says_how_the_value_was_made() {
        let r = rec(&curve("a", 1e-3, 0.78, 80.0));
        assert_eq!(r.method, "fitted peak");
        assert!((r.llrd - 0.78).abs() < 0.005, "{r:?}");
        // One proxy peaked inside, one at the edge: their mean is neither's estimate.
        let edge: Vec<TrialRow> = GRID.iter().map(|&x| row("b", 1e-3, x, Some(60.0 + 10.0 * x))).collect();
        let r = rec(&[curve("a", 1e-3, 0.78, 80.0), edge].concat());
        assert!(r.method.starts_with("mean of the proxies' estimates (a: fitted peak 0.7"), "{}", r.method);
        assert!(r.method.contains("b: best grid value 0.9"), "{}", r.method);
        assert!(r.flags.iter().any(|f| f.starts_with("averages a fitted peak with a best grid value")), "{:?}", r.flags);
    }

    #[test]
    fn one_trial_without_its_validation_size_keeps_the_curve_s_noise_floor() {
        // A flat curve of one seed (a 6-point fit leaves residuals near 0): only the validation
        // set's binomial error gives it a noise level.
        let flat: Vec<TrialRow> = GRID.iter().map(|&x| row("a", 1e-3, x, Some(70.0 + 0.01 * x))).collect();
        let known = curves(&flat, 0).remove(0).fit;
        let mut lost = flat.clone();
        lost[2].val_images = None; // its result.json was lost; its top-1 came from the journal
        let fit = curves(&lost, 0).remove(0).fit;
        assert!(known.tolerance > 0.3, "{}", known.tolerance);
        assert_eq!((fit.tolerance, fit.no_noise, fit.interval), (known.tolerance, known.no_noise, known.interval));
    }

    #[test]
    fn a_divergence_next_to_the_estimate_is_flagged() {
        let mut rows = curve("a", 1e-3, 0.78, 80.0);
        rows.push(row("a", 1e-3, 0.82, None));
        let r = rec(&rows);
        assert!(r.flags.iter().any(|f| f == "a: LLRD 0.82 diverged, next to the estimate"), "{:?}", r.flags);
    }
}
