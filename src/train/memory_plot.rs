//! `memory.png`: the memory ledger's categories over the first steps of a run, in MiB (plotters,
//! behind the `plots` feature).

use std::path::Path;

use plotters::prelude::*;

use super::memory::StepRow;
use super::plot::{draw_legend, legend_line, register_font, save_png};
use crate::error::Result;

/// Draw `dir/memory.png` from `steps` (drawn beside it, then renamed over it).
pub(super) fn draw(dir: &Path, steps: &[StepRow]) -> Result<()> {
    save_png(dir, "memory.png", |tmp| plot(tmp, steps))
}

fn plot(path: &Path, steps: &[StepRow]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    register_font();
    let area = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    area.fill(&WHITE)?;
    const MIB: f64 = 1024.0 * 1024.0;
    let last = steps.last().map_or(2, |r| r.step.max(2)) as f64;
    let top = steps.iter().map(|r| r.bytes.peak_total).max().unwrap_or(1) as f64 / MIB;
    let mut chart = ChartBuilder::on(&area)
        .caption("kiln memory ledger (peaks per step)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1f64..last, 0f64..(top * 1.1).max(1e-3))?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("MiB")
        .label_style(("sans-serif", 14))
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (k, color) in colors.iter().enumerate() {
        let key = steps.first().map_or("", |r| r.bytes.entries()[k].0);
        let pts: Vec<(f64, f64)> = steps
            .iter()
            .map(|r| (r.step as f64, r.bytes.entries()[k].1 as f64 / MIB))
            .collect();
        let style = color.stroke_width(if k == 5 { 3 } else { 2 });
        chart
            .draw_series(LineSeries::new(pts, style))?
            .label(key)
            .legend(legend_line(style));
    }
    draw_legend(
        chart.configure_series_labels(),
        SeriesLabelPosition::MiddleRight,
    )?;
    area.present()?;
    Ok(())
}
