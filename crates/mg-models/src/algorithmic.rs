//! Multigrid models of the algorithmic tasks (paper §4.3, appendix B.2.1): the memory + CNN
//! reader of associative recall and the encoder–decoder of priority sort, with a bit map or a
//! fully connected class head, built from [`AlgoWidths`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::{
    Activation, LevelSpan, MgConvConfig, MgConvLstmConfig, MgLstmStackConfig, NormMode, Residual,
    StackState, levels, num_trainable_params,
};

use crate::mapping::{check_layer_widths, check_level_growth};
use crate::net::{KindConfig, Net, NetConfig};
use crate::{Dnc, DncConfig, MemoryMesh, MemoryMeshConfig, MgReader, MgReaderConfig, ModelError};

/// What an algorithmic model emits per answer.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 3×3 logit map: up to 9 bits of a vector (sigmoid per bit).
    Bits,
    /// Class logits (softmax) from a fully connected layer over the last 3×3 grid.
    Classes(usize),
}

/// The shape of an algorithmic model: writer (encoder) layers growing from the input
/// pyramid, a reader (or decoder tail) narrowing back to the 3×3 grid.
#[derive(Config, Debug, PartialEq)]
pub struct AlgoWidths {
    /// Levels of each writer layer, coarsest (3×3) first.
    pub levels: Vec<usize>,
    /// Channels of each writer layer.
    pub channels: Vec<usize>,
    /// Channels of the narrowing layers.
    pub tail_channels: usize,
    /// Levels of the input pyramid (1: the 3×3 grid; 3 or 5 for MNIST images).
    #[config(default = 1)]
    pub input_levels: usize,
    /// Layers on the full pyramid before the narrowing starts (2 in the reference MNIST
    /// reader, its R10 and R11).
    #[config(default = 0)]
    pub tail_same: usize,
    /// Batch normalisation after every LSTM output and every conv (the reference MNIST
    /// model: batch statistics pooled over the window).
    #[config(default = "None")]
    pub norm: Option<NormMode>,
    /// Added to the variance by the normalisations (reference 1e-3).
    #[config(default = 1e-3)]
    pub norm_epsilon: f64,
}

impl AlgoWidths {
    /// The MNIST recall model of the authors' code (reference-implementation.md §3.3–3.4):
    /// five layers on 3×3, 6×6 and 12×12 with 4, 4, 8, 8, 16 channels, a 16-channel tail
    /// with two full-pyramid layers, batch norm pooled over time; 7,560 memory cells.
    pub fn mnist_recall_reference() -> Self {
        Self::new(vec![3; 5], vec![4, 4, 8, 8, 16], 16)
            .with_input_levels(3)
            .with_tail_same(2)
            .with_norm(Some(NormMode::BatchPooled))
    }

    /// The levels of writer layer `k`.
    fn span(&self, k: usize) -> LevelSpan {
        levels(0, self.levels[k])
    }

    /// Checks the widths, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid =
            |field: &'static str, message: String| Err(ModelError::invalid(field, message));
        check_layer_widths(&self.levels, &self.channels)?;
        if self.tail_channels == 0 {
            return invalid("tail_channels", "is 0; expected at least 1".into());
        }
        if self.input_levels == 0 {
            return invalid("input_levels", "is 0; expected at least 1".into());
        }
        let first = self.levels[0];
        if first < self.input_levels || first > self.input_levels + 1 {
            return invalid(
                "levels",
                format!(
                    "starts with {first}; the first layer has the input's {} levels or one more",
                    self.input_levels
                ),
            );
        }
        check_level_growth(&self.levels)
    }

    fn lstm(&self, d_in: usize, c: usize, input: LevelSpan, output: LevelSpan) -> MgConvLstmConfig {
        MgConvLstmConfig::new(d_in, c, input, output)
            .with_norm(self.norm)
            .with_norm_epsilon(self.norm_epsilon)
    }

    fn conv(&self, d_in: usize, d_out: usize, input: LevelSpan, output: LevelSpan) -> MgConvConfig {
        MgConvConfig::new(d_in, d_out, input, output)
            .with_norm(self.norm)
            .with_norm_epsilon(self.norm_epsilon)
    }

    /// The writer (or encoder, or decoder) for `d_input`-channel input pyramids: residuals
    /// from layer `k-2` into every odd layer `k ≥ 3` (1-based) that is at least as wide.
    pub fn writer(&self, d_input: usize) -> MemoryMeshConfig {
        let (mut d_in, mut in_span) = (d_input, levels(0, self.input_levels));
        let mut layers = Vec::new();
        for (k, &c) in self.channels.iter().enumerate() {
            layers.push(self.lstm(d_in, c, in_span, self.span(k)));
            (d_in, in_span) = (c, self.span(k));
        }
        let residuals = (2..self.channels.len())
            .step_by(2)
            .filter(|&k| self.channels[k - 2] <= self.channels[k])
            .map(|k| Residual { from: k - 2, to: k })
            .collect();
        MemoryMeshConfig::new(MgLstmStackConfig::new(layers).with_residuals(residuals))
    }

    /// The recall reader: layer `k` reads writer layer `k` (`[reader, writer]` on channels),
    /// then the tail narrows to the 3×3 grid with `d_output` channels.
    pub fn reader(&self, d_query: usize, answer: Answer) -> MgReaderConfig {
        let mut layers = Vec::new();
        let mut residuals = Vec::new();
        let mut features = Vec::new();
        let (mut d_in, mut in_span) = (d_query, levels(0, self.input_levels));
        for (k, &c) in self.channels.iter().enumerate() {
            layers.push(self.conv(d_in, c, in_span, self.span(k)));
            if k >= 2 && k % 2 == 0 && features[k - 2] <= c {
                residuals.push(Residual { from: k - 2, to: k });
            }
            features.push(2 * c);
            (d_in, in_span) = (2 * c, self.span(k));
        }
        self.tail(&mut layers, &mut residuals, d_in, in_span.count, answer);
        MgReaderConfig::new(layers)
            .with_residuals(residuals)
            .with_memory(self.channels.clone())
    }

    /// The decoder's conv half: the tail alone, reading the last decoder layer's pyramid.
    pub fn decoder_tail(&self, answer: Answer) -> MgReaderConfig {
        let last = self.channels.len() - 1;
        let mut layers = Vec::new();
        let mut residuals = Vec::new();
        self.tail(
            &mut layers,
            &mut residuals,
            self.channels[last],
            self.levels[last],
            answer,
        );
        MgReaderConfig::new(layers).with_residuals(residuals)
    }

    /// Channels of the last grid: 1 logit map for bits, 10 (the class count) for classes.
    fn d_answer(answer: Answer) -> usize {
        match answer {
            Answer::Bits => 1,
            Answer::Classes(n) => n,
        }
    }

    /// Appends `tail_same` full-pyramid layers, then (drop the finest level, same) pairs with
    /// residuals between the `same` layers, then the answer layer on the 3×3 grid.
    fn tail(
        &self,
        layers: &mut Vec<MgConvConfig>,
        residuals: &mut Vec<Residual>,
        mut d_in: usize,
        total: usize,
        answer: Answer,
    ) {
        let t = self.tail_channels;
        let mut previous_same = None;
        for _ in 0..self.tail_same {
            layers.push(self.conv(d_in, t, levels(0, total), levels(0, total)));
            previous_same = Some(layers.len() - 1);
            d_in = t;
        }
        let mut count = total;
        let last = |d_in, input| {
            let layer = self.conv(d_in, Self::d_answer(answer), input, levels(0, 1));
            match answer {
                // The reference MNIST reader's last conv keeps its ReLU and batch norm.
                Answer::Classes(_) => layer,
                Answer::Bits => layer.with_activation(Activation::Identity).with_norm(None),
            }
        };
        while count > 2 {
            count -= 1;
            layers.push(self.conv(d_in, t, levels(0, count + 1), levels(0, count)));
            layers.push(self.conv(t, t, levels(0, count), levels(0, count)));
            let same = layers.len() - 1;
            if let Some(from) = previous_same {
                residuals.push(Residual { from, to: same });
            }
            previous_same = Some(same);
            d_in = t;
        }
        layers.push(last(d_in, levels(0, count)));
    }
}

/// Configuration of an [`AlgoModel`].
#[derive(Config, Debug, PartialEq)]
pub struct AlgoModelConfig {
    /// Writer (recall) or encoder (sort).
    pub writer: MemoryMeshConfig,
    /// The decoder's conv-LSTM half (sort only); its layers have the encoder's shapes.
    #[config(default = "None")]
    pub decoder: Option<MemoryMeshConfig>,
    /// The reader (recall) or the decoder's conv half (sort).
    pub reader: MgReaderConfig,
    /// The answer: a bit map or classes.
    pub answer: Answer,
}

impl AlgoModelConfig {
    /// A recall model for `d_input`-channel items and queries.
    pub fn memory_reader(widths: &AlgoWidths, d_input: usize, answer: Answer) -> Self {
        Self::new(
            widths.writer(d_input),
            widths.reader(d_input, answer),
            answer,
        )
    }

    /// A sort model for `d_input`-channel items; the decoder sees zeros of the same width.
    pub fn encoder_decoder(widths: &AlgoWidths, d_input: usize, answer: Answer) -> Self {
        Self::new(widths.writer(d_input), widths.decoder_tail(answer), answer)
            .with_decoder(Some(widths.writer(d_input)))
    }

    /// Inputs of the fully connected class head (9 cells × the last grid's channels).
    fn head_inputs(&self, classes: usize) -> usize {
        9 * classes
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        let head = match self.answer {
            Answer::Bits => 0,
            Answer::Classes(n) => self.head_inputs(n) * n + n,
        };
        self.writer.num_params()
            + self
                .decoder
                .as_ref()
                .map_or(0, MemoryMeshConfig::num_params)
            + self.reader.num_params()
            + head
    }

    /// Memory cells of the writer (the encoder; the decoder starts from a copy of it).
    pub fn memory_cells(&self) -> usize {
        self.writer.memory_cells()
    }

    /// Checks the pieces, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.reader.validate()?;
        if let Some(decoder) = &self.decoder
            && decoder.stack.layers != self.writer.stack.layers
        {
            return Err(ModelError::invalid(
                "decoder",
                "its layers differ from the encoder's; the memory transfer needs equal shapes",
            ));
        }
        if let Answer::Classes(0) = self.answer {
            return Err(ModelError::invalid(
                "answer",
                "0 classes; expected at least 1",
            ));
        }
        Ok(())
    }

    /// Builds the model: the writer as [`MemoryMeshConfig::init`], the class head with
    /// weight and bias `U(±1/sqrt(fan_in))` (reference-implementation.md §1.4).
    ///
    /// # Panics
    /// If [`Self::validate`] fails.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> AlgoModel<B> {
        if let Err(e) = self.validate() {
            panic!("AlgoModel: {e}");
        }
        let head = match self.answer {
            Answer::Bits => None,
            Answer::Classes(n) => {
                let fan_in = self.head_inputs(n);
                let d = 1.0 / (fan_in as f64).sqrt();
                Some(
                    LinearConfig::new(fan_in, n)
                        .with_initializer(Initializer::Uniform { min: -d, max: d })
                        .init(device),
                )
            }
        };
        AlgoModel {
            writer: self.writer.init(device),
            decoder: self.decoder.as_ref().map(|d| d.init(device)),
            reader: self.reader.init(device),
            head,
        }
    }
}

/// A multigrid model of an algorithmic task (paper Figure 2): writer + reader for recall,
/// encoder + decoder for sort, with a bit-map or class answer.
#[derive(Module, Debug)]
pub struct AlgoModel<B: Backend> {
    /// The writer or encoder.
    pub writer: MemoryMesh<B>,
    /// The decoder's conv-LSTM half (sort).
    pub decoder: Option<MemoryMesh<B>>,
    /// The reader or the decoder's conv half.
    pub reader: MgReader<B>,
    /// The fully connected class head (MNIST variants).
    pub head: Option<Linear<B>>,
}

impl<B: MgBackend> AlgoModel<B> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        num_trainable_params(self)
    }

    /// Memory cells of the writer.
    pub fn memory_cells(&self) -> usize {
        self.writer.memory_cells()
    }

    /// The answer of a `[rows, C, 3, 3]` grid: 9 bit logits, or class logits through the
    /// head (flattened in (H, W, C) order, as the reference).
    fn answer(&self, grid: Tensor<B, 4>) -> Tensor<B, 2> {
        let [rows, c, h, w] = grid.dims();
        match &self.head {
            None => grid.reshape([rows, c * h * w]),
            Some(head) => head.forward(grid.permute([0, 2, 3, 1]).reshape([rows, h * w * c])),
        }
    }

    /// Associative recall: writes `steps` items, then the reader reads the writer's last
    /// step with the query.
    ///
    /// # Shapes
    /// - `items[i]`: `[steps·batch, d_input, h_i, w_i]` per input level (time-major rows)
    /// - `query[i]`: `[batch, d_input, h_i, w_i]`
    /// - returns `[batch, 9]` bit logits or `[batch, classes]`
    pub fn recall(
        &self,
        items: &[Tensor<B, 4>],
        query: &[Tensor<B, 4>],
        steps: usize,
    ) -> Tensor<B, 2> {
        let batch = query[0].dims()[0];
        let written = self.writer.forward_window(items, steps, None);
        let last: Vec<Vec<Tensor<B, 4>>> = written
            .outputs
            .into_iter()
            .map(|layer| {
                layer
                    .into_iter()
                    .map(|t| t.narrow(0, (steps - 1) * batch, batch))
                    .collect()
            })
            .collect();
        let out = self.reader.forward_window(query, &last, 1);
        self.answer(
            out.into_iter()
                .next()
                .expect("the reader ends on one level"),
        )
    }

    /// Priority sort: encodes `steps_in` items, copies the encoder's state into the decoder,
    /// which runs `steps_out` steps on zero input.
    ///
    /// # Shapes
    /// - `items[i]`: `[steps_in·batch, d_input, h_i, w_i]` per input level
    /// - returns `[steps_out·batch, 9]` bit logits or `[steps_out·batch, classes]`
    ///
    /// # Panics
    /// If the model has no decoder.
    pub fn sort(&self, items: &[Tensor<B, 4>], steps_in: usize, steps_out: usize) -> Tensor<B, 2> {
        let decoder = self
            .decoder
            .as_ref()
            .expect("AlgoModel::sort needs a decoder");
        let batch = items[0].dims()[0] / steps_in;
        let encoded = self.writer.forward_window(items, steps_in, None);
        let zeros: Vec<Tensor<B, 4>> = items
            .iter()
            .map(|t| {
                let [_, c, h, w] = t.dims();
                Tensor::zeros([steps_out * batch, c, h, w], &t.device())
            })
            .collect();
        let decoded = decoder.forward_window(&zeros, steps_out, Some(encoded.state));
        let top = decoded.outputs.last().expect("a decoder layer").clone();
        let out = self.reader.forward_window(&top, &[], steps_out);
        self.answer(out.into_iter().next().expect("the tail ends on one level"))
    }

    /// The encoder's final state after `steps` items (for pictures of the memory).
    pub fn encode(
        &self,
        items: &[Tensor<B, 4>],
        steps: usize,
    ) -> (Vec<Vec<Tensor<B, 4>>>, StackState<B>) {
        let out = self.writer.forward_window(items, steps, None);
        (out.outputs, out.state)
    }
}

/// Configuration of an [`AlgoNet`].
pub type AlgoNetConfig = NetConfig<AlgoModelConfig, DncConfig>;

/// Any model the algorithmic tasks train: a multigrid memory + reader or encoder–decoder, or
/// a DNC fed one flattened item per step.
pub type AlgoNet<B> = Net<AlgoModel<B>, Dnc<B>>;

impl KindConfig for AlgoModelConfig {
    type Model<B: MgBackend> = AlgoModel<B>;

    fn num_params(&self) -> usize {
        AlgoModelConfig::num_params(self)
    }

    fn memory_cells(&self) -> usize {
        AlgoModelConfig::memory_cells(self)
    }

    fn init<B: MgBackend>(&self, device: &B::Device) -> AlgoModel<B> {
        AlgoModelConfig::init(self, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;

    /// The authors' MNIST recall model (reference-implementation.md §3.3–3.4), layer by layer.
    #[test]
    fn mnist_recall_reference_counts() {
        let widths = AlgoWidths::mnist_recall_reference();
        let config = AlgoModelConfig::memory_reader(&widths, 1, Answer::Classes(10));
        let writer: Vec<usize> = config
            .writer
            .stack
            .layers
            .iter()
            .map(|l| l.num_params())
            .collect();
        assert_eq!(writer, [2_808, 5_832, 15_120, 23_184, 60_192]);
        assert_eq!(config.writer.num_params(), 107_136);
        let reader: Vec<usize> = config
            .reader
            .layers
            .iter()
            .map(|l| l.num_params())
            .collect();
        assert_eq!(
            reader,
            [
                288, 2_052, 4_104, 8_136, 16_272, 32_400, 16_272, 11_616, 9_312, 2_910
            ]
        );
        let residuals: Vec<(usize, usize)> = config
            .reader
            .residuals
            .iter()
            .map(|r| (r.from, r.to))
            .collect();
        assert_eq!(residuals, [(0, 2), (2, 4), (6, 8)]);
        assert_eq!(config.num_params(), 211_408);
        assert_eq!(config.memory_cells(), 7_560);
        let model = config.init::<TestBackend>(&Default::default());
        assert_eq!(model.num_params(), 211_408);
        assert_eq!(model.memory_cells(), 7_560);
    }

    fn pyramid(rows: usize, levels: usize, d: usize) -> Vec<Tensor<TestBackend, 4>> {
        (0..levels)
            .map(|l| {
                let s = 3 << l;
                Tensor::ones([rows, d, s, s], &Default::default())
            })
            .collect()
    }

    #[test]
    fn recall_and_sort_shapes() {
        let device = Default::default();
        let widths = AlgoWidths::new(vec![2, 2, 3], vec![2, 2, 4], 4);
        widths.validate().unwrap();
        let recall =
            AlgoModelConfig::memory_reader(&widths, 1, Answer::Bits).init::<TestBackend>(&device);
        let (steps, batch) = (3, 2);
        let y = recall.recall(&pyramid(steps * batch, 1, 1), &pyramid(batch, 1, 1), steps);
        assert_eq!(y.dims(), [batch, 9]);
        let config = AlgoModelConfig::encoder_decoder(&widths, 2, Answer::Classes(10));
        assert!(config.decoder.is_some());
        let sort = config.init::<TestBackend>(&device);
        assert_eq!(sort.num_params(), config.num_params());
        let y = sort.sort(&pyramid(steps * batch, 1, 2), steps, 4);
        assert_eq!(y.dims(), [4 * batch, 10]);
    }

    /// The decoder starts from the encoder's memory: changing an early item changes the
    /// first decoded output, although the decoder itself only ever sees zeros.
    #[test]
    fn the_decoder_starts_from_the_encoder_state() {
        let device = Default::default();
        let widths = AlgoWidths::new(vec![1, 2], vec![3, 3], 3);
        let model =
            AlgoModelConfig::encoder_decoder(&widths, 1, Answer::Bits).init::<TestBackend>(&device);
        let a = pyramid(4, 1, 1);
        let b = vec![a[0].clone().slice_assign(
            [0..1, 0..1, 0..3, 0..3],
            Tensor::zeros([1, 1, 3, 3], &device),
        )];
        let ya: Vec<f32> = model.sort(&a, 2, 2).into_data().to_vec().unwrap();
        let yb: Vec<f32> = model.sort(&b, 2, 2).into_data().to_vec().unwrap();
        let diff: f32 = ya[..9]
            .iter()
            .zip(&yb[..9])
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert!(diff > 1e-6, "the first output ignores the encoder's memory");
    }

    #[test]
    fn bad_widths_are_named() {
        let e = AlgoWidths::new(vec![3, 3], vec![4, 4], 4)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("levels"), "{e}");
        let e = AlgoWidths::new(vec![1], vec![4, 4], 4)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("channels"), "{e}");
        let e = AlgoWidths::new(vec![1, 3], vec![4, 4], 4)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("grow by one"), "{e}");
    }
}
