//! [`MemoryState`]: the carried state of either kind of memory, and the
//! [`RecurrentState`] impls of both kinds' states.

use burn::tensor::{Tensor, backend::Backend};
use mg_layers::{MgBackend, StackState};

use crate::net::{NetState, RecurrentState};
use crate::{DncState, MemoryMesh, ModelError};

/// The recurrent state a multigrid memory or a DNC carries between windows (of a
/// [`crate::Localizer`] or a [`crate::QaNet`]).
pub type MemoryState<B> = NetState<StackState<B>, DncState<B>>;

impl<B: Backend> RecurrentState<B> for StackState<B> {
    fn detach(self) -> Self {
        StackState::detach(self)
    }

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        StackState::into_tensors(self)
    }
}

impl<B: Backend> RecurrentState<B> for DncState<B> {
    fn detach(self) -> Self {
        DncState::detach(self)
    }

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        DncState::into_tensors(self)
    }
}

impl<B: MgBackend> MemoryMesh<B> {
    /// Rebuilds the writer's state from [`StackState::into_tensors`]'s list.
    pub fn state_from_tensors(&self, flat: Vec<Tensor<B, 4>>) -> Result<StackState<B>, ModelError> {
        let counts: Vec<usize> = self
            .stack
            .layers
            .iter()
            .map(|l| l.output_levels().count)
            .collect();
        let expected = 2 * counts.iter().sum::<usize>();
        let found = flat.len();
        StackState::from_tensors(flat, &counts).ok_or_else(|| {
            ModelError::State(format!(
                "it holds {found} tensors, the model needs {expected}"
            ))
        })
    }
}
