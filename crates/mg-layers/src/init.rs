//! Weight initialisation schemes for multigrid convolutions and conv-LSTM cells.

use burn::config::Config;
use burn::module::Param;
use burn::nn::Initializer;
use burn::tensor::{Tensor, backend::Backend};

/// Initialisation of an [`MgConv`](crate::MgConv) convolution.
#[derive(Config, Debug, PartialEq)]
pub enum ConvInit {
    /// The reference code's scheme: weight and bias `U(±1/sqrt(fan_in))`, `fan_in = k·Cin`.
    /// It coincides with burn's and PyTorch's default for convolutions.
    Reference,
    /// Any burn initializer, applied to the weight and the bias alike.
    Custom(Initializer),
}

/// Initialisation of a [`ConvLstmCell`](crate::ConvLstmCell) gate convolution.
#[derive(Config, Debug, PartialEq)]
pub enum LstmInit {
    /// The reference code's scheme (TensorFlow 1's `Conv2DLSTMCell`): Glorot-uniform kernel,
    /// `limit = sqrt(6 / (fan_in + fan_out))` with `fan_in = k·(Cin + C)`, `fan_out = k·4C`;
    /// zero bias.
    Reference,
    /// burn's default for convolutions: weight and bias `U(±1/sqrt(fan_in))`.
    Burn,
    /// Any burn initializer, applied to the weight and the bias alike.
    Custom(Initializer),
}

/// A convolution weight `[d_out, d_in, kh, kw]` and bias `[d_out]`.
pub(crate) struct ConvParams<B: Backend> {
    pub weight: Param<Tensor<B, 4>>,
    pub bias: Param<Tensor<B, 1>>,
}

fn uniform_bound(fan_in: usize) -> Initializer {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Initializer::Uniform {
        min: -bound,
        max: bound,
    }
}

fn init_pair<B: Backend>(
    weight_init: &Initializer,
    bias_init: &Initializer,
    shape: [usize; 4],
    device: &B::Device,
) -> ConvParams<B> {
    let k = shape[2] * shape[3];
    let (fan_in, fan_out) = (shape[1] * k, shape[0] * k);
    ConvParams {
        weight: weight_init.init_with(shape, Some(fan_in), Some(fan_out), device),
        bias: bias_init.init_with([shape[0]], Some(fan_in), Some(fan_out), device),
    }
}

impl ConvInit {
    pub(crate) fn init<B: Backend>(&self, shape: [usize; 4], device: &B::Device) -> ConvParams<B> {
        let init = match self {
            ConvInit::Reference => uniform_bound(shape[1] * shape[2] * shape[3]),
            ConvInit::Custom(init) => init.clone(),
        };
        init_pair(&init, &init, shape, device)
    }
}

impl LstmInit {
    pub(crate) fn init<B: Backend>(&self, shape: [usize; 4], device: &B::Device) -> ConvParams<B> {
        match self {
            LstmInit::Reference => init_pair(
                &Initializer::XavierUniform { gain: 1.0 },
                &Initializer::Zeros,
                shape,
                device,
            ),
            LstmInit::Burn => {
                let init = uniform_bound(shape[1] * shape[2] * shape[3]);
                init_pair(&init, &init, shape, device)
            }
            LstmInit::Custom(init) => init_pair(init, init, shape, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    fn range(p: &Param<Tensor<TestBackend, 4>>) -> (f32, f32) {
        let v = p.val();
        (v.clone().min().into_scalar(), v.max().into_scalar())
    }

    #[test]
    fn reference_lstm_init_is_glorot_with_zero_bias() {
        // Cin = 4, C = 4: fan_in = 9·8 = 72, fan_out = 9·16 = 144, limit = sqrt(6/216) = 0.1667.
        let p = LstmInit::Reference.init::<TestBackend>([16, 8, 3, 3], &Default::default());
        let (lo, hi) = range(&p.weight);
        let limit = (6.0f32 / 216.0).sqrt();
        assert!(lo >= -limit && hi <= limit, "{lo} {hi} outside ±{limit}");
        assert!(
            hi > 0.8 * limit && lo < -0.8 * limit,
            "{lo} {hi} do not fill ±{limit}"
        );
        assert_eq!(p.bias.val().abs().max().into_scalar(), 0.0);
    }

    #[test]
    fn reference_conv_init_bounds_weight_and_bias() {
        // Cin = 16: d = 1/sqrt(144) = 1/12.
        let p = ConvInit::Reference.init::<TestBackend>([32, 16, 3, 3], &Default::default());
        let (lo, hi) = range(&p.weight);
        assert!(lo >= -1.0 / 12.0 && hi <= 1.0 / 12.0);
        let b = p.bias.val().abs().max().into_scalar();
        assert!(b <= 1.0 / 12.0 && b > 0.0);
    }
}
