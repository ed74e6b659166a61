#![doc = include_str!("../README.md")]

pub mod backend;
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
mod window;

pub use backend::{MgAutodiffBackend, MgBackend};
pub use cell::{ConvLstmCell, ConvLstmCellConfig, ConvLstmState};
pub use conv::{Activation, MgConv, MgConvConfig};
pub use conv_lstm::{MgConvLstm, MgConvLstmConfig, MgLstmOutput, MgLstmState};
pub use count::num_trainable_params;
pub use geometry::{Geometry, LevelSpan, levels};
pub use init::{ConvInit, LstmInit};
pub use norm::{MgNorm, MgNormConfig, NormMode};
pub use resample::{gather, maxpool2x, upsample2x};
pub use residual::{Residual, pad_channels, residual_add};
pub use stack::{MgLstmStack, MgLstmStackConfig, StackOutput, StackState};
pub use window::window_view;

#[cfg(all(test, not(any(feature = "test-wgpu", feature = "test-cuda"))))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, feature = "test-wgpu"))]
pub(crate) type TestBackend = crate::backend::PlainWgpu;
#[cfg(all(test, feature = "test-cuda", not(feature = "test-wgpu")))]
pub(crate) type TestBackend = burn::backend::Cuda;
