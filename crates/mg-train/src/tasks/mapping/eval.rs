//! Localization precision / recall / F, micro-averaged over pixels, steps and episodes of a
//! fixed test set, with carried state and threshold 0.5.

use mg_layers::MgBackend;
use std::time::Instant;

use burn::tensor::{ElementConversion, Int, Tensor};
use mg_data::batch::{MappingTensors, mapping_window};
use mg_data::mapping::Episode;
use mg_models::{Localizer, MemoryState};
use serde::Serialize;

use super::Mapping;
use crate::harness::EvalRequest;
use crate::harness::progress::Progress;
use crate::harness::train::on_shards;

/// Micro-averaged counts of one reader.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// Query side of the reader.
    pub query_size: usize,
    /// Predicted and true pixels.
    pub true_positives: u64,
    /// Predicted, not true.
    pub false_positives: u64,
    /// True, not predicted.
    pub false_negatives: u64,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f: f64,
}

impl Scores {
    fn finish(mut self) -> Self {
        let (tp, fp, fn_) = (
            self.true_positives as f64,
            self.false_positives as f64,
            self.false_negatives as f64,
        );
        self.precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        self.recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        let (p, r) = (self.precision, self.recall);
        self.f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        self
    }
}

/// The result of an evaluation, as written to `eval.json`.
#[derive(Serialize, Debug, Clone)]
pub struct EvalReport {
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Test episodes.
    pub episodes: usize,
    /// Seed of the test set.
    pub seed: u64,
    /// One entry per reader.
    pub readers: Vec<Scores>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// One inference step's tensors, logit maps (one per query size) and next state.
pub(super) type InferStep<B> = (Vec<MappingTensors<B>>, Vec<Tensor<B, 2>>, MemoryState<B>);

/// One inference step `t` of `episodes` (one list per query size) with carried state: the
/// step's tensors, one logit map per query size, and the next state.
pub(super) fn infer_step<B: MgBackend>(
    model: &Localizer<B>,
    episodes: &[Vec<Episode>],
    t: usize,
    state: Option<MemoryState<B>>,
    device: &B::Device,
) -> anyhow::Result<InferStep<B>> {
    let windows: Vec<_> = episodes
        .iter()
        .map(|e| mapping_window::<B>(e, t..t + 1, device))
        .collect();
    let queries: Vec<_> = windows.iter().map(|w| w.query.clone()).collect();
    let (logits, next) = model.forward_window(windows[0].input.clone(), &queries, 1, state)?;
    Ok((windows, logits, next))
}

/// Evaluates `model` on `episodes` test maps, step by step with carried state, threshold 0.5.
pub fn evaluate<B: MgBackend>(
    task: &Mapping,
    model: &Localizer<B>,
    episodes: usize,
    device: &B::Device,
    show_progress: bool,
) -> anyhow::Result<Vec<Scores>> {
    let config = task.config();
    score_episodes(
        model,
        &config.task.query_sizes,
        episodes,
        config.eval.batch,
        config.train.threads,
        |range| task.test_episodes(range),
        device,
        show_progress,
    )
}

/// Scores `model` on `episodes` episodes that `source` gives in batches of `batch` (one list
/// per query size, every episode of a batch as long as the others), step by step with carried
/// state, threshold 0.5. Up to `threads` batches run at once, one per thread; the counts are
/// integers, so the scores do not depend on `threads`.
#[allow(clippy::too_many_arguments)]
pub fn score_episodes<B: MgBackend>(
    model: &Localizer<B>,
    query_sizes: &[usize],
    episodes: usize,
    batch: usize,
    threads: usize,
    mut source: impl FnMut(std::ops::Range<usize>) -> anyhow::Result<Vec<Vec<Episode>>>,
    device: &B::Device,
    show_progress: bool,
) -> anyhow::Result<Vec<Scores>> {
    let mut totals: Vec<Scores> = query_sizes
        .iter()
        .map(|&q| Scores {
            query_size: q,
            ..Scores::default()
        })
        .collect();
    let mut bar = Progress::new(episodes as u64, "episodes", show_progress);
    let mut start = 0;
    while start < episodes {
        let mut ranges = Vec::new();
        let mut end = start;
        while ranges.len() < threads.max(1) && end < episodes {
            let next = (end + batch.max(1)).min(episodes);
            ranges.push(end..next);
            end = next;
        }
        let batches = ranges
            .into_iter()
            .map(&mut source)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let work: Vec<_> = batches.iter().map(|b| (model.clone(), b)).collect();
        let counts = on_shards(work, |(model, batch)| count_batch(&model, batch, device));
        for batch_counts in counts {
            let batch_counts = batch_counts?;
            for (total, [tp, fp, fn_]) in totals.iter_mut().zip(batch_counts) {
                total.true_positives += tp;
                total.false_positives += fp;
                total.false_negatives += fn_;
            }
        }
        let f = totals[0].finish().f;
        bar.set_position(end as u64);
        bar.report(format!("F {f:.4}"));
        start = end;
    }
    bar.clear();
    Ok(totals.into_iter().map(Scores::finish).collect())
}

/// True positives, false positives and false negatives of each reader (one list of `batch`
/// per query size) over one batch of episodes, step by step with carried state.
fn count_batch<B: MgBackend>(
    model: &Localizer<B>,
    batch: &[Vec<Episode>],
    device: &B::Device,
) -> anyhow::Result<Vec<[u64; 3]>> {
    let len = batch[0][0].len();
    let mut state = None;
    let mut counts: Vec<Option<[Tensor<B, 1, Int>; 3]>> = vec![None; batch.len()];
    for t in 0..len {
        let (windows, logits, next) = infer_step(model, batch, t, state, device)?;
        state = Some(next);
        for (r, (logit, w)) in logits.into_iter().zip(&windows).enumerate() {
            let pred = logit.greater_equal_elem(0.0).int();
            let truth = w.target.clone().greater_equal_elem(0.5).int();
            let tp = (pred.clone() * truth.clone()).sum();
            let fp = (pred.clone() - pred.clone() * truth.clone()).sum();
            let fn_ = (truth.clone() - pred * truth).sum();
            counts[r] = Some(match counts[r].take() {
                None => [tp, fp, fn_],
                Some([a, b, c]) => [a + tp, b + fp, c + fn_],
            });
        }
    }
    Ok(counts
        .into_iter()
        .map(|c| match c {
            Some(c) => c.map(|n| n.into_scalar().elem::<i64>() as u64),
            None => [0; 3],
        })
        .collect())
}

/// Runs an evaluation and builds its report.
pub fn report<B: MgBackend>(
    task: &Mapping,
    model: &Localizer<B>,
    request: &EvalRequest,
    device: &B::Device,
) -> anyhow::Result<EvalReport> {
    let start = Instant::now();
    let config = task.config();
    let episodes = request.sequences;
    let readers = evaluate(task, model, episodes, device, request.show_progress)?;
    Ok(EvalReport {
        time_step: request.time_step,
        episodes,
        seed: config.eval.seed,
        readers,
        seconds: start.elapsed().as_secs_f64(),
    })
}
