//! Resampling between neighbouring pyramid levels and the multigrid gather.

use burn::tensor::Tensor;

use crate::backend::{self, MgBackend, maxpool, upsample};
use crate::geometry::{Geometry, LevelSpan};

/// Nearest-neighbour 2× upsampling: `out[y, x] = in[⌊y/2⌋, ⌊x/2⌋]` (width only for 1D).
///
/// This is pixel duplication, the convention of TensorFlow's legacy nearest resize.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`
/// - returns `[n, c, 2h, 2w]` (2D) or `[n, c, h, 2w]` (1D)
pub fn upsample2x<B: MgBackend>(x: Tensor<B, 4>, geometry: Geometry) -> Tensor<B, 4> {
    upsample(x, geometry.factor())
}

/// 2×2 max-pooling with stride 2 and no padding (1×2 for 1D).
///
/// # Shapes
/// - `x`: `[n, c, h, w]` with even `h` (2D) and even `w`
/// - returns `[n, c, h/2, w/2]` (2D) or `[n, c, h, w/2]` (1D)
pub fn maxpool2x<B: MgBackend>(x: Tensor<B, 4>, geometry: Geometry) -> Tensor<B, 4> {
    maxpool(x, geometry.factor())
}

/// Gathers the input of output level `level` from a pyramid covering `span`.
///
/// The parts are `[upsample2x(in[level-1]), in[level], maxpool2x(in[level+1])]`,
/// concatenated on channels in that order; a part is dropped when its level is not in `span`.
///
/// # Shapes
/// - `pyramid[i]`: `[n, c, h_i, w_i]`, level `span.first + i`
/// - returns `[n, parts·c, h, w]` at the size of `level`
///
/// # Panics
/// If no neighbour of `level` lies in `span`, or `pyramid.len() != span.count`.
pub fn gather<B: MgBackend>(
    pyramid: &[Tensor<B, 4>],
    span: LevelSpan,
    level: usize,
    geometry: Geometry,
) -> Tensor<B, 4> {
    assert_eq!(
        pyramid.len(),
        span.count,
        "gather: the pyramid has {} levels but its span {:?} holds {}",
        pyramid.len(),
        span,
        span.count
    );
    let part = |level: Option<usize>| {
        level
            .and_then(|l| span.index_of(l))
            .map(|i| pyramid[i].clone())
    };
    let (up, same, down) = (
        part(level.checked_sub(1)),
        part(Some(level)),
        part(Some(level + 1)),
    );
    assert!(
        up.is_some() || same.is_some() || down.is_some(),
        "gather: output level {level} has no neighbour in the input levels {span:?}"
    );
    backend::gather(up, same, down, geometry.factor())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::geometry::levels;
    use burn::tensor::TensorData;

    type B = TestBackend;

    fn grid(values: &[f32], h: usize, w: usize) -> Tensor<B, 4> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [1, 1, h, w]),
            &Default::default(),
        )
    }

    fn values(x: Tensor<B, 4>) -> Vec<f32> {
        x.into_data().convert::<f32>().to_vec().unwrap()
    }

    #[test]
    fn upsample_duplicates_pixels() {
        let up = upsample2x(grid(&[1., 2., 3., 4.], 2, 2), Geometry::Grid2d);
        assert_eq!(up.dims(), [1, 1, 4, 4]);
        #[rustfmt::skip]
        let expected = [
            1., 1., 2., 2.,
            1., 1., 2., 2.,
            3., 3., 4., 4.,
            3., 3., 4., 4.,
        ];
        assert_eq!(values(up), expected);
    }

    #[test]
    fn upsample_1d_doubles_width_only() {
        let up = upsample2x(grid(&[1., 2., 3.], 1, 3), Geometry::Grid1d);
        assert_eq!(up.dims(), [1, 1, 1, 6]);
        assert_eq!(values(up), [1., 1., 2., 2., 3., 3.]);
    }

    #[test]
    fn maxpool_takes_the_max_of_each_2x2_block() {
        #[rustfmt::skip]
        let x = grid(&[
            1., 5., 0., 2.,
            3., 4., 7., 1.,
            -1., -2., 8., 8.,
            -3., -4., 9., 0.,
        ], 4, 4);
        assert_eq!(values(maxpool2x(x, Geometry::Grid2d)), [5., 7., -1., 9.]);
        let row = grid(&[1., 5., 0., -2.], 1, 4);
        assert_eq!(values(maxpool2x(row, Geometry::Grid1d)), [5., 0.]);
    }

    /// Levels 0 (1×1 = [7]), 1 (2×2 = [1 2; 3 4]) and 2 (4×4 = 0..16).
    /// Output level 1 is `[up(level 0), level 1, pool(level 2)]` on channels:
    /// up = 7 everywhere, same = 1..4, pool = max of each block = [5 7; 13 15].
    #[test]
    fn gather_concatenates_up_same_down() {
        let l0 = grid(&[7.], 1, 1);
        let l1 = grid(&[1., 2., 3., 4.], 2, 2);
        let l2 = grid(&(0..16).map(|v| v as f32).collect::<Vec<_>>(), 4, 4);
        let pyramid = [l0, l1, l2];
        let out = gather(&pyramid, levels(0, 3), 1, Geometry::Grid2d);
        assert_eq!(out.dims(), [1, 3, 2, 2]);
        let expected = [7., 7., 7., 7., 1., 2., 3., 4., 5., 7., 13., 15.];
        assert_eq!(values(out), expected);

        // A new finest level reads only the upsampled previous finest level.
        let grown = gather(&pyramid, levels(0, 3), 3, Geometry::Grid2d);
        assert_eq!(grown.dims(), [1, 1, 8, 8]);
        // The coarsest level reads itself and the pooled level 1.
        let coarse = gather(&pyramid, levels(0, 3), 0, Geometry::Grid2d);
        assert_eq!(values(coarse), [7., 4.]);
    }

    #[test]
    #[should_panic(expected = "output level 5 has no neighbour")]
    fn gather_without_neighbour_panics() {
        let pyramid = [grid(&[1.], 1, 1)];
        gather(&pyramid, levels(0, 1), 5, Geometry::Grid2d);
    }
}
