//! The `[model]` table every task reads: `kind = "multigrid" | "dnc"` and the fields of
//! each kind. A task checks the fields of the kind it builds and rejects the other kind's.

use anyhow::bail;
use mg_layers::NormMode;
use mg_models::{DncConfig, MemoryMeshConfig, StrengthOp};
use serde::{Deserialize, Serialize};

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
    /// Multigrid, algorithmic tasks: reader layers on the full pyramid before it narrows
    /// (reference MNIST reader: 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_same: Option<usize>,
    /// Multigrid, algorithmic tasks: batch normalisation after every LSTM output and conv,
    /// `none` (default) or `batch-pooled` (the reference MNIST model), `batch-per-step`,
    /// `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormChoice>,
    /// Multigrid, bAbI: channels of the conv layers that scale the writer's last pyramid
    /// back to 1×1, one level fewer each (a last layer to the vocabulary follows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_channels: Option<Vec<usize>>,
    /// Multigrid, bAbI: width of a learned word embedding; 0 or unset feeds one-hot words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<usize>,
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

/// Largest value of a size field, so that counts and estimates stay far from overflow and a
/// typo (`channels = 4e9`) is refused before anything is allocated.
pub fn check_bound(field: &str, value: usize, max: usize) -> anyhow::Result<()> {
    if value > max {
        bail!("{field}: {value}; expected at most {max}");
    }
    Ok(())
}

/// Field names with whether each is set.
type Fields<const N: usize> = [(&'static str, bool); N];

impl ModelConfig {
    /// The multigrid fields and the DNC fields, each with whether it is set.
    fn fields(&self) -> (Fields<7>, Fields<7>) {
        (
            [
                ("levels", self.levels.is_some()),
                ("channels", self.channels.is_some()),
                ("tail_channels", self.tail_channels.is_some()),
                ("finest_only", self.finest_only),
                ("tail_widths", !self.tail_widths.is_empty()),
                ("tail_same", self.tail_same.is_some()),
                ("norm", self.norm.is_some()),
            ],
            [
                ("controller", self.controller.is_some()),
                ("memory_slots", self.memory_slots.is_some()),
                ("word_size", self.word_size.is_some()),
                ("read_heads", self.read_heads.is_some()),
                ("write_heads", self.write_heads.is_some()),
                ("clip_value", self.clip_value.is_some()),
                ("strength", self.strength.is_some()),
            ],
        )
    }

    /// Checks that the fields of the table's kind are present (the first `required` of the
    /// multigrid ones) and the other kind's absent.
    pub fn check_fields(&self, required_multigrid: usize) -> anyhow::Result<()> {
        if self.head_channels.is_some() || self.embedding.is_some() {
            bail!("model.head_channels / embedding: fields of bAbI models (task.kind = \"babi\")");
        }
        self.check_bounds()?;
        let (multigrid, dnc) = self.fields();
        let (kind, own, other) = match self.kind {
            ModelKind::Multigrid => ("multigrid", &multigrid[..required_multigrid], &dnc[..]),
            ModelKind::Dnc => ("dnc", &dnc[..3], &multigrid[..]),
        };
        if let Some((field, _)) = other.iter().find(|(_, present)| *present) {
            bail!("model.{field}: not a field of a {kind} model (model.kind = \"{kind}\")");
        }
        if let Some((field, _)) = own.iter().find(|(_, present)| !*present) {
            bail!("model.{field}: missing; a {kind} model needs it");
        }
        Ok(())
    }

    /// [`Self::check_fields`] for a bAbI model: a multigrid model needs `levels`, `channels`
    /// and `head_channels` and may have `embedding`; a DNC has neither.
    pub fn check_qa_fields(&self) -> anyhow::Result<()> {
        let mut rest = self.clone();
        let (head, embedding) = (rest.head_channels.take(), rest.embedding.take());
        rest.check_fields(2)?;
        for field in ["tail_channels", "tail_same", "norm"] {
            let set = match field {
                "tail_channels" => self.tail_channels.is_some(),
                "tail_same" => self.tail_same.is_some(),
                _ => self.norm.is_some(),
            };
            if set {
                bail!("model.{field}: not a field of bAbI models (use head_channels)");
            }
        }
        if self.finest_only || !self.tail_widths.is_empty() {
            bail!("model.finest_only / tail_widths: bAbI models have no finest-only form");
        }
        match self.kind {
            ModelKind::Multigrid => {
                let head = head.ok_or_else(|| {
                    anyhow::anyhow!("model.head_channels: missing; a multigrid bAbI model needs it")
                })?;
                check_bound("model.head_channels (entries)", head.len(), 64)?;
                head.iter()
                    .try_for_each(|&v| check_bound("model.head_channels", v, 4096))?;
                check_bound("model.embedding", embedding.unwrap_or(0), 4096)?;
            }
            ModelKind::Dnc if head.is_some() || embedding.is_some() => {
                bail!(
                    "model.head_channels / embedding: not fields of a dnc model (model.kind = \"dnc\")"
                )
            }
            ModelKind::Dnc => {}
        }
        Ok(())
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
        list("levels", self.levels.as_deref().unwrap_or_default(), 10)?;
        list(
            "channels",
            self.channels.as_deref().unwrap_or_default(),
            4096,
        )?;
        list("tail_widths", &self.tail_widths, 65_536)?;
        let sizes = [
            ("tail_same", self.tail_same, 64),
            ("tail_channels", self.tail_channels, 4096),
            ("controller", self.controller, 65_536),
            ("memory_slots", self.memory_slots, 1 << 20),
            ("word_size", self.word_size, 65_536),
            ("read_heads", self.read_heads, 64),
            ("write_heads", self.write_heads, 64),
        ];
        for (field, value, max) in sizes {
            check_bound(&format!("model.{field}"), value.unwrap_or(0), max)?;
        }
        Ok(())
    }

    /// The DNC of this table for `input` and `output` widths (unset fields keep
    /// `DncConfig`'s defaults: 4 read heads, 1 write head, softplus; clip 20), checked.
    pub fn dnc(&self, input: usize, output: usize) -> anyhow::Result<DncConfig> {
        let sizes = [
            ("controller", self.controller),
            ("memory_slots", self.memory_slots),
            ("word_size", self.word_size),
            ("read_heads", self.read_heads),
            ("write_heads", self.write_heads),
        ];
        for (field, value) in sizes {
            if value == Some(0) {
                bail!("model.{field}: 0; expected at least 1");
            }
        }
        if let Some(c) = self.clip_value
            && !(c >= 0.0 && c.is_finite())
        {
            bail!("model.clip_value: {c}; expected a number >= 0 (0 turns clamping off)");
        }
        let dnc = self.dnc_unchecked(input, output);
        dnc.validate().map_err(|e| anyhow::anyhow!("model: {e}"))?;
        Ok(dnc)
    }

    /// As [`Self::dnc`], without checks (missing sizes are 0).
    pub fn dnc_unchecked(&self, input: usize, output: usize) -> DncConfig {
        let dnc = DncConfig::new(
            input,
            output,
            self.controller.unwrap_or_default(),
            self.memory_slots.unwrap_or_default(),
            self.word_size.unwrap_or_default(),
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
