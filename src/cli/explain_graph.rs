//! `kiln explain --graph FILE`: the step's autograd graph (`autograd::graph_nodes`) as DOT
//! text (`.dot`, for Graphviz), or drawn by kiln itself with a layered layout: `.svg` (text
//! written here) or `.png` (plotters).
//!
//! Layout: an op sits one column right of its deepest input, a leaf (parameter or input) one
//! column left of the first op that reads it, so every edge goes left to right; within a column nodes keep the graph's
//! order (inputs before the ops that read them). Ops are boxes, parameters filled ellipses,
//! other leaves plain ones; an edge is a line from a producer to each op that reads it.

use std::collections::HashMap;
use std::path::Path;

use plotters::prelude::*;

use super::{Error, Result};
use crate::autograd::GraphNode;

/// Characters of a label that are drawn (longer ones are cut).
const LABEL: usize = 34;
/// Pixels per label character.
const CHAR_W: i32 = 7;
/// Box height, gaps between columns and between rows (pixels).
const BOX_H: i32 = 22;
const COL_GAP: i32 = 40;
const ROW_GAP: i32 = 12;

/// Where each node goes: its box (x, y, width) and the picture's size.
struct Layout {
    boxes: Vec<(i32, i32, i32)>,
    size: (i32, i32),
}

fn label(n: &GraphNode) -> String {
    let l = &n.0.1;
    if l.chars().count() <= LABEL {
        l.clone()
    } else {
        l.chars().take(LABEL - 1).collect::<String>() + "…"
    }
}

fn layout(nodes: &[GraphNode]) -> Layout {
    let index: HashMap<u64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.0.0, i)).collect();
    let mut col = vec![0usize; nodes.len()];
    for (i, (_, ins)) in nodes.iter().enumerate() {
        let deepest = ins
            .iter()
            .filter_map(|id| index.get(id))
            .map(|&j| col[j] + 1)
            .max();
        col[i] = deepest.unwrap_or(0);
    }
    // A leaf moves right, next to the first op that reads it.
    let mut first_reader = vec![usize::MAX; nodes.len()];
    for (i, (_, ins)) in nodes.iter().enumerate() {
        for &j in ins.iter().filter_map(|id| index.get(id)) {
            first_reader[j] = first_reader[j].min(col[i]);
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if !n.0.2 && first_reader[i] != usize::MAX {
            col[i] = first_reader[i].saturating_sub(1);
        }
    }
    let cols = col.iter().max().map_or(0, |c| c + 1);
    let mut col_w = vec![0i32; cols];
    let mut rows = vec![0i32; cols];
    let mut boxes = Vec::with_capacity(nodes.len());
    for (n, &c) in nodes.iter().zip(&col) {
        let w = label(n).chars().count() as i32 * CHAR_W + 16;
        col_w[c] = col_w[c].max(w);
        boxes.push((c, rows[c], w));
        rows[c] += 1;
    }
    let mut x0 = vec![COL_GAP / 2; cols];
    for c in 1..cols {
        x0[c] = x0[c - 1] + col_w[c - 1] + COL_GAP;
    }
    let height = rows.iter().max().copied().unwrap_or(0) * (BOX_H + ROW_GAP) + ROW_GAP;
    let width = x0.last().copied().unwrap_or(0) + col_w.last().copied().unwrap_or(0) + COL_GAP;
    Layout {
        boxes: boxes
            .into_iter()
            .map(|(c, r, w)| (x0[c], ROW_GAP + r * (BOX_H + ROW_GAP), w))
            .collect(),
        size: (width.max(200), height.max(60)),
    }
}

/// The edges as (from box, to box) indices.
fn edges(nodes: &[GraphNode]) -> Vec<(usize, usize)> {
    let index: HashMap<u64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.0.0, i)).collect();
    let mut out = Vec::new();
    for (i, (_, ins)) in nodes.iter().enumerate() {
        out.extend(ins.iter().filter_map(|id| index.get(id)).map(|&j| (j, i)));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The graph as SVG text.
fn svg(nodes: &[GraphNode]) -> String {
    let l = layout(nodes);
    let (w, h) = l.size;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"{w}\" height=\"{h}\" \
         fill=\"white\"/>\n"
    );
    for (a, b) in edges(nodes) {
        let ((ax, ay, aw), (bx, by, _)) = (l.boxes[a], l.boxes[b]);
        s += &format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{bx}\" y2=\"{}\" stroke=\"#888\"/>\n",
            ax + aw,
            ay + BOX_H / 2,
            by + BOX_H / 2
        );
    }
    for (n, &(x, y, bw)) in nodes.iter().zip(&l.boxes) {
        let (op, param) = (n.0.2, n.0.3);
        let fill = if param { "#f6d68a" } else { "white" };
        s += &if op {
            format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{bw}\" height=\"{BOX_H}\" fill=\"{fill}\" stroke=\"black\"/>\n"
            )
        } else {
            format!(
                "<ellipse cx=\"{}\" cy=\"{}\" rx=\"{}\" ry=\"{}\" fill=\"{fill}\" stroke=\"black\"/>\n",
                x + bw / 2,
                y + BOX_H / 2,
                bw / 2,
                BOX_H / 2
            )
        };
        s += &format!(
            "<text x=\"{}\" y=\"{}\">{}</text>\n",
            x + 8,
            y + BOX_H / 2 + 4,
            escape(&label(n))
        );
    }
    s + "</svg>\n"
}

/// The graph drawn into an RGB buffer of `layout.size`.
fn draw(buf: &mut [u8], nodes: &[GraphNode], l: &Layout) -> std::result::Result<(), String> {
    let size = (l.size.0 as u32, l.size.1 as u32);
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let grey = RGBColor(136, 136, 136);
    for (a, b) in edges(nodes) {
        let ((ax, ay, aw), (bx, by, _)) = (l.boxes[a], l.boxes[b]);
        let line = vec![(ax + aw, ay + BOX_H / 2), (bx, by + BOX_H / 2)];
        root.draw(&PathElement::new(line, grey))
            .map_err(|x| e(&x))?;
    }
    let font = ("sans-serif", 12).into_font().color(&BLACK);
    for (n, &(x, y, bw)) in nodes.iter().zip(&l.boxes) {
        let fill = if n.0.3 {
            RGBColor(246, 214, 138)
        } else {
            WHITE
        };
        let corners = [(x, y), (x + bw, y + BOX_H)];
        root.draw(&Rectangle::new(corners, fill.filled()))
            .map_err(|x| e(&x))?;
        let border = if n.0.2 { BLACK } else { grey };
        root.draw(&Rectangle::new(corners, border))
            .map_err(|x| e(&x))?;
        root.draw(&Text::new(label(n), (x + 8, y + 5), font.clone()))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

/// The graph as PNG bytes.
fn png(nodes: &[GraphNode]) -> std::result::Result<Vec<u8>, String> {
    crate::train::plot::register_font();
    let l = layout(nodes);
    let (w, h) = (l.size.0 as u32, l.size.1 as u32);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    draw(&mut rgb, nodes, &l)?;
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or("image size")?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|x| x.to_string())?;
    Ok(bytes.into_inner())
}

/// Write the graph of `nodes` to `path` in the format its extension names (checked by
/// [`check`]).
pub(super) fn write(path: &Path, nodes: &[GraphNode]) -> Result<()> {
    let bytes = match check(path)? {
        "svg" => svg(nodes).into_bytes(),
        "png" => png(nodes)
            .map_err(|e| Error(format!("--graph {}: drawing failed: {e}", path.display())))?,
        _ => crate::autograd::graph_to_dot(nodes).into_bytes(),
    };
    Ok(crate::io::write_output(path, &bytes, "--graph")?)
}

/// The format `path`'s extension names (`dot`, `svg` or `png`), so a bad `--graph` fails
/// before the step runs.
pub(super) fn check(path: &Path) -> Result<&'static str> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "dot" | "gv" => Ok("dot"),
        "svg" => Ok("svg"),
        "png" => Ok("png"),
        _ => Err(Error(format!(
            "--graph {}: the file must end in .dot, .svg or .png",
            path.display()
        ))),
    }
}
