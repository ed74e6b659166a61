//! Shared pieces of the writer demo and benchmark: random observation windows and one
//! training window (forward, backward) of the memory mesh.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, ElementConversion, Tensor};
use mg_layers::{StackState, detach_state};
use mg_models::MemoryMesh;

/// A window of `steps·batch` random 4-channel 3×3 observations, time-major.
pub fn random_window<B: Backend>(steps: usize, batch: usize, device: &B::Device) -> Tensor<B, 4> {
    Tensor::random(
        [steps * batch, 4, 3, 3],
        Distribution::Uniform(0.0, 1.0),
        device,
    )
}

/// Forward and backward through one window with a carried state; returns the loss (the sum
/// of squares of the deepest layer's finest output, a stand-in for a task loss) and the
/// detached next state.
pub fn train_window<B: AutodiffBackend>(
    mesh: &MemoryMesh<B>,
    input: Tensor<B, 4>,
    steps: usize,
    state: Option<StackState<B>>,
) -> (f32, StackState<B>) {
    let out = mesh.forward_window(&[input], steps, state);
    let finest = out
        .outputs
        .last()
        .and_then(|l| l.last())
        .expect("a non-empty mesh")
        .clone();
    let loss = finest.square().sum();
    let value = loss.clone().into_scalar().elem::<f32>();
    let _grads = loss.backward();
    (value, detach_state(out.state))
}

/// One inference step of the mesh without autodiff; returns the next state.
pub fn infer_step<B: AutodiffBackend>(
    mesh: &MemoryMesh<B::InnerBackend>,
    input: Tensor<B::InnerBackend, 4>,
    state: Option<StackState<B::InnerBackend>>,
) -> StackState<B::InnerBackend> {
    mesh.forward_step(&[input], state).state
}

/// The inference copy of a training mesh.
pub fn inference_mesh<B: AutodiffBackend>(mesh: &MemoryMesh<B>) -> MemoryMesh<B::InnerBackend> {
    mesh.valid()
}
