//! The experiment subcommands: `train`, `resume`, `eval`, `info`, `viz`, `compare` and
//! `bench`. Each reads a config and runs the harness with its task: a subcommand that needs a
//! backend is one [`Command`], generic over the task and the backend, which [`run_command`]
//! finds ([`tasks::visit`], then [`dispatch`]); `info` and `compare` visit the task only.

use mg_layers::MgBackend;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::tensor::backend::DeviceId;
use clap::Args;
use serde_json::json;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::harness::bench::{BenchOptions, BenchRecord, bench};
use crate::harness::checkpoint::write_atomic;
use crate::harness::experiment::{
    MAX_SEQUENCES, apply_overrides, check_memory, load_config, read_config_text, task_kind_among,
    training_bytes,
};
use crate::harness::machine;
use crate::harness::metrics::read_metrics;
use crate::harness::nodes::NodeOptions;
use crate::harness::stop;
use crate::harness::train::{load_model, shard_sizes, train};
use crate::harness::{EvalRequest, ExperimentOf, Report, RunDir, RunLock, Task, TrainOptions};
use crate::tasks::{self, TaskVisitor};

/// Arguments of `mg-train train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config (TOML), e.g. configs/mapping/quick.toml.
    pub config: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Run directory for checkpoints, metrics and pictures [default: runs/FAMILY-NAME for
    /// configs/FAMILY/NAME.toml, runs/NAME for other configs].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Train until this many time steps [default: the config's train.time_steps].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop (with a checkpoint) after this many minutes of wall time.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Start anew in a run directory that holds an earlier run, moving its files into
    /// RUN/previous-N/ (nothing is deleted).
    #[arg(long)]
    pub force: bool,
    /// Memory the run may use, GiB [default: what the machine has available]; a config whose
    /// estimated training memory exceeds it is refused before anything is allocated.
    #[arg(long, value_name = "GIB")]
    pub max_memory: Option<f64>,
    /// Training seed, in place of the config's `[train] seed` (the run's config.toml records it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Set a config field, e.g. `--set train.lr_start=5e-4 --set task.mapping_run=runs/m`
    /// (a TOML value, else a string); the run's config.toml records the result.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Data-parallel training over processes and machines.
    #[command(flatten)]
    pub nodes: NodeArgs,
}

/// Data-parallel training over processes and machines (`train` and `resume`).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Processes that train the run together, on one machine or several: each trains its part
    /// of the batch and the gradients are summed between them (burn-collective).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// This process's rank among --nodes, 0 to N−1. Rank 0 runs the coordinator and writes the
    /// run (checkpoints, metrics, pictures); the others only train.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// The coordinator's HOST:PORT, the same for every rank; rank 0 listens on PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// HOST:PORT at which the other nodes reach this one [default: the coordinator's HOST and
    /// port PORT+1+rank, right on one machine; on several, give each node its own].
    #[arg(long, value_name = "HOST:PORT")]
    pub node_address: Option<String>,
    /// Seconds a node waits for the others at any exchange before it stops with an error
    /// naming them (a window, or rank 0's checkpoint and validation, must fit in it).
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    pub node_timeout: f64,
    /// GPUs this process trains on, e.g. `--devices 0,1` with `--device cuda` (CUDA devices)
    /// or `--device wgpu` (discrete GPUs, in wgpu's order): the batch (or this node's part) is
    /// cut into one shard per device, each on a thread of its own, and the gradients are
    /// summed on the first, which holds the model.
    #[arg(long, value_name = "I,J,...", value_delimiter = ',')]
    pub devices: Vec<u16>,
}

impl NodeArgs {
    /// `--devices`, checked against the device kind and the config's `[train] threads`.
    fn devices(
        &self,
        device: DeviceKind,
        threads: usize,
        config: &Path,
    ) -> anyhow::Result<Vec<DeviceId>> {
        let d = &self.devices;
        if d.is_empty() {
            return Ok(Vec::new());
        }
        let list = d
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if !matches!(device, DeviceKind::Cuda | DeviceKind::Wgpu) {
            bail!(
                "--devices {list}: several devices in one process need --device cuda or wgpu \
                 (the CPU backends have one device: use [train] threads)"
            );
        }
        if let Some(i) = d
            .iter()
            .find(|&&i| d.iter().filter(|&&j| j == i).count() > 1)
        {
            bail!("--devices {list}: device {i} is named twice");
        }
        if threads > 1 && threads != d.len() {
            bail!(
                "--devices {list} trains one shard per device; train.threads = {threads} in {}: \
                 set it to 1 or {}",
                config.display(),
                d.len()
            );
        }
        d.iter().map(|&i| device.device_id(i)).collect()
    }

    /// The node settings, `None` for a run in one process.
    pub fn options(&self) -> anyhow::Result<Option<NodeOptions>> {
        if self.nodes == 1
            && self.node_rank == 0
            && self.coordinator.is_none()
            && self.node_address.is_none()
        {
            return Ok(None);
        }
        let Some(coordinator) = self.coordinator.clone() else {
            bail!(
                "--nodes {} --node-rank {}: give --coordinator HOST:PORT too (the same for every \
                 rank; rank 0 starts it)",
                self.nodes,
                self.node_rank
            );
        };
        // A day at most: `Duration` holds far more, but `recv_timeout` adds it to the clock.
        let timeout = std::time::Duration::try_from_secs_f64(self.node_timeout)
            .ok()
            .filter(|t| !t.is_zero() && t.as_secs() <= 86_400)
            .with_context(|| {
                format!(
                    "--node-timeout {}: expected a positive number of seconds, at most 86400",
                    self.node_timeout
                )
            })?;
        let options = NodeOptions {
            nodes: self.nodes,
            rank: self.node_rank,
            coordinator,
            address: self.node_address.clone(),
            timeout,
        };
        options.check()?;
        Ok(Some(options))
    }
}

impl TrainArgs {
    /// `--set` items, then `--seed` as `train.seed=N`.
    fn overrides(&self) -> Vec<String> {
        let mut items = self.set.clone();
        items.extend(self.seed.map(|s| format!("train.seed={s}")));
        items
    }
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
    /// The checkpoint to continue from, e.g. step-2000 [default: the newest intact one].
    #[arg(long)]
    pub from: Option<String>,
    /// Memory the run may use, GiB [default: what the machine has available]; a config whose
    /// estimated training memory exceeds it is refused before anything is allocated.
    #[arg(long, value_name = "GIB")]
    pub max_memory: Option<f64>,
    /// Data-parallel training over processes and machines.
    #[command(flatten)]
    pub nodes: NodeArgs,
}

/// Arguments of `mg-train eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Test sequences [default: the config's eval.sequences].
    #[arg(long, alias = "episodes")]
    pub sequences: Option<usize>,
    /// The checkpoint to evaluate, e.g. step-2000 [default: the newest intact one].
    #[arg(long)]
    pub from: Option<String>,
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
    /// Set a config field, e.g. `--set model.channels=[8,8,8]` (a TOML value, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Arguments of `mg-train viz`.
#[derive(Args, Debug)]
pub struct VizArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Test sequence (episode) to draw.
    #[arg(long, alias = "sequence", default_value_t = 0)]
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
    /// The PNG to write (an SVG of the same plot goes beside it).
    #[arg(long, default_value = "compare.png")]
    pub out: PathBuf,
    /// x axis: wall-clock `minutes` of training or `steps`.
    #[arg(long, value_enum, default_value = "minutes")]
    pub x: CompareAxis,
    /// Plot only up to this x (minutes or steps); `shortest` stops where the shortest run
    /// ends, so that runs of different lengths compare over the same range.
    #[arg(long, value_name = "X|shortest")]
    pub x_max: Option<String>,
    /// Draw an exponential moving average with this weight in [0, 1) over each raw curve
    /// (0.9: strong smoothing, as TensorBoard's slider).
    #[arg(long, value_name = "WEIGHT")]
    pub smooth: Option<f64>,
}

/// The x axis of `mg-train compare`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareAxis {
    /// Wall-clock minutes of training, over every process of a run.
    Minutes,
    /// Training time steps.
    Steps,
}

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
    /// Threads each training window and the batched inference step are split over: shards of
    /// the batch run on threads of their own (training: gradients summed) [default: the
    /// config's `[train] threads`, at most the batch].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Time only the model's first forward path (skip the step path).
    #[arg(long)]
    pub no_step_path: bool,
    /// Time only the inference steps (no training window), e.g. to profile them.
    #[arg(long, conflicts_with = "scaling")]
    pub inference_only: bool,
    /// Run burn's own ops instead of the project's CPU kernels (mg_layers::backend), to
    /// compare the two in one run; the device name gets the suffix ` (burn ops)`.
    #[arg(long)]
    pub no_kernels: bool,
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
    /// Memory the run may use, GiB [default: what the machine has available]; a config whose
    /// estimated training memory exceeds it is refused before anything is allocated.
    #[arg(long, value_name = "GIB")]
    pub max_memory: Option<f64>,
    /// Start from these weights (safetensors, as `mg-train export` or `--save-weights`
    /// writes them) instead of the seeded initialisation: the same model on every backend.
    #[arg(long, value_name = "FILE", conflicts_with = "scaling")]
    pub weights: Option<PathBuf>,
    /// Write the weights the benchmark starts from to this file (safetensors).
    #[arg(long, value_name = "FILE", conflicts_with = "scaling")]
    pub save_weights: Option<PathBuf>,
    /// Set a config field, e.g. `--set task.reading=story` (a TOML value, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "scaling")]
    pub set: Vec<String>,
}

/// Largest batch `bench` accepts.
const MAX_BENCH_BATCH: usize = 4096;
/// Largest window `bench` accepts.
const MAX_BENCH_STEPS: usize = 10_000;

/// The reference mapping model's experiment (reference-implementation.md §2.3–2.4).
pub const REFERENCE: &str = "[task]\nkind = \"mapping\"\nmap_size = 25\n[model]\n\
    levels = [2, 2, 3, 3, 4, 4, 5]\nchannels = [4, 4, 8, 8, 16, 16, 16]\ntail_channels = 16\n";

/// The `[task] kind` of a config text; an error lists every task.
pub fn config_kind(text: &str) -> anyhow::Result<String> {
    task_kind_among(text, tasks::KINDS)
}

/// A subcommand's work with the task its config names, on the backend its device names: one
/// type per subcommand, generic over both, run by [`run_command`].
pub trait Command {
    /// What the work returns.
    type Output;

    /// Runs the work with task `T` on backend `B`; `text` is the config.
    fn run<T: Task, B: MgBackend>(
        self,
        text: &str,
        device: B::Device,
    ) -> anyhow::Result<Self::Output>;
}

/// Runs `command` with the task of the config `text` (read from `place`, which errors name)
/// on the backend of `device`.
pub fn run_command<C: Command>(
    place: &str,
    text: String,
    device: DeviceKind,
    command: C,
) -> anyhow::Result<C::Output> {
    struct OnTask<C> {
        command: C,
        text: String,
        device: DeviceKind,
    }

    impl<C: Command> TaskVisitor for OnTask<C> {
        type Output = anyhow::Result<C::Output>;

        fn visit<T: Task>(self) -> Self::Output {
            struct OnBackend<C, T> {
                command: C,
                text: String,
                task: std::marker::PhantomData<T>,
            }

            impl<C: Command, T: Task> Job for OnBackend<C, T> {
                type Output = C::Output;

                fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<C::Output> {
                    self.command.run::<T, B>(&self.text, device)
                }
            }

            let job = OnBackend::<C, T> {
                command: self.command,
                text: self.text,
                task: std::marker::PhantomData,
            };
            dispatch(self.device, job)
        }
    }

    let kind = config_kind(&text).with_context(|| place.to_string())?;
    let visitor = OnTask {
        command,
        text,
        device,
    };
    tasks::visit(&kind, visitor).with_context(|| place.to_string())?
}

/// Reads a config file, applies `KEY=VALUE` overrides ([`apply_overrides`]) and runs `command`
/// with its task on `device`.
fn with_config_set<C: Command>(
    path: &Path,
    overrides: &[String],
    device: DeviceKind,
    command: C,
) -> anyhow::Result<C::Output> {
    let (place, text) = config_with_overrides(path, overrides)?;
    run_command(&place, text, device, command)
}

/// The config at `path` with `--set` overrides applied, and the place errors name
/// (`in config P with --set K=V`).
fn config_with_overrides(path: &Path, overrides: &[String]) -> anyhow::Result<(String, String)> {
    let text = read_config_text(path)?;
    overrides_in(format!("in config {}", path.display()), &text, overrides)
}

/// `text` with `--set` overrides applied, and the place errors name: `place` (`in config P`),
/// followed by the overrides.
fn overrides_in(
    place: String,
    text: &str,
    overrides: &[String],
) -> anyhow::Result<(String, String)> {
    let place = if overrides.is_empty() {
        place
    } else {
        let sets: Vec<String> = overrides.iter().map(|o| format!("--set {o}")).collect();
        format!("{place} with {}", sets.join(" "))
    };
    let text = apply_overrides(text, overrides).with_context(|| place.clone())?;
    Ok((place, text))
}

/// `runs/FAMILY-NAME` for a shipped config `configs/FAMILY/NAME.toml` (so that
/// `configs/sort/quick.toml` and `configs/mapping/quick.toml` do not share a run), else
/// `runs/NAME`.
pub fn default_run_dir(config: &Path) -> PathBuf {
    let name = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = name(config).unwrap_or_else(|| "run".into());
    let family = config.parent().filter(|dir| {
        dir.parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "configs")
    });
    match family.and_then(|f| f.file_name()) {
        Some(f) => PathBuf::from("runs").join(format!("{}-{stem}", f.to_string_lossy())),
        None => PathBuf::from("runs").join(stem),
    }
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

/// Refuses a config whose training window would not fit in memory.
fn check_training_memory<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    path: &Path,
    max_gib: Option<f64>,
) -> anyhow::Result<()> {
    check_memory(
        &format!("training {}", path.display()),
        task.info().params,
        task.floats_per_step(),
        config.train.batch,
        config.train.window,
        max_gib,
    )
}

fn on_cpu(device: DeviceKind) -> bool {
    matches!(device, DeviceKind::Cpu | DeviceKind::Ndarray)
}

/// Runs `mg-train train`.
pub fn run_train(args: &TrainArgs) -> anyhow::Result<()> {
    with_config_set(&args.config, &args.overrides(), args.device, Train(args))
}

struct Train<'a>(&'a TrainArgs);

impl Command for Train<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        // Everything that can be checked is checked before the run folder is touched.
        let (config, task) = load_config::<T>(&args.config, text)?;
        check_training_memory(&task, &config, &args.config, args.max_memory)?;
        let max_seconds = max_seconds(args.minutes)?;
        let total_steps = args.steps.unwrap_or(config.train.time_steps);
        if total_steps == 0 {
            match args.steps {
                Some(_) => bail!("--steps 0: expected at least 1 time step"),
                None => bail!(
                    "train.time_steps: 0 in config {}; expected at least 1 time step",
                    args.config.display()
                ),
            }
        }
        let devices = args
            .nodes
            .devices(args.device, config.train.threads, &args.config)?;
        let nodes = args.nodes.options()?;
        let count = nodes.as_ref().map_or(1, |o| o.nodes);
        check_threads(&task, &config, &args.config, devices.len(), count)?;
        stop::on_signals()?;
        let root = args
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(&args.config));
        let options = TrainOptions {
            total_steps,
            resume: false,
            from: None,
            max_seconds,
            on_cpu: on_cpu(args.device),
            show_progress: true,
            nodes,
            devices,
        };
        if let Some(o) = options.nodes.as_ref().filter(|o| o.rank > 0) {
            // Rank 0 owns the run folder; this node only trains.
            eprintln!(
                "node {} of {}: training {} with rank 0 at {}, which writes {}",
                o.rank,
                o.nodes,
                args.config.display(),
                o.coordinator,
                root.display()
            );
            return train_and_report::<T, B>(device, &task, &config, &RunDir::new(&root), &options);
        }
        let created = !root.exists();
        let lock = RunLock::acquire(&root, &format!("train {}", args.config.display()))?;
        let run = RunDir::new(&root);
        let existing = run.existing_files();
        if !existing.is_empty() {
            if !args.force {
                let refused = anyhow::anyhow!(
                    "{} already holds a run ({}); continue it with `mg-train resume {}`, start \
                     anew with --force (its files move into {}/previous-N/), or choose another \
                     --run-dir",
                    root.display(),
                    existing.join(", "),
                    root.display(),
                    root.display()
                );
                return Err(refused);
            }
            let aside = run.move_aside()?;
            eprintln!("moved the earlier run's files into {}", aside.display());
        }
        let info = task.info();
        let result = write_atomic(&run.config(), config.to_toml().as_bytes()).and_then(|()| {
            eprintln!(
                "training {} ({} parameters, {} memory cells) on {} into {}",
                args.config.display(),
                info.params,
                info.memory_cells,
                args.device.name(),
                root.display()
            );
            train_and_report::<T, B>(device, &task, &config, &run, &options)
        });
        if result.is_err() && run.all_checkpoints().is_ok_and(|c| c.is_empty()) {
            // Nothing to resume from: a folder left with a config would refuse the next `train`
            // and give `resume` nothing, so the run's files go.
            let removed = run.remove_files();
            drop(lock);
            if created {
                std::fs::remove_dir(&root).ok();
            }
            if removed.is_ok() {
                eprintln!(
                    "no checkpoint was written; removed the run's files from {}",
                    root.display()
                );
            }
        }
        result
    }
}

/// Refuses `[train] threads` above 1 (or several `--devices`, or `--nodes`) for a task that
/// trains on one thread, naming the config.
fn check_threads<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    path: &Path,
    devices: usize,
    nodes: usize,
) -> anyhow::Result<()> {
    let t = &config.train;
    let shards = nodes * devices.max(t.threads);
    if shards > t.threads {
        // Cut between nodes or devices, the batch is in as many shards as with this many
        // threads: a model that refuses them (batch norm) refuses these too.
        let mut cut = config.clone();
        cut.train.threads = shards;
        T::new(&cut).with_context(|| {
            let by = match (nodes > 1, devices > 1) {
                (true, true) => format!("--nodes {nodes} and --devices"),
                (true, false) => format!("--nodes {nodes}"),
                _ => "--devices".to_string(),
            };
            format!("{by} cut the batch into {shards} shards, as train.threads = {shards} would")
        })?;
    }
    let shards = if devices > 0 { devices } else { t.threads };
    if shards <= 1 {
        return Ok(());
    }
    let batch = task.batch(t.seed, 0, t.batch)?;
    if task
        .split_batch(&batch, &shard_sizes(t.batch, shards))
        .is_none()
    {
        if devices > 0 {
            bail!(
                "--devices: `{}` models train on one device ({}); give one device",
                T::KIND,
                path.display()
            );
        }
        bail!(
            "train.threads = {} in {}: `{}` models train on one thread; set train.threads = 1",
            t.threads,
            path.display(),
            T::KIND
        );
    }
    Ok(())
}

/// Runs `mg-train resume`.
pub fn run_resume(args: &ResumeArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let nodes = args.nodes.options()?;
    // Rank 0 owns the run folder; the other nodes read its config and checkpoint.
    let lock = match nodes.as_ref().filter(|o| o.rank > 0) {
        Some(_) => None,
        None => Some(RunLock::acquire(
            &run.root,
            &format!("resume {}", run.root.display()),
        )?),
    };
    let resume = Resume {
        args,
        run: run.clone(),
        lock,
    };
    with_config_set(&run.config(), &[], args.device, resume)
}

struct Resume<'a> {
    args: &'a ResumeArgs,
    run: RunDir,
    lock: Option<RunLock>,
}

impl Command for Resume<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let args = self.args;
        let (config, task) = load_config::<T>(&self.run.config(), text)?;
        check_training_memory(&task, &config, &self.run.config(), args.max_memory)?;
        let devices = args
            .nodes
            .devices(args.device, config.train.threads, &self.run.config())?;
        let count = args.nodes.options()?.map_or(1, |o| o.nodes);
        check_threads(&task, &config, &self.run.config(), devices.len(), count)?;
        stop::on_signals()?;
        let _lock = self.lock;
        let options = TrainOptions {
            total_steps: args.steps.unwrap_or(config.train.time_steps),
            resume: true,
            from: args.from.clone(),
            max_seconds: max_seconds(args.minutes)?,
            on_cpu: on_cpu(args.device),
            show_progress: true,
            nodes: args.nodes.options()?,
            devices,
        };
        train_and_report::<T, B>(device, &task, &config, &self.run, &options)
    }
}

/// Trains (or resumes) and says where the run stands, or how to continue an interrupted one.
fn train_and_report<T: Task, B: MgBackend>(
    device: B::Device,
    task: &T,
    config: &ExperimentOf<T>,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<()> {
    // Where the run stood, for the closing message only: a damaged or missing newest
    // checkpoint is training's business (it falls back, or `--from` picks one).
    let before = run.latest_progress();
    let progress = train::<T, B>(device, task, config, run, options)?;
    if let Some(o) = options.nodes.as_ref().filter(|o| o.rank > 0) {
        if stop::requested() {
            bail!(
                "node {}: interrupted at time step {}; rank 0 wrote the checkpoint into {}: \
                 continue with `mg-train resume {}` and the same node flags on every node",
                o.rank,
                progress.time_step,
                run.root.display(),
                run.root.display()
            );
        }
        eprintln!(
            "node {}: trained to time step {} with rank 0, which wrote the run",
            o.rank, progress.time_step
        );
        return Ok(());
    }
    if stop::requested() {
        bail!(
            "interrupted at time step {}; the checkpoint is in {}: continue with \
             `mg-train resume {}`",
            progress.time_step,
            run.latest()
                .ok()
                .flatten()
                .unwrap_or_else(|| run.root.join("checkpoints"))
                .display(),
            run.root.display()
        );
    }
    if before.is_some_and(|b| b.same_position(&progress)) {
        return Ok(());
    }
    eprintln!(
        "trained to time step {} ({} updates, {:.1} minutes in all); checkpoint, metrics \
         and learning_curve.png in {}",
        progress.time_step,
        progress.updates,
        progress.elapsed_s / 60.0,
        run.root.display()
    );
    Ok(())
}

/// Runs `mg-train eval`.
pub fn run_eval(args: &EvalArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    if let Some(n) = args.sequences
        && !(1..=MAX_SEQUENCES).contains(&n)
    {
        bail!("--sequences {n}: expected 1 to {MAX_SEQUENCES} test sequences");
    }
    let eval = Eval {
        args,
        run: run.clone(),
    };
    with_config_set(&run.config(), &[], args.device, eval)
}

struct Eval<'a> {
    args: &'a EvalArgs,
    run: RunDir,
}

impl Command for Eval<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let (args, run) = (self.args, &self.run);
        let (config, task) = load_config::<T>(&run.config(), text)?;
        let (model, progress) = load_model::<T, B>(&task, run, args.from.as_deref(), &device)?;
        let request = EvalRequest {
            sequences: args.sequences.unwrap_or(config.eval.sequences),
            time_step: progress.time_step,
            show_progress: !args.json,
        };
        let report = task.evaluate(&model, &request, &device)?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for line in report.lines() {
                println!("{line}");
            }
        }
        let path = run.eval_report();
        write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
            .context("the report above was not saved")?;
        if !args.json {
            println!("written to {}", path.display());
        }
        Ok(())
    }
}

/// Runs `mg-train viz`.
pub fn run_viz(args: &VizArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let viz = Viz {
        args,
        run: run.clone(),
    };
    with_config_set(&run.config(), &[], args.device, viz)
}

struct Viz<'a> {
    args: &'a VizArgs,
    run: RunDir,
}

impl Command for Viz<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let (config, task) = load_config::<T>(&self.run.config(), text)?;
        let episode = self.args.episode;
        if episode >= config.eval.sequences {
            bail!(
                "--episode {episode}: the test set has {} sequences (eval.sequences in {}); \
                 expected 0 to {}",
                config.eval.sequences,
                self.run.config().display(),
                config.eval.sequences - 1
            );
        }
        let out = self
            .args
            .out
            .clone()
            .unwrap_or_else(|| self.run.viz().join(format!("episode-{episode}")));
        let (model, _) = load_model::<T, B>(&task, &self.run, None, &device)?;
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for path in task.draw(&model, episode, &out, &device)? {
            println!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// Runs `mg-train info`.
pub fn run_info(args: &InfoArgs) -> anyhow::Result<()> {
    let (place, text) = config_with_overrides(&args.config, &args.set)?;
    let kind = config_kind(&text).with_context(|| place.clone())?;
    tasks::visit(
        &kind,
        InfoCmd {
            args,
            text,
            place: &place,
        },
    )
    .with_context(|| place.clone())?
}

struct InfoCmd<'a> {
    args: &'a InfoArgs,
    text: String,
    place: &'a str,
}

impl TaskVisitor for InfoCmd<'_> {
    type Output = anyhow::Result<()>;

    fn visit<T: Task>(self) -> anyhow::Result<()> {
        let args = self.args;
        let config =
            ExperimentOf::<T>::parse(&self.text).with_context(|| self.place.to_string())?;
        let task = T::for_info(&config).with_context(|| self.place.to_string())?;
        let info = task.info();
        let bytes = training_bytes(
            info.params,
            task.floats_per_step(),
            config.train.batch,
            config.train.window,
        );
        if args.json {
            let mut out = json!({
                "config": args.config.display().to_string(),
                "task": T::KIND,
                "params": info.params,
                "memory_cells": info.memory_cells,
                "training_bytes_estimate": bytes,
            });
            out["kind"] = serde_json::to_value(&config.model)?
                .get("kind")
                .cloned()
                .unwrap_or(json!("multigrid"));
            for (k, v) in info.json {
                out[k] = v;
            }
            println!("{out}");
        } else {
            println!("{} ({} task)", args.config.display(), T::KIND);
            println!(
                "  parameters:   {} ({:.2}M)",
                info.params,
                info.params as f64 / 1e6
            );
            println!(
                "  memory cells: {} ({:.2}K)",
                info.memory_cells,
                info.memory_cells as f64 / 1e3
            );
            for line in info.lines {
                println!("{line}");
            }
            println!(
                "  training memory, estimated: {:.2} GiB at batch {} × window {}",
                bytes / (1u64 << 30) as f64,
                config.train.batch,
                config.train.window
            );
        }
        Ok(())
    }
}

/// Runs `mg-train compare`: the runs' learning curves (loss per unit) in one PNG.
pub fn run_compare(args: &CompareArgs) -> anyhow::Result<()> {
    let png = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        bail!(
            "--out {}: expected a .png file (compare writes PNG, and an SVG of the same plot \
             beside it)",
            args.out.display()
        );
    }
    let mut series = Vec::new();
    let mut units = Vec::new();
    for dir in &args.run_dirs {
        let run = RunDir::open(dir)?;
        let text = read_config_text(&run.config())?;
        let kind =
            config_kind(&text).with_context(|| format!("in config {}", run.config().display()))?;
        units.push(tasks::visit(&kind, Unit)?);
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let points: Vec<(f64, f64)> = read_metrics(&run.metrics())?
            .iter()
            .map(|m| {
                let x = match args.x {
                    CompareAxis::Minutes => m.elapsed_s / 60.0,
                    CompareAxis::Steps => m.time_step as f64,
                };
                (x, m.loss_per_unit)
            })
            .collect();
        if points.is_empty() {
            bail!("{} has no metrics yet", run.metrics().display());
        }
        series.push((name, points));
    }
    units.dedup();
    let smooth = match args.smooth {
        Some(w) if !(0.0..1.0).contains(&w) => {
            bail!("--smooth {w}: expected a weight in [0, 1), e.g. 0.9")
        }
        Some(w) if w > 0.0 => Some(w),
        _ => None,
    };
    let limit = match args.x_max.as_deref() {
        None => f64::INFINITY,
        Some("shortest") => series
            .iter()
            .map(|(_, p)| p.last().map_or(0.0, |l| l.0))
            .fold(f64::INFINITY, f64::min),
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => x,
            _ => bail!("--x-max {v}: expected a positive number or `shortest`"),
        },
    };
    let named: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, p)| {
            let kept: Vec<(f64, f64)> = p.iter().copied().filter(|q| q.0 <= limit).collect();
            (n.as_str(), kept)
        })
        .collect();
    if let Some((name, _)) = named.iter().find(|(_, p)| p.is_empty()) {
        bail!("--x-max {limit}: {name} has no point that early");
    }
    let label = match args.x {
        CompareAxis::Minutes => "Training time (min)",
        CompareAxis::Steps => "Time step",
    };
    let y = format!("Training loss per {} (nats)", units.join(" / "));
    let svg = crate::plot::plot_curve(&named, [label, &y], &args.out, smooth)?;
    eprintln!("wrote {} and {}", args.out.display(), svg.display());
    Ok(())
}

struct Unit;

impl TaskVisitor for Unit {
    type Output = &'static str;
    fn visit<T: Task>(self) -> &'static str {
        T::UNIT
    }
}

/// Runs `mg-train bench`.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let (steps, batch) = if args.scaling {
        (args.steps.unwrap_or(5), args.batch.unwrap_or(4))
    } else {
        (args.steps.unwrap_or(20), args.batch.unwrap_or(32))
    };
    anyhow::ensure!(
        (1..=MAX_BENCH_STEPS).contains(&steps),
        "--steps {steps}: expected 1 to {MAX_BENCH_STEPS}"
    );
    anyhow::ensure!(
        (1..=MAX_BENCH_BATCH).contains(&batch),
        "--batch {batch}: expected 1 to {MAX_BENCH_BATCH}"
    );
    if let Some(threads) = args.threads {
        anyhow::ensure!(
            (1..=64).contains(&threads) && threads <= batch,
            "--threads {threads}: expected 1 to 64, and at most the batch ({batch})"
        );
    }
    anyhow::ensure!(
        (1..=1000).contains(&args.repeats),
        "--repeats {}: expected 1 to 1000",
        args.repeats
    );
    mg_layers::backend::set_cpu_kernels(!args.no_kernels);
    let kernels = match (args.device, args.no_kernels) {
        (DeviceKind::Cpu, false) => mg_layers::backend::cpu_kernel_isa(),
        _ => None,
    };
    if !args.json {
        println!(
            "machine: {} ({}, {} threads available){}",
            machine::cpu_model(),
            machine::isa_level(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernels.map_or(String::new(), |k| format!("; project kernels: {k}"))
        );
    }
    let device = match args.no_kernels {
        true => format!("{} (burn ops)", args.device.name()),
        false => args.device.name().to_string(),
    };
    let options = |name: String| BenchOptions {
        name,
        device: device.clone(),
        on_cpu: on_cpu(args.device),
        kernels,
        steps,
        batch,
        repeats: args.repeats,
        threads: args.threads,
        training: !args.inference_only,
        all_paths: !args.no_step_path && !args.scaling,
        inference: !args.scaling,
        weights: args.weights.clone(),
        save_weights: args.save_weights.clone(),
    };
    if args.scaling {
        anyhow::ensure!(
            (3..=8).contains(&args.max_level),
            "--max-level {}: expected 3 to 8",
            args.max_level
        );
        anyhow::ensure!(
            (128..=1 << 16).contains(&args.max_slots),
            "--max-slots {}: expected 128 to 65536",
            args.max_slots
        );
        let family = tasks::mapping::scaling::family(args.max_level, args.max_slots)?;
        if let Some(i) = args.member {
            let member = family
                .get(i)
                .with_context(|| format!("--member {i}: the family has {} models", family.len()))?;
            let bench = Bench {
                path: Path::new(&member.name),
                options: options(member.name.clone()),
                max_memory: args.max_memory,
            };
            let place = format!("in the scaling family's member {i}, {}", member.name);
            let records = run_command(&place, member.config.to_toml(), args.device, bench)?;
            return print_records(&records, true);
        }
        let scaling = tasks::mapping::scaling::Scaling {
            device: args.device.name_arg(),
            max_level: args.max_level,
            max_slots: args.max_slots,
            steps,
            batch,
            repeats: args.repeats,
            out: &args.out,
            json: args.json,
        };
        return tasks::mapping::scaling::run(&scaling, |r| print_records(r, args.json));
    }
    let (path, (place, text), name) = match &args.config {
        None => (
            PathBuf::from("the reference mapping model"),
            overrides_in(
                "in the reference mapping model".into(),
                REFERENCE,
                &args.set,
            )?,
            "mapping-reference".to_string(),
        ),
        Some(path) => (
            path.clone(),
            config_with_overrides(path, &args.set)?,
            path.file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
        ),
    };
    let bench = Bench {
        path: &path,
        options: options(name),
        max_memory: args.max_memory,
    };
    let records = run_command(&place, text, args.device, bench)?;
    print_records(&records, args.json)
}

struct Bench<'a> {
    path: &'a Path,
    options: BenchOptions,
    max_memory: Option<f64>,
}

impl Command for Bench<'_> {
    type Output = Vec<BenchRecord>;

    fn run<T: Task, B: MgBackend>(
        self,
        text: &str,
        device: B::Device,
    ) -> anyhow::Result<Vec<BenchRecord>> {
        let (config, task) = load_config::<T>(self.path, text)?;
        check_memory(
            &format!("timing {}", self.path.display()),
            task.info().params,
            task.floats_per_step(),
            self.options.batch,
            self.options.steps,
            self.max_memory,
        )?;
        bench::<T, B>(&task, &config, &self.options, device)
    }
}

/// Prints records as JSON lines or a table.
fn print_records(records: &[BenchRecord], json: bool) -> anyhow::Result<()> {
    for r in records {
        if json {
            println!("{}", serde_json::to_string(r)?);
        } else {
            println!(
                "{:<26} {} ({} params, {} memory) on {}: batch {:>3}, {:>2} steps: median {:>9.2} ms (min {:.2}){}{}",
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
                    .map_or(String::new(), |m| format!(", peak +{m:.0} MiB")),
                r.throughput_text()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_get_their_family_in_the_run_name() {
        let dir = |p: &str| default_run_dir(Path::new(p));
        assert_eq!(dir("configs/sort/quick.toml"), Path::new("runs/sort-quick"));
        assert_eq!(
            dir("../x/configs/mapping/quick.toml"),
            Path::new("runs/mapping-quick")
        );
        assert_eq!(dir("my.toml"), Path::new("runs/my"));
        assert_eq!(dir("/tmp/exp/tiny.toml"), Path::new("runs/tiny"));
    }
}
