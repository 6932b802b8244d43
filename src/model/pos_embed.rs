//! MAE's fixed 2-D sine-cosine position embedding (util/pos_embed.py).

/// `[(1 if cls) + grid*grid, dim]`, row-major. For token 1 + i*grid + j (i row, j column), with
/// dim/4 frequencies w_m = 10000^(-m/(dim/4)): [sin(j w), cos(j w), sin(i w), cos(i w)] — the
/// first half encodes the column, as MAE's meshgrid order does. The cls row is zeros. Computed
/// in f64, returned as f32.
pub fn sincos_2d(dim: usize, grid: usize, cls: bool) -> Vec<f32> {
    assert!(dim % 4 == 0, "the 2-D sin-cos embedding needs dim divisible by 4");
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|m| 1.0 / 10000f64.powf(m as f64 / quarter as f64)).collect();
    let mut out = Vec::with_capacity((grid * grid + usize::from(cls)) * dim);
    if cls {
        out.extend(std::iter::repeat_n(0.0f32, dim));
    }
    for i in 0..grid {
        for j in 0..grid {
            for (pos, _) in [(j as f64, 0), (i as f64, 1)] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_mae() {
        let e = sincos_2d(8, 3, true);
        assert_eq!(e.len(), 10 * 8);
        assert!(e[..8].iter().all(|&v| v == 0.0));
        // Token for row i=1, column j=2 is 1 + 1*3 + 2 = 6; first frequency w0 = 1.
        let t = &e[6 * 8..7 * 8];
        assert!((t[0] - 2f32.sin()).abs() < 1e-6); // sin(j w0)
        assert!((t[2] - 2f32.cos()).abs() < 1e-6); // cos(j w0)
        assert!((t[4] - 1f32.sin()).abs() < 1e-6); // sin(i w0)
        assert!((t[6] - 1f32.cos()).abs() < 1e-6); // cos(i w0)
        // Second frequency: 10000^(-1/2) = 0.01.
        assert!((t[1] - (2.0f64 * 0.01).sin() as f32).abs() < 1e-7);
    }
}
