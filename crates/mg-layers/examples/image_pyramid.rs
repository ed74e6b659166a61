//! An input pyramid from an image, as the paper feeds MNIST digits to a multigrid network:
//! the image is resized to every level of the pyramid (here 3×3 … 48×48) and the whole
//! pyramid enters a multigrid convolution that spans the same levels.
//!
//! ```sh
//! cargo run --release -p mg-layers --example image_pyramid
//! ```

use burn::backend::Flex;
use burn::tensor::Tensor;
use burn::tensor::module::{avg_pool2d, interpolate};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use mg_layers::{MgConvConfig, levels};

/// A 28×28 grey "digit": a ring, bright on a dark background.
fn ring(device: &burn::tensor::Device<Flex>) -> Tensor<Flex, 4> {
    let values: Vec<f32> = (0..28 * 28)
        .map(|i| {
            let (r, c) = ((i / 28) as f32 - 13.5, (i % 28) as f32 - 13.5);
            let d = (r * r + c * c).sqrt();
            if (7.0..11.0).contains(&d) { 1.0 } else { 0.0 }
        })
        .collect();
    Tensor::<Flex, 1>::from_floats(values.as_slice(), device).reshape([1, 1, 28, 28])
}

/// The image resized to `3·2^l` for `l` in `0..count`, coarse to fine: bilinear to the
/// finest side, then 2×2 averages for each coarser level, so that small levels average the
/// image instead of sampling a few of its pixels.
fn pyramid(image: Tensor<Flex, 4>, count: usize) -> Vec<Tensor<Flex, 4>> {
    let side = 3 << (count - 1);
    let options = InterpolateOptions::new(InterpolateMode::Bilinear);
    let mut level = interpolate(image, [side, side], options);
    let mut levels = vec![level.clone()];
    for _ in 1..count {
        level = avg_pool2d(level, [2, 2], [2, 2], [0, 0], true, false);
        levels.push(level.clone());
    }
    levels.reverse();
    levels
}

fn main() {
    let device = Default::default();
    let levels_count = 5;
    let input = pyramid(ring(&device), levels_count);
    for (l, t) in input.iter().enumerate() {
        let [_, _, h, w] = t.dims();
        let mean: f32 = t.clone().mean().into_scalar();
        println!("level {l}: {h}×{w}, mean intensity {mean:.3}");
    }
    // 1 input channel per level, 8 output channels per level, on all five levels.
    let conv = MgConvConfig::new(1, 8, levels(0, levels_count), levels(0, levels_count))
        .init::<Flex>(&device);
    let output = conv.forward_window(&input, 1);
    for (l, t) in output.iter().enumerate() {
        println!("output level {l}: {:?}", t.dims());
    }
}
