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

use super::rows::{Host, matrix};
use super::scoring::{Answers, ErrorReport, score_test_set};
use crate::harness::task::task_model;
use crate::harness::{
    EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo, Task, WindowLoss,
    shard_ranges,
};
use crate::model_config::{ModelConfig, check_bound, describe_dnc, dnc_floats_per_step};
use crate::viz::{Rgb, grey, stacked_grids};

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
        let (data, whole) = (self.data.collate(&samples), samples.len());
        let batch = CopyBatch { data, whole };
        let window = self.window::<B>(&batch, 0..batch.data.steps, device);
        let (logits, _) = model.forward_window(window.observations, window.steps, None);
        (batch.data, logits.host())
    }
}

impl Task for Copy {
    task_model!(Dnc, |task, device| task.dnc.init(device));

    const KIND: &'static str = "copy";
    const UNIT: &'static str = "bit";
    type Settings = RepeatCopyConfig;
    type ModelSettings = ModelConfig;
    type State<B: MgBackend> = DncState<B>;
    type Window<B: MgBackend> = CopyWindow<B>;
    type Output<B: MgBackend> = Tensor<B, 2>;
    type Batch = CopyBatch;
    type Report = ErrorReport;

    fn new(config: &Experiment<RepeatCopyConfig, ModelConfig>) -> anyhow::Result<Self> {
        let data = config.task.settings;
        check_bound("task.num_bits", data.num_bits, 4096)?;
        check_bound("task.max_length", data.max_length, 100_000)?;
        check_bound("task.max_repeats", data.max_repeats, 10_000)?;
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
        let shard = |rows| CopyBatch {
            data: batch.data.rows(rows),
            whole: batch.whole,
        };
        Some(shard_ranges(sizes).map(shard).collect())
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
        let (d, x, y) = (
            &batch.data,
            self.data.observation_size(),
            self.data.target_size(),
        );
        let rows = steps.start * d.batch_size..steps.end * d.batch_size;
        CopyWindow {
            observations: matrix(&d.observations, rows.clone(), x, device),
            targets: matrix(&d.targets, rows.clone(), y, device),
            scored_bits: d.mask[rows.clone()].iter().sum::<f32>() as f64 * y as f64,
            mask: matrix(&d.mask, rows, 1, device),
            steps: steps.len(),
            whole: batch.whole,
        }
    }

    fn forward<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        window: &CopyWindow<B>,
        state: Option<DncState<B>>,
        _path: ForwardPath,
    ) -> anyhow::Result<(Tensor<B, 2>, DncState<B>)> {
        Ok(model.forward_window(window.observations.clone(), window.steps, state))
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
        let (eval, w) = (&self.config.eval, self.data.target_size());
        score_test_set(
            request,
            eval.seed,
            Answers::Bits,
            eval.batch,
            |range, count| {
                let (d, logits) = self.test_logits(model, range, device);
                for s in 0..d.batch_size {
                    let rows = (0..d.steps).map(|t| t * d.batch_size + s);
                    for row in rows.filter(|&r| d.mask[r] != 0.0) {
                        count.answer(&logits[row * w..][..w], &d.targets[row * w..][..w]);
                    }
                    count.end_sequence();
                }
                Ok(())
            },
        )
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
        let (d, logits) = self.test_logits(model, index..index + 1, device);
        let prob: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
        let (x, y) = (self.data.observation_size(), self.data.target_size());
        let bit = |v: &[f32], r: usize, t: usize| -> Rgb {
            let [red, green, blue] = grey(1.0 - v[t * y + r]);
            let tint = if d.mask[t] == 0.0 { 30 } else { 0 };
            [red.saturating_sub(tint), green.saturating_sub(tint), blue]
        };
        let canvas = stacked_grids(
            &[
                ("input", x, &|r, t| grey(1.0 - d.observations[t * x + r])),
                ("target", y, &|r, t| bit(&d.targets, r, t)),
                ("predicted", y, &|r, t| bit(&prob, r, t)),
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
