//! Paper appendix A, Proposition 1: in a multigrid stack, information from location (1, 1)
//! of [layer 1, level 1] reaches every (i, j) with 1 ≤ i, j ≤ (m − n + 2)·2^(n−1) − 1 of
//! [layer m, level n]; in a single-level stack it spreads one cell per layer.
//!
//! Probe: all weights positive, zero biases and no activation, so a location is reached
//! exactly when its output is nonzero for a one-hot source.

use burn::module::Param;
use burn::nn::Initializer;
use burn::tensor::{Tensor, TensorData};
use mg_layers::{Activation, ConvInit, MgConv, MgConvConfig, levels};

use crate::{TestBackend as B, device};

const BASE: usize = 4;
const LEVELS: usize = 4; // 4, 8, 16, 32

fn positive_conv(input_levels: usize, output_levels: usize) -> MgConv<B> {
    let device = device();
    let mut conv = MgConvConfig::new(1, 1, levels(0, input_levels), levels(0, output_levels))
        .with_activation(Activation::Identity)
        .with_initializer(ConvInit::Custom(Initializer::Constant { value: 0.1 }))
        .init::<B>(&device);
    for b in conv.biases.iter_mut() {
        *b = Param::from_tensor(Tensor::zeros([1], &device));
    }
    conv
}

/// Largest `r` such that every location `(i, j)` with `i, j < r` is nonzero.
fn reach(grid: &Tensor<B, 4>) -> usize {
    let [_, _, h, w] = grid.dims();
    let v: Vec<f64> = grid.to_data().convert::<f64>().to_vec().unwrap();
    (0..=h.min(w))
        .take_while(|&r| (0..r).all(|i| (0..r).all(|j| v[i * w + j] > 0.0)))
        .last()
        .unwrap_or(0)
}

/// Largest index reached on row 0 (nonzero anywhere beyond it is a routing error).
fn extent(grid: &Tensor<B, 4>) -> usize {
    let [_, _, _, w] = grid.dims();
    let v: Vec<f64> = grid.to_data().convert::<f64>().to_vec().unwrap();
    (0..w).filter(|&j| v[j] > 0.0).max().map_or(0, |j| j + 1)
}

fn one_hot(size: usize) -> Tensor<B, 4> {
    let mut v = vec![0.0f64; size * size];
    v[0] = 1.0;
    Tensor::from_data(TensorData::new(v, [1, 1, size, size]), &device())
}

#[test]
fn multigrid_stack_reaches_the_proposition_bound() {
    let mut pyramid = vec![one_hot(BASE)];
    for m in 2..=6usize {
        let (n_in, n_out) = (pyramid.len(), m.min(LEVELS));
        pyramid = positive_conv(n_in, n_out).forward(&pyramid);
        for n in 1..=n_out {
            let size = BASE << (n - 1);
            let bound = ((m - n + 2) << (n - 1)) - 1;
            let got = reach(&pyramid[n - 1]);
            assert!(
                got >= bound.min(size),
                "layer {m}, level {n}: reached {got}×{got}, the proposition promises {bound}"
            );
        }
    }
    // After 6 layers the finest 32×32 level is covered up to 31, where one level would give 6.
    assert!(reach(&pyramid[LEVELS - 1]) >= 31);
}

#[test]
fn single_level_stack_spreads_linearly() {
    let size = BASE << (LEVELS - 1);
    let mut grid = vec![one_hot(size)];
    for m in 2..=6usize {
        grid = positive_conv(1, 1).forward(&grid);
        assert_eq!(reach(&grid[0]), m, "layer {m}");
        assert_eq!(extent(&grid[0]), m, "layer {m}");
    }
}
