//! `kiln bench --plot`: a roofline, log-log, arithmetic intensity (FLOP/byte) against GFLOP/s.
//!
//! The roof is `min(compute ceiling, intensity * memory ceiling)` from the two ceilings measured
//! in the same run; every row with both FLOPs and bytes is a point under it, and the fastest
//! row of each baseline group (and every row without one) is labelled.

use plotters::prelude::*;

use super::Row;
use crate::train::plot::{draw_legend, legend_line, register_font};

/// The plot's size in pixels.
const SIZE: (u32, u32) = (1200, 800);

/// The roofline of `rows` under the measured `(GFLOP/s, GB/s)` ceilings, as PNG bytes (the
/// caller writes them with [`crate::io::write_output`]).
pub(super) fn png(
    rows: &[Row],
    ceilings: (f64, f64),
    adapter: &str,
) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    render(&mut rgb, rows, ceilings, adapter)?;
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        SIZE.0,
        SIZE.1,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(png)
}

/// Draw the roofline into an RGB buffer of [`SIZE`].
fn render(
    rgb: &mut [u8],
    rows: &[Row],
    (peak, bw): (f64, f64),
    adapter: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    register_font();
    // Only the fastest row of each baseline group is labelled (the others are hollow dots), so
    // the labels stay readable with a whole ladder on the plot.
    let best_of = |group: &Option<String>| {
        rows.iter()
            .filter(|r| r.group.is_some() && r.group == *group)
            .filter_map(|r| r.gflops)
            .fold(f64::MIN, f64::max)
    };
    let points: Vec<(f64, f64, String, bool)> = rows
        .iter()
        .filter(|r| r.op != "ceiling" && r.op != "dispatch")
        .filter_map(|r| {
            let (i, g) = (r.intensity?, r.gflops?);
            let label = r.group.is_none() || g >= best_of(&r.group);
            (i > 0.0 && g > 0.0 && i.is_finite() && g.is_finite())
                .then(|| (i, g, format!("{} {} {}", r.op, r.shape, r.variant), label))
        })
        .collect();
    let ok = |v: f64| v.is_finite() && v > 0.0;
    if !ok(peak) || !ok(bw) {
        return Err("the ceilings were not measured".into());
    }
    let ridge = peak / bw;
    let xs = points.iter().map(|p| p.0).chain([ridge]);
    let (xmin, xmax) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (xmin, xmax) = (xmin / 4.0, xmax * 4.0);
    let ys = points.iter().map(|p| p.1).chain([peak, bw * xmin]);
    let (ymin, ymax) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (ymin, ymax) = (ymin / 4.0, ymax * 3.0);

    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("kiln roofline: {adapter}"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("arithmetic intensity (FLOP / byte)")
        .y_desc("GFLOP/s")
        .label_style(("sans-serif", 14))
        .draw()?;
    let roof = vec![(xmin, bw * xmin), (ridge, peak), (xmax, peak)];
    chart
        .draw_series(LineSeries::new(roof, BLUE.stroke_width(2)))?
        .label(format!(
            "measured roof: copy {bw:.1} GB/s, fma {peak:.1} GFLOP/s"
        ))
        .legend(legend_line(BLUE.stroke_width(2)));
    let colour = |op: &str| match op {
        "matmul" => RED,
        op if op.starts_with("conv2d") => GREEN,
        "attention" => MAGENTA,
        _ => BLACK,
    };
    for (x, y, label, named) in &points {
        let c = colour(label.split(' ').next().unwrap_or(""));
        if !named {
            chart.draw_series(std::iter::once(Circle::new((*x, *y), 3, c.stroke_width(1))))?;
            continue;
        }
        chart.draw_series(std::iter::once(Circle::new((*x, *y), 4, c.filled())))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*x * 1.08, *y),
            ("sans-serif", 11).into_font().color(&c),
        )))?;
    }
    draw_legend(
        chart.configure_series_labels(),
        SeriesLabelPosition::LowerRight,
    )?;
    root.present()?;
    Ok(())
}
