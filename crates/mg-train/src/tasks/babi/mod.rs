//! Question answering on bAbI (paper §4.4, appendix B.3, Tables 3 and 4): the 1D multigrid
//! memory ([`mg_models::QaModel`]) or a DNC, trained jointly on the selected tasks.
//!
//! `[task] reading` cuts the stories into sequences ([`Reading`]). With `"question"` (the
//! default) each question is one sequence: its story's statements before it, the question and
//! the answer words (`mg_data::babi::encode`); the story is replayed for every question, so no
//! state crosses questions. With `"story"` (the DNC paper's protocol) a story is one sequence
//! read once, its statements and questions in file order with each answer where it stands
//! (`mg_data::babi::encode_story`); the state carries from question to question, and the input
//! at an answer word is `<pad>`, so an answer is scored but never read.
//!
//! At each step the model reads one word and predicts the next; the loss is the softmax
//! cross-entropy on answer words only (equation 4). Batches pad at the end, after every scored
//! step, so padding reaches neither the loss nor a real word's state; a new batch starts from
//! a fresh state. An answer of several words is right only if every word is: in question
//! reading the evaluation feeds the true words (teacher forcing), which gives the same verdict
//! as feeding the model's own words, since a verdict is decided at the first wrong word.
//! Evaluation and validation score every question once, per task, in both readings.

mod data;

use mg_layers::MgBackend;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::bail;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};
use mg_data::babi::{Sequence, TASKS, Variant, answer_spans, words_of};
use mg_models::{MemoryState, QaNet, QaNetConfig, QaWidths, Rows};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use data::{
    Corpus, CorpusSpec, QaBatch, Reading, VOCAB, answer, answers, babi_dir, prefix, questions,
    task_name,
};

use super::losses::softmax_cross_entropy;
use super::scoring::argmax;
use crate::harness::progress::Progress;
use crate::harness::task::task_model;
use crate::harness::{
    EpochSize, EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo,
    Report, Task, WindowLoss, shard_ranges,
};
use crate::model_config::{ModelConfig, check_bound, describe_dnc};
use crate::tasks::rows::Host;

/// The two English sets.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VariantChoice {
    /// 1,000 training questions per task.
    #[serde(rename = "en")]
    En,
    /// 10,000 training questions per task (qa3: the 1k file, see docs/DATA.md).
    #[default]
    #[serde(rename = "en-10k")]
    En10k,
}

/// The `[task]` table of a bAbI experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BabiSettings {
    /// `en-10k` (default) or `en`.
    #[serde(default)]
    pub variant: VariantChoice,
    /// Tasks to train and test on, 1..=20 [default: all 20].
    #[serde(default = "all_tasks")]
    pub tasks: Vec<u8>,
    /// The bAbI folder (`tasks_1-20_v1-2`, or a folder above it) [default: the data root's
    /// `babi/tasks_1-20_v1-2`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Share of each task's training questions held out for validation.
    #[serde(default = "default_validation")]
    pub validation: f64,
    /// Held-out questions checked after every checkpoint (the same number from each task),
    /// to keep the best checkpoint; 0 turns validation off.
    #[serde(default = "default_validation_questions")]
    pub validation_questions: usize,
    /// Longest sequence, in words (context, question and answer); longer questions are left
    /// out and counted (in a story, those whose answer ends after the limit).
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// `"question"` (a sequence per question, the story replayed) or `"story"` (a sequence per
    /// story, read once) [default: `"question"`].
    #[serde(default)]
    pub reading: Reading,
}

fn all_tasks() -> Vec<u8> {
    (1..=20).collect()
}
fn default_validation() -> f64 {
    0.1
}
fn default_validation_questions() -> usize {
    1000
}
fn default_max_len() -> usize {
    2000
}

/// Errors of one task.
#[derive(Serialize, Debug, Clone)]
pub struct TaskError {
    /// Task number.
    pub task: u8,
    /// Its name.
    pub name: String,
    /// Test questions.
    pub questions: usize,
    /// Questions with a wrong answer word.
    pub wrong: usize,
    /// `wrong / questions`.
    pub error: f64,
    /// Error of always answering the task's most frequent training answer.
    pub majority_error: f64,
}

/// `eval.json` of a bAbI run.
#[derive(Serialize, Debug, Clone)]
pub struct BabiReport {
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Test questions.
    pub sequences: usize,
    /// Mean of the per-task errors.
    pub error: f64,
    /// Tasks with an error above 5%.
    pub failed_tasks: usize,
    /// Mean of the per-task majority-answer errors.
    pub majority_error: f64,
    /// Test questions longer than `task.max_len`, not evaluated.
    pub skipped: usize,
    /// Per task.
    pub tasks: Vec<TaskError>,
    /// Notes on the data (the en-10k qa3 training file).
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The bAbI task.
#[derive(Debug, Clone)]
pub struct Babi {
    config: ExperimentOf<Babi>,
    model: QaNetConfig,
    spec: CorpusSpec,
    corpus: Arc<OnceLock<Result<Arc<Corpus>, String>>>,
}

/// The tensors of one window.
pub struct QaWindow<B: MgBackend> {
    words: Tensor<B, 2>,
    steps: usize,
    rows: Option<Tensor<B, 1, Int>>,
    targets: Tensor<B, 2>,
    scored: usize,
}

/// Largest `max_len`.
const MAX_LEN: usize = 100_000;

impl Babi {
    /// The corpus, loaded on first use.
    pub fn corpus(&self) -> anyhow::Result<Arc<Corpus>> {
        let loaded = self.corpus.get_or_init(|| {
            Corpus::load(&self.spec)
                .map(|c| {
                    for w in &c.warnings {
                        eprintln!("warning: {w}");
                    }
                    if c.skipped_train + c.skipped_test > 0 {
                        eprintln!(
                            "note: {} training and {} test questions are longer than task.max_len \
                             = {} words and left out",
                            c.skipped_train, c.skipped_test, self.spec.max_len
                        );
                    }
                    Arc::new(c)
                })
                .map_err(|e| format!("{e:#}"))
        });
        loaded.clone().map_err(anyhow::Error::msg)
    }

    fn model_of(config: &ExperimentOf<Self>) -> anyhow::Result<QaNetConfig> {
        Ok(match &config.model {
            ModelConfig::Multigrid(m) => {
                m.check_qa()?;
                let widths = QaWidths::new(
                    m.levels.clone(),
                    m.channels.clone(),
                    m.head_channels.clone().unwrap_or_default(),
                    VOCAB,
                )
                .with_embedding(m.embedding.unwrap_or(0));
                widths
                    .validate()
                    .map_err(|e| anyhow::anyhow!("model: {e}"))?;
                QaNetConfig::Multigrid(widths.model())
            }
            ModelConfig::Dnc(m) => QaNetConfig::Dnc(m.dnc(VOCAB, VOCAB)?),
        })
    }

    fn spec_of(config: &ExperimentOf<Self>) -> anyhow::Result<CorpusSpec> {
        let s = &config.task;
        if s.tasks.is_empty() {
            bail!("task.tasks: empty; expected task numbers 1..=20");
        }
        let mut seen = [false; 21];
        for &t in &s.tasks {
            if !(1..=20).contains(&t) {
                bail!("task.tasks: {t} is not a bAbI task; expected numbers 1..=20");
            }
            if std::mem::replace(&mut seen[t as usize], true) {
                bail!("task.tasks: task {t} is listed twice");
            }
        }
        if !(0.0..1.0).contains(&s.validation) {
            bail!(
                "task.validation: {}; expected a share of the training questions in [0, 1)",
                s.validation
            );
        }
        if s.validation == 0.0 && s.validation_questions > 0 {
            bail!(
                "task.validation_questions: {}; task.validation is 0, so nothing is held out \
                 (set validation_questions = 0 too)",
                s.validation_questions
            );
        }
        check_bound("task.validation_questions", s.validation_questions, 1 << 20)?;
        check_bound("task.max_len", s.max_len, MAX_LEN)?;
        if s.max_len < 2 {
            bail!("task.max_len: {}; expected at least 2 words", s.max_len);
        }
        Ok(CorpusSpec {
            dir: babi_dir(s.data_dir.as_deref()),
            variant: match s.variant {
                VariantChoice::En => Variant::En,
                VariantChoice::En10k => Variant::En10k,
            },
            tasks: s.tasks.clone(),
            validation: s.validation,
            validation_questions: s.validation_questions,
            max_len: s.max_len,
            reading: s.reading,
        })
    }

    /// A batch of `sequences` as this run reads them (answers blanked in story reading).
    pub fn batch_of<'a>(&self, sequences: impl IntoIterator<Item = &'a Sequence>) -> QaBatch {
        let batch = QaBatch::new(sequences);
        match self.spec.reading {
            Reading::Question => batch,
            Reading::Story => batch.blank_answers(),
        }
    }

    /// Next-word logits of every step of `batch` on the host, `[len·batch, VOCAB]`.
    fn infer<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        batch: &QaBatch,
        device: &B::Device,
    ) -> anyhow::Result<Vec<f32>> {
        let window = self.window::<B>(batch, 0..batch.len, device);
        let (logits, _) = self.forward(model, &window, None, ForwardPath::Window)?;
        Ok(logits.host())
    }

    /// Per-task wrong and total question counts of `sequences` (every question of each), in
    /// batches of similar length.
    fn count_errors<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        sequences: &[&Sequence],
        device: &B::Device,
        bar: &mut Progress,
    ) -> anyhow::Result<Vec<(u8, usize, usize)>> {
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].tokens.len());
        let mut counts: Vec<(u8, usize, usize)> = Vec::new();
        let mut done = 0;
        for chunk in order.chunks(self.config.eval.batch.max(1)) {
            let batch = self.batch_of(chunk.iter().map(|&i| sequences[i]));
            let logits = self.infer(model, &batch, device)?;
            let b = batch.size();
            for s in 0..b {
                let task = batch.tasks[s];
                let at = match counts.iter().position(|c| c.0 == task) {
                    Some(at) => at,
                    None => {
                        counts.push((task, 0, 0));
                        counts.len() - 1
                    }
                };
                // One verdict per question: its answer's steps, every word right.
                for steps in answer_spans(&batch.scored[s]) {
                    let right = steps.clone().all(|t| {
                        let row = &logits[(t * b + s) * VOCAB..(t * b + s + 1) * VOCAB];
                        argmax(row) == batch.targets[s][t] as usize
                    });
                    counts[at].1 += usize::from(!right);
                    counts[at].2 += 1;
                    done += 1;
                }
            }
            bar.set_position(done as u64);
        }
        counts.sort();
        Ok(counts)
    }

    /// Answers a story: `text` holds statements, one per line (bAbI's line numbers may stay),
    /// and ends with a question line; returns `words` answer words with their probabilities,
    /// each fed back as the next input.
    pub fn answer<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        text: &str,
        words: usize,
        device: &B::Device,
    ) -> anyhow::Result<Vec<(String, f32)>> {
        // The fixed vocabulary the models are built for: answering needs no data files.
        let vocab = mg_data::babi::Vocab::v12();
        let mut tokens = Vec::new();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let Some(last) = lines.last() else {
            bail!("no story: expected statements, one per line, and a question line ending in `?`");
        };
        for (n, line) in lines.iter().enumerate() {
            // A pasted question line carries `\tanswer\tsupport`: keep the question only.
            let line = line.split('\t').next().unwrap_or("");
            let line = line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
            let ids = vocab
                .encode(line)
                .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
            tokens.extend(ids);
        }
        let question = words_of(last.split('\t').next().unwrap_or(""));
        if question.last().is_none_or(|w| w != "?") {
            bail!(
                "line {}: the last line must be the question, ending in `?`",
                lines.len()
            );
        }
        if tokens.len() > self.spec.max_len {
            bail!(
                "the story has {} words; task.max_len of this run is {}",
                tokens.len(),
                self.spec.max_len
            );
        }
        let one_hot = |ids: &[u32]| {
            let mut x = vec![0.0f32; ids.len() * VOCAB];
            for (r, &i) in ids.iter().enumerate() {
                x[r * VOCAB + i as usize] = 1.0;
            }
            Tensor::<B, 2>::from_data(TensorData::new(x, [ids.len(), VOCAB]), device)
        };
        let mut out = Vec::new();
        let (mut input, mut state) = (tokens, None);
        for _ in 0..words.max(1) {
            let steps = input.len();
            let words = Rows {
                x: one_hot(&input),
                steps,
                step_path: false,
            };
            let (logits, next) = model.forward(words, state)?;
            let last = logits.narrow(0, steps - 1, 1);
            let p: Vec<f32> = softmax(last, 1).host();
            let best = argmax(&p);
            out.push((vocab.word(best as u32).to_string(), p[best]));
            (input, state) = (vec![best as u32], Some(next));
        }
        Ok(out)
    }
}

impl Report for BabiReport {
    fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!(
                "checkpoint at time step {}, {} test questions, {:.1} s",
                self.time_step, self.sequences, self.seconds
            ),
            format!(
                "{:<4} {:<28} {:>9} {:>10}",
                "task", "", "error %", "majority %"
            ),
        ];
        for t in &self.tasks {
            lines.push(format!(
                "qa{:<2} {:<28} {:>9.1} {:>10.1}",
                t.task,
                t.name,
                100.0 * t.error,
                100.0 * t.majority_error
            ));
        }
        lines.push(format!(
            "mean error {:.1}% (majority answer {:.1}%), failed tasks (error > 5%) {} of {}",
            100.0 * self.error,
            100.0 * self.majority_error,
            self.failed_tasks,
            self.tasks.len()
        ));
        if self.skipped > 0 {
            lines.push(format!(
                "{} test questions longer than task.max_len were not evaluated",
                self.skipped
            ));
        }
        for n in &self.notes {
            lines.push(format!("note: {n}"));
        }
        lines
    }
}

impl Task for Babi {
    task_model!(QaNet, |task, device| task.model.init(device));

    const KIND: &'static str = "babi";
    const UNIT: &'static str = "answer word";
    type Settings = BabiSettings;
    type ModelSettings = ModelConfig;
    type State<B: MgBackend> = MemoryState<B>;
    type Window<B: MgBackend> = QaWindow<B>;
    type Output<B: MgBackend> = Tensor<B, 2>;
    type Batch = QaBatch;
    type Report = BabiReport;

    fn new(config: &Experiment<BabiSettings, ModelConfig>) -> anyhow::Result<Self> {
        let spec = Self::spec_of(config)?;
        let model = Self::model_of(config)?;
        Ok(Self {
            config: config.clone(),
            model,
            spec,
            corpus: Arc::new(OnceLock::new()),
        })
    }

    fn info(&self) -> ModelInfo {
        let mut lines = Vec::new();
        let mut json = serde_json::Map::new();
        let tasks = &self.config.task.tasks;
        lines.push(format!(
            "  task: bAbI {} joint on {} task{} ({}), one word per step, vocabulary {VOCAB}, {}",
            match self.spec.variant {
                Variant::En => "en",
                Variant::En10k => "en-10k",
            },
            tasks.len(),
            if tasks.len() == 1 { "" } else { "s" },
            if tasks.len() == 20 {
                "all".to_string()
            } else {
                tasks
                    .iter()
                    .map(|t| format!("qa{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            match self.spec.reading {
                Reading::Question => "a sequence per question (the story replayed)",
                Reading::Story => "a sequence per story (read once)",
            }
        ));
        json.insert("tasks".into(), json!(tasks));
        json.insert("reading".into(), json!(self.spec.reading));
        match &self.model {
            QaNetConfig::Multigrid(m) => {
                lines.push(format!(
                    "  input: {}",
                    if m.embedding > 0 {
                        format!(
                            "a learned {}-wide embedding ({} parameters)",
                            m.embedding,
                            m.embedding * VOCAB
                        )
                    } else {
                        format!("one-hot words on the 1×1 grid ({VOCAB} channels)")
                    }
                ));
                lines.push(format!("  writer: {} parameters", m.writer.num_params()));
                for (k, l) in m.writer.stack.layers.iter().enumerate() {
                    lines.push(format!(
                        "    W{}: {} levels (1×1 … 1×{}) × {} channels, {} params, {} memory",
                        k + 1,
                        l.output_levels.count,
                        1usize << (l.output_levels.end() - 1),
                        l.d_hidden,
                        l.num_params(),
                        l.memory_cells()
                    ));
                }
                let widths: Vec<String> = m
                    .head
                    .layers
                    .iter()
                    .map(|l| l.d_output.to_string())
                    .collect();
                lines.push(format!(
                    "  head: {} conv layers ({} channels) down to 1×1, {} parameters",
                    m.head.layers.len(),
                    widths.join(", "),
                    m.head.num_params()
                ));
                json.insert("writer_params".into(), json!(m.writer.num_params()));
                json.insert("head_params".into(), json!(m.head.num_params()));
                json.insert("embedding".into(), json!(m.embedding));
            }
            QaNetConfig::Dnc(d) => describe_dnc(d, &mut lines, &mut json),
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
            QaNetConfig::Multigrid(m) => 64.0 * m.memory_cells() as f64 + 8.0 * VOCAB as f64,
            QaNetConfig::Dnc(d) => crate::model_config::dnc_floats_per_step(d),
        }
    }

    fn paths(&self) -> &'static [ForwardPath] {
        crate::model_config::paths_of(&self.model)
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<QaBatch> {
        let corpus = self.corpus()?;
        let picks = corpus.batch_indices(seed, index, size)?;
        Ok(self.batch_of(picks.iter().map(|&i| &corpus.train[i as usize])))
    }

    fn epoch_size(
        &self,
        batch: &QaBatch,
        steps: usize,
        seed: u64,
    ) -> anyhow::Result<Option<EpochSize>> {
        let corpus = self.corpus()?;
        Ok(Some(EpochSize {
            words: batch.words(steps),
            steps: corpus.epoch_steps(seed, batch.size())?,
        }))
    }

    fn sequence_len(&self, batch: &QaBatch) -> usize {
        batch.len
    }

    /// Consecutive questions, each shard padded to the whole batch's length. The loss adds up
    /// over the scored answer words of the shards (a mean loss: weighted by their counts).
    fn split_batch(&self, batch: &QaBatch, sizes: &[usize]) -> Option<Vec<QaBatch>> {
        Some(
            shard_ranges(sizes)
                .map(|rows| batch.shard(rows.start, rows.len()))
                .collect(),
        )
    }

    fn window<B: MgBackend>(
        &self,
        batch: &QaBatch,
        steps: Range<usize>,
        device: &B::Device,
    ) -> QaWindow<B> {
        let (t0, t1) = (steps.start, steps.end);
        let rows = (t1 - t0) * batch.size();
        let words = Tensor::from_data(
            TensorData::new(batch.one_hot(t0, t1), [rows, VOCAB]),
            device,
        );
        let (picked, targets) = batch.scored_rows(t0, t1);
        let scored = picked.len();
        let mut onehot = vec![0.0f32; scored * VOCAB];
        for (r, &w) in targets.iter().enumerate() {
            onehot[r * VOCAB + w as usize] = 1.0;
        }
        QaWindow {
            words,
            steps: t1 - t0,
            rows: (scored > 0)
                .then(|| Tensor::from_data(TensorData::new(picked, [scored]), device)),
            targets: Tensor::from_data(TensorData::new(onehot, [scored, VOCAB]), device),
            scored,
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        window: &QaWindow<B>,
        state: Option<MemoryState<B>>,
        path: ForwardPath,
    ) -> anyhow::Result<(Tensor<B, 2>, MemoryState<B>)> {
        let words = Rows {
            x: window.words.clone(),
            steps: window.steps,
            step_path: path == ForwardPath::Step,
        };
        Ok(model.forward(words, state)?)
    }

    fn loss<B: MgBackend>(
        &self,
        logits: Tensor<B, 2>,
        window: &QaWindow<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let Some(rows) = &window.rows else {
            // Nothing scored in this window: a zero that keeps the graph.
            return WindowLoss::new(logits.sum() * 0.0, 0.0);
        };
        let picked = logits.select(0, rows.clone());
        let total = softmax_cross_entropy(picked, window.targets.clone()).sum();
        let units = window.scored as f64;
        match reduction {
            LossReduction::Sum => WindowLoss::new(total, units),
            LossReduction::Mean => WindowLoss::new(total / units, units),
        }
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<BabiReport> {
        let start = Instant::now();
        let corpus = self.corpus()?;
        // At most `sequences` questions of each task, in file order (a story cut after its
        // last question within the count).
        let mut taken = [0usize; 21];
        let mut cut = Vec::new();
        for s in &corpus.test {
            let n = &mut taken[s.task as usize];
            let count = questions(s).min(request.sequences.saturating_sub(*n));
            *n += count;
            if count > 0 {
                cut.push(prefix(s, count));
            }
        }
        let chosen: Vec<&Sequence> = cut.iter().collect();
        let total: usize = taken.iter().sum();
        let mut bar = Progress::new(total as u64, "questions", request.show_progress);
        let counts = self.count_errors(model, &chosen, device, &mut bar)?;
        bar.clear();
        let tasks: Vec<TaskError> = counts
            .iter()
            .map(|&(task, wrong, questions)| {
                let top = corpus.majority.get(&task).cloned().unwrap_or_default();
                let majority_wrong = chosen
                    .iter()
                    .filter(|s| s.task == task)
                    .flat_map(|s| answers(s))
                    .filter(|a| *a != top)
                    .count();
                TaskError {
                    task,
                    name: task_name(task),
                    questions,
                    wrong,
                    error: wrong as f64 / questions as f64,
                    majority_error: majority_wrong as f64 / questions as f64,
                }
            })
            .collect();
        let n = tasks.len().max(1) as f64;
        let mut notes = corpus.warnings.clone();
        if corpus.skipped_train > 0 {
            notes.push(format!(
                "{} training questions longer than task.max_len were left out",
                corpus.skipped_train
            ));
        }
        Ok(BabiReport {
            time_step: request.time_step,
            sequences: total,
            error: tasks.iter().map(|t| t.error).sum::<f64>() / n,
            failed_tasks: tasks.iter().filter(|t| t.error > 0.05).count(),
            majority_error: tasks.iter().map(|t| t.majority_error).sum::<f64>() / n,
            skipped: corpus.skipped_test,
            tasks,
            notes,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    fn validate<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        device: &B::Device,
    ) -> anyhow::Result<Option<f64>> {
        let corpus = self.corpus()?;
        if corpus.valid.is_empty() {
            return Ok(None);
        }
        let chosen: Vec<&Sequence> = corpus.valid.iter().collect();
        let total = chosen.iter().map(|s| questions(s)).sum::<usize>();
        let mut bar = Progress::new(total as u64, "validation", false);
        let counts = self.count_errors(model, &chosen, device, &mut bar)?;
        let n = counts.len().max(1) as f64;
        Ok(Some(
            counts
                .iter()
                .map(|&(_, w, q)| w as f64 / q as f64)
                .sum::<f64>()
                / n,
        ))
    }

    /// Writes test sequence `index` (a question, or a story in story reading) with the model's
    /// answers and its five likeliest words at each answer step, as text.
    fn draw<B: MgBackend>(
        &self,
        model: &QaNet<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let corpus = self.corpus()?;
        let unit = match self.spec.reading {
            Reading::Question => "question",
            Reading::Story => "story",
        };
        let Some(s) = corpus.test.get(index) else {
            bail!(
                "--episode {index}: the test set of this run holds {} sequences (one per {unit})",
                corpus.test.len()
            );
        };
        let batch = self.batch_of([s]);
        let logits = self.infer(model, &batch, device)?;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "qa{} {} (test {unit} {index})",
            s.task,
            TASKS[s.task as usize - 1]
        );
        let mut read = 0;
        for span in answer_spans(&s.answer_mask) {
            // The question: the words after the last `.` before its answer.
            let question_start = s.tokens[read..span.start]
                .iter()
                .rposition(|&t| corpus.vocab.word(t) == ".")
                .map_or(read, |i| read + i + 1);
            let _ = writeln!(
                text,
                "story: {}",
                corpus.vocab.decode(&s.tokens[read..question_start])
            );
            let _ = writeln!(
                text,
                "question: {}",
                corpus.vocab.decode(&s.tokens[question_start..span.start])
            );
            let _ = writeln!(
                text,
                "answer: {}",
                corpus.vocab.decode(&s.tokens[span.clone()])
            );
            for t in span.start - 1..span.end - 1 {
                let row = &logits[t * VOCAB..(t + 1) * VOCAB];
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let z: f32 = row.iter().map(|v| (v - max).exp()).sum();
                let mut top: Vec<(usize, f32)> = row
                    .iter()
                    .map(|v| (v - max).exp() / z)
                    .enumerate()
                    .collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                let shown: Vec<String> = top[..5]
                    .iter()
                    .map(|(w, p)| format!("{} {:.3}", corpus.vocab.word(*w as u32), p))
                    .collect();
                let _ = writeln!(
                    text,
                    "  word {} (target `{}`): {}",
                    t + 2 - span.start,
                    corpus.vocab.word(s.tokens[t + 1]),
                    shown.join(", ")
                );
            }
            read = span.end;
        }
        let path = out.join(format!("babi-{index}.txt"));
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests;
