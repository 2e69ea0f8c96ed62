//! `kiln trace-view trace.json timeline.png`: the timeline of a `kiln train --trace` file as a
//! picture, for a quick look without Perfetto.
//!
//! Three lanes over time (ms): the host's phases (begin/end pairs on tid 1), its uploads
//! (complete events named `upload`), and the GPU's dispatches (complete events of category
//! `gpu`), each coloured by phase (data, forward, backward, optimizer, checkpoint, evaluation);
//! below them the buffer pool's live bytes (the counter track) as a line.

use std::path::{Path, PathBuf};

use clap::Args;
use plotters::prelude::*;
use serde_json::Value;

use super::{Error, Result};

/// Flags of `kiln trace-view`.
#[derive(Debug, Args)]
pub struct TraceViewArgs {
    /// A trace written by `kiln train --trace`.
    pub trace: PathBuf,
    /// The PNG to write.
    pub out: PathBuf,
}

/// One bar: lane, start and end (ms), phase.
type Bar = (usize, f64, f64, String);

const PHASES: [&str; 6] = [
    "data",
    "forward",
    "backward",
    "optimizer",
    "checkpoint",
    "evaluation",
];
const LANES: [&str; 3] = ["host", "upload", "GPU"];
const SIZE: (u32, u32) = (1600, 640);

fn colour(phase: &str) -> RGBColor {
    match PHASES.iter().position(|p| *p == phase) {
        Some(i) => {
            let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
            RGBColor(r, g, b)
        }
        None => RGBColor(150, 150, 150),
    }
}

/// The bars and the memory samples (ms, MB) of a trace document.
fn read(doc: &Value) -> (Vec<Bar>, Vec<(f64, f64)>) {
    let (mut bars, mut memory, mut open) = (Vec::new(), Vec::new(), Vec::new());
    let none = Vec::new();
    for e in doc["traceEvents"].as_array().unwrap_or(&none) {
        let ts = e["ts"].as_f64().unwrap_or(0.0) / 1e3;
        let name = e["name"].as_str().unwrap_or("").to_string();
        match e["ph"].as_str().unwrap_or("") {
            "B" => open.push((name, ts)),
            "E" => {
                if let Some((n, t0)) = open.pop() {
                    bars.push((0, t0, ts, n));
                }
            }
            "X" => {
                let end = ts + e["dur"].as_f64().unwrap_or(0.0) / 1e3;
                if e["cat"] == "gpu" {
                    let phase = e["args"]["phase"].as_str().unwrap_or("").to_string();
                    bars.push((2, ts, end, phase));
                } else {
                    bars.push((1, ts, end, "data".into()));
                }
            }
            "C" => memory.push((ts, e["args"]["bytes"].as_f64().unwrap_or(0.0) / 1e6)),
            _ => {}
        }
    }
    (bars, memory)
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(rgb: &mut [u8], bars: &[Bar], memory: &[(f64, f64)], title: &str) -> DrawResult {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(400);
    let (legend, bottom) = rest.split_vertically(30);
    let end = bars
        .iter()
        .map(|b| b.2)
        .chain(memory.iter().map(|m| m.0))
        .fold(1e-3, f64::max);
    let mut lanes = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..3.0)?;
    lanes
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("ms")
        .label_style(("sans-serif", 13))
        .draw()?;
    lanes.draw_series(bars.iter().map(|(lane, a, b, phase)| {
        let y = 2.0 - *lane as f64;
        Rectangle::new(
            [(*a, y + 0.15), (b.max(*a), y + 0.85)],
            colour(phase).filled(),
        )
    }))?;
    lanes.draw_series(
        LANES
            .iter()
            .enumerate()
            .map(|(i, name)| Text::new(*name, (0.0, 3.0 - i as f64), ("sans-serif", 13))),
    )?;
    for (i, p) in PHASES.iter().enumerate() {
        let at = (90 + 150 * i as i32, 8);
        legend.draw(&Rectangle::new(
            [at, (at.0 + 14, at.1 + 14)],
            colour(p).filled(),
        ))?;
        legend.draw(&Text::new(*p, (at.0 + 20, at.1), ("sans-serif", 14)))?;
    }
    let peak = memory.iter().map(|m| m.1).fold(1e-3, f64::max);
    let mut mem = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..peak * 1.1)?;
    mem.configure_mesh()
        .x_desc("ms")
        .y_desc("pool MB")
        .label_style(("sans-serif", 13))
        .draw()?;
    mem.draw_series(LineSeries::new(memory.iter().copied(), &BLUE))?;
    root.present()?;
    Ok(())
}

/// Render `trace` to `out`.
fn render(trace: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(trace).map_err(|e| {
        Error(format!(
            "kiln trace-view: cannot read {}: {e}",
            trace.display()
        ))
    })?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        Error(format!(
            "kiln trace-view: {} is not trace-event JSON: {e}",
            trace.display()
        ))
    })?;
    let (bars, memory) = read(&doc);
    if bars.is_empty() {
        return Err(Error(format!(
            "kiln trace-view: {} has no spans or slices (was it written by kiln train --trace?)",
            trace.display()
        )));
    }
    crate::train::plot::register_font();
    let gpus = bars.iter().filter(|b| b.0 == 2).count();
    let title = format!(
        "{}: {gpus} GPU dispatches, {} steps ({})",
        doc["otherData"]["adapter"].as_str().unwrap_or("?"),
        doc["otherData"]["steps"],
        doc["otherData"]["gpu_time"].as_str().unwrap_or("?")
    );
    let mut rgb = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(&mut rgb, &bars, &memory, &title)
        .map_err(|e| Error(format!("kiln trace-view: drawing failed: {e}")))?;
    let img = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb).expect("SIZE pixels");
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::io::write_output(out, bytes.get_ref(), "kiln trace-view")?;
    Ok(())
}

/// Run `kiln trace-view`.
pub fn run(a: TraceViewArgs) -> Result<()> {
    render(&a.trace, &a.out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
