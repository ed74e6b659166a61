//! Multigrid conv-LSTM: gather neighbouring scales, then one conv-LSTM cell per output level.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use crate::backend::MgBackend;
use crate::cell::{ConvLstmCell, ConvLstmCellConfig, ConvLstmState};
use crate::conv::{check_pyramid, check_span};
use crate::geometry::{Geometry, LevelSpan};
use crate::init::LstmInit;
use crate::norm::{MgNorm, NormMode, level_norms};
use crate::resample::gather;

/// The states of a multigrid conv-LSTM layer: one cell state per output level, coarse to
/// fine.
#[derive(Clone, Debug)]
pub struct MgLstmState<B: Backend> {
    levels: Vec<ConvLstmState<B>>,
}

impl<B: Backend> MgLstmState<B> {
    /// A state from one cell state per output level, coarse to fine.
    pub fn new(levels: Vec<ConvLstmState<B>>) -> Self {
        Self { levels }
    }

    /// The cell states, coarse to fine.
    pub fn levels(&self) -> &[ConvLstmState<B>] {
        &self.levels
    }

    /// The cell states, coarse to fine, by value.
    pub fn into_levels(self) -> Vec<ConvLstmState<B>> {
        self.levels
    }

    /// Number of levels.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether the state holds no level.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// The state cut from the autodiff graph.
    pub fn detach(self) -> Self {
        Self::new(self.levels.into_iter().map(ConvLstmState::detach).collect())
    }
}

/// Configuration of a [`MgConvLstm`]; build it with [`MgConvLstmConfig::init`].
#[derive(Config, Debug, PartialEq)]
pub struct MgConvLstmConfig {
    /// Channels of every input level.
    pub d_input: usize,
    /// Hidden channels of every output level.
    pub d_hidden: usize,
    /// Levels of the input pyramid.
    pub input_levels: LevelSpan,
    /// Levels of the output pyramid; each needs a neighbour (`l-1`, `l` or `l+1`) in the input.
    pub output_levels: LevelSpan,
    /// 2D grids or 1D rows.
    #[config(default = "Geometry::Grid2d")]
    pub geometry: Geometry,
    /// Size of level 0 (3 in the paper's 2D models); sets the peephole and memory sizes.
    #[config(default = 3)]
    pub base_size: usize,
    /// Odd kernel size.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Constant added to the forget gate's pre-activation.
    #[config(default = 1.0)]
    pub forget_bias: f64,
    /// Hadamard peephole terms of the paper's equations (the reference code has none).
    #[config(default = false)]
    pub peephole: bool,
    /// Batch normalisation of the output `h` (the recurrent `h` stays unnormalised).
    #[config(default = "None")]
    pub norm: Option<NormMode>,
    /// Added to the variance by the normalisation.
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
    /// Weight initialisation.
    #[config(default = "LstmInit::Reference")]
    pub initializer: LstmInit,
}

/// Output of a [`MgConvLstm`] (and a stack of them): per output level, the hidden states
/// (normalised when the layer has batch norm) and the next recurrent state.
#[derive(Clone, Debug)]
pub struct MgLstmOutput<B: Backend> {
    /// `[rows, d_hidden, h_l, w_l]` per output level, coarse to fine.
    pub outputs: Vec<Tensor<B, 4>>,
    /// The states after the last step.
    pub state: MgLstmState<B>,
}

/// A multigrid conv-LSTM layer (paper Figure 1, right): output level `l` gathers input levels
/// `l-1`, `l`, `l+1` and feeds them to its own [`ConvLstmCell`].
#[derive(Module, Debug)]
pub struct MgConvLstm<B: Backend> {
    /// One cell per output level, coarse to fine.
    pub cells: Vec<ConvLstmCell<B>>,
    /// Output normalisations, one per output level (empty without batch norm).
    pub norms: Vec<MgNorm<B>>,
    input_levels: LevelSpan,
    output_levels: LevelSpan,
    geometry: Geometry,
    d_input: usize,
    d_hidden: usize,
    base_size: usize,
}

impl MgConvLstmConfig {
    /// Configuration of the cell of output `level`.
    pub(crate) fn cell_config(&self, level: usize) -> ConvLstmCellConfig {
        let size = self.geometry.level_size(self.base_size, level);
        ConvLstmCellConfig::new(
            self.d_input * self.input_levels.parts_for(level),
            self.d_hidden,
        )
        .with_geometry(self.geometry)
        .with_kernel_size(self.kernel_size)
        .with_forget_bias(self.forget_bias)
        .with_peephole(self.peephole.then_some(size))
        .with_initializer(self.initializer.clone())
    }

    /// Trainable parameters of all cells (and batch norms).
    pub fn num_params(&self) -> usize {
        let norm = if self.norm.is_some() {
            2 * self.d_hidden
        } else {
            0
        };
        self.output_levels
            .range()
            .map(|l| self.cell_config(l).num_params() + norm)
            .sum()
    }

    /// Memory cells `Σ_l H_l·W_l·C` of the LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.geometry.cells(self.base_size, self.output_levels) * self.d_hidden
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a span is empty, a channel count is zero, the kernel size is even, or an output
    /// level has no input neighbour.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MgConvLstm<B> {
        check_span(
            "MgConvLstm",
            self.input_levels,
            self.output_levels,
            self.kernel_size,
        );
        let cells = self
            .output_levels
            .range()
            .map(|l| self.cell_config(l).init(device))
            .collect();
        let norms = level_norms(
            self.norm,
            self.d_hidden,
            self.norm_epsilon,
            self.output_levels,
            device,
        );
        MgConvLstm {
            cells,
            norms,
            input_levels: self.input_levels,
            output_levels: self.output_levels,
            geometry: self.geometry,
            d_input: self.d_input,
            d_hidden: self.d_hidden,
            base_size: self.base_size,
        }
    }
}

impl<B: MgBackend> MgConvLstm<B> {
    /// The input levels.
    pub fn input_levels(&self) -> LevelSpan {
        self.input_levels
    }

    /// The output levels.
    pub fn output_levels(&self) -> LevelSpan {
        self.output_levels
    }

    /// Hidden channels of every output level.
    pub fn d_hidden(&self) -> usize {
        self.d_hidden
    }

    /// Memory cells `Σ_l H_l·W_l·C` of the LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.geometry.cells(self.base_size, self.output_levels) * self.d_hidden
    }

    fn check_state(&self, state: &Option<MgLstmState<B>>) {
        if let Some(state) = state {
            assert_eq!(
                state.len(),
                self.output_levels.count,
                "MgConvLstm: expected {} cell states ({:?}), got {}",
                self.output_levels.count,
                self.output_levels,
                state.len()
            );
        }
    }

    fn normalise(&self, k: usize, hidden: Tensor<B, 4>, steps: usize) -> Tensor<B, 4> {
        match self.norms.get(k) {
            Some(norm) => norm.forward(hidden, steps),
            None => hidden,
        }
    }

    /// One time step (streaming path).
    ///
    /// # Shapes
    /// - `input[i]`: `[batch, d_input, h_i, w_i]` for level `input_levels.first + i`
    /// - `state`: one state per output level, `[batch, d_hidden, h_l, w_l]`; zeros when `None`
    pub fn forward_step(
        &self,
        input: &[Tensor<B, 4>],
        state: Option<MgLstmState<B>>,
    ) -> MgLstmOutput<B> {
        self.forward_window(input, 1, state)
    }

    /// `steps` time steps stacked time-major (`row = t·batch + b`): the gather and the
    /// input-to-gates convolutions run once over all rows, only the hidden-to-gates
    /// convolutions run step by step. This saves kernel launches (what a GPU needs); on a CPU
    /// backend stepping is faster as measured (docs/BENCHMARKS.md).
    ///
    /// # Shapes
    /// - `input[i]`: `[steps·batch, d_input, h_i, w_i]`
    /// - `state`: one state per output level, `[batch, d_hidden, h_l, w_l]`; zeros when `None`
    /// - returns outputs `[steps·batch, d_hidden, h_l, w_l]` and the state after the last step
    pub fn forward_window(
        &self,
        input: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MgLstmState<B>>,
    ) -> MgLstmOutput<B> {
        check_pyramid("MgConvLstm", input, self.input_levels, self.d_input);
        self.check_state(&state);
        let mut states = state.map(|s| s.into_levels().into_iter().map(Some).collect::<Vec<_>>());
        let (outputs, levels): (Vec<_>, Vec<_>) = self
            .output_levels
            .range()
            .enumerate()
            .map(|(k, level)| {
                let x = gather(input, self.input_levels, level, self.geometry);
                let prev = states.as_mut().and_then(|s| s[k].take());
                let (hidden, next) = if steps == 1 {
                    let next = self.cells[k].step(x, prev);
                    (next.hidden.clone(), next)
                } else {
                    self.cells[k].forward_window(x, steps, prev)
                };
                (self.normalise(k, hidden, steps), next)
            })
            .unzip();
        MgLstmOutput {
            outputs,
            state: MgLstmState::new(levels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::geometry::levels;

    type B = TestBackend;

    /// A 1D pyramid 1×1, 1×2, 1×4, 1×8 (bAbI-style rows): kernels are 1×3 and the memory is
    /// (1 + 2 + 4 + 8)·C.
    #[test]
    fn one_dimensional_pyramid() {
        let device = Default::default();
        let config = MgConvLstmConfig::new(2, 3, levels(0, 4), levels(0, 4))
            .with_geometry(Geometry::Grid1d)
            .with_base_size(1);
        assert_eq!(config.memory_cells(), 15 * 3);
        // Levels gather 2, 3, 3, 2 parts of 2 channels; kernel 1×3.
        let expected: usize = [4, 6, 6, 4].iter().map(|cin| 3 * (cin + 3) * 12 + 12).sum();
        assert_eq!(config.num_params(), expected);
        let layer = config.init::<B>(&device);
        let input: Vec<Tensor<B, 4>> = (0..4)
            .map(|l| Tensor::ones([5, 2, 1, 1 << l], &device))
            .collect();
        let out = layer.forward_step(&input, None);
        let dims: Vec<[usize; 4]> = out.outputs.iter().map(|o| o.dims()).collect();
        assert_eq!(
            dims,
            [[5, 3, 1, 1], [5, 3, 1, 2], [5, 3, 1, 4], [5, 3, 1, 8]]
        );
    }

    /// A shrinking layer that keeps the finest levels (the mapping reader's "reverse" layers):
    /// input levels 0..5, output levels 1..5; level 1 gathers three parts, level 4 two.
    #[test]
    fn shrinking_layer_keeps_the_finest_levels() {
        let config = MgConvLstmConfig::new(2, 2, levels(0, 5), levels(1, 4));
        let parts: Vec<usize> = config
            .output_levels
            .range()
            .map(|l| config.cell_config(l).d_input / 2)
            .collect();
        assert_eq!(parts, [3, 3, 3, 2]);
    }

    #[test]
    #[should_panic(expected = "expected 2 cell states")]
    fn wrong_state_count_panics() {
        let device = Default::default();
        let layer = MgConvLstmConfig::new(1, 1, levels(0, 1), levels(0, 2)).init::<B>(&device);
        let input = [Tensor::<B, 4>::zeros([1, 1, 3, 3], &device)];
        let out = layer.forward_step(&input, None);
        layer.forward_step(
            &input,
            Some(MgLstmState::new(out.state.levels()[..1].to_vec())),
        );
    }
}
