//! [`MemoryState`]: the carried state of either kind of memory.

use burn::tensor::{Tensor, backend::Backend};
use mg_layers::{MgBackend, StackState};

use crate::{DncState, MemoryMesh, ModelError};

/// The recurrent state a multigrid memory or a DNC carries between windows (of a
/// [`crate::Localizer`] or a [`crate::QaNet`]).
#[derive(Clone, Debug)]
pub enum MemoryState<B: Backend> {
    /// Every conv-LSTM cell's state.
    Multigrid(StackState<B>),
    /// The DNC's state.
    Dnc(DncState<B>),
}

impl<B: MgBackend> MemoryState<B> {
    /// The state cut from the autodiff graph (truncated BPTT).
    pub fn detach(self) -> Self {
        match self {
            Self::Multigrid(s) => Self::Multigrid(s.detach()),
            Self::Dnc(s) => Self::Dnc(s.detach()),
        }
    }

    /// Every tensor of the state as a 4-D tensor (trailing axes of size 1), in a fixed order,
    /// for checkpoints.
    pub fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        match self {
            Self::Multigrid(s) => s.into_tensors(),
            Self::Dnc(s) => s.into_tensors(),
        }
    }

    /// Rebuilds a state from [`MemoryState::into_tensors`]'s list: a multigrid state for
    /// `writer`, a DNC state when it is `None`.
    pub fn from_tensors(
        flat: Vec<Tensor<B, 4>>,
        writer: Option<&MemoryMesh<B>>,
    ) -> Result<Self, ModelError> {
        let Some(writer) = writer else {
            return DncState::from_tensors(flat).map(MemoryState::Dnc);
        };
        let counts: Vec<usize> = writer
            .stack
            .layers
            .iter()
            .map(|l| l.output_levels().count)
            .collect();
        let expected = 2 * counts.iter().sum::<usize>();
        let found = flat.len();
        StackState::from_tensors(flat, &counts)
            .map(MemoryState::Multigrid)
            .ok_or_else(|| {
                ModelError::State(format!(
                    "it holds {found} tensors, the model needs {expected}"
                ))
            })
    }
}
