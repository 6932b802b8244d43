//! The few distributions the augmentations draw from, written out so that every draw comes
//! from the caller's rng and a seed reproduces a batch exactly.

use rand::Rng;

/// Python's `random.uniform(a, b)`: `a + (b - a) * U[0, 1)`; also fine when `a == b`.
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

/// N(0, 1) by Box-Muller (one value per call keeps the stream simple to reason about).
pub(crate) fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln stays finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Fills `out` with N(0, 1) draws by Marsaglia's polar method: two values per accepted point,
/// one logarithm and no trigonometry per pair (random erasing draws thousands per image).
pub(crate) fn fill_standard_normal<R: Rng + ?Sized>(rng: &mut R, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let (u, v, s) = loop {
            let u = 2.0 * rng.random::<f64>() - 1.0;
            let v = 2.0 * rng.random::<f64>() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                break (u, v, s);
            }
        };
        let f = (-2.0 * s.ln() / s).sqrt();
        pair[0] = (u * f) as f32;
        if let [_, second] = pair {
            *second = (v * f) as f32;
        }
    }
}

/// Gamma(shape, 1): Marsaglia-Tsang, boosted for shape < 1.
pub(crate) fn gamma<R: Rng + ?Sized>(rng: &mut R, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.random::<f64>();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let (x, v) = loop {
            let x = standard_normal(rng);
            let v = 1.0 + c * x;
            if v > 0.0 {
                break (x, v * v * v);
            }
        };
        let u = rng.random::<f64>();
        if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Beta(a, b) as numpy draws it: Johnk's algorithm when both shapes are <= 1 (it stays exact
/// for the tiny alphas where two Gamma draws would underflow to 0/0), two Gammas otherwise.
pub(crate) fn beta<R: Rng + ?Sized>(rng: &mut R, a: f64, b: f64) -> f64 {
    if a <= 1.0 && b <= 1.0 {
        loop {
            let u = rng.random::<f64>();
            let v = rng.random::<f64>();
            let x = u.powf(1.0 / a);
            let y = v.powf(1.0 / b);
            let sum = x + y;
            if sum <= 1.0 && u + v > 0.0 {
                if sum > 0.0 {
                    return x / sum;
                }
                let (lx, ly) = (u.ln() / a, v.ln() / b);
                let m = lx.max(ly);
                let (lx, ly) = (lx - m, ly - m);
                return (lx - (lx.exp() + ly.exp()).ln()).exp();
            }
        }
    }
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    x / (x + y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn moments(n: usize, mut draw: impl FnMut() -> f64) -> (f64, f64) {
        let xs: Vec<f64> = (0..n).map(|_| draw()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        (mean, var)
    }

    #[test]
    fn normal_gamma_and_beta_have_their_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (m, v) = moments(40_000, || standard_normal(&mut rng));
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "normal {m} {v}");
        let mut filled = vec![0f32; 40_001];
        fill_standard_normal(&mut rng, &mut filled);
        let mut it = filled.iter();
        let (m, v) = moments(filled.len(), || f64::from(*it.next().unwrap()));
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "filled normal {m} {v}");
        // The pair's two values are uncorrelated.
        let corr = filled.chunks_exact(2).map(|p| f64::from(p[0]) * f64::from(p[1])).sum::<f64>() / 20_000.0;
        assert!(corr.abs() < 0.03, "pair correlation {corr}");
        for shape in [0.4, 1.0, 3.5] {
            let (m, v) = moments(40_000, || gamma(&mut rng, shape));
            assert!((m - shape).abs() < 0.03 * shape.max(1.0), "gamma({shape}) mean {m}");
            assert!((v - shape).abs() < 0.08 * shape.max(1.0), "gamma({shape}) var {v}");
        }
        // Beta(a, b): mean a/(a+b), variance ab/((a+b)^2 (a+b+1)).
        for (a, b) in [(0.8, 0.8), (1.0, 1.0), (2.0, 5.0), (0.3, 0.9)] {
            let (m, v) = moments(40_000, || beta(&mut rng, a, b));
            let (em, ev) = (a / (a + b), a * b / ((a + b) * (a + b) * (a + b + 1.0)));
            assert!((m - em).abs() < 0.01 && (v - ev).abs() < 0.01, "beta({a},{b}) {m} {v} vs {em} {ev}");
        }
        // Tiny alphas put all the mass at 0 and 1, half each, and never give NaN.
        let xs: Vec<f64> = (0..2000).map(|_| beta(&mut rng, 1e-8, 1e-8)).collect();
        assert!(xs.iter().all(|x| *x == 0.0 || *x == 1.0 || (x.is_finite() && (*x < 1e-6 || *x > 1.0 - 1e-6))));
        let ones = xs.iter().filter(|x| **x > 0.5).count();
        assert!((800..1200).contains(&ones), "{ones}");
    }
}
