//! Truncated-BPTT training of any [`Task`], with carried, detached state, divergence checks
//! before every update, verified checkpoints and exact resume.

use mg_layers::backend::with_serial_kernels;
use mg_layers::{MgBackend, window_view};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{ElementConversion, Tensor};

use super::checkpoint::{Manifest, Progress, RunDir};
use super::device::{open_device, shard_devices};
use super::experiment::{Experiment, LossReduction, resolve_path};
use super::metrics::{MetricsLine, plot_metrics, truncate_metrics};
use super::nodes::{Agreement, NodeOptions, Nodes, node_sizes};
use super::optim::{Optim, OptimRecord, clip_global_norm, linear_lr, scale_grads};
use super::progress::Progress as Bar;
use super::task::{CarriedState, ForwardPath, RestoreState, Task, WindowLoss};
use burn::tensor::backend::DeviceId;

/// The checkpoint file format.
pub type Rec = BinFileRecorder<FullPrecisionSettings>;

/// The experiment type of task `T`.
pub type ExperimentOf<T> = Experiment<<T as Task>::Settings, <T as Task>::ModelSettings>;

/// Options of one training invocation.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Train until this many time steps.
    pub total_steps: u64,
    /// Continue from a checkpoint of the run.
    pub resume: bool,
    /// With `resume`: the checkpoint (`step-N`) to continue from [default: the newest intact].
    pub from: Option<String>,
    /// Stop (with a checkpoint) after this much wall time, seconds.
    pub max_seconds: Option<f64>,
    /// The backend is a CPU backend (decides `path = "auto"`).
    pub on_cpu: bool,
    /// Show progress on stderr.
    pub show_progress: bool,
    /// Train data-parallel with other processes ([`super::nodes`]).
    pub nodes: Option<NodeOptions>,
    /// Devices of the backend, one shard of the batch each, on threads of their own (the
    /// first holds the model); empty: the backend's default device, `[train] threads` shards.
    pub devices: Vec<DeviceId>,
}

/// The outcome of one training window.
pub struct StepResult<S> {
    /// The state after the window (attached to the graph), one per shard of the batch.
    pub states: Vec<S>,
    /// The window's loss.
    pub loss: f64,
    /// Units the loss covers.
    pub units: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The task's figures of the window.
    pub metrics: Vec<(&'static str, f64)>,
}

/// A window whose loss or gradient was not finite; the update was not applied.
#[derive(Debug, Clone, Copy)]
pub struct Diverged {
    /// The loss.
    pub loss: f64,
    /// The gradient norm.
    pub grad_norm: f64,
}

/// The model after a training window, and the window's result.
pub type StepOutcome<T, B> = (
    <T as Task>::TrainModel<B>,
    Result<StepResult<<T as Task>::State<Autodiff<B>>>, Diverged>,
);

/// One shard of a training window: its tensors and the state carried into it.
pub type Shard<'a, T, B> = (
    &'a <T as Task>::Window<Autodiff<B>>,
    Option<<T as Task>::State<Autodiff<B>>>,
);

/// The loss, units, task figures, gradients and next state of one shard.
type ShardResult<T, B> = (
    f64,
    f64,
    Vec<(&'static str, f64)>,
    GradientsParams,
    <T as Task>::State<Autodiff<B>>,
);

/// The result of a window's forward and backward passes, before clipping and the update.
pub struct WindowGradients<S> {
    /// The window's loss: the shards' losses summed (or, for a mean loss, their units-weighted
    /// mean).
    pub loss: f64,
    /// Units the loss covers.
    pub units: f64,
    /// The task's figures of the window, averaged over the shards with the units as weights.
    pub metrics: Vec<(&'static str, f64)>,
    /// The gradients of the whole batch.
    pub grads: GradientsParams,
    /// The state after the window (attached to the graph), one per shard.
    pub states: Vec<S>,
}

/// Where a window's shards run besides the calling thread's device: other devices of this
/// process, and the other processes of a data-parallel run.
pub struct Spread<'a, B: MgBackend> {
    /// One device per shard, the model's first; empty: every shard on the model's device.
    pub devices: &'a [B::Device],
    /// The other processes ([`super::nodes`]).
    pub nodes: Option<&'a Nodes<B>>,
}

impl<B: MgBackend> Clone for Spread<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: MgBackend> Copy for Spread<'_, B> {}

impl<B: MgBackend> Spread<'_, B> {
    /// Every shard on the model's device, in this process alone.
    pub fn here() -> Self {
        Spread {
            devices: &[],
            nodes: None,
        }
    }
}

/// Forward and backward passes of one window, on one shard or on several (see
/// [`train_step`]): the loss and the gradients of this process's part of the batch, up to
/// rounding. A task whose shards' losses are coupled gets the figures of the whole batch,
/// summed over the nodes too; the losses and gradients are summed over nodes by
/// [`train_step`].
///
/// A task whose shards' losses depend on one another ([`Task::couples_shards`]) runs the
/// forward passes on the shards' threads, then [`Task::shard_losses`] on every output at
/// once, then the backward passes on the shards' threads again.
pub fn window_gradients<T: Task, B: MgBackend>(
    task: &T,
    model: &T::TrainModel<B>,
    shards: Vec<Shard<'_, T, B>>,
    path: ForwardPath,
    reduction: LossReduction,
    spread: Spread<'_, B>,
) -> anyhow::Result<WindowGradients<T::State<Autodiff<B>>>> {
    let devices = spread.devices;
    let coupled = task.couples_shards() && (shards.len() > 1 || spread.nodes.is_some());
    let backward = |model: &T::TrainModel<B>, scored: WindowLoss<Autodiff<B>>| {
        let loss: f64 = scored.loss.clone().into_scalar().elem();
        let grads = GradientsParams::from_grads(scored.loss.backward(), model);
        (loss, scored.units, scored.metrics, grads)
    };
    // The forward passes read the parameters through a window view (mg_layers::window_view),
    // whose per-step cost does not grow along the window; not while burn has parameters still
    // to draw: those are drawn on the model itself, which the gradients are taken from (a
    // copy would draw its own).
    let view = |model: &T::TrainModel<B>| {
        (!has_lazy_params::<Autodiff<B>, _>(model)).then(|| window_view(model.clone()))
    };
    let run = |model: &T::TrainModel<B>,
               (window, state): Shard<'_, T, B>|
     -> anyhow::Result<ShardResult<T, B>> {
        let view = view(model);
        let forward_model = T::as_model(view.as_ref().unwrap_or(model));
        let (output, next) = task.forward(forward_model, window, state, path)?;
        let (loss, units, metrics, grads) = backward(model, task.loss(output, window, reduction));
        Ok((loss, units, metrics, grads, next))
    };
    let results: Vec<ShardResult<T, B>> = if shards.len() == 1 && !coupled {
        shards
            .into_iter()
            .map(|shard| run(model, shard))
            .collect::<anyhow::Result<_>>()?
    } else {
        if has_lazy_params::<Autodiff<B>, _>(model) {
            // burn initialises parameters on first use, and a copy of an uninitialised one
            // initialises on its own: a forward pass here draws the initial weights in the order
            // one thread would, before the copies are made.
            let (window, state) = &shards[0];
            drop(task.forward(T::as_model(model), *window, state.clone(), path)?);
        }
        let device = model.devices().into_iter().next();
        let fork = |k: usize| match devices.get(k).or(device.as_ref()) {
            Some(device) => model.clone().fork(device),
            None => model.clone(),
        };
        let work: Vec<_> = shards
            .into_iter()
            .enumerate()
            .map(|(k, shard)| (fork(k), shard))
            .collect();
        if coupled {
            let windows: Vec<&T::Window<Autodiff<B>>> = work.iter().map(|(_, s)| s.0).collect();
            let forwards = on_shards(work, |(copy, (window, state))| -> anyhow::Result<_> {
                let view = view(&copy);
                let forward_model = T::as_model(view.as_ref().unwrap_or(&copy));
                let (output, next) = task.forward(forward_model, window, state, path)?;
                Ok((copy, output, next))
            });
            let mut outputs = Vec::with_capacity(forwards.len());
            let mut rest = Vec::with_capacity(forwards.len());
            for forward in forwards {
                let (copy, output, next) = forward?;
                outputs.push(output);
                rest.push((copy, next));
            }
            let mut sums = task.batch_sums(&outputs);
            if let Some(nodes) = spread.nodes {
                sums = nodes.sum_f64("the batch's figures", &sums)?;
            }
            let losses = task.shard_losses(outputs, &windows, reduction, &sums);
            let work: Vec<_> = rest.into_iter().zip(losses).collect();
            on_shards(work, |((copy, next), scored)| {
                let (loss, units, metrics, grads) = backward(&copy, scored);
                (loss, units, metrics, grads, next)
            })
        } else {
            on_shards(work, |(copy, shard)| run(&copy, shard))
                .into_iter()
                .collect::<anyhow::Result<_>>()?
        }
    };
    let results = match (devices.len() > 1, model.devices().into_iter().next()) {
        (true, Some(home)) => results
            .into_iter()
            .map(|(loss, units, metrics, grads, next)| {
                let grads = grads.to_device(&home, model);
                let next = state_to_device::<T, _>(T::as_model(model), next, &home)
                    .expect("a state rebuilt from its own tensors");
                (loss, units, metrics, grads, next)
            })
            .collect(),
        _ => results,
    };
    Ok(combine::<T, B>(model, results, reduction))
}

/// A state moved to `device`.
pub fn state_to_device<T: Task, B: MgBackend>(
    model: &T::Model<B>,
    state: T::State<B>,
    device: &B::Device,
) -> anyhow::Result<T::State<B>> {
    let tensors = state
        .into_tensors()
        .into_iter()
        .map(|t| t.to_device(device))
        .collect();
    model.state_from_tensors(tensors)
}

/// One training window: forward, loss, backward, clipping, a check that loss and gradient
/// norm are finite, and only then the update. Returns the updated model, or the unchanged one
/// with [`Diverged`].
///
/// With several `shards` (parts of the batch, [`Task::split_batch`]), each shard's forward and
/// backward pass runs on its own thread with its own copy of the model (`Module::fork`, so
/// that the threads build separate autodiff graphs), and the gradients are summed in shard
/// order, each weighted by its share of the units when the loss is a mean: the update of the
/// whole batch, up to rounding, on as many cores as shards.
///
/// With `spread.devices`, shard `k` runs on device `k` (the model's own device first); the
/// gradients and states come back to the model's device.
///
/// With `spread.nodes`, the shards are this node's part of the batch and the window's results are
/// summed over the nodes ([`Nodes::sum_window`]) before clipping; `stop` is this node's wish
/// to stop after the window, and the second value returned whether any node wishes so.
#[allow(clippy::too_many_arguments)]
pub fn train_step<T: Task, B: MgBackend>(
    task: &T,
    model: T::TrainModel<B>,
    optim: &mut OptimOf<T, B>,
    shards: Vec<Shard<'_, T, B>>,
    path: ForwardPath,
    lr: f64,
    clip_norm: f64,
    reduction: LossReduction,
    spread: Spread<'_, B>,
    stop: bool,
) -> anyhow::Result<(StepOutcome<T, B>, bool)> {
    let WindowGradients {
        mut loss,
        mut units,
        mut metrics,
        mut grads,
        states,
    } = window_gradients(task, &model, shards, path, reduction, spread)?;
    let mut stop = stop;
    if let Some(nodes) = spread.nodes {
        let sum = nodes.sum_window::<Autodiff<B>, _>(
            &model, &mut grads, loss, units, metrics, reduction, stop,
        )?;
        (loss, units, metrics, stop) = (sum.loss, sum.units, sum.metrics, sum.stop);
    }
    let grad_norm = clip_global_norm(&model, &mut grads, clip_norm);
    if !loss.is_finite() || !grad_norm.is_finite() {
        return Ok(((model, Err(Diverged { loss, grad_norm })), stop));
    }
    let model = optim.step(lr, model, grads);
    let result = StepResult {
        states,
        loss,
        units,
        grad_norm,
        metrics,
    };
    Ok(((model, Ok(result)), stop))
}

/// `f` applied to every item, each on a thread of its own with its kernels kept on that
/// thread ([`with_serial_kernels`]): the first item on the calling thread, the others on the
/// shard threads. Results in the items' order.
///
/// The shard threads are persistent: threads made per call would start with empty allocator
/// heaps and fault their memory in again every time.
pub fn on_shards<I: Send, R: Send>(items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let mut items = items.into_iter();
    let first = items.next().expect("two items or more");
    let (first_slot, rest) = slots.split_first_mut().expect("as many slots as items");
    let f = &f;
    shard_pool().in_place_scope(|scope| {
        for (item, slot) in items.zip(rest) {
            scope.spawn(move |_| *slot = Some(with_serial_kernels(|| f(item))));
        }
        *first_slot = Some(with_serial_kernels(|| f(first)));
    });
    slots
        .into_iter()
        .map(|slot| slot.expect("every item ran"))
        .collect()
}

/// The threads that run the shards of a window beyond the first: one fewer than the
/// machine's cores (the calling thread takes the first shard).
fn shard_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("mg-shard-{i}"))
            .build()
            .expect("a thread pool")
    })
}

/// Whether a parameter of `module` is still uninitialised (burn initialises on first use).
fn has_lazy_params<B: burn::tensor::backend::Backend, M: Module<B>>(module: &M) -> bool {
    struct Lazy(bool);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Lazy {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 |= !param.is_initialized();
        }
    }
    let mut lazy = Lazy(false);
    module.visit(&mut lazy);
    lazy.0
}

/// The shards' results as one window's: losses summed (or, for a mean loss, averaged with the
/// shards' units as weights, and the gradients scaled alike), gradients summed in shard order,
/// task figures averaged with the units as weights.
fn combine<T: Task, B: MgBackend>(
    model: &T::TrainModel<B>,
    results: Vec<ShardResult<T, B>>,
    reduction: LossReduction,
) -> WindowGradients<T::State<Autodiff<B>>> {
    if results.len() == 1 {
        let (loss, units, metrics, grads, state) = results.into_iter().next().expect("a shard");
        return WindowGradients {
            loss,
            units,
            metrics,
            grads,
            states: vec![state],
        };
    }
    let units: f64 = results.iter().map(|r| r.1).sum();
    let weight = |u: f64| {
        if units > 0.0 {
            u / units
        } else {
            1.0 / results.len() as f64
        }
    };
    let weights: Vec<f64> = results.iter().map(|r| weight(r.1)).collect();
    let loss = match reduction {
        LossReduction::Sum => results.iter().map(|r| r.0).sum(),
        LossReduction::Mean => results.iter().zip(&weights).map(|(r, w)| r.0 * w).sum(),
    };
    let mut metrics: Vec<(&'static str, f64)> = Vec::new();
    for (r, &w) in results.iter().zip(&weights) {
        for &(name, value) in &r.2 {
            match metrics.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 += value * w,
                None => metrics.push((name, value * w)),
            }
        }
    }
    let mut acc = GradientsAccumulator::<T::TrainModel<B>>::new();
    let mut states = Vec::with_capacity(results.len());
    for ((_, _, _, mut grads, state), w) in results.into_iter().zip(weights) {
        if reduction == LossReduction::Mean {
            scale_grads::<Autodiff<B>, _>(model, &mut grads, w);
        }
        acc.accumulate::<Autodiff<B>>(model, grads);
        states.push(state);
    }
    WindowGradients {
        loss,
        units,
        metrics,
        grads: acc.grads(),
        states,
    }
}

/// Sizes of `parts` consecutive shards of `n` sequences: as equal as they can be, the longer
/// ones first.
pub(crate) fn shard_sizes(n: usize, parts: usize) -> Vec<usize> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|k| n / parts + usize::from(k < n % parts))
        .collect()
}

/// A state cut along its batch into states of `sizes` sequences (see [`Task::split_batch`]).
pub fn split_state<T: Task, B: MgBackend>(
    model: &T::Model<B>,
    state: T::State<B>,
    sizes: &[usize],
) -> anyhow::Result<Vec<T::State<B>>> {
    let tensors = state.into_tensors();
    let mut parts: Vec<Vec<Tensor<B, 4>>> = sizes.iter().map(|_| Vec::new()).collect();
    for tensor in tensors {
        let mut start = 0;
        for (part, &len) in parts.iter_mut().zip(sizes) {
            part.push(tensor.clone().narrow(0, start, len));
            start += len;
        }
    }
    parts
        .into_iter()
        .map(|part| model.state_from_tensors(part))
        .collect()
}

/// Shards' states joined along the batch, the inverse of [`split_state`].
pub fn merge_states<T: Task, B: MgBackend>(
    model: &T::Model<B>,
    states: Vec<T::State<B>>,
) -> anyhow::Result<T::State<B>> {
    let mut lists = states.into_iter().map(CarriedState::into_tensors);
    let first = lists.next().context("no state to merge")?;
    let mut columns: Vec<Vec<Tensor<B, 4>>> = first.into_iter().map(|t| vec![t]).collect();
    for list in lists {
        for (column, tensor) in columns.iter_mut().zip(list) {
            column.push(tensor);
        }
    }
    let merged = columns
        .into_iter()
        .map(|column| Tensor::cat(column, 0))
        .collect();
    model.state_from_tensors(merged)
}

/// Trains (or resumes) the run in `run`; returns the final progress.
pub fn train<T: Task, B: MgBackend>(
    device: B::Device,
    task: &T,
    config: &ExperimentOf<T>,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<Progress> {
    let devices = shard_devices::<B>(&options.devices)?;
    if devices.is_empty() {
        open_device::<B>(&device)?;
    }
    let device = devices.first().cloned().unwrap_or(device);
    B::seed(&device, config.train.seed);
    let mut model = task.init_train::<B>(&device);
    let mut optim = OptimOf::<T, B>::new(&config.train);
    let recorder = Rec::new();
    let t = &config.train;
    let mut progress = Progress::default();
    let mut state: Option<T::State<Autodiff<B>>> = None;
    let mut start_point = String::from("a new run");
    // Rank 0 (or the only process) writes the run; the other nodes only train.
    let lead = options.nodes.as_ref().is_none_or(|o| o.rank == 0);
    if options.resume {
        let Some(dir) = run.pick_checkpoint(options.from.as_deref())? else {
            bail!("{} has no checkpoint to resume from", run.root.display());
        };
        progress = RunDir::progress(&dir)?;
        start_point = format!(
            "{} at time step {}",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            progress.time_step
        );
        model = load_weights::<T, Autodiff<B>, _>(model, &dir, &device)?;
        let path = dir.join("optim.bin");
        optim = optim
            .load(&recorder, dir.join("optim"), &device)
            .with_context(|| format!("loading {}", path.display()))?;
        if progress.episode_t > 0 {
            let path = dir.join("carry.bin");
            let flat: Vec<Tensor<B, 4>> =
                Recorder::<B>::load(&recorder, dir.join("carry"), &device)
                    .with_context(|| format!("loading {}", path.display()))?;
            let tensors = flat.into_iter().map(Tensor::from_inner).collect();
            state = Some(
                T::as_model(&model)
                    .state_from_tensors(tensors)
                    .with_context(|| format!("in {}", path.display()))?,
            );
        }
        if lead {
            truncate_metrics(&run.metrics(), progress.time_step)?;
        }
        eprintln!(
            "resuming {} from {} (time step {})",
            run.root.display(),
            dir.display(),
            progress.time_step
        );
    }
    if progress.time_step >= options.total_steps {
        eprintln!(
            "nothing to do: the run is at time step {} and the target is {}",
            progress.time_step, options.total_steps
        );
        return Ok(progress);
    }
    let nodes = match &options.nodes {
        Some(o) if o.nodes > 1 => Some(join_nodes::<T, B>(config, o, &device, &start_point)?),
        _ => None,
    };
    let node_parts = nodes.as_ref().map(|n| node_sizes(t.batch, n.count()));
    let local_batch = match (&nodes, &node_parts) {
        (Some(n), Some(parts)) => parts[n.rank()],
        _ => t.batch,
    };
    if let (Some(n), Some(parts)) = (&nodes, &node_parts)
        && let Some(whole) = state.take()
    {
        let mut all = split_state::<T, _>(T::as_model(&model), whole, parts)?;
        state = Some(all.swap_remove(n.rank()));
    }
    let path = resolve_path(t.path, options.on_cpu, task.paths());
    let mut metrics_file = if lead {
        std::fs::create_dir_all(&run.root)
            .with_context(|| format!("creating {}", run.root.display()))?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.metrics())
            .with_context(|| format!("opening {}", run.metrics().display()))?;
        Some(file)
    } else {
        None
    };
    let mut bar = Bar::new(options.total_steps, "steps", options.show_progress && lead);
    bar.set_position(progress.time_step);

    let start = Instant::now();
    let elapsed_before = progress.elapsed_s;
    let elapsed = || elapsed_before + start.elapsed().as_secs_f64();
    let mut last_checkpoint = progress.time_step;
    let mut since = Interval::new();
    let mut batch: Option<T::Batch> = None;
    // With `train.threads` above 1 or several nodes: this process's shards of the batch,
    // and their sizes.
    let mut shard_batches: Option<Vec<T::Batch>> = None;
    let shards = if devices.is_empty() {
        t.threads
    } else {
        devices.len()
    };
    let sizes = shard_sizes(local_batch, shards);
    let shard_device = |k: usize| devices.get(k).unwrap_or(&device);
    let mut pending: Option<Pending<_, _, _>> = None;
    let mut stopping = false;
    let mut updates_here = 0u64;
    loop {
        let current = match &batch {
            Some(b) => b,
            None => {
                let b = task.batch(t.seed, progress.batch_index, t.batch)?;
                let mine = match (&nodes, &node_parts) {
                    (Some(n), Some(parts)) => {
                        let mut all = task.split_batch(&b, parts).with_context(|| {
                            format!(
                                "--nodes {}: `{}` models train in one process",
                                parts.len(),
                                T::KIND
                            )
                        })?;
                        Some(all.swap_remove(n.rank()))
                    }
                    _ => None,
                };
                if shards > 1 {
                    let local = mine.as_ref().unwrap_or(&b);
                    shard_batches = Some(task.split_batch(local, &sizes).with_context(|| {
                        format!(
                            "train.threads = {} in {}: `{}` models train on one thread; \
                             set train.threads = 1",
                            t.threads,
                            run.config().display(),
                            T::KIND
                        )
                    })?);
                } else if let Some(mine) = mine {
                    shard_batches = Some(vec![mine]);
                }
                batch.insert(b)
            }
        };
        let len = task.sequence_len(current);
        let (t0, t1) = (progress.episode_t, (progress.episode_t + t.window).min(len));
        if progress.time_step >= options.total_steps || stopping {
            let window = task.window::<Autodiff<B>>(current, t0..t1, &device);
            // The last update still needs its check: a forward pass of the next window.
            if let Some(p) = pending.take() {
                let (output, _) =
                    task.forward(T::as_model(&p.model), &window, p.state.clone(), path)?;
                let loss: f64 = task.loss(output, &window, t.loss).loss.into_scalar().elem();
                if !loss.is_finite() {
                    bar.finish(None);
                    return Err(diverged(run, progress.time_step, loss, f64::NAN));
                }
                save::<T, B>(task, run, &recorder, config, p)?;
                plot_metrics(run, T::UNIT)?;
            }
            break;
        }
        let steps = t1 - t0;
        let lr = linear_lr(t.lr_start, t.lr_end, t.lr_decay_steps, progress.time_step);
        let windows: Vec<T::Window<Autodiff<B>>> = match &shard_batches {
            None => vec![task.window(current, t0..t1, &device)],
            Some(parts) => parts
                .iter()
                .enumerate()
                .map(|(k, part)| task.window(part, t0..t1, shard_device(k)))
                .collect(),
        };
        let states = match (state.take(), windows.len()) {
            (state, 1) => vec![state],
            (None, n) => (0..n).map(|_| None).collect(),
            (Some(state), _) => split_state::<T, _>(T::as_model(&model), state, &sizes)?
                .into_iter()
                .enumerate()
                .map(|(k, part)| match devices.is_empty() {
                    true => Ok(Some(part)),
                    false => state_to_device::<T, _>(T::as_model(&model), part, shard_device(k))
                        .map(Some),
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let out_of_time = || {
            options
                .max_seconds
                .is_some_and(|limit| start.elapsed().as_secs_f64() >= limit)
                || super::stop::requested()
        };
        // Nodes agree on stopping within the window's sum, so they ask before it.
        let wish = nodes.is_some() && out_of_time();
        let ((next_model, result), agreed_stop) = train_step::<T, B>(
            task,
            model,
            &mut optim,
            windows.iter().zip(states).collect(),
            path,
            lr,
            t.clip_norm,
            t.loss,
            Spread {
                devices: &devices,
                nodes: nodes.as_ref(),
            },
            wish,
        )?;
        model = next_model;
        let step = match result {
            Ok(step) => step,
            Err(d) => {
                bar.finish(None);
                return Err(diverged(run, progress.time_step, d.loss, d.grad_norm));
            }
        };
        // The weights before this update gave a finite loss and gradient: keep them.
        if let Some(p) = pending.take() {
            save::<T, B>(task, run, &recorder, config, p)?;
            plot_metrics(run, T::UNIT)?;
        }
        progress.time_step += steps as u64;
        progress.updates += 1;
        updates_here += 1;
        progress.episode_t = t1;
        let mut next: Vec<_> = step.states.into_iter().map(CarriedState::detach).collect();
        state = Some(match next.len() {
            1 => next.pop().expect("one state"),
            _ => merge_states::<T, _>(T::as_model(&model), next)?,
        });
        if t1 == len {
            progress.episode_t = 0;
            progress.batch_index += 1;
            batch = None;
            shard_batches = None;
            state = None;
        }
        bar.set_position(progress.time_step);
        let per_unit = match t.loss {
            LossReduction::Sum if step.units > 0.0 => step.loss / step.units,
            _ => step.loss,
        };
        since.add(
            steps as u64,
            step.loss,
            per_unit,
            step.grad_norm,
            &step.metrics,
        );
        let out_of_time = match nodes {
            Some(_) => agreed_stop,
            None => out_of_time(),
        };
        let done = progress.time_step >= options.total_steps || out_of_time;
        progress.elapsed_s = elapsed();
        if since.steps >= t.log_every || done {
            let line = since.line(&progress, lr);
            bar.set_position(progress.time_step);
            bar.report(format!("loss/{} {:.5}", T::UNIT, line.loss_per_unit));
            if let Some(file) = &mut metrics_file {
                writeln!(file, "{}", serde_json::to_string(&line)?)
                    .and_then(|()| file.flush())
                    .with_context(|| format!("writing {}", run.metrics().display()))?;
            }
            since = Interval::new();
        }
        if progress.time_step - last_checkpoint >= t.checkpoint_every || done {
            // A checkpoint holds the whole batch's state: the nodes join their parts.
            let whole = match (&nodes, &node_parts, &state) {
                (Some(n), Some(parts), Some(s)) => {
                    Some(gather_state::<T, B>(n, &model, s.clone(), parts)?)
                }
                _ => state.clone(),
            };
            if lead {
                pending = Some(Pending {
                    progress,
                    model: model.clone(),
                    optim: optim.to_record(),
                    state: whole,
                });
            }
            last_checkpoint = progress.time_step;
        }
        stopping = out_of_time;
    }
    if let Some(nodes) = nodes {
        let rank = nodes.rank();
        let time = nodes.finish();
        eprintln!(
            "node {rank}: {} sums over the nodes, {:.2} s waiting for them ({:.1} ms per \
             update)",
            time.sums,
            time.waited.as_secs_f64(),
            1e3 * time.waited.as_secs_f64() / updates_here.max(1) as f64
        );
    }
    if stopping {
        bar.finish(Some(format!(
            "stopped after {:.1} minutes at time step {}",
            start.elapsed().as_secs_f64() / 60.0,
            progress.time_step
        )));
    } else {
        bar.finish(None);
    }
    Ok(progress)
}

/// A checkpoint taken after an update, written once the next window shows its weights give a
/// finite loss and gradient.
struct Pending<M, R, S> {
    progress: Progress,
    model: M,
    optim: R,
    state: Option<S>,
}

/// The optimizer of task `T`'s training model on `B`.
pub type OptimOf<T, B> = Optim<<T as Task>::TrainModel<B>, Autodiff<B>>;

type PendingOf<T, B> = Pending<
    <T as Task>::TrainModel<B>,
    OptimRecord<<T as Task>::TrainModel<B>, Autodiff<B>>,
    <T as Task>::State<Autodiff<B>>,
>;

/// Joins the nodes of a data-parallel run (see [`super::nodes`]) after checking that the batch
/// can be cut between them.
fn join_nodes<T: Task, B: MgBackend>(
    config: &ExperimentOf<T>,
    options: &NodeOptions,
    device: &B::Device,
    start_point: &str,
) -> anyhow::Result<Nodes<B>> {
    let t = &config.train;
    if options.nodes > t.batch {
        bail!(
            "--nodes {}: expected at most the batch ({}), so that every node trains a part",
            options.nodes,
            t.batch
        );
    }
    let mut same = config.clone();
    same.train.threads = 1;
    let agreement = Agreement::new(&same.to_toml(), start_point);
    Nodes::join(options, device, agreement)
}

/// The whole batch's state from every node's part (a collective call: every node makes it).
fn gather_state<T: Task, B: MgBackend>(
    nodes: &Nodes<B>,
    model: &T::TrainModel<B>,
    state: T::State<Autodiff<B>>,
    parts: &[usize],
) -> anyhow::Result<T::State<Autodiff<B>>> {
    let mine: Vec<Tensor<B, 4>> = state
        .into_tensors()
        .into_iter()
        .map(|t| t.inner())
        .collect();
    let whole = nodes
        .gather(mine, parts)?
        .into_iter()
        .map(Tensor::from_inner)
        .collect();
    T::as_model(model).state_from_tensors(whole)
}

/// Sums over a log interval.
struct Interval {
    steps: u64,
    loss: f64,
    per_unit: f64,
    grad_norm: f64,
    windows: usize,
    /// Per task metric: sum and windows that reported it.
    task: std::collections::BTreeMap<String, (f64, usize)>,
    start: Instant,
}

impl Interval {
    fn new() -> Self {
        Self {
            steps: 0,
            loss: 0.0,
            per_unit: 0.0,
            grad_norm: 0.0,
            windows: 0,
            task: Default::default(),
            start: Instant::now(),
        }
    }

    fn add(
        &mut self,
        steps: u64,
        loss: f64,
        per_unit: f64,
        grad_norm: f64,
        metrics: &[(&'static str, f64)],
    ) {
        for &(name, value) in metrics {
            let entry = self.task.entry(name.to_string()).or_default();
            entry.0 += value;
            entry.1 += 1;
        }
        self.steps += steps;
        self.loss += loss;
        self.per_unit += per_unit;
        self.grad_norm += grad_norm;
        self.windows += 1;
    }

    fn line(&self, progress: &Progress, lr: f64) -> MetricsLine {
        let n = self.windows.max(1) as f64;
        MetricsLine {
            time_step: progress.time_step,
            updates: progress.updates,
            loss: self.loss / n,
            loss_per_unit: self.per_unit / n,
            grad_norm: self.grad_norm / n,
            lr,
            steps_per_s: self.steps as f64 / self.start.elapsed().as_secs_f64(),
            elapsed_s: progress.elapsed_s,
            task: self
                .task
                .iter()
                .map(|(name, &(sum, n))| (name.clone(), sum / n.max(1) as f64))
                .collect(),
        }
    }
}

/// The divergence error, naming the checkpoint to resume from.
fn diverged(run: &RunDir, time_step: u64, loss: f64, grad_norm: f64) -> anyhow::Error {
    let kept = match run.latest().ok().flatten() {
        Some(dir) => format!(
            "the last good checkpoint is {}; lower train.lr_start and train.lr_end in {} and \
             run `mg-train resume {}`",
            dir.display(),
            run.config().display(),
            run.root.display()
        ),
        None => "no checkpoint had been written yet".into(),
    };
    anyhow::anyhow!(
        "training diverged at time step {time_step}: loss = {loss}, gradient norm = {grad_norm}; \
         {kept}"
    )
}

/// Starts run `run` from given weights: a checkpoint at time step 0 with a fresh optimizer,
/// so that `resume` trains on from them and `eval` and `viz` read them.
pub fn start_from_weights<T: Task, B: MgBackend>(
    task: &T,
    config: &ExperimentOf<T>,
    run: &RunDir,
    model: T::TrainModel<B>,
) -> anyhow::Result<PathBuf> {
    let progress = Progress {
        time_step: 0,
        updates: 0,
        batch_index: 0,
        episode_t: 0,
        elapsed_s: 0.0,
    };
    let pending: PendingOf<T, B> = Pending {
        progress,
        model,
        optim: OptimOf::<T, B>::new(&config.train).to_record(),
        state: None,
    };
    save::<T, B>(task, run, &Rec::default(), config, pending)?;
    run.latest()?
        .ok_or_else(|| anyhow::anyhow!("{}: no checkpoint after writing one", run.root.display()))
}

fn save<T: Task, B: MgBackend>(
    task: &T,
    run: &RunDir,
    recorder: &Rec,
    config: &ExperimentOf<T>,
    pending: PendingOf<T, B>,
) -> anyhow::Result<()> {
    let manifest = Manifest {
        task: T::KIND.into(),
        model: toml::to_string(&config.model).unwrap_or_default(),
        shapes: param_shapes(&pending.model),
        files: Vec::new(),
    };
    let progress = pending.progress;
    let valid = pending.model.valid();
    let dir = run.save_checkpoint(&pending.progress, manifest, |dir| {
        pending.model.save_file(dir.join("model"), recorder)?;
        pending.optim.save(recorder, dir.join("optim"))?;
        if let Some(state) = pending.state {
            let inner: Vec<Tensor<B, 4>> = state
                .into_tensors()
                .into_iter()
                .map(|t| t.inner())
                .collect();
            Recorder::<B>::record(recorder, inner, dir.join("carry"))?;
        }
        Ok(())
    })?;
    let device = valid.devices().into_iter().next();
    if let Some(device) = device
        && let Some(error) = task.validate::<B>(&valid, &device)?
    {
        run.record_validation(&dir, progress.time_step, error)?;
    }
    Ok(())
}

/// Loads a run's model for inference on `B`: the checkpoint `from` (`step-N`) or the newest
/// intact one.
pub fn load_model<T: Task, B: MgBackend>(
    task: &T,
    run: &RunDir,
    from: Option<&str>,
    device: &B::Device,
) -> anyhow::Result<(T::Model<B>, Progress)> {
    let Some(dir) = run.pick_checkpoint(from)? else {
        bail!("{} has no checkpoint yet", run.root.display());
    };
    open_device::<B>(device)?;
    let model = load_weights::<T, B, _>(task.init::<B>(device), &dir, device)?;
    Ok((model, RunDir::progress(&dir)?))
}

/// Loads a checkpoint's `model.bin` into `model`, after checking its manifest says it was
/// written by this task and a model of the same shapes.
fn load_weights<T: Task, B: MgBackend, M: Module<B>>(
    model: M,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<M> {
    let path = dir.join("model.bin");
    let manifest = RunDir::manifest(dir)?;
    if manifest.task != T::KIND {
        bail!(
            "{} was written by a `{}` run, and this run's config.toml is a `{}` task",
            path.display(),
            manifest.task,
            T::KIND
        );
    }
    let expected = param_shapes(&model);
    if manifest.shapes != expected {
        let first = (0..manifest.shapes.len().max(expected.len()))
            .find(|&i| manifest.shapes.get(i) != expected.get(i))
            .unwrap_or(0);
        let show = |s: Option<&Vec<usize>>| s.map_or("absent".into(), |s| format!("{s:?}"));
        bail!(
            "{} does not fit the model of the run's config.toml: the checkpoint has {} \
             parameter tensors and the config's model {}; the first difference is tensor {first}: \
             {} in the checkpoint, {} in the config. Was config.toml edited, or the checkpoint \
             written by another model?",
            path.display(),
            manifest.shapes.len(),
            expected.len(),
            show(manifest.shapes.get(first)),
            show(expected.get(first)),
        );
    }
    model
        .load_file(dir.join("model"), &Rec::new(), device)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))
}

/// The shape of every float parameter of `module`, in visiting order.
pub fn param_shapes<B: MgBackend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: MgBackend> ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}
