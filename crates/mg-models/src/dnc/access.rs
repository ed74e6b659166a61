//! The DNC memory access module: interface parsing, memory write and reads.

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Tensor, backend::Backend};

use super::DncState;
use super::addressing::{
    StrengthOp, content_weights, erase_and_write, precedence_update, usage_update, write_weighting,
};
use super::init::sonnet_linear;
use mg_layers::MgBackend;
use mg_layers::backend::dnc_link;

/// Layout of the `1 + 2K` read-mode logits of each read head.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ReadModeOrder {
    /// The reference code: `[backward × K, forward × K, content]`.
    Code,
    /// The Nature paper (one write head only): `[backward, content, forward]`.
    Paper,
}

/// The interface: one affine map of the controller output per field (Sonnet `snt.Linear`,
/// truncated normal weight with `std = 1/√C`, zero bias), in the reference's order.
/// Head-major: a field of `heads × W` values is read as `heads` rows of `W`.
#[derive(Module, Debug)]
pub struct Interface<B: Backend> {
    /// Write vectors `a_k`: `C → K·W`, no nonlinearity.
    pub write_vectors: Linear<B>,
    /// Erase vectors `e_k`: `C → K·W`, sigmoid.
    pub erase_vectors: Linear<B>,
    /// Free gates `f_i`: `C → R`, sigmoid.
    pub free_gate: Linear<B>,
    /// Allocation gates `g^a_k`: `C → K`, sigmoid.
    pub allocation_gate: Linear<B>,
    /// Write gates `g^w_k`: `C → K`, sigmoid.
    pub write_gate: Linear<B>,
    /// Read modes `π_i`: `C → R·(1 + 2K)`, softmax per read head.
    pub read_mode: Linear<B>,
    /// Write keys `k^w_k`: `C → K·W`.
    pub write_keys: Linear<B>,
    /// Raw write strengths `β̂^w_k`: `C → K`.
    pub write_strengths: Linear<B>,
    /// Read keys `k^r_i`: `C → R·W`.
    pub read_keys: Linear<B>,
    /// Raw read strengths `β̂^r_i`: `C → R`.
    pub read_strengths: Linear<B>,
    read_heads: usize,
    write_heads: usize,
    word_size: usize,
    read_mode_order: ReadModeOrder,
}

/// Read-mode weights of each read head; for each head they sum to 1.
#[derive(Clone, Debug)]
pub struct ReadModes<B: Backend> {
    /// Weight of the backward move along each write head's links, `[batch, R, K]`.
    pub backward: Tensor<B, 3>,
    /// Weight of the forward move along each write head's links, `[batch, R, K]`.
    pub forward: Tensor<B, 3>,
    /// Weight of the content lookup, `[batch, R]`.
    pub content: Tensor<B, 2>,
}

/// The parsed interface vector of one step (nonlinearities applied, strengths raw).
#[derive(Clone, Debug)]
pub struct Controls<B: Backend> {
    /// Write vectors `[batch, K, W]`.
    pub write_vectors: Tensor<B, 3>,
    /// Erase vectors in `(0, 1)`, `[batch, K, W]`.
    pub erase_vectors: Tensor<B, 3>,
    /// Free gates in `(0, 1)`, `[batch, R]`.
    pub free_gates: Tensor<B, 2>,
    /// Allocation gates in `(0, 1)`, `[batch, K]`.
    pub allocation_gates: Tensor<B, 2>,
    /// Write gates in `(0, 1)`, `[batch, K]`.
    pub write_gates: Tensor<B, 2>,
    /// Read modes.
    pub read_modes: ReadModes<B>,
    /// Write keys `[batch, K, W]`.
    pub write_keys: Tensor<B, 3>,
    /// Raw write strengths `β̂`, `[batch, K]`.
    pub write_strengths: Tensor<B, 2>,
    /// Read keys `[batch, R, W]`.
    pub read_keys: Tensor<B, 3>,
    /// Raw read strengths `β̂`, `[batch, R]`.
    pub read_strengths: Tensor<B, 2>,
}

/// Width of the whole interface vector: `R·W + 3·K·W + 3·K + 3·R + 2·R·K`.
pub fn interface_size(read_heads: usize, write_heads: usize, word_size: usize) -> usize {
    let (r, k, w) = (read_heads, write_heads, word_size);
    r * w + 3 * k * w + 3 * k + 3 * r + 2 * r * k
}

pub(crate) fn interface<B: Backend>(
    d_controller: usize,
    read_heads: usize,
    write_heads: usize,
    word_size: usize,
    read_mode_order: ReadModeOrder,
    device: &B::Device,
) -> Interface<B> {
    let (r, k, w) = (read_heads, write_heads, word_size);
    let linear = |d_output| sonnet_linear(d_controller, d_output, device);
    Interface {
        write_vectors: linear(k * w),
        erase_vectors: linear(k * w),
        free_gate: linear(r),
        allocation_gate: linear(k),
        write_gate: linear(k),
        read_mode: linear(r * (1 + 2 * k)),
        write_keys: linear(k * w),
        write_strengths: linear(k),
        read_keys: linear(r * w),
        read_strengths: linear(r),
        read_heads,
        write_heads,
        word_size,
        read_mode_order,
    }
}

impl<B: Backend> Interface<B> {
    fn fields(&self) -> [&Linear<B>; 10] {
        [
            &self.write_vectors,
            &self.erase_vectors,
            &self.free_gate,
            &self.allocation_gate,
            &self.write_gate,
            &self.read_mode,
            &self.write_keys,
            &self.write_strengths,
            &self.read_keys,
            &self.read_strengths,
        ]
    }

    /// All ten maps as one weight `[C, I]` and bias `[I]`, fields concatenated in order, so a
    /// step needs one matrix product. Build it once per window.
    pub(crate) fn fused(&self) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let fields = self.fields();
        let weight = Tensor::cat(fields.iter().map(|l| l.weight.val()).collect(), 1);
        let bias = Tensor::cat(
            fields
                .iter()
                .map(|l| l.bias.as_ref().expect("interface maps have a bias").val())
                .collect(),
            0,
        );
        (weight, bias)
    }

    /// The interface vector of each controller output, `[batch, C] → [batch, I]`.
    pub fn project(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        let (weight, bias) = self.fused();
        hidden.matmul(weight) + bias.unsqueeze()
    }

    /// Splits an interface vector into its fields and applies their nonlinearities.
    ///
    /// # Shapes
    /// - `xi`: `[batch, I]` ([`interface_size`])
    pub fn parse(&self, xi: Tensor<B, 2>) -> Controls<B> {
        let [batch, _] = xi.dims();
        let (r, k, w) = (self.read_heads, self.write_heads, self.word_size);
        let mut offset = 0;
        let mut take = |width: usize| {
            let field = xi.clone().narrow(1, offset, width);
            offset += width;
            field
        };
        let write_vectors = take(k * w).reshape([batch, k, w]);
        let erase_vectors = sigmoid(take(k * w).reshape([batch, k, w]));
        let free_gates = sigmoid(take(r));
        let allocation_gates = sigmoid(take(k));
        let write_gates = sigmoid(take(k));
        let modes = softmax(take(r * (1 + 2 * k)).reshape([batch, r, 1 + 2 * k]), 2);
        let write_keys = take(k * w).reshape([batch, k, w]);
        let write_strengths = take(k);
        let read_keys = take(r * w).reshape([batch, r, w]);
        let read_strengths = take(r);
        let read_modes = match self.read_mode_order {
            ReadModeOrder::Code => ReadModes {
                backward: modes.clone().narrow(2, 0, k),
                forward: modes.clone().narrow(2, k, k),
                content: modes.narrow(2, 2 * k, 1).reshape([batch, r]),
            },
            ReadModeOrder::Paper => ReadModes {
                backward: modes.clone().narrow(2, 0, 1),
                content: modes.clone().narrow(2, 1, 1).reshape([batch, r]),
                forward: modes.narrow(2, 2, 1),
            },
        };
        Controls {
            write_vectors,
            erase_vectors,
            free_gates,
            allocation_gates,
            write_gates,
            read_modes,
            write_keys,
            write_strengths,
            read_keys,
            read_strengths,
        }
    }
}

/// Read weighting: `w^r_i = π_i[content]·c_i + Σ_k π_i[forward_k]·f_{i,k} + Σ_k π_i[backward_k]·b_{i,k}`.
///
/// # Shapes
/// - `content_weights`: `[batch, R, N]`
/// - `forward_weights`, `backward_weights`: `[batch, R, K, N]`
/// - returns `[batch, R, N]`
pub fn read_weights<B: Backend>(
    modes: &ReadModes<B>,
    content_weights: Tensor<B, 3>,
    forward_weights: Tensor<B, 4>,
    backward_weights: Tensor<B, 4>,
) -> Tensor<B, 3> {
    let along = |mode: Tensor<B, 3>, weights: Tensor<B, 4>| {
        (weights * mode.unsqueeze_dim::<4>(3))
            .sum_dim(2)
            .squeeze_dim::<3>(2)
    };
    content_weights * modes.content.clone().unsqueeze_dim::<3>(2)
        + along(modes.forward.clone(), forward_weights)
        + along(modes.backward.clone(), backward_weights)
}

/// One step of the access module from parsed controls, in the reference's order: usage
/// update, write weighting (content lookup on the previous memory, allocation from the new
/// usage), erase and add, link then precedence update, read weighting (content lookup on the
/// new memory, moves along the new links from the previous read weights), read words.
/// The link update and the moves are one op ([`dnc_link`]). `hidden` and `cell` are passed
/// through unchanged.
pub fn access_step<B: MgBackend>(
    controls: Controls<B>,
    prev: DncState<B>,
    strength: StrengthOp,
) -> DncState<B> {
    let usage = usage_update(
        prev.usage,
        prev.write_weights,
        controls.free_gates,
        prev.read_weights.clone(),
    );
    let write_content = content_weights(
        prev.memory.clone(),
        controls.write_keys,
        controls.write_strengths,
        strength,
    );
    let write_weights = write_weighting(
        usage.clone(),
        write_content,
        controls.allocation_gates,
        controls.write_gates,
    );
    let memory = erase_and_write(
        prev.memory,
        write_weights.clone(),
        controls.erase_vectors,
        controls.write_vectors,
    );
    let moves = dnc_link(
        prev.link,
        prev.precedence.clone(),
        write_weights.clone(),
        prev.read_weights,
    );
    let precedence = precedence_update(prev.precedence, write_weights.clone());
    let read_content = content_weights(
        memory.clone(),
        controls.read_keys,
        controls.read_strengths,
        strength,
    );
    let read_weights = read_weights(
        &controls.read_modes,
        read_content,
        moves.forward,
        moves.backward,
    );
    let read_words = read_weights.clone().matmul(memory.clone());
    DncState {
        read_words,
        memory,
        read_weights,
        write_weights,
        link: moves.link,
        precedence,
        usage,
        hidden: prev.hidden,
        cell: prev.cell,
    }
}
