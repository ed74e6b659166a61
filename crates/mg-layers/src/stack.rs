//! A stack of multigrid conv-LSTM layers with a residual plan: the memory mesh's body.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};

use crate::backend::MgBackend;
use crate::cell::ConvLstmState;
use crate::conv_lstm::{MgConvLstm, MgConvLstmConfig, MgLstmOutput, MgLstmState};
use crate::residual::{Residual, residual_add};

/// Configuration of a [`MgLstmStack`]; build it with [`MgLstmStackConfig::init`].
#[derive(Config, Debug, PartialEq)]
pub struct MgLstmStackConfig {
    /// The layers, input first. Layer `k + 1` takes layer `k`'s output pyramid.
    pub layers: Vec<MgConvLstmConfig>,
    /// Residual connections, applied right after their target layer.
    #[config(default = "Vec::new()")]
    pub residuals: Vec<Residual>,
}

/// The states of every layer of a stack, input layer first.
#[derive(Clone, Debug)]
pub struct StackState<B: Backend> {
    layers: Vec<MgLstmState<B>>,
}

impl<B: Backend> StackState<B> {
    /// A state from one layer state per layer, input layer first.
    pub fn new(layers: Vec<MgLstmState<B>>) -> Self {
        Self { layers }
    }

    /// The layer states, input layer first.
    pub fn layers(&self) -> &[MgLstmState<B>] {
        &self.layers
    }

    /// The layer states by value.
    pub fn into_layers(self) -> Vec<MgLstmState<B>> {
        self.layers
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the state holds no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Every state cut from the autodiff graph (truncated backpropagation).
    pub fn detach(self) -> Self {
        Self::new(self.layers.into_iter().map(MgLstmState::detach).collect())
    }

    /// Every tensor, layer by layer and level by level, cell before hidden (for
    /// checkpoints).
    pub fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        self.layers
            .into_iter()
            .flat_map(MgLstmState::into_levels)
            .flat_map(|s| [s.cell, s.hidden])
            .collect()
    }

    /// Rebuilds a state from [`Self::into_tensors`]'s list, given each layer's level count;
    /// `None` when the list has the wrong length.
    pub fn from_tensors(tensors: Vec<Tensor<B, 4>>, levels: &[usize]) -> Option<Self> {
        if tensors.len() != 2 * levels.iter().sum::<usize>() {
            return None;
        }
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("counted");
        let layers = levels
            .iter()
            .map(|&n| {
                MgLstmState::new(
                    (0..n)
                        .map(|_| ConvLstmState {
                            cell: next(),
                            hidden: next(),
                        })
                        .collect(),
                )
            })
            .collect();
        Some(Self::new(layers))
    }
}

/// Output of a [`MgLstmStack`]: every layer's output pyramid (after residuals) and state.
#[derive(Clone, Debug)]
pub struct StackOutput<B: Backend> {
    /// Per layer, per output level: `[rows, C, h, w]`.
    pub outputs: Vec<Vec<Tensor<B, 4>>>,
    /// Per layer, the states after the last step.
    pub state: StackState<B>,
}

/// A stack of [`MgConvLstm`] layers evaluated layer by layer, with residual connections
/// along same-level grids (zero-padding channels when they grow).
#[derive(Module, Debug)]
pub struct MgLstmStack<B: Backend> {
    /// The layers, input first.
    pub layers: Vec<MgConvLstm<B>>,
    residuals: Vec<Residual>,
}

impl MgLstmStackConfig {
    /// Checks that consecutive layers fit and residuals point backwards.
    ///
    /// # Panics
    /// With a message naming the layers and values that do not fit.
    pub fn check(&self) {
        assert!(!self.layers.is_empty(), "MgLstmStack: no layers");
        for (k, pair) in self.layers.windows(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(
                (a.d_hidden, a.output_levels),
                (b.d_input, b.input_levels),
                "MgLstmStack: layer {} outputs (channels, levels) {:?} but layer {} expects {:?}",
                k,
                (a.d_hidden, a.output_levels),
                k + 1,
                (b.d_input, b.input_levels)
            );
        }
        for r in &self.residuals {
            assert!(
                r.from < r.to && r.to < self.layers.len(),
                "MgLstmStack: residual {r:?} must go from an earlier to a later layer of {}",
                self.layers.len()
            );
            let (from, to) = (&self.layers[r.from], &self.layers[r.to]);
            assert!(
                from.d_hidden <= to.d_hidden,
                "MgLstmStack: residual {r:?} would widen layer {} from {} to {} channels",
                r.to,
                to.d_hidden,
                from.d_hidden
            );
        }
    }

    /// Trainable parameters of all layers.
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(MgConvLstmConfig::num_params).sum()
    }

    /// Memory cells `Σ H·W·C` of all LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.layers.iter().map(MgConvLstmConfig::memory_cells).sum()
    }

    /// Builds the stack.
    ///
    /// # Panics
    /// See [`Self::check`] and [`MgConvLstmConfig::init`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> MgLstmStack<B> {
        self.check();
        MgLstmStack {
            layers: self.layers.iter().map(|l| l.init(device)).collect(),
            residuals: self.residuals.clone(),
        }
    }
}

impl<B: MgBackend> MgLstmStack<B> {
    /// Memory cells `Σ H·W·C` of all LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.layers.iter().map(MgConvLstm::memory_cells).sum()
    }

    /// One time step through every layer (streaming path).
    ///
    /// # Shapes
    /// - `input[i]`: `[batch, d_input, h_i, w_i]` for the first layer's input levels
    pub fn forward_step(
        &self,
        input: &[Tensor<B, 4>],
        state: Option<StackState<B>>,
    ) -> StackOutput<B> {
        self.forward_window(input, 1, state)
    }

    /// `steps` time steps stacked time-major through every layer, layer by layer (each layer
    /// runs its whole window before the next starts; equal to step-by-step evaluation since
    /// no connection goes from a deeper layer to a shallower one).
    ///
    /// # Shapes
    /// - `input[i]`: `[steps·batch, d_input, h_i, w_i]`
    /// - returns outputs `[steps·batch, C_k, h, w]` per layer and level, and the last states
    pub fn forward_window(
        &self,
        input: &[Tensor<B, 4>],
        steps: usize,
        state: Option<StackState<B>>,
    ) -> StackOutput<B> {
        if let Some(state) = &state {
            assert_eq!(
                state.len(),
                self.layers.len(),
                "MgLstmStack: expected states for {} layers, got {}",
                self.layers.len(),
                state.len()
            );
        }
        let mut states = state.map(|s| s.into_layers().into_iter().map(Some).collect::<Vec<_>>());
        let mut outputs: Vec<Vec<Tensor<B, 4>>> = Vec::with_capacity(self.layers.len());
        let mut next_state = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.iter().enumerate() {
            let x = outputs.last().map_or(input, |o| o.as_slice());
            let prev = states.as_mut().and_then(|s| s[k].take());
            let MgLstmOutput {
                outputs: mut out,
                state,
            } = layer.forward_window(x, steps, prev);
            for r in self.residuals.iter().filter(|r| r.to == k) {
                let source = &self.layers[r.from];
                out = residual_add(
                    out,
                    layer.output_levels(),
                    &outputs[r.from],
                    source.output_levels(),
                );
            }
            outputs.push(out);
            next_state.push(state);
        }
        StackOutput {
            outputs,
            state: StackState::new(next_state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use crate::geometry::{LevelSpan, levels};
    use crate::num_trainable_params;
    use burn::tensor::{Distribution, Tolerance};

    type B = TestBackend;

    /// The reference mapping writer (reference-implementation.md §2.3): 7 layers, levels
    /// growing from 3×3 to 48×48, residuals W3←W1, W5←W3, W7←W5.
    fn reference_writer() -> MgLstmStackConfig {
        let layer = |d_in, c, input: LevelSpan, output: LevelSpan| {
            MgConvLstmConfig::new(d_in, c, input, output)
        };
        MgLstmStackConfig::new(vec![
            layer(4, 4, levels(0, 1), levels(0, 2)),
            layer(4, 4, levels(0, 2), levels(0, 2)),
            layer(4, 8, levels(0, 2), levels(0, 3)),
            layer(8, 8, levels(0, 3), levels(0, 3)),
            layer(8, 16, levels(0, 3), levels(0, 4)),
            layer(16, 16, levels(0, 4), levels(0, 4)),
            layer(16, 16, levels(0, 4), levels(0, 5)),
        ])
        .with_residuals(vec![
            Residual { from: 0, to: 2 },
            Residual { from: 2, to: 4 },
            Residual { from: 4, to: 6 },
        ])
    }

    #[test]
    fn reference_writer_counts_match_the_reference() {
        let config = reference_writer();
        let per_layer: Vec<usize> = config.layers.iter().map(|l| l.num_params()).collect();
        assert_eq!(
            per_layer,
            [2_336, 3_488, 12_768, 23_136, 73_984, 129_280, 147_776]
        );
        let memory: Vec<usize> = config.layers.iter().map(|l| l.memory_cells()).collect();
        assert_eq!(memory, [180, 180, 1_512, 1_512, 12_240, 12_240, 49_104]);
        assert_eq!(config.num_params(), 392_768);
        assert_eq!(config.memory_cells(), 76_968);
        let stack = config.init::<B>(&Default::default());
        assert_eq!(num_trainable_params(&stack), 392_768);
        assert_eq!(stack.memory_cells(), 76_968);
    }

    /// The reference writer on one 3×3 observation yields the documented output shapes.
    #[test]
    fn reference_writer_output_shapes() {
        let device = Default::default();
        let stack = reference_writer().init::<B>(&device);
        let out = stack.forward_step(&[Tensor::zeros([2, 4, 3, 3], &device)], None);
        let last: Vec<[usize; 4]> = out.outputs[6].iter().map(|t| t.dims()).collect();
        assert_eq!(
            last,
            [
                [2, 16, 3, 3],
                [2, 16, 6, 6],
                [2, 16, 12, 12],
                [2, 16, 24, 24],
                [2, 16, 48, 48]
            ]
        );
    }

    fn small_stack(norm: Option<crate::NormMode>, peephole: bool) -> MgLstmStackConfig {
        let layer = |d_in, c, input, output| {
            MgConvLstmConfig::new(d_in, c, input, output)
                .with_base_size(2)
                .with_peephole(peephole)
                .with_norm(norm)
        };
        MgLstmStackConfig::new(vec![
            layer(3, 2, levels(0, 1), levels(0, 2)),
            layer(2, 2, levels(0, 2), levels(0, 3)),
            layer(2, 4, levels(0, 3), levels(1, 2)),
        ])
        .with_residuals(vec![Residual { from: 0, to: 2 }])
    }

    fn assert_close(a: &Tensor<B, 4>, b: &Tensor<B, 4>) {
        a.to_data()
            .assert_approx_eq::<f32>(&b.to_data(), Tolerance::absolute(1e-5));
    }

    /// 20 steps as one window equal 20 single steps, starting from a carried (nonzero) state,
    /// with and without peepholes and per-step batch norm.
    #[test]
    fn step_path_equals_window_path() {
        let device = Default::default();
        for (norm, peephole) in [(None, false), (Some(crate::NormMode::BatchPerStep), true)] {
            let stack = small_stack(norm, peephole).init::<B>(&device);
            let (steps, batch) = (20, 3);
            let warmup =
                Tensor::<B, 4>::random([2 * batch, 3, 2, 2], Distribution::Default, &device);
            let carried = stack.forward_window(&[warmup], 2, None).state;
            let x = Tensor::<B, 4>::random(
                [steps * batch, 3, 2, 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let window =
                stack.forward_window(std::slice::from_ref(&x), steps, Some(carried.clone()));
            let mut state = Some(carried);
            for t in 0..steps {
                let out = stack.forward_step(&[x.clone().narrow(0, t * batch, batch)], state);
                for (layer, (w, s)) in window.outputs.iter().zip(&out.outputs).enumerate() {
                    for (level, (w, s)) in w.iter().zip(s).enumerate() {
                        let w = w.clone().narrow(0, t * batch, batch);
                        assert_eq!(w.dims(), s.dims(), "layer {layer} level {level}");
                        assert_close(&w, s);
                    }
                }
                state = Some(out.state);
            }
            let (a, b) = (window.state.into_tensors(), state.unwrap().into_tensors());
            assert_eq!(a.len(), b.len());
            for (w, s) in a.iter().zip(&b) {
                assert_close(w, s);
            }
        }
    }

    /// A state survives the round trip through tensors; a list of the wrong length is refused.
    #[test]
    fn state_round_trips_through_tensors() {
        let device = Default::default();
        let stack = reference_writer().init::<B>(&device);
        let input = [Tensor::<B, 4>::random(
            [2, 4, 3, 3],
            Distribution::Default,
            &device,
        )];
        let state = stack.forward_step(&input, None).state;
        let levels: Vec<usize> = state.layers().iter().map(MgLstmState::len).collect();
        assert_eq!(levels, [2, 2, 3, 3, 4, 4, 5]);
        let tensors = state.clone().into_tensors();
        assert_eq!(tensors.len(), 46);
        let back = StackState::from_tensors(tensors.clone(), &levels).unwrap();
        for (a, b) in back.into_tensors().iter().zip(&tensors) {
            assert_eq!(a.to_data(), b.to_data());
        }
        assert!(StackState::from_tensors(tensors[1..].to_vec(), &levels).is_none());
    }

    #[test]
    #[should_panic(
        expected = "layer 0 outputs (channels, levels) (2, LevelSpan { first: 0, count: 2 }) but layer 1 expects (3,"
    )]
    fn mismatched_layers_panic() {
        let mut config = small_stack(None, false);
        config.layers[1].d_input = 3;
        config.init::<B>(&Default::default());
    }

    #[test]
    #[should_panic(expected = "expected 1 input levels")]
    fn wrong_input_level_count_panics() {
        let device = Default::default();
        let stack = small_stack(None, false).init::<B>(&device);
        stack.forward_step(
            &[
                Tensor::zeros([1, 3, 2, 2], &device),
                Tensor::zeros([1, 3, 4, 4], &device),
            ],
            None,
        );
    }
}
