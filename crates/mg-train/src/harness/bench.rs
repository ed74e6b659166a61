//! Timing of any [`Task`]'s model: a training window (forward, backward, clipping and the
//! config's optimizer, on each forward path) and an inference step, on the task's own data.

use mg_layers::MgBackend;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::ElementConversion;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::experiment::LossReduction;
use super::machine;
use super::task::{CarriedState, Task, WindowLoss};
use super::train::{ExperimentOf, OptimOf, Spread, on_shards, shard_sizes, train_step};

/// One benchmark result, printed as a JSON line.
#[derive(Serialize, Deserialize, Debug, Clone)]
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
    /// Threads the timed call was split over (shards of the batch, `[train] threads`; absent:
    /// one).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub threads: usize,
    /// Growth of the process's peak resident memory during the warm-up and timed calls, MiB
    /// (CPU backends on Linux, the first path timed in the process only; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_mib: Option<f64>,
    /// Training windows of a task with epochs (bAbI): words read per second, padding left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words_per_s: Option<f64>,
    /// Training windows of a task with epochs: seconds of one training epoch at this batch
    /// size, from the median window's time per time step and the time steps of the epoch's
    /// batches (each as long as its longest sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_s: Option<f64>,
    /// Loss of the first, untimed call (summed over the window): for a training window, of
    /// the starting weights from the zero state; for an inference step, of the weights after
    /// the training windows. Equal weights and data give equal losses on every backend, up
    /// to rounding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// The machine's CPU model ([`machine::cpu_model`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// The CPU's instruction-set level, e.g. `x86-64-v4` ([`machine::isa_level`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isa: Option<String>,
    /// The instruction set the project's own CPU kernels ran with (absent: no project kernels
    /// ran, as on a GPU backend or with `--no-kernels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
}

impl BenchRecord {
    /// The throughput figures for a terminal (`, 812 words/s, epoch 3.1 min`); empty when the
    /// record has none.
    pub fn throughput_text(&self) -> String {
        let mut text = String::new();
        if let Some(w) = self.words_per_s {
            text += &format!(", {w:.0} words/s");
        }
        if let Some(s) = self.epoch_s {
            text += &match s {
                s if s < 120.0 => format!(", epoch {s:.1} s"),
                s if s < 7200.0 => format!(", epoch {:.1} min", s / 60.0),
                s => format!(", epoch {:.2} h", s / 3600.0),
            };
        }
        text
    }
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Name of the model in the records.
    pub name: String,
    /// Device name in the records.
    pub device: String,
    /// The device is a CPU (peak memory is read there).
    pub on_cpu: bool,
    /// The instruction set of the project's CPU kernels where the device runs them
    /// (`mg_layers::backend::cpu_kernel_isa`), for the records.
    pub kernels: Option<&'static str>,
    /// Time steps of the training window (at most one sequence).
    pub steps: usize,
    /// Batch of the training window and of the first inference step.
    pub batch: usize,
    /// Timed calls, after one untimed warm-up.
    pub repeats: usize,
    /// Threads each training window and the batched inference step are split over (shards of
    /// the batch); `None`: the config's `[train] threads`, at most the batch.
    pub threads: Option<usize>,
    /// Time training windows (off: inference steps only).
    pub training: bool,
    /// Time every forward path of the model, not only its first.
    pub all_paths: bool,
    /// Time an inference step at `batch` and at 1.
    pub inference: bool,
    /// Start from these weights (safetensors) instead of the seeded initialisation.
    pub weights: Option<PathBuf>,
    /// Write the starting weights here (safetensors).
    pub save_weights: Option<PathBuf>,
}

/// The process's peak resident set, on Linux.
pub mod peak {
    /// Resets the peak to the current resident set; false where unsupported.
    pub fn reset() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

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

/// A safetensors file of weights to write (over an existing one), tensors named by module path
/// without enum variants, as `mg-train export` and `import` name them.
pub fn weight_store(path: &Path) -> SafetensorsStore {
    SafetensorsStore::from_file(path)
        .skip_enum_variants(true)
        .overwrite(true)
}

/// Loads safetensors weights (tensor names as `mg-train export` writes them) into `model`;
/// a file that does not fit it is an error naming the file and the first mismatches.
pub fn load_weights<M: ModuleSnapshot<AB>, AB: burn::tensor::backend::Backend>(
    model: &mut M,
    path: &Path,
) -> anyhow::Result<()> {
    if !path.is_file() {
        anyhow::bail!("{}: no such file", path.display());
    }
    let mut store = SafetensorsStore::from_file(path).skip_enum_variants(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        let list = |v: Vec<String>| v.into_iter().take(5).collect::<Vec<_>>().join(", ");
        anyhow::bail!(
            "{} does not fit the model: {} tensors missing ({}), {} not in the model ({}), {} of \
             the wrong shape or type ({})",
            path.display(),
            result.missing.len(),
            list(result.missing.iter().map(|m| m.0.clone()).collect()),
            result.unused.len(),
            list(result.unused.clone()),
            result.errors.len(),
            list(result.errors.iter().map(|e| e.to_string()).collect()),
        );
    }
    Ok(())
}

/// Median and minimum of `repeats` timed calls of `f`, after one warm-up call; `f` must
/// finish its device work before returning (read a value back). The first error ends it.
pub fn time(
    repeats: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    f()?;
    let mut ms: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<anyhow::Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0]))
}

/// Times the model of `task` on backend `B`.
pub fn bench<T: Task, B: MgBackend>(
    task: &T,
    config: &ExperimentOf<T>,
    options: &BenchOptions,
    device: B::Device,
) -> anyhow::Result<Vec<BenchRecord>> {
    super::device::open_device::<B>(&device)?;
    B::seed(&device, 0);
    let mut model = task.init_train::<B>(&device);
    if let Some(path) = &options.weights {
        load_weights(&mut model, path)?;
    }
    if let Some(path) = &options.save_weights {
        let mut store = weight_store(path).metadata("mg_task", T::KIND);
        model
            .save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let mut optim = OptimOf::<T, B>::new(&config.train);
    let info = task.info();
    let (cpu, isa) = (machine::cpu_model(), machine::isa_level());
    let record =
        |bench: String, (batch, threads), steps, (median_ms, min_ms), peak_mib, loss| BenchRecord {
            bench,
            model: options.name.clone(),
            params: info.params,
            memory: info.memory_cells,
            device: options.device.clone(),
            batch,
            steps,
            median_ms,
            min_ms,
            repeats: options.repeats,
            threads,
            peak_mib,
            words_per_s: None,
            epoch_s: None,
            loss,
            cpu: Some(cpu.clone()),
            isa: Some(isa.to_string()),
            kernels: options.kernels.map(str::to_string),
        };
    let mut records = Vec::new();
    let data = task.batch(config.train.seed, 0, options.batch)?;
    let steps = task.window_len(&data, options.steps);
    let epoch = task.epoch_size(&data, steps, config.train.seed)?;
    let threads = options
        .threads
        .unwrap_or(config.train.threads.min(options.batch))
        .max(1);
    let windows: Vec<T::Window<Autodiff<B>>> = match threads {
        1 => vec![task.window(&data, 0..steps, &device)],
        n => task
            .split_batch(&data, &shard_sizes(options.batch, n))
            .with_context(|| {
                format!(
                    "{n} threads (--threads or [train] threads): `{}` models train on one \
                     thread",
                    T::KIND
                )
            })?
            .iter()
            .map(|part| task.window(part, 0..steps, &device))
            .collect(),
    };
    let paths = match (options.training, options.all_paths) {
        (false, _) => &[][..],
        (true, true) => task.paths(),
        (true, false) => &task.paths()[..1],
    };
    let mut diverged = None;
    for (k, &path) in paths.iter().enumerate() {
        let mut states: Vec<Option<T::State<Autodiff<B>>>> = windows.iter().map(|_| None).collect();
        let mut first_loss = None;
        let before = peak::current_kib();
        // Only the first path's peak is its own: the allocator (mimalloc in the binary)
        // keeps freed pages for reuse, so a later path would start on the earlier's.
        let tracked = options.on_cpu && k == 0 && peak::reset();
        let timing = time(options.repeats, || {
            let ((next, result), _) = train_step::<T, B>(
                task,
                model.clone(),
                &mut optim,
                windows.iter().zip(std::mem::take(&mut states)).collect(),
                path,
                1e-4,
                config.train.clip_norm,
                LossReduction::Sum,
                Spread::here(),
                false,
            )?;
            model = next;
            match result {
                Ok(step) => {
                    first_loss.get_or_insert(step.loss);
                    states = step.states.into_iter().map(|s| Some(s.detach())).collect();
                }
                Err(d) => {
                    diverged = Some(d);
                    states = windows.iter().map(|_| None).collect();
                }
            }
            Ok(())
        })?;
        if let Some(d) = diverged {
            anyhow::bail!(
                "the benchmark's training window diverged (loss {}, gradient norm {})",
                d.loss,
                d.grad_norm
            );
        }
        let peak_mib = match (tracked, before, peak::peak_kib()) {
            (true, Some(before), Some(peak)) => Some((peak - before).max(0.0) / 1024.0),
            _ => None,
        };
        let name = match task.paths().len() {
            1 => "train_window".to_string(),
            _ => format!("train_window_{}_path", path.name()),
        };
        let mut window = record(
            name,
            (options.batch, threads),
            steps,
            timing,
            peak_mib,
            first_loss,
        );
        if let Some(epoch) = &epoch {
            let seconds = timing.0 / 1e3;
            window.words_per_s = Some(epoch.words as f64 / seconds);
            window.epoch_s = Some(seconds * epoch.steps as f64 / steps.max(1) as f64);
        }
        records.push(window);
    }
    if options.inference {
        let valid = model.valid();
        for batch in [options.batch, 1] {
            let data = task.batch(config.train.seed, 0, batch)?;
            let steps = task.window_len(&data, 1);
            let parts = threads.min(batch);
            let windows: Vec<T::Window<B>> = match parts {
                1 => vec![task.window(&data, 0..steps, &device)],
                n => task
                    .split_batch(&data, &shard_sizes(batch, n))
                    .context("a task that trains on several threads splits its batches")?
                    .iter()
                    .map(|part| task.window(part, 0..steps, &device))
                    .collect(),
            };
            let mut states: Vec<Option<T::State<B>>> = windows.iter().map(|_| None).collect();
            let mut first_loss = None;
            let path = task.paths()[0];
            // A loss that needs every shard's output is scored after the forward passes.
            let coupled = parts > 1 && task.couples_shards();
            let timing = time(options.repeats, || {
                let work: Vec<_> = windows
                    .iter()
                    .zip(std::mem::take(&mut states))
                    .map(|(window, state)| (valid.clone(), window, state))
                    .collect();
                // Reading the loss back waits for the device.
                let scalar = |l: WindowLoss<B>| -> f64 { l.loss.into_scalar().elem() };
                let (loss, next): (f64, Vec<_>) = if coupled {
                    let results = on_shards(work, |(model, window, state)| {
                        task.forward(&model, window, state, path)
                    });
                    let results = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
                    let (outputs, next): (Vec<_>, Vec<_>) = results.into_iter().unzip();
                    let refs: Vec<&T::Window<B>> = windows.iter().collect();
                    let sums = task.batch_sums(&outputs);
                    let losses = task.shard_losses(outputs, &refs, LossReduction::Sum, &sums);
                    (losses.into_iter().map(scalar).sum(), next)
                } else {
                    let results = on_shards(work, |(model, window, state)| {
                        let (output, next) = task.forward(&model, window, state, path)?;
                        Ok((scalar(task.loss(output, window, LossReduction::Sum)), next))
                    });
                    let results = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
                    let loss = results.iter().map(|r| r.0).sum();
                    (loss, results.into_iter().map(|r| r.1).collect())
                };
                first_loss.get_or_insert(loss);
                states = next.into_iter().map(Some).collect();
                Ok(())
            })?;
            let record = record(
                "inference_step".into(),
                (batch, parts),
                steps,
                timing,
                None,
                first_loss,
            );
            records.push(record);
        }
    }
    Ok(records)
}
