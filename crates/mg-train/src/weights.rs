//! `mg-train export` and `import`: a run's weights as a safetensors file, and a new run from
//! such a file.
//!
//! Tensor names are the model's module paths, without enum variant names, e.g.
//! `writer.stack.layers.0.cells.1.gates.weight` (layer 1, level 1 of a multigrid writer) or
//! `dnc.controller.lstm.weight`; `mg-train export --list` prints every name with its shape.
//! The file's metadata holds the task kind (`mg_task`) and the run's config (`mg_config`, TOML).
//!
//! `--names torch` writes a multigrid mapping model under the parameter names of the
//! independent PyTorch model (`torch_mgmem.py`'s `LocalizationModel`, mapping in
//! [`mg_models::interop::TorchLayout`]), with its variant as JSON in `torch_mgmem_variant`, so
//! that `model.load_state_dict(safetensors.torch.load_file(FILE))` loads it there.

use mg_layers::MgBackend;
use std::path::PathBuf;

use anyhow::{Context, bail};
use burn_store::{KeyRemapper, ModuleSnapshot};
use clap::Args;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::commands::{default_run_dir, load_config};
use crate::harness::experiment::{read_config_text, task_kind};
use crate::harness::train::{load_model, start_from_weights};
use crate::harness::{ExperimentOf, RunDir, RunLock, Task};
use crate::tasks::{self, TaskVisitor};

/// The weight file formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// safetensors (Hugging Face): loadable in PyTorch, JAX and others.
    Safetensors,
}

/// Tensor names of an exported file.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    /// Our module paths (what `mg-train import` reads).
    Burn,
    /// The PyTorch mapping model's parameter names (multigrid mapping models only).
    Torch,
}

/// Arguments of `mg-train export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run directory written by `mg-train train`.
    pub run_dir: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: Format,
    /// The file to write [default: RUN/model.safetensors].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The checkpoint to export, e.g. step-2000 [default: the newest intact one].
    #[arg(long)]
    pub from: Option<String>,
    /// Print every tensor's name and shape.
    #[arg(long)]
    pub list: bool,
    /// Tensor names to write.
    #[arg(long, value_enum, default_value = "burn")]
    pub names: Names,
}

/// Arguments of `mg-train import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Experiment config (TOML) whose model the weights fit.
    pub config: PathBuf,
    /// The weight file (safetensors, as `mg-train export` writes it).
    pub weights: PathBuf,
    /// The new run directory [default: runs/FAMILY-NAME, as `train`].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

/// Runs `mg-train export`.
pub fn run_export(args: &ExportArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let text = read_config_text(&run.config())?;
    let kind = task_kind(&text).with_context(|| format!("in config {}", run.config().display()))?;
    tasks::visit(&kind, Export { args, run, text })?
}

struct Export<'a> {
    args: &'a ExportArgs,
    run: RunDir,
    text: String,
}

impl TaskVisitor for Export<'_> {
    type Output = anyhow::Result<()>;

    fn visit<T: Task>(self) -> anyhow::Result<()> {
        let (_, task) = load_config::<T>(&self.run.config(), &self.text)?;
        dispatch(DeviceKind::Cpu, ExportJob { task, cmd: self })
    }
}

struct ExportJob<'a, T> {
    task: T,
    cmd: Export<'a>,
}

impl<T: Task> Job for ExportJob<'_, T> {
    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.cmd.args;
        let (model, progress) =
            load_model::<T, B>(&self.task, &self.cmd.run, args.from.as_deref(), &device)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| self.cmd.run.exported_weights());
        let mut store = crate::harness::bench::weight_store(&out)
            .metadata("mg_task", T::KIND)
            .metadata("mg_config", self.cmd.text.as_str())
            .metadata("mg_time_step", progress.time_step.to_string());
        // Every tensor's name in the file and its shape.
        let mut listed: Vec<(String, Vec<usize>)> = model
            .collect(None, None, true)
            .into_iter()
            .map(|snapshot| (snapshot.full_path(), snapshot.shape.to_vec()))
            .collect();
        if args.names == Names::Torch {
            let names = self.task.torch_names()?;
            let mut pairs = Vec::new();
            for (path, _) in &mut listed {
                let Some(name) = (names.rename)(path) else {
                    bail!("{path} has no PyTorch name");
                };
                pairs.push((format!("^{}$", escape_regex(path)), name.clone()));
                *path = name;
            }
            let remapper = KeyRemapper::from_patterns(pairs)
                .map_err(|e| anyhow::anyhow!("tensor name patterns: {e}"))?;
            store = store.remap(remapper);
            for (key, value) in names.metadata {
                store = store.metadata(key, value);
            }
        }
        model
            .save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
        if args.list {
            for (name, shape) in &listed {
                println!("{name}\t{shape:?}");
            }
        }
        eprintln!(
            "wrote the weights at time step {} to {}",
            progress.time_step,
            out.display()
        );
        Ok(())
    }
}

/// `s` with every character a regex could read as an operator escaped.
fn escape_regex(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = !(c.is_ascii_alphanumeric() || c == '_');
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// An error if `run` already holds run files.
fn refuse_existing(run: &RunDir) -> anyhow::Result<()> {
    let existing = run.existing_files();
    if !existing.is_empty() {
        bail!(
            "{} already holds a run ({}); import into a new --run-dir",
            run.root.display(),
            existing.join(", ")
        );
    }
    Ok(())
}

/// Runs `mg-train import`.
pub fn run_import(args: &ImportArgs) -> anyhow::Result<()> {
    if !args.weights.is_file() {
        bail!("{}: no such file", args.weights.display());
    }
    let text = read_config_text(&args.config)?;
    let kind = task_kind(&text).with_context(|| format!("in config {}", args.config.display()))?;
    tasks::visit(&kind, Import { args, text })?
}

struct Import<'a> {
    args: &'a ImportArgs,
    text: String,
}

impl TaskVisitor for Import<'_> {
    type Output = anyhow::Result<()>;

    fn visit<T: Task>(self) -> anyhow::Result<()> {
        let (config, task) = load_config::<T>(&self.args.config, &self.text)?;
        let root = self
            .args
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(&self.args.config));
        let run = RunDir::new(&root);
        refuse_existing(&run)?;
        dispatch(
            DeviceKind::Cpu,
            ImportJob {
                task,
                config,
                run,
                weights: self.args.weights.clone(),
            },
        )
    }
}

struct ImportJob<T: Task> {
    task: T,
    config: ExperimentOf<T>,
    run: RunDir,
    weights: PathBuf,
}

impl<T: Task> Job for ImportJob<T> {
    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<()> {
        // The weights are read before the run folder exists, so a refused file leaves nothing.
        let mut model = self.task.init_train::<B>(&device);
        crate::harness::bench::load_weights(&mut model, &self.weights)?;
        let command = format!("import {}", self.weights.display());
        let _lock = RunLock::acquire(&self.run.root, &command)?;
        refuse_existing(&self.run)?;
        crate::harness::checkpoint::write_atomic(
            &self.run.config(),
            self.config.to_toml().as_bytes(),
        )?;
        let dir = start_from_weights::<T, B>(&self.task, &self.config, &self.run, model)?;
        eprintln!(
            "{} parameters from {} in {} (time step 0); evaluate it with `mg-train eval {}`, \
             train on with `mg-train resume {}`",
            self.task.info().params,
            self.weights.display(),
            dir.display(),
            self.run.root.display(),
            self.run.root.display()
        );
        Ok(())
    }
}
