//! The DNC as a kind of [`crate::Net`]: fed a sequence as rows, carrying a [`DncState`].

use burn::tensor::Tensor;
use mg_layers::MgBackend;

use super::{Dnc, DncConfig, DncState};
use crate::ModelError;
use crate::net::{Forward, Kind, KindConfig, Rows};

impl KindConfig for DncConfig {
    type Model<B: MgBackend> = Dnc<B>;

    fn num_params(&self) -> usize {
        DncConfig::num_params(self)
    }

    fn memory_cells(&self) -> usize {
        self.memory_size()
    }

    fn init<B: MgBackend>(&self, device: &B::Device) -> Dnc<B> {
        DncConfig::init(self, device)
    }
}

impl<B: MgBackend> Kind<B> for Dnc<B> {
    type State = DncState<B>;

    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> Result<DncState<B>, ModelError> {
        DncState::from_tensors(tensors)
    }
}

/// One output row per input row ([`Dnc::forward_window`]).
impl<B: MgBackend> Forward<B, Rows<B>> for Dnc<B> {
    type Output = Tensor<B, 2>;

    fn forward(&self, rows: Rows<B>, state: Option<DncState<B>>) -> (Tensor<B, 2>, DncState<B>) {
        self.forward_window(rows.x, rows.steps, state)
    }
}
