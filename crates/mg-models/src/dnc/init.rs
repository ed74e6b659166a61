//! Sonnet 1 initialisation: truncated normal weights.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Distribution, ElementConversion, Tensor, backend::Backend};

/// Rounds of re-drawing before the last out-of-range values are clamped. Each round keeps
/// a value outside ±2σ with probability 0.0455, so after 32 rounds a clamp is never reached
/// in practice (probability below 1e-42 per value).
const ROUNDS: usize = 32;

/// Draws `N(0, std²)` and re-draws every value beyond two standard deviations, like
/// TensorFlow's `truncated_normal_initializer`. Uses the backend's seeded generator.
pub(crate) fn truncated_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    let normal = Distribution::Normal(0.0, std);
    let bound = 2.0 * std;
    let mut values = Tensor::<B, D>::random(shape, normal, device);
    for _ in 0..ROUNDS {
        let outside = values.clone().abs().greater_elem(bound);
        if !outside.clone().any().into_scalar().elem::<bool>() {
            return values;
        }
        values = values.mask_where(outside, Tensor::random(shape, normal, device));
    }
    values.clamp(-bound, bound)
}

/// A Sonnet `snt.Linear`: weight `[d_input, d_output]` truncated normal with
/// `std = 1/√d_input`, zero bias.
pub(crate) fn sonnet_linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    device: &B::Device,
) -> Linear<B> {
    let std = 1.0 / (d_input as f64).sqrt();
    Linear {
        weight: Param::from_tensor(truncated_normal([d_input, d_output], std, device)),
        bias: Some(Param::from_tensor(Tensor::zeros([d_output], device))),
    }
}
