//! Pictures: learning curves and episode frames (PNG), episode animations (GIF), drawn on a
//! small RGB canvas with a built-in 3×5 pixel font.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// White.
pub const WHITE: Rgb = [255, 255, 255];
/// Black.
pub const BLACK: Rgb = [0, 0, 0];
const SERIES: [Rgb; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
];

/// A raster image.
#[derive(Clone, Debug)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major pixels.
    pub pixels: Vec<Rgb>,
}

/// Glyphs of the 3×5 font: 15 cells row by row, `#` set.
fn glyph(c: char) -> Option<&'static str> {
    Some(match c.to_ascii_uppercase() {
        '0' => "####.##.##.####",
        '1' => ".#.##..#..#.###",
        '2' => "###..#####..###",
        '3' => "###..####..####",
        '4' => "#.##.####..#..#",
        '5' => "####..###..####",
        '6' => "####..####.####",
        '7' => "###..#..#.#..#.",
        '8' => "####.#####.####",
        '9' => "####.####..####",
        '.' => ".............#.",
        ',' => "..........#.#..",
        '-' => "......###......",
        '+' => "....#.###.#....",
        ':' => "....#.....#....",
        '/' => "..#..#.#.#..#..",
        '=' => "...###...###...",
        '(' => ".#.#..#..#...#.",
        ')' => ".#...#..#..#.#.",
        '%' => "#.#..#.#.#..#.#",
        'A' => ".#.#.#####.##.#",
        'B' => "##.#.###.#.###.",
        'C' => ".###..#..#...##",
        'D' => "##.#.##.##.###.",
        'E' => "####..##.#..###",
        'F' => "####..##.#..#..",
        'G' => ".###..#.##.#.##",
        'H' => "#.##.#####.##.#",
        'I' => "###.#..#..#.###",
        'J' => "..#..#..##.#.#.",
        'K' => "#.##.###.#.##.#",
        'L' => "#..#..#..#..###",
        'M' => "#.########.##.#",
        'N' => "##.#.##.##.##.#",
        'O' => ".#.#.##.##.#.#.",
        'P' => "##.#.###.#..#..",
        'Q' => ".#.#.##.###..##",
        'R' => "##.#.###.#.##.#",
        'S' => ".###...#...###.",
        'T' => "###.#..#..#..#.",
        'U' => "#.##.##.##.####",
        'V' => "#.##.##.##.#.#.",
        'W' => "#.##.########.#",
        'X' => "#.##.#.#.#.##.#",
        'Y' => "#.##.#.#..#..#.",
        'Z' => "###..#.#.#..###",
        '×' => "...#.#.#.#.#...",
        _ => return None,
    })
}

impl Canvas {
    /// A canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        Self {
            width,
            height,
            pixels: vec![background; width * height],
        }
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, colour: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = colour;
        }
    }

    /// Fills a rectangle.
    pub fn rect(&mut self, x: i64, y: i64, w: usize, h: usize, colour: Rgb) {
        for dy in 0..h as i64 {
            for dx in 0..w as i64 {
                self.set(x + dx, y + dy, colour);
            }
        }
    }

    /// A straight line (Bresenham).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), colour: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, colour);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in the 3×5 font scaled by `scale`; unknown characters leave a gap.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, colour: Rgb) {
        for (i, c) in text.chars().enumerate() {
            let left = x + (i * 4 * scale) as i64;
            if let Some(g) = glyph(c) {
                for (k, cell) in g.chars().enumerate() {
                    if cell == '#' {
                        let (gx, gy) = ((k % 3) * scale, (k / 3) * scale);
                        self.rect(left + gx as i64, y + gy as i64, scale, scale, colour);
                    }
                }
            }
        }
    }

    /// Width in pixels of `text` at `scale`.
    pub fn text_width(text: &str, scale: usize) -> usize {
        text.chars().count() * 4 * scale
    }

    /// Draws a grid of values in [0, 1] as grey levels (or via `colour`), one `cell`×`cell`
    /// square per value, with its top-left corner at (x, y).
    pub fn grid(
        &mut self,
        x: i64,
        y: i64,
        side: (usize, usize),
        cell: usize,
        colour: impl Fn(usize, usize) -> Rgb,
    ) {
        for r in 0..side.0 {
            for c in 0..side.1 {
                self.rect(
                    x + (c * cell) as i64,
                    y + (r * cell) as i64,
                    cell,
                    cell,
                    colour(r, c),
                );
            }
        }
    }

    /// The pixels as packed RGB bytes.
    pub fn rgb_bytes(&self) -> Vec<u8> {
        self.pixels.iter().flatten().copied().collect()
    }

    /// Writes a PNG file.
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut encoder =
            png::Encoder::new(BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .write_image_data(&self.rgb_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Grey level of `v` in [0, 1].
pub fn grey(v: f32) -> Rgb {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [g, g, g]
}

/// `v` rounded to two significant digits (log-axis ticks fall between round numbers).
fn two_digits(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(v.abs().log10().floor() as i32 - 1);
    (v / scale).round() * scale
}

fn format_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        let e = v.abs().log10().floor() as i32;
        let m = v / 10f64.powi(e);
        if (m - m.round()).abs() < 1e-9 {
            format!("{}e{e}", m.round())
        } else {
            format!("{m:.1}e{e}")
        }
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}

/// Plots named series of `(x, y)` points; y on a log scale when every value is positive and
/// they span more than a factor of 20. Writes a PNG.
pub fn plot_curve(
    series: &[(&str, Vec<(f64, f64)>)],
    [x_label, y_label]: [&str; 2],
    path: &Path,
) -> anyhow::Result<()> {
    plot(series, [x_label, y_label], path, false)
}

/// Plots named series of positive `(x, y)` points on log-log axes, with a marker at every
/// point. Writes a PNG.
pub fn plot_log_log(
    series: &[(&str, Vec<(f64, f64)>)],
    labels: [&str; 2],
    path: &Path,
) -> anyhow::Result<()> {
    let positive: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let kept = pts.iter().copied().filter(|p| p.0 > 0.0 && p.1 > 0.0);
            (*name, kept.collect())
        })
        .collect();
    plot(&positive, labels, path, true)
}

/// Legend entries laid out left to right, wrapping at `width`: each one's `(x, y)`.
fn legend_layout(names: &[&str], left: i64, width: i64) -> Vec<(i64, i64)> {
    let (mut x, mut y) = (left, 10i64);
    names
        .iter()
        .map(|name| {
            let w = 30 + Canvas::text_width(name, 2) as i64;
            if x > left && x + w > width {
                (x, y) = (left, y + 16);
            }
            let at = (x, y);
            x += w;
            at
        })
        .collect()
}

fn plot(
    series: &[(&str, Vec<(f64, f64)>)],
    [x_label, y_label]: [&str; 2],
    path: &Path,
    log_log: bool,
) -> anyhow::Result<()> {
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    let legend = legend_layout(&names, 70, 710);
    let legend_bottom = legend.iter().map(|p| p.1).max().unwrap_or(10) + 14;
    let (width, height) = (720usize, 400 + legend_bottom as usize);
    let (left, right, top, bottom) = (70i64, 20i64, legend_bottom + 26, 50i64);
    let mut canvas = Canvas::new(width, height, WHITE);
    canvas.text(8, top - 14, y_label, 1, BLACK);
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let plot_w = width as i64 - left - right;
    let plot_h = height as i64 - top - bottom;
    canvas.line((left, top), (left, top + plot_h), BLACK);
    canvas.line((left, top + plot_h), (left + plot_w, top + plot_h), BLACK);
    canvas.text(
        left + plot_w / 2 - Canvas::text_width(x_label, 2) as i64 / 2,
        height as i64 - 20,
        x_label,
        2,
        BLACK,
    );
    if !points.is_empty() {
        let (mut x0, mut x1) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
        let (mut y0, mut y1) = points
            .iter()
            .fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
        let log = log_log || (y0 > 0.0 && y1 / y0 > 20.0);
        let ty = |v: f64| if log { v.log10() } else { v };
        let tx = |v: f64| if log_log { v.log10() } else { v };
        (x0, x1) = (tx(x0), tx(x1));
        if x1 <= x0 {
            x1 = x0 + 1.0;
            x0 -= 1.0;
        }
        let (mut a, mut b) = (ty(y0), ty(y1));
        if b <= a {
            b = a + 1.0;
            a -= 1.0;
        }
        (y0, y1) = (a, b);
        let px = |x: f64| left + ((tx(x) - x0) / (x1 - x0) * plot_w as f64) as i64;
        let py = |y: f64| top + plot_h - ((ty(y) - y0) / (y1 - y0) * plot_h as f64) as i64;
        // Ticks: five on each axis.
        for i in 0..=4 {
            let fx = x0 + (x1 - x0) * i as f64 / 4.0;
            let label = format_tick(if log_log {
                two_digits(10f64.powf(fx))
            } else {
                fx
            });
            let x = left + (plot_w as f64 * i as f64 / 4.0) as i64;
            canvas.line((x, top + plot_h), (x, top + plot_h + 4), BLACK);
            canvas.text(
                x - Canvas::text_width(&label, 1) as i64 / 2,
                top + plot_h + 8,
                &label,
                1,
                BLACK,
            );
            let fy = y0 + (y1 - y0) * i as f64 / 4.0;
            let value = if log { two_digits(10f64.powf(fy)) } else { fy };
            let label = format_tick(value);
            let y = top + plot_h - (plot_h as f64 * i as f64 / 4.0) as i64;
            canvas.line((left - 4, y), (left, y), BLACK);
            for gx in (left + 1..left + plot_w).step_by(4) {
                canvas.set(gx, y, [225, 225, 225]);
            }
            canvas.text(
                left - 6 - Canvas::text_width(&label, 1) as i64,
                y - 2,
                &label,
                1,
                BLACK,
            );
        }
        for (k, (name, pts)) in series.iter().enumerate() {
            let colour = SERIES[k % SERIES.len()];
            let pts: Vec<(i64, i64)> = pts
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log || p.1 > 0.0))
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            for w in pts.windows(2) {
                canvas.line(w[0], w[1], colour);
            }
            if pts.len() == 1 || log_log {
                for p in &pts {
                    canvas.rect(p.0 - 2, p.1 - 2, 5, 5, colour);
                }
            }
            let (lx, ly) = legend[k];
            canvas.rect(lx, ly + 4, 14, 4, colour);
            canvas.text(lx + 20, ly, name, 2, BLACK);
        }
    }
    canvas.save_png(path)
}

/// Writes frames as an animated GIF, `delay` hundredths of a second per frame.
pub fn save_gif(frames: &[Canvas], delay: u16, path: &Path) -> anyhow::Result<()> {
    let Some(first) = frames.first() else {
        anyhow::bail!("no frames to write to {}", path.display());
    };
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = gif::Encoder::new(
        BufWriter::new(file),
        first.width as u16,
        first.height as u16,
        &[],
    )
    .with_context(|| format!("writing {}", path.display()))?;
    encoder.set_repeat(gif::Repeat::Infinite)?;
    for canvas in frames {
        let mut frame = gif::Frame::from_rgb_speed(
            canvas.width as u16,
            canvas.height as u16,
            &canvas.rgb_bytes(),
            10,
        );
        frame.delay = delay;
        encoder
            .write_frame(&frame)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_has_fifteen_cells() {
        for c in "0123456789.,-+:/=()%ABCDEFGHIJKLMNOPQRSTUVWXYZ×".chars() {
            let g = glyph(c).unwrap();
            assert_eq!(g.chars().count(), 15, "{c}: {g}");
        }
        assert_eq!(glyph('a'), glyph('A'));
    }

    #[test]
    fn plot_writes_a_png() {
        let path = std::env::temp_dir().join(format!("mg-plot-{}.png", std::process::id()));
        let pts: Vec<(f64, f64)> = (1..50)
            .map(|i| (i as f64 * 100.0, 1.0 / i as f64))
            .collect();
        plot_curve(&[("loss", pts)], ["time steps", "loss"], &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // Log-log axes drop the points they cannot place.
        let pts = vec![(0.0, 1.0), (10.0, 2.0), (1e4, 3e3), (1e6, -1.0)];
        plot_log_log(&[("ms", pts)], ["memory cells", "ms"], &path).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[1..4], b"PNG");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn legends_wrap_to_new_rows() {
        let names = ["a", "quick-convlstm-thick", "quick-dnc-lr1e-3", "b"];
        let at = legend_layout(&names, 70, 300);
        // "a" takes 30 + 8 pixels; the second entry (190) still fits, the third does not.
        assert_eq!(at, [(70, 10), (108, 10), (70, 26), (228, 26)]);
        for (&(x, _), name) in at.iter().zip(names) {
            assert!(
                x + 30 + Canvas::text_width(name, 2) as i64 <= 300,
                "{name} overflows"
            );
        }
    }

    #[test]
    fn log_ticks_keep_two_digits() {
        assert_eq!(two_digits(5011.87), 5000.0);
        assert_eq!(two_digits(0.012345), 0.012);
        assert_eq!(format_tick(two_digits(31622.7)), "3.2e4");
        assert_eq!(two_digits(0.0), 0.0);
    }
}
