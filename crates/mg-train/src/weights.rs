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
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn_store::{KeyRemapper, ModuleSnapshot};
use clap::Args;

use crate::backend::DeviceKind;
use crate::commands::{Command, default_run_dir, run_command};
use crate::harness::experiment::{load_config, read_config_text};
use crate::harness::train::{load_model, start_from_weights};
use crate::harness::{RunDir, RunLock, Task};

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
    /// Print every tensor's name and shape; the file is written only with --out.
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
    let place = format!("in config {}", run.config().display());
    run_command(&place, text, DeviceKind::Cpu, Export { args, run })
}

struct Export<'a> {
    args: &'a ExportArgs,
    run: RunDir,
}

impl Command for Export<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let (args, run) = (self.args, &self.run);
        let (_, task) = load_config::<T>(&run.config(), text)?;
        let (model, progress) = load_model::<T, B>(&task, run, args.from.as_deref(), &device)?;
        let out = args.out.clone().unwrap_or_else(|| run.exported_weights());
        let mut store = crate::harness::bench::weight_store(&out)
            .metadata("mg_task", T::KIND)
            .metadata("mg_config", text)
            .metadata("mg_time_step", progress.time_step.to_string());
        // Every tensor's name in the file and its shape.
        let mut listed: Vec<(String, Vec<usize>)> = model
            .collect(None, None, true)
            .into_iter()
            .map(|snapshot| (snapshot.full_path(), snapshot.shape.to_vec()))
            .collect();
        if args.names == Names::Torch {
            let names = task.torch_names()?;
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
        if args.list {
            for (name, shape) in &listed {
                println!("{name}\t{shape:?}");
            }
            if args.out.is_none() {
                // Listing only: nothing is written without --out.
                return Ok(());
            }
        }
        model
            .save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
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

/// Largest safetensors header read for its metadata, bytes.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The `__metadata__` of a safetensors file (empty when it has none or the header does not
/// parse: the load that follows names what is wrong).
fn file_metadata(path: &Path) -> BTreeMap<String, String> {
    let read = || -> Option<BTreeMap<String, String>> {
        let mut file = std::fs::File::open(path).ok()?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).ok()?;
        let len = u64::from_le_bytes(len);
        if len > MAX_HEADER_BYTES {
            return None;
        }
        let mut header = Vec::new();
        file.take(len).read_to_end(&mut header).ok()?;
        let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
        serde_json::from_value(header.get("__metadata__")?.clone()).ok()
    };
    read().unwrap_or_default()
}

/// What a weight file's metadata says wrote it: the task and model of the exporting run.
fn described_by(metadata: &BTreeMap<String, String>) -> Option<String> {
    let task = metadata.get("mg_task")?;
    let model = metadata
        .get("mg_config")
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|config| config.get("model").cloned())
        .map(|model| one_line(&model))
        .unwrap_or_else(|| "not recorded".into());
    let step = metadata
        .get("mg_time_step")
        .map_or(String::new(), |s| format!(", at time step {s}"));
    Some(format!("a `{task}` model ([model] {model}){step}"))
}

/// A TOML table on one line: `kind = "multigrid", levels = [1, 2], …`.
fn one_line(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => table
            .iter()
            .map(|(k, v)| format!("{k} = {}", one_line(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The first tensor of `model` holding a NaN or an infinity: its name and the value.
fn first_non_finite<B: burn::tensor::backend::Backend, M: ModuleSnapshot<B>>(
    model: &M,
) -> Option<(String, f32)> {
    model
        .collect(None, None, true)
        .into_iter()
        .find_map(|snapshot| {
            if !snapshot.dtype.is_float() {
                return None;
            }
            let data = snapshot.to_data().ok()?;
            let bad = data.iter::<f32>().find(|v| !v.is_finite())?;
            Some((snapshot.full_path(), bad))
        })
}

/// Runs `mg-train import`.
pub fn run_import(args: &ImportArgs) -> anyhow::Result<()> {
    match std::fs::metadata(&args.weights) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => bail!(
            "{} is not a file; expected a safetensors file, as `mg-train export` writes it",
            args.weights.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.weights.display())),
    }
    let text = read_config_text(&args.config)?;
    let place = format!("in config {}", args.config.display());
    run_command(&place, text, DeviceKind::Cpu, Import(args))
}

struct Import<'a>(&'a ImportArgs);

impl Command for Import<'_> {
    type Output = ();

    fn run<T: Task, B: MgBackend>(self, text: &str, device: B::Device) -> anyhow::Result<()> {
        let (config, task) = load_config::<T>(&self.0.config, text)?;
        let root = self
            .0
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(&self.0.config));
        let run = RunDir::new(&root);
        refuse_existing(&run)?;
        let (weights, config_path) = (&self.0.weights, &self.0.config);
        // The weights are read before the run folder exists, so a refused file leaves nothing.
        crate::harness::device::open_device::<B>(&device)?;
        let mut model = task.init_train::<B>(&device);
        if let Err(e) = crate::harness::bench::load_weights(&mut model, weights) {
            let metadata = file_metadata(weights);
            let Some(written_by) = described_by(&metadata) else {
                return Err(e);
            };
            bail!(
                "{} does not fit the model of {}, a `{}` model ([model] {}): the file holds the \
                 weights of {written_by}; import it with the config of that run (the file's \
                 `mg_config` metadata holds it)",
                weights.display(),
                config_path.display(),
                T::KIND,
                toml::Value::try_from(&config.model).map_or_else(|_| "?".into(), |m| one_line(&m)),
            );
        }
        // Shapes that fit do not make the same model: say so when the file names another.
        let metadata = file_metadata(weights);
        let ours = toml::Value::try_from(&config.model).ok();
        let theirs = metadata
            .get("mg_config")
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|config| config.get("model").cloned());
        if let Some(written_by) = described_by(&metadata)
            && (metadata.get("mg_task").is_some_and(|t| t != T::KIND)
                || (theirs.is_some() && theirs != ours))
        {
            eprintln!(
                "warning: {} holds the weights of {written_by}; their shapes fit the model of {}, \
                 a `{}` model ([model] {}), so they are imported into it",
                weights.display(),
                config_path.display(),
                T::KIND,
                ours.as_ref().map_or_else(|| "?".into(), one_line),
            );
        }
        if let Some((name, value)) = first_non_finite(&model) {
            bail!(
                "{}: tensor `{name}` holds {value}; the weights must be finite numbers",
                weights.display()
            );
        }
        let command = format!("import {}", weights.display());
        let _lock = RunLock::acquire(&run.root, &command)?;
        refuse_existing(&run)?;
        crate::harness::checkpoint::write_atomic(&run.config(), config.to_toml().as_bytes())?;
        let dir = start_from_weights::<T, B>(&task, &config, &run, model)?;
        eprintln!(
            "{} parameters from {} in {} (time step 0); evaluate it with `mg-train eval {}`, \
             train on with `mg-train resume {}`",
            task.info().params,
            weights.display(),
            dir.display(),
            run.root.display(),
            run.root.display()
        );
        Ok(())
    }
}
