//! The memory mesh (writer): a stack of multigrid conv-LSTM layers whose pyramids grow with
//! depth, with residual connections.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::{
    LevelSpan, MgConvLstmConfig, MgLstmStack, MgLstmStackConfig, Residual, StackOutput, StackState,
    levels, num_trainable_params,
};

/// Configuration of a [`MemoryMesh`].
#[derive(Config, Debug, PartialEq)]
pub struct MemoryMeshConfig {
    /// The conv-LSTM layers and residual plan.
    pub stack: MgLstmStackConfig,
}

/// The memory mesh: it ingests one observation pyramid per time step and keeps its memory in
/// the LSTM states of every layer and level.
#[derive(Module, Debug)]
pub struct MemoryMesh<B: Backend> {
    /// The conv-LSTM stack.
    pub stack: MgLstmStack<B>,
}

impl MemoryMeshConfig {
    /// The writer of the reference mapping model (reference-implementation.md §2.3): seven
    /// layers on levels 3×3…48×48 with 4, 4, 8, 8, 16, 16, 16 channels, residuals
    /// W3←W1, W5←W3, W7←W5, a 4-channel 3×3 input; 392,768 parameters, 76,968 memory cells.
    pub fn mapping_reference() -> Self {
        let plan: [(usize, usize, LevelSpan, LevelSpan); 7] = [
            (4, 4, levels(0, 1), levels(0, 2)),
            (4, 4, levels(0, 2), levels(0, 2)),
            (4, 8, levels(0, 2), levels(0, 3)),
            (8, 8, levels(0, 3), levels(0, 3)),
            (8, 16, levels(0, 3), levels(0, 4)),
            (16, 16, levels(0, 4), levels(0, 4)),
            (16, 16, levels(0, 4), levels(0, 5)),
        ];
        let layers = plan
            .into_iter()
            .map(|(d_in, c, input, output)| MgConvLstmConfig::new(d_in, c, input, output))
            .collect();
        let residuals = vec![
            Residual { from: 0, to: 2 },
            Residual { from: 2, to: 4 },
            Residual { from: 4, to: 6 },
        ];
        Self {
            stack: MgLstmStackConfig::new(layers).with_residuals(residuals),
        }
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.stack.num_params()
    }

    /// Memory cells `Σ H·W·C` of all LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.stack.memory_cells()
    }

    /// Builds the mesh.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> MemoryMesh<B> {
        MemoryMesh {
            stack: self.stack.init(device),
        }
    }
}

impl<B: MgBackend> MemoryMesh<B> {
    /// Number of conv-LSTM layers.
    pub fn num_layers(&self) -> usize {
        self.stack.layers.len()
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        num_trainable_params(&self.stack)
    }

    /// Memory cells `Σ H·W·C` of all LSTM cell states.
    pub fn memory_cells(&self) -> usize {
        self.stack.memory_cells()
    }

    /// Writes a window of `steps` observations (time-major rows) into memory.
    ///
    /// # Shapes
    /// - `input[i]`: `[steps·batch, d_input, h_i, w_i]` for the first layer's input levels
    pub fn forward_window(
        &self,
        input: &[Tensor<B, 4>],
        steps: usize,
        state: Option<StackState<B>>,
    ) -> StackOutput<B> {
        self.stack.forward_window(input, steps, state)
    }

    /// Writes one observation into memory.
    pub fn forward_step(
        &self,
        input: &[Tensor<B, 4>],
        state: Option<StackState<B>>,
    ) -> StackOutput<B> {
        self.stack.forward_step(input, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    #[test]
    fn mapping_reference_counts() {
        let config = MemoryMeshConfig::mapping_reference();
        assert_eq!(config.num_params(), 392_768);
        assert_eq!(config.memory_cells(), 76_968);
        let mesh = config.init::<TestBackend>(&Default::default());
        assert_eq!(mesh.num_params(), 392_768);
        assert_eq!(mesh.memory_cells(), 76_968);
    }
}
