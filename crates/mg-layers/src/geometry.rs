//! Grid geometry of a pyramid: 2D square grids or 1D rows, and their level sizes.

use burn::config::Config;

/// The shape of every grid in a pyramid.
///
/// Level `l` of a pyramid with base size `s0` is `s0·2^l` on each resampled axis:
/// a 2D pyramid has `[s0·2^l, s0·2^l]` grids (3, 6, 12, 24, 48 in the paper's mapping model);
/// a 1D pyramid has `[1, s0·2^l]` rows (1, 2, 4, 8, 16 for bAbI).
/// Tensors are always `[batch, channels, height, width]`; 1D grids have `height = 1`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// Square grids; resampling and convolution act on both spatial axes.
    Grid2d,
    /// Rows of height 1; resampling and convolution act on the width only.
    Grid1d,
}

impl Geometry {
    /// Spatial size `[height, width]` of level `level` when level 0 has size `base`.
    pub fn level_size(self, base: usize, level: usize) -> [usize; 2] {
        let side = base << level;
        match self {
            Geometry::Grid2d => [side, side],
            Geometry::Grid1d => [1, side],
        }
    }

    /// Grid cells `Σ_l h_l·w_l` over the levels of `span` when level 0 has size `base`.
    pub fn cells(self, base: usize, span: LevelSpan) -> usize {
        span.range()
            .map(|l| self.level_size(base, l).iter().product::<usize>())
            .sum()
    }

    /// Kernel shape `[kh, kw]` of a convolution of odd size `k` on this geometry.
    pub fn kernel(self, k: usize) -> [usize; 2] {
        match self {
            Geometry::Grid2d => [k, k],
            Geometry::Grid1d => [1, k],
        }
    }

    /// Zero padding `[ph, pw]` that keeps the size of a stride-1 convolution of odd size `k`.
    pub fn same_padding(self, k: usize) -> [usize; 2] {
        match self {
            Geometry::Grid2d => [k / 2, k / 2],
            Geometry::Grid1d => [0, k / 2],
        }
    }

    /// Resampling factor `[fh, fw]` between neighbouring levels.
    pub fn factor(self) -> [usize; 2] {
        match self {
            Geometry::Grid2d => [2, 2],
            Geometry::Grid1d => [1, 2],
        }
    }
}

/// A contiguous span of pyramid levels, `first..first + count`, coarse to fine.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub struct LevelSpan {
    /// The coarsest level of the span.
    pub first: usize,
    /// How many levels the span holds.
    pub count: usize,
}

impl LevelSpan {
    /// The levels `first..first + count`.
    pub fn range(self) -> std::ops::Range<usize> {
        self.first..self.first + self.count
    }

    /// The finest level of the span, plus one.
    pub fn end(self) -> usize {
        self.first + self.count
    }

    /// Whether `level` lies in the span.
    pub fn contains(self, level: usize) -> bool {
        self.range().contains(&level)
    }

    /// Position of `level` inside the span, if it lies there.
    pub fn index_of(self, level: usize) -> Option<usize> {
        self.contains(level).then(|| level - self.first)
    }

    /// Levels present in both spans.
    pub fn intersect(self, other: LevelSpan) -> std::ops::Range<usize> {
        self.first.max(other.first)..self.end().min(other.end())
    }

    /// Number of gather parts (`up`, `same`, `down`) available for output `level`.
    pub fn parts_for(self, level: usize) -> usize {
        let up = level.checked_sub(1).is_some_and(|l| self.contains(l));
        usize::from(up) + usize::from(self.contains(level)) + usize::from(self.contains(level + 1))
    }
}

/// The levels `first..first + count`.
pub fn levels(first: usize, count: usize) -> LevelSpan {
    LevelSpan { first, count }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_sizes_double_per_level() {
        assert_eq!(Geometry::Grid2d.level_size(3, 4), [48, 48]);
        assert_eq!(Geometry::Grid1d.level_size(1, 4), [1, 16]);
    }

    #[test]
    fn parts_follow_the_span() {
        let span = levels(1, 3); // levels 1, 2, 3
        assert_eq!(span.parts_for(0), 1); // down of 1
        assert_eq!(span.parts_for(1), 2); // same, down
        assert_eq!(span.parts_for(2), 3);
        assert_eq!(span.parts_for(4), 1); // up of 3
        assert_eq!(span.parts_for(5), 0);
        assert_eq!(span.intersect(levels(0, 2)), 1..2);
    }

    #[test]
    fn config_round_trips_through_json() {
        let span = levels(2, 3);
        let json = span.to_string();
        assert_eq!(LevelSpan::load_binary(json.as_bytes()).unwrap(), span);
        let geometry = Geometry::Grid1d;
        let json = geometry.to_string();
        assert_eq!(Geometry::load_binary(json.as_bytes()).unwrap(), geometry);
    }
}
