//! The experiment subcommands: `train`, `resume`, `eval`, `info` and `viz`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use serde_json::json;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::checkpoint::{RunDir, write_atomic};
use crate::config::ExperimentConfig;
use crate::eval::{render_dnc_memory, render_episode, report};
use crate::train::{TrainOptions, load_model, train};
use mg_models::{Localizer, LocalizerConfig};

/// Arguments of `mg-train train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config (TOML), e.g. configs/mapping/quick.toml.
    pub config: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Run directory for checkpoints, metrics and pictures [default: runs/CONFIG_NAME].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Train until this many time steps [default: the config's train.time_steps].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop (with a checkpoint) after this many minutes of wall time.
    #[arg(long)]
    pub minutes: Option<f64>,
}

/// Arguments of `mg-train resume`.
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Train until this many time steps in total [default: the config's train.time_steps].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop (with a checkpoint) after this many minutes of wall time.
    #[arg(long)]
    pub minutes: Option<f64>,
}

/// Arguments of `mg-train eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Test episodes [default: the config's eval.episodes, 5000].
    #[arg(long)]
    pub episodes: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mg-train info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Experiment config (TOML).
    pub config: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mg-train viz`.
#[derive(Args, Debug)]
pub struct VizArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Test episode to draw.
    #[arg(long, default_value_t = 0)]
    pub episode: usize,
    /// Output folder [default: RUN/viz/episode-N].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Arguments of `mg-train compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories to compare; each one's name labels its curve.
    #[arg(required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// The PNG to write.
    #[arg(long, default_value = "compare.png")]
    pub out: PathBuf,
    /// x axis: wall-clock `minutes` of training or `steps`.
    #[arg(long, value_enum, default_value = "minutes")]
    pub x: CompareAxis,
}

/// The x axis of `mg-train compare`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareAxis {
    /// Wall-clock minutes of training.
    Minutes,
    /// Training time steps.
    Steps,
}

/// Runs `mg-train compare`: the runs' learning curves (loss per pixel) in one PNG.
pub fn run_compare(args: &CompareArgs) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for dir in &args.run_dirs {
        let run = RunDir::open(dir)?;
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let points: Vec<(f64, f64)> = crate::train::read_metrics(&run.metrics())?
            .iter()
            .map(|m| {
                let x = match args.x {
                    CompareAxis::Minutes => m.elapsed_s / 60.0,
                    CompareAxis::Steps => m.time_step as f64,
                };
                (x, m.loss_per_pixel)
            })
            .collect();
        if points.is_empty() {
            bail!("{} has no metrics yet", run.metrics().display());
        }
        series.push((name, points));
    }
    let named: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, p)| (n.as_str(), p.clone()))
        .collect();
    let label = match args.x {
        CompareAxis::Minutes => "minutes of training",
        CompareAxis::Steps => "time steps",
    };
    crate::viz::plot_curve(&named, [label, "training loss per pixel"], &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn default_run_dir(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("runs").join(stem)
}

/// `--minutes` in seconds, checked.
fn max_seconds(minutes: Option<f64>) -> anyhow::Result<Option<f64>> {
    match minutes {
        Some(m) if !(m > 0.0 && m.is_finite()) => {
            bail!("--minutes {m}: expected a positive number of minutes")
        }
        m => Ok(m.map(|m| m * 60.0)),
    }
}

/// Runs `mg-train train`.
pub fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    let config = ExperimentConfig::load(&args.config)?;
    let max_seconds = max_seconds(args.minutes)?;
    let root = args
        .run_dir
        .clone()
        .unwrap_or_else(|| default_run_dir(&args.config));
    let run = RunDir::new(&root);
    if run.latest()?.is_some() {
        bail!(
            "{} already holds a run; continue it with `mg-train resume {}` or choose another --run-dir",
            root.display(),
            root.display()
        );
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    write_atomic(&run.config(), config.to_toml().as_bytes())?;
    let total_steps = args.steps.unwrap_or(config.train.time_steps);
    eprintln!(
        "training {} ({} parameters, {} memory cells) on {} into {}",
        args.config.display(),
        config.model().num_params(),
        config.model().memory_cells(),
        args.device.name(),
        root.display()
    );
    dispatch(
        args.device,
        TrainJob {
            config,
            run,
            options: TrainOptions {
                total_steps,
                resume: false,
                max_seconds,
            },
        },
    )
}

/// Runs `mg-train resume`.
pub fn run_resume(args: &ResumeArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let config = ExperimentConfig::load(&run.config())?;
    let total_steps = args.steps.unwrap_or(config.train.time_steps);
    dispatch(
        args.device,
        TrainJob {
            config,
            run,
            options: TrainOptions {
                total_steps,
                resume: true,
                max_seconds: max_seconds(args.minutes)?,
            },
        },
    )
}

struct TrainJob {
    config: ExperimentConfig,
    run: RunDir,
    options: TrainOptions,
}

impl Job for TrainJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let progress = train::<B>(device, &self.config, &self.run, &self.options)?;
        eprintln!(
            "trained to time step {} ({} updates); checkpoint, metrics and {} in {}",
            progress.time_step,
            progress.updates,
            self.run
                .curve()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.run.root.display()
        );
        Ok(())
    }
}

/// Runs `mg-train eval`.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let config = ExperimentConfig::load(&run.config())?;
    let episodes = args.episodes.unwrap_or(config.eval.episodes);
    if episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    dispatch(
        args.device,
        EvalJob {
            config,
            run,
            episodes,
            json: args.json,
        },
    )
}

struct EvalJob {
    config: ExperimentConfig,
    run: RunDir,
    episodes: usize,
    json: bool,
}

impl Job for EvalJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let (model, progress) = load_model::<B>(&self.config, &self.run, &device)?;
        let report = report(
            &model,
            &self.config,
            self.episodes,
            progress.time_step,
            &device,
            !self.json,
        )?;
        let text = serde_json::to_string_pretty(&report)?;
        let path = self.run.root.join("eval.json");
        write_atomic(&path, text.as_bytes())?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "checkpoint at time step {}, {} test episodes (seed {:#x}), {:.1} s",
                report.time_step, report.episodes, report.seed, report.seconds
            );
            for r in &report.readers {
                println!(
                    "  {0}×{0} queries: precision {1:.4}  recall {2:.4}  F {3:.4}",
                    r.query_size, r.precision, r.recall, r.f
                );
            }
            println!("written to {}", path.display());
        }
        Ok(())
    }
}

/// Runs `mg-train viz`.
pub fn run_viz(args: &VizArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let config = ExperimentConfig::load(&run.config())?;
    let out = args.out.clone().unwrap_or_else(|| {
        run.root
            .join("viz")
            .join(format!("episode-{}", args.episode))
    });
    dispatch(
        args.device,
        VizJob {
            config,
            run,
            episode: args.episode,
            out,
        },
    )
}

struct VizJob {
    config: ExperimentConfig,
    run: RunDir,
    episode: usize,
    out: PathBuf,
}

impl Job for VizJob {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let (model, _) = load_model::<B>(&self.config, &self.run, &device)?;
        let frames = render_episode(&model, &self.config, self.episode, &self.out, &device)?;
        println!(
            "{frames} frames and episode.gif written to {}",
            self.out.display()
        );
        if matches!(model, Localizer::Dnc(_)) {
            let path = render_dnc_memory(&model, &self.config, self.episode, &self.out, &device)?;
            println!("DNC memory picture written to {}", path.display());
        }
        Ok(())
    }
}

/// Runs `mg-train info`.
pub fn run_info(args: &InfoArgs) -> anyhow::Result<()> {
    let config = ExperimentConfig::load(&args.config)?;
    let model = config.model();
    let episode_len = config.mapping(config.world.query_sizes[0]).episode_len();
    let mut info = json!({
        "config": args.config.display().to_string(),
        "kind": config.model.kind,
        "params": model.num_params(),
        "memory_cells": model.memory_cells(),
        "map_size": config.world.map_size,
        "episode_len": episode_len,
        "mask_size": config.world.mask_size,
    });
    let mut lines = Vec::new();
    match &model {
        LocalizerConfig::Multigrid(m) => {
            let writer: Vec<_> = m
                .writer
                .stack
                .layers
                .iter()
                .map(|l| json!({"first_level": l.output_levels.first, "levels": l.output_levels.count, "channels": l.d_hidden, "params": l.num_params(), "memory": l.memory_cells()}))
                .collect();
            let readers: Vec<_> = m
                .readers
                .iter()
                .zip(&config.world.query_sizes)
                .map(|(r, q)| json!({"query_size": q, "layers": r.layers.len(), "params": r.num_params()}))
                .collect();
            info["writer_params"] = json!(m.writer.num_params());
            info["writer"] = json!(writer);
            info["readers"] = json!(readers);
            lines.push(format!("  writer: {} parameters", m.writer.num_params()));
            for (k, l) in m.writer.stack.layers.iter().enumerate() {
                let side = |level: usize| 3usize << level;
                lines.push(format!(
                    "    W{}: {} levels ({}×{} … {}×{}) × {} channels, {} params, {} memory",
                    k + 1,
                    l.output_levels.count,
                    side(l.output_levels.first),
                    side(l.output_levels.first),
                    side(l.output_levels.end() - 1),
                    side(l.output_levels.end() - 1),
                    l.d_hidden,
                    l.num_params(),
                    l.memory_cells()
                ));
            }
            for (r, q) in m.readers.iter().zip(&config.world.query_sizes) {
                lines.push(format!(
                    "  reader for {q}×{q} queries: {} layers, {} parameters",
                    r.layers.len(),
                    r.num_params()
                ));
            }
        }
        LocalizerConfig::Dnc(d) => {
            let c = &d.dnc;
            info["dnc"] = json!({
                "input_size": c.input_size,
                "output_size": c.output_size,
                "controller": c.controller_size,
                "memory_slots": c.memory_slots,
                "word_size": c.word_size,
                "read_heads": c.read_heads,
                "write_heads": c.write_heads,
                "interface_size": c.interface_size(),
                "clip_value": c.clip_value,
            });
            lines.push(format!(
                "  DNC: controller LSTM {}, memory {} × {}, {} read heads, {} write heads, \
                 interface {}, input {}, output {}",
                c.controller_size,
                c.memory_slots,
                c.word_size,
                c.read_heads,
                c.write_heads,
                c.interface_size(),
                c.input_size,
                c.output_size
            ));
        }
    }
    if args.json {
        println!("{info}");
    } else {
        println!("{}", args.config.display());
        println!(
            "  parameters:   {} ({:.2}M)",
            model.num_params(),
            model.num_params() as f64 / 1e6
        );
        println!(
            "  memory cells: {} ({:.2}K)",
            model.memory_cells(),
            model.memory_cells() as f64 / 1e3
        );
        println!(
            "  world: {0}×{0}, episodes of {1} steps, {2}×{2} localization map",
            config.world.map_size,
            episode_len.map_or("policy-driven".into(), |l| l.to_string()),
            config.world.mask_size
        );
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}
