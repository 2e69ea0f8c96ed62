//! `curves.png`: the loss curves of a run (plotters, behind the `plots` feature).

use std::path::Path;

use plotters::prelude::*;

use super::log::EpochRecord;

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
            .y_desc("validation accuracy")
            .label_style(("sans-serif", 14))
            .draw()?;
    }
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(
            pts(&|r| Some(r.train_loss)),
            BLUE.stroke_width(2),
        ))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    let val = pts(&|r| r.val_loss);
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val, RED.stroke_width(2)))?
            .label("validation loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    if has_acc {
        chart
            .draw_secondary_series(LineSeries::new(
                pts(&|r| r.val_accuracy),
                GREEN.stroke_width(2),
            ))?
            .label("validation accuracy")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    }
    draw_legend(
        chart.configure_series_labels(),
        SeriesLabelPosition::UpperRight,
    )?;
    root.present()?;
    Ok(())
}
