//! The algorithmic tasks (paper §4.3, Table 2): priority sort ([`Sort`], encoder–decoder) and
//! associative recall ([`Recall`], memory + CNN reader), on random binary vectors or MNIST
//! digits, by a multigrid model or a DNC ([`mg_models::AlgoNet`]).
//!
//! Losses (appendix B.2.2): sigmoid cross-entropy per bit for vectors, softmax cross-entropy
//! for MNIST classes. Errors: for vectors the fraction of wrong bits (logit sign against the
//! target) and of sequences with a wrong bit; for MNIST the classification error and the
//! fraction of sequences with a wrong class.

mod batch;
mod render;

use mg_layers::MgBackend;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use burn::tensor::{Tensor, TensorData};
use mg_data::mnist::{MnistSplit, PixelScale};
use mg_data::recall::RecallConfig;
use mg_data::sort::SortConfig;
use mg_models::{AlgoModelConfig, AlgoNet, AlgoNetConfig, AlgoWidths, Answer};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use batch::{AlgoBatch, Builder, Items, Layout, Problem};

use super::losses::{sigmoid_cross_entropy, softmax_cross_entropy};
use super::scoring::{Answers, ErrorReport, score_test_set};
use crate::harness::task::task_model;
use crate::harness::{
    EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo, Task, WindowLoss,
    shard_ranges,
};
use crate::model_config::{ModelConfig, NormChoice, check_bound, describe_dnc, describe_writer};
use crate::tasks::rows::Host;

/// What the sequences are made of.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ItemKind {
    /// Random binary vectors of `dim` bits.
    #[default]
    Vectors,
    /// MNIST digits; the answers are classes.
    Mnist,
}

/// MNIST pixel values as the network sees them.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PixelKind {
    /// 0–255 (the reference).
    Raw,
    /// Divided by 255.
    Unit,
}

/// Recall: the query index drawn per sequence or shared by a batch (the reference MNIST code).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum QueryDraw {
    /// One query index per sequence.
    Sample,
    /// One query index per batch.
    Batch,
}

/// The `[task]` table of a sort or recall experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlgoSettings {
    /// `vectors` (default) or `mnist`.
    #[serde(default)]
    pub items: ItemKind,
    /// Items per sequence (paper: sort 20 or 50, recall 10 or 20).
    pub len: usize,
    /// Vectors: bits per vector (paper 9; at most 9 for a multigrid model's 3×3 answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// MNIST: sides of the image pyramid a multigrid model reads, `[3, 6, 12]` (reference
    /// code, default) up to `[3, 6, 12, 24, 48]` (paper appendix B.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales: Option<Vec<usize>>,
    /// MNIST: `raw` 0–255 pixels (reference, default) or `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixels: Option<PixelKind>,
    /// MNIST: the folder with the IDX files [default: the data root's `mnist/`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnist_dir: Option<PathBuf>,
    /// Recall: `sample` (default) or `batch` query indices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryDraw>,
}

/// MNIST's training and test splits once loaded, or why they could not be.
type Splits = Result<(Arc<MnistSplit>, Arc<MnistSplit>), String>;

/// The sort task.
pub type Sort = Algorithmic<true>;
/// The recall task.
pub type Recall = Algorithmic<false>;

/// A sort (`SORT = true`) or recall experiment.
#[derive(Debug, Clone)]
pub struct Algorithmic<const SORT: bool> {
    config: ExperimentOf<Algorithmic<SORT>>,
    model: AlgoNetConfig,
    /// The layout and sizes; its MNIST split is filled on first use.
    shape: Builder,
    mnist: Arc<OnceLock<Splits>>,
}

/// The tensors of one batch of whole sequences.
pub struct AlgoWindow<B: MgBackend> {
    items: Vec<Tensor<B, 4>>,
    query: Vec<Tensor<B, 4>>,
    flat: Option<Tensor<B, 2>>,
    /// Bits `[answers·batch, dim]` or one-hot classes `[answers·batch, 10]`.
    targets: Tensor<B, 2>,
    len: usize,
    answers: usize,
    flat_steps: usize,
}

fn the_problem(sort: bool) -> Problem {
    if sort { Problem::Sort } else { Problem::Recall }
}

/// Largest sequence a config may ask for.
const MAX_LEN: usize = 10_000;

impl<const SORT: bool> Algorithmic<SORT> {
    /// The split the sequences of `test` (or training) draw from, loaded on first use.
    fn split(&self, test: bool) -> anyhow::Result<Option<Arc<MnistSplit>>> {
        if self.config.task.items != ItemKind::Mnist {
            return Ok(None);
        }
        let loaded = self
            .mnist
            .get_or_init(|| self.load_mnist().map_err(|e| format!("{e:#}")));
        let (train, test_split) = loaded.as_ref().map_err(|e| anyhow::Error::msg(e.clone()))?;
        let split = if test { test_split } else { train };
        if split.len() < self.config.task.len {
            bail!(
                "task.len: {}; the MNIST {} split has only {} images",
                self.config.task.len,
                if test { "test" } else { "training" },
                split.len()
            );
        }
        Ok(Some(split.clone()))
    }

    fn load_mnist(&self) -> anyhow::Result<(Arc<MnistSplit>, Arc<MnistSplit>)> {
        let dir = match &self.config.task.mnist_dir {
            Some(d) => mg_data::locate::dataset_dir(d, mg_data::locate::MNIST_DIR),
            None => mg_data::locate::data_root(Path::new("")).join(mg_data::locate::MNIST_DIR),
        };
        if !dir.is_dir() {
            bail!(
                "task.mnist_dir: {} is not a folder; point task.mnist_dir or {} at MNIST's IDX \
                 files, or fetch them with `mg-train data download mnist`",
                dir.display(),
                mg_data::locate::DATA_DIR_ENV
            );
        }
        let mnist = mg_data::mnist::load_dir(&dir)
            .with_context(|| format!("task.mnist_dir: loading MNIST from {}", dir.display()))?;
        Ok((Arc::new(mnist.train), Arc::new(mnist.test)))
    }

    /// The builder with its items for the training or test split.
    fn builder(&self, test: bool) -> anyhow::Result<Builder> {
        let mut b = self.shape.clone();
        if let (Some(split), Items::Mnist { split: s, .. }) = (self.split(test)?, &mut b.items) {
            *s = split;
        }
        Ok(b)
    }

    /// Test sequences `range` (the test split for MNIST), as one batch.
    fn test_batch(&self, range: Range<usize>) -> anyhow::Result<AlgoBatch> {
        let batch_index = (range.start / self.config.eval.batch.max(1)) as u64;
        Ok(self.builder(true)?.build(
            self.config.eval.seed,
            range.start as u64,
            range.len(),
            batch_index,
        ))
    }

    /// Answer logits of a batch on the host, `[answers·batch, width]` row-major.
    fn infer<B: MgBackend>(
        &self,
        model: &AlgoNet<B>,
        batch: &AlgoBatch,
        device: &B::Device,
    ) -> anyhow::Result<Vec<f32>> {
        let window = self.window::<B>(batch, 0..self.shape.steps(), device);
        let (logits, ()) = self.forward(model, &window, None, ForwardPath::Window)?;
        Ok(logits.host())
    }

    fn model_of(config: &ExperimentOf<Self>, shape: &Builder) -> anyhow::Result<AlgoNetConfig> {
        let answer = match shape.items {
            Items::Vectors { .. } => Answer::Bits,
            Items::Mnist { .. } => Answer::Classes(10),
        };
        let m = match &config.model {
            ModelConfig::Dnc(m) => {
                return Ok(AlgoNetConfig::Dnc(
                    m.dnc(shape.flat_width(), shape.answer_width())?,
                ));
            }
            ModelConfig::Multigrid(m) => m,
        };
        m.check()?;
        if m.finest_only || !m.tail_widths.is_empty() {
            bail!(
                "model.finest_only / tail_widths: the algorithmic models have no finest-only form"
            );
        }
        let widths = AlgoWidths::new(
            m.levels.clone(),
            m.channels.clone(),
            m.tail_channels.unwrap_or_default(),
        )
        .with_input_levels(shape.input_levels())
        .with_tail_same(m.tail_same.unwrap_or(0))
        .with_norm(m.norm_mode());
        widths
            .validate()
            .map_err(|e| anyhow::anyhow!("model: {e}"))?;
        let d = shape.grid_channels();
        let model = if SORT {
            AlgoModelConfig::encoder_decoder(&widths, d, answer)
        } else {
            AlgoModelConfig::memory_reader(&widths, d, answer)
        };
        // `init` panics on a model that does not fit; refuse it here instead.
        model
            .validate()
            .map_err(|e| anyhow::anyhow!("model: {e}"))?;
        Ok(AlgoNetConfig::Multigrid(model))
    }

    fn check(config: &ExperimentOf<Self>) -> anyhow::Result<Builder> {
        let s = &config.task;
        check_bound("task.len", s.len, MAX_LEN)?;
        let problem = the_problem(SORT);
        let multigrid = matches!(config.model, ModelConfig::Multigrid(_));
        let items = match s.items {
            ItemKind::Vectors => {
                if s.scales.is_some() || s.pixels.is_some() || s.mnist_dir.is_some() {
                    bail!("task.scales / pixels / mnist_dir: fields of items = \"mnist\"");
                }
                let dim = s.dim.unwrap_or(9);
                check_bound("task.dim", dim, 4096)?;
                if multigrid && dim > 9 {
                    bail!(
                        "task.dim: {dim}; a multigrid model answers on a 3×3 grid, so at most 9 bits"
                    );
                }
                let valid = match problem {
                    Problem::Sort => SortConfig { len: s.len, dim }.validate(),
                    Problem::Recall => RecallConfig { len: s.len, dim }.validate(),
                };
                valid.map_err(|e| anyhow::anyhow!("task.len / dim: {e}"))?;
                Items::Vectors { dim }
            }
            ItemKind::Mnist => {
                if s.dim.is_some() {
                    bail!("task.dim: not a field of items = \"mnist\" (images are 28×28)");
                }
                let min = if SORT { 1 } else { 2 };
                if s.len < min {
                    bail!("task.len: {}; expected at least {min}", s.len);
                }
                let scales = s.scales.clone().unwrap_or_else(|| vec![3, 6, 12]);
                let expected: Vec<usize> = (0..scales.len()).map(|l| 3 << l).collect();
                if scales.is_empty() || scales.len() > 5 || scales != expected {
                    bail!(
                        "task.scales: {scales:?}; expected the pyramid [3, 6, 12, …] with 1 to 5 sides"
                    );
                }
                let pixels = match s.pixels.unwrap_or(PixelKind::Raw) {
                    PixelKind::Raw => PixelScale::Raw,
                    PixelKind::Unit => PixelScale::Unit,
                };
                Items::Mnist {
                    split: Arc::new(MnistSplit::from_parts(Vec::new(), Vec::new())),
                    scales,
                    pixels,
                }
            }
        };
        if SORT && s.query.is_some() {
            bail!("task.query: a recall field; sort has no query");
        }
        if !SORT && s.len < 2 {
            bail!("task.len: {}; recall needs at least 2 items", s.len);
        }
        let shape = Builder {
            problem,
            len: s.len,
            items,
            layout: if multigrid {
                Layout::Grid
            } else {
                Layout::Flat
            },
            query_per_batch: s.query == Some(QueryDraw::Batch),
        };
        if let ModelConfig::Multigrid(m) = &config.model
            && let Some(norm) = m.norm.filter(|&n| n != NormChoice::None)
            && config.train.threads > 1
        {
            let name = serde_json::to_string(&norm).unwrap_or_default();
            bail!(
                "train.threads: {}; model.norm = {name} normalises with statistics of the whole \
                 batch, which a shard of it does not have, so this model trains on one thread \
                 (set train.threads = 1)",
                config.train.threads
            );
        }
        if config.train.window < shape.steps() {
            bail!(
                "train.window: {}; these models read whole sequences, so the window must hold all {} steps",
                config.train.window,
                shape.steps()
            );
        }
        Ok(shape)
    }
}

impl<const SORT: bool> Task for Algorithmic<SORT> {
    task_model!(AlgoNet, |task, device| task.model.init(device));

    const KIND: &'static str = if SORT { "sort" } else { "recall" };
    const UNIT: &'static str = "output";
    type Settings = AlgoSettings;
    type ModelSettings = ModelConfig;
    type State<B: MgBackend> = ();
    type Window<B: MgBackend> = AlgoWindow<B>;
    type Output<B: MgBackend> = Tensor<B, 2>;
    type Batch = AlgoBatch;
    type Report = ErrorReport;

    fn new(config: &Experiment<AlgoSettings, ModelConfig>) -> anyhow::Result<Self> {
        let shape = Self::check(config)?;
        let model = Self::model_of(config, &shape)?;
        Ok(Self {
            config: config.clone(),
            model,
            shape,
            mnist: Arc::new(OnceLock::new()),
        })
    }

    fn info(&self) -> ModelInfo {
        let s = &self.shape;
        let mut lines = Vec::new();
        let mut json = serde_json::Map::new();
        let items = match &s.items {
            Items::Vectors { dim } => format!("{dim}-bit vectors"),
            Items::Mnist { scales, .. } => format!("MNIST digits (pyramid {scales:?})"),
        };
        lines.push(format!(
            "  task: {} of {} {items}, {} steps per sequence",
            Self::KIND,
            s.len,
            s.steps()
        ));
        json.insert("len".into(), json!(s.len));
        json.insert("steps".into(), json!(s.steps()));
        match &self.model {
            AlgoNetConfig::Multigrid(m) => {
                let role = if SORT { "encoder" } else { "writer" };
                describe_writer(role, &m.writer, &mut lines, &mut json);
                if let Some(d) = &m.decoder {
                    lines.push(format!(
                        "  decoder: conv-LSTM layers as the encoder ({} parameters), started from \
                         the encoder's state",
                        d.num_params()
                    ));
                    json.insert("decoder_params".into(), json!(d.num_params()));
                }
                let what = if SORT { "decoder conv half" } else { "reader" };
                lines.push(format!(
                    "  {what}: {} layers, {} parameters{}",
                    m.reader.layers.len(),
                    m.reader.num_params(),
                    match m.answer {
                        Answer::Bits => ", a 3×3 bit map".to_string(),
                        Answer::Classes(n) =>
                            format!(", then a {}→{n} fully connected layer", 9 * n),
                    }
                ));
                json.insert("reader_params".into(), json!(m.reader.num_params()));
            }
            AlgoNetConfig::Dnc(d) => describe_dnc(d, &mut lines, &mut json),
        }
        ModelInfo {
            params: self.model.num_params(),
            memory_cells: self.model.memory_cells(),
            lines,
            json,
        }
    }

    fn floats_per_step(&self) -> f64 {
        match &self.model {
            AlgoNetConfig::Multigrid(m) => {
                64.0 * m.memory_cells() as f64 * if SORT { 2.0 } else { 1.0 }
            }
            AlgoNetConfig::Dnc(d) => crate::model_config::dnc_floats_per_step(d),
        }
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<AlgoBatch> {
        Ok(self
            .builder(false)?
            .build(seed, index * size as u64, size, index))
    }

    /// Consecutive sequences of the batch. The loss adds up over sequences (a mean loss over
    /// answer bits or answers, which every sequence has as many of); `new` refuses several
    /// threads for a model with batch norm, whose statistics are the whole batch's.
    fn split_batch(&self, batch: &AlgoBatch, sizes: &[usize]) -> Option<Vec<AlgoBatch>> {
        Some(
            shard_ranges(sizes)
                .map(|rows| batch.shard(rows.start, rows.len()))
                .collect(),
        )
    }

    fn sequence_len(&self, _batch: &AlgoBatch) -> usize {
        self.shape.steps()
    }

    fn window_len(&self, _batch: &AlgoBatch, _steps: usize) -> usize {
        self.shape.steps()
    }

    /// The whole sequence, whatever `steps` asks for: the models read whole sequences
    /// (`new` checks that the training window holds one).
    fn window<B: MgBackend>(
        &self,
        batch: &AlgoBatch,
        _steps: Range<usize>,
        device: &B::Device,
    ) -> AlgoWindow<B> {
        let b = batch.batch;
        let grids = |data: &[Vec<f32>], rows: usize| -> Vec<Tensor<B, 4>> {
            data.iter()
                .enumerate()
                .map(|(l, v)| {
                    let side = 3 << l;
                    let d = v.len() / (rows * side * side);
                    Tensor::from_data(TensorData::new(v.clone(), [rows, d, side, side]), device)
                })
                .collect()
        };
        let width = self.shape.answer_width();
        let rows = batch.answers * b;
        let targets = match &self.shape.items {
            Items::Vectors { .. } => TensorData::new(batch.bits.clone(), [rows, width]),
            Items::Mnist { .. } => {
                let mut onehot = vec![0.0f32; rows * 10];
                for (r, &c) in batch.labels.iter().enumerate() {
                    onehot[r * 10 + c as usize] = 1.0;
                }
                TensorData::new(onehot, [rows, 10])
            }
        };
        let flat = (!batch.flat.is_empty()).then(|| {
            let w = self.shape.flat_width();
            Tensor::from_data(
                TensorData::new(batch.flat.clone(), [batch.flat.len() / w, w]),
                device,
            )
        });
        AlgoWindow {
            items: grids(&batch.items, batch.len * b),
            query: grids(&batch.query, b),
            flat,
            targets: Tensor::from_data(targets, device),
            len: batch.len,
            answers: batch.answers,
            flat_steps: batch.flat_steps,
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &AlgoNet<B>,
        window: &AlgoWindow<B>,
        _state: Option<()>,
        _path: ForwardPath,
    ) -> anyhow::Result<(Tensor<B, 2>, ())> {
        let width = self.shape.answer_width();
        let logits = match model {
            AlgoNet::Multigrid(m) => {
                let out = if SORT {
                    m.sort(&window.items, window.len, window.answers)
                } else {
                    m.recall(&window.items, &window.query, window.len)
                };
                out.narrow(1, 0, width)
            }
            AlgoNet::Dnc(dnc) => {
                let x = window.flat.clone().expect("a DNC window has flat rows");
                let rows = x.dims()[0];
                let (y, _) = dnc.forward_window(x, window.flat_steps, None);
                let answer_rows = rows / window.flat_steps * window.answers;
                y.narrow(0, rows - answer_rows, answer_rows)
            }
        };
        Ok((logits, ()))
    }

    fn loss<B: MgBackend>(
        &self,
        logits: Tensor<B, 2>,
        window: &AlgoWindow<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let [rows, width] = logits.dims();
        let (total, units) = match self.shape.items {
            Items::Vectors { .. } => (
                sigmoid_cross_entropy(logits, window.targets.clone()).sum(),
                (rows * width) as f64,
            ),
            Items::Mnist { .. } => (
                softmax_cross_entropy(logits, window.targets.clone()).sum(),
                rows as f64,
            ),
        };
        match reduction {
            LossReduction::Sum => WindowLoss::new(total, units),
            LossReduction::Mean => WindowLoss::new(total / units, units),
        }
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &AlgoNet<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<ErrorReport> {
        let width = self.shape.answer_width();
        let answers = match self.shape.items {
            Items::Vectors { .. } => Answers::Bits,
            Items::Mnist { .. } => Answers::Classes(10),
        };
        let (seed, size) = (self.config.eval.seed, self.config.eval.batch);
        score_test_set(request, seed, answers, size, |range, count| {
            let batch = self.test_batch(range)?;
            let logits = self.infer(model, &batch, device)?;
            let b = batch.batch;
            for s in 0..b {
                for row in (0..batch.answers).map(|a| a * b + s) {
                    let row_logits = &logits[row * width..(row + 1) * width];
                    match answers {
                        Answers::Bits => {
                            count.answer(row_logits, &batch.bits[row * width..(row + 1) * width])
                        }
                        Answers::Classes(_) => {
                            count.answer(row_logits, &[f32::from(batch.labels[row])])
                        }
                    }
                }
                count.end_sequence();
            }
            Ok(())
        })
    }

    fn draw<B: MgBackend>(
        &self,
        model: &AlgoNet<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let size = self.config.eval.batch.max(1);
        let first = index / size * size;
        let batch = self.test_batch(first..first + size)?;
        let logits = self.infer(model, &batch, device)?;
        let picture = render::Picture {
            batch: &batch,
            logits: &logits,
            row: index - first,
            width: self.shape.answer_width(),
        };
        let path = out.join(format!("{}-{index}.png", Self::KIND));
        match &self.builder(true)?.items {
            Items::Vectors { .. } => picture.vectors(SORT, &path)?,
            Items::Mnist { split, .. } => {
                let memory = match model {
                    AlgoNet::Multigrid(m) => {
                        let window = self.window::<B>(&batch, 0..self.shape.steps(), device);
                        Some(render::finest_memory(
                            m,
                            &window.items,
                            batch.len,
                            batch.batch,
                            index - first,
                        ))
                    }
                    AlgoNet::Dnc(_) => None,
                };
                picture.digits(SORT, split, memory.as_ref(), &path)?
            }
        }
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests;
