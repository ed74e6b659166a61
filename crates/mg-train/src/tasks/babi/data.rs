//! The bAbI data of a run: the selected tasks' training, validation and test questions as
//! word sequences (one per question, or one per story), the majority-answer baseline, and
//! batches bucketed by length.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use mg_data::babi::{BabiCorpus, PAD, Sequence, Split, TASKS, Variant, Vocab, answer_spans};
use mg_data::rng::Rng;
use serde::{Deserialize, Serialize};

/// How a story becomes sequences (`[task] reading`).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// One sequence per question: the story's statements before it, the question and the
    /// answer (the story is replayed for every question).
    #[default]
    Question,
    /// One sequence per story, read once: statements and questions in file order, each answer
    /// where it stands, the state carried from question to question. The input at an answer
    /// word is `<pad>`, so no answer reaches a later step.
    Story,
}

/// Words of the v1.2 vocabulary (156 words, `<pad>`, `.` and `?`), the width of the models'
/// input and output.
pub const VOCAB: usize = 159;

/// Key of the validation split's generator (fixed, so runs of different seeds hold out the
/// same questions).
const SPLIT_KEY: u64 = 0x5641_4c49;
/// Key of the training order's generator.
const ORDER_KEY: u64 = 0x4f52_4445;
/// Batches are drawn from chunks of this many batches sorted by length, so that a batch holds
/// sequences of similar length (less padding) and the batch order stays random.
const BUCKET: usize = 32;

/// What a run reads: the selected tasks' sequences with their vocabulary.
#[derive(Debug)]
pub struct Corpus {
    /// The vocabulary (`VOCAB` words).
    pub vocab: Vocab,
    /// How the sequences were cut.
    pub reading: Reading,
    /// Training sequences (the training files less the validation share).
    pub train: Vec<Sequence>,
    /// Held-out training sequences checked at every checkpoint (at most the configured
    /// number of questions, the same count from every task).
    pub valid: Vec<Sequence>,
    /// Test sequences, task by task in file order.
    pub test: Vec<Sequence>,
    /// Questions left out of training (and validation): a question sequence longer than
    /// `max_len` words; in a story, every question whose answer ends after word `max_len`.
    pub skipped_train: usize,
    /// Test questions left out of the evaluation, by the same rule.
    pub skipped_test: usize,
    /// Per task, the most frequent answer of its training questions.
    pub majority: HashMap<u8, Vec<u32>>,
    /// The en-10k qa3 fallback and other notes to show.
    pub warnings: Vec<String>,
}

/// How a [`Corpus`] is cut from the files.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// The `tasks_1-20_v1-2` folder.
    pub dir: PathBuf,
    /// `en` or `en-10k`.
    pub variant: Variant,
    /// Tasks 1..=20 to read.
    pub tasks: Vec<u8>,
    /// Share of each task's training questions held out.
    pub validation: f64,
    /// Held-out questions checked per checkpoint, over all tasks.
    pub validation_questions: usize,
    /// Longest sequence (words, answer included) kept.
    pub max_len: usize,
    /// One sequence per question or per story.
    pub reading: Reading,
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.index(i + 1));
    }
}

impl Corpus {
    /// Loads and cuts the corpus; errors name the folder or file and line.
    pub fn load(spec: &CorpusSpec) -> anyhow::Result<Self> {
        let corpus = BabiCorpus::load(&spec.dir, spec.variant)
            .with_context(|| format!("task.data_dir: reading bAbI from {}", spec.dir.display()))?;
        // Ids of the fixed v1.2 vocabulary, whichever files are read.
        let vocab = Vocab::v12();
        debug_assert_eq!(vocab.len(), VOCAB);
        corpus
            .check_vocab(&spec.dir, &vocab)
            .context("task.data_dir: the files hold a word the models have no input for")?;
        let mut map = Vec::with_capacity(corpus.vocab.len());
        for (id, word) in corpus.vocab.words().iter().enumerate() {
            match vocab.id(word) {
                Some(fixed) => map.push(fixed),
                None => bail!(
                    "task.data_dir: the files in {} hold the word `{word}` (id {id}), which is not \
                     in bAbI v1.2's vocabulary of {VOCAB} words",
                    spec.dir.display()
                ),
            }
        }
        let remap = |mut s: Sequence| {
            s.tokens.iter_mut().for_each(|t| *t = map[*t as usize]);
            s
        };
        let sequences = |task, split| match spec.reading {
            Reading::Question => corpus.sequences(task, split),
            Reading::Story => corpus.story_sequences(task, split),
        };
        let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
        let (mut skipped_train, mut skipped_test) = (0, 0);
        let mut majority = HashMap::new();
        let per_task = spec.validation_questions / spec.tasks.len().max(1);
        for &task in &spec.tasks {
            let mut counts: HashMap<Vec<u32>, usize> = HashMap::new();
            for s in corpus.sequences(task, Split::Train).into_iter().map(remap) {
                *counts.entry(answer(&s)).or_default() += 1;
            }
            let top = counts
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(a, _)| a)
                .unwrap_or_default();
            majority.insert(task, top);
            let mut all: Vec<Sequence> = sequences(task, Split::Train)
                .into_iter()
                .map(remap)
                .collect();
            shuffle(&mut all, &mut Rng::keyed(&[SPLIT_KEY, task as u64]));
            let held = (all.len() as f64 * spec.validation).round() as usize;
            // Validation questions still to take from this task.
            let mut budget = per_task;
            for (i, s) in all.into_iter().enumerate() {
                if i < held {
                    let take = questions(&s).min(budget);
                    budget -= take;
                    // A held-out sequence beyond the budget counts in `skipped` if too long.
                    let held_out = if take > 0 { prefix(&s, take) } else { s };
                    let fits = fit(held_out, spec.max_len, &mut skipped_train);
                    valid.extend(fits.filter(|_| take > 0));
                } else if let Some(s) = fit(s, spec.max_len, &mut skipped_train) {
                    train.push(s);
                }
            }
            for s in sequences(task, Split::Test).into_iter().map(remap) {
                test.extend(fit(s, spec.max_len, &mut skipped_test));
            }
        }
        if train.is_empty() {
            bail!(
                "task.tasks: no training question of at most task.max_len = {} words",
                spec.max_len
            );
        }
        Ok(Self {
            vocab,
            reading: spec.reading,
            train,
            valid,
            test,
            skipped_train,
            skipped_test,
            majority,
            // Only the notes on the files of the selected tasks (the qa3 fallback).
            warnings: corpus
                .warnings
                .into_iter()
                .filter(|w| {
                    spec.tasks
                        .iter()
                        .any(|&t| w.contains(TASKS[t as usize - 1]))
                })
                .collect(),
        })
    }

    /// Training batch `index` of `size` questions: each epoch is a fresh permutation, cut into
    /// chunks of `BUCKET` (32) batches that are sorted by length, with the batches of an epoch in
    /// random order. A pure function of its arguments.
    pub fn batch_indices(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<Vec<u32>> {
        let per_epoch = self.batches_per_epoch(size)?;
        let (epoch, at) = (index / per_epoch, (index % per_epoch) as usize);
        let order = self.epoch_order(seed, epoch, size);
        let mut batches: Vec<usize> = (0..per_epoch as usize).collect();
        shuffle(&mut batches, &mut Rng::keyed(&[seed, ORDER_KEY, epoch, 1]));
        let first = batches[at] * size;
        Ok(order[first..first + size].to_vec())
    }

    /// Batches of `size` questions in an epoch (the questions left over are not drawn).
    pub fn batches_per_epoch(&self, size: usize) -> anyhow::Result<u64> {
        let n = self.train.len();
        if size == 0 || size > n {
            let unit = match self.reading {
                Reading::Question => "questions",
                Reading::Story => "stories",
            };
            bail!("train.batch: {size}; the training split holds {n} {unit}");
        }
        Ok((n / size) as u64)
    }

    /// The training questions of `epoch` in the order its batches cut them: a permutation,
    /// sorted by length in chunks of `BUCKET` batches.
    fn epoch_order(&self, seed: u64, epoch: u64, size: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.train.len() as u32).collect();
        shuffle(&mut order, &mut Rng::keyed(&[seed, ORDER_KEY, epoch]));
        for chunk in order.chunks_mut(size * BUCKET) {
            chunk.sort_by_key(|&i| self.train[i as usize].tokens.len());
        }
        order
    }

    /// Time steps of every batch of `size` questions of the first epoch of `seed`, summed: a
    /// batch runs as many steps as its longest question has input words.
    pub fn epoch_steps(&self, seed: u64, size: usize) -> anyhow::Result<u64> {
        let per_epoch = self.batches_per_epoch(size)? as usize;
        let order = self.epoch_order(seed, 0, size);
        Ok(order[..per_epoch * size]
            .chunks(size)
            .map(|batch| {
                let longest = batch.iter().map(|&i| self.train[i as usize].tokens.len());
                longest.max().unwrap_or(0).saturating_sub(1) as u64
            })
            .sum())
    }
}

/// The answer tokens of a sequence (of all its questions).
pub fn answer(s: &Sequence) -> Vec<u32> {
    s.tokens
        .iter()
        .zip(&s.answer_mask)
        .filter(|(_, m)| **m)
        .map(|(t, _)| *t)
        .collect()
}

/// The answer of each question of a sequence, in order.
pub fn answers(s: &Sequence) -> Vec<Vec<u32>> {
    answer_spans(&s.answer_mask)
        .into_iter()
        .map(|r| s.tokens[r].to_vec())
        .collect()
}

/// Questions of a sequence (1 for a question, the story's questions for a story).
pub fn questions(s: &Sequence) -> usize {
    answer_spans(&s.answer_mask).len()
}

/// The sequence up to the end of its `count`-th answer: its first `count` questions.
pub fn prefix(s: &Sequence, count: usize) -> Sequence {
    let end = answer_spans(&s.answer_mask)
        .get(count.wrapping_sub(1))
        .map_or(0, |r| r.end);
    Sequence {
        task: s.task,
        tokens: s.tokens[..end].to_vec(),
        answer_mask: s.answer_mask[..end].to_vec(),
    }
}

/// `s` cut after its last answer that ends within `max_len` words, adding the questions cut
/// off to `skipped`; `None` when not one fits (a question sequence is kept whole or not at all).
fn fit(s: Sequence, max_len: usize, skipped: &mut usize) -> Option<Sequence> {
    if s.tokens.len() <= max_len {
        return Some(s);
    }
    let spans = answer_spans(&s.answer_mask);
    let kept = spans.iter().take_while(|r| r.end <= max_len).count();
    *skipped += spans.len() - kept;
    (kept > 0).then(|| prefix(&s, kept))
}

/// Word sequences of one batch, padded at the end to the longest.
#[derive(Debug, Clone)]
pub struct QaBatch {
    /// Input word ids per sequence (`tokens[..n−1]`).
    pub inputs: Vec<Vec<u32>>,
    /// The next word per input position.
    pub targets: Vec<Vec<u32>>,
    /// True where the target is an answer word.
    pub scored: Vec<Vec<bool>>,
    /// The task of each sequence.
    pub tasks: Vec<u8>,
    /// Steps of the longest sequence.
    pub len: usize,
}

impl QaBatch {
    /// A batch of `sequences`.
    pub fn new<'a>(sequences: impl IntoIterator<Item = &'a Sequence>) -> Self {
        let mut b = Self {
            inputs: Vec::new(),
            targets: Vec::new(),
            scored: Vec::new(),
            tasks: Vec::new(),
            len: 0,
        };
        for s in sequences {
            let (i, t, m) = s.shifted();
            b.len = b.len.max(i.len());
            b.inputs.push(i.to_vec());
            b.targets.push(t.to_vec());
            b.scored.push(m.to_vec());
            b.tasks.push(s.task);
        }
        b
    }

    /// The same batch with `<pad>` as the input at every answer word (story reading): the
    /// answers are scored but never read, so none reaches a later question.
    pub fn blank_answers(mut self) -> Self {
        for (inputs, scored) in self.inputs.iter_mut().zip(&self.scored) {
            for t in 1..inputs.len() {
                if scored[t - 1] {
                    inputs[t] = PAD;
                }
            }
        }
        self
    }

    /// Sequences in the batch.
    pub fn size(&self) -> usize {
        self.inputs.len()
    }

    /// Input words of steps `0..steps`, padding left out.
    pub fn words(&self, steps: usize) -> usize {
        self.inputs.iter().map(|i| i.len().min(steps)).sum()
    }

    /// Sequences `start..start + count`, padded to this batch's length (not their own), so
    /// that a shard's windows are the whole batch's.
    pub fn shard(&self, start: usize, count: usize) -> Self {
        let range = start..start + count;
        Self {
            inputs: self.inputs[range.clone()].to_vec(),
            targets: self.targets[range.clone()].to_vec(),
            scored: self.scored[range.clone()].to_vec(),
            tasks: self.tasks[range].to_vec(),
            len: self.len,
        }
    }

    /// One-hot inputs of steps `t0..t1`, time-major rows (`(t − t0)·batch + b`), zero rows
    /// after a sequence's end.
    pub fn one_hot(&self, t0: usize, t1: usize) -> Vec<f32> {
        let b = self.size();
        let mut x = vec![0.0f32; (t1 - t0) * b * VOCAB];
        for (s, words) in self.inputs.iter().enumerate() {
            for t in t0..t1.min(words.len()) {
                x[((t - t0) * b + s) * VOCAB + words[t] as usize] = 1.0;
            }
        }
        x
    }

    /// The scored rows of steps `t0..t1` (same row order as [`Self::one_hot`]) and their
    /// target words.
    pub fn scored_rows(&self, t0: usize, t1: usize) -> (Vec<i64>, Vec<u32>) {
        let b = self.size();
        let (mut rows, mut words) = (Vec::new(), Vec::new());
        for t in t0..t1 {
            for s in 0..b {
                if self.scored[s].get(t).copied().unwrap_or(false) {
                    rows.push(((t - t0) * b + s) as i64);
                    words.push(self.targets[s][t]);
                }
            }
        }
        (rows, words)
    }
}

/// The `tasks_1-20_v1-2` folder for a `data_dir` setting, or the data root's.
pub fn babi_dir(data_dir: Option<&Path>) -> PathBuf {
    use mg_data::locate::{BABI_DIR, data_root, dataset_dir};
    match data_dir {
        Some(d) => dataset_dir(d, BABI_DIR),
        None => data_root(Path::new("")).join(BABI_DIR),
    }
}

/// A task's short name: `qa3` → `three supporting facts`.
pub fn task_name(task: u8) -> String {
    let stem = TASKS[task as usize - 1];
    stem.split_once('_')
        .map_or(stem, |(_, name)| name)
        .replace('-', " ")
}
