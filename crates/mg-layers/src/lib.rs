//! Multigrid convolution and multigrid conv-LSTM layers for [burn](https://docs.rs/burn),
//! after *Multigrid Neural Memory* (Huynh, Maire, Walter, ICML 2020).
//!
//! A **pyramid** is a list of tensors `[batch, channels, h, w]`, coarse to fine; level `l` is
//! `s0·2^l` on each side (2D, [`Geometry::Grid2d`]) or `1 × s0·2^l` (1D, [`Geometry::Grid1d`]).
//! A layer maps the pyramid of an input [`LevelSpan`] to that of an output span; output level
//! `l` reads `[upsample(in[l-1]), in[l], maxpool(in[l+1])]` ([`gather`]), so information
//! crosses the whole grid in a number of layers logarithmic in its size.
//!
//! * [`MgConv`]: gather, then a 3×3 convolution per level, ReLU, optional batch norm.
//! * [`ConvLstmCell`]: the convolutional LSTM cell (`(i, g, f, o)` gates, forget bias).
//! * [`MgConvLstm`]: gather, then one conv-LSTM cell per level.
//! * [`MgLstmStack`]: layers plus residual connections, evaluated step by step
//!   ([`MgLstmStack::forward_step`]) or a window of time steps at once
//!   ([`MgLstmStack::forward_window`], which batches the input-to-gate work of the whole
//!   window: fewer kernel launches on a GPU; on a CPU stepping is faster), with equal results.
//!
//! Everything is generic over burn's [`Backend`](burn::tensor::backend::Backend): the same code
//! runs on CUDA, wgpu and the CPU. This crate selects no backend and does no IO.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::Tensor;
//! use mg_layers::{MgConvLstmConfig, levels};
//!
//! let device = Default::default();
//! // A 3×3 input grid grows into a 3×3 + 6×6 memory with 4 channels per level.
//! let layer = MgConvLstmConfig::new(1, 4, levels(0, 1), levels(0, 2)).init::<Flex>(&device);
//! let input = [Tensor::<Flex, 4>::zeros([2, 1, 3, 3], &device)];
//! let out = layer.forward_step(&input, None);
//! assert_eq!(out.outputs[1].dims(), [2, 4, 6, 6]);
//! // The state feeds the next step.
//! let out = layer.forward_step(&input, Some(out.state));
//! assert_eq!(out.state[0].cell.dims(), [2, 4, 3, 3]);
//! ```

mod cell;
mod conv;
mod conv_lstm;
mod count;
mod geometry;
mod init;
mod norm;
mod resample;
mod residual;
mod stack;

pub use cell::{ConvLstmCell, ConvLstmCellConfig, ConvLstmState};
pub use conv::{Activation, MgConv, MgConvConfig};
pub use conv_lstm::{MgConvLstm, MgConvLstmConfig, MgLstmOutput, MgLstmState};
pub use count::num_trainable_params;
pub use geometry::{Geometry, LevelSpan, levels};
pub use init::{ConvInit, LstmInit};
pub use norm::{MgNorm, MgNormConfig, NormMode};
pub use resample::{gather, maxpool2x, upsample2x};
pub use residual::{Residual, pad_channels, residual_add};
pub use stack::{MgLstmStack, MgLstmStackConfig, StackOutput, StackState, detach_state};

#[cfg(all(test, not(any(feature = "test-wgpu", feature = "test-cuda"))))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, feature = "test-wgpu"))]
pub(crate) type TestBackend = burn::backend::Wgpu;
#[cfg(all(test, feature = "test-cuda", not(feature = "test-wgpu")))]
pub(crate) type TestBackend = burn::backend::Cuda;
