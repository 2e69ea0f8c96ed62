//! The pictures of `kiln cluster`: rows on two principal components coloured by cluster, and
//! the elbow / silhouette curves over k. Drawn in memory (plotters), encoded as PNG and written
//! atomically.

use std::path::Path;

use plotters::prelude::*;

use super::{Error, Result};
use crate::train::plot::register_font;

const W: u32 = 800;
const H: u32 = 600;

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draw into an RGB buffer with `draw`, then write it as a PNG to `path` atomically.
fn png(path: &Path, draw: impl FnOnce(&mut [u8]) -> DrawResult) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; (W * H * 3) as usize];
    draw(&mut buf).map_err(|e| Error(format!("{}: drawing failed: {e}", path.display())))?;
    let img = image::RgbImage::from_raw(W, H, buf).expect("buffer holds W x H pixels");
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::io::write_atomic(path, bytes.get_ref())?;
    Ok(())
}

/// `(lo, hi)` padded by 5 % (and widened when flat).
fn range(v: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let lo = v.clone().fold(f64::INFINITY, f64::min);
    let hi = v.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad)..(hi + pad)
}

/// Scatter of `xy` coloured by `labels` (noise, -1, in grey).
pub fn draw_scatter(path: &Path, xy: &[(f32, f32)], labels: &[i32]) -> Result<()> {
    png(path, |buf| {
        let root = BitMapBackend::with_buffer(buf, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let xs = range(xy.iter().map(|p| p.0 as f64));
        let ys = range(xy.iter().map(|p| p.1 as f64));
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "clusters on the first two principal components",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc("PC1")
            .y_desc("PC2")
            .label_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(xy.iter().zip(labels).map(|(&(x, y), &l)| {
            let colour = if l < 0 {
                RGBColor(160, 160, 160).filled()
            } else {
                Palette99::pick(l as usize).filled()
            };
            Circle::new((x as f64, y as f64), 3, colour)
        }))?;
        root.present()?;
        Ok(())
    })
}

/// Inertia (left axis) and silhouette (right axis) against k.
pub fn draw_elbow(path: &Path, per_k: &[(usize, f64, Option<f64>)]) -> Result<()> {
    png(path, |buf| {
        let root = BitMapBackend::with_buffer(buf, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let ks = range(per_k.iter().map(|t| t.0 as f64));
        let inertia = range(per_k.iter().map(|t| t.1));
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "choosing k: inertia (elbow) and silhouette",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .right_y_label_area_size(60)
            .build_cartesian_2d(ks.clone(), inertia)?
            .set_secondary_coord(ks, -1.0f64..1.0);
        chart
            .configure_mesh()
            .x_desc("k")
            .y_desc("inertia")
            .label_style(("sans-serif", 13))
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("silhouette")
            .label_style(("sans-serif", 13))
            .draw()?;
        let line = per_k.iter().map(|t| (t.0 as f64, t.1));
        chart.draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))?;
        chart.draw_series(line.map(|p| Circle::new(p, 4, BLUE.filled())))?;
        let sil: Vec<(f64, f64)> = per_k
            .iter()
            .filter_map(|t| t.2.map(|s| (t.0 as f64, s)))
            .collect();
        chart.draw_secondary_series(LineSeries::new(sil.clone(), RED.stroke_width(2)))?;
        chart.draw_secondary_series(sil.into_iter().map(|p| Circle::new(p, 4, RED.filled())))?;
        root.present()?;
        Ok(())
    })
}
