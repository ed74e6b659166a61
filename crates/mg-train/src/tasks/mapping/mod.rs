//! Experiment configuration files (TOML): every field documented, unknown fields rejected,
//! values checked once at load time with errors naming the file and the field.

use std::path::Path;

use anyhow::{Context, bail};
use mg_data::mapping::{
    LocationEncoding, MappingConfig, Motion, QueryPer, TEST_SEED, TEST_SET_SIZE,
};
use mg_models::{
    DncConfig, DncLocalizerConfig, LocalizerConfig, MappingModelConfig, MappingWidths, StrengthOp,
};
use serde::{Deserialize, Serialize};

/// One mapping & localization experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The world the agent explores.
    pub world: WorldConfig,
    /// The model.
    pub model: ModelConfig,
    /// Training settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// Evaluation settings.
    #[serde(default)]
    pub eval: EvalConfig,
}

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

/// The mapping world.
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

/// Which model the experiment trains.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A multigrid writer and readers: `levels`, `channels`, `tail_channels` (and
    /// `finest_only`, `tail_widths` for the Ablated MG and ConvLSTM baselines).
    #[default]
    Multigrid,
    /// A DNC: `controller`, `memory_slots`, `word_size`, `read_heads`, `write_heads`,
    /// `clip_value`, `strength`.
    Dnc,
}

/// The DNC's key-strength nonlinearity.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StrengthKind {
    /// `ln(1 + eˣ)`, DeepMind's code.
    Softplus,
    /// `1 + ln(1 + eˣ)`, the Nature paper.
    Oneplus,
}

/// The model: a multigrid writer and readers (reference-implementation.md §2.3–2.4 shape) or
/// a DNC. Fields of the other kind are rejected.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `multigrid` (default) or `dnc`.
    #[serde(default, skip_serializing_if = "is_multigrid")]
    pub kind: ModelKind,
    /// Multigrid: levels of each writer layer, coarsest 3×3 first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<Vec<usize>>,
    /// Multigrid: channels of each writer layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<usize>>,
    /// Multigrid: channels of the reader's narrowing layers (per level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_channels: Option<usize>,
    /// Multigrid: keep only each layer's finest level (Ablated MG, ConvLSTM-deep/thick).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finest_only: bool,
    /// Multigrid, `finest_only`: widths of the reader's narrowing layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail_widths: Vec<usize>,
    /// DNC: LSTM controller width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<usize>,
    /// DNC: memory slots N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_slots: Option<usize>,
    /// DNC: word size W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_size: Option<usize>,
    /// DNC: read heads R (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_heads: Option<usize>,
    /// DNC: write heads K (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_heads: Option<usize>,
    /// DNC: clamp of the controller output and state and of the output logits; 0 turns it
    /// off (default 20, as DeepMind's training script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
    /// DNC: `softplus` (default, DeepMind's code) or `oneplus` (Nature paper) key strengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<StrengthKind>,
}

fn is_multigrid(kind: &ModelKind) -> bool {
    *kind == ModelKind::Multigrid
}

/// Optimizer choice.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// TensorFlow's RMSProp as the reference uses it (ε inside the square root, mean square
    /// initialised to 1, no momentum).
    TfRmsprop,
    /// Adam (β = 0.9, 0.999, ε = 1e-8).
    Adam,
}

/// How the loss is reduced over windows, batch and pixels.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LossReduction {
    /// Summed over every pixel, step and sample (reference).
    Sum,
    /// Averaged.
    Mean,
}

/// Training settings.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Episodes per batch.
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// Time steps per truncated-BPTT window.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// Total training time steps (windows × window length); `--steps` overrides it.
    #[serde(default = "defaults::time_steps")]
    pub time_steps: u64,
    /// Seed of the model initialisation and the training episodes.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// `tf-rmsprop` (reference) or `adam`.
    #[serde(default = "defaults::optimizer")]
    pub optimizer: OptimizerKind,
    /// Learning rate at step 0.
    #[serde(default = "defaults::lr_start")]
    pub lr_start: f64,
    /// Learning rate after `lr_decay_steps` time steps (linear in between).
    #[serde(default = "defaults::lr_end")]
    pub lr_end: f64,
    /// Time steps of the linear decay.
    #[serde(default = "defaults::lr_decay_steps")]
    pub lr_decay_steps: u64,
    /// Global-norm gradient clipping threshold.
    #[serde(default = "defaults::clip_norm")]
    pub clip_norm: f64,
    /// RMSProp decay ρ.
    #[serde(default = "defaults::rmsprop_decay")]
    pub rmsprop_decay: f64,
    /// RMSProp ε, inside the square root.
    #[serde(default = "defaults::rmsprop_epsilon")]
    pub rmsprop_epsilon: f64,
    /// `sum` (reference) or `mean`.
    #[serde(default = "defaults::loss")]
    pub loss: LossReduction,
    /// Checkpoint every this many time steps.
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: u64,
    /// Write a metrics line every this many time steps.
    #[serde(default = "defaults::log_every")]
    pub log_every: u64,
}

/// Evaluation settings.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Test episodes (the paper uses 5000); `--episodes` overrides it.
    #[serde(default = "defaults::episodes")]
    pub episodes: usize,
    /// Seed of the fixed test set (distinct from training seeds).
    #[serde(default = "defaults::test_seed")]
    pub seed: u64,
    /// Episodes evaluated in parallel.
    #[serde(default = "defaults::eval_batch")]
    pub batch: usize,
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
    pub fn batch() -> usize {
        32
    }
    pub fn window() -> usize {
        20
    }
    pub fn time_steps() -> u64 {
        2_000_000
    }
    pub fn seed() -> u64 {
        1
    }
    pub fn optimizer() -> OptimizerKind {
        OptimizerKind::TfRmsprop
    }
    pub fn lr_start() -> f64 {
        1e-3
    }
    pub fn lr_end() -> f64 {
        1e-4
    }
    pub fn lr_decay_steps() -> u64 {
        1_000_000
    }
    pub fn clip_norm() -> f64 {
        1e4
    }
    pub fn rmsprop_decay() -> f64 {
        0.99
    }
    pub fn rmsprop_epsilon() -> f64 {
        0.1
    }
    pub fn loss() -> LossReduction {
        LossReduction::Sum
    }
    pub fn checkpoint_every() -> u64 {
        1000
    }
    pub fn log_every() -> u64 {
        1000
    }
    pub fn episodes() -> usize {
        TEST_SET_SIZE
    }
    pub fn test_seed() -> u64 {
        TEST_SEED
    }
    pub fn eval_batch() -> usize {
        32
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str("").expect("every training field has a default")
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        toml::from_str("").expect("every evaluation field has a default")
    }
}

impl ExperimentConfig {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in config {}", path.display()))
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// The resolved config as TOML (every field, defaults filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// The world of one reader's query size, for training (`lookahead` as configured).
    pub fn mapping(&self, query_size: usize) -> MappingConfig {
        let w = &self.world;
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

    /// The multigrid widths (the fields `validate` found present).
    pub fn widths(&self) -> MappingWidths {
        let m = &self.model;
        MappingWidths::new(
            m.levels.clone().unwrap_or_default(),
            m.channels.clone().unwrap_or_default(),
            m.tail_channels.unwrap_or_default(),
        )
        .with_finest_only(m.finest_only)
        .with_tail_widths(m.tail_widths.clone())
    }

    /// The DNC configuration (defaults filled in).
    pub fn dnc(&self) -> DncLocalizerConfig {
        let (m, w) = (&self.model, &self.world);
        let input = DncLocalizerConfig::input_size(w.obs_size, &w.query_sizes);
        let output = DncLocalizerConfig::output_size(w.query_sizes.len(), w.mask_size);
        let dnc = DncConfig::new(
            input,
            output,
            m.controller.unwrap_or_default(),
            m.memory_slots.unwrap_or_default(),
            m.word_size.unwrap_or_default(),
        )
        .with_clip_value(m.clip_value.unwrap_or(20.0));
        // Unset fields keep `DncConfig`'s defaults: 4 read heads, 1 write head, softplus.
        let dnc = match m.read_heads {
            Some(r) => dnc.with_read_heads(r),
            None => dnc,
        };
        let dnc = match m.write_heads {
            Some(k) => dnc.with_write_heads(k),
            None => dnc,
        };
        let dnc = match m.strength {
            Some(StrengthKind::Softplus) => dnc.with_strength(StrengthOp::Softplus),
            Some(StrengthKind::Oneplus) => dnc.with_strength(StrengthOp::Oneplus),
            None => dnc,
        };
        DncLocalizerConfig::new(dnc, w.obs_size, w.query_sizes.clone(), w.mask_size)
    }

    /// The model.
    pub fn model(&self) -> LocalizerConfig {
        match self.model.kind {
            ModelKind::Multigrid => LocalizerConfig::Multigrid(MappingModelConfig::from_widths(
                &self.widths(),
                self.world.obs_size,
                &self.world.query_sizes,
            )),
            ModelKind::Dnc => LocalizerConfig::Dnc(self.dnc()),
        }
    }

    /// Checks the `[model]` table: the fields of its kind present, the other kind's absent.
    fn validate_model(&self) -> anyhow::Result<()> {
        let m = &self.model;
        let multigrid = [
            ("levels", m.levels.is_some()),
            ("channels", m.channels.is_some()),
            ("tail_channels", m.tail_channels.is_some()),
            ("finest_only", m.finest_only),
            ("tail_widths", !m.tail_widths.is_empty()),
        ];
        let dnc = [
            ("controller", m.controller.is_some()),
            ("memory_slots", m.memory_slots.is_some()),
            ("word_size", m.word_size.is_some()),
            ("read_heads", m.read_heads.is_some()),
            ("write_heads", m.write_heads.is_some()),
            ("clip_value", m.clip_value.is_some()),
            ("strength", m.strength.is_some()),
        ];
        let (kind, own, other) = match m.kind {
            ModelKind::Multigrid => ("multigrid", &multigrid[..3], &dnc[..]),
            ModelKind::Dnc => ("dnc", &dnc[..3], &multigrid[..]),
        };
        if let Some((field, _)) = other.iter().find(|(_, present)| *present) {
            bail!("model.{field}: not a field of a {kind} model (model.kind = \"{kind}\")");
        }
        if let Some((field, _)) = own.iter().find(|(_, present)| !*present) {
            bail!("model.{field}: missing; a {kind} model needs it");
        }
        let w = &self.world;
        match m.kind {
            ModelKind::Multigrid => {
                let widths = self.widths();
                widths
                    .validate()
                    .map_err(|e| anyhow::anyhow!("model: {e}"))?;
                if widths.output_size() != w.mask_size {
                    bail!(
                        "world.mask_size: {}; the model's finest grid is {}×{} ({} levels), expected mask_size = {}",
                        w.mask_size,
                        widths.output_size(),
                        widths.output_size(),
                        widths.levels.last().copied().unwrap_or(0),
                        widths.output_size()
                    );
                }
            }
            ModelKind::Dnc => {
                let sizes = [
                    ("controller", m.controller),
                    ("memory_slots", m.memory_slots),
                    ("word_size", m.word_size),
                    ("read_heads", m.read_heads),
                    ("write_heads", m.write_heads),
                ];
                for (field, value) in sizes {
                    if value == Some(0) {
                        bail!("model.{field}: 0; expected at least 1");
                    }
                }
                if let Some(c) = m.clip_value
                    && !(c >= 0.0 && c.is_finite())
                {
                    bail!("model.clip_value: {c}; expected a number >= 0 (0 turns clamping off)");
                }
                self.dnc()
                    .validate()
                    .map_err(|e| anyhow::anyhow!("model: {e}"))?;
            }
        }
        Ok(())
    }

    /// Checks every value; the error names the field and what was expected.
    pub fn validate(&self) -> anyhow::Result<()> {
        let w = &self.world;
        if w.query_sizes.is_empty() {
            bail!("world.query_sizes: empty; expected at least one query size (e.g. [3])");
        }
        for (field, side) in std::iter::once(("world.obs_size", w.obs_size))
            .chain(w.query_sizes.iter().map(|&q| ("world.query_sizes", q)))
        {
            if side == 0 || side % 3 != 0 || side % 2 == 0 {
                bail!("{field}: {side}; expected an odd multiple of 3 (3 or 9)");
            }
        }
        for &q in &w.query_sizes {
            self.mapping(q)
                .validate()
                .map_err(|e| anyhow::anyhow!("world: {e}"))?;
        }
        self.validate_model()?;
        let t = &self.train;
        let positive = [
            ("train.batch", t.batch as f64),
            ("train.window", t.window as f64),
            ("train.lr_start", t.lr_start),
            ("train.clip_norm", t.clip_norm),
            ("train.rmsprop_epsilon", t.rmsprop_epsilon),
            ("train.checkpoint_every", t.checkpoint_every as f64),
            ("train.log_every", t.log_every as f64),
            ("eval.episodes", self.eval.episodes as f64),
            ("eval.batch", self.eval.batch as f64),
        ];
        for (field, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{field}: {v}; expected a positive number");
            }
        }
        if !(t.lr_end >= 0.0 && t.lr_end.is_finite()) {
            bail!("train.lr_end: {}; expected a number >= 0", t.lr_end);
        }
        if !(0.0..1.0).contains(&t.rmsprop_decay) {
            bail!(
                "train.rmsprop_decay: {}; expected a number in [0, 1)",
                t.rmsprop_decay
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[world]\nmap_size = 25\n[model]\nlevels = [2, 2, 3, 3, 4, 4, 5]\n\
                           channels = [4, 4, 8, 8, 16, 16, 16]\ntail_channels = 16\n";

    #[test]
    fn minimal_config_is_the_reference() {
        let config = ExperimentConfig::parse(MINIMAL).unwrap();
        assert_eq!(config.model().num_params(), 650_225);
        assert_eq!(config.mapping(3), MappingConfig::default());
        assert_eq!(config.train.batch, 32);
        // The resolved TOML round-trips.
        assert_eq!(ExperimentConfig::parse(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |text: String| format!("{:#}", ExperimentConfig::parse(&text).unwrap_err());
        assert!(err(format!("{MINIMAL}[train]\nbatch = 0\n")).contains("train.batch: 0"));
        assert!(err(format!("{MINIMAL}[train]\nbacth = 4\n")).contains("unknown field `bacth`"));
        assert!(
            err(MINIMAL.replace("map_size = 25", "map_size = 25\nquery_sizes = [27]"))
                .contains("query_size: 27; expected an odd size between 1 and map_size 25")
        );
        assert!(err(MINIMAL.replace("map_size = 25", "map_size = 3")).contains("map_size"));
        assert!(
            err(MINIMAL.replace("map_size = 25", "map_size = 25\nmask_size = 96"))
                .contains("world.mask_size: 96; the model's finest grid is 48×48")
        );
        assert!(err(MINIMAL.replace("tail_channels = 16", "")).contains("tail_channels"));
    }

    /// Every shipped config loads, and the reference config is the reference model.
    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mapping");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = ExperimentConfig::load(&path).unwrap();
                assert!(config.model().num_params() > 0);
                count += 1;
            }
        }
        assert!(count >= 9, "only {count} configs in {}", dir.display());
        // Table 1's baselines: (parameters, memory cells).
        for (name, counts) in [
            ("ablated-mg", (1_400_753, 265_536)),
            ("convlstm-deep", (376_181, 626_688)),
            ("convlstm-thick", (1_400_753, 626_688)),
            ("dnc-spiral-15", (751_650, 8_000)),
            ("dnc-spiral-25", (679_587, 8_000)),
        ] {
            let model = ExperimentConfig::load(&dir.join(format!("{name}.toml")))
                .unwrap()
                .model();
            assert_eq!((model.num_params(), model.memory_cells()), counts, "{name}");
        }
        let reference = ExperimentConfig::load(&dir.join("reference.toml")).unwrap();
        assert_eq!(reference.model().num_params(), 650_225);
        assert_eq!(reference.model().memory_cells(), 76_968);
        assert_eq!(reference.mapping(3), MappingConfig::default());
    }
}
