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
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub setup: String,
    pub llrd: f64,
    pub blr: f64,
    pub interval: (f64, f64),
    pub near_optimal: Vec<f64>,
    pub per_proxy: Vec<ProxyOptimum>,
    /// For each LLRD, the base LR that did best (when LR was searched).
    pub best_blr_per_llrd: Vec<(f64, f64)>,
    pub flags: Vec<String>,
}

fn flags_of(fit: &CurveFit) -> Vec<String> {
    let mut f = Vec::new();
    if fit.grid.len() < 3 {
        f.push(format!("only {} LLRD value(s) measured: no curve to fit, the interval says nothing", fit.grid.len()));
    }
    if fit.edge {
        f.push("optimum at the edge of the grid".to_string());
    }
    if fit.disagree {
        f.push("the two-sided and local fits disagree".to_string());
    }
    if fit.wide {
        f.push("wide interval".to_string());
    }
    f
}

/// Fit every (proxy, setup, blr) curve of the search trials.
pub fn curves(rows: &[TrialRow], seed: u64) -> Vec<Curve> {
    let mut groups: BTreeMap<(String, String, u64), BTreeMap<u64, (f64, Vec<f64>)>> = BTreeMap::new();
    let mut diverged: BTreeMap<(String, String, u64), Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.role == "search") {
        let key = (r.proxy.clone(), r.setup.clone(), r.blr.to_bits());
        match (r.status.as_str(), r.top1) {
            ("completed", Some(t)) => groups.entry(key).or_default().entry(r.llrd.to_bits()).or_insert((r.llrd, Vec::new())).1.push(t),
            ("diverged", _) => diverged.entry(key).or_default().push(r.llrd),
            _ => {}
        }
    }
    groups
        .into_iter()
        .map(|((proxy, setup, blr), pts)| {
            let obs: Vec<Observation> = pts.into_values().map(|(x, ys)| Observation { x, ys }).collect();
            let key = (proxy.clone(), setup.clone(), blr);
            Curve { fit: fit_curve(&obs, seed), diverged: diverged.remove(&key).unwrap_or_default(), proxy, setup, blr: f64::from_bits(blr) }
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
        for (proxy, pcs) in &by_proxy {
            let best = pcs.iter().max_by(|a, b| a.fit.best_y.total_cmp(&b.fit.best_y)).expect("non-empty");
            per_proxy.push(ProxyOptimum {
                proxy: proxy.to_string(),
                blr: best.blr,
                llrd: best.fit.estimate,
                interval: best.fit.interval,
                best_top1: best.fit.best_y,
                flags: flags_of(&best.fit),
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
        let chosen: Vec<&Curve> = cs.iter().copied().filter(|c| c.blr == blr).collect();
        let llrd = chosen.iter().map(|c| c.fit.estimate).sum::<f64>() / chosen.len().max(1) as f64;
        let interval = chosen.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| (lo.min(c.fit.interval.0), hi.max(c.fit.interval.1)));
        // Values near-optimal on every proxy; if none is, on any.
        let sets: Vec<&Vec<f64>> = chosen.iter().map(|c| &c.fit.near_optimal).collect();
        let mut near: Vec<f64> = sets.first().map(|s| s.iter().copied().filter(|x| sets.iter().all(|t| t.contains(x))).collect()).unwrap_or_default();
        if near.is_empty() {
            near = sets.iter().flat_map(|s| s.iter().copied()).collect();
            near.sort_by(f64::total_cmp);
            near.dedup();
        }
        let mut flags: Vec<String> = per_proxy.iter().flat_map(|p| p.flags.iter().map(move |f| format!("{}: {f}", p.proxy))).collect();
        let overlap = chosen.iter().all(|a| chosen.iter().all(|b| a.fit.interval.0 <= b.fit.interval.1 && b.fit.interval.0 <= a.fit.interval.1));
        if !overlap {
            flags.push("the proxies' intervals do not overlap".into());
        }
        // Best LR at each LLRD (over proxies' means).
        let mut per_llrd: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
        for c in &cs {
            for (x, y) in c.fit.grid.iter().zip(&c.fit.means) {
                let e = per_llrd.entry(x.to_bits()).or_insert((*x, c.blr, f64::NEG_INFINITY));
                if *y > e.2 {
                    *e = (*x, c.blr, *y);
                }
            }
        }
        out.push(Recommendation {
            setup: setup.to_string(),
            llrd: (llrd * 1e4).round() / 1e4,
            blr,
            interval,
            near_optimal: near,
            per_proxy,
            best_blr_per_llrd: per_llrd.into_values().map(|(x, b, _)| (x, b)).collect(),
            flags,
        });
    }
    out
}
