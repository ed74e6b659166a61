//! `mg-train bench`: time the memory mesh's training window and inference step.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use mg_models::MemoryMeshConfig;
use serde::Serialize;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::writer_run::{infer_step, inference_mesh, random_window, train_window};

/// Arguments of `mg-train bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Time steps per training window.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Batch size of the training window and of the first inference benchmark.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed repetitions (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print JSON lines only.
    #[arg(long)]
    pub json: bool,
}

/// One benchmark result, printed as a JSON line.
#[derive(Serialize, Debug)]
pub struct BenchRecord {
    /// What was timed.
    pub bench: String,
    /// The model.
    pub model: String,
    /// Backend and device.
    pub device: String,
    /// Batch size.
    pub batch: usize,
    /// Time steps per call.
    pub steps: usize,
    /// Median wall time of one call, milliseconds.
    pub median_ms: f64,
    /// Fastest call, milliseconds.
    pub min_ms: f64,
    /// Timed repetitions.
    pub repeats: usize,
}

/// Runs `mg-train bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    dispatch(
        args.device,
        Bench {
            args,
            kind: args.device,
        },
    )
}

struct Bench<'a> {
    args: &'a BenchArgs,
    kind: DeviceKind,
}

/// Median and minimum of `repeats` timed calls of `f`, after one warm-up call.
/// `f` must finish its device work before returning (read a value back).
fn time(repeats: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut ms: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0])
}

impl Job for Bench<'_> {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.args;
        B::seed(&device, 0);
        let mesh = MemoryMeshConfig::mapping_reference().init::<Autodiff<B>>(&device);
        let record = |bench: &str, batch, steps, (median_ms, min_ms)| BenchRecord {
            bench: bench.into(),
            model: "mapping-reference-writer".into(),
            device: self.kind.name().into(),
            batch,
            steps,
            median_ms,
            min_ms,
            repeats: args.repeats,
        };
        let mut records = Vec::new();

        let input = random_window::<Autodiff<B>>(args.steps, args.batch, &device);
        let mut state = None;
        let timing = time(args.repeats, || {
            let (_, next) = train_window(&mesh, input.clone(), args.steps, state.take());
            state = Some(next);
        });
        records.push(record("train_window", args.batch, args.steps, timing));

        let valid = inference_mesh(&mesh);
        for batch in [args.batch, 1] {
            let input = random_window::<B>(1, batch, &device);
            let mut state = None;
            let timing = time(args.repeats, || {
                let next = infer_step::<Autodiff<B>>(&valid, input.clone(), state.take());
                // Reading one value back waits for the device.
                let _ = next[0][0].hidden.clone().sum().into_data();
                state = Some(next);
            });
            records.push(record("inference_step", batch, 1, timing));
        }

        for r in &records {
            if args.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!(
                    "{:<15} {} on {}: batch {:>3}, {:>2} steps: median {:>9.2} ms (min {:.2})",
                    r.bench, r.model, r.device, r.batch, r.steps, r.median_ms, r.min_ms
                );
            }
        }
        Ok(())
    }
}
