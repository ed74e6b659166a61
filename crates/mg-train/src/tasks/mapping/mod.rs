//! Mapping & localization (paper §4.1, Table 1): an agent explores a maze, and readers
//! localise query patches in the map the memory builds. Models: a multigrid writer with
//! readers (or its ablations), or a DNC ([`mg_models::Localizer`]).

mod eval;
mod render;
pub mod scaling;

use mg_layers::MgBackend;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::bail;
use burn::tensor::Tensor;
use mg_data::batch::{MappingTensors, mapping_window};
use mg_data::mapping::{
    Episode, LocationEncoding, MappingConfig, Motion, QueryPer, generate_batch,
};
use mg_models::{
    DncLocalizerConfig, Glimpses, Localizer, LocalizerConfig, MappingModelConfig, MappingWidths,
    MemoryState,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use eval::{EvalReport, Scores, score_episodes};
pub use render::render_episodes;

use crate::harness::task::task_model;
use crate::harness::{
    EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo, Report, Task,
    WindowLoss, shard_ranges,
};
use crate::model_config::{ModelConfig, MultigridSettings, check_bound};

/// How the agent moves.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MotionKind {
    /// The reference clockwise spiral ((n−2)² steps).
    Spiral,
    /// A random walk that walls block, `walk_length` steps.
    RandomWalk,
}

/// Location channel encoding.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LocationKind {
    /// The reference's raw re-centred coordinates (`mask_origin` at the start).
    Raw,
    /// Offsets from the start divided by half the map size.
    Normalized,
}

/// Query index drawn once per batch (reference) or per sample.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QueryKind {
    /// One index per step, shared by the batch.
    Batch,
    /// One index per step and episode.
    Sample,
}

/// The `[task]` table of a mapping experiment: the world the agent explores.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    /// Side of the map, odd (15 and 25 in the paper).
    pub map_size: usize,
    /// Maze complexity (reference 0.05).
    #[serde(default = "defaults::complexity")]
    pub complexity: f64,
    /// Maze density (reference 0.2).
    #[serde(default = "defaults::density")]
    pub density: f64,
    /// Border walls only, no maze.
    #[serde(default)]
    pub open_map: bool,
    /// `spiral` or `random-walk`.
    #[serde(default = "defaults::motion")]
    pub motion: MotionKind,
    /// Steps of a random walk.
    #[serde(default = "defaults::walk_length")]
    pub walk_length: usize,
    /// Side of the observation patch (3 or 9).
    #[serde(default = "defaults::patch")]
    pub obs_size: usize,
    /// Side of each reader's query patch; one reader per entry (3 and/or 9).
    #[serde(default = "defaults::query_sizes")]
    pub query_sizes: Vec<usize>,
    /// Side of the localization map; must equal the model's finest grid (3·2^(levels−1)).
    #[serde(default = "defaults::mask_size")]
    pub mask_size: usize,
    /// Row and column of the start in the localization map.
    #[serde(default = "defaults::mask_origin")]
    pub mask_origin: usize,
    /// `raw` (reference) or `normalized` location channels.
    #[serde(default = "defaults::location")]
    pub location: LocationKind,
    /// The reference's one-step look-ahead in training masks (evaluation is always causal).
    #[serde(default)]
    pub lookahead: bool,
    /// `batch` (reference) or `sample` query indices.
    #[serde(default = "defaults::query_per")]
    pub query_per: QueryKind,
}

mod defaults {
    use super::*;
    pub fn complexity() -> f64 {
        0.05
    }
    pub fn density() -> f64 {
        0.2
    }
    pub fn motion() -> MotionKind {
        MotionKind::Spiral
    }
    pub fn walk_length() -> usize {
        500
    }
    pub fn patch() -> usize {
        3
    }
    pub fn query_sizes() -> Vec<usize> {
        vec![3]
    }
    pub fn mask_size() -> usize {
        48
    }
    pub fn mask_origin() -> usize {
        25
    }
    pub fn location() -> LocationKind {
        LocationKind::Raw
    }
    pub fn query_per() -> QueryKind {
        QueryKind::Batch
    }
}

/// The mapping task of one experiment.
#[derive(Debug, Clone)]
pub struct Mapping {
    config: ExperimentOf<Mapping>,
    model: LocalizerConfig,
}

/// The tensors of one window: one set per query size.
pub struct MappingWindow<B: MgBackend> {
    /// Inputs, queries and targets per reader.
    pub tensors: Vec<MappingTensors<B>>,
    /// Time steps of the window.
    pub steps: usize,
}

impl Mapping {
    /// The experiment.
    pub fn config(&self) -> &ExperimentOf<Mapping> {
        &self.config
    }

    /// The model's configuration.
    pub fn model_config(&self) -> &LocalizerConfig {
        &self.model
    }

    /// The world of one reader's query size, for training (`lookahead` as configured).
    pub fn mapping(&self, query_size: usize) -> MappingConfig {
        world_mapping(&self.config.task, query_size)
    }

    /// The causal test world of one query size: per-sample query indices, no look-ahead.
    pub fn test_world(&self, query_size: usize) -> MappingConfig {
        MappingConfig {
            lookahead: false,
            query_per: QueryPer::Sample,
            ..self.mapping(query_size)
        }
    }

    /// The multigrid widths of the `[model]` table.
    pub fn widths(model: &MultigridSettings) -> MappingWidths {
        MappingWidths::new(
            model.levels.clone(),
            model.channels.clone(),
            model.tail_channels.unwrap_or_default(),
        )
        .with_finest_only(model.finest_only)
        .with_tail_widths(model.tail_widths.clone())
    }

    fn model_of(config: &ExperimentOf<Mapping>) -> anyhow::Result<LocalizerConfig> {
        let w = &config.task;
        Ok(match &config.model {
            ModelConfig::Multigrid(m) => {
                m.check()?;
                if m.tail_same.is_some() || m.norm.is_some() {
                    bail!(
                        "model.tail_same / norm: fields of the algorithmic tasks' models; the mapping model has neither"
                    );
                }
                let widths = Self::widths(m);
                widths
                    .validate()
                    .map_err(|e| anyhow::anyhow!("model: {e}"))?;
                if widths.output_size() != w.mask_size {
                    bail!(
                        "task.mask_size: {}; the model's finest grid is {}×{} ({} levels), expected mask_size = {}",
                        w.mask_size,
                        widths.output_size(),
                        widths.output_size(),
                        widths.levels.last().copied().unwrap_or(0),
                        widths.output_size()
                    );
                }
                LocalizerConfig::Multigrid(MappingModelConfig::from_widths(
                    &widths,
                    w.obs_size,
                    &w.query_sizes,
                ))
            }
            ModelConfig::Dnc(m) => {
                let input = DncLocalizerConfig::input_size(w.obs_size, &w.query_sizes);
                let output = DncLocalizerConfig::output_size(w.query_sizes.len(), w.mask_size);
                let dnc = m.dnc(input, output)?;
                let c =
                    DncLocalizerConfig::new(dnc, w.obs_size, w.query_sizes.clone(), w.mask_size);
                c.validate().map_err(|e| anyhow::anyhow!("model: {e}"))?;
                LocalizerConfig::Dnc(c)
            }
        })
    }

    /// Test sequences `range` for every query size (same maps and paths).
    pub fn test_episodes(&self, range: Range<usize>) -> anyhow::Result<Vec<Vec<Episode>>> {
        self.config
            .task
            .query_sizes
            .iter()
            .map(|&q| {
                let set = mg_data::mapping::MappingTestSet {
                    config: self.test_world(q),
                    seed: self.config.eval.seed,
                    len: range.end,
                };
                range
                    .clone()
                    .map(|i| set.get(i).map_err(anyhow::Error::from))
                    .collect()
            })
            .collect()
    }
}

/// The world of one query size.
fn world_mapping(w: &WorldConfig, query_size: usize) -> MappingConfig {
    MappingConfig {
        map_size: w.map_size,
        complexity: w.complexity,
        density: w.density,
        open_map: w.open_map,
        motion: match w.motion {
            MotionKind::Spiral => Motion::Spiral,
            MotionKind::RandomWalk => Motion::RandomWalk { len: w.walk_length },
        },
        obs_size: w.obs_size,
        query_size,
        mask_size: w.mask_size,
        mask_origin: w.mask_origin,
        location: match w.location {
            LocationKind::Raw => LocationEncoding::Raw,
            LocationKind::Normalized => LocationEncoding::Normalized,
        },
        lookahead: w.lookahead,
        query_per: match w.query_per {
            QueryKind::Batch => QueryPer::Batch,
            QueryKind::Sample => QueryPer::Sample,
        },
    }
}

/// Summed (or averaged) sigmoid cross-entropy `max(x, 0) − x·y + log(1 + e^(−|x|))`.
pub fn localization_loss<B: MgBackend>(
    logits: Tensor<B, 2>,
    target: Tensor<B, 2>,
    reduction: LossReduction,
) -> Tensor<B, 1> {
    let per_pixel = super::losses::sigmoid_cross_entropy(logits, target);
    match reduction {
        LossReduction::Sum => per_pixel.sum(),
        LossReduction::Mean => per_pixel.mean(),
    }
}

impl Report for EvalReport {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "checkpoint at time step {}, {} test episodes (seed {:#x}), {:.1} s",
            self.time_step, self.episodes, self.seed, self.seconds
        )];
        for r in &self.readers {
            lines.push(format!(
                "  {0}×{0} queries: precision {1:.4}  recall {2:.4}  F {3:.4}",
                r.query_size, r.precision, r.recall, r.f
            ));
        }
        lines
    }
}

impl Task for Mapping {
    task_model!(Localizer, |task, device| task.model.init(device));

    const KIND: &'static str = "mapping";
    const UNIT: &'static str = "pixel";
    type Settings = WorldConfig;
    type ModelSettings = ModelConfig;
    type State<B: MgBackend> = MemoryState<B>;
    type Window<B: MgBackend> = MappingWindow<B>;
    type Output<B: MgBackend> = Vec<Tensor<B, 2>>;
    type Batch = Vec<Vec<Episode>>;
    type Report = EvalReport;

    fn new(config: &Experiment<WorldConfig, ModelConfig>) -> anyhow::Result<Self> {
        let w = &config.task;
        check_bound("task.map_size", w.map_size, 4001)?;
        check_bound("task.walk_length", w.walk_length, 10_000_000)?;
        check_bound("task.query_sizes (entries)", w.query_sizes.len(), 16)?;
        if w.query_sizes.is_empty() {
            bail!("task.query_sizes: empty; expected at least one query size (e.g. [3])");
        }
        for (field, side) in std::iter::once(("task.obs_size", w.obs_size))
            .chain(w.query_sizes.iter().map(|&q| ("task.query_sizes", q)))
        {
            if side == 0 || side % 3 != 0 || side % 2 == 0 {
                bail!("{field}: {side}; expected an odd multiple of 3 (3 or 9)");
            }
        }
        for &q in &w.query_sizes {
            world_mapping(w, q)
                .validate()
                .map_err(|e| anyhow::anyhow!("task: {e}"))?;
        }
        let model = Self::model_of(config)?;
        Ok(Self {
            config: config.clone(),
            model,
        })
    }

    fn info(&self) -> ModelInfo {
        info(self)
    }

    fn floats_per_step(&self) -> f64 {
        match &self.model {
            LocalizerConfig::Multigrid(m) => 64.0 * m.memory_cells() as f64,
            LocalizerConfig::Dnc(d) => crate::model_config::dnc_floats_per_step(&d.dnc),
        }
    }

    fn paths(&self) -> &'static [ForwardPath] {
        crate::model_config::paths_of(&self.model)
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<Self::Batch> {
        self.config
            .task
            .query_sizes
            .iter()
            .map(|&q| generate_batch(&self.mapping(q), seed, index, size).map_err(Into::into))
            .collect()
    }

    fn sequence_len(&self, batch: &Self::Batch) -> usize {
        batch[0][0].len()
    }

    /// Consecutive episodes of every query size's batch.
    fn split_batch(&self, batch: &Self::Batch, sizes: &[usize]) -> Option<Vec<Self::Batch>> {
        Some(
            shard_ranges(sizes)
                .map(|rows| batch.iter().map(|b| b[rows.clone()].to_vec()).collect())
                .collect(),
        )
    }

    fn window<B: MgBackend>(
        &self,
        batch: &Self::Batch,
        steps: Range<usize>,
        device: &B::Device,
    ) -> MappingWindow<B> {
        MappingWindow {
            steps: steps.len(),
            tensors: batch
                .iter()
                .map(|e| mapping_window::<B>(e, steps.clone(), device))
                .collect(),
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &Localizer<B>,
        window: &MappingWindow<B>,
        state: Option<MemoryState<B>>,
        path: ForwardPath,
    ) -> anyhow::Result<(Vec<Tensor<B, 2>>, MemoryState<B>)> {
        let queries: Vec<_> = window.tensors.iter().map(|w| w.query.clone()).collect();
        let glimpses = Glimpses {
            observation: window.tensors[0].input.clone(),
            queries: &queries,
            steps: window.steps,
            step_path: path == ForwardPath::Step,
        };
        Ok(model.forward(glimpses, state)?)
    }

    fn loss<B: MgBackend>(
        &self,
        output: Vec<Tensor<B, 2>>,
        window: &MappingWindow<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let mut units = 0.0;
        let loss = output
            .into_iter()
            .zip(&window.tensors)
            .map(|(logits, w)| {
                let [rows, pixels] = logits.dims();
                units += (rows * pixels) as f64;
                localization_loss(logits, w.target.clone(), reduction)
            })
            .reduce(|a, b| a + b)
            .expect("at least one reader");
        WindowLoss::new(loss, units)
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &Localizer<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<EvalReport> {
        eval::report(self, model, request, device)
    }

    fn draw<B: MgBackend>(
        &self,
        model: &Localizer<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let frames = render::render_episode(self, model, index, out, device)?;
        let mut files = vec![out.join("episode.gif")];
        eprintln!("{frames} frames written to {}", out.display());
        if matches!(model, Localizer::Dnc(_)) {
            files.push(render::render_dnc_memory(self, model, index, out, device)?);
        }
        Ok(files)
    }

    fn torch_names(&self) -> anyhow::Result<crate::harness::ForeignNames> {
        let layout = match &self.model {
            LocalizerConfig::Multigrid(config) => mg_models::interop::TorchLayout::of(config)?,
            LocalizerConfig::Dnc(_) => {
                anyhow::bail!("the PyTorch model is a multigrid memory; this run is a DNC")
            }
        };
        Ok(crate::harness::ForeignNames {
            metadata: vec![("torch_mgmem_variant".into(), layout.variant_json())],
            rename: Box::new(move |path| layout.torch_name(path)),
        })
    }
}

/// `mg-train info` for a mapping model.
fn info(task: &Mapping) -> ModelInfo {
    let config = &task.config;
    let model = &task.model;
    let episode_len = task.mapping(config.task.query_sizes[0]).episode_len();
    let mut json = serde_json::Map::new();
    json.insert("map_size".into(), json!(config.task.map_size));
    json.insert("episode_len".into(), json!(episode_len));
    json.insert("mask_size".into(), json!(config.task.mask_size));
    let mut lines = vec![format!(
        "  world: {0}×{0}, episodes of {1} steps, {2}×{2} localization map",
        config.task.map_size,
        episode_len.map_or("policy-driven".into(), |l| l.to_string()),
        config.task.mask_size
    )];
    match model {
        LocalizerConfig::Multigrid(m) => {
            let readers: Vec<_> = m
                .readers
                .iter()
                .zip(&config.task.query_sizes)
                .map(|(r, q)| json!({"query_size": q, "layers": r.layers.len(), "params": r.num_params()}))
                .collect();
            json.insert("readers".into(), json!(readers));
            crate::model_config::describe_writer("writer", &m.writer, &mut lines, &mut json);
            for (r, q) in m.readers.iter().zip(&config.task.query_sizes) {
                lines.push(format!(
                    "  reader for {q}×{q} queries: {} layers, {} parameters",
                    r.layers.len(),
                    r.num_params()
                ));
            }
        }
        LocalizerConfig::Dnc(d) => crate::model_config::describe_dnc(&d.dnc, &mut lines, &mut json),
    }
    ModelInfo {
        params: model.num_params(),
        memory_cells: model.memory_cells(),
        lines,
        json,
    }
}

#[cfg(test)]
mod tests;
