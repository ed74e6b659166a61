//! Residual connections across depth along grids of the same level.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::geometry::LevelSpan;

/// A residual connection in a stack: the output of layer `from` is added to the output of
/// layer `to` (`from < to`, 0-based) on the levels both have.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub struct Residual {
    /// Source layer.
    pub from: usize,
    /// Target layer, whose output the sum replaces.
    pub to: usize,
}

/// Pads `x` with zero channels at the end up to `channels`.
///
/// # Shapes
/// - `x`: `[n, c, h, w]` with `c <= channels`
/// - returns `[n, channels, h, w]`
pub fn pad_channels<B: Backend>(x: Tensor<B, 4>, channels: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    assert!(
        c <= channels,
        "pad_channels: {c} channels cannot be padded down to {channels}"
    );
    if c == channels {
        return x;
    }
    let zeros = Tensor::zeros([n, channels - c, h, w], &x.device());
    Tensor::cat(vec![x, zeros], 1)
}

/// Adds pyramid `source` to pyramid `target` on the levels present in both.
///
/// The tensor with fewer channels is zero-padded at the end of the channel axis (the
/// reference's "padded" residual); levels of `target` outside `source` are kept as they are.
///
/// # Shapes
/// - `target[i]`: `[n, c_t, h, w]` for level `target_levels.first + i`; likewise `source`
/// - returns `target_levels.count` tensors with `max(c_t, c_s)` channels where summed
pub fn residual_add<B: Backend>(
    target: Vec<Tensor<B, 4>>,
    target_levels: LevelSpan,
    source: &[Tensor<B, 4>],
    source_levels: LevelSpan,
) -> Vec<Tensor<B, 4>> {
    target
        .into_iter()
        .zip(target_levels.range())
        .map(|(t, level)| match source_levels.index_of(level) {
            None => t,
            Some(i) => {
                let s = source[i].clone();
                let (ct, cs) = (t.dims()[1], s.dims()[1]);
                assert_eq!(
                    t.dims()[2..],
                    s.dims()[2..],
                    "residual_add: level {level} sizes differ: {:?} vs {:?}",
                    t.dims(),
                    s.dims()
                );
                let c = ct.max(cs);
                pad_channels(t, c) + pad_channels(s, c)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::geometry::levels;

    #[test]
    fn pads_the_narrower_tensor_and_keeps_other_levels() {
        let device = Default::default();
        let target = vec![
            Tensor::<TestBackend, 4>::ones([1, 2, 1, 1], &device),
            Tensor::<TestBackend, 4>::ones([1, 2, 2, 2], &device),
        ];
        let source = [Tensor::<TestBackend, 4>::full([1, 1, 2, 2], 3.0, &device)];
        let out = residual_add(target, levels(0, 2), &source, levels(1, 1));
        assert_eq!(out[0].dims(), [1, 2, 1, 1]);
        let v: Vec<f32> = out[1].to_data().to_vec().unwrap();
        assert_eq!(v, [4., 4., 4., 4., 1., 1., 1., 1.]);
    }
}
