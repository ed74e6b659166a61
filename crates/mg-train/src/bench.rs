//! `mg-train bench`: time a training window (window and step paths) and an inference step.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use clap::Args;
use mg_models::{MappingModel, MappingModelConfig};
use serde::Serialize;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::config::{ExperimentConfig, LossReduction};
use crate::optim::{TfRmsProp, clip_global_norm};
use crate::train::localization_loss;

/// Arguments of `mg-train bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Experiment config whose model to time [default: the reference mapping model].
    pub config: Option<PathBuf>,
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
    /// Skip the training window on the step path.
    #[arg(long)]
    pub no_step_path: bool,
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
    /// Trainable parameters.
    pub params: usize,
    /// Memory cells.
    pub memory: usize,
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
    let (name, model) = match &args.config {
        None => (
            "mapping-reference".to_string(),
            MappingModelConfig::reference(),
        ),
        Some(path) => {
            let config = ExperimentConfig::load(path)?;
            let name = path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned());
            (name, config.model())
        }
    };
    dispatch(args.device, Bench { args, name, model })
}

struct Bench<'a> {
    args: &'a BenchArgs,
    name: String,
    model: MappingModelConfig,
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

fn random<B: Backend>(rows: usize, side: usize, device: &B::Device) -> Tensor<B, 4> {
    Tensor::random(
        [rows, 4, side, side],
        Distribution::Uniform(0.0, 1.0),
        device,
    )
}

impl Job for Bench<'_> {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        type AB<B> = Autodiff<B>;
        let args = self.args;
        B::seed(&device, 0);
        let mut model = self.model.init::<AB<B>>(&device);
        let params = model.num_params();
        let memory = self.model.memory_cells();
        let kind = self.args.device;
        let record = |bench: &str, batch, steps, (median_ms, min_ms)| BenchRecord {
            bench: bench.into(),
            model: self.name.clone(),
            params,
            memory,
            device: kind.name().into(),
            batch,
            steps,
            median_ms,
            min_ms,
            repeats: args.repeats,
        };
        let mut records = Vec::new();

        let (t, b) = (args.steps, args.batch);
        let rows = t * b;
        let side = self
            .model
            .writer
            .stack
            .layers
            .last()
            .map_or(3, |l| 3 << (l.output_levels.end() - 1));
        let obs = random::<AB<B>>(rows, self.model.obs_size, &device);
        let queries: Vec<_> = self
            .model
            .query_sizes
            .iter()
            .map(|&k| random::<AB<B>>(rows, k, &device))
            .collect();
        let target = Tensor::<AB<B>, 2>::zeros([rows, side * side], &device);
        let mut optim: OptimizerAdaptor<TfRmsProp, MappingModel<AB<B>>, AB<B>> =
            OptimizerAdaptor::from(TfRmsProp {
                decay: 0.99,
                epsilon: 0.1,
                momentum: 0.0,
                initial_mean_square: 1.0,
            });
        let paths: &[&str] = if args.no_step_path {
            &["window"]
        } else {
            &["window", "step"]
        };
        for &path in paths {
            let mut state = None;
            let timing = time(args.repeats, || {
                let (logits, next) = if path == "window" {
                    model.forward_window(obs.clone(), &queries, t, state.take())
                } else {
                    model.forward_steps(obs.clone(), &queries, t, state.take())
                };
                let loss = logits
                    .into_iter()
                    .map(|l| localization_loss(l, target.clone(), LossReduction::Sum))
                    .reduce(|a, b| a + b)
                    .expect("one reader");
                let _: f64 = loss.clone().into_scalar().elem();
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                clip_global_norm(&model, &mut grads, 1e4);
                model = optim.step(1e-4, model.clone(), grads);
                state = Some(mg_layers::detach_state(next));
            });
            records.push(record(&format!("train_window_{path}_path"), b, t, timing));
        }

        let valid = model.valid();
        for batch in [b, 1] {
            let obs = random::<B>(batch, self.model.obs_size, &device);
            let queries: Vec<_> = self
                .model
                .query_sizes
                .iter()
                .map(|&k| random::<B>(batch, k, &device))
                .collect();
            let mut state = None;
            let timing = time(args.repeats, || {
                let (logits, next) = valid.forward_window(obs.clone(), &queries, 1, state.take());
                // Reading one value back waits for the device.
                let _ = logits[0].clone().sum().into_data();
                state = Some(next);
            });
            records.push(record("inference_step", batch, 1, timing));
        }

        for r in &records {
            if args.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                println!(
                    "{:<26} {} ({} params) on {}: batch {:>3}, {:>2} steps: median {:>9.2} ms (min {:.2})",
                    r.bench, r.model, r.params, r.device, r.batch, r.steps, r.median_ms, r.min_ms
                );
            }
        }
        Ok(())
    }
}
