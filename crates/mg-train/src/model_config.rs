//! The `[model]` table of the mapping, algorithmic and bAbI tasks: a tagged table,
//! `kind = "multigrid"` (the default) or `kind = "dnc"`, holding that kind's fields only. A
//! field of the other kind, an unknown field or a missing required one is an error naming
//! the field; each task checks what its own models need of the kind it builds.

use anyhow::bail;
use mg_layers::NormMode;
use mg_models::{DncConfig, MemoryMeshConfig, NetConfig, StrengthOp};

use crate::harness::ForwardPath;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The model: a multigrid writer and readers (reference-implementation.md §2.3–2.4 shape) or
/// a DNC.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// A multigrid writer and readers.
    Multigrid(MultigridSettings),
    /// A DNC.
    Dnc(DncSettings),
}

/// Batch normalisation of a multigrid model (`mg_layers::NormMode`, or none).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NormChoice {
    /// No batch norm.
    None,
    /// Batch statistics pooled over the window's time steps and batch (reference MNIST).
    BatchPooled,
    /// Batch statistics per time step.
    BatchPerStep,
    /// Running statistics at evaluation.
    Running,
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

/// `[model]` with `kind = "multigrid"`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MultigridSettings {
    /// Levels of each writer layer, coarsest 3×3 first.
    pub levels: Vec<usize>,
    /// Channels of each writer layer.
    pub channels: Vec<usize>,
    /// Channels of the reader's narrowing layers (per level); mapping and algorithmic tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_channels: Option<usize>,
    /// Keep only each layer's finest level (Ablated MG, ConvLSTM-deep/thick); mapping.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finest_only: bool,
    /// With `finest_only`: widths of the reader's narrowing layers; mapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail_widths: Vec<usize>,
    /// Reader layers on the full pyramid before it narrows (reference MNIST reader: 2);
    /// algorithmic tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_same: Option<usize>,
    /// Batch normalisation after every LSTM output and conv, `none` (default) or
    /// `batch-pooled` (the reference MNIST model), `batch-per-step`, `running`; algorithmic
    /// tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormChoice>,
    /// Channels of the conv layers that scale the writer's last pyramid back to 1×1, one
    /// level fewer each (a last layer to the vocabulary follows); bAbI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_channels: Option<Vec<usize>>,
    /// Width of a learned word embedding; 0 or unset feeds one-hot words; bAbI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<usize>,
}

/// `[model]` with `kind = "dnc"`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DncSettings {
    /// LSTM controller width.
    pub controller: usize,
    /// Memory slots N.
    pub memory_slots: usize,
    /// Word size W.
    pub word_size: usize,
    /// Read heads R (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_heads: Option<usize>,
    /// Write heads K (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_heads: Option<usize>,
    /// Clamp of the controller output and state and of the output logits; 0 turns it off
    /// (default 20, as DeepMind's training script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_value: Option<f64>,
    /// `softplus` (default, DeepMind's code) or `oneplus` (Nature paper) key strengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<StrengthKind>,
}

/// The fields of each kind, and the ones it cannot do without.
const MULTIGRID_FIELDS: [&str; 9] = [
    "levels",
    "channels",
    "tail_channels",
    "finest_only",
    "tail_widths",
    "tail_same",
    "norm",
    "head_channels",
    "embedding",
];
const MULTIGRID_REQUIRED: [&str; 2] = ["levels", "channels"];
const DNC_FIELDS: [&str; 7] = [
    "controller",
    "memory_slots",
    "word_size",
    "read_heads",
    "write_heads",
    "clip_value",
    "strength",
];
const DNC_REQUIRED: [&str; 3] = ["controller", "memory_slots", "word_size"];

impl<'de> Deserialize<'de> for ModelConfig {
    /// Reads `kind` (default `multigrid`), checks every other key against that kind's fields
    /// (naming the field and the kind it belongs to), then reads the kind's table.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        let kind = match table.remove("kind") {
            None => "multigrid".to_string(),
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "model.kind: {other}; expected \"multigrid\" or \"dnc\""
                )));
            }
        };
        let (own, required, other): (&[&str], &[&str], &[&str]) = match kind.as_str() {
            "multigrid" => (&MULTIGRID_FIELDS, &MULTIGRID_REQUIRED, &DNC_FIELDS),
            "dnc" => (&DNC_FIELDS, &DNC_REQUIRED, &MULTIGRID_FIELDS),
            _ => {
                return Err(D::Error::custom(format!(
                    "model.kind: unknown variant `{kind}`; expected \"multigrid\" or \"dnc\""
                )));
            }
        };
        for key in table.keys() {
            if other.contains(&key.as_str()) {
                return Err(D::Error::custom(format!(
                    "model.{key}: not a field of a {kind} model (model.kind = \"{kind}\")"
                )));
            }
            if !own.contains(&key.as_str()) {
                return Err(D::Error::custom(format!(
                    "model.{key}: unknown field; a {kind} model has {}",
                    own.join(", ")
                )));
            }
        }
        if let Some(field) = required.iter().find(|f| !table.contains_key(**f)) {
            return Err(D::Error::custom(format!(
                "model.{field}: missing; a {kind} model needs it"
            )));
        }
        let table = toml::Value::Table(table);
        let read = if kind == "dnc" {
            table.try_into().map(Self::Dnc)
        } else {
            table.try_into().map(Self::Multigrid)
        };
        read.map_err(|e| D::Error::custom(format!("model: {}", e.message())))
    }
}

/// Largest value of a size field, so that counts and estimates stay far from overflow and a
/// typo (`channels = 4e9`) is refused before anything is allocated.
pub fn check_bound(field: &str, value: usize, max: usize) -> anyhow::Result<()> {
    if value > max {
        bail!("{field}: {value}; expected at most {max}");
    }
    Ok(())
}

impl ModelConfig {
    /// The multigrid settings, or an error saying that `task` has a multigrid model only.
    pub fn multigrid(&self, task: &str) -> anyhow::Result<&MultigridSettings> {
        match self {
            Self::Multigrid(m) => Ok(m),
            Self::Dnc(_) => bail!(
                "model.kind: the {task} has a multigrid model only; expected kind = \"multigrid\""
            ),
        }
    }

    /// The DNC settings, or an error saying that `task` has a DNC model only.
    pub fn dnc(&self, task: &str) -> anyhow::Result<&DncSettings> {
        match self {
            Self::Dnc(d) => Ok(d),
            Self::Multigrid(_) => {
                bail!("model.kind: the {task} has a DNC model only; expected kind = \"dnc\"")
            }
        }
    }
}

impl MultigridSettings {
    /// The checks of a mapping or algorithmic model: the sizes within their bounds,
    /// `tail_channels` present, bAbI's `head_channels` and `embedding` refused (a bAbI model is
    /// checked by [`Self::check_qa`]).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.head_channels.is_some() || self.embedding.is_some() {
            bail!("model.head_channels / embedding: fields of bAbI models (task.kind = \"babi\")");
        }
        if self.tail_channels.is_none() {
            bail!("model.tail_channels: missing; a multigrid model of this task needs it");
        }
        self.check_bounds()
    }

    /// The checks of a bAbI model: `head_channels` required, no reader fields.
    pub fn check_qa(&self) -> anyhow::Result<()> {
        for (field, set) in [
            ("tail_channels", self.tail_channels.is_some()),
            ("tail_same", self.tail_same.is_some()),
            ("norm", self.norm.is_some()),
        ] {
            if set {
                bail!("model.{field}: not a field of bAbI models (use head_channels)");
            }
        }
        if self.finest_only || !self.tail_widths.is_empty() {
            bail!("model.finest_only / tail_widths: bAbI models have no finest-only form");
        }
        let head = self.head_channels.as_deref().ok_or_else(|| {
            anyhow::anyhow!("model.head_channels: missing; a multigrid bAbI model needs it")
        })?;
        check_bound("model.head_channels (entries)", head.len(), 64)?;
        head.iter()
            .try_for_each(|&v| check_bound("model.head_channels", v, 4096))?;
        check_bound("model.embedding", self.embedding.unwrap_or(0), 4096)?;
        self.check_bounds()
    }

    /// The batch-norm mode of the `norm` field.
    pub fn norm_mode(&self) -> Option<NormMode> {
        match self.norm? {
            NormChoice::None => None,
            NormChoice::BatchPooled => Some(NormMode::BatchPooled),
            NormChoice::BatchPerStep => Some(NormMode::BatchPerStep),
            NormChoice::Running => Some(NormMode::Running),
        }
    }

    /// Every size within its bound.
    fn check_bounds(&self) -> anyhow::Result<()> {
        let list = |field: &str, values: &[usize], max: usize| -> anyhow::Result<()> {
            check_bound(&format!("model.{field} (entries)"), values.len(), 256)?;
            values
                .iter()
                .try_for_each(|&v| check_bound(&format!("model.{field}"), v, max))
        };
        list("levels", &self.levels, 10)?;
        list("channels", &self.channels, 4096)?;
        list("tail_widths", &self.tail_widths, 65_536)?;
        check_bound("model.tail_same", self.tail_same.unwrap_or(0), 64)?;
        check_bound("model.tail_channels", self.tail_channels.unwrap_or(0), 4096)
    }
}

impl DncSettings {
    /// The DNC of this table for `input` and `output` widths (unset fields keep
    /// `DncConfig`'s defaults: 4 read heads, 1 write head, softplus; clip 20), checked.
    pub fn dnc(&self, input: usize, output: usize) -> anyhow::Result<DncConfig> {
        let sizes = [
            ("controller", Some(self.controller), 65_536),
            ("memory_slots", Some(self.memory_slots), 1 << 20),
            ("word_size", Some(self.word_size), 65_536),
            ("read_heads", self.read_heads, 64),
            ("write_heads", self.write_heads, 64),
        ];
        for (field, value, max) in sizes {
            if value == Some(0) {
                bail!("model.{field}: 0; expected at least 1");
            }
            check_bound(&format!("model.{field}"), value.unwrap_or(0), max)?;
        }
        if let Some(c) = self.clip_value
            && !(c >= 0.0 && c.is_finite())
        {
            bail!("model.clip_value: {c}; expected a number >= 0 (0 turns clamping off)");
        }
        let dnc = self.build(input, output);
        dnc.validate().map_err(|e| anyhow::anyhow!("model: {e}"))?;
        Ok(dnc)
    }

    /// The DNC, unchecked.
    fn build(&self, input: usize, output: usize) -> DncConfig {
        let dnc = DncConfig::new(
            input,
            output,
            self.controller,
            self.memory_slots,
            self.word_size,
        )
        .with_clip_value(self.clip_value.unwrap_or(20.0));
        let dnc = match self.read_heads {
            Some(r) => dnc.with_read_heads(r),
            None => dnc,
        };
        let dnc = match self.write_heads {
            Some(k) => dnc.with_write_heads(k),
            None => dnc,
        };
        match self.strength {
            Some(StrengthKind::Softplus) => dnc.with_strength(StrengthOp::Softplus),
            Some(StrengthKind::Oneplus) => dnc.with_strength(StrengthOp::Oneplus),
            None => dnc,
        }
    }
}

/// The forward paths of a model of either kind: a multigrid memory has the window and the step
/// path (the window path first), a DNC runs step by step inside its one window path.
pub fn paths_of<M, D>(model: &NetConfig<M, D>) -> &'static [ForwardPath] {
    match model {
        NetConfig::Multigrid(_) => &[ForwardPath::Window, ForwardPath::Step],
        NetConfig::Dnc(_) => &[ForwardPath::Window],
    }
}

/// Floats a DNC's autodiff graph keeps per sequence and time step: its link matrices (about
/// 6 per element, measured about 4 on Flex), memory and controller.
pub fn dnc_floats_per_step(c: &DncConfig) -> f64 {
    let n = c.memory_slots as f64;
    6.0 * c.write_heads as f64 * n * n
        + 64.0 * n * c.word_size as f64
        + 16.0 * (c.controller_size + c.output_size) as f64
}

/// `mg-train info` lines and JSON fields of a DNC.
pub fn describe_dnc(
    c: &DncConfig,
    lines: &mut Vec<String>,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    json.insert(
        "dnc".into(),
        serde_json::json!({
            "input_size": c.input_size,
            "output_size": c.output_size,
            "controller": c.controller_size,
            "memory_slots": c.memory_slots,
            "word_size": c.word_size,
            "read_heads": c.read_heads,
            "write_heads": c.write_heads,
            "interface_size": c.interface_size(),
            "clip_value": c.clip_value,
        }),
    );
    lines.push(format!(
        "  DNC: controller LSTM {}, memory {} × {}, {} read heads, {} write heads, \
         interface {}, input {}, output {}",
        c.controller_size,
        c.memory_slots,
        c.word_size,
        c.read_heads,
        c.write_heads,
        c.interface_size(),
        c.input_size,
        c.output_size
    ));
}

/// Describes a writer (encoder) layer by layer for `info`.
pub fn describe_writer(
    role: &str,
    writer: &MemoryMeshConfig,
    lines: &mut Vec<String>,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    let layers: Vec<_> = writer
        .stack
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({"first_level": l.output_levels.first, "levels": l.output_levels.count,
                "channels": l.d_hidden, "params": l.num_params(), "memory": l.memory_cells()})
        })
        .collect();
    json.insert(
        "writer_params".into(),
        serde_json::json!(writer.num_params()),
    );
    json.insert("writer".into(), serde_json::json!(layers));
    lines.push(format!("  {role}: {} parameters", writer.num_params()));
    let side = |level: usize| 3usize << level;
    for (k, l) in writer.stack.layers.iter().enumerate() {
        let (first, last) = (side(l.output_levels.first), side(l.output_levels.end() - 1));
        lines.push(format!(
            "    W{}: {} levels ({first}×{first} … {last}×{last}) × {} channels, {} params, {} memory",
            k + 1,
            l.output_levels.count,
            l.d_hidden,
            l.num_params(),
            l.memory_cells()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelConfig, String> {
        #[derive(Deserialize)]
        struct Doc {
            model: ModelConfig,
        }
        toml::from_str::<Doc>(&format!("[model]\n{text}"))
            .map(|d| d.model)
            .map_err(|e| e.to_string())
    }

    /// A table without `kind` is a multigrid model; each kind reads its own fields.
    #[test]
    fn each_kind_reads_its_own_fields() {
        let ModelConfig::Multigrid(m) = parse("levels = [1, 2]\nchannels = [4, 4]\n").unwrap()
        else {
            panic!("not multigrid")
        };
        assert_eq!(
            (m.levels, m.channels, m.tail_channels),
            (vec![1, 2], vec![4, 4], None)
        );
        let dnc = "kind = \"dnc\"\ncontroller = 8\nmemory_slots = 6\nword_size = 4\n";
        let ModelConfig::Dnc(d) = parse(&format!("{dnc}strength = \"oneplus\"\n")).unwrap() else {
            panic!("not a DNC")
        };
        assert_eq!((d.controller, d.memory_slots, d.word_size), (8, 6, 4));
        let built = d.dnc(3, 2).unwrap();
        assert_eq!(
            (built.read_heads, built.write_heads, built.clip_value),
            (4, 1, 20.0)
        );
        assert_eq!(built.strength, StrengthOp::Oneplus);
    }

    /// Wrong-kind, unknown and missing fields are errors naming the field and the kind.
    #[test]
    fn wrong_fields_are_named() {
        let cases = [
            (
                "levels = [1]\nchannels = [4]\nmemory_slots = 3\n",
                "model.memory_slots: not a field of a multigrid model",
            ),
            (
                "kind = \"dnc\"\ncontroller = 1\nmemory_slots = 1\nword_size = 1\nlevels = [1]\n",
                "model.levels: not a field of a dnc model",
            ),
            (
                "levels = [1]\nchannels = [4]\nchanels = 3\n",
                "model.chanels: unknown field; a multigrid model has levels, channels",
            ),
            (
                "kind = \"dnc\"\ncontroller = 1\nword_size = 1\n",
                "model.memory_slots: missing; a dnc model needs it",
            ),
            (
                "channels = [4]\n",
                "model.levels: missing; a multigrid model needs it",
            ),
            ("kind = \"transformer\"\n", "unknown variant `transformer`"),
            ("kind = 3\n", "model.kind: 3; expected"),
            (
                "levels = [1]\nchannels = \"4\"\n",
                "model: invalid type: string \"4\"",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    /// The field lists the errors use are the structs' fields, and a table written out reads
    /// back equal, with its kind.
    #[test]
    fn field_lists_match_the_structs_and_tables_round_trip() {
        let multigrid = MultigridSettings {
            levels: vec![1, 2],
            channels: vec![3, 3],
            tail_channels: Some(2),
            finest_only: true,
            tail_widths: vec![4],
            tail_same: Some(1),
            norm: Some(NormChoice::Running),
            head_channels: Some(vec![5]),
            embedding: Some(6),
        };
        let dnc = DncSettings {
            controller: 1,
            memory_slots: 2,
            word_size: 3,
            read_heads: Some(4),
            write_heads: Some(5),
            clip_value: Some(6.0),
            strength: Some(StrengthKind::Softplus),
        };
        for (config, kind, fields) in [
            (
                ModelConfig::Multigrid(multigrid),
                "multigrid",
                &MULTIGRID_FIELDS[..],
            ),
            (ModelConfig::Dnc(dnc), "dnc", &DNC_FIELDS[..]),
        ] {
            let text = toml::to_string(&config).unwrap();
            let table: toml::Table = toml::from_str(&text).unwrap();
            let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
            keys.retain(|k| *k != "kind");
            let mut expected = fields.to_vec();
            keys.sort_unstable();
            expected.sort_unstable();
            assert_eq!(keys, expected);
            assert_eq!(table["kind"].as_str(), Some(kind));
            assert_eq!(parse(&text).unwrap(), config);
        }
    }

    #[test]
    fn a_task_names_the_kind_it_needs() {
        let m = parse("levels = [1]\nchannels = [4]\n").unwrap();
        let e = m.dnc("copy task").unwrap_err().to_string();
        assert!(e.contains("the copy task has a DNC model only"), "{e}");
        assert!(m.multigrid("exploration task").is_ok());
    }
}
