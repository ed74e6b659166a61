//! Experiment config files (TOML): `[task]` and `[model]` belong to the task, `[train]` and
//! `[eval]` to the harness. Every field is documented, unknown fields are rejected, and values
//! are checked once at load time with errors naming the file and the field.

use std::path::Path;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest config file read, bytes: a config is a few KB; anything this big is a wrong path.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Most test sequences an evaluation runs (`eval.sequences`, `--sequences`).
pub const MAX_SEQUENCES: usize = 1 << 26;

/// The seed of every task's fixed test set, distinct from training seeds.
pub const TEST_SEED: u64 = 0x07e5_75e7;

/// One experiment: a task's `[task]` and `[model]` tables and the harness's `[train]` and
/// `[eval]` tables.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "S: Serialize, M: Serialize",
    deserialize = "S: DeserializeOwned, M: DeserializeOwned"
))]
pub struct Experiment<S, M> {
    /// What is learnt: `kind`, the task's name, and the task's own fields.
    pub task: TaskTable<S>,
    /// The model (`kind = "multigrid" | "dnc"`).
    pub model: M,
    /// Training settings.
    #[serde(default)]
    pub train: TrainConfig,
    /// Evaluation settings.
    #[serde(default)]
    pub eval: EvalConfig,
}

/// The `[task]` table: `kind`, which the harness reads to choose the task, and the task's
/// own fields `S` (which it reaches through `Deref`). A task's settings never name `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTable<S> {
    /// The task's name, as `[task] kind` gives it.
    pub kind: String,
    /// The task's own fields.
    pub settings: S,
}

impl<S> std::ops::Deref for TaskTable<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.settings
    }
}

impl<S> std::ops::DerefMut for TaskTable<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.settings
    }
}

impl<S: Serialize> Serialize for TaskTable<S> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        #[derive(Serialize)]
        struct Flat<'a, S> {
            kind: &'a str,
            #[serde(flatten)]
            settings: &'a S,
        }
        Flat {
            kind: &self.kind,
            settings: &self.settings,
        }
        .serialize(serializer)
    }
}

/// Reads `kind` and hands every other field, straight from the config's own deserializer
/// (so that errors keep their place in the file), to `S`.
impl<'de, S: Deserialize<'de>> Deserialize<'de> for TaskTable<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess};

        struct WithoutKind<'a, A> {
            map: A,
            kind: &'a mut Option<String>,
        }

        impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutKind<'_, A> {
            type Error = A::Error;

            fn next_key_seed<K: DeserializeSeed<'de>>(
                &mut self,
                seed: K,
            ) -> Result<Option<K::Value>, A::Error> {
                let mut seed = Some(seed);
                while let Some(key) = self.map.next_key_seed(KeyOrKind(&mut seed))? {
                    if key.is_some() {
                        return Ok(key);
                    }
                    *self.kind = Some(self.map.next_value()?);
                }
                Ok(None)
            }

            fn next_value_seed<V: DeserializeSeed<'de>>(
                &mut self,
                seed: V,
            ) -> Result<V::Value, A::Error> {
                self.map.next_value_seed(seed)
            }
        }

        /// A key for `S`'s seed, read inside the config's own key deserializer so that an
        /// error keeps the key's place; `None` for `kind`, leaving the seed unused.
        struct KeyOrKind<'a, K>(&'a mut Option<K>);

        impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeyOrKind<'_, K> {
            type Value = Option<K::Value>;

            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Option<K::Value>, D::Error> {
                let key = String::deserialize(deserializer)?;
                if key == "kind" {
                    return Ok(None);
                }
                let seed = self.0.take().expect("a key is read at most once per seed");
                seed.deserialize(key.into_deserializer()).map(Some)
            }
        }

        struct Table<S>(std::marker::PhantomData<S>);

        impl<'de, S: Deserialize<'de>> de::Visitor<'de> for Table<S> {
            type Value = TaskTable<S>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [task] table")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TaskTable<S>, A::Error> {
                let mut kind = None;
                let settings =
                    S::deserialize(de::value::MapAccessDeserializer::new(WithoutKind {
                        map,
                        kind: &mut kind,
                    }))?;
                let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
                Ok(TaskTable { kind, settings })
            }
        }

        deserializer.deserialize_map(Table(std::marker::PhantomData))
    }
}

/// Optimizer choice.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// TensorFlow's RMSProp as the multigrid reference uses it (ε = 0.1 inside the square
    /// root, ρ = 0.99, mean square initialised to 1, no momentum).
    TfRmsprop,
    /// The same algorithm with DeepMind's DNC settings (`RMSPropOptimizer(lr, epsilon=1e-10)`:
    /// ρ = 0.9, ε = 1e-10).
    DeepmindRmsprop,
    /// Adam (β = 0.9, 0.999, ε = 1e-8).
    Adam,
}

impl OptimizerKind {
    /// The RMSProp decay ρ and ε used when the config leaves them unset.
    pub fn rmsprop_defaults(self) -> (f64, f64) {
        match self {
            Self::DeepmindRmsprop => (0.9, 1e-10),
            Self::TfRmsprop | Self::Adam => (0.99, 0.1),
        }
    }
}

/// How the loss is reduced over windows, batch and units.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LossReduction {
    /// Summed (the references; a task may divide by its batch size as its reference does).
    Sum,
    /// Averaged over the scored units.
    Mean,
}

/// Which forward path training uses.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PathChoice {
    /// The faster path for the device, as measured (docs/BENCHMARKS.md): the step path on
    /// CPU backends, the window path on GPUs.
    #[default]
    Auto,
    /// Batch the window's input-to-gate work over its time steps.
    Window,
    /// One time step after the other.
    Step,
}

/// Training settings.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Sequences (episodes, stories) per batch.
    #[serde(default = "defaults::batch")]
    pub batch: usize,
    /// Time steps per truncated-BPTT window.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// Total training time steps (windows × window length); `--steps` overrides it.
    #[serde(default = "defaults::time_steps")]
    pub time_steps: u64,
    /// Seed of the model initialisation and the training data.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// `tf-rmsprop` (multigrid reference), `deepmind-rmsprop` (DNC reference) or `adam`.
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
    /// RMSProp decay ρ [default: 0.99, or 0.9 with `deepmind-rmsprop`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmsprop_decay: Option<f64>,
    /// RMSProp ε, inside the square root [default: 0.1, or 1e-10 with `deepmind-rmsprop`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmsprop_epsilon: Option<f64>,
    /// `sum` (references) or `mean`.
    #[serde(default = "defaults::loss")]
    pub loss: LossReduction,
    /// `auto` (the faster path for the device), `window` or `step`.
    #[serde(default)]
    pub path: PathChoice,
    /// Checkpoint every this many time steps.
    #[serde(default = "defaults::checkpoint_every")]
    pub checkpoint_every: u64,
    /// Write a metrics line every this many time steps.
    #[serde(default = "defaults::log_every")]
    pub log_every: u64,
    /// Threads a training window is split over: the batch is cut into this many shards of
    /// consecutive sequences, each shard's forward and backward pass runs on its own thread and
    /// the gradients are summed before the update (the same update as one thread's, up to
    /// rounding). For small models on the CPU, whose ops are too small to split, this is what
    /// keeps several cores busy; tasks that do not support it refuse a value above 1.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
}

impl TrainConfig {
    /// RMSProp's ρ and ε, defaults filled in.
    pub fn rmsprop(&self) -> (f64, f64) {
        let (decay, epsilon) = self.optimizer.rmsprop_defaults();
        (
            self.rmsprop_decay.unwrap_or(decay),
            self.rmsprop_epsilon.unwrap_or(epsilon),
        )
    }
}

/// Evaluation settings.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Test sequences (episodes, stories; the paper uses 5000); `--sequences` overrides it.
    #[serde(default = "defaults::sequences", alias = "episodes")]
    pub sequences: usize,
    /// Seed of the fixed test set (distinct from training seeds).
    #[serde(default = "defaults::test_seed")]
    pub seed: u64,
    /// Sequences evaluated in parallel.
    #[serde(default = "defaults::eval_batch")]
    pub batch: usize,
}

mod defaults {
    use super::*;
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
    pub fn loss() -> LossReduction {
        LossReduction::Sum
    }
    pub fn threads() -> usize {
        1
    }
    pub fn checkpoint_every() -> u64 {
        1000
    }
    pub fn log_every() -> u64 {
        1000
    }
    pub fn sequences() -> usize {
        5000
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

/// The `[task] kind` of a config text, read before the task's own tables are parsed.
pub fn task_kind(text: &str) -> anyhow::Result<String> {
    task_kind_among(text, &[])
}

/// [`task_kind`], with an error that lists `kinds`, the tasks there are, when the config names
/// none.
pub fn task_kind_among(text: &str, kinds: &[&str]) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Peek {
        task: Option<PeekTask>,
        world: Option<toml::Value>,
    }
    #[derive(Deserialize)]
    struct PeekTask {
        kind: Option<String>,
    }
    let peek: Peek = toml::from_str(text)?;
    let expected = match kinds {
        [] => "the task's name, e.g. kind = \"mapping\"".to_string(),
        _ => format!(
            "kind = one of {}",
            kinds
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    match peek.task {
        Some(PeekTask { kind: Some(kind) }) => Ok(kind),
        Some(PeekTask { kind: None }) => bail!("task.kind: missing; expected {expected}"),
        None if peek.world.is_some() => bail!(
            "[world]: configs now name their task: rename [world] to [task] and add \
             kind = \"mapping\" as its first line"
        ),
        None => bail!("[task]: missing; expected a [task] table with {expected}"),
    }
}

/// A config file's experiment and task, with errors naming the file.
pub fn load_config<T: super::Task>(
    path: &Path,
    text: &str,
) -> anyhow::Result<(super::ExperimentOf<T>, T)> {
    (|| -> anyhow::Result<(super::ExperimentOf<T>, T)> {
        let config = super::ExperimentOf::<T>::parse(text)?;
        if config.task.kind != T::KIND {
            bail!(
                "task.kind: `{}`, but this is read as a `{}` config",
                config.task.kind,
                T::KIND
            );
        }
        let task = T::new(&config)?;
        Ok((config, task))
    })()
    .with_context(|| format!("in config {}", path.display()))
}

/// A config text with `KEY=VALUE` overrides applied (`train.seed=2`, `task.mapping_run="runs/m"`):
/// each dotted key names a field, each value is TOML (`2`, `1e-3`, `"text"`, `[1, 2]`) or,
/// where it does not parse as TOML, a string. Missing tables are created; the result is
/// re-serialized, so comments do not survive. Unknown fields are left to the config's own
/// checks.
pub fn apply_overrides(text: &str, overrides: &[String]) -> anyhow::Result<String> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let mut root: toml::Table = toml::from_str(text)?;
    for item in overrides {
        let Some((key, value)) = item.split_once('=') else {
            bail!("--set {item}: expected KEY=VALUE, e.g. train.seed=2");
        };
        let key = key.trim();
        let path: Vec<&str> = key.split('.').map(str::trim).collect();
        if path.iter().any(|p| p.is_empty()) {
            bail!("--set {item}: `{key}` is not a dotted field name such as train.seed");
        }
        let value = value.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let (last, tables) = path.split_last().expect("split yields at least one part");
        let mut table = &mut root;
        for (i, name) in tables.iter().enumerate() {
            let entry = table
                .entry(name.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(inner) = entry.as_table_mut() else {
                bail!(
                    "--set {item}: `{}` is a value, not a table",
                    path[..=i].join(".")
                );
            };
            table = inner;
        }
        if table.get(*last).is_some_and(toml::Value::is_table) {
            bail!("--set {item}: `{key}` is a table; set one of its fields");
        }
        table.insert(last.to_string(), value);
    }
    Ok(toml::to_string(&root)?)
}

/// Reads a config file's text, refusing files that are not small regular files.
pub fn read_config_text(path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading config {}", path.display()))?;
    if !meta.is_file() {
        bail!("config {} is not a regular file", path.display());
    }
    if meta.len() > MAX_CONFIG_BYTES {
        bail!(
            "config {} is {} bytes; a config is at most {MAX_CONFIG_BYTES} bytes",
            path.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))
}

impl<S, M> Experiment<S, M>
where
    S: Serialize + DeserializeOwned,
    M: Serialize + DeserializeOwned,
{
    /// Parses TOML text and checks the harness's tables (the task checks its own).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The resolved config as TOML (every field, defaults filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configs serialise")
    }

    /// Checks `[train]` and `[eval]`; the error names the field and what was expected.
    pub fn validate(&self) -> anyhow::Result<()> {
        let t = &self.train;
        let (decay, epsilon) = t.rmsprop();
        let positive = [
            ("train.batch", t.batch as f64),
            ("train.window", t.window as f64),
            ("train.lr_start", t.lr_start),
            ("train.clip_norm", t.clip_norm),
            ("train.rmsprop_epsilon", epsilon),
            ("train.checkpoint_every", t.checkpoint_every as f64),
            ("train.log_every", t.log_every as f64),
            ("train.threads", t.threads as f64),
            ("eval.sequences", self.eval.sequences as f64),
            ("eval.batch", self.eval.batch as f64),
        ];
        for (field, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{field}: {v}; expected a positive number");
            }
        }
        let bounded = [
            ("train.batch", t.batch, 1 << 20),
            ("train.window", t.window, 1 << 20),
            ("train.threads", t.threads, 64),
            ("eval.batch", self.eval.batch, 1 << 20),
            ("eval.sequences", self.eval.sequences, MAX_SEQUENCES),
        ];
        for (field, v, max) in bounded {
            if v > max {
                bail!("{field}: {v}; expected at most {max}");
            }
        }
        if t.threads > t.batch {
            bail!(
                "train.threads: {}; expected at most train.batch ({}): every thread trains on at \
                 least one sequence",
                t.threads,
                t.batch
            );
        }
        if !(t.lr_end >= 0.0 && t.lr_end.is_finite()) {
            bail!("train.lr_end: {}; expected a number >= 0", t.lr_end);
        }
        if !(0.0..1.0).contains(&decay) {
            bail!("train.rmsprop_decay: {decay}; expected a number in [0, 1)");
        }
        if t.optimizer == OptimizerKind::Adam
            && (t.rmsprop_decay.is_some() || t.rmsprop_epsilon.is_some())
        {
            bail!("train.rmsprop_decay / rmsprop_epsilon: set, but train.optimizer is \"adam\"");
        }
        Ok(())
    }
}

/// The device-dependent default of [`PathChoice::Auto`]: the step path on CPU backends.
pub fn resolve_path(
    choice: PathChoice,
    on_cpu: bool,
    available: &[super::ForwardPath],
) -> super::ForwardPath {
    use super::ForwardPath;
    let wanted = match choice {
        PathChoice::Window => ForwardPath::Window,
        PathChoice::Step => ForwardPath::Step,
        PathChoice::Auto if on_cpu => ForwardPath::Step,
        PathChoice::Auto => ForwardPath::Window,
    };
    if available.contains(&wanted) {
        wanted
    } else {
        available[0]
    }
}

/// Bytes a training window of `batch × window` needs, estimated from the model: weights,
/// gradients and two optimizer slots per parameter, and the autodiff graph of the window.
/// Computed in floating point, so that it never overflows.
pub fn training_bytes(params: usize, floats_per_step: f64, batch: usize, window: usize) -> f64 {
    4.0 * (4.0 * params as f64 + batch as f64 * window as f64 * floats_per_step)
}

/// The memory this process may use: `--max-memory` in GiB, or what the system has available
/// (`MemAvailable` of `/proc/meminfo`); `None` where neither is known.
pub fn memory_limit(max_gib: Option<f64>) -> Option<f64> {
    if let Some(g) = max_gib {
        return Some(g * (1u64 << 30) as f64);
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Refuses a `--max-memory` that is not a positive number of GiB.
pub fn check_max_memory(max_gib: Option<f64>) -> anyhow::Result<()> {
    match max_gib {
        Some(g) if !(g > 0.0 && g.is_finite()) => {
            bail!("--max-memory {g}: expected a positive number of GiB")
        }
        _ => Ok(()),
    }
}

/// Refuses a training window whose estimate exceeds the memory limit, naming both.
pub fn check_memory(
    what: &str,
    params: usize,
    floats_per_step: f64,
    batch: usize,
    window: usize,
    max_gib: Option<f64>,
) -> anyhow::Result<()> {
    check_max_memory(max_gib)?;
    let need = training_bytes(params, floats_per_step, batch, window);
    let gib = |b: f64| b / (1u64 << 30) as f64;
    if let Some(limit) = memory_limit(max_gib)
        && need > limit
    {
        bail!(
            "{what} needs about {:.1} GiB ({params} parameters, batch {batch} × window {window}), \
             more than the {:.1} GiB {}; lower the batch or the window, or raise --max-memory",
            gib(need),
            gib(limit),
            if max_gib.is_some() {
                "--max-memory allows"
            } else {
                "this machine has available"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Experiment, apply_overrides};
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        size: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    }

    type Config = Experiment<Settings, toml::Table>;

    /// `kind` may stand anywhere in `[task]`; the settings never see it, and the resolved
    /// config writes it first and reads back equal.
    #[test]
    fn the_task_table_keeps_kind_apart_and_round_trips() {
        let config = Config::parse("[task]\nsize = 3\nkind = \"grid\"\n[model]\n").unwrap();
        assert_eq!(config.task.kind, "grid");
        assert_eq!(config.task.size, 3);
        assert_eq!(config.task.settings.name, None);
        let text = config.to_toml();
        assert!(
            text.starts_with("[task]\nkind = \"grid\"\nsize = 3\n"),
            "{text}"
        );
        assert_eq!(Config::parse(&text).unwrap(), config);
    }

    /// Errors in the task's own fields keep the field's name and its line in the file.
    #[test]
    fn task_table_errors_name_the_field_and_line() {
        for (text, needles) in [
            (
                "[task]\nkind = \"grid\"\nsize = 3\nsise = 4\n[model]\n",
                &["unknown field `sise`", "line 4"][..],
            ),
            (
                "[task]\nkind = \"grid\"\nsize = \"big\"\n[model]\n",
                &["invalid type", "line 3"][..],
            ),
            (
                "[task]\nkind = \"grid\"\n[model]\n",
                &["missing field `size`"][..],
            ),
            ("[task]\nsize = 3\n[model]\n", &["missing field `kind`"][..]),
            (
                "[task]\nkind = 3\nsize = 3\n[model]\n",
                &["invalid type", "line 2"][..],
            ),
        ] {
            let error = Config::parse(text).unwrap_err().to_string();
            for needle in needles {
                assert!(error.contains(needle), "{text}: {error}");
            }
        }
    }

    fn set(text: &str, items: &[&str]) -> anyhow::Result<toml::Table> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        Ok(toml::from_str(&apply_overrides(text, &items)?)?)
    }

    #[test]
    fn overrides_set_typed_values_and_create_tables() {
        let text = "[task]\nkind = \"copy\"\n[train]\nseed = 1 # a comment\nlr_start = 1e-3\n";
        let t = set(
            text,
            &[
                "train.seed=4",
                "train.lr_start = 5e-4",
                "task.mapping_run=runs/a b",
                "task.name=\"quoted\"",
                "eval.sequences=8",
            ],
        )
        .unwrap();
        assert_eq!(t["train"]["seed"].as_integer(), Some(4));
        assert_eq!(t["train"]["lr_start"].as_float(), Some(5e-4));
        assert_eq!(t["task"]["mapping_run"].as_str(), Some("runs/a b"));
        assert_eq!(t["task"]["name"].as_str(), Some("quoted"));
        assert_eq!(t["task"]["kind"].as_str(), Some("copy"));
        assert_eq!(t["eval"]["sequences"].as_integer(), Some(8));
        assert_eq!(apply_overrides(text, &[]).unwrap(), text);
    }

    #[test]
    fn malformed_overrides_are_refused_with_the_item() {
        let text = "[task]\nkind = \"copy\"\n[train]\nseed = 1\n";
        for (item, needle) in [
            ("train.seed", "expected KEY=VALUE"),
            ("train..seed=1", "not a dotted field name"),
            ("=1", "not a dotted field name"),
            ("train.seed.x=1", "`train.seed` is a value"),
            ("train=1", "`train` is a table"),
        ] {
            let error = set(text, &[item]).unwrap_err().to_string();
            assert!(
                error.contains(item) && error.contains(needle),
                "{item}: {error}"
            );
        }
    }
}
