//! The Differentiable Neural Computer baseline, following DeepMind's reference implementation
//! (`google-deepmind/dnc`): an LSTM controller, a memory access module with content,
//! allocation and temporal-link addressing, and an output layer.
//!
//! Differences from the Nature paper follow the reference code: softplus key strengths
//! (switchable, [`StrengthOp`]), read modes laid out `[backward × K, forward × K, content]`
//! ([`ReadModeOrder`]), `K ≥ 1` write heads, one affine map per interface field, a single
//! LSTM layer with forget bias +1, and optional forward value clipping of `h`, `c` and `y`
//! (the reference's `clip_value`; the paper's clipping of activation gradients is not used).
//! The link matrix is dense (`K·N²` per batch element).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use mg_models::DncConfig;
//!
//! // The reference repeat-copy model: X = 6, Y = 5, C = 64, N = W = 16, R = 4, K = 1.
//! let config = DncConfig::new(6, 5, 64, 16, 16).with_clip_value(20.0);
//! config.validate().unwrap();
//! assert_eq!(config.num_params(), 43_980);
//! let device = Default::default();
//! let dnc = config.init::<Flex>(&device);
//! // 3 steps of a batch of 2, time-major rows `t·batch + b`.
//! let x = Tensor::<Flex, 2>::zeros([3 * 2, 6], &device);
//! let (y, state) = dnc.forward_window(x, 3, None);
//! assert_eq!(y.dims(), [6, 5]);
//! assert_eq!(state.memory.dims(), [2, 16, 16]);
//! ```

mod access;
mod addressing;
mod controller;
mod init;
mod kind;

pub use access::{
    Controls, Interface, ReadModeOrder, ReadModes, access_step, interface_size, read_weights,
};
pub use addressing::{
    EPSILON, StrengthOp, allocation, content_weights, cosine_similarity, directional_read_weights,
    erase_and_write, link_update, precedence_update, softplus, usage_update, weighted_softmax,
    write_allocation_weights, write_weighting, write_weights,
};
pub use controller::{Controller, FORGET_BIAS};

use crate::ModelError;
use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::backend::split_steps;

/// Configuration of a [`Dnc`]; build it with [`DncConfig::init`] after [`DncConfig::validate`].
#[derive(Config, Debug, PartialEq)]
pub struct DncConfig {
    /// Input values per step `X`.
    pub input_size: usize,
    /// Output values per step `Y`.
    pub output_size: usize,
    /// LSTM controller width `C`.
    pub controller_size: usize,
    /// Memory slots `N`.
    pub memory_slots: usize,
    /// Word size `W`.
    pub word_size: usize,
    /// Read heads `R`.
    #[config(default = 4)]
    pub read_heads: usize,
    /// Write heads `K`.
    #[config(default = 1)]
    pub write_heads: usize,
    /// Forward clamp of `h`, `c` and `y` to `±clip_value`; 0 turns clipping off (the
    /// reference's default; its training script uses 20).
    #[config(default = 0.0)]
    pub clip_value: f64,
    /// Key strength nonlinearity.
    #[config(default = "StrengthOp::Softplus")]
    pub strength: StrengthOp,
    /// Layout of the read-mode logits ([`ReadModeOrder::Paper`] needs one write head).
    #[config(default = "ReadModeOrder::Code")]
    pub read_mode_order: ReadModeOrder,
}

impl DncConfig {
    /// Checks the configuration, naming the first bad field and the expected value.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = [
            ("input_size", self.input_size),
            ("output_size", self.output_size),
            ("controller_size", self.controller_size),
            ("memory_slots", self.memory_slots),
            ("word_size", self.word_size),
            ("read_heads", self.read_heads),
            ("write_heads", self.write_heads),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ModelError::invalid(name, "is 0; expected at least 1"));
            }
        }
        if !(self.clip_value >= 0.0 && self.clip_value.is_finite()) {
            return Err(ModelError::invalid(
                "clip_value",
                format!(
                    "is {}; expected a finite value >= 0 (0 turns clipping off)",
                    self.clip_value
                ),
            ));
        }
        if self.read_mode_order == ReadModeOrder::Paper && self.write_heads != 1 {
            return Err(ModelError::invalid(
                "write_heads",
                format!(
                    "is {}; `read_mode_order` Paper needs 1 write head",
                    self.write_heads
                ),
            ));
        }
        Ok(())
    }

    /// Memory size `N·W` (values per batch element).
    pub fn memory_size(&self) -> usize {
        self.memory_slots * self.word_size
    }

    /// Width of the interface vector: `R·W + 3·K·W + 3·K + 3·R + 2·R·K`.
    pub fn interface_size(&self) -> usize {
        interface_size(self.read_heads, self.write_heads, self.word_size)
    }

    /// Trainable parameters: LSTM `(X + R·W + C + 1)·4C`, interface `(C + 1)·I`, output
    /// `(C + R·W + 1)·Y`.
    pub fn num_params(&self) -> usize {
        let (c, rw) = (self.controller_size, self.read_heads * self.word_size);
        let lstm = (self.input_size + rw + c + 1) * 4 * c;
        let interface = (c + 1) * self.interface_size();
        let output = (c + rw + 1) * self.output_size;
        lstm + interface + output
    }

    /// Builds the module with the reference's initialisation (Sonnet 1 truncated normals).
    ///
    /// # Panics
    /// If [`DncConfig::validate`] fails; the message names the bad field.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Dnc<B> {
        if let Err(message) = self.validate() {
            panic!("DncConfig: {message}");
        }
        let (c, rw) = (self.controller_size, self.read_heads * self.word_size);
        Dnc {
            controller: controller::controller(self.input_size + rw, c, device),
            interface: access::interface(
                c,
                self.read_heads,
                self.write_heads,
                self.word_size,
                self.read_mode_order,
                device,
            ),
            output: init::sonnet_linear(c + rw, self.output_size, device),
            input_size: self.input_size,
            memory_slots: self.memory_slots,
            word_size: self.word_size,
            read_heads: self.read_heads,
            write_heads: self.write_heads,
            clip_value: self.clip_value,
            strength: self.strength,
        }
    }
}

/// The recurrent state of a [`Dnc`] (reference `DNCState`), zeros at the start.
#[derive(Clone, Debug)]
pub struct DncState<B: Backend> {
    /// Read words `r_{t−1}` of the previous step, `[batch, R, W]`.
    pub read_words: Tensor<B, 3>,
    /// Memory `M`, `[batch, N, W]`.
    pub memory: Tensor<B, 3>,
    /// Read weightings `w^r`, `[batch, R, N]`.
    pub read_weights: Tensor<B, 3>,
    /// Write weightings `w^w`, `[batch, K, N]`.
    pub write_weights: Tensor<B, 3>,
    /// Temporal link matrices `L` per write head, `[batch, K, N, N]`.
    pub link: Tensor<B, 4>,
    /// Precedence weightings `p` per write head, `[batch, K, N]`.
    pub precedence: Tensor<B, 3>,
    /// Usage `u`, `[batch, N]`.
    pub usage: Tensor<B, 2>,
    /// Controller hidden state `h`, `[batch, C]`.
    pub hidden: Tensor<B, 2>,
    /// Controller cell state `c`, `[batch, C]`.
    pub cell: Tensor<B, 2>,
}

impl<B: Backend> DncState<B> {
    /// The same state cut from the autodiff graph, for truncated backpropagation through time.
    pub fn detach(self) -> Self {
        Self {
            read_words: self.read_words.detach(),
            memory: self.memory.detach(),
            read_weights: self.read_weights.detach(),
            write_weights: self.write_weights.detach(),
            link: self.link.detach(),
            precedence: self.precedence.detach(),
            usage: self.usage.detach(),
            hidden: self.hidden.detach(),
            cell: self.cell.detach(),
        }
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.usage.dims()[0]
    }

    /// Every tensor of the state as a 4-D tensor (trailing axes of size 1), in a fixed order,
    /// for checkpoints.
    pub fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        let d3 = |t: Tensor<B, 3>| t.unsqueeze_dim::<4>(3);
        let d2 = |t: Tensor<B, 2>| t.unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
        vec![
            d3(self.read_words),
            d3(self.memory),
            d3(self.read_weights),
            d3(self.write_weights),
            self.link,
            d3(self.precedence),
            d2(self.usage),
            d2(self.hidden),
            d2(self.cell),
        ]
    }

    /// Rebuilds a state from [`Self::into_tensors`]'s list.
    pub fn from_tensors(flat: Vec<Tensor<B, 4>>) -> Result<Self, ModelError> {
        for (i, t) in flat.iter().enumerate() {
            let [_, _, a, b] = t.dims();
            let trailing_ones = match i {
                4 => 0,
                6..=8 => 2,
                _ => 1,
            };
            if (trailing_ones >= 1 && b != 1) || (trailing_ones == 2 && a != 1) {
                return Err(ModelError::State(format!(
                    "tensor {i} has shape {:?}, which no DNC state has",
                    t.dims()
                )));
            }
        }
        let [
            read_words,
            memory,
            read_weights,
            write_weights,
            link,
            precedence,
            usage,
            hidden,
            cell,
        ]: [Tensor<B, 4>; 9] = flat.try_into().map_err(|v: Vec<_>| {
            ModelError::State(format!("it holds {} tensors, a DNC needs 9", v.len()))
        })?;
        let d3 = |t: Tensor<B, 4>| t.squeeze_dim::<3>(3);
        let d2 = |t: Tensor<B, 4>| t.squeeze_dim::<3>(3).squeeze_dim::<2>(2);
        Ok(Self {
            read_words: d3(read_words),
            memory: d3(memory),
            read_weights: d3(read_weights),
            write_weights: d3(write_weights),
            link,
            precedence: d3(precedence),
            usage: d2(usage),
            hidden: d2(hidden),
            cell: d2(cell),
        })
    }
}

/// A Differentiable Neural Computer. Per step (reference order): controller input
/// `[x_t; r_{t−1}]`, LSTM step, clamp of `h` and the carried `(h, c)`, memory access on `h`
/// ([`access_step`]), output `y_t = Linear([h_t; r_t])`, clamp of `y`.
#[derive(Module, Debug)]
pub struct Dnc<B: Backend> {
    /// The LSTM controller over `[x; r_{t−1}]` (`d_input = X + R·W`).
    pub controller: Controller<B>,
    /// The interface maps of the memory access module.
    pub interface: Interface<B>,
    /// The output map `[C + R·W] → Y` (reference `output_linear`).
    pub output: Linear<B>,
    input_size: usize,
    memory_slots: usize,
    word_size: usize,
    read_heads: usize,
    write_heads: usize,
    clip_value: f64,
    strength: StrengthOp,
}

impl<B: MgBackend> Dnc<B> {
    /// The all-zero initial state of `batch` sequences.
    pub fn initial_state(&self, batch: usize, device: &B::Device) -> DncState<B> {
        let (n, w, r, k) = (
            self.memory_slots,
            self.word_size,
            self.read_heads,
            self.write_heads,
        );
        let c = self.controller.d_hidden();
        DncState {
            read_words: Tensor::zeros([batch, r, w], device),
            memory: Tensor::zeros([batch, n, w], device),
            read_weights: Tensor::zeros([batch, r, n], device),
            write_weights: Tensor::zeros([batch, k, n], device),
            link: Tensor::zeros([batch, k, n, n], device),
            precedence: Tensor::zeros([batch, k, n], device),
            usage: Tensor::zeros([batch, n], device),
            hidden: Tensor::zeros([batch, c], device),
            cell: Tensor::zeros([batch, c], device),
        }
    }

    fn clip<const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B, D> {
        if self.clip_value > 0.0 {
            t.clamp(-self.clip_value, self.clip_value)
        } else {
            t
        }
    }

    /// One time step.
    ///
    /// # Shapes
    /// - `x`: `[batch, X]`
    /// - returns `y` `[batch, Y]` and the new state
    pub fn step(&self, x: Tensor<B, 2>, state: DncState<B>) -> (Tensor<B, 2>, DncState<B>) {
        self.forward_window(x, 1, Some(state))
    }

    /// `steps` time steps stacked time-major (`row = t·batch + b`). The controller's input
    /// map and the output layer run once over all rows; the recurrent part step by step,
    /// with no host synchronisation.
    ///
    /// # Shapes
    /// - `x`: `[steps·batch, X]`
    /// - `state`: zeros when `None`
    /// - returns `y` `[steps·batch, Y]` (same row order) and the last state
    ///
    /// # Panics
    /// If the rows do not split into `steps` or the input width is not `X`.
    pub fn forward_window(
        &self,
        x: Tensor<B, 2>,
        steps: usize,
        state: Option<DncState<B>>,
    ) -> (Tensor<B, 2>, DncState<B>) {
        let [rows, d_x] = x.dims();
        assert!(
            steps > 0 && rows % steps == 0,
            "Dnc: {rows} rows do not split into {steps} time steps"
        );
        assert_eq!(
            d_x, self.input_size,
            "Dnc: input has {d_x} values per row, expected input_size = {}",
            self.input_size
        );
        let batch = rows / steps;
        let device = x.device();
        let mut state = state.unwrap_or_else(|| self.initial_state(batch, &device));
        assert_eq!(
            state.batch_size(),
            batch,
            "Dnc: the state has batch {}, the input {batch}",
            state.batch_size()
        );
        let controller = self.controller.window(self.input_size);
        let input_gates = controller.input_gates(x);
        let (interface_weight, interface_bias) = self.interface.fused();
        let interface_bias = interface_bias.unsqueeze::<2>();
        let rw = self.read_heads * self.word_size;

        let mut hidden = Vec::with_capacity(steps);
        let mut reads = Vec::with_capacity(steps);
        let step_gates = split_steps(input_gates, steps);
        for step_gates in step_gates {
            let recurrent = Tensor::cat(
                vec![
                    state.read_words.clone().reshape([batch, rw]),
                    state.hidden.clone(),
                ],
                1,
            );
            let (h, c) = controller.step_recurrent(step_gates, recurrent, state.cell.clone());
            let (h, c) = (self.clip(h), self.clip(c));
            let xi = h.clone().matmul(interface_weight.clone()) + interface_bias.clone();
            let controls = self.interface.parse(xi);
            state.hidden = h.clone();
            state.cell = c;
            state = access_step(controls, state, self.strength);
            hidden.push(h);
            reads.push(state.read_words.clone().reshape([batch, rw]));
        }
        let features = Tensor::cat(vec![Tensor::cat(hidden, 0), Tensor::cat(reads, 0)], 1);
        (self.clip(self.output.forward(features)), state)
    }
}

#[cfg(test)]
mod tests;
