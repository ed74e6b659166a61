//! `mg-train train` and `mg-train resume`: truncated-BPTT training of the mapping model.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::backend::Autodiff;
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use mg_data::batch::mapping_window;
use mg_data::mapping::{Episode, generate_batch};
use mg_models::{Localizer, LocalizerState};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Progress, RunDir};
use crate::config::{ExperimentConfig, LossReduction, OptimizerKind};
use crate::optim::{TfRmsProp, clip_global_norm, linear_lr};
use crate::viz::plot_curve;

/// The checkpoint file format.
pub type Rec = BinFileRecorder<FullPrecisionSettings>;

/// One line of `metrics.jsonl`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MetricsLine {
    /// Time steps trained.
    pub time_step: u64,
    /// Optimizer updates.
    pub updates: u64,
    /// Mean summed loss per window since the previous line.
    pub loss: f64,
    /// The same per pixel, step and sample.
    pub loss_per_pixel: f64,
    /// Mean global gradient norm (before clipping).
    pub grad_norm: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Training throughput since the previous line.
    pub steps_per_s: f64,
    /// Wall time of the run so far (this process), seconds.
    pub elapsed_s: f64,
}

/// Summed (or averaged) sigmoid cross-entropy `max(x, 0) − x·y + log(1 + e^(−|x|))`.
pub fn localization_loss<B: Backend>(
    logits: Tensor<B, 2>,
    target: Tensor<B, 2>,
    reduction: LossReduction,
) -> Tensor<B, 1> {
    let per_pixel =
        logits.clone().clamp_min(0.0) - logits.clone() * target + logits.abs().neg().exp().log1p();
    match reduction {
        LossReduction::Sum => per_pixel.sum(),
        LossReduction::Mean => per_pixel.mean(),
    }
}

/// The training episodes of batch `index`, one copy per query size (same maps and paths).
pub fn training_batch(config: &ExperimentConfig, index: u64) -> anyhow::Result<Vec<Vec<Episode>>> {
    config
        .world
        .query_sizes
        .iter()
        .map(|&q| {
            generate_batch(
                &config.mapping(q),
                config.train.seed,
                index,
                config.train.batch,
            )
            .map_err(anyhow::Error::from)
        })
        .collect()
}

/// Options of one training invocation.
pub struct TrainOptions {
    /// Train until this many time steps.
    pub total_steps: u64,
    /// Continue from the newest checkpoint of the run.
    pub resume: bool,
    /// Stop (with a checkpoint) after this much wall time, seconds.
    pub max_seconds: Option<f64>,
}

/// Trains (or resumes) the run in `run`; returns the final progress.
pub fn train<B: Backend>(
    device: B::Device,
    config: &ExperimentConfig,
    run: &RunDir,
    options: &TrainOptions,
) -> anyhow::Result<Progress> {
    B::seed(&device, config.train.seed);
    let model = config.model().init::<Autodiff<B>>(&device);
    let t = &config.train;
    match t.optimizer {
        OptimizerKind::TfRmsprop => {
            let optim: OptimizerAdaptor<TfRmsProp, Localizer<Autodiff<B>>, Autodiff<B>> =
                OptimizerAdaptor::from(TfRmsProp {
                    decay: t.rmsprop_decay as f32,
                    epsilon: t.rmsprop_epsilon as f32,
                    momentum: 0.0,
                    initial_mean_square: 1.0,
                });
            run_loop(device, config, run, options, model, optim)
        }
        OptimizerKind::Adam => {
            let optim = AdamConfig::new().init::<Autodiff<B>, Localizer<Autodiff<B>>>();
            run_loop(device, config, run, options, model, optim)
        }
    }
}

fn run_loop<B, O>(
    device: B::Device,
    config: &ExperimentConfig,
    run: &RunDir,
    options: &TrainOptions,
    mut model: Localizer<Autodiff<B>>,
    mut optim: O,
) -> anyhow::Result<Progress>
where
    B: Backend,
    O: Optimizer<Localizer<Autodiff<B>>, Autodiff<B>>,
{
    let recorder = Rec::new();
    let t = &config.train;
    let mut progress = Progress::default();
    let mut state: Option<LocalizerState<Autodiff<B>>> = None;
    let mut last_checkpoint = 0;
    if options.resume {
        let Some(dir) = run.latest()? else {
            bail!("{} has no checkpoint to resume from", run.root.display());
        };
        progress = RunDir::progress(&dir)?;
        model = load_weights(model, &dir, &device)?;
        let record = recorder
            .load(dir.join("optim"), &device)
            .with_context(|| format!("loading {}", dir.join("optim.bin").display()))?;
        optim = fitting(&dir.join("optim.bin"), || optim.load_record(record))?;
        if progress.episode_t > 0 {
            let flat: Vec<Tensor<B, 4>> =
                Recorder::<B>::load(&recorder, dir.join("carry"), &device)
                    .with_context(|| format!("loading {}", dir.join("carry.bin").display()))?;
            let loaded = model
                .state_from_tensors(flat.into_iter().map(Tensor::from_inner).collect())
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("carry.bin").display()))?;
            state = Some(loaded);
        }
        last_checkpoint = progress.time_step;
        truncate_metrics(&run.metrics(), progress.time_step)?;
        eprintln!(
            "resuming {} from time step {}",
            run.root.display(),
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

    fs::create_dir_all(&run.root).with_context(|| format!("creating {}", run.root.display()))?;
    let mut metrics_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.metrics())
        .with_context(|| format!("opening {}", run.metrics().display()))?;
    let bar = ProgressBar::new(options.total_steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps {per_sec} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(progress.time_step);

    let start = Instant::now();
    let mut since_log = (0u64, 0.0f64, 0.0f64, 0.0f64, 0usize, Instant::now());
    let mut episodes: Option<Vec<Vec<Episode>>> = None;
    let pixels = (config.world.mask_size * config.world.mask_size) as f64;
    while progress.time_step < options.total_steps {
        let batch = match &episodes {
            Some(e) => e,
            None => episodes.insert(training_batch(config, progress.batch_index)?),
        };
        let len = batch[0][0].len();
        let (t0, t1) = (progress.episode_t, (progress.episode_t + t.window).min(len));
        let steps = t1 - t0;
        let windows: Vec<_> = batch
            .iter()
            .map(|e| mapping_window::<Autodiff<B>>(e, t0..t1, &device))
            .collect();
        let queries: Vec<_> = windows.iter().map(|w| w.query.clone()).collect();
        let (logits, next) =
            model.forward_window(windows[0].input.clone(), &queries, steps, state.take());
        let loss = logits
            .into_iter()
            .zip(&windows)
            .map(|(l, w)| localization_loss(l, w.target.clone(), t.loss))
            .reduce(|a, b| a + b)
            .expect("at least one reader");
        let loss_value: f64 = loss.clone().into_scalar().elem();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = clip_global_norm(&model, &mut grads, t.clip_norm);
        if !loss_value.is_finite() || !norm.is_finite() {
            bar.abandon();
            let kept = match run.latest()? {
                Some(dir) => format!("the last good checkpoint is kept in {}", dir.display()),
                None => "no checkpoint had been written yet".into(),
            };
            bail!(
                "training diverged at time step {}: loss = {loss_value}, gradient norm = {norm}; {kept}",
                progress.time_step
            );
        }
        let lr = linear_lr(t.lr_start, t.lr_end, t.lr_decay_steps, progress.time_step);
        model = optim.step(lr, model, grads);

        progress.time_step += steps as u64;
        progress.updates += 1;
        progress.episode_t = t1;
        state = Some(next.detach());
        if t1 == len {
            progress.episode_t = 0;
            progress.batch_index += 1;
            episodes = None;
            state = None;
        }
        bar.set_position(progress.time_step);

        since_log.0 += steps as u64;
        since_log.1 += loss_value;
        since_log.2 +=
            loss_value / (pixels * (steps * t.batch * config.world.query_sizes.len()) as f64);
        since_log.3 += norm;
        since_log.4 += 1;
        let out_of_time = options
            .max_seconds
            .is_some_and(|limit| start.elapsed().as_secs_f64() >= limit);
        let done = progress.time_step >= options.total_steps || out_of_time;
        if since_log.0 >= t.log_every || done {
            let n = since_log.4 as f64;
            let line = MetricsLine {
                time_step: progress.time_step,
                updates: progress.updates,
                loss: since_log.1 / n,
                loss_per_pixel: since_log.2 / n,
                grad_norm: since_log.3 / n,
                lr,
                steps_per_s: since_log.0 as f64 / since_log.5.elapsed().as_secs_f64(),
                elapsed_s: start.elapsed().as_secs_f64(),
            };
            bar.set_message(format!("loss/pixel {:.5}", line.loss_per_pixel));
            writeln!(metrics_file, "{}", serde_json::to_string(&line)?)?;
            metrics_file.flush()?;
            since_log = (0, 0.0, 0.0, 0.0, 0, Instant::now());
        }
        if progress.time_step - last_checkpoint >= t.checkpoint_every || done {
            save(run, &recorder, &progress, &model, &optim, state.clone())?;
            last_checkpoint = progress.time_step;
            plot_metrics(run)?;
        }
        if out_of_time {
            bar.abandon_with_message(format!(
                "stopped after {:.1} minutes at time step {}",
                start.elapsed().as_secs_f64() / 60.0,
                progress.time_step
            ));
            return Ok(progress);
        }
    }
    bar.finish();
    Ok(progress)
}

fn save<B, O>(
    run: &RunDir,
    recorder: &Rec,
    progress: &Progress,
    model: &Localizer<Autodiff<B>>,
    optim: &O,
    state: Option<LocalizerState<Autodiff<B>>>,
) -> anyhow::Result<()>
where
    B: Backend,
    O: Optimizer<Localizer<Autodiff<B>>, Autodiff<B>>,
{
    run.save_checkpoint(progress, |dir| {
        model.clone().save_file(dir.join("model"), recorder)?;
        Recorder::<Autodiff<B>>::record(recorder, optim.to_record(), dir.join("optim"))?;
        if let Some(state) = state {
            let inner: Vec<Tensor<B, 4>> = state
                .into_tensors()
                .into_iter()
                .map(|t| t.inner())
                .collect();
            Recorder::<B>::record(recorder, inner, dir.join("carry"))?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Drops metrics lines past `time_step` (written after the checkpoint a run resumes from).
fn truncate_metrics(path: &Path, time_step: u64) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let kept: Vec<String> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| {
            serde_json::from_str::<MetricsLine>(line).is_ok_and(|m| m.time_step <= time_step)
        })
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    crate::checkpoint::write_atomic(path, text.as_bytes())
}

/// Reads `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricsLine>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad metrics line", path.display(), i + 1))
        })
        .collect()
}

/// Redraws the learning curve from the metrics log.
pub fn plot_metrics(run: &RunDir) -> anyhow::Result<()> {
    let lines = read_metrics(&run.metrics())?;
    let points: Vec<(f64, f64)> = lines
        .iter()
        .map(|m| (m.time_step as f64, m.loss_per_pixel))
        .collect();
    plot_curve(
        &[("training loss", points)],
        ["time steps", "loss per pixel"],
        &run.curve(),
    )
}

/// Loads a run's model (newest checkpoint) for inference on `B`.
pub fn load_model<B: Backend>(
    config: &ExperimentConfig,
    run: &RunDir,
    device: &B::Device,
) -> anyhow::Result<(Localizer<B>, Progress)> {
    let Some(dir) = run.latest()? else {
        bail!("{} has no checkpoint yet", run.root.display());
    };
    let model = load_weights(config.model().init::<B>(device), &dir, device)?;
    Ok((model, RunDir::progress(&dir)?))
}

/// Loads a checkpoint's `model.bin` into `model`.
fn load_weights<B: Backend, M: Module<B>>(
    model: M,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<M> {
    let path = dir.join("model.bin");
    let expected = param_shapes(&model);
    let loaded = fitting(&path, || {
        model.load_file(dir.join("model"), &Rec::new(), device)
    })?
    .with_context(|| format!("loading {}", path.display()))?;
    let found = param_shapes(&loaded);
    if found != expected {
        bail!(
            "{} does not fit the model of the run's config.toml ({} parameter tensors with \
             shapes {} where the config needs {} with shapes {}); was config.toml edited, or \
             the checkpoint written by another model?",
            path.display(),
            found.len(),
            summary(&found),
            expected.len(),
            summary(&expected)
        );
    }
    Ok(loaded)
}

/// The shape of every float parameter of `module`, in visiting order.
fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(param.val().dims().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// The first few shapes of a list, for error messages.
fn summary(shapes: &[Vec<usize>]) -> String {
    let head: Vec<String> = shapes.iter().take(3).map(|s| format!("{s:?}")).collect();
    let more = if shapes.len() > 3 { ", …" } else { "" };
    format!("{}{more}", head.join(", "))
}

/// Runs `load`, turning burn's panic on a record that does not fit the module (a different
/// model kind, widths or optimizer) into an error naming `path`.
fn fitting<T>(path: &Path, load: impl FnOnce() -> T) -> anyhow::Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load));
    std::panic::set_hook(hook);
    result.map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown mismatch");
        let why = why.lines().next().unwrap_or_default().trim();
        anyhow::anyhow!(
            "{} does not fit the model of the run's config.toml ({why}); \
             was config.toml edited, or the checkpoint written by another model?",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::{ModuleVisitor, Param};

    /// A 5×5 maze (9-step episodes: windows of 4, 4 and 1 steps), so that runs stop and resume
    /// in the middle of an episode, with carried LSTM state.
    const TINY: &str = "[world]\nmap_size = 5\nmask_size = 6\nmask_origin = 2\n\
        location = \"normalized\"\nquery_per = \"sample\"\n\
        [model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n\
        [train]\nbatch = 2\nwindow = 4\ncheckpoint_every = 4\nlog_every = 4\n";

    struct Collect(Vec<Vec<f32>>);

    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0
                .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
        }
    }

    fn weights(config: &ExperimentConfig, run: &RunDir) -> (Vec<Vec<f32>>, Progress) {
        let (model, progress) = load_model::<Flex>(config, run, &Default::default()).unwrap();
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        (collect.0, progress)
    }

    fn train_to(config: &ExperimentConfig, run: &RunDir, total_steps: u64, resume: bool) {
        let options = TrainOptions {
            total_steps,
            resume,
            max_seconds: None,
        };
        train::<Flex>(Default::default(), config, run, &options).unwrap();
    }

    #[test]
    fn resume_continues_exactly() {
        let root = std::env::temp_dir().join(format!("mg-resume-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let config = ExperimentConfig::parse(TINY).unwrap();
        let straight = RunDir::new(root.join("straight"));
        let split = RunDir::new(root.join("split"));
        // 26 time steps straight: windows end at 4, 8, 9, 13, 17, 18, 22, 26.
        train_to(&config, &straight, 26, false);
        // 13 steps (the run stops 4 steps into its second batch), then resume to 26.
        train_to(&config, &split, 13, false);
        let (_, mid) = weights(&config, &split);
        assert_eq!(
            mid,
            Progress {
                time_step: 13,
                updates: 4,
                batch_index: 1,
                episode_t: 4
            }
        );
        train_to(&config, &split, 26, true);
        let (a, pa) = weights(&config, &straight);
        let (b, pb) = weights(&config, &split);
        assert_eq!(pa, pb);
        assert_eq!(a, b, "resumed weights differ from the straight run");
        // And training did change the weights.
        let fresh = {
            Flex::seed(&Default::default(), config.train.seed);
            let mut collect = Collect(Vec::new());
            config
                .model()
                .init::<Flex>(&Default::default())
                .visit(&mut collect);
            collect.0
        };
        assert_ne!(fresh, a);
        fs::remove_dir_all(&root).ok();
    }
}
