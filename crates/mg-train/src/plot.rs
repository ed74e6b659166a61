//! Line plots (learning curves, comparisons, scaling), written as PNG and SVG from one vector
//! scene: DejaVu Sans text as outlines, ticks at round values (1, 2, 5 × 10ⁿ), the legend in
//! its own band above the axes, an optional smoothed line over the raw one.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tiny_skia::{FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, Transform};

use crate::font::{Seg, text_path, text_width};
use crate::viz::Rgb;

/// Series colours (matplotlib's first six).
const SERIES: [Rgb; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
];
const INK: Rgb = [34, 34, 34];
const GRID: Rgb = [228, 228, 228];

const WIDTH: f32 = 800.0;
const PLOT_HEIGHT: f32 = 420.0;
const TICK_SIZE: f32 = 13.0;
const TITLE_SIZE: f32 = 15.0;
const LEGEND_SIZE: f32 = 14.0;

/// How a shape is painted.
#[derive(Clone, Copy, Debug)]
enum Ink {
    Fill(Rgb),
    Stroke { colour: Rgb, alpha: f32, width: f32 },
}

/// A vector picture: paths in pixels on a white page.
struct Scene {
    width: f32,
    height: f32,
    shapes: Vec<(Vec<Seg>, Ink)>,
}

impl Scene {
    /// A polyline through `points` (nothing for fewer than two).
    fn line(&mut self, points: &[(f32, f32)], colour: Rgb, alpha: f32, width: f32) {
        if points.len() < 2 {
            return;
        }
        let mut segs = vec![Seg::Move(points[0].0, points[0].1)];
        segs.extend(points[1..].iter().map(|&(x, y)| Seg::Line(x, y)));
        let ink = Ink::Stroke {
            colour,
            alpha,
            width,
        };
        self.shapes.push((segs, ink));
    }

    fn rect(&mut self, (x, y): (f32, f32), (w, h): (f32, f32), colour: Rgb) {
        let segs = vec![
            Seg::Move(x, y),
            Seg::Line(x + w, y),
            Seg::Line(x + w, y + h),
            Seg::Line(x, y + h),
            Seg::Close,
        ];
        self.shapes.push((segs, Ink::Fill(colour)));
    }

    /// Text with its baseline at `y`; `anchor` 0 (start), 0.5 (middle) or 1 (end) of the text
    /// at `x`; `vertical` turns it to read bottom to top around `(x, y)`.
    fn text(&mut self, text: &str, (x, y): (f32, f32), size: f32, anchor: f32, vertical: bool) {
        let shift = -anchor * text_width(text, size);
        let segs = if vertical {
            text_path(text, size, |along, across| (x + across, y - along - shift))
        } else {
            text_path(text, size, |along, across| (x + along + shift, y + across))
        };
        if !segs.is_empty() {
            self.shapes.push((segs, Ink::Fill(INK)));
        }
    }

    fn svg(&self) -> String {
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
            w = self.width,
            h = self.height
        );
        for (segs, paint) in &self.shapes {
            let mut d = String::new();
            for s in segs {
                let _ = match *s {
                    Seg::Move(x, y) => write!(d, "M{x:.2} {y:.2}"),
                    Seg::Line(x, y) => write!(d, "L{x:.2} {y:.2}"),
                    Seg::Quad(a, b, x, y) => write!(d, "Q{a:.2} {b:.2} {x:.2} {y:.2}"),
                    Seg::Cubic(a, b, c, e, x, y) => {
                        write!(d, "C{a:.2} {b:.2} {c:.2} {e:.2} {x:.2} {y:.2}")
                    }
                    Seg::Close => write!(d, "Z"),
                };
            }
            let hex = |c: Rgb| format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
            let style = match *paint {
                Ink::Fill(c) => format!("fill=\"{}\"", hex(c)),
                Ink::Stroke {
                    colour,
                    alpha,
                    width,
                } => format!(
                    "fill=\"none\" stroke=\"{}\" stroke-opacity=\"{alpha}\" stroke-width=\"{width}\" \
                     stroke-linejoin=\"round\" stroke-linecap=\"round\"",
                    hex(colour),
                ),
            };
            let _ = writeln!(out, "<path d=\"{d}\" {style}/>");
        }
        out.push_str("</svg>\n");
        out
    }

    fn raster(&self) -> anyhow::Result<Pixmap> {
        let mut pixmap =
            Pixmap::new(self.width as u32, self.height as u32).context("a plot of zero size")?;
        pixmap.fill(tiny_skia::Color::WHITE);
        for (segs, paint) in &self.shapes {
            let mut pb = PathBuilder::new();
            for s in segs {
                match *s {
                    Seg::Move(x, y) => pb.move_to(x, y),
                    Seg::Line(x, y) => pb.line_to(x, y),
                    Seg::Quad(a, b, x, y) => pb.quad_to(a, b, x, y),
                    Seg::Cubic(a, b, c, e, x, y) => pb.cubic_to(a, b, c, e, x, y),
                    Seg::Close => pb.close(),
                }
            }
            let Some(path) = pb.finish() else { continue };
            let mut p = Paint {
                anti_alias: true,
                ..Paint::default()
            };
            match *paint {
                Ink::Fill(c) => {
                    p.set_color_rgba8(c[0], c[1], c[2], 255);
                    pixmap.fill_path(&path, &p, FillRule::Winding, Transform::identity(), None);
                }
                Ink::Stroke {
                    colour,
                    alpha,
                    width,
                } => {
                    p.set_color_rgba8(colour[0], colour[1], colour[2], (alpha * 255.0) as u8);
                    let stroke = Stroke {
                        width,
                        line_cap: LineCap::Round,
                        line_join: LineJoin::Round,
                        ..Stroke::default()
                    };
                    pixmap.stroke_path(&path, &p, &stroke, Transform::identity(), None);
                }
            }
        }
        Ok(pixmap)
    }

    /// Writes `path` (PNG) and the same picture as SVG beside it.
    fn save(&self, path: &Path) -> anyhow::Result<PathBuf> {
        let pixmap = self.raster()?;
        // Every pixel is opaque (a white page), so premultiplied RGBA is plain RGBA.
        let rgb: Vec<u8> = pixmap
            .data()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut encoder = png::Encoder::new(BufWriter::new(file), pixmap.width(), pixmap.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut w| w.write_image_data(&rgb))
            .with_context(|| format!("writing {}", path.display()))?;
        let svg = path.with_extension("svg");
        crate::harness::checkpoint::write_atomic(&svg, self.svg().as_bytes())?;
        Ok(svg)
    }
}

/// One axis: data range in plot coordinates (log10 of the value on a log axis) and its ticks.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    log: bool,
    lo: f64,
    hi: f64,
    /// `(position in plot coordinates, label)`.
    ticks: Vec<(f64, String)>,
}

/// The round step (1, 2 or 5 × 10ⁿ) that cuts `span` into about `target` pieces.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    m * magnitude
}

/// The unit tick labels of values up to `largest` are written in: thousands and millions as
/// k and M from 10,000 on.
fn label_unit(largest: f64) -> (f64, &'static str) {
    if largest >= 1e6 {
        (1e6, "M")
    } else if largest >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// A tick label in `unit`: `step` sets the decimals.
fn tick_label(v: f64, step: f64, (unit, suffix): (f64, &str)) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (-(step / unit).log10().floor()).max(0.0) as usize;
    format!("{:.decimals$}{suffix}", v / unit)
}

impl Axis {
    /// A linear axis over `[lo, hi]` with `margin` (a fraction of the span) each side.
    fn linear(lo: f64, hi: f64, margin: f64) -> Self {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo - pad, hi + pad)
        };
        let pad = (hi - lo) * margin;
        let (lo, hi) = (lo - pad, hi + pad);
        let step = nice_step(hi - lo, 5.0);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let unit = label_unit((first.abs().max(last.abs())) as f64 * step);
        let ticks = (first..=last)
            .map(|i| {
                let v = i as f64 * step;
                (v, tick_label(v, step, unit))
            })
            .collect();
        Self {
            log: false,
            lo,
            hi,
            ticks,
        }
    }

    /// A log axis over positive `[lo, hi]`: ticks at powers of ten, and at 2 and 5 times them
    /// when fewer than three powers fall inside.
    fn log(lo: f64, hi: f64) -> Self {
        let (mut a, mut b) = (lo.log10(), hi.log10());
        if b - a < 0.3 {
            (a, b) = ((a + b) / 2.0 - 0.15, (a + b) / 2.0 + 0.15);
        }
        let pad = (b - a) * 0.04;
        let (a, b) = (a - pad, b + pad);
        let mut ticks = Vec::new();
        for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0, 7.0]] {
            ticks.clear();
            for e in a.floor() as i32..=b.ceil() as i32 {
                for &m in mantissas {
                    let v = m * 10f64.powi(e);
                    let p = v.log10();
                    if p >= a && p <= b {
                        ticks.push((p, tick_label(v, 10f64.powi(e), label_unit(v))));
                    }
                }
            }
            if ticks.len() >= 3 {
                break;
            }
        }
        Self {
            log: true,
            lo: a,
            hi: b,
            ticks,
        }
    }

    /// Plot coordinate of a value.
    fn at(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }

    /// The fraction `[0, 1]` of the axis length where a value lies.
    fn fraction(&self, v: f64) -> f64 {
        (self.at(v) - self.lo) / (self.hi - self.lo)
    }
}

/// Exponential moving average of the y values (`weight` in `[0, 1)`, as TensorBoard's
/// smoothing), debiased at the start; on a log axis it averages log10 y.
fn smooth(points: &[(f64, f64)], weight: f64, log: bool) -> Vec<(f64, f64)> {
    let (mut avg, mut norm) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            let v = if log { y.log10() } else { y };
            avg = weight * avg + (1.0 - weight) * v;
            norm = weight * norm + (1.0 - weight);
            let s = avg / norm;
            (x, if log { 10f64.powf(s) } else { s })
        })
        .collect()
}

/// What a plot shows and how.
#[derive(Clone, Copy, Debug)]
pub struct PlotStyle {
    /// Both axes logarithmic, a marker at every point.
    pub log_log: bool,
    /// Smoothing weight in `[0, 1)`: draws the moving average over a faint raw line.
    pub smooth: Option<f64>,
    /// A linear y axis whatever the values span (shares, percentages).
    pub linear_y: bool,
}

/// Plots named series of `(x, y)` points; y on a log scale when every value is positive and
/// they span more than a factor of 20. Writes `path` (PNG) and the same plot as SVG beside
/// it; returns the SVG's path.
pub fn plot_curve(
    series: &[(&str, Vec<(f64, f64)>)],
    titles: [&str; 2],
    path: &Path,
    smooth: Option<f64>,
) -> anyhow::Result<PathBuf> {
    plot(
        series,
        titles,
        path,
        PlotStyle {
            log_log: false,
            smooth,
            linear_y: false,
        },
    )
}

/// Plots named series of positive `(x, y)` points on log-log axes, with a marker at every
/// point; PNG and SVG as [`plot_curve`].
pub fn plot_log_log(
    series: &[(&str, Vec<(f64, f64)>)],
    titles: [&str; 2],
    path: &Path,
) -> anyhow::Result<PathBuf> {
    let positive: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let kept = pts.iter().copied().filter(|p| p.0 > 0.0 && p.1 > 0.0);
            (*name, kept.collect())
        })
        .collect();
    plot(
        &positive,
        titles,
        path,
        PlotStyle {
            log_log: true,
            smooth: None,
            linear_y: false,
        },
    )
}

/// Legend entries laid out left to right from `left`, wrapping at `right`: each one's
/// `(x, baseline)`, and the band's height.
fn legend_layout(names: &[&str], left: f32, right: f32) -> (Vec<(f32, f32)>, f32) {
    let row = LEGEND_SIZE * 1.6;
    let (mut x, mut y) = (left, 14.0 + LEGEND_SIZE);
    let at = names
        .iter()
        .map(|name| {
            let w = 34.0 + text_width(name, LEGEND_SIZE) + 18.0;
            if x > left && x + w > right {
                (x, y) = (left, y + row);
            }
            let at = (x, y);
            x += w;
            at
        })
        .collect();
    (at, y + 12.0)
}

/// Draws the plot.
pub fn plot(
    series: &[(&str, Vec<(f64, f64)>)],
    [x_title, y_title]: [&str; 2],
    path: &Path,
    style: PlotStyle,
) -> anyhow::Result<PathBuf> {
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    let (left, right) = (84.0, 24.0);
    let (legend, band) = legend_layout(&names, left, WIDTH - right);
    let (top, bottom) = (band + 8.0, 64.0);
    let height = band + PLOT_HEIGHT;
    let (pw, ph) = (WIDTH - left - right, height - top - bottom);
    let mut scene = Scene {
        width: WIDTH,
        height,
        shapes: Vec::new(),
    };
    let finite: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let range = |f: fn(&(f64, f64)) -> f64| {
        finite
            .iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, v| {
                (a.0.min(v), a.1.max(v))
            })
    };
    let ((x0, x1), (y0, y1)) = if finite.is_empty() {
        ((0.0, 1.0), (0.0, 1.0))
    } else {
        (range(|p| p.0), range(|p| p.1))
    };
    let y_log = style.log_log || (!style.linear_y && y0 > 0.0 && y1 / y0 > 20.0);
    let xa = if style.log_log {
        Axis::log(x0, x1)
    } else {
        Axis::linear(x0, x1, 0.02)
    };
    let ya = if y_log {
        Axis::log(y0, y1)
    } else {
        Axis::linear(y0, y1, 0.05)
    };
    let px = |x: f64| left + (xa.fraction(x) * f64::from(pw)) as f32;
    let py = |y: f64| top + ph - (ya.fraction(y) * f64::from(ph)) as f32;
    // Grid, ticks and their labels.
    for (p, label) in &xa.ticks {
        let x = left + ((p - xa.lo) / (xa.hi - xa.lo) * f64::from(pw)) as f32;
        scene.line(&[(x, top), (x, top + ph)], GRID, 1.0, 1.0);
        scene.line(&[(x, top + ph), (x, top + ph + 5.0)], INK, 1.0, 1.0);
        scene.text(
            label,
            (x, top + ph + 8.0 + TICK_SIZE),
            TICK_SIZE,
            0.5,
            false,
        );
    }
    for (p, label) in &ya.ticks {
        let y = top + ph - ((p - ya.lo) / (ya.hi - ya.lo) * f64::from(ph)) as f32;
        scene.line(&[(left, y), (left + pw, y)], GRID, 1.0, 1.0);
        scene.line(&[(left - 5.0, y), (left, y)], INK, 1.0, 1.0);
        scene.text(
            label,
            (left - 8.0, y + TICK_SIZE * 0.36),
            TICK_SIZE,
            1.0,
            false,
        );
    }
    let frame = [
        (left, top),
        (left, top + ph),
        (left + pw, top + ph),
        (left + pw, top),
        (left, top),
    ];
    scene.line(&frame, INK, 1.0, 1.0);
    scene.text(
        x_title,
        (left + pw / 2.0, height - 16.0),
        TITLE_SIZE,
        0.5,
        false,
    );
    scene.text(y_title, (22.0, top + ph / 2.0), TITLE_SIZE, 0.5, true);
    for (k, (name, pts)) in series.iter().enumerate() {
        let colour = SERIES[k % SERIES.len()];
        let kept: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!y_log || p.1 > 0.0))
            .collect();
        let to_px = |v: &[(f64, f64)]| v.iter().map(|&(x, y)| (px(x), py(y))).collect::<Vec<_>>();
        match style.smooth {
            Some(w) if kept.len() > 2 => {
                scene.line(&to_px(&kept), colour, 0.3, 1.2);
                scene.line(&to_px(&smooth(&kept, w, y_log)), colour, 1.0, 2.2);
            }
            _ => scene.line(&to_px(&kept), colour, 1.0, 1.8),
        }
        if kept.len() == 1 || style.log_log {
            for (x, y) in to_px(&kept) {
                scene.rect((x - 3.0, y - 3.0), (6.0, 6.0), colour);
            }
        }
        let (lx, ly) = legend[k];
        let mid = ly - LEGEND_SIZE * 0.33;
        scene.line(&[(lx, mid), (lx + 26.0, mid)], colour, 1.0, 2.5);
        scene.text(name, (lx + 34.0, ly), LEGEND_SIZE, 0.0, false);
    }
    scene.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(axis: &Axis) -> Vec<&str> {
        axis.ticks.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn linear_ticks_are_round() {
        // Minutes 0.53 … 3.77: ticks every 0.5, not at the data's ends.
        assert_eq!(
            labels(&Axis::linear(0.53, 3.77, 0.02)),
            ["0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5"]
        );
        assert_eq!(
            labels(&Axis::linear(1000.0, 200_000.0, 0.02)),
            ["0", "50k", "100k", "150k", "200k"]
        );
        // One unit along an axis: 5k, not 5000, beside 10k.
        assert_eq!(
            labels(&Axis::linear(1000.0, 20_000.0, 0.02)),
            ["5k", "10k", "15k", "20k"]
        );
        assert_eq!(
            labels(&Axis::linear(0.0, 7.0, 0.0)),
            ["0", "1", "2", "3", "4", "5", "6", "7"]
        );
        assert_eq!(
            labels(&Axis::linear(2e6, 9e6, 0.0)),
            ["2M", "3M", "4M", "5M", "6M", "7M", "8M", "9M"]
        );
        // A constant series still gets an axis.
        assert!(!Axis::linear(5.0, 5.0, 0.05).ticks.is_empty());
    }

    #[test]
    fn log_ticks_are_decades_or_their_halves() {
        assert_eq!(labels(&Axis::log(0.003, 40.0)), ["0.01", "0.1", "1", "10"]);
        // Less than two decades: 1, 2, 5 steps.
        assert_eq!(
            labels(&Axis::log(1500.0, 60_000.0)),
            ["2000", "5000", "10k", "20k", "50k"]
        );
    }

    #[test]
    fn smoothing_averages_and_keeps_the_first_point() {
        let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 3.0)];
        let s = smooth(&pts, 0.5, false);
        assert_eq!(s[0], (0.0, 1.0));
        // (0.25·1 + 0.5·3) / 0.75 = 2.333…
        assert!((s[1].1 - (0.5 * 0.5 * 1.0 + 0.5 * 3.0) / 0.75).abs() < 1e-12);
        assert!(s[2].1 > s[1].1 && s[2].1 < 3.0);
        let logs = smooth(&[(0.0, 1.0), (1.0, 100.0)], 0.0, true);
        assert!((logs[1].1 - 100.0).abs() < 1e-9);
    }

    #[test]
    fn plot_writes_png_and_svg() {
        let dir = std::env::temp_dir().join(format!("mg-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("curve.png");
        let pts: Vec<(f64, f64)> = (1..50)
            .map(|i| (i as f64 * 100.0, 10.0 / i as f64))
            .collect();
        let svg = plot_curve(
            &[("multigrid", pts.clone()), ("DNC", pts)],
            ["Time step", "Loss per cell"],
            &png,
            Some(0.6),
        )
        .unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        // Two series, each raw and smoothed, and their legend lines.
        assert_eq!(text.matches("stroke=\"#1f77b4\"").count(), 3);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn legends_wrap_to_new_rows() {
        let names = ["a-fairly-long-run-name"; 6];
        let (at, band) = legend_layout(&names, 84.0, WIDTH - 24.0);
        assert!(at.iter().any(|p| p.1 > at[0].1));
        assert!(at.iter().all(|p| p.1 < band));
        assert!(
            at.iter()
                .all(|p| p.0 + text_width(names[0], LEGEND_SIZE) < WIDTH)
        );
    }
}
