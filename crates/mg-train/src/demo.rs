//! `mg-train demo`: build the reference memory mesh and write a few windows into it.

use mg_layers::MgBackend;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use clap::Args;
use mg_layers::StackState;
use mg_models::{MemoryMesh, MemoryMeshConfig};

use crate::backend::{DeviceKind, Job, dispatch};

/// Arguments of `mg-train demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Truncated-BPTT windows to run.
    #[arg(long, default_value_t = 3)]
    pub windows: usize,
    /// Time steps per window.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `mg-train demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    dispatch(
        args.device,
        Demo {
            args,
            kind: args.device,
        },
    )
}

struct Demo<'a> {
    args: &'a DemoArgs,
    kind: DeviceKind,
}

impl Job for Demo<'_> {
    type Output = ();

    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.args;
        crate::harness::device::open_device::<B>(&device)?;
        B::seed(&device, args.seed);
        let config = MemoryMeshConfig::mapping_reference();
        let mesh = config.init::<Autodiff<B>>(&device);
        println!(
            "reference mapping writer (reference-implementation.md §2.3) on {}",
            self.kind.name()
        );
        println!("  layers:        {}", mesh.num_layers());
        println!("  parameters:    {}", mesh.num_params());
        println!("  memory cells:  {}", mesh.memory_cells());
        for (k, layer) in config.stack.layers.iter().enumerate() {
            println!(
                "  W{}: levels {:?}, {} channels, {} params, {} memory",
                k + 1,
                layer
                    .output_levels
                    .range()
                    .map(|l| 3 << l)
                    .collect::<Vec<_>>(),
                layer.d_hidden,
                layer.num_params(),
                layer.memory_cells()
            );
        }
        println!(
            "writing {} windows of {} steps, batch {} (forward + backward, state carried):",
            args.windows, args.steps, args.batch
        );
        let mut state = None;
        for w in 0..args.windows {
            let start = Instant::now();
            let input = random_window::<Autodiff<B>>(args.steps, args.batch, &device);
            let (loss, next) = train_window(&mesh, input, args.steps, state);
            state = Some(next);
            println!(
                "  window {}/{}: {:.1} ms, activity ‖h‖² = {loss:.3}",
                w + 1,
                args.windows,
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        Ok(())
    }
}

/// A window of `steps·batch` random 4-channel 3×3 observations, time-major.
pub fn random_window<B: MgBackend>(steps: usize, batch: usize, device: &B::Device) -> Tensor<B, 4> {
    Tensor::random(
        [steps * batch, 4, 3, 3],
        Distribution::Uniform(0.0, 1.0),
        device,
    )
}

/// Forward and backward through one window with a carried state; returns the loss (the sum
/// of squares of the deepest layer's finest output, a stand-in for a task loss) and the
/// detached next state.
pub fn train_window<B: mg_layers::MgAutodiffBackend>(
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
    (value, out.state.detach())
}
