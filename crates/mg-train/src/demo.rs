//! `mg-train demo`: build the reference memory mesh and write a few windows into it.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use mg_models::MemoryMeshConfig;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::writer_run::{random_window, train_window};

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
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.args;
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
