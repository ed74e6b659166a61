//! The DNC controller: one LSTM layer in the form of Sonnet 1's `snt.LSTM`.

use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};

use mg_layers::MgBackend;
use mg_layers::backend::lstm_step;

use super::init::truncated_normal;

/// Constant added to the forget gate's pre-activation in the forward pass (not stored).
pub const FORGET_BIAS: f64 = 1.0;

/// An LSTM cell with one fused affine map of `[input; h_{t−1}]` to the four gates, split
/// `(i, j, f, o)`: `c = σ(f + 1)·c_{t−1} + σ(i)·tanh(j)`, `h = tanh(c)·σ(o)`. No peepholes.
/// Weight and bias start truncated normal with `std = 1/√(d_input + C)`.
#[derive(Module, Debug)]
pub struct Controller<B: Backend> {
    /// Gate weight `[d_input + C, 4·C]`; rows `[input; h_{t−1}]`, columns `(i, j, f, o)`.
    pub weight: Param<Tensor<B, 2>>,
    /// Gate bias `[4·C]`, without the forget bias.
    pub bias: Param<Tensor<B, 1>>,
    d_input: usize,
    d_hidden: usize,
}

/// The controller's parameters prepared once for a window of steps: the weight split into
/// its rows for `x` and for the recurrent part `[r_{t−1}; h_{t−1}]`, and the bias (the
/// forget bias is added in the update, [`lstm_step`]).
pub(crate) struct ControllerWindow<B: Backend> {
    input_weight: Tensor<B, 2>,
    recurrent_weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
    d_hidden: usize,
}

/// Builds a controller reading `d_input` values per step with `d_hidden` units.
pub(crate) fn controller<B: Backend>(
    d_input: usize,
    d_hidden: usize,
    device: &B::Device,
) -> Controller<B> {
    let std = 1.0 / ((d_input + d_hidden) as f64).sqrt();
    Controller {
        weight: Param::from_tensor(truncated_normal(
            [d_input + d_hidden, 4 * d_hidden],
            std,
            device,
        )),
        bias: Param::from_tensor(truncated_normal([4 * d_hidden], std, device)),
        d_input,
        d_hidden,
    }
}

impl<B: MgBackend> Controller<B> {
    /// Values read per step (the LSTM input, without `h`).
    pub fn d_input(&self) -> usize {
        self.d_input
    }

    /// Hidden units `C`.
    pub fn d_hidden(&self) -> usize {
        self.d_hidden
    }

    /// One LSTM step.
    ///
    /// # Shapes
    /// - `input`: `[batch, d_input]`
    /// - `hidden`, `cell`: `[batch, C]`
    /// - returns the new `(hidden, cell)`, `[batch, C]` each
    pub fn forward(
        &self,
        input: Tensor<B, 2>,
        hidden: Tensor<B, 2>,
        cell: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let window = self.window(self.d_input);
        window.step_recurrent(window.input_gates(input), hidden, cell)
    }

    /// Splits the weight rows after the first `d_x` inputs; the rest of the input (here the
    /// previous read words) and `h` form the recurrent part.
    pub(crate) fn window(&self, d_x: usize) -> ControllerWindow<B> {
        let rows = self.d_input + self.d_hidden;
        let weight = self.weight.val();
        ControllerWindow {
            input_weight: weight.clone().narrow(0, 0, d_x),
            recurrent_weight: weight.narrow(0, d_x, rows - d_x),
            bias: self.bias.val(),
            d_hidden: self.d_hidden,
        }
    }
}

impl<B: MgBackend> ControllerWindow<B> {
    /// `x·W_x + b` for many rows at once, e.g. all `T·B` rows of a window.
    ///
    /// # Shapes
    /// - `x`: `[n, d_x]`
    /// - returns `[n, 4·C]`
    pub(crate) fn input_gates(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.input_weight.clone()) + self.bias.clone().unsqueeze()
    }

    /// One step from precomputed input gates and the recurrent input.
    ///
    /// # Shapes
    /// - `input_gates`: `[batch, 4·C]`
    /// - `recurrent`: `[batch, d_input − d_x + C]`, `[r_{t−1}; h_{t−1}]` in that order
    /// - `cell`: `[batch, C]`
    /// - returns `(hidden, cell)`, `[batch, C]` each
    pub(crate) fn step_recurrent(
        &self,
        input_gates: Tensor<B, 2>,
        recurrent: Tensor<B, 2>,
        cell: Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let gates = input_gates + recurrent.matmul(self.recurrent_weight.clone());
        let (batch, c) = (gates.dims()[0], self.d_hidden);
        // The update as one node: burn's ops on narrowed views would walk each gate element by
        // element, forward and backward.
        let (cell, hidden) = lstm_step(
            gates.reshape([batch, 4 * c, 1, 1]),
            cell.reshape([batch, c, 1, 1]),
            FORGET_BIAS,
        );
        (hidden.reshape([batch, c]), cell.reshape([batch, c]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    type B = TestBackend;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// A bias of +20 on one gate only: with the forget gate saturated and `i = σ(0)`,
    /// `j = tanh(0) = 0`, the cell keeps `c_prev`; with the candidate `j` at +20 and no
    /// forget gate input, `c = σ(1)·c_prev + σ(0)·tanh(20)`.
    #[test]
    fn gates_split_in_order_i_j_f_o_with_forget_bias() {
        let device = Default::default();
        let mut cell = controller::<B>(1, 1, &device);
        cell.weight = Param::from_tensor(Tensor::zeros([2, 4], &device));
        let zero = || Tensor::<B, 2>::zeros([1, 1], &device);
        let prev = || Tensor::<B, 2>::full([1, 1], 0.8, &device);
        let run = |cell: &Controller<B>| {
            let (h, c) = cell.forward(zero(), zero(), prev());
            (h.into_scalar() as f64, c.into_scalar() as f64)
        };

        cell.bias = Param::from_tensor(Tensor::from_data([0.0f32, 0.0, 20.0, 0.0], &device));
        let (_, c) = run(&cell);
        assert!(
            (c - 0.8).abs() < 1e-6,
            "forget gate is not the third chunk: c = {c}"
        );

        cell.bias = Param::from_tensor(Tensor::from_data([0.0f32, 20.0, 0.0, 0.0], &device));
        let (h, c) = run(&cell);
        let expected = sig(1.0) * 0.8 + 0.5 * 20f64.tanh();
        assert!((c - expected).abs() < 1e-6, "c = {c}, expected {expected}");
        assert!((h - expected.tanh() * 0.5).abs() < 1e-6, "h = {h}");
    }

    #[test]
    fn init_is_truncated_at_two_std() {
        let device = Default::default();
        let cell = controller::<B>(60, 40, &device);
        let std = 0.1;
        let w = cell.weight.val();
        let max = w.clone().abs().max().into_scalar() as f64;
        assert!(max <= 2.0 * std + 1e-7, "max |w| = {max}");
        assert!(max > 1.9 * std, "max |w| = {max} does not reach the bound");
        let n = (100 * 160) as f64;
        let var = (w.clone() * w).sum().into_scalar() as f64 / n;
        // The variance of N(0, σ²) truncated at ±2σ is 0.774·σ².
        assert!((var / (std * std) - 0.774).abs() < 0.03, "var = {var}");
        let b = cell.bias.val().abs().max().into_scalar() as f64;
        assert!(b > 0.0 && b <= 2.0 * std + 1e-7, "bias max {b}");
    }
}
