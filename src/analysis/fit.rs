//! Where accuracy against LLRD peaks, with an honest interval.
//!
//! Two fits are made of the mean accuracy per grid value: a two-sided (asymmetric) quadratic,
//! `a - b_L (x - x0)^2` left of x0 and `a - b_R (x - x0)^2` right of it with b_L, b_R >= 0,
//! whose vertex x0 is found by a fine search with the rest solved by least squares (the paper's
//! curves rise slowly and fall fast); and a local quadratic through the best grid point and its
//! neighbours. The recommendation is the two-sided fit's x0 when the fits agree and the
//! optimum is inside the grid; otherwise the best grid value, flagged. A bootstrap (over repeats
//! when there are several, else over the two-sided fit's residuals) gives the interval of the
//! recommendation: of x0, or of the best grid value when it falls back to that.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The accuracies measured at one grid value (one per repeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub x: f64,
    pub ys: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TwoSided {
    pub x0: f64,
    pub a: f64,
    pub b_left: f64,
    pub b_right: f64,
    pub rmse: f64,
}

impl TwoSided {
    pub fn eval(&self, x: f64) -> f64 {
        let d = x - self.x0;
        if d < 0.0 { self.a - self.b_left * d * d } else { self.a - self.b_right * d * d }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LocalQuadratic {
    pub x0: f64,
    /// y = c0 + c1 x + c2 x^2 over the points used.
    pub c: [f64; 3],
    pub from: f64,
    pub to: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurveFit {
    pub grid: Vec<f64>,
    pub means: Vec<f64>,
    /// Spread of the repeats (sample std; 0 with one repeat).
    pub stds: Vec<f64>,
    pub best_x: f64,
    pub best_y: f64,
    pub two_sided: Option<TwoSided>,
    pub local: Option<LocalQuadratic>,
    /// The recommended LLRD.
    pub estimate: f64,
    /// 95% bootstrap interval of the estimate: of the two-sided fit's optimum, or of the best
    /// grid value where the estimate falls back to it (flagged: at an edge, or the fits disagree).
    pub interval: (f64, f64),
    /// Grid values whose accuracy is within noise of the best.
    pub near_optimal: Vec<f64>,
    /// Accuracy tolerance used for `near_optimal`.
    pub tolerance: f64,
    /// The optimum is at (or beyond) an end of the grid.
    pub edge: bool,
    /// The two fits put the optimum more than one grid step apart.
    pub disagree: bool,
    /// The interval spans more than two grid steps.
    pub wide: bool,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Least squares for y ~ X beta with up to 3 columns; None when singular.
fn lstsq(cols: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let k = cols.len();
    let mut a = vec![vec![0.0; k + 1]; k];
    for i in 0..k {
        for j in 0..k {
            a[i][j] = cols[i].iter().zip(&cols[j]).map(|(p, q)| p * q).sum();
        }
        a[i][k] = cols[i].iter().zip(y).map(|(p, q)| p * q).sum();
    }
    // Gauss-Jordan with partial pivoting.
    for c in 0..k {
        let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, p);
        for r in 0..k {
            if r != c {
                let f = a[r][c] / a[c][c];
                for j in c..=k {
                    a[r][j] -= f * a[c][j];
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

/// Best (a, b_left, b_right) for a fixed x0 with both curvatures >= 0; returns them and the SSE.
fn two_sided_at(x0: f64, xs: &[f64], ys: &[f64]) -> (f64, f64, f64, f64) {
    let ones = vec![1.0; xs.len()];
    let left: Vec<f64> = xs.iter().map(|&x| if x < x0 { -(x - x0).powi(2) } else { 0.0 }).collect();
    let right: Vec<f64> = xs.iter().map(|&x| if x >= x0 { -(x - x0).powi(2) } else { 0.0 }).collect();
    let sse = |a: f64, bl: f64, br: f64| -> f64 {
        xs.iter().zip(ys).enumerate().map(|(i, (_, y))| (y - (a + bl * left[i] + br * right[i])).powi(2)).sum()
    };
    let mut best = (mean(ys), 0.0, 0.0, sse(mean(ys), 0.0, 0.0));
    let mut consider = |a: f64, bl: f64, br: f64| {
        if bl >= 0.0 && br >= 0.0 {
            let e = sse(a, bl, br);
            if e < best.3 - 1e-15 {
                best = (a, bl, br, e);
            }
        }
    };
    if let Some(b) = lstsq(&[ones.clone(), left.clone(), right.clone()], ys) {
        consider(b[0], b[1], b[2]);
    }
    if let Some(b) = lstsq(&[ones.clone(), left.clone()], ys) {
        consider(b[0], b[1], 0.0);
    }
    if let Some(b) = lstsq(&[ones, right.clone()], ys) {
        consider(b[0], 0.0, b[1]);
    }
    best
}

/// The two-sided quadratic with the vertex searched over the grid's span.
pub fn fit_two_sided(xs: &[f64], ys: &[f64]) -> Option<TwoSided> {
    if xs.len() < 3 {
        return None;
    }
    let (lo, hi) = (xs.iter().cloned().fold(f64::INFINITY, f64::min), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
    let steps = 1000;
    let mut best: Option<(f64, (f64, f64, f64, f64))> = None;
    for i in 0..=steps {
        let x0 = lo + (hi - lo) * i as f64 / steps as f64;
        let r = two_sided_at(x0, xs, ys);
        if best.as_ref().is_none_or(|(_, b)| r.3 < b.3 - 1e-12) {
            best = Some((x0, r));
        }
    }
    let (x0, (a, bl, br, sse)) = best?;
    let dof = xs.len().saturating_sub(4).max(1) as f64;
    Some(TwoSided { x0, a, b_left: bl, b_right: br, rmse: (sse / dof).sqrt() })
}

/// A quadratic through the best point and its neighbours (three points; at an edge, the three
/// outermost).
pub fn fit_local(xs: &[f64], ys: &[f64]) -> Option<LocalQuadratic> {
    let n = xs.len();
    if n < 3 {
        return None;
    }
    let best = (0..n).max_by(|&i, &j| ys[i].total_cmp(&ys[j]))?;
    let start = best.saturating_sub(1).min(n - 3);
    let (px, py) = (&xs[start..start + 3], &ys[start..start + 3]);
    let cols = vec![vec![1.0; 3], px.to_vec(), px.iter().map(|x| x * x).collect()];
    let c = lstsq(&cols, py)?;
    let (from, to) = (px[0], px[2]);
    let x0 = if c[2] < 0.0 { (-c[1] / (2.0 * c[2])).clamp(from, to) } else { xs[best] };
    Some(LocalQuadratic { x0, c: [c[0], c[1], c[2]], from, to })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < sorted.len() { sorted[i] * (1.0 - f) + sorted[i + 1] * f } else { sorted[i] }
}

/// Fit a curve of observations sorted or not; `seed` makes the bootstrap reproducible.
pub fn fit_curve(observations: &[Observation], seed: u64) -> CurveFit {
    let mut obs: Vec<Observation> = observations.iter().filter(|o| !o.ys.is_empty()).cloned().collect();
    obs.sort_by(|a, b| a.x.total_cmp(&b.x));
    let grid: Vec<f64> = obs.iter().map(|o| o.x).collect();
    let means: Vec<f64> = obs.iter().map(|o| mean(&o.ys)).collect();
    let stds: Vec<f64> = obs.iter().map(|o| std(&o.ys)).collect();
    let n = grid.len();
    let best_i = (0..n).max_by(|&i, &j| means[i].total_cmp(&means[j])).unwrap_or(0);
    let (best_x, best_y) = (grid.get(best_i).copied().unwrap_or(f64::NAN), means.get(best_i).copied().unwrap_or(f64::NAN));
    let two_sided = fit_two_sided(&grid, &means);
    let local = fit_local(&grid, &means);

    let mut spacing: Vec<f64> = grid.windows(2).map(|w| w[1] - w[0]).collect();
    spacing.sort_by(f64::total_cmp);
    let step = spacing.get(spacing.len() / 2).copied().unwrap_or(0.0);

    // Bootstrap the two-sided optimum and the best grid value: each resample's means, by
    // resampling the repeats when there are several, else the fit's residuals.
    let repeats = obs.iter().map(|o| o.ys.len()).min().unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut x0s, mut bests) = (Vec::new(), Vec::new());
    let residuals: Option<Vec<f64>> = two_sided.map(|ts| grid.iter().zip(&means).map(|(&x, &y)| y - ts.eval(x)).collect());
    if n > 0 && (repeats > 1 || two_sided.is_some()) {
        for _ in 0..400 {
            let ys: Vec<f64> = match (&residuals, two_sided) {
                (Some(r), Some(ts)) if repeats <= 1 => grid.iter().map(|&x| ts.eval(x) + r[rng.random_range(0..n)]).collect(),
                _ => obs.iter().map(|o| mean(&(0..o.ys.len()).map(|_| o.ys[rng.random_range(0..o.ys.len())]).collect::<Vec<_>>())).collect(),
            };
            if let Some(f) = fit_two_sided(&grid, &ys) {
                x0s.push(f.x0);
            }
            bests.push(grid[(0..n).max_by(|&i, &j| ys[i].total_cmp(&ys[j])).unwrap_or(0)]);
        }
    }

    // Noise: the repeats' standard error, or the fit's residual spread, whichever is larger.
    let se = if repeats > 1 { mean(&stds) / (repeats as f64).sqrt() } else { 0.0 };
    let tolerance = se.max(two_sided.map_or(0.0, |t| t.rmse));
    let near_optimal: Vec<f64> = grid.iter().zip(&means).filter(|(_, y)| **y >= best_y - tolerance).map(|(x, _)| *x).collect();

    let (lo, hi) = (grid.first().copied().unwrap_or(0.0), grid.last().copied().unwrap_or(0.0));
    let at_edge = |x: f64| n > 0 && ((x - lo).abs() < 1e-9 || (x - hi).abs() < 1e-9);
    let edge = n < 3 || at_edge(best_x) || two_sided.is_some_and(|t| at_edge(t.x0));
    let disagree = match (two_sided, local) {
        (Some(t), Some(l)) => (t.x0 - l.x0).abs() > step + 1e-12,
        _ => true,
    };
    // The interval is the estimate's: of the two-sided optimum, or of the best grid value when
    // the recommendation falls back to it.
    let (estimate, mut spread) = match two_sided {
        Some(t) if !edge && !disagree => (t.x0, x0s),
        _ => (best_x, bests),
    };
    spread.sort_by(f64::total_cmp);
    let interval = if spread.is_empty() { (estimate, estimate) } else { (percentile(&spread, 0.025), percentile(&spread, 0.975)) };
    let wide = interval.1 - interval.0 > 2.0 * step + 1e-12;
    CurveFit { grid, means, stds, best_x, best_y, two_sided, local, estimate, interval, near_optimal, tolerance, edge, disagree, wide }
}

/// Grid values to add when a fit is at an edge (extend by two steps, inside (0, 1]) or its
/// interval is wide (midpoints inside the interval).
pub fn refinement(fit: &CurveFit) -> Vec<f64> {
    let mut spacing: Vec<f64> = fit.grid.windows(2).map(|w| w[1] - w[0]).collect();
    spacing.sort_by(f64::total_cmp);
    let step = spacing.get(spacing.len() / 2).copied().unwrap_or(0.05);
    let round = |x: f64| (x * 1e4).round() / 1e4;
    let mut out = Vec::new();
    if fit.edge {
        let (lo, hi) = (fit.grid[0], *fit.grid.last().unwrap());
        let toward = if (fit.best_x - hi).abs() < 1e-9 { 1.0 } else { -1.0 };
        let base = if toward > 0.0 { hi } else { lo };
        for k in 1..=2 {
            let x = round(base + toward * step * k as f64);
            if x > 0.0 && x <= 1.0 {
                out.push(x);
            }
        }
    } else if fit.wide {
        for w in fit.grid.windows(2) {
            let mid = round((w[0] + w[1]) / 2.0);
            if mid >= fit.interval.0 && mid <= fit.interval.1 {
                out.push(mid);
            }
        }
    }
    out.retain(|x| !fit.grid.iter().any(|g| (g - x).abs() < 1e-9));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [f64; 8] = [0.65, 0.70, 0.75, 0.80, 0.825, 0.85, 0.875, 0.90];

    fn observe(f: impl Fn(f64) -> f64, noise: f64, repeats: usize, seed: u64) -> Vec<Observation> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        GRID.iter()
            .map(|&x| Observation {
                x,
                ys: (0..repeats)
                    .map(|_| {
                        // Sum of uniforms: close enough to Gaussian noise for these tests.
                        let u: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                        f(x) + noise * u
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn symmetric_peak_is_found_with_a_tight_interval() {
        let fit = fit_curve(&observe(|x| 80.0 - 400.0 * (x - 0.79).powi(2), 0.0, 1, 0), 1);
        assert!((fit.estimate - 0.79).abs() < 0.002, "{fit:?}");
        assert!(fit.interval.0 <= 0.79 + 1e-3 && fit.interval.1 >= 0.79 - 1e-3, "{:?}", fit.interval);
        assert!(!fit.edge && !fit.disagree && !fit.wide);
    }

    #[test]
    fn asymmetric_peak_beats_a_plain_quadratic() {
        // Rises slowly, falls fast, as the paper's curves do.
        let truth = 0.84;
        let f = |x: f64| if x < truth { 83.0 - 150.0 * (x - truth).powi(2) } else { 83.0 - 3000.0 * (x - truth).powi(2) };
        let fit = fit_curve(&observe(f, 0.0, 1, 0), 1);
        assert!((fit.estimate - truth).abs() < 0.003, "two-sided estimate {}", fit.estimate);
        // A single quadratic over the whole grid is pulled away from the peak.
        let xs: Vec<f64> = GRID.to_vec();
        let ys: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
        let q = lstsq(&[vec![1.0; 8], xs.clone(), xs.iter().map(|x| x * x).collect()], &ys).unwrap();
        let plain = -q[1] / (2.0 * q[2]);
        assert!((plain - truth).abs() > 2.0 * (fit.estimate - truth).abs(), "plain {plain} vs two-sided {}", fit.estimate);
    }

    #[test]
    fn noisy_repeats_give_an_interval_covering_the_truth() {
        let truth = 0.81;
        let f = |x: f64| 80.0 - 300.0 * (x - truth).powi(2);
        let fit = fit_curve(&observe(f, 0.15, 3, 7), 3);
        assert!(fit.interval.0 <= truth && truth <= fit.interval.1, "{:?}", fit.interval);
        assert!((fit.estimate - truth).abs() < 0.03, "{}", fit.estimate);
        assert!(fit.stds.iter().all(|s| *s > 0.0));
        assert!(fit.near_optimal.contains(&0.80) || fit.near_optimal.contains(&0.825), "{:?}", fit.near_optimal);
    }

    #[test]
    fn optimum_at_the_edge_is_flagged_and_refined_outward() {
        let fit = fit_curve(&observe(|x| 70.0 + 10.0 * x, 0.0, 1, 0), 1);
        assert!(fit.edge);
        assert_eq!(fit.estimate, 0.90);
        assert_eq!(refinement(&fit), vec![0.925, 0.95]);
        let fit = fit_curve(&observe(|x| 70.0 - 10.0 * x, 0.0, 1, 0), 1);
        assert!(fit.edge);
        assert_eq!(refinement(&fit), vec![0.625, 0.6]);
    }

    #[test]
    fn two_peaks_make_the_fits_disagree() {
        let f = |x: f64| if (x - 0.70).abs() < 1e-9 { 80.0 } else if (x - 0.875).abs() < 1e-9 { 79.9 } else { 75.0 };
        let fit = fit_curve(&observe(f, 0.0, 1, 0), 1);
        assert!(fit.disagree || fit.wide, "{fit:?}");
        assert_eq!(fit.estimate, fit.best_x);
    }

    /// The interval is that of the estimate, flagged or not: when the recommendation falls back
    /// to the best grid value, the interval is the bootstrap's of the best grid value, not of
    /// the two-sided fit's optimum, which the report would otherwise draw away from it.
    #[test]
    fn the_interval_holds_the_estimate_whether_flagged_or_not() {
        let two_peaks = |x: f64| if (x - 0.70).abs() < 1e-9 { 80.0 } else if (x - 0.875).abs() < 1e-9 { 79.9 } else { 75.0 };
        let curves: [(&str, &dyn Fn(f64) -> f64, f64, usize); 6] = [
            ("rising", &|x| 70.0 + 10.0 * x, 0.3, 1),
            ("falling", &|x| 70.0 - 10.0 * x, 0.3, 3),
            ("two peaks", &two_peaks, 0.2, 1),
            ("two peaks, repeats", &two_peaks, 0.5, 3),
            ("flat", &|_| 75.0, 0.4, 3),
            ("peak", &|x| 80.0 - 300.0 * (x - 0.81).powi(2), 0.3, 1),
        ];
        let mut flagged = 0;
        for (name, f, noise, repeats) in curves {
            for seed in [0, 3, 6] {
                let fit = fit_curve(&observe(f, noise, repeats, seed), seed);
                let (lo, hi) = fit.interval;
                assert!(lo - 1e-9 <= fit.estimate && fit.estimate <= hi + 1e-9, "{name}, seed {seed}: {} outside [{lo}, {hi}]\n{fit:?}", fit.estimate);
                flagged += usize::from(fit.estimate == fit.best_x && (fit.edge || fit.disagree));
            }
        }
        assert!(flagged >= 9, "the cases must exercise the fallback: {flagged} of 18 flagged");
    }
}
