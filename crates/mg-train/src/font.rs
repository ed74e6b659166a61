//! Text in DejaVu Sans (embedded in the binary): glyph outlines laid out along a baseline, as
//! vector paths for plots and as coverage for raster pictures.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, OutlineCurve, PxScale, ScaleFont};

/// One segment of a path, in pixels, y down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Seg {
    /// Starts a new contour.
    Move(f32, f32),
    /// A straight line.
    Line(f32, f32),
    /// A quadratic Bézier curve: control point, end point.
    Quad(f32, f32, f32, f32),
    /// A cubic Bézier curve: two control points, end point.
    Cubic(f32, f32, f32, f32, f32, f32),
    /// Closes the contour.
    Close,
}

/// The embedded font.
pub fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(dejavu::sans::regular()).expect("DejaVu Sans is a valid font")
    })
}

/// The advance width in pixels of `text` at `size` pixels (the font's ascent to descent).
pub fn text_width(text: &str, size: f32) -> f32 {
    layout(text, size)
        .last()
        .map_or(0.0, |&(_, x, advance)| x + advance)
}

/// Glyphs of `text` along a baseline at x = 0: `(glyph, x, advance)`, kerned.
fn layout(text: &str, size: f32) -> Vec<(ab_glyph::GlyphId, f32, f32)> {
    let scaled = font().as_scaled(PxScale::from(size));
    let mut x = 0.0;
    let mut previous = None;
    text.chars()
        .map(|c| {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                x += scaled.kern(p, id);
            }
            previous = Some(id);
            let at = x;
            let advance = scaled.h_advance(id);
            x += advance;
            (id, at, advance)
        })
        .collect()
}

/// The outlines of `text` at `size` pixels with its baseline starting at `origin`, mapped
/// through `place` (pixel offsets from the origin along and across the baseline, y down, to
/// picture coordinates); one path for the whole string.
pub fn text_path(text: &str, size: f32, place: impl Fn(f32, f32) -> (f32, f32)) -> Vec<Seg> {
    let f = font();
    let scale = f.as_scaled(PxScale::from(size)).h_scale_factor();
    let mut segs = Vec::new();
    for (id, x0, _) in layout(text, size) {
        let Some(outline) = f.outline(id) else {
            continue;
        };
        let pt = |p: ab_glyph::Point| place(x0 + p.x * scale, -p.y * scale);
        let mut last: Option<ab_glyph::Point> = None;
        for curve in &outline.curves {
            let (start, end) = match *curve {
                OutlineCurve::Line(a, b) | OutlineCurve::Quad(a, _, b) => (a, b),
                OutlineCurve::Cubic(a, _, _, b) => (a, b),
            };
            if last != Some(start) {
                if last.is_some() {
                    segs.push(Seg::Close);
                }
                let (x, y) = pt(start);
                segs.push(Seg::Move(x, y));
            }
            segs.push(match *curve {
                OutlineCurve::Line(_, b) => {
                    let (x, y) = pt(b);
                    Seg::Line(x, y)
                }
                OutlineCurve::Quad(_, c, b) => {
                    let ((cx, cy), (x, y)) = (pt(c), pt(b));
                    Seg::Quad(cx, cy, x, y)
                }
                OutlineCurve::Cubic(_, c1, c2, b) => {
                    let ((ax, ay), (bx, by), (x, y)) = (pt(c1), pt(c2), pt(b));
                    Seg::Cubic(ax, ay, bx, by, x, y)
                }
            });
            last = Some(end);
        }
        if last.is_some() {
            segs.push(Seg::Close);
        }
    }
    segs
}

/// Coverage in `[0, 1]` of `text` at `size` pixels, baseline from `(x, y)`: calls
/// `put(px, py, coverage)` for every touched pixel.
pub fn rasterize(text: &str, size: f32, (x, y): (f32, f32), mut put: impl FnMut(i64, i64, f32)) {
    let f = font();
    let scale = PxScale::from(size);
    for (id, x0, _) in layout(text, size) {
        let glyph = id.with_scale_and_position(scale, ab_glyph::point(x + x0, y));
        if let Some(outlined) = f.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            outlined.draw(|gx, gy, c| {
                put(
                    bounds.min.x as i64 + gx as i64,
                    bounds.min.y as i64 + gy as i64,
                    c,
                );
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_kerned_and_proportional() {
        let size = 20.0;
        // Proportional: an 'i' is narrower than an 'm'; twice the size is twice as wide.
        assert!(text_width("i", size) < 0.5 * text_width("m", size));
        let w = text_width("Loss per step", size);
        assert!((text_width("Loss per step", 2.0 * size) - 2.0 * w).abs() < 1e-3);
        assert!(w > 100.0 && w < 160.0, "{w}");
        assert_eq!(text_width("", size), 0.0);
    }

    #[test]
    fn outlines_sit_on_the_baseline() {
        let segs = text_path("Hx", 20.0, |dx, dy| (10.0 + dx, 50.0 + dy));
        let ys: Vec<f32> = segs
            .iter()
            .filter_map(|s| match *s {
                Seg::Move(_, y) | Seg::Line(_, y) => Some(y),
                _ => None,
            })
            .collect();
        let (top, bottom) = ys
            .iter()
            .fold((f32::MAX, f32::MIN), |a, &y| (a.0.min(y), a.1.max(y)));
        // Capitals stand on the baseline and reach about 0.6 of the size above it.
        assert!((bottom - 50.0).abs() < 0.5, "{bottom}");
        assert!((50.0 - top - 0.6 * 20.0).abs() < 2.0, "{top}");
        assert_eq!(segs.iter().filter(|s| matches!(s, Seg::Close)).count(), 2);
    }

    #[test]
    fn raster_coverage_lies_inside_the_advance() {
        let mut touched = Vec::new();
        rasterize("Ab", 16.0, (5.0, 20.0), |x, y, c| {
            if c > 0.0 {
                touched.push((x, y));
            }
        });
        assert!(!touched.is_empty());
        let right = 5.0 + text_width("Ab", 16.0);
        assert!(
            touched
                .iter()
                .all(|&(x, y)| x >= 4 && (x as f32) < right + 1.0 && y <= 21)
        );
    }
}
