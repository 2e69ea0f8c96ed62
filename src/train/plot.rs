//! The run plots (plotters, behind the `plots` feature): `curves.png` (loss curves),
//! `diagnostics.png` (gradient norms per tensor), `lr_find.png` (the range test).

use std::path::Path;

use plotters::prelude::*;

use super::log::EpochRecord;

/// Draw `dir/name` (a `.png`) with `draw`: drawn beside it and renamed over it, like every other
/// file of the run (the temporary name keeps `.png`: the plotting backend picks the format by it).
pub fn save_png(
    dir: &Path,
    name: &str,
    draw: impl FnOnce(&Path) -> std::result::Result<(), Box<dyn std::error::Error>>,
) -> crate::error::Result<()> {
    let (path, tmp) = (dir.join(name), dir.join(format!(".{name}.tmp.png")));
    draw(&tmp)
        .and_then(|()| Ok(std::fs::rename(&tmp, &path)?))
        .map_err(|e| crate::error::Error::Io {
            path: path.display().to_string(),
            msg: format!("could not draw the plot: {e}"),
        })
}

/// Register the embedded DejaVu Sans as plotters' "sans-serif" (once per process).
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans (Bitstream Vera licence, assets/fonts/DejaVu-LICENSE.txt).
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        );
    });
}

/// Draw a chart's series legend (`chart.configure_series_labels()`) at `pos` in the style of
/// kiln's plots: on translucent white, framed, 14 px sans-serif.
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    mut labels: plotters::chart::SeriesLabelStyle<'a, '_, DB, CT>,
    pos: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    labels
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(pos)
        .draw()
}

/// The legend mark of a line series drawn in `style`: a 20-pixel stroke.
pub fn legend_line(style: impl Into<ShapeStyle>) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    let style = style.into();
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

pub(super) fn draw_curves(
    path: &Path,
    records: &[EpochRecord],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    if records.is_empty() {
        root.present()?;
        return Ok(());
    }
    let n = records.len();
    let losses = records
        .iter()
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite());
    let ymax = losses.fold(0.0f64, f64::max).max(1e-6) * 1.05;
    let has_acc = records.iter().any(|r| r.val_accuracy.is_some());
    let mut chart = ChartBuilder::on(&root)
        .caption("kiln training curves", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(if has_acc { 60 } else { 0 })
        .build_cartesian_2d(1f64..(n.max(2) as f64), 0f64..ymax)?
        .set_secondary_coord(1f64..(n.max(2) as f64), 0f64..1.0f64);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .label_style(("sans-serif", 14))
        .draw()?;
    if has_acc {
        chart
            .configure_secondary_axes()
            .y_desc("accuracy")
            .label_style(("sans-serif", 14))
            .draw()?;
    }
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    // (label, points, colour, width, on the accuracy axis); a line with no points (no validation
    // split) is left out. Diagnostics add the train accuracy (dashed look: thinner, darker green).
    let mut lines = vec![
        ("train loss", pts(&|r| Some(r.train_loss)), BLUE, 2, false),
        ("validation loss", pts(&|r| r.val_loss), RED, 2, false),
    ];
    if has_acc {
        let (val, train) = (pts(&|r| r.val_accuracy), pts(&|r| r.train_accuracy));
        lines.extend([
            ("validation accuracy", val, GREEN, 2, true),
            ("train accuracy", train, RGBColor(0, 100, 0), 1, true),
        ]);
    }
    for (label, line, colour, width, right) in lines.into_iter().filter(|l| !l.1.is_empty()) {
        let style = colour.stroke_width(width);
        let series = LineSeries::new(line, style);
        let drawn = if right {
            chart.draw_secondary_series(series)?
        } else {
            chart.draw_series(series)?
        };
        drawn.label(label).legend(legend_line(style));
    }
    draw_legend(
        chart.configure_series_labels(),
        SeriesLabelPosition::UpperRight,
    )?;
    root.present()?;
    Ok(())
}

/// `diagnostics.png`: the gradient norm of every parameter tensor over the measured steps
/// (log y axis), from [`super::diagnostics`] records.
pub fn draw_diagnostics(
    path: &Path,
    records: &[super::diagnostics::StepRecord],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let names: Vec<&str> = records
        .first()
        .map(|r| r.layers.iter().map(|l| l.name.as_str()).collect())
        .unwrap_or_default();
    let series: Vec<Vec<(f64, f64)>> = (0..names.len())
        .map(|k| {
            records
                .iter()
                .filter_map(|r| {
                    let g = r.layers.get(k)?.grad_norm?;
                    (g > 0.0).then_some((r.step as f64, g))
                })
                .collect()
        })
        .collect();
    let x_max = records.last().map_or(2.0, |r| r.step as f64).max(2.0);
    let title = "gradient norm per tensor";
    let lines = names.iter().zip(series).map(|(n, s)| (n.to_string(), s));
    draw_log_lines(
        path,
        title,
        ("step", 1.0, x_max, false),
        lines.collect(),
        None,
    )
}

/// `lr_find.png`: the smoothed loss against the learning rate (log x), the suggestion marked.
pub fn draw_lr_find(
    path: &Path,
    points: &[super::lr_find::Point],
    suggestion: Option<f64>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.smoothed.is_finite() && p.lr > 0.0)
        .map(|p| (p.lr, p.smoothed))
        .collect();
    let lo = pts.first().map_or(1e-7, |p| p.0);
    let hi = pts.last().map_or(10.0, |p| p.0).max(lo * 10.0);
    let title = "learning-rate range test (smoothed loss)";
    let lines = vec![("smoothed loss".to_string(), pts)];
    draw_log_lines(
        path,
        title,
        ("learning rate", lo, hi, true),
        lines,
        suggestion,
    )
}

/// Lines on a chart with a log x axis (`log_x`) or a log y axis (otherwise); `mark` draws a
/// vertical line at that x.
fn draw_log_lines(
    path: &Path,
    title: &str,
    (x_desc, x_lo, x_hi, log_x): (&str, f64, f64, bool),
    lines: Vec<(String, Vec<(f64, f64)>)>,
    mark: Option<f64>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    register_font();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let ys = lines.iter().flat_map(|(_, s)| s.iter().map(|p| p.1));
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let (y_lo, y_hi) = if y_lo.is_finite() {
        (y_lo, y_hi.max(y_lo * 1.01))
    } else {
        (1e-3, 1.0)
    };
    let mut c = ChartBuilder::on(&root);
    c.caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    let colour = |k: usize| Palette99::pick(k + 1).stroke_width(2);
    let tick = |v: &f64| {
        if *v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
            format!("{v:.0e}")
        } else {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    macro_rules! draw {
        ($chart:expr, $y_desc:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc($y_desc)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style(("sans-serif", 14))
                .draw()?;
            for (k, (name, pts)) in lines.into_iter().enumerate() {
                chart
                    .draw_series(LineSeries::new(pts, colour(k)))?
                    .label(name)
                    .legend(legend_line(colour(k)));
            }
            if let Some(m) = mark {
                chart
                    .draw_series(LineSeries::new(
                        vec![(m, y_lo), (m, y_hi)],
                        RED.stroke_width(2),
                    ))?
                    .label(format!("suggested lr {m:.1e}"))
                    .legend(legend_line(RED));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()?;
        }};
    }
    if log_x {
        draw!(
            c.build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)?,
            "loss"
        );
    } else {
        draw!(
            c.build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())?,
            "gradient norm"
        );
    }
    root.present()?;
    Ok(())
}
