//! The convolutional LSTM cell of the memory mesh.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, backend::Backend};

use crate::backend::{MgBackend, cat_channels, conv2d, lstm_step, split_steps};
use crate::geometry::Geometry;
use crate::init::LstmInit;

/// The state `(c, h)` of one conv-LSTM cell.
#[derive(Clone, Debug)]
pub struct ConvLstmState<B: Backend> {
    /// Cell state `c`, `[batch, d_hidden, h, w]`.
    pub cell: Tensor<B, 4>,
    /// Hidden state `h`, `[batch, d_hidden, h, w]`.
    pub hidden: Tensor<B, 4>,
}

impl<B: Backend> ConvLstmState<B> {
    /// The zero state of a `[batch, d_hidden, h, w]` cell.
    pub fn zeros(shape: [usize; 4], device: &B::Device) -> Self {
        let zeros = Tensor::zeros(shape, device);
        Self {
            cell: zeros.clone(),
            hidden: zeros,
        }
    }

    /// The same state cut from the autodiff graph, for truncated backpropagation through time.
    pub fn detach(self) -> Self {
        Self {
            cell: self.cell.detach(),
            hidden: self.hidden.detach(),
        }
    }
}

/// Configuration of a [`ConvLstmCell`]; build it with [`ConvLstmCellConfig::init`].
#[derive(Config, Debug, PartialEq)]
pub struct ConvLstmCellConfig {
    /// Channels of the input `x`.
    pub d_input: usize,
    /// Channels of the hidden and cell states.
    pub d_hidden: usize,
    /// 2D grids or 1D rows.
    #[config(default = "Geometry::Grid2d")]
    pub geometry: Geometry,
    /// Odd kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Constant added to the forget gate's pre-activation (not trained).
    #[config(default = 1.0)]
    pub forget_bias: f64,
    /// Spatial size `[h, w]` of the Hadamard peephole weights `W_ci`, `W_cf`, `W_co` of the
    /// paper's equations; `None` (the reference code) has no peepholes.
    #[config(default = "None")]
    pub peephole: Option<[usize; 2]>,
    /// Weight initialisation.
    #[config(default = "LstmInit::Reference")]
    pub initializer: LstmInit,
}

/// A convolutional LSTM cell.
///
/// One convolution over `[x, h_prev]` (in that channel order) gives `4·C` gate channels,
/// split `(i, g, f, o)`:
/// `c = σ(f + forget_bias)·c_prev + σ(i)·tanh(g)`, `h = σ(o)·tanh(c)`.
/// With peepholes, `i += W_ci∘c_prev`, `f += W_cf∘c_prev` and `o += W_co∘c`.
#[derive(Module, Debug)]
pub struct ConvLstmCell<B: Backend> {
    /// Gate kernel `[4·C, d_input + C, kh, kw]`.
    pub weight: Param<Tensor<B, 4>>,
    /// Gate bias `[4·C]`.
    pub bias: Param<Tensor<B, 1>>,
    /// Peephole weights `[3, C, h, w]` for the input, forget and output gates.
    pub peephole: Option<Param<Tensor<B, 4>>>,
    d_input: usize,
    d_hidden: usize,
    padding: [usize; 2],
    forget_bias: f64,
}

impl ConvLstmCellConfig {
    /// Trainable parameters: `k·(Cin + C)·4C + 4C`, plus `3·C·h·w` with peepholes.
    pub fn num_params(&self) -> usize {
        let k: usize = self.geometry.kernel(self.kernel_size).iter().product();
        let c = self.d_hidden;
        let peep = self.peephole.map_or(0, |[h, w]| 3 * c * h * w);
        k * (self.d_input + c) * 4 * c + 4 * c + peep
    }

    /// Builds the cell; peephole weights start at zero.
    ///
    /// # Panics
    /// If a channel count is zero or the kernel size is even.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvLstmCell<B> {
        assert!(
            self.d_input > 0 && self.d_hidden > 0,
            "ConvLstmCell: channels must be positive, got d_input = {}, d_hidden = {}",
            self.d_input,
            self.d_hidden
        );
        assert!(
            self.kernel_size % 2 == 1,
            "ConvLstmCell: kernel_size must be odd, got {}",
            self.kernel_size
        );
        let [kh, kw] = self.geometry.kernel(self.kernel_size);
        let c = self.d_hidden;
        let params = self
            .initializer
            .init([4 * c, self.d_input + c, kh, kw], device);
        let peephole = self
            .peephole
            .map(|[h, w]| Param::from_tensor(Tensor::zeros([3, c, h, w], device)));
        ConvLstmCell {
            weight: params.weight,
            bias: params.bias,
            peephole,
            d_input: self.d_input,
            d_hidden: c,
            padding: self.geometry.same_padding(self.kernel_size),
            forget_bias: self.forget_bias,
        }
    }
}

impl<B: MgBackend> ConvLstmCell<B> {
    /// Channels of the hidden and cell states.
    pub fn d_hidden(&self) -> usize {
        self.d_hidden
    }

    fn options(&self) -> ConvOptions<2> {
        ConvOptions::new([1, 1], self.padding, [1, 1], 1)
    }

    fn zero_state(&self, x: &Tensor<B, 4>) -> ConvLstmState<B> {
        let [n, _, h, w] = x.dims();
        ConvLstmState::zeros([n, self.d_hidden, h, w], &x.device())
    }

    fn check_input(&self, x: &Tensor<B, 4>) {
        let [_, c, _, _] = x.dims();
        assert_eq!(
            c, self.d_input,
            "ConvLstmCell: input has {c} channels, expected d_input = {}",
            self.d_input
        );
    }

    /// One time step: a single convolution over `[x, h_prev]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, d_input, h, w]`
    /// - `state`: `[batch, d_hidden, h, w]` each; zeros when `None`
    pub fn step(&self, x: Tensor<B, 4>, state: Option<ConvLstmState<B>>) -> ConvLstmState<B> {
        self.check_input(&x);
        let state = state.unwrap_or_else(|| self.zero_state(&x));
        let input = cat_channels(vec![x, state.hidden]);
        let gates = conv2d(
            input,
            self.weight.val(),
            Some(self.bias.val()),
            self.options(),
        );
        self.update(gates, state.cell)
    }

    /// The input-to-gates convolution (with bias; the forget bias is added in the update) of
    /// many rows at once, e.g. all `T·B` rows of a window.
    ///
    /// # Shapes
    /// - `x`: `[n, d_input, h, w]`
    /// - returns `[n, 4·d_hidden, h, w]`
    pub fn input_gates(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.check_input(&x);
        let w_x = self.weight.val().narrow(1, 0, self.d_input);
        conv2d(x, w_x, Some(self.bias.val()), self.options())
    }

    /// One time step from precomputed input gates ([`Self::input_gates`]); only the
    /// hidden-to-gates convolution runs here. A zero `state` skips that convolution.
    pub fn step_from_gates(
        &self,
        input_gates: Tensor<B, 4>,
        state: Option<ConvLstmState<B>>,
    ) -> ConvLstmState<B> {
        self.step_from_gates_with(|| self.recurrent_weight(), input_gates, state)
    }

    /// The hidden-to-gates part of the weight, `[4·d_hidden, d_hidden, kh, kw]`.
    fn recurrent_weight(&self) -> Tensor<B, 4> {
        self.weight.val().narrow(1, self.d_input, self.d_hidden)
    }

    /// [`Self::step_from_gates`] with the hidden-to-gates weight from `w_h` (called only for a
    /// carried state), so that a window cuts it from the weight once, not once per step.
    fn step_from_gates_with(
        &self,
        w_h: impl FnOnce() -> Tensor<B, 4>,
        input_gates: Tensor<B, 4>,
        state: Option<ConvLstmState<B>>,
    ) -> ConvLstmState<B> {
        match state {
            None => {
                let [n, _, h, w] = input_gates.dims();
                let cell = Tensor::zeros([n, self.d_hidden, h, w], &input_gates.device());
                self.update(input_gates, cell)
            }
            Some(state) => {
                let gates = input_gates + conv2d(state.hidden, w_h(), None, self.options());
                self.update(gates, state.cell)
            }
        }
    }

    /// `steps` time steps stacked time-major (`row = t·batch + b`): the input-to-gates
    /// convolution runs once over all rows, the hidden-to-gates one step by step.
    ///
    /// # Shapes
    /// - `x`: `[steps·batch, d_input, h, w]`
    /// - returns the hidden states `[steps·batch, d_hidden, h, w]` and the last state
    pub fn forward_window(
        &self,
        x: Tensor<B, 4>,
        steps: usize,
        state: Option<ConvLstmState<B>>,
    ) -> (Tensor<B, 4>, ConvLstmState<B>) {
        let [n, _, _, _] = x.dims();
        assert!(
            steps > 0 && n % steps == 0,
            "ConvLstmCell: {n} rows do not split into {steps} time steps"
        );
        let gates = self.input_gates(x);
        let w_h = self.recurrent_weight();
        let mut state = state;
        let mut hidden = Vec::with_capacity(steps);
        for gates in split_steps(gates, steps) {
            let next = self.step_from_gates_with(|| w_h.clone(), gates, state);
            hidden.push(next.hidden.clone());
            state = Some(next);
        }
        (Tensor::cat(hidden, 0), state.expect("at least one step"))
    }

    /// The LSTM update from gate pre-activations (without the forget bias, added here).
    ///
    /// The forget bias is a constant of the update, not folded into the bias: a bias derived
    /// from the parameter at every step would start a new autodiff graph at every step, which
    /// burn merges into the window's at a cost that grows with the window.
    fn update(&self, gates: Tensor<B, 4>, cell: Tensor<B, 4>) -> ConvLstmState<B> {
        let c = self.d_hidden;
        let Some(peephole) = &self.peephole else {
            // Both states in one pass, both gradients in one pass (MgBackend::lstm_step).
            let (cell, hidden) = lstm_step(gates, cell, self.forget_bias);
            return ConvLstmState { cell, hidden };
        };
        let p = peephole.val();
        let [_, _, h, w] = p.dims();
        let part = |k: usize| p.clone().narrow(0, k, 1).reshape([1, c, h, w]);
        let gate = |k: usize| gates.clone().narrow(1, k * c, c);
        let i = sigmoid(gate(0) + part(0) * cell.clone());
        let f = sigmoid(gate(2).add_scalar(self.forget_bias) + part(1) * cell.clone());
        let cell = f * cell + i * gate(1).tanh();
        let o = sigmoid(gate(3) + part(2) * cell.clone());
        let hidden = o * cell.clone().tanh();
        ConvLstmState { cell, hidden }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::nn::Initializer;
    use burn::tensor::{TensorData, Tolerance};

    type B = TestBackend;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// 1×1 grids, one input and one hidden channel, every weight and bias 0.5, x = 1,
    /// zero state. The 3×3 kernel sees only its centre tap, so every gate pre-activation is
    /// 0.5·1 + 0.5·0 + 0.5 = 1:
    /// c = σ(1 + 1)·0 + σ(1)·tanh(1) = 0.731059·0.761594 = 0.556770,
    /// h = σ(1)·tanh(c) = 0.731059·0.505580 = 0.369609.
    /// A second step with x = 1 and h = 0.369609 gives pre-activations 1.184805 and
    /// c2 = σ(2.184805)·c + σ(1.184805)·tanh(1.184805).
    #[test]
    fn two_steps_match_hand_computation() {
        let device = Default::default();
        let cell = ConvLstmCellConfig::new(1, 1)
            .with_initializer(LstmInit::Custom(Initializer::Constant { value: 0.5 }))
            .init::<B>(&device);
        let x = Tensor::<B, 4>::ones([1, 1, 1, 1], &device);
        let s1 = cell.step(x.clone(), None);
        let c1 = sig(1.0) * 1f64.tanh();
        let h1 = sig(1.0) * c1.tanh();
        let tol = Tolerance::<f32>::absolute(1e-6);
        s1.cell
            .to_data()
            .assert_approx_eq::<f32>(&TensorData::from([[[[c1 as f32]]]]), tol);
        s1.hidden
            .to_data()
            .assert_approx_eq::<f32>(&TensorData::from([[[[h1 as f32]]]]), tol);

        let s2 = cell.step(x, Some(s1));
        let a = 0.5 + 0.5 * h1 + 0.5;
        let c2 = sig(a + 1.0) * c1 + sig(a) * a.tanh();
        let h2 = sig(a) * c2.tanh();
        s2.cell
            .to_data()
            .assert_approx_eq::<f32>(&TensorData::from([[[[c2 as f32]]]]), tol);
        s2.hidden
            .to_data()
            .assert_approx_eq::<f32>(&TensorData::from([[[[h2 as f32]]]]), tol);
    }

    /// Gate order (i, g, f, o): a bias of +20 on one gate only saturates that gate.
    /// With f saturated and a nonzero previous cell, c = c_prev + σ(0)·tanh(0) = c_prev.
    #[test]
    fn gates_split_in_order_i_g_f_o() {
        let device = Default::default();
        let mut cell = ConvLstmCellConfig::new(1, 1)
            .with_initializer(LstmInit::Custom(Initializer::Zeros))
            .init::<B>(&device);
        cell.bias = Param::from_tensor(Tensor::from_data([0.0f32, 0.0, 20.0, 0.0], &device));
        let state = ConvLstmState {
            cell: Tensor::full([1, 1, 1, 1], 0.8, &device),
            hidden: Tensor::zeros([1, 1, 1, 1], &device),
        };
        let next = cell.step(Tensor::zeros([1, 1, 1, 1], &device), Some(state));
        let c: f32 = next.cell.into_scalar();
        assert!(
            (c - 0.8).abs() < 1e-6,
            "forget gate is not the third chunk: c = {c}"
        );
    }

    /// With peepholes `W_ci = W_cf = W_co = 1`, zero kernels and bias, x = 0 and c_prev = 1:
    /// i = σ(1), f = σ(1 + 1), g = tanh(0) = 0, so c = σ(2); h = σ(c)·tanh(c).
    #[test]
    fn peepholes_follow_the_paper_equations() {
        let device = Default::default();
        let mut cell = ConvLstmCellConfig::new(1, 1)
            .with_peephole(Some([1, 1]))
            .with_initializer(LstmInit::Custom(Initializer::Zeros))
            .init::<B>(&device);
        cell.peephole = Some(Param::from_tensor(Tensor::ones([3, 1, 1, 1], &device)));
        let state = ConvLstmState {
            cell: Tensor::ones([1, 1, 1, 1], &device),
            hidden: Tensor::zeros([1, 1, 1, 1], &device),
        };
        let next = cell.step(Tensor::zeros([1, 1, 1, 1], &device), Some(state));
        let c = sig(2.0);
        let h = sig(c) * c.tanh();
        let got: f32 = next.hidden.into_scalar();
        assert!((got as f64 - h).abs() < 1e-6, "{got} vs {h}");
        let config = ConvLstmCellConfig::new(1, 1).with_peephole(Some([1, 1]));
        assert_eq!(cell.num_params(), config.num_params());
    }
}
