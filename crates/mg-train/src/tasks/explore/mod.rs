//! Joint exploration, mapping and localization (paper §4.2, Figure 5, Table 1's last row): a
//! multigrid policy that reads the memory of a pre-trained, frozen mapping model learns where
//! to move by synchronous advantage actor–critic (A2C) over a batch of mazes stepped in
//! lockstep.
//!
//! The writer and query reader come from a mapping run (`task.mapping_run`) and are frozen:
//! their parameters do not require gradients, and no gradient reaches them. The environments'
//! state in a checkpoint is the path each agent took: the mazes are a pure function of the
//! seed and batch index, so a resumed run replays the saved actions and continues exactly.

mod env;
mod eval;
#[cfg(test)]
mod tests;

use mg_layers::{MgBackend, StackState};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use burn::backend::Flex;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::activation::log_softmax;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use mg_data::batch::mapping_window;
use mg_data::mapping::{Episode, MappingConfig, Motion};
use mg_models::{ExploreNet, LocalizerConfig, PolicyNetConfig, folded_channels};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use env::{Rewards, World, Worlds, advantages, greedy_action, sample_action};
pub use eval::{ExploreReport, MotionReport};

use super::mapping::{Mapping, localization_loss};
use crate::harness::experiment::read_config_text;
use crate::harness::task::task_model;
use crate::harness::train::load_model;
use crate::harness::{
    CarriedState, EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo,
    Report, RestoreState, RunDir, Task, WindowLoss, shard_ranges,
};
use crate::tasks::rows::Host;

/// The `[task]` table of an exploration experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExploreSettings {
    /// The mapping run whose writer and reader the policy reads (relative to the working
    /// directory); its world is this task's world.
    pub mapping_run: PathBuf,
    /// Its checkpoint to load (`step-N` or `best`) [default: the newest intact one].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_checkpoint: Option<String>,
    /// The config the mapping run is trained from (relative to the working directory), so
    /// that `mg-train info` counts the models before that run exists; training and evaluation
    /// always read the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping_config: Option<PathBuf>,
    /// The side of the mazes, checked against the mapping run's [default: the mapping run's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_size: Option<usize>,
    /// Steps of a training episode (the paper: 1000).
    #[serde(default = "defaults::episode_len")]
    pub episode_len: usize,
    /// Discount γ, in [0, 1].
    #[serde(default = "defaults::gamma")]
    pub gamma: f64,
    /// GAE λ, in [0, 1] (1: n-step returns over the window).
    #[serde(default = "defaults::gae_lambda")]
    pub gae_lambda: f64,
    /// Weight of the entropy bonus.
    #[serde(default = "defaults::entropy")]
    pub entropy: f64,
    /// Weight of the critic's squared error.
    #[serde(default = "defaults::value_weight")]
    pub value_weight: f64,
    /// Reward of a step onto a cell not visited before.
    #[serde(default = "defaults::reward_new_cell")]
    pub reward_new_cell: f64,
    /// Reward of a move a wall blocks.
    #[serde(default = "defaults::reward_wall")]
    pub reward_wall: f64,
    /// Take the moves a wall blocks out of the policy's choice (the random walk's rule): the
    /// agent then never hits a wall and `reward_wall` is never given. Off in the paper.
    #[serde(default)]
    pub mask_walls: bool,
    /// Scale each window's advantages to mean 0 and standard deviation 1 before the policy
    /// gradient (the critic still regresses the unscaled returns).
    #[serde(default = "defaults::yes")]
    pub normalize_advantages: bool,
    /// Steps of the test trajectories.
    #[serde(default = "defaults::episode_len")]
    pub eval_steps: usize,
    /// Log the frozen reader's localization loss on the policy's trajectories (Figure 5,
    /// middle); costs one reader pass per window.
    #[serde(default = "defaults::yes")]
    pub track_reader: bool,
}

/// The `[model]` table: the policy (the writer and reader come from the mapping run).
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Channels of the policy's narrowing layers and its 3×3 head grid.
    #[serde(default = "defaults::head_channels")]
    pub head_channels: usize,
}

mod defaults {
    pub fn episode_len() -> usize {
        1000
    }
    pub fn gamma() -> f64 {
        0.99
    }
    pub fn gae_lambda() -> f64 {
        0.95
    }
    pub fn entropy() -> f64 {
        0.01
    }
    pub fn value_weight() -> f64 {
        0.5
    }
    pub fn reward_new_cell() -> f64 {
        1.0
    }
    pub fn reward_wall() -> f64 {
        -1.0
    }
    pub fn yes() -> bool {
        true
    }
    pub fn head_channels() -> usize {
        8
    }
}

/// The exploration task of one experiment.
pub struct Explore {
    config: ExperimentOf<Explore>,
    mapping: Mapping,
    world: MappingConfig,
    policy: PolicyNetConfig,
    rewards: Rewards,
    /// The mapping checkpoint's weights, in visiting order.
    frozen: Vec<TensorData>,
    /// The checkpoint they come from, and its time step.
    source: (PathBuf, u64),
}

/// One window of a rollout: the mazes and the time steps to play.
pub struct ExploreWindow<B: MgBackend> {
    /// The mazes of the batch.
    pub worlds: Arc<Worlds>,
    /// The time steps.
    pub steps: Range<usize>,
    /// Where the tensors go.
    pub device: B::Device,
    /// Whether the window ends its episodes (no bootstrap value).
    pub last: bool,
}

/// The carried state: the writer's memory and every agent's actions so far.
#[derive(Clone, Debug)]
pub struct ExploreState<B: MgBackend> {
    /// The writer's state.
    pub memory: StackState<B>,
    /// Per maze, the actions taken.
    pub actions: Vec<Vec<u8>>,
}

impl<B: MgBackend> CarriedState<B> for ExploreState<B> {
    fn detach(self) -> Self {
        Self {
            memory: self.memory.detach(),
            actions: self.actions,
        }
    }

    /// The writer's state, then the paths as `[batch, 1, 1, 1 + steps]` (each row the step
    /// count and the actions), batch first like every state tensor.
    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        let mut tensors = self.memory.into_tensors();
        let device = tensors[0].device();
        let (batch, len) = (self.actions.len(), self.actions[0].len());
        let mut flat = Vec::with_capacity(batch * (len + 1));
        for a in &self.actions {
            flat.push(len as f32);
            flat.extend(a.iter().map(|&x| x as f32));
        }
        tensors.push(Tensor::from_data(
            TensorData::new(flat, [batch, 1, 1, len + 1]),
            &device,
        ));
        tensors
    }
}

/// What a rollout produced, rows time-major (`t·batch + b`).
pub struct Rollout<B: MgBackend> {
    /// Log-probability of each action taken, `[steps·batch]`.
    pub log_probs: Tensor<B, 1>,
    /// The policy's entropy at each step, `[steps·batch]`.
    pub entropy: Tensor<B, 1>,
    /// The critic's values, `[steps·batch]`.
    pub values: Tensor<B, 1>,
    /// Rewards, `steps·batch`.
    pub rewards: Vec<f32>,
    /// Per maze, the value after the last step (0 where the episode ends).
    pub bootstrap: Vec<f32>,
    /// Moves a wall blocked.
    pub wall_hits: usize,
    /// Moves onto new cells.
    pub new_cells: usize,
    /// The frozen reader's mean localization loss per pixel, when tracked.
    pub reader_loss: Option<f64>,
}

/// How the policy picks an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// A draw from its distribution, keyed by maze and time step.
    Sample,
    /// Its most likely action.
    Greedy,
}

impl Explore {
    /// The experiment.
    pub fn config(&self) -> &ExperimentOf<Explore> {
        &self.config
    }

    /// The mapping task of the frozen model.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The world the policy moves in.
    pub fn world(&self) -> &MappingConfig {
        &self.world
    }

    /// The rewards.
    pub fn rewards(&self) -> Rewards {
        self.rewards
    }

    /// Plays `steps` of `worlds` with `model` from `state` (see [`rollout`]).
    #[allow(clippy::too_many_arguments)]
    pub fn rollout<B: MgBackend>(
        &self,
        model: &ExploreNet<B>,
        worlds: &Worlds,
        steps: Range<usize>,
        state: Option<ExploreState<B>>,
        choice: Choice,
        bootstrap: bool,
        track_reader: bool,
        device: &B::Device,
    ) -> (Rollout<B>, ExploreState<B>) {
        rollout(
            model,
            worlds,
            steps,
            state,
            RolloutOptions {
                rewards: self.rewards,
                choice,
                bootstrap,
                track_reader,
                mask_walls: self.config.task.mask_walls,
            },
            device,
        )
    }
}

fn check_unit(field: &str, v: f64) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("task.{field}: {v}; expected a number in [0, 1]");
    }
    Ok(())
}

/// The mapping task of a config file (`field` names where it came from in errors: the
/// mapping run's config or `task.mapping_config`), checked for what the policy needs.
fn mapping_of(s: &ExploreSettings, field: &str, path: &Path) -> anyhow::Result<Mapping> {
    let text = read_config_text(path)?;
    let kind = crate::harness::experiment::task_kind(&text)
        .with_context(|| format!("in {}", path.display()))?;
    if kind != Mapping::KIND {
        bail!(
            "{field}: {} is a `{kind}` config; the policy needs a `mapping` one",
            path.display()
        );
    }
    let (_, mapping) = crate::harness::experiment::load_config::<Mapping>(path, &text)?;
    let m = mapping.config();
    if let LocalizerConfig::Dnc(_) = mapping.model_config() {
        bail!(
            "{field}: {} trains a DNC; the policy reads a multigrid writer's memory",
            path.display()
        );
    }
    if m.task.query_sizes.len() != 1 {
        bail!(
            "{field}: {} has {} readers (query_sizes = {:?}); the policy's runs track one reader",
            path.display(),
            m.task.query_sizes.len(),
            m.task.query_sizes
        );
    }
    if let Some(n) = s.map_size
        && n != m.task.map_size
    {
        bail!(
            "task.map_size: {n}, but {field} {} has {}×{} mazes",
            path.display(),
            m.task.map_size,
            m.task.map_size
        );
    }
    Ok(mapping)
}

/// Reads the mapping run's config and weights (on the CPU).
fn load_mapping(s: &ExploreSettings) -> anyhow::Result<(Mapping, Vec<TensorData>, (PathBuf, u64))> {
    let root = &s.mapping_run;
    let run = RunDir::open(root).with_context(|| {
        format!(
            "task.mapping_run: {} (train a mapping config first, e.g. `mg-train train \
             configs/explore/quick-mapping.toml`; with task.mapping_config naming it, `info` \
             counts before the run exists)",
            root.display()
        )
    })?;
    let mapping = mapping_of(s, "task.mapping_run", &run.config())?;
    let device = Default::default();
    let (model, progress) =
        load_model::<Mapping, Flex>(&mapping, &run, s.mapping_checkpoint.as_deref(), &device)
            .with_context(|| format!("task.mapping_run: {}", root.display()))?;
    let dir = run
        .pick_checkpoint(s.mapping_checkpoint.as_deref())?
        .unwrap_or_else(|| root.clone());
    struct Collect(Vec<TensorData>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Flex, D>>) {
            self.0.push(param.val().into_data());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    Ok((mapping, collect.0, (dir, progress.time_step)))
}

impl Explore {
    /// Checks the `[task]` and `[model]` fields that do not depend on the mapping model.
    fn check(config: &ExperimentOf<Explore>) -> anyhow::Result<()> {
        let s = &config.task;
        check_unit("gamma", s.gamma)?;
        check_unit("gae_lambda", s.gae_lambda)?;
        for (field, v) in [("episode_len", s.episode_len), ("eval_steps", s.eval_steps)] {
            if v == 0 {
                bail!("task.{field}: 0; expected at least 1 step");
            }
            crate::model_config::check_bound(&format!("task.{field}"), v, 1_000_000)?;
        }
        for (field, v) in [
            ("entropy", s.entropy),
            ("value_weight", s.value_weight),
            ("reward_new_cell", s.reward_new_cell),
            ("reward_wall", s.reward_wall),
        ] {
            if !v.is_finite() {
                bail!("task.{field}: {v}; expected a finite number");
            }
        }
        if s.entropy < 0.0 || s.value_weight < 0.0 {
            bail!(
                "task.entropy / value_weight: {} / {}; expected weights >= 0",
                s.entropy,
                s.value_weight
            );
        }
        if config.model.head_channels == 0 {
            bail!("model.head_channels: 0; expected at least 1");
        }
        crate::model_config::check_bound("model.head_channels", config.model.head_channels, 4096)?;
        Ok(())
    }

    /// The task on a mapping model, its weights (empty: counting only, for `info`) and
    /// where they come from.
    fn assemble(
        config: &ExperimentOf<Explore>,
        mapping: Mapping,
        frozen: Vec<TensorData>,
        source: (PathBuf, u64),
    ) -> anyhow::Result<Self> {
        let s = &config.task;
        let widths = Mapping::widths(mapping.config().model.multigrid("exploration task")?);
        let obs = mapping.config().task.obs_size;
        let policy =
            PolicyNetConfig::from_widths(&widths, folded_channels(obs), config.model.head_channels);
        policy
            .validate()
            .map_err(|e| anyhow::anyhow!("model: the policy for this writer: {e}"))?;
        let world = MappingConfig {
            motion: Motion::Policy,
            lookahead: false,
            query_per: mg_data::mapping::QueryPer::Sample,
            ..mapping.mapping(mapping.config().task.query_sizes[0])
        };
        Ok(Self {
            config: config.clone(),
            mapping,
            world,
            policy,
            rewards: Rewards {
                new_cell: s.reward_new_cell as f32,
                wall: s.reward_wall as f32,
            },
            frozen,
            source,
        })
    }
}

/// Sets a module's float parameters to given values, which do not require gradients.
struct Frozen<'a> {
    data: &'a [TensorData],
    next: usize,
}

impl<B: burn::tensor::backend::Backend> ModuleMapper<B> for Frozen<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let value = Tensor::from_data(self.data[self.next].clone(), &tensor.device());
        self.next += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

impl Explore {
    fn build<B: MgBackend>(&self, device: &B::Device) -> ExploreNet<B> {
        let localizer = self.mapping.model_config().init::<B>(device);
        let localizer = localizer
            .map(&mut Frozen {
                data: &self.frozen,
                next: 0,
            })
            .no_grad();
        ExploreNet {
            localizer,
            policy: self.policy.init(device),
        }
    }
}

impl Report for ExploreReport {
    fn lines(&self) -> Vec<String> {
        eval::lines(self)
    }
}

impl Task for Explore {
    task_model!(ExploreNet, |task, device| task.build(device));

    const KIND: &'static str = "explore";
    const UNIT: &'static str = "step";
    type Settings = ExploreSettings;
    type ModelSettings = PolicySettings;
    type State<B: MgBackend> = ExploreState<B>;
    type Window<B: MgBackend> = ExploreWindow<B>;
    type Output<B: MgBackend> = Rollout<B>;
    type Batch = Arc<Worlds>;
    type Report = ExploreReport;

    fn new(config: &Experiment<ExploreSettings, PolicySettings>) -> anyhow::Result<Self> {
        Self::check(config)?;
        let (mapping, frozen, source) = load_mapping(&config.task)?;
        Self::assemble(config, mapping, frozen, source)
    }

    fn for_info(config: &Experiment<ExploreSettings, PolicySettings>) -> anyhow::Result<Self> {
        let s = &config.task;
        match &s.mapping_config {
            // Counts need the mapping model's shape only: its config when the run is not there.
            Some(path) if !s.mapping_run.exists() => {
                Self::check(config)?;
                let mapping = mapping_of(s, "task.mapping_config", path)?;
                Self::assemble(config, mapping, Vec::new(), (path.clone(), 0))
            }
            _ => Self::new(config),
        }
    }

    fn info(&self) -> ModelInfo {
        let frozen = self.mapping.info();
        let policy = self.policy.num_params();
        let s = &self.config.task;
        let mut json = serde_json::Map::new();
        json.insert("policy_params".into(), json!(policy));
        json.insert("frozen_params".into(), json!(frozen.params));
        json.insert("map_size".into(), json!(self.world.map_size));
        json.insert("episode_len".into(), json!(s.episode_len));
        json.insert(
            "mapping_checkpoint".into(),
            json!(self.source.0.display().to_string()),
        );
        let mut lines = vec![
            format!(
                "  policy: {} multigrid layers (the first {} read the writer), heads on a 3×3×{} \
                 grid, {policy} trainable parameters",
                self.policy.reader.layers.len(),
                self.policy.reader.memory.len(),
                self.policy.head_channels
            ),
            if self.frozen.is_empty() {
                format!(
                    "  frozen mapping model ({} parameters), counted from its config {}: the run \
                     {} is not trained yet",
                    frozen.params,
                    self.source.0.display(),
                    s.mapping_run.display()
                )
            } else {
                format!(
                    "  frozen mapping model ({} parameters) from {} (time step {})",
                    frozen.params,
                    self.source.0.display(),
                    self.source.1
                )
            },
            format!(
                "  world: {0}×{0} mazes, training episodes of {1} steps, γ = {2}, λ = {3}",
                self.world.map_size, s.episode_len, s.gamma, s.gae_lambda
            ),
        ];
        lines.extend(frozen.lines.into_iter().map(|l| format!("  {l}")));
        ModelInfo {
            params: policy,
            memory_cells: frozen.memory_cells,
            lines,
            json,
        }
    }

    fn paths(&self) -> &'static [ForwardPath] {
        &[ForwardPath::Step]
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<Arc<Worlds>> {
        Ok(Arc::new(Worlds::new(
            &self.world,
            seed,
            index * size as u64,
            size,
        )?))
    }

    /// Consecutive mazes, each shard with its own copy of them (the rollouts step a batch's
    /// mazes in place), keyed by their place in the whole batch so that the action draws are
    /// the same. Each maze's rollout, advantages and loss terms are its own, but for the
    /// advantages' normalisation, which [`Task::shard_losses`] does over the whole batch.
    fn split_batch(&self, batch: &Arc<Worlds>, sizes: &[usize]) -> Option<Vec<Arc<Worlds>>> {
        let worlds = batch.worlds.lock().unwrap_or_else(|e| e.into_inner());
        let shards = shard_ranges(sizes)
            .map(|rows| {
                Arc::new(Worlds {
                    config: batch.config.clone(),
                    seed: batch.seed,
                    first: batch.first + rows.start as u64,
                    worlds: std::sync::Mutex::new(worlds[rows].to_vec()),
                })
            })
            .collect();
        Some(shards)
    }

    fn couples_shards(&self) -> bool {
        self.config.task.normalize_advantages
    }

    fn batch_sums<B: MgBackend>(&self, outputs: &[Rollout<B>]) -> Vec<f64> {
        if !self.config.task.normalize_advantages {
            return Vec::new();
        }
        let estimates: Vec<_> = outputs.iter().map(|o| self.estimates(o)).collect();
        let all: Vec<&[f32]> = estimates.iter().map(|e| e.0.as_slice()).collect();
        value_sums(&all)
    }

    fn shard_losses<B: MgBackend>(
        &self,
        outputs: Vec<Rollout<B>>,
        _windows: &[&ExploreWindow<B>],
        reduction: LossReduction,
        sums: &[f64],
    ) -> Vec<WindowLoss<B>> {
        let estimates: Vec<_> = outputs.iter().map(|o| self.estimates(o)).collect();
        let scale = self
            .config
            .task
            .normalize_advantages
            .then(|| moments_of_sums(sums));
        outputs
            .into_iter()
            .zip(estimates)
            .map(|(output, estimates)| self.scored(output, estimates, scale, reduction))
            .collect()
    }

    fn sequence_len(&self, _batch: &Arc<Worlds>) -> usize {
        self.config.task.episode_len
    }

    fn window<B: MgBackend>(
        &self,
        batch: &Arc<Worlds>,
        steps: Range<usize>,
        device: &B::Device,
    ) -> ExploreWindow<B> {
        ExploreWindow {
            last: steps.end >= self.config.task.episode_len,
            worlds: batch.clone(),
            steps,
            device: device.clone(),
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &ExploreNet<B>,
        window: &ExploreWindow<B>,
        state: Option<ExploreState<B>>,
        _path: ForwardPath,
    ) -> anyhow::Result<(Rollout<B>, ExploreState<B>)> {
        Ok(self.rollout(
            model,
            &window.worlds,
            window.steps.clone(),
            state,
            Choice::Sample,
            !window.last,
            self.config.task.track_reader,
            &window.device,
        ))
    }

    fn loss<B: MgBackend>(
        &self,
        output: Rollout<B>,
        _window: &ExploreWindow<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let estimates = self.estimates(&output);
        let scale = self
            .config
            .task
            .normalize_advantages
            .then(|| moments(&[&estimates.0]));
        self.scored(output, estimates, scale, reduction)
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &ExploreNet<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<ExploreReport> {
        eval::report(self, model, request, device)
    }

    fn draw<B: MgBackend>(
        &self,
        model: &ExploreNet<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>> {
        eval::draw(self, model, index, out, device)
    }
}

impl Explore {
    /// The advantages and returns of a rollout (GAE), rows time-major.
    fn estimates<B: MgBackend>(&self, output: &Rollout<B>) -> (Vec<f32>, Vec<f32>) {
        let s = &self.config.task;
        let values: Vec<f32> = output.values.clone().host();
        advantages(
            &output.rewards,
            &values,
            &output.bootstrap,
            s.gamma as f32,
            s.gae_lambda as f32,
        )
    }

    /// The actor–critic loss of a rollout from its advantages and returns, the advantages
    /// shifted and scaled by `scale` (mean, 1 / standard deviation) when it is given; and the
    /// task's figures.
    fn scored<B: MgBackend>(
        &self,
        output: Rollout<B>,
        (adv, returns): (Vec<f32>, Vec<f32>),
        scale: Option<(f64, f64)>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let s = &self.config.task;
        let rows = output.rewards.len();
        let adv = match scale {
            Some((mean, scale)) => normalized_by(adv, mean, scale),
            None => adv,
        };
        let device = output.values.device();
        let adv = Tensor::<B, 1>::from_data(TensorData::new(adv, [rows]), &device);
        let returns = Tensor::<B, 1>::from_data(TensorData::new(returns, [rows]), &device);
        let policy = -(output.log_probs * adv);
        let value = (returns - output.values).powi_scalar(2) * (0.5 * s.value_weight);
        let per_row = policy + value - output.entropy.clone() * s.entropy;
        let loss = match reduction {
            LossReduction::Sum => per_row.sum(),
            LossReduction::Mean => per_row.mean(),
        };
        let n = rows.max(1) as f64;
        let entropy: f64 = output.entropy.mean().into_scalar().elem();
        let mut metrics = vec![
            (
                "reward_per_step",
                output.rewards.iter().map(|&r| r as f64).sum::<f64>() / n,
            ),
            ("new_cells_per_step", output.new_cells as f64 / n),
            ("wall_hits_per_step", output.wall_hits as f64 / n),
            ("policy_entropy", entropy),
        ];
        if let Some(l) = output.reader_loss {
            metrics.push(("reader_loss_per_pixel", l));
        }
        WindowLoss {
            loss,
            units: rows as f64,
            metrics,
        }
    }
}

/// One step's writer outputs (per layer and level), query and target, for the reader's loss.
type ReaderStep<B> = (Vec<Vec<Tensor<B, 4>>>, Tensor<B, 4>, Tensor<B, 2>);

/// `x` shifted and scaled to mean 0 and standard deviation 1 (only shifted when constant).
pub fn normalized(x: Vec<f32>) -> Vec<f32> {
    let (mean, scale) = moments(&[&x]);
    normalized_by(x, mean, scale)
}

/// The mean of the values of every part, and 1 / their standard deviation (1 when they are
/// constant): the shift and scale of [`normalized`], over parts taken together.
pub fn moments(parts: &[&[f32]]) -> (f64, f64) {
    moments_of_sums(&value_sums(parts))
}

/// Count, sum and sum of squares of the values of every part: figures that add up over
/// shards and nodes.
pub fn value_sums(parts: &[&[f32]]) -> Vec<f64> {
    let values = || parts.iter().flat_map(|p| p.iter().map(|&v| v as f64));
    vec![
        values().count() as f64,
        values().sum(),
        values().map(|v| v * v).sum(),
    ]
}

/// [`moments`] from [`value_sums`].
pub fn moments_of_sums(sums: &[f64]) -> (f64, f64) {
    let n = sums[0].max(1.0);
    let mean = sums[1] / n;
    let var = (sums[2] / n - mean * mean).max(0.0);
    let scale = if var > 1e-12 { 1.0 / var.sqrt() } else { 1.0 };
    (mean, scale)
}

/// `x` shifted by `-mean` and scaled by `scale`.
fn normalized_by(mut x: Vec<f32>, mean: f64, scale: f64) -> Vec<f32> {
    for v in &mut x {
        *v = ((*v as f64 - mean) * scale) as f32;
    }
    x
}

/// How [`rollout`] plays.
#[derive(Clone, Copy, Debug)]
pub struct RolloutOptions {
    /// The rewards.
    pub rewards: Rewards,
    /// How actions are picked.
    pub choice: Choice,
    /// Compute the value after the last step (the window does not end the episode).
    pub bootstrap: bool,
    /// Run the frozen reader on the window and report its loss.
    pub track_reader: bool,
    /// Leave out the moves a wall blocks.
    pub mask_walls: bool,
}

/// The additive logit mask of each maze's blocked moves (a large negative number for a move
/// into a wall, 0 otherwise), `[batch·4]`.
fn wall_mask(worlds: &[World]) -> Vec<f32> {
    let mut mask = Vec::with_capacity(4 * worlds.len());
    for w in worlds {
        let (r, c) = w.episode.position();
        let free = mg_data::mapping::Action::ALL.map(|a| {
            let (dr, dc) = a.delta();
            !w.episode.map().is_wall(r as i64 + dr, c as i64 + dc)
        });
        let any = free.iter().any(|&f| f);
        mask.extend(free.map(|f| if f || !any { 0.0 } else { BLOCKED }));
    }
    mask
}

/// The logit offset of a masked move: its probability underflows to 0 and its log stays
/// finite, so the entropy term `p·log p` is 0.
const BLOCKED: f32 = -1e4;

/// Plays time steps `steps` of every maze: at each step the writer takes the observation, the
/// policy reads the writer's memory and the observation, and each agent moves. The writer's
/// outputs carry no gradient, so none reaches it.
pub fn rollout<B: MgBackend>(
    model: &ExploreNet<B>,
    worlds: &Worlds,
    steps: Range<usize>,
    state: Option<ExploreState<B>>,
    options: RolloutOptions,
    device: &B::Device,
) -> (Rollout<B>, ExploreState<B>) {
    let mapping = model.mapping();
    let batch = worlds
        .worlds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    let (mut memory, taken) = match state {
        Some(s) => (Some(s.memory), s.actions),
        None => (None, vec![Vec::new(); batch]),
    };
    worlds
        .sync(&taken, options.rewards)
        .expect("replaying a saved path in a validated world");
    let mut worlds_now = worlds.worlds.lock().unwrap_or_else(|e| e.into_inner());
    let (mut log_probs, mut entropy, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut rewards = Vec::with_capacity(steps.len() * batch);
    let (mut wall_hits, mut new_cells) = (0, 0);
    let mut read: Vec<ReaderStep<B>> = Vec::new();
    for t in steps.clone() {
        let episodes: Vec<&Episode> = worlds_now.iter().map(|w| &w.episode).collect();
        let tensors = mapping_window::<B>(&episodes, t..t + 1, device);
        let out = mapping.write_step(tensors.input.clone(), memory.take());
        let (logits, value) =
            model
                .policy
                .forward(&[mapping.encode(tensors.input)], &out.outputs, 1);
        let logits = if options.mask_walls {
            let mask = wall_mask(&worlds_now);
            logits + Tensor::<B, 2>::from_data(TensorData::new(mask, [batch, 4]), device)
        } else {
            logits
        };
        let log_p = log_softmax(logits, 1);
        let probs: Vec<f32> = log_p.clone().exp().host();
        let actions: Vec<u8> = (0..batch)
            .map(|b| {
                let row = &probs[b * 4..(b + 1) * 4];
                match options.choice {
                    Choice::Sample => sample_action(row, worlds.seed, worlds.first + b as u64, t),
                    Choice::Greedy => greedy_action(row),
                }
            })
            .collect();
        for (world, &a) in worlds_now.iter_mut().zip(&actions) {
            let outcome = world.act(a, options.rewards);
            rewards.push(outcome.reward);
            wall_hits += outcome.hit_wall as usize;
            new_cells += outcome.new_cell as usize;
        }
        let index = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                actions.iter().map(|&a| a as i64).collect::<Vec<_>>(),
                [batch, 1],
            ),
            device,
        );
        let p = log_p.clone().exp();
        entropy.push(-(p * log_p.clone()).sum_dim(1).flatten::<1>(0, 1));
        log_probs.push(log_p.gather(1, index).flatten::<1>(0, 1));
        values.push(value);
        if options.track_reader {
            read.push((out.outputs, tensors.query, tensors.target));
        }
        memory = Some(out.state);
    }
    let memory = memory.expect("a window holds at least one step");
    let bootstrap = if options.bootstrap {
        let t = steps.end;
        let episodes: Vec<&Episode> = worlds_now.iter().map(|w| &w.episode).collect();
        let tensors = mapping_window::<B>(&episodes, t..t + 1, device);
        let out = mapping.write_step(tensors.input.clone(), Some(memory.clone()));
        let (_, value) = model
            .policy
            .forward(&[mapping.encode(tensors.input)], &out.outputs, 1);
        value.detach().host()
    } else {
        vec![0.0; batch]
    };
    let reader_loss = (!read.is_empty()).then(|| {
        let n = read.len();
        let layers = read[0].0.len();
        let memory: Vec<Vec<Tensor<B, 4>>> = (0..layers)
            .map(|k| {
                (0..read[0].0[k].len())
                    .map(|l| Tensor::cat(read.iter().map(|r| r.0[k][l].clone()).collect(), 0))
                    .collect()
            })
            .collect();
        let query = Tensor::cat(read.iter().map(|r| r.1.clone()).collect(), 0);
        let target = Tensor::cat(read.iter().map(|r| r.2.clone()).collect(), 0);
        let logits = mapping.read(&[query], &memory, n).remove(0);
        localization_loss(logits.detach(), target, LossReduction::Mean)
            .into_scalar()
            .elem::<f64>()
    });
    let actions = worlds_now.iter().map(|w| w.actions.clone()).collect();
    (
        Rollout {
            log_probs: Tensor::cat(log_probs, 0),
            entropy: Tensor::cat(entropy, 0),
            values: Tensor::cat(values, 0),
            rewards,
            bootstrap,
            wall_hits,
            new_cells,
            reader_loss,
        },
        ExploreState { memory, actions },
    )
}

/// The writer's state, then the paths taken so far (`[mazes, 1, 1, 1 + steps]`: the count,
/// then the actions).
impl<B: MgBackend> RestoreState<B, ExploreState<B>> for ExploreNet<B> {
    fn state_from_tensors(
        &self,
        mut tensors: Vec<Tensor<B, 4>>,
    ) -> anyhow::Result<ExploreState<B>> {
        let Some(paths) = tensors.pop() else {
            bail!("the saved state holds no tensors; expected the writer's state and the paths");
        };
        // `[batch, 1, 1, 1 + steps]`, or `[1, 1, batch, 1 + steps]` as earlier versions saved it.
        let batch = match paths.dims() {
            [b, 1, 1, _] => b,
            [1, 1, b, _] => b,
            dims => bail!("saved paths: a tensor of shape {dims:?}; expected [mazes, 1, 1, steps]"),
        };
        let width = paths.dims()[3];
        let values: Vec<f32> = paths.host();
        let mut actions = Vec::with_capacity(batch);
        for b in 0..batch {
            let row = &values[b * width..(b + 1) * width];
            if row[0] as usize + 1 != width {
                bail!(
                    "saved paths: maze {b} says {} steps in a row of {width}",
                    row[0]
                );
            }
            let mut taken = Vec::with_capacity(width - 1);
            for &a in &row[1..] {
                if !(0.0..4.0).contains(&a) || a.fract() != 0.0 {
                    bail!("saved paths: action {a} of maze {b}; expected 0, 1, 2 or 3");
                }
                taken.push(a as u8);
            }
            actions.push(taken);
        }
        let memory = self.mapping().writer.state_from_tensors(tensors)?;
        Ok(ExploreState { memory, actions })
    }
}
