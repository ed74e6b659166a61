//! Repeat copy (DeepMind's DNC example task, `mg_data::RepeatCopyConfig`): a random binary
//! pattern, then the number of repeats; the DNC writes the pattern that many times and an end
//! marker. Loss: the reference's masked sigmoid cross-entropy (summed, divided by the batch
//! size); evaluation: the fraction of wrong bits and of sequences with any wrong bit.
//! A batch splits into shards of consecutive sequences (`[train] threads`): each keeps the
//! whole batch's length and divides by the whole batch's size, so that the shards' losses add
//! up to the batch's.

use mg_layers::MgBackend;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use mg_data::{RepeatCopyBatch, RepeatCopyConfig};
use mg_models::{Dnc, DncConfig, DncState};
use serde::{Deserialize, Serialize};

use super::rows::{Host, matrix, rows_of};
use super::scoring::{Answers, ErrorReport, score_test_set};
use crate::harness::task::task_model;
use crate::harness::{
    EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo, Task, WindowLoss,
    shard_ranges,
};
use crate::model_config::{ModelConfig, check_bound, describe_dnc, dnc_floats_per_step};
use crate::viz::{Rgb, grey, stacked_grids};

/// The `[task]` table of a repeat-copy experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CopySettings {
    /// Bits per pattern vector (reference 4).
    pub num_bits: usize,
    /// Shortest pattern.
    pub min_length: usize,
    /// Longest pattern.
    pub max_length: usize,
    /// Fewest repeats.
    pub min_repeats: usize,
    /// Most repeats.
    pub max_repeats: usize,
    /// The repeat count is presented as `repeats / norm_max` (reference 10).
    #[serde(default = "default_norm_max")]
    pub norm_max: f32,
}

fn default_norm_max() -> f32 {
    10.0
}

/// The repeat-copy task of one experiment.
#[derive(Debug, Clone)]
pub struct Copy {
    config: ExperimentOf<Copy>,
    data: RepeatCopyConfig,
    dnc: DncConfig,
}

/// A batch of sequences, or a shard of one.
#[derive(Clone, Debug)]
pub struct CopyBatch {
    /// The sequences, time-major, padded to the whole batch's longest.
    pub data: RepeatCopyBatch,
    /// Sequences of the whole batch, which the summed loss is divided by.
    pub whole: usize,
}

impl CopyBatch {
    /// Sequences `rows` of the batch, with the whole batch's steps and size.
    fn shard(&self, rows: Range<usize>) -> Self {
        let d = &self.data;
        let part = |v: &[f32]| rows_of(v, d.steps, d.batch_size, rows.start, rows.len());
        let data = RepeatCopyBatch {
            observations: part(&d.observations),
            targets: part(&d.targets),
            mask: part(&d.mask),
            steps: d.steps,
            batch_size: rows.len(),
        };
        Self { data, ..*self }
    }
}

/// The tensors of one window, time-major rows.
pub struct CopyWindow<B: MgBackend> {
    observations: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    steps: usize,
    /// Sequences of the whole batch (the summed loss's divisor).
    whole: usize,
    scored_bits: f64,
}

impl Copy {
    /// Test sequences `range` as one batch, and the model's logits for it on the host.
    fn test_logits<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        range: Range<usize>,
        device: &B::Device,
    ) -> (RepeatCopyBatch, Vec<f32>) {
        let seed = self.config.eval.seed;
        let samples: Vec<_> = range.map(|k| self.data.sample(seed, k as u64)).collect();
        let data = self.data.collate(&samples);
        let batch = CopyBatch {
            whole: data.batch_size,
            data,
        };
        let window = self.window::<B>(&batch, 0..batch.data.steps, device);
        let (logits, _) = self.forward(model, &window, None, ForwardPath::Window);
        let logits = logits.host();
        (batch.data, logits)
    }
}

impl Task for Copy {
    task_model!(Dnc, |task, device| task.dnc.init(device));

    const KIND: &'static str = "copy";
    const UNIT: &'static str = "bit";
    type Settings = CopySettings;
    type ModelSettings = ModelConfig;
    type State<B: MgBackend> = DncState<B>;
    type Window<B: MgBackend> = CopyWindow<B>;
    type Output<B: MgBackend> = Tensor<B, 2>;
    type Batch = CopyBatch;
    type Report = ErrorReport;

    fn new(config: &Experiment<CopySettings, ModelConfig>) -> anyhow::Result<Self> {
        let s = &config.task;
        check_bound("task.num_bits", s.num_bits, 4096)?;
        check_bound("task.max_length", s.max_length, 100_000)?;
        check_bound("task.max_repeats", s.max_repeats, 10_000)?;
        let data = RepeatCopyConfig {
            num_bits: s.num_bits,
            min_length: s.min_length,
            max_length: s.max_length,
            min_repeats: s.min_repeats,
            max_repeats: s.max_repeats,
            norm_max: s.norm_max,
        };
        data.validate().map_err(|e| anyhow::anyhow!("task: {e}"))?;
        let dnc =
            (config.model.dnc("copy task")?).dnc(data.observation_size(), data.target_size())?;
        Ok(Self {
            config: config.clone(),
            data,
            dnc,
        })
    }

    fn info(&self) -> ModelInfo {
        let mut info = ModelInfo {
            params: self.dnc.num_params(),
            memory_cells: self.dnc.memory_size(),
            ..ModelInfo::default()
        };
        let d = &self.data;
        info.lines.push(format!(
            "  task: {} bits, patterns of {}–{} vectors repeated {}–{} times",
            d.num_bits, d.min_length, d.max_length, d.min_repeats, d.max_repeats
        ));
        describe_dnc(&self.dnc, &mut info.lines, &mut info.json);
        info
    }

    fn floats_per_step(&self) -> f64 {
        dnc_floats_per_step(&self.dnc)
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<CopyBatch> {
        Ok(CopyBatch {
            data: self.data.batch(seed, index, size),
            whole: size,
        })
    }

    fn split_batch(&self, batch: &CopyBatch, sizes: &[usize]) -> Option<Vec<CopyBatch>> {
        Some(shard_ranges(sizes).map(|rows| batch.shard(rows)).collect())
    }

    fn sequence_len(&self, batch: &CopyBatch) -> usize {
        batch.data.steps
    }

    fn window<B: MgBackend>(
        &self,
        batch: &CopyBatch,
        steps: Range<usize>,
        device: &B::Device,
    ) -> CopyWindow<B> {
        let (d, y) = (&batch.data, self.data.target_size());
        let rows = steps.start * d.batch_size..steps.end * d.batch_size;
        let scored = d.mask[rows.clone()].iter().sum::<f32>() as f64;
        CopyWindow {
            observations: matrix(
                &d.observations,
                rows.clone(),
                self.data.observation_size(),
                device,
            ),
            targets: matrix(&d.targets, rows.clone(), y, device),
            mask: matrix(&d.mask, rows, 1, device),
            steps: steps.len(),
            whole: batch.whole,
            scored_bits: scored * y as f64,
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        window: &CopyWindow<B>,
        state: Option<DncState<B>>,
        _path: ForwardPath,
    ) -> (Tensor<B, 2>, DncState<B>) {
        model.forward_window(window.observations.clone(), window.steps, state)
    }

    fn loss<B: MgBackend>(
        &self,
        logits: Tensor<B, 2>,
        window: &CopyWindow<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B> {
        let per_bit = super::losses::sigmoid_cross_entropy(logits, window.targets.clone());
        let masked = (per_bit.sum_dim(1) * window.mask.clone()).sum();
        let batch = window.whole as f64;
        match reduction {
            LossReduction::Sum => WindowLoss::new(masked / batch, window.scored_bits / batch),
            LossReduction::Mean => {
                WindowLoss::new(masked / window.scored_bits.max(1.0), window.scored_bits)
            }
        }
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<ErrorReport> {
        let (seed, size, w) = (
            self.config.eval.seed,
            self.config.eval.batch,
            self.data.target_size(),
        );
        score_test_set(request, seed, Answers::Bits, size, |range, count| {
            let (d, logits) = self.test_logits(model, range, device);
            let b = d.batch_size;
            for s in 0..b {
                for row in (0..d.steps)
                    .map(|t| t * b + s)
                    .filter(|&r| d.mask[r] != 0.0)
                {
                    count.answer(
                        &logits[row * w..(row + 1) * w],
                        &d.targets[row * w..(row + 1) * w],
                    );
                }
                count.end_sequence();
            }
            Ok(())
        })
    }

    /// One PNG: the input (time across, channels down), the target and the predicted
    /// probability of each output bit, unscored steps shaded.
    fn draw<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(out)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
        let (d, logits) = self.test_logits(model, index..index + 1, device);
        let prob: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
        let (x, y) = (self.data.observation_size(), self.data.target_size());
        let shade = |t: usize, g: Rgb| -> Rgb {
            if d.mask[t] == 0.0 {
                [g[0].saturating_sub(30), g[1].saturating_sub(30), g[2]]
            } else {
                g
            }
        };
        let canvas = stacked_grids(
            &[
                ("input", x, &|r, t| grey(1.0 - d.observations[t * x + r])),
                ("target", y, &|r, t| {
                    shade(t, grey(1.0 - d.targets[t * y + r]))
                }),
                ("predicted", y, &|r, t| {
                    shade(t, grey(1.0 - prob[t * y + r]))
                }),
            ],
            d.steps,
            16,
        );
        let path = out.join("sequence.png");
        canvas.save_png(&path)?;
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::testing::assert_shards_match;

    /// A batch of 3 sequences of different lengths cut into shards of 2 and 1 gives the loss
    /// and gradients of the whole batch, window by window with the DNC's state carried, with
    /// the reference's loss (divided by the batch size) and a mean loss.
    #[test]
    fn shards_give_the_whole_batch_s_gradients() {
        for loss in ["sum", "mean"] {
            let text = format!(
                "[task]\nkind = \"copy\"\nnum_bits = 3\nmin_length = 1\nmax_length = 3\n\
                 min_repeats = 1\nmax_repeats = 2\n\
                 [model]\nkind = \"dnc\"\ncontroller = 4\nmemory_slots = 3\nword_size = 2\n\
                 read_heads = 2\n\
                 [train]\nbatch = 3\nwindow = 4\nloss = \"{loss}\"\n"
            );
            let config = ExperimentOf::<Copy>::parse(&text).unwrap();
            let task = Copy::new(&config).unwrap();
            let (windows, carried) = assert_shards_match(&task, &config, &[2, 1], 2);
            assert!(carried > 0 && windows > carried, "{windows} windows");
        }
    }
}
