//! `mg-train bench`: time a training window (window and step paths) and an inference step;
//! with `--scaling`, the training window's time and peak memory against memory size for a
//! family of multigrid models and of DNCs.

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use clap::Args;
use mg_models::{
    DncConfig, DncLocalizerConfig, Localizer, LocalizerConfig, MappingModelConfig, MappingWidths,
};
use serde::{Deserialize, Serialize};

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
    /// Time steps per training window [default: 20; 5 with --scaling].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Batch size of the training window and of the first inference benchmark [default: 32;
    /// 4 with --scaling].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Timed repetitions (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Skip the training window on the step path.
    #[arg(long)]
    pub no_step_path: bool,
    /// Print JSON lines only.
    #[arg(long)]
    pub json: bool,
    /// Time one training window against memory size: multigrid models from ~4K to ~1.3M
    /// memory cells (one more level each), DNCs from 128 to 4096 slots; writes JSON lines
    /// and a log-log plot.
    #[arg(long, conflicts_with = "config")]
    pub scaling: bool,
    /// Largest multigrid finest level (3×2^(L−1) grid) of the scaling run.
    #[arg(long, default_value_t = 7, requires = "scaling")]
    pub max_level: usize,
    /// Largest DNC memory (slots) of the scaling run.
    #[arg(long, default_value_t = 4096, requires = "scaling")]
    pub max_slots: usize,
    /// Time only this member of the scaling family (the scaling run starts one process per
    /// model, so that each peak-memory reading is its own).
    #[arg(long, hide = true, requires = "scaling")]
    pub member: Option<usize>,
    /// Where the scaling run writes `scaling.jsonl` and `scaling.png`.
    #[arg(long, default_value = "docs/figures", requires = "scaling")]
    pub out: PathBuf,
}

/// One benchmark result, printed as a JSON line.
#[derive(Serialize, Deserialize, Debug)]
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
    /// Growth of the process's peak resident memory during the timed calls, MiB (CPU
    /// backends on Linux; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_mib: Option<f64>,
}

/// A model to time, with the world shapes it reads.
#[derive(Clone, Debug)]
pub struct BenchModel {
    /// Name in the records.
    pub name: String,
    /// The model.
    pub model: LocalizerConfig,
    /// Observation side.
    pub obs_size: usize,
    /// Query sides.
    pub query_sizes: Vec<usize>,
    /// Localization map side.
    pub mask_size: usize,
}

impl BenchModel {
    /// The reference mapping model.
    pub fn reference() -> Self {
        Self {
            name: "mapping-reference".into(),
            model: LocalizerConfig::Multigrid(MappingModelConfig::reference()),
            obs_size: 3,
            query_sizes: vec![3],
            mask_size: 48,
        }
    }

    /// The model of an experiment config.
    pub fn from_config(name: String, config: &ExperimentConfig) -> Self {
        Self {
            name,
            model: config.model(),
            obs_size: config.world.obs_size,
            query_sizes: config.world.query_sizes.clone(),
            mask_size: config.world.mask_size,
        }
    }
}

/// The scaling family: multigrid writers of 16 channels whose layers' levels go
/// 2,2,3,3,…,L−1,L−1,L (memory ×4 per level), and DNCs (C = 64, W = 16, R = 4) of 128 to
/// `max_slots` slots, both on 3×3 observations and queries.
pub fn scaling_models(max_level: usize, max_slots: usize) -> Vec<BenchModel> {
    let mut models = Vec::new();
    for top in 3..=max_level {
        let mut levels: Vec<usize> = (2..top).flat_map(|l| [l, l]).collect();
        levels.push(top);
        let widths = MappingWidths::new(levels.clone(), vec![16; levels.len()], 16);
        models.push(BenchModel {
            name: format!("multigrid-L{top}"),
            model: LocalizerConfig::Multigrid(MappingModelConfig::from_widths(&widths, 3, &[3])),
            obs_size: 3,
            query_sizes: vec![3],
            mask_size: widths.output_size(),
        });
    }
    let (x, y) = (
        DncLocalizerConfig::input_size(3, &[3]),
        DncLocalizerConfig::output_size(1, 48),
    );
    let mut slots = 128;
    while slots <= max_slots {
        let dnc = DncConfig::new(x, y, 64, slots, 16).with_clip_value(20.0);
        models.push(BenchModel {
            name: format!("dnc-N{slots}"),
            model: LocalizerConfig::Dnc(DncLocalizerConfig::new(dnc, 3, vec![3], 48)),
            obs_size: 3,
            query_sizes: vec![3],
            mask_size: 48,
        });
        slots *= 2;
    }
    models
}

/// The process's peak resident set (VmHWM) in KiB, and a reset of it, on Linux.
mod peak {
    /// Resets the peak to the current resident set; false where unsupported.
    pub fn reset() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// A field of `/proc/self/status` in KiB.
    fn status_kib(field: &str) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = text.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Peak resident set since the last reset, KiB.
    pub fn peak_kib() -> Option<f64> {
        status_kib("VmHWM:")
    }

    /// Current resident set, KiB.
    pub fn current_kib() -> Option<f64> {
        status_kib("VmRSS:")
    }
}

/// Runs `mg-train bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let (steps, batch) = if args.scaling {
        (args.steps.unwrap_or(5), args.batch.unwrap_or(4))
    } else {
        (args.steps.unwrap_or(20), args.batch.unwrap_or(32))
    };
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    if args.scaling {
        anyhow::ensure!(
            (3..=8).contains(&args.max_level),
            "--max-level {}: expected 3 to 8",
            args.max_level
        );
        anyhow::ensure!(
            args.max_slots >= 128,
            "--max-slots {}: expected at least 128",
            args.max_slots
        );
        return scaling::run(args, steps, batch);
    }
    let model = match &args.config {
        None => BenchModel::reference(),
        Some(path) => {
            let config = ExperimentConfig::load(path)?;
            let name = path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned());
            BenchModel::from_config(name, &config)
        }
    };
    let records = run_one(
        args.device,
        &model,
        steps,
        batch,
        args.repeats,
        !args.no_step_path,
        true,
    )?;
    print_records(&records, args.json)
}

/// Prints records as JSON lines or a table.
fn print_records(records: &[BenchRecord], json: bool) -> anyhow::Result<()> {
    for r in records {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{:<26} {} ({} params, {} memory) on {}: batch {:>3}, {:>2} steps: median {:>9.2} ms (min {:.2}){}",
                r.bench,
                r.model,
                r.params,
                r.memory,
                r.device,
                r.batch,
                r.steps,
                r.median_ms,
                r.min_ms,
                r.peak_mib
                    .map_or(String::new(), |m| format!(", peak +{m:.0} MiB"))
            );
        }
    }
    Ok(())
}

/// Times one model: the training window (window path, and the step path when `step_path`),
/// then, when `inference`, one inference step at `batch` and at 1.
pub fn run_one(
    device: DeviceKind,
    model: &BenchModel,
    steps: usize,
    batch: usize,
    repeats: usize,
    step_path: bool,
    inference: bool,
) -> anyhow::Result<Vec<BenchRecord>> {
    let mut records = Vec::new();
    dispatch(
        device,
        Bench {
            kind: device,
            model,
            steps,
            batch,
            repeats,
            step_path,
            inference,
            records: &mut records,
        },
    )?;
    Ok(records)
}

struct Bench<'a> {
    kind: DeviceKind,
    model: &'a BenchModel,
    steps: usize,
    batch: usize,
    repeats: usize,
    step_path: bool,
    inference: bool,
    records: &'a mut Vec<BenchRecord>,
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
        let spec = self.model;
        B::seed(&device, 0);
        let mut model = spec.model.init::<AB<B>>(&device);
        let params = model.num_params();
        let memory = spec.model.memory_cells();
        let on_cpu = matches!(self.kind, DeviceKind::Cpu | DeviceKind::Ndarray);
        let record = |bench: &str, batch, steps, (median_ms, min_ms), peak_mib| BenchRecord {
            bench: bench.into(),
            model: spec.name.clone(),
            params,
            memory,
            device: self.kind.name().into(),
            batch,
            steps,
            median_ms,
            min_ms,
            repeats: self.repeats,
            peak_mib,
        };

        let (t, b) = (self.steps, self.batch);
        let rows = t * b;
        let side = spec.mask_size;
        let obs = random::<AB<B>>(rows, spec.obs_size, &device);
        let queries: Vec<_> = spec
            .query_sizes
            .iter()
            .map(|&k| random::<AB<B>>(rows, k, &device))
            .collect();
        let target = Tensor::<AB<B>, 2>::zeros([rows, side * side], &device);
        let mut optim: OptimizerAdaptor<TfRmsProp, Localizer<AB<B>>, AB<B>> =
            OptimizerAdaptor::from(TfRmsProp {
                decay: 0.99,
                epsilon: 0.1,
                momentum: 0.0,
                initial_mean_square: 1.0,
            });
        let is_dnc = matches!(spec.model, LocalizerConfig::Dnc(_));
        let paths: &[&str] = if self.step_path && !is_dnc {
            &["window", "step"]
        } else {
            &["window"]
        };
        for &path in paths {
            let mut state = None;
            let before = peak::current_kib();
            let tracked = on_cpu && peak::reset();
            let timing = time(self.repeats, || {
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
                state = Some(next.detach());
            });
            let peak_mib = match (tracked, before, peak::peak_kib()) {
                (true, Some(before), Some(peak)) => Some((peak - before).max(0.0) / 1024.0),
                _ => None,
            };
            let name = if is_dnc {
                "train_window".to_string()
            } else {
                format!("train_window_{path}_path")
            };
            self.records.push(record(&name, b, t, timing, peak_mib));
        }

        if self.inference {
            let valid = model.valid();
            for batch in [b, 1] {
                let obs = random::<B>(batch, spec.obs_size, &device);
                let queries: Vec<_> = spec
                    .query_sizes
                    .iter()
                    .map(|&k| random::<B>(batch, k, &device))
                    .collect();
                let mut state = None;
                let timing = time(self.repeats, || {
                    let (logits, next) =
                        valid.forward_window(obs.clone(), &queries, 1, state.take());
                    // Reading one value back waits for the device.
                    let _ = logits[0].clone().sum().into_data();
                    state = Some(next);
                });
                self.records
                    .push(record("inference_step", batch, 1, timing, None));
            }
        }
        Ok(())
    }
}

/// `mg-train bench --scaling`.
mod scaling {
    use std::fs::{self, File};
    use std::io::Write;
    use std::process::Command;

    use anyhow::Context;

    use super::{BenchArgs, BenchRecord, print_records, run_one, scaling_models};
    use crate::viz::plot_log_log;

    /// Times every model of the family, smallest first, each in its own process, writing
    /// each record as it comes.
    pub fn run(args: &BenchArgs, steps: usize, batch: usize) -> anyhow::Result<()> {
        let models = scaling_models(args.max_level, args.max_slots);
        if let Some(i) = args.member {
            let model = models
                .get(i)
                .with_context(|| format!("--member {i}: the family has {} models", models.len()))?;
            let records = run_one(args.device, model, steps, batch, args.repeats, false, false)?;
            return print_records(&records, true);
        }
        fs::create_dir_all(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        let jsonl = args.out.join("scaling.jsonl");
        let mut file =
            File::create(&jsonl).with_context(|| format!("creating {}", jsonl.display()))?;
        let exe = std::env::current_exe().context("finding the mg-train executable")?;
        let mut all: Vec<BenchRecord> = Vec::new();
        for (i, model) in models.iter().enumerate() {
            if !args.json {
                eprintln!(
                    "[{}/{}] {} ({} memory cells)",
                    i + 1,
                    models.len(),
                    model.name,
                    model.model.memory_cells()
                );
            }
            let output = Command::new(&exe)
                .args([
                    "bench",
                    "--scaling",
                    "--json",
                    "--device",
                    args.device.name_arg(),
                ])
                .args(["--member", &i.to_string()])
                .args(["--max-level", &args.max_level.to_string()])
                .args(["--max-slots", &args.max_slots.to_string()])
                .args(["--steps", &steps.to_string(), "--batch", &batch.to_string()])
                .args(["--repeats", &args.repeats.to_string()])
                .output()
                .with_context(|| format!("running {}", exe.display()))?;
            anyhow::ensure!(
                output.status.success(),
                "timing {} failed:\n{}",
                model.name,
                String::from_utf8_lossy(&output.stderr)
            );
            let mut records = Vec::new();
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                writeln!(file, "{line}")?;
                records.push(
                    serde_json::from_str::<BenchRecord>(line)
                        .with_context(|| format!("reading the record of {}", model.name))?,
                );
            }
            file.flush()?;
            print_records(&records, args.json)?;
            all.extend(records);
        }
        let series = |prefix: &str, value: fn(&BenchRecord) -> Option<f64>| {
            all.iter()
                .filter(|r| r.model.starts_with(prefix))
                .filter_map(|r| Some((r.memory as f64, value(r)?)))
                .collect::<Vec<_>>()
        };
        let time = args.out.join("scaling.png");
        plot_log_log(
            &[
                ("multigrid ms", series("multigrid", |r| Some(r.median_ms))),
                ("DNC ms", series("dnc", |r| Some(r.median_ms))),
            ],
            ["memory cells", "training window, ms"],
            &time,
        )?;
        let memory = args.out.join("scaling-memory.png");
        let peaks = [
            ("multigrid MiB", series("multigrid", |r| r.peak_mib)),
            ("DNC MiB", series("dnc", |r| r.peak_mib)),
        ];
        if peaks.iter().any(|(_, p)| !p.is_empty()) {
            plot_log_log(&peaks, ["memory cells", "peak memory growth, MiB"], &memory)?;
        }
        if !args.json {
            eprintln!(
                "wrote {}, {} and {}",
                jsonl.display(),
                time.display(),
                memory.display()
            );
        }
        Ok(())
    }
}
