//! Multigrid convolution: gather neighbouring scales, then one 3×3 conv per output level.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, backend::Backend};

use crate::backend::{MgBackend, conv2d};
use crate::geometry::{Geometry, LevelSpan};
use crate::init::ConvInit;
use crate::norm::{MgNorm, NormMode, level_norms};
use crate::resample::gather;

/// Nonlinearity applied after a multigrid convolution.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// No nonlinearity (e.g. a logit layer).
    Identity,
}

/// Configuration of a [`MgConv`]; build it with [`MgConvConfig::init`].
#[derive(Config, Debug, PartialEq)]
pub struct MgConvConfig {
    /// Channels of every input level.
    pub d_input: usize,
    /// Channels of every output level.
    pub d_output: usize,
    /// Levels of the input pyramid.
    pub input_levels: LevelSpan,
    /// Levels of the output pyramid; each needs a neighbour (`l-1`, `l` or `l+1`) in the input.
    pub output_levels: LevelSpan,
    /// 2D grids or 1D rows.
    #[config(default = "Geometry::Grid2d")]
    pub geometry: Geometry,
    /// Odd kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Nonlinearity after the convolution.
    #[config(default = "Activation::Relu")]
    pub activation: Activation,
    /// Batch normalisation after the nonlinearity, as in the reference MNIST reader.
    #[config(default = "None")]
    pub norm: Option<NormMode>,
    /// Added to the variance by the normalisation.
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
    /// Weight initialisation.
    #[config(default = "ConvInit::Reference")]
    pub initializer: ConvInit,
}

/// A multigrid convolution layer (paper Figure 1): for each output level, the input levels
/// `l-1`, `l`, `l+1` are resampled to level `l`, concatenated and convolved.
#[derive(Module, Debug)]
pub struct MgConv<B: Backend> {
    /// Kernels `[d_output, parts·d_input, kh, kw]`, one per output level, coarse to fine.
    pub weights: Vec<Param<Tensor<B, 4>>>,
    /// Biases `[d_output]`, one per output level.
    pub biases: Vec<Param<Tensor<B, 1>>>,
    /// Normalisations, one per output level (empty without batch norm).
    pub norms: Vec<MgNorm<B>>,
    input_levels: LevelSpan,
    output_levels: LevelSpan,
    geometry: Geometry,
    activation: Activation,
    d_input: usize,
    padding: [usize; 2],
}

pub(crate) fn check_span(name: &str, input: LevelSpan, output: LevelSpan, kernel: usize) {
    assert!(
        input.count > 0,
        "{name}: the input span {input:?} holds no level"
    );
    assert!(
        output.count > 0,
        "{name}: the output span {output:?} holds no level"
    );
    assert!(
        kernel % 2 == 1,
        "{name}: kernel_size must be odd, got {kernel}"
    );
    for level in output.range() {
        assert!(
            input.parts_for(level) > 0,
            "{name}: output level {level} has no neighbour in the input levels {input:?}"
        );
    }
}

pub(crate) fn check_pyramid<B: Backend>(
    name: &str,
    input: &[Tensor<B, 4>],
    span: LevelSpan,
    d_input: usize,
) {
    assert_eq!(
        input.len(),
        span.count,
        "{name}: expected {} input levels ({span:?}), got {}",
        span.count,
        input.len()
    );
    for (i, x) in input.iter().enumerate() {
        let [_, c, _, _] = x.dims();
        assert_eq!(
            c,
            d_input,
            "{name}: input level {} has {c} channels, expected d_input = {d_input}",
            span.first + i
        );
    }
}

impl MgConvConfig {
    /// Input channels of the convolution at output `level`.
    pub fn d_gathered(&self, level: usize) -> usize {
        self.d_input * self.input_levels.parts_for(level)
    }

    /// Trainable parameters: `Σ_l k·Cin_l·Cout + Cout`, plus `2·Cout` per level with batch norm.
    pub fn num_params(&self) -> usize {
        let k: usize = self.geometry.kernel(self.kernel_size).iter().product();
        let norm = if self.norm.is_some() {
            2 * self.d_output
        } else {
            0
        };
        self.output_levels
            .range()
            .map(|l| k * self.d_gathered(l) * self.d_output + self.d_output + norm)
            .sum()
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a span is empty, the kernel size is even, or an output level has no input neighbour.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MgConv<B> {
        check_span(
            "MgConv",
            self.input_levels,
            self.output_levels,
            self.kernel_size,
        );
        assert!(
            self.d_input > 0 && self.d_output > 0,
            "MgConv: channels must be positive"
        );
        let [kh, kw] = self.geometry.kernel(self.kernel_size);
        let (weights, biases) = self
            .output_levels
            .range()
            .map(|l| {
                let p = self
                    .initializer
                    .init([self.d_output, self.d_gathered(l), kh, kw], device);
                (p.weight, p.bias)
            })
            .unzip();
        let norms = level_norms(
            self.norm,
            self.d_output,
            self.norm_epsilon,
            self.output_levels,
            device,
        );
        MgConv {
            weights,
            biases,
            norms,
            input_levels: self.input_levels,
            output_levels: self.output_levels,
            geometry: self.geometry,
            activation: self.activation,
            d_input: self.d_input,
            padding: self.geometry.same_padding(self.kernel_size),
        }
    }
}

impl<B: MgBackend> MgConv<B> {
    /// The input levels.
    pub fn input_levels(&self) -> LevelSpan {
        self.input_levels
    }

    /// The output levels.
    pub fn output_levels(&self) -> LevelSpan {
        self.output_levels
    }

    /// Applies the layer to one batch (batch-norm statistics over all rows).
    ///
    /// # Shapes
    /// - `input[i]`: `[n, d_input, h_i, w_i]` for level `input_levels.first + i`
    /// - returns `output_levels.count` tensors `[n, d_output, h_l, w_l]`
    pub fn forward(&self, input: &[Tensor<B, 4>]) -> Vec<Tensor<B, 4>> {
        self.forward_window(input, 1)
    }

    /// Applies the layer to `steps` time steps stacked time-major (`row = t·batch + b`).
    /// Without batch norm, or with `NormMode::BatchPooled`, this equals [`Self::forward`].
    ///
    /// # Shapes
    /// - `input[i]`: `[steps·batch, d_input, h_i, w_i]`
    /// - returns `output_levels.count` tensors `[steps·batch, d_output, h_l, w_l]`
    pub fn forward_window(&self, input: &[Tensor<B, 4>], steps: usize) -> Vec<Tensor<B, 4>> {
        check_pyramid("MgConv", input, self.input_levels, self.d_input);
        let options = ConvOptions::new([1, 1], self.padding, [1, 1], 1);
        self.output_levels
            .range()
            .enumerate()
            .map(|(k, level)| {
                let x = gather(input, self.input_levels, level, self.geometry);
                let y = conv2d(
                    x,
                    self.weights[k].val(),
                    Some(self.biases[k].val()),
                    options.clone(),
                );
                let y = match self.activation {
                    Activation::Relu => relu(y),
                    Activation::Identity => y,
                };
                match self.norms.get(k) {
                    Some(norm) => norm.forward(y, steps),
                    None => y,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::geometry::levels;
    use burn::nn::Initializer;
    use burn::tensor::TensorData;

    type B = TestBackend;

    /// Levels 0 (1×1, value 2) and 1 (2×2, value 1), one channel, 3×3 kernels of ones, bias 0.5.
    /// Level 0 gathers [2, maxpool(1) = 1]: the single tap is the centre, so 2 + 1 + 0.5 = 3.5.
    /// Level 1 gathers [up(2) = 2, 1]: each 2×2 output sums its 4 in-bounds cells of both
    /// channels, 4·(2 + 1) + 0.5 = 12.5.
    #[test]
    fn forward_matches_hand_computation() {
        let device = Default::default();
        let mut layer = MgConvConfig::new(1, 1, levels(0, 2), levels(0, 2))
            .with_activation(Activation::Identity)
            .with_initializer(ConvInit::Custom(Initializer::Ones))
            .init::<B>(&device);
        for b in layer.biases.iter_mut() {
            *b = Param::from_tensor(Tensor::full([1], 0.5, &device));
        }
        let input = [
            Tensor::<B, 4>::full([1, 1, 1, 1], 2.0, &device),
            Tensor::<B, 4>::ones([1, 1, 2, 2], &device),
        ];
        let out = layer.forward(&input);
        assert_eq!(
            out[0].to_data(),
            TensorData::new(vec![3.5f32], [1, 1, 1, 1])
        );
        assert_eq!(
            out[1].to_data(),
            TensorData::new(vec![12.5f32; 4], [1, 1, 2, 2])
        );
    }

    #[test]
    fn parameter_count_matches_module() {
        // Output levels 1, 2, 3 gather 3, 2 and 1 parts of 8 channels.
        let config = MgConvConfig::new(8, 16, levels(0, 3), levels(1, 3))
            .with_norm(Some(NormMode::BatchPooled));
        let layer = config.init::<B>(&Default::default());
        assert_eq!(config.num_params(), 9 * (24 + 16 + 8) * 16 + 3 * (16 + 32));
        assert_eq!(crate::num_trainable_params(&layer), config.num_params());
        // burn also counts the running mean and variance of each level.
        assert_eq!(layer.num_params(), config.num_params() + 3 * 32);
    }

    #[test]
    #[should_panic(expected = "expected 2 input levels")]
    fn wrong_level_count_panics() {
        let device = Default::default();
        let layer = MgConvConfig::new(1, 1, levels(0, 2), levels(0, 2)).init::<B>(&device);
        layer.forward(&[Tensor::zeros([1, 1, 1, 1], &device)]);
    }

    #[test]
    #[should_panic(expected = "input level 1 has 3 channels, expected d_input = 1")]
    fn channel_mismatch_panics() {
        let device = Default::default();
        let layer = MgConvConfig::new(1, 1, levels(0, 2), levels(0, 2)).init::<B>(&device);
        layer.forward(&[
            Tensor::zeros([1, 1, 1, 1], &device),
            Tensor::zeros([1, 3, 2, 2], &device),
        ]);
    }

    #[test]
    #[should_panic(expected = "output level 3 has no neighbour")]
    fn unreachable_output_level_panics() {
        MgConvConfig::new(1, 1, levels(0, 2), levels(0, 5)).init::<B>(&Default::default());
    }
}
