//! A multigrid conv-LSTM memory inside your own burn module: it sees a random 3×3 binary
//! pattern at the first step, then blank steps, and must reproduce the pattern at the last
//! step. A few hundred Adam steps on the CPU bring the error to (almost) zero.
//!
//! ```sh
//! cargo run --release -p mg-layers --example recall_memory
//! ```

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use mg_layers::{MgBackend, MgConvLstm, MgConvLstmConfig, levels};

const STEPS: usize = 6;
const BATCH: usize = 16;

/// The user's model: a two-level multigrid memory (3×3 and 6×6, 8 channels each) and a
/// linear read-out of its 3×3 level.
#[derive(Module, Debug)]
struct Recall<B: Backend> {
    memory: MgConvLstm<B>,
    readout: Linear<B>,
}

impl<B: MgBackend> Recall<B> {
    fn new(device: &B::Device) -> Self {
        Self {
            memory: MgConvLstmConfig::new(1, 8, levels(0, 1), levels(0, 2)).init(device),
            readout: LinearConfig::new(8 * 9, 9).init(device),
        }
    }

    /// `inputs`: `[STEPS·BATCH, 1, 3, 3]`, time-major; returns the logits of the last step,
    /// `[BATCH, 9]`.
    fn forward(&self, inputs: Tensor<B, 4>) -> Tensor<B, 2> {
        let out = self.memory.forward_window(&[inputs], STEPS, None);
        let coarse = out.outputs[0].clone(); // [STEPS·BATCH, 8, 3, 3]
        let last = coarse.narrow(0, (STEPS - 1) * BATCH, BATCH);
        self.readout.forward(last.flatten(1, 3))
    }
}

fn main() {
    type B = Autodiff<Flex>;
    let device = Default::default();
    B::seed(&device, 7);
    let mut model = Recall::<B>::new(&device);
    let mut optim = AdamConfig::new().init();
    for step in 0..=300 {
        let pattern =
            Tensor::<B, 4>::random([BATCH, 1, 3, 3], Distribution::Bernoulli(0.5), &device);
        let blank = Tensor::zeros([(STEPS - 1) * BATCH, 1, 3, 3], &device);
        let inputs = Tensor::cat(vec![pattern.clone(), blank], 0);
        let logits = model.forward(inputs);
        let target = pattern.flatten::<2>(1, 3);
        // Sigmoid cross-entropy, averaged.
        let loss = (logits.clone().clamp_min(0.0) - logits.clone() * target.clone()
            + logits.clone().abs().neg().exp().log1p())
        .mean();
        if step % 50 == 0 {
            let wrong = logits.greater_elem(0.0).float().sub(target).abs().mean();
            println!(
                "step {step:>3}: loss {:.4}, wrong bits {:.3}",
                loss.clone().into_scalar().elem::<f32>(),
                wrong.into_scalar().elem::<f32>()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
}
