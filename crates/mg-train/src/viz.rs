//! Raster pictures: episode frames and task pictures (PNG), episode animations (GIF), drawn on
//! a small RGB canvas with antialiased DejaVu Sans text. Plots are in [`crate::plot`].

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

    /// Text in DejaVu Sans, `8·scale + 2` pixels (capitals about `5·scale + 1` high), its top
    /// at `y`, blended onto the picture.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, colour: Rgb) {
        let size = Self::font_size(scale);
        let baseline = (x as f32, y as f32 + (0.63 * size).round());
        crate::font::rasterize(text, size, baseline, |px, py, c| {
            if px >= 0 && py >= 0 && (px as usize) < self.width && (py as usize) < self.height {
                let pixel = &mut self.pixels[py as usize * self.width + px as usize];
                let c = c.clamp(0.0, 1.0);
                for (p, &t) in pixel.iter_mut().zip(&colour) {
                    *p = (f32::from(*p) * (1.0 - c) + f32::from(t) * c).round() as u8;
                }
            }
        });
    }

    /// Width in pixels of `text` at `scale`.
    pub fn text_width(text: &str, scale: usize) -> usize {
        crate::font::text_width(text, Self::font_size(scale)).ceil() as usize
    }

    fn font_size(scale: usize) -> f32 {
        8.0 * scale.max(1) as f32 + 2.0
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

/// A titled panel of cells for [`stacked_grids`]: title, rows, and the colour of cell
/// `(row, column)`.
pub type Panel<'a> = (&'a str, usize, &'a dyn Fn(usize, usize) -> Rgb);

/// Panels of `rows × columns` cells of `cell` pixels stacked top to bottom, each under its
/// title (a sequence drawn with time across and channels down).
pub fn stacked_grids(panels: &[Panel], columns: usize, cell: usize) -> Canvas {
    let rows: usize = panels.iter().map(|p| p.1).sum();
    let height = rows * cell + panels.len() * 24 + 20;
    let mut canvas = Canvas::new(columns * cell + 120, height, WHITE);
    let mut top = 10i64;
    for (title, rows, colour) in panels {
        canvas.text(10, top, title, 1, BLACK);
        top += 12;
        canvas.grid(10, top, (*rows, columns), cell, colour);
        top += (rows * cell + 12) as i64;
    }
    canvas
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
    fn text_blends_inside_its_box() {
        let mut canvas = Canvas::new(60, 20, WHITE);
        canvas.text(2, 2, "Ab1", 2, BLACK);
        let width = Canvas::text_width("Ab1", 2);
        assert!(width > 20 && width < 40, "{width}");
        let inked: Vec<usize> = (0..canvas.pixels.len())
            .filter(|&i| canvas.pixels[i] != WHITE)
            .collect();
        assert!(!inked.is_empty());
        for i in inked {
            let (x, y) = (i % 60, i / 60);
            // Capitals and digits stand 11 pixels high on the baseline at y = 13.
            assert!(
                x >= 2 && x <= 3 + width && (1..=14).contains(&y),
                "ink at {x},{y}"
            );
        }
    }
}
