//! The question-answering models of bAbI (paper appendix B.3.1, Figure 11): a 1D multigrid
//! memory whose conv-LSTM layers grow from a 1×1 to a 1×16 grid, read at every step by
//! multigrid conv layers that scale back to 1×1, and the DNC baseline; both read one word per
//! step and emit logits over the vocabulary for the next word.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::{
    Activation, Geometry, LevelSpan, MgBackend, MgConvConfig, MgConvLstmConfig, MgLstmStackConfig,
    Residual, StackState, levels, num_trainable_params,
};

use mg_layers::backend::split_steps;

use crate::mapping::{check_layer_widths, check_level_growth};
use crate::net::{Forward, Kind, KindConfig, Net, NetConfig, Rows};
use crate::{Dnc, DncConfig, MemoryMesh, MemoryMeshConfig, MgReader, MgReaderConfig, ModelError};

/// The shape of a 1D multigrid question-answering model.
#[derive(Config, Debug, PartialEq)]
pub struct QaWidths {
    /// Levels of each writer layer (level `l` is a `1 × 2^l` row), the 1×1 grid first.
    pub levels: Vec<usize>,
    /// Channels of each writer layer.
    pub channels: Vec<usize>,
    /// Channels of the conv layers that scale back to 1×1, one level fewer each; a last
    /// layer to `vocab` channels on the 1×1 grid follows them, so there are
    /// `levels.last() − 2` entries.
    pub head: Vec<usize>,
    /// Vocabulary size |V| (159 for bAbI v1.2).
    pub vocab: usize,
    /// Width of a learned word embedding; 0 feeds the one-hot word (the paper).
    #[config(default = 0)]
    pub embedding: usize,
}

impl QaWidths {
    /// The paper's bAbI model: seven conv-LSTM layers on 1×1 … 1×16 (the mapping writer's
    /// level plan) with 11, 11, 21, 21, 41, 41, 41 channels and residuals W3←W1, W5←W3,
    /// W7←W5, then conv layers of 41, 21 and 11 channels and one to |V| = 159, each one level
    /// coarser: 998,068 parameters and 2,861 memory cells (the paper: 1.00M and 2.86K).
    pub fn paper() -> Self {
        Self::new(
            vec![2, 2, 3, 3, 4, 4, 5],
            vec![11, 11, 21, 21, 41, 41, 41],
            vec![41, 21, 11],
            159,
        )
    }

    /// Checks the widths, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_layer_widths(&self.levels, &self.channels)?;
        check_level_growth(&self.levels)?;
        if self.levels[0] == 0 || self.levels[0] > 2 {
            return Err(ModelError::invalid(
                "levels",
                format!(
                    "starts with {}; the first layer reads the 1×1 word grid, so it has 1 or 2 levels",
                    self.levels[0]
                ),
            ));
        }
        let finest = *self.levels.last().expect("checked non-empty");
        if finest < 2 || self.head.len() + 2 != finest {
            return Err(ModelError::invalid(
                "head_channels",
                format!(
                    "has {} entries; the writer ends on {finest} levels, so {} conv layers and \
                     the last one to the vocabulary scale back to 1×1 (at least 2 levels needed)",
                    self.head.len(),
                    finest.saturating_sub(2)
                ),
            ));
        }
        if self.head.contains(&0) {
            return Err(ModelError::invalid(
                "head_channels",
                "holds 0; channel counts must be positive",
            ));
        }
        if self.vocab == 0 {
            return Err(ModelError::invalid("vocab", "is 0; expected at least 1"));
        }
        Ok(())
    }

    fn span(&self, k: usize) -> LevelSpan {
        levels(0, self.levels[k])
    }

    /// The model configuration (call [`Self::validate`] first).
    pub fn model(&self) -> QaModelConfig {
        let d_word = if self.embedding > 0 {
            self.embedding
        } else {
            self.vocab
        };
        let lstm = |d_in, c, input, output| {
            MgConvLstmConfig::new(d_in, c, input, output)
                .with_geometry(Geometry::Grid1d)
                .with_base_size(1)
        };
        let (mut d_in, mut in_span) = (d_word, levels(0, 1));
        let mut layers = Vec::new();
        for (k, &c) in self.channels.iter().enumerate() {
            layers.push(lstm(d_in, c, in_span, self.span(k)));
            (d_in, in_span) = (c, self.span(k));
        }
        let residuals = (2..self.channels.len())
            .step_by(2)
            .filter(|&k| self.channels[k - 2] <= self.channels[k])
            .map(|k| Residual { from: k - 2, to: k })
            .collect();
        let writer =
            MemoryMeshConfig::new(MgLstmStackConfig::new(layers).with_residuals(residuals));
        let conv = |d_in, d_out, input: LevelSpan| {
            MgConvConfig::new(d_in, d_out, input, levels(0, input.count - 1))
                .with_geometry(Geometry::Grid1d)
        };
        let mut head = Vec::new();
        for &c in &self.head {
            head.push(conv(d_in, c, in_span));
            (d_in, in_span) = (c, levels(0, in_span.count - 1));
        }
        head.push(conv(d_in, self.vocab, in_span).with_activation(Activation::Identity));
        QaModelConfig::new(writer, MgReaderConfig::new(head), self.vocab)
            .with_embedding(self.embedding)
    }
}

/// Configuration of a [`QaModel`].
#[derive(Config, Debug, PartialEq)]
pub struct QaModelConfig {
    /// The conv-LSTM memory; its first layer reads the word on the 1×1 grid.
    pub writer: MemoryMeshConfig,
    /// The conv layers from the writer's last layer down to `vocab` logits on 1×1.
    pub head: MgReaderConfig,
    /// Vocabulary size.
    pub vocab: usize,
    /// Width of the learned embedding; 0: one-hot words.
    #[config(default = 0)]
    pub embedding: usize,
}

impl QaModelConfig {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.writer.num_params() + self.head.num_params() + self.vocab * self.embedding
    }

    /// Memory cells of the writer.
    pub fn memory_cells(&self) -> usize {
        self.writer.memory_cells()
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the head does not fit the writer ([`QaWidths::validate`] refuses such widths).
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> QaModel<B> {
        let embedding = (self.embedding > 0).then(|| {
            Initializer::Uniform {
                min: -1.0,
                max: 1.0,
            }
            .init([self.vocab, self.embedding], device)
        });
        QaModel {
            writer: self.writer.init(device),
            head: self.head.init(device),
            embedding,
        }
    }
}

/// The 1D multigrid question-answering model.
#[derive(Module, Debug)]
pub struct QaModel<B: Backend> {
    /// The memory.
    pub writer: MemoryMesh<B>,
    /// The output layers.
    pub head: MgReader<B>,
    /// The word embedding `[vocab, embedding]`, if learned.
    pub embedding: Option<Param<Tensor<B, 2>>>,
}

impl<B: MgBackend> QaModel<B> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        num_trainable_params(self)
    }

    /// Reads `steps` words per sequence (time-major rows) and predicts the next ones. The
    /// head is not recurrent, so it runs once over every row; the writer runs its window
    /// path, or one step after the other when `step_path`.
    ///
    /// # Shapes
    /// - `words`: one-hot `[steps·batch, vocab]`
    /// - returns logits `[steps·batch, vocab]` (same rows) and the writer's last state
    pub fn forward(
        &self,
        words: Tensor<B, 2>,
        steps: usize,
        state: Option<StackState<B>>,
        step_path: bool,
    ) -> (Tensor<B, 2>, StackState<B>) {
        let [rows, vocab] = words.dims();
        let x = match &self.embedding {
            Some(e) => words.matmul(e.val()),
            None => words,
        };
        let d = x.dims()[1];
        let x = x.reshape([rows, d, 1, 1]);
        let (memory, state) = if step_path {
            let mut state = state;
            let mut outputs: Vec<Vec<Tensor<B, 4>>> = Vec::with_capacity(steps);
            for x in split_steps(x, steps) {
                let out = self.writer.forward_step(&[x], state);
                outputs.push(out.outputs.last().expect("a writer layer").clone());
                state = Some(out.state);
            }
            let levels = outputs[0].len();
            let memory: Vec<Tensor<B, 4>> = (0..levels)
                .map(|l| Tensor::cat(outputs.iter().map(|o| o[l].clone()).collect(), 0))
                .collect();
            (memory, state.expect("at least one step"))
        } else {
            let out = self.writer.forward_window(&[x], steps, state);
            let memory = out.outputs.last().expect("a writer layer").clone();
            (memory, out.state)
        };
        let logits = self.head.forward_window(&memory, &[], steps);
        let logits = logits.into_iter().next().expect("one output level");
        (logits.reshape([rows, vocab]), state)
    }
}

/// A question-answering model of either kind: the 1D multigrid memory, or a DNC reading one
/// one-hot word per step.
pub type QaNetConfig = NetConfig<QaModelConfig, DncConfig>;

/// A question-answering model: [`QaModel`] or a DNC. Both read [`Rows`] of one-hot words
/// (`[steps·batch, vocab]`, time-major) and return next-word logits for every row.
pub type QaNet<B> = Net<QaModel<B>, Dnc<B>>;

impl KindConfig for QaModelConfig {
    type Model<B: MgBackend> = QaModel<B>;

    fn num_params(&self) -> usize {
        QaModelConfig::num_params(self)
    }

    fn memory_cells(&self) -> usize {
        QaModelConfig::memory_cells(self)
    }

    fn init<B: MgBackend>(&self, device: &B::Device) -> QaModel<B> {
        QaModelConfig::init(self, device)
    }
}

impl<B: MgBackend> Kind<B> for QaModel<B> {
    type State = StackState<B>;

    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> Result<StackState<B>, ModelError> {
        self.writer.state_from_tensors(tensors)
    }
}

/// Next-word logits for every row ([`QaModel::forward`]).
impl<B: MgBackend> Forward<B, Rows<B>> for QaModel<B> {
    type Output = Tensor<B, 2>;

    fn forward(
        &self,
        words: Rows<B>,
        state: Option<StackState<B>>,
    ) -> (Tensor<B, 2>, StackState<B>) {
        QaModel::forward(self, words.x, words.steps, state, words.step_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RecurrentState, TestBackend};
    use burn::tensor::{Distribution, Tolerance};

    /// The paper's counts (appendix B.3.1: 1.00M parameters, 2.86K memory), exact for the
    /// widths documented in [`QaWidths::paper`], and the built model agrees.
    #[test]
    fn paper_widths_land_on_the_paper_counts() {
        let widths = QaWidths::paper();
        widths.validate().unwrap();
        let config = widths.model();
        assert_eq!(config.num_params(), 998_068);
        assert_eq!(config.memory_cells(), 2_861);
        let model = config.init::<TestBackend>(&Default::default());
        assert_eq!(model.num_params(), 998_068);
        let embedded = QaWidths::paper().with_embedding(32).model();
        let model = embedded.init::<TestBackend>(&Default::default());
        assert_eq!(model.num_params(), embedded.num_params());
        // The embedding replaces the first layer's 159 input channels by 32.
        let first = |c: &QaModelConfig| c.writer.stack.layers[0].num_params();
        assert_eq!(
            config.num_params() - first(&config) + first(&embedded) + 159 * 32,
            embedded.num_params()
        );
    }

    #[test]
    fn widths_that_do_not_close_are_refused() {
        let bad = QaWidths::new(vec![2, 3], vec![4, 4], vec![4, 4], 10);
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("head_channels") && e.contains("has 2 entries"),
            "{e}"
        );
        let bad = QaWidths::new(vec![3, 3], vec![4, 4], vec![4], 10);
        assert!(bad.validate().unwrap_err().to_string().contains("1×1"));
        let bad = QaWidths::new(vec![2, 4], vec![4, 4], vec![4, 4], 10);
        assert!(bad.validate().is_err());
    }

    fn rows(x: Tensor<TestBackend, 2>, steps: usize, step_path: bool) -> Rows<TestBackend> {
        Rows {
            x,
            steps,
            step_path,
        }
    }

    /// The window and step paths give the same logits and state, and a window split in two
    /// with the state carried equals the whole window (causality: padding after a sequence
    /// cannot change its earlier outputs).
    #[test]
    fn paths_agree_and_windows_compose() {
        let device = Default::default();
        let widths = QaWidths::new(vec![2, 3], vec![3, 4], vec![4], 7).with_embedding(5);
        widths.validate().unwrap();
        let model = QaNetConfig::Multigrid(widths.model()).init::<TestBackend>(&device);
        let (steps, batch) = (4, 2);
        let words =
            Tensor::<TestBackend, 2>::random([steps * batch, 7], Distribution::Default, &device);
        let (window, state) = model
            .forward(rows(words.clone(), steps, false), None)
            .unwrap();
        let (step, state2) = model
            .forward(rows(words.clone(), steps, true), None)
            .unwrap();
        assert_eq!(window.dims(), [steps * batch, 7]);
        window
            .to_data()
            .assert_approx_eq::<f32>(&step.to_data(), Tolerance::absolute(1e-5));
        let (a, s) = model
            .forward(rows(words.clone().narrow(0, 0, 2 * batch), 2, false), None)
            .unwrap();
        let (b, _) = model
            .forward(
                rows(words.narrow(0, 2 * batch, 2 * batch), 2, false),
                Some(s),
            )
            .unwrap();
        Tensor::cat(vec![a, b], 0)
            .to_data()
            .assert_approx_eq::<f32>(&window.to_data(), Tolerance::absolute(1e-5));
        let t1 = state.into_tensors();
        let t2 = state2.into_tensors();
        assert_eq!(t1.len(), t2.len());
        let rebuilt = model.state_from_tensors(t1).unwrap();
        assert_eq!(rebuilt.into_tensors().len(), t2.len());
    }
}
