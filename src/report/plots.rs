//! The paper's figures with plotters, as PNG (and SVG for the LLRD curve).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::recommend::{Curve, Recommendation};

const PALETTE: [RGBColor; 6] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(148, 103, 189), RGBColor(23, 190, 207)];

static FONT: Once = Once::new();

/// Bitmaps need a font; the SVG backend writes text as text.
pub(crate) fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../../assets/DejaVuSans.ttf"));
    });
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn bounds(curves: &[&Curve]) -> ((f64, f64), (f64, f64)) {
    let xs = curves.iter().flat_map(|c| c.fit.grid.iter().copied().chain(c.diverged.iter().copied()));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let ys = curves.iter().flat_map(|c| c.fit.means.iter().zip(&c.fit.stds).flat_map(|(m, s)| [m - s, m + s]));
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let px = ((x1 - x0) * 0.06).max(0.01);
    let py = ((y1 - y0) * 0.12).max(0.5);
    ((x0 - px, x1 + px), (y0 - py, y1 + py))
}

/// Figure 3: accuracy against LLRD, one line per proxy and setup, with the two-sided fit, the
/// estimate and its interval.
fn draw_llrd<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, curves: &[&Curve], title: &str) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let ((x0, x1), (y0, y1)) = bounds(curves);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("layer-wise LR decay").y_desc("top-1 (%)").light_line_style(WHITE.mix(0.0)).draw().map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let f = &c.fit;
        // The fit, where its peak is the estimate (a rejected fit would mislead).
        if let Some(ts) = f.two_sided.filter(|_| f.method == "fitted peak") {
            let (lo, hi) = (f.grid[0], *f.grid.last().unwrap());
            let pts: Vec<(f64, f64)> = (0..=200).map(|k| lo + (hi - lo) * k as f64 / 200.0).map(|x| (x, ts.eval(x))).collect();
            chart.draw_series(LineSeries::new(pts, color.stroke_width(1))).map_err(err)?;
        }
        let label = if c.blr > 0.0 { format!("{} / {} (blr {})", c.proxy, c.setup, c.blr) } else { format!("{} / {}", c.proxy, c.setup) };
        chart
            .draw_series(LineSeries::new(f.grid.iter().copied().zip(f.means.iter().copied()), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(f.grid.iter().zip(&f.means).map(|(&x, &y)| Circle::new((x, y), 4, color.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                f.grid.iter().zip(f.means.iter().zip(&f.stds)).filter(|(_, (_, s))| **s > 0.0).map(|(&x, (&m, &s))| {
                    ErrorBar::new_vertical(x, m - s, m, m + s, color.stroke_width(1), 8)
                }),
            )
            .map_err(err)?;
        chart.draw_series(c.diverged.iter().map(|&x| Cross::new((x, y0 + (y1 - y0) * 0.03), 6, color.stroke_width(2)))).map_err(err)?;
        // The recommended value.
        let peak = match f.two_sided {
            Some(t) if f.method == "fitted peak" => t.eval(f.estimate),
            _ => f.best_y,
        };
        // Its 95% interval: a bar through it (bands of several curves would cover the plot).
        chart
            .draw_series(std::iter::once(ErrorBar::new_horizontal(peak, f.interval.0, f.estimate, f.interval.1, color.stroke_width(2), 8)))
            .map_err(err)?;
        chart.draw_series(std::iter::once(TriangleMarker::new((f.estimate, peak), 9, BLACK.filled()))).map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(vec![(f.estimate, y0), (f.estimate, y1)], 6, 4, color.stroke_width(1)))
            .map_err(err)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK.mix(0.4)).position(SeriesLabelPosition::LowerLeft).draw().map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

pub fn llrd_curve(curves: &[Curve], dir: &Path, title: &str) -> Result<(), String> {
    register_font();
    let refs: Vec<&Curve> = curves.iter().collect();
    if refs.is_empty() {
        return Ok(());
    }
    let png = dir.join("llrd_curve.png");
    draw_llrd(BitMapBackend::new(&png, (900, 600)).into_drawing_area(), &refs, title)?;
    let svg = dir.join("llrd_curve.svg");
    draw_llrd(SVGBackend::new(&svg, (900, 600)).into_drawing_area(), &refs, title)?;
    Ok(())
}

/// Figure 5: accuracy against LLRD, one line per learning rate (per proxy and setup).
pub fn lr_llrd(curves: &[Curve], dir: &Path) -> Result<(), String> {
    register_font();
    let png = dir.join("lr_llrd.png");
    let refs: Vec<&Curve> = curves.iter().collect();
    draw_llrd(BitMapBackend::new(&png, (900, 600)).into_drawing_area(), &refs, "top-1 against LLRD, one line per base LR")
}

/// Figure 4: the optimal LLRD of each pre-training setup, with its interval.
pub fn optimum_vs_pretrain(recs: &[Recommendation], dir: &Path) -> Result<(), String> {
    register_font();
    let png = dir.join("optimum_vs_pretrain.png");
    let root = BitMapBackend::new(&png, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let lo = recs.iter().map(|r| r.interval.0).fold(f64::INFINITY, f64::min) - 0.02;
    let hi = recs.iter().map(|r| r.interval.1).fold(f64::NEG_INFINITY, f64::max) + 0.02;
    let n = recs.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("optimal LLRD per pre-training setup", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)
        .map_err(err)?;
    let names: Vec<String> = recs.iter().map(|r| r.setup.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| names.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("optimal LLRD")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(recs.iter().enumerate().map(|(i, r)| ErrorBar::new_vertical(i as f64, r.interval.0, r.llrd, r.interval.1, PALETTE[0].stroke_width(2), 12)))
        .map_err(err)?;
    chart.draw_series(recs.iter().enumerate().map(|(i, r)| Circle::new((i as f64, r.llrd), 6, PALETTE[1].filled()))).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A pre-training's loss: the reconstruction loss along training (about 100 points) with each
/// epoch's mean marked, and SupMAE's weighted classification loss per epoch when there is one.
pub fn pretrain_loss(r: &crate::train::pretrain::PretrainResult, png: &Path) -> Result<(), String> {
    register_font();
    let epochs: Vec<(f64, f64)> = r.epoch_loss.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect();
    let cls: Vec<(f64, f64)> = r.epoch_cls_loss.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect();
    let curve: Vec<(f64, f64)> = r.loss_curve.iter().map(|p| (p[0], p[1])).collect();
    let ys = epochs.iter().chain(&cls).chain(&curve).map(|p| p.1).filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return Err("no finite loss to draw".into());
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let x1 = epochs.len().max(1) as f64;
    let root = BitMapBackend::new(png, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("pre-training loss", ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x1, (lo - pad).max(0.0)..hi + pad)
        .map_err(err)?;
    chart.configure_mesh().x_desc("epoch").y_desc("loss").x_label_formatter(&|x| format!("{x:.1}")).draw().map_err(err)?;
    if !curve.is_empty() {
        chart
            .draw_series(LineSeries::new(curve, PALETTE[0].stroke_width(2)))
            .map_err(err)?
            .label("reconstruction (removed patches)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], PALETTE[0].stroke_width(2)));
    }
    // Each epoch's mean, at the epoch's end.
    chart
        .draw_series(epochs.iter().map(|&p| Circle::new(p, 4, PALETTE[3].filled())))
        .map_err(err)?
        .label("epoch mean")
        .legend(|(x, y)| Circle::new((x + 9, y), 4, PALETTE[3].filled()));
    if !cls.is_empty() {
        chart
            .draw_series(LineSeries::new(cls, PALETTE[1].stroke_width(2)))
            .map_err(err)?
            .label("SupMAE 0.01 x CE(logits / 10), epoch mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], PALETTE[1].stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    root.present().map_err(|e| format!("{}: {e}", png.display()))?;
    Ok(())
}

/// The paper's Figure 6: top-1 against the fraction of data pre-trained on (equal compute),
/// one line per series (the full-dataset run, the best search trial of each proxy).
pub fn sample_efficiency(series: &[(String, Vec<(f64, f64)>)], png: &Path) -> Result<(), String> {
    register_font();
    let root = BitMapBackend::new(png, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let (y0, y1) = pts.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, y)| (a.min(y), b.max(y)));
    let x1 = pts.fold(0.0f64, |m, &(x, _)| m.max(x));
    let pad = ((y1 - y0) * 0.15).max(0.5);
    let mut chart = ChartBuilder::on(&root)
        .caption("sample efficiency: top-1 against the data pre-trained on (equal compute)", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0f64..(x1 * 1.05).max(0.1), (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart.configure_mesh().x_desc("fraction of the training set used for pre-training").y_desc("top-1 (%)").draw().map_err(err)?;
    for (i, (name, p)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(p.clone(), colour.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart.draw_series(p.iter().map(|&q| Circle::new(q, 4, colour.filled()))).map_err(err)?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
    root.present().map_err(|e| format!("{}: {e}", png.display()))?;
    Ok(())
}
