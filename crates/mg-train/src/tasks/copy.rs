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
use std::time::Instant;

use anyhow::bail;
use burn::backend::Autodiff;
use burn::tensor::{Tensor, TensorData};
use mg_data::{RepeatCopyBatch, RepeatCopyConfig};
use mg_models::{Dnc, DncConfig, DncState};
use serde::{Deserialize, Serialize};

use crate::harness::progress::Progress;
use crate::harness::{
    EvalRequest, Experiment, ExperimentOf, ForwardPath, LossReduction, ModelInfo, Task, WindowLoss,
    shard_ranges,
};
use crate::model_config::{ModelConfig, ModelKind, check_bound, describe_dnc, dnc_floats_per_step};
use crate::viz::{Canvas, WHITE, grey};

/// The `[task]` table of a repeat-copy experiment.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CopySettings {
    /// `"copy"`.
    pub kind: String,
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
    /// Sequences `start..start + count`, with the whole batch's steps and size.
    fn shard(&self, start: usize, count: usize) -> Self {
        let d = &self.data;
        let b = d.batch_size;
        let rows = |v: &[f32]| -> Vec<f32> {
            let width = v.len() / (d.steps * b).max(1);
            (0..d.steps)
                .flat_map(|t| &v[(t * b + start) * width..(t * b + start + count) * width])
                .copied()
                .collect()
        };
        Self {
            data: RepeatCopyBatch {
                observations: rows(&d.observations),
                targets: rows(&d.targets),
                mask: rows(&d.mask),
                steps: d.steps,
                batch_size: count,
            },
            whole: self.whole,
        }
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

/// `eval.json` of a repeat-copy run.
#[derive(Serialize, Debug, Clone)]
pub struct CopyReport {
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Test sequences.
    pub sequences: usize,
    /// Seed of the test set.
    pub seed: u64,
    /// Wrong output bits (logit sign against the target) over scored bits.
    pub bit_error: f64,
    /// Sequences with at least one wrong bit.
    pub sequence_error: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Copy {
    fn test_batch(&self, range: Range<usize>) -> CopyBatch {
        let seed = self.config.eval.seed;
        let samples: Vec<_> = range.map(|k| self.data.sample(seed, k as u64)).collect();
        let data = self.data.collate(&samples);
        CopyBatch {
            whole: data.batch_size,
            data,
        }
    }

    /// Logits of a whole batch, on the host.
    fn infer<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        batch: &CopyBatch,
        device: &B::Device,
    ) -> Vec<f32> {
        let window = self.window::<B>(batch, 0..batch.data.steps, device);
        let (logits, _) = self.forward(model, &window, None, ForwardPath::Window);
        logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default()
    }
}

impl Task for Copy {
    const KIND: &'static str = "copy";
    const UNIT: &'static str = "bit";
    type Settings = CopySettings;
    type ModelSettings = ModelConfig;
    type Model<B: MgBackend> = Dnc<B>;
    type TrainModel<B: MgBackend> = Dnc<Autodiff<B>>;
    type State<B: MgBackend> = DncState<B>;
    type Window<B: MgBackend> = CopyWindow<B>;
    type Output<B: MgBackend> = Tensor<B, 2>;
    type Batch = CopyBatch;
    type Report = CopyReport;

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
        if config.model.kind != ModelKind::Dnc {
            bail!("model.kind: the copy task has a DNC model only; expected kind = \"dnc\"");
        }
        config.model.check_fields(0)?;
        let dnc = config
            .model
            .dnc(data.observation_size(), data.target_size())?;
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

    fn init<B: MgBackend>(&self, device: &B::Device) -> Dnc<B> {
        self.dnc.init(device)
    }

    fn init_train<B: MgBackend>(&self, device: &B::Device) -> Dnc<Autodiff<B>> {
        self.dnc.init(device)
    }

    fn as_model<B: MgBackend>(model: &Dnc<Autodiff<B>>) -> &Dnc<Autodiff<B>> {
        model
    }

    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<CopyBatch> {
        Ok(CopyBatch {
            data: self.data.batch(seed, index, size),
            whole: size,
        })
    }

    fn split_batch(&self, batch: &CopyBatch, sizes: &[usize]) -> Option<Vec<CopyBatch>> {
        Some(
            shard_ranges(sizes)
                .map(|rows| batch.shard(rows.start, rows.len()))
                .collect(),
        )
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
        let (whole, batch) = (batch.whole, &batch.data);
        let b = batch.batch_size;
        let rows = steps.len() * b;
        let (x, y) = (self.data.observation_size(), self.data.target_size());
        let slice = |v: &[f32], width: usize| -> Vec<f32> {
            v[steps.start * b * width..steps.end * b * width].to_vec()
        };
        let mask = slice(&batch.mask, 1);
        let scored_bits = mask.iter().sum::<f32>() as f64 * y as f64;
        CopyWindow {
            observations: Tensor::from_data(
                TensorData::new(slice(&batch.observations, x), [rows, x]),
                device,
            ),
            targets: Tensor::from_data(
                TensorData::new(slice(&batch.targets, y), [rows, y]),
                device,
            ),
            mask: Tensor::from_data(TensorData::new(mask, [rows, 1]), device),
            steps: steps.len(),
            whole,
            scored_bits,
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

    fn detach<B: MgBackend>(state: DncState<B>) -> DncState<B> {
        state.detach()
    }

    fn state_to_tensors<B: MgBackend>(state: DncState<B>) -> Vec<Tensor<B, 4>> {
        state.into_tensors()
    }

    fn state_from_tensors<B: MgBackend>(
        &self,
        _model: &Dnc<B>,
        tensors: Vec<Tensor<B, 4>>,
    ) -> anyhow::Result<DncState<B>> {
        DncState::from_tensors(tensors).map_err(anyhow::Error::from)
    }

    fn evaluate<B: MgBackend>(
        &self,
        model: &Dnc<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<CopyReport> {
        let start = Instant::now();
        let (n, width) = (request.sequences, self.data.target_size());
        let mut bar = Progress::new(n as u64, "sequences", request.show_progress);
        let (mut wrong_bits, mut bits, mut wrong_sequences) = (0usize, 0usize, 0usize);
        let mut first = 0;
        while first < n {
            let end = (first + self.config.eval.batch).min(n);
            let batch = self.test_batch(first..end);
            let logits = self.infer(model, &batch, device);
            let batch = &batch.data;
            let b = batch.batch_size;
            for s in 0..b {
                let mut any = false;
                for t in 0..batch.steps {
                    let row = t * b + s;
                    if batch.mask[row] == 0.0 {
                        continue;
                    }
                    for c in 0..width {
                        let i = row * width + c;
                        let wrong = (logits[i] > 0.0) != (batch.targets[i] > 0.5);
                        wrong_bits += usize::from(wrong);
                        any |= wrong;
                        bits += 1;
                    }
                }
                wrong_sequences += usize::from(any);
            }
            first = end;
            bar.set_position(end as u64);
            bar.report(format!(
                "bit error {:.4}",
                wrong_bits as f64 / bits.max(1) as f64
            ));
        }
        bar.clear();
        Ok(CopyReport {
            time_step: request.time_step,
            sequences: n,
            seed: self.config.eval.seed,
            bit_error: wrong_bits as f64 / bits.max(1) as f64,
            sequence_error: wrong_sequences as f64 / n as f64,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    fn report_lines(&self, r: &CopyReport) -> Vec<String> {
        vec![
            format!(
                "checkpoint at time step {}, {} test sequences (seed {:#x}), {:.1} s",
                r.time_step, r.sequences, r.seed, r.seconds
            ),
            format!(
                "  bit error {:.4}  sequences with a wrong bit {:.4}",
                r.bit_error, r.sequence_error
            ),
        ]
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
        let batch = self.test_batch(index..index + 1);
        let logits = self.infer(model, &batch, device);
        let batch = &batch.data;
        let prob: Vec<f32> = logits.iter().map(|&l| 1.0 / (1.0 + (-l).exp())).collect();
        let (steps, x, y) = (
            batch.steps,
            self.data.observation_size(),
            self.data.target_size(),
        );
        let cell = 16usize;
        let width = steps * cell + 120;
        let height = (x + 2 * y) * cell + 3 * 24 + 20;
        let mut canvas = Canvas::new(width, height, WHITE);
        let mut top = 10i64;
        let panels: [(&str, usize, &[f32]); 3] = [
            ("input", x, &batch.observations),
            ("target", y, &batch.targets),
            ("predicted", y, &prob),
        ];
        for (title, rows, values) in panels {
            canvas.text(10, top, title, 1, [0, 0, 0]);
            top += 12;
            canvas.grid(10, top, (rows, steps), cell, |r, t| {
                let v = values[t * rows + r];
                let g = grey(1.0 - v);
                if title != "input" && batch.mask[t] == 0.0 {
                    [g[0].saturating_sub(30), g[1].saturating_sub(30), g[2]]
                } else {
                    g
                }
            });
            top += (rows * cell + 12) as i64;
        }
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
