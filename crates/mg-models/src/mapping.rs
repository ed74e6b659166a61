//! The mapping & localization model: a memory mesh (writer) and one or more multigrid readers.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::backend::split_steps;
use mg_layers::{
    Activation, Geometry, LevelSpan, MgConvConfig, MgConvLstmConfig, MgLstmStackConfig, Residual,
    StackState, levels, upsample2x,
};

use crate::ModelError;
use crate::{MemoryMesh, MemoryMeshConfig, MgReader, MgReaderConfig};

/// Side of the coarsest grid; observations and queries enter at this size.
pub const BASE_SIZE: usize = 3;

/// Widths of a mapping model in the shape of the reference (paper Figure 9): writer layer `k`
/// has `levels[k]` levels (coarsest first) and `channels[k]` channels; the reader mirrors the
/// writer, reading writer layer `k` after its own layer `k`, then narrows level by level to
/// one logit map at the finest level with `tail_channels` channels per layer.
///
/// With `finest_only`, every layer keeps only the finest of its levels: the paper's Ablated MG
/// (levels 2,2,3,3,4,4,5) and, with every layer on the same level, the ConvLSTM-deep and
/// ConvLSTM-thick baselines. The observation and query are then upsampled (nearest) to the
/// level below the first layer's, and the reader's narrowing layers all work on the finest
/// grid, `tail_channels` × the level count of the pyramid layer they stand for (so the
/// reader's widths are the pyramid's summed widths), unless `tail_widths` lists them.
#[derive(Config, Debug, PartialEq)]
pub struct MappingWidths {
    /// Levels of each writer layer (non-decreasing by at most one per layer; a pyramid's first
    /// layer has 1 or 2).
    pub levels: Vec<usize>,
    /// Channels of each writer layer.
    pub channels: Vec<usize>,
    /// Channels of the reader's narrowing layers (per level).
    pub tail_channels: usize,
    /// Keep only the finest level of each layer.
    #[config(default = false)]
    pub finest_only: bool,
    /// Widths of the reader's narrowing layers before the logit layer (`finest_only` only;
    /// empty: derived from `tail_channels`).
    #[config(default = "Vec::new()")]
    pub tail_widths: Vec<usize>,
}

impl MappingWidths {
    /// The reference widths (reference-implementation.md §2.3–2.4): levels 2,2,3,3,4,4,5,
    /// channels 4,4,8,8,16,16,16, tail 16: 650,225 parameters, 76,968 memory cells.
    pub fn reference() -> Self {
        Self {
            levels: vec![2, 2, 3, 3, 4, 4, 5],
            channels: vec![4, 4, 8, 8, 16, 16, 16],
            tail_channels: 16,
            finest_only: false,
            tail_widths: Vec::new(),
        }
    }

    /// Paper Table 1's Ablated MG: the reference's layers on their finest level only, each as
    /// wide as the reference layer's summed channels (8,8,24,24,64,64,80), the reader's
    /// narrowing layers likewise (64,64,48,48,32,32): 1,400,753 parameters (paper 1.40M),
    /// 265,536 memory cells (paper 265.54K).
    pub fn ablated() -> Self {
        Self {
            levels: vec![2, 2, 3, 3, 4, 4, 5],
            channels: vec![8, 8, 24, 24, 64, 64, 80],
            tail_channels: 16,
            finest_only: true,
            tail_widths: Vec::new(),
        }
    }

    /// Paper Table 1's ConvLSTM-thick: 7 conv-LSTM layers on the 48×48 grid with the
    /// reference layers' summed channels: 1,400,753 parameters (paper 1.40M), 626,688 memory
    /// cells (paper 626.69K).
    pub fn convlstm_thick() -> Self {
        Self {
            levels: vec![5; 7],
            ..Self::ablated()
        }
    }

    /// Paper Table 1's ConvLSTM-deep: 23 conv-LSTM layers on the 48×48 grid, one per cell of
    /// the reference writer (channels 4×4, 8×6, 16×13), and six 28-channel narrowing layers
    /// (the paper does not give the reader; 28 lands the total at its 0.38M): 376,181
    /// parameters, 626,688 memory cells (paper 626.69K).
    pub fn convlstm_deep() -> Self {
        let mut channels = vec![4; 4];
        channels.extend([8; 6]);
        channels.extend([16; 13]);
        Self {
            levels: vec![5; 23],
            channels,
            tail_channels: 16,
            finest_only: true,
            tail_widths: vec![28; 6],
        }
    }

    /// The levels of writer (and reader) layer `k`.
    pub fn span(&self, k: usize) -> LevelSpan {
        let n = self.levels[k];
        if self.finest_only {
            levels(n - 1, 1)
        } else {
            levels(0, n)
        }
    }

    /// The level the observation and queries enter at (0, the 3×3 grid, unless the first
    /// layer starts finer; then the inputs are upsampled to the level below it).
    pub fn input_level(&self) -> usize {
        self.span(0).first.saturating_sub(1)
    }

    /// Side of the finest grid, where the logit map lives.
    pub fn output_size(&self) -> usize {
        BASE_SIZE << (self.levels.last().copied().unwrap_or(1) - 1)
    }

    /// Checks the widths, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        check_layer_widths(&self.levels, &self.channels)?;
        if self.tail_channels == 0 {
            return Err(ModelError::invalid(
                "tail_channels",
                "is 0; expected at least 1",
            ));
        }
        if self.levels.contains(&0) {
            return Err(ModelError::invalid(
                "levels",
                "holds 0; level counts must be positive",
            ));
        }
        if !self.finest_only && self.levels[0] > 2 {
            return Err(ModelError::invalid(
                "levels",
                format!(
                    "starts with {}; the first layer can have 1 or 2 levels",
                    self.levels[0]
                ),
            ));
        }
        if !self.tail_widths.is_empty() && !self.finest_only {
            return Err(ModelError::invalid(
                "tail_widths",
                "is set; it applies to finest_only models only",
            ));
        }
        if self.tail_widths.contains(&0) {
            return Err(ModelError::invalid(
                "tail_widths",
                "holds 0; widths must be positive",
            ));
        }
        check_level_growth(&self.levels)
    }

    /// Whether layers `a` and `b` share a level (a residual between them adds something).
    fn overlap(&self, a: usize, b: usize) -> bool {
        let (a, b) = (self.span(a), self.span(b));
        a.range().any(|l| b.index_of(l).is_some())
    }

    /// The writer: residual connections from layer `k-2` into every odd layer `k ≥ 3`
    /// (1-based) that is at least as wide and shares a level with it.
    pub fn writer(&self, d_obs: usize) -> MemoryMeshConfig {
        let mut d_in = d_obs;
        let mut in_span = levels(self.input_level(), 1);
        let mut layers = Vec::new();
        for (k, &c) in self.channels.iter().enumerate() {
            layers.push(MgConvLstmConfig::new(d_in, c, in_span, self.span(k)));
            (d_in, in_span) = (c, self.span(k));
        }
        let residuals = (2..self.channels.len())
            .step_by(2)
            .filter(|&k| self.channels[k - 2] <= self.channels[k] && self.overlap(k - 2, k))
            .map(|k| Residual { from: k - 2, to: k })
            .collect();
        MemoryMeshConfig::new(MgLstmStackConfig::new(layers).with_residuals(residuals))
    }

    /// The reader for `d_query`-channel queries at the input level.
    pub fn reader(&self, d_query: usize) -> MgReaderConfig {
        let mut layers = Vec::new();
        let mut residuals = Vec::new();
        let mut features = Vec::new(); // channels each layer passes on
        let (mut d_in, mut in_span) = (d_query, levels(self.input_level(), 1));
        for (k, &c) in self.channels.iter().enumerate() {
            layers.push(MgConvConfig::new(d_in, c, in_span, self.span(k)));
            if k >= 2 && k % 2 == 0 && features[k - 2] <= c && self.overlap(k - 2, k) {
                residuals.push(Residual { from: k - 2, to: k });
            }
            features.push(2 * c);
            (d_in, in_span) = (2 * c, self.span(k));
        }
        if self.finest_only {
            self.finest_tail(&mut layers, &mut residuals, d_in, in_span);
        } else {
            self.pyramid_tail(&mut layers, &mut residuals, d_in, in_span.count);
        }
        MgReaderConfig::new(layers)
            .with_residuals(residuals)
            .with_memory(self.channels.clone())
    }

    /// Narrows a pyramid of `total` levels to its finest: (shrink, same) pairs with
    /// residuals between the `same` layers, then a 1-channel logit layer.
    fn pyramid_tail(
        &self,
        layers: &mut Vec<MgConvConfig>,
        residuals: &mut Vec<Residual>,
        mut d_in: usize,
        total: usize,
    ) {
        let t = self.tail_channels;
        let mut first = 0;
        let mut previous_same = None;
        while total - first > 1 {
            first += 1;
            let count = total - first;
            let input = levels(first - 1, count + 1);
            if count == 1 {
                layers.push(
                    MgConvConfig::new(d_in, 1, input, levels(first, 1))
                        .with_activation(Activation::Identity),
                );
                return;
            }
            layers.push(MgConvConfig::new(d_in, t, input, levels(first, count)));
            layers.push(MgConvConfig::new(
                t,
                t,
                levels(first, count),
                levels(first, count),
            ));
            let same = layers.len() - 1;
            if let Some(prev) = previous_same {
                residuals.push(Residual {
                    from: prev,
                    to: same,
                });
            }
            previous_same = Some(same);
            d_in = t;
        }
        layers.push(
            MgConvConfig::new(d_in, 1, levels(0, 1), levels(0, 1))
                .with_activation(Activation::Identity),
        );
    }

    /// The widths of a `finest_only` reader's narrowing layers.
    pub fn finest_tail_widths(&self) -> Vec<usize> {
        if !self.tail_widths.is_empty() {
            return self.tail_widths.clone();
        }
        let total = self.levels.last().copied().unwrap_or(1);
        (2..total)
            .rev()
            .flat_map(|count| [self.tail_channels * count; 2])
            .collect()
    }

    /// The `finest_only` counterpart of [`Self::pyramid_tail`]: every layer on the finest
    /// level, residuals between the second layers of pairs when widths allow.
    fn finest_tail(
        &self,
        layers: &mut Vec<MgConvConfig>,
        residuals: &mut Vec<Residual>,
        mut d_in: usize,
        span: LevelSpan,
    ) {
        let mut previous_same: Option<(usize, usize)> = None;
        for (i, width) in self.finest_tail_widths().into_iter().enumerate() {
            layers.push(MgConvConfig::new(d_in, width, span, span));
            if i % 2 == 1 {
                let same = layers.len() - 1;
                if let Some((prev, prev_width)) = previous_same
                    && prev_width <= width
                {
                    residuals.push(Residual {
                        from: prev,
                        to: same,
                    });
                }
                previous_same = Some((same, width));
            }
            d_in = width;
        }
        layers.push(MgConvConfig::new(d_in, 1, span, span).with_activation(Activation::Identity));
    }
}

/// Checks per-layer `levels` and `channels`: one entry each per layer, all positive.
pub(crate) fn check_layer_widths(levels: &[usize], channels: &[usize]) -> Result<(), ModelError> {
    if levels.is_empty() {
        return Err(ModelError::invalid(
            "levels",
            "is empty; expected one entry per writer layer",
        ));
    }
    if levels.len() != channels.len() {
        return Err(ModelError::invalid(
            "channels",
            format!(
                "has {} entries but `levels` has {}; expected one per writer layer",
                channels.len(),
                levels.len()
            ),
        ));
    }
    if channels.contains(&0) {
        return Err(ModelError::invalid(
            "channels",
            "holds 0; channel counts must be positive",
        ));
    }
    Ok(())
}

/// Checks that each layer keeps its predecessor's level count or adds one.
pub(crate) fn check_level_growth(levels: &[usize]) -> Result<(), ModelError> {
    for (k, pair) in levels.windows(2).enumerate() {
        if pair[1] < pair[0] || pair[1] > pair[0] + 1 {
            return Err(ModelError::invalid(
                "levels",
                format!(
                    "layer {} has {} levels after {}: levels may stay or grow by one per layer",
                    k + 2,
                    pair[1],
                    pair[0]
                ),
            ));
        }
    }
    Ok(())
}

/// Configuration of a [`MappingModel`].
#[derive(Config, Debug, PartialEq)]
pub struct MappingModelConfig {
    /// The writer.
    pub writer: MemoryMeshConfig,
    /// The readers, one per query size.
    pub readers: Vec<MgReaderConfig>,
    /// Side of the observation patch (a multiple of 3; larger patches are folded into
    /// channels, 3×3 blocks at a time).
    #[config(default = 3)]
    pub obs_size: usize,
    /// Side of each reader's query patch.
    #[config(default = "vec![3]")]
    pub query_sizes: Vec<usize>,
    /// The level the folded observation and queries are upsampled to (0: they stay 3×3).
    #[config(default = 0)]
    pub input_level: usize,
}

/// Input channels of the mapping encoding: free, wall, location row, location column.
pub const D_ENCODING: usize = 4;

/// Channels of a `side × side` patch folded to the 3×3 base grid.
pub fn folded_channels(side: usize) -> usize {
    let s = side / BASE_SIZE;
    D_ENCODING * s * s
}

impl MappingModelConfig {
    /// A model from widths, for `obs_size` observations and one reader per query size.
    pub fn from_widths(widths: &MappingWidths, obs_size: usize, query_sizes: &[usize]) -> Self {
        Self {
            writer: widths.writer(folded_channels(obs_size)),
            readers: query_sizes
                .iter()
                .map(|&k| widths.reader(folded_channels(k)))
                .collect(),
            obs_size,
            query_sizes: query_sizes.to_vec(),
            input_level: widths.input_level(),
        }
    }

    /// The reference model: 650,225 parameters, 76,968 memory cells.
    pub fn reference() -> Self {
        Self::from_widths(&MappingWidths::reference(), 3, &[3])
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.writer.num_params()
            + self
                .readers
                .iter()
                .map(MgReaderConfig::num_params)
                .sum::<usize>()
    }

    /// Memory cells.
    pub fn memory_cells(&self) -> usize {
        self.writer.memory_cells()
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If a patch side is not a multiple of 3, or the readers do not fit the writer.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> MappingModel<B> {
        for &side in std::iter::once(&self.obs_size).chain(&self.query_sizes) {
            assert!(
                side > 0 && side % BASE_SIZE == 0,
                "MappingModel: patch side {side} is not a positive multiple of {BASE_SIZE}"
            );
        }
        assert_eq!(
            self.readers.len(),
            self.query_sizes.len(),
            "MappingModel: {} readers for {} query sizes",
            self.readers.len(),
            self.query_sizes.len()
        );
        MappingModel {
            writer: self.writer.init(device),
            readers: self.readers.iter().map(|r| r.init(device)).collect(),
            input_level: self.input_level,
        }
    }
}

/// The mapping & localization model (paper Figure 2, top).
#[derive(Module, Debug)]
pub struct MappingModel<B: Backend> {
    /// The memory mesh.
    pub writer: MemoryMesh<B>,
    /// The readers.
    pub readers: Vec<MgReader<B>>,
    /// The level inputs are upsampled to.
    input_level: usize,
}

/// Folds a `[n, c, 3s, 3s]` patch into `[n, c·s², 3, 3]` (space to depth): grid cell
/// `(a, b)` holds the `s×s` block at rows `a·s..(a+1)·s` and columns `b·s..(b+1)·s`.
pub fn fold_patch<B: MgBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    assert!(
        h == w && h % BASE_SIZE == 0,
        "fold_patch: a {h}×{w} patch is not a square multiple of {BASE_SIZE}"
    );
    let s = h / BASE_SIZE;
    if s == 1 {
        return x;
    }
    x.reshape([n, c, BASE_SIZE, s, BASE_SIZE, s])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([n, c * s * s, BASE_SIZE, BASE_SIZE])
}

impl<B: MgBackend> MappingModel<B> {
    /// Folds a patch to the 3×3 grid, then upsamples it (nearest) to the input level: the
    /// form the writer and readers take.
    pub fn encode(&self, patch: Tensor<B, 4>) -> Tensor<B, 4> {
        (0..self.input_level).fold(fold_patch(patch), |x, _| upsample2x(x, Geometry::Grid2d))
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.writer.num_params() + self.readers.iter().map(MgReader::num_params).sum::<usize>()
    }

    /// Runs `steps` time steps (time-major rows) and returns one logit map per reader and the
    /// writer's state after the last step.
    ///
    /// # Shapes
    /// - `observation`: `[steps·batch, 4, m, m]`
    /// - `queries[r]`: `[steps·batch, 4, k_r, k_r]`
    /// - returns logits `[steps·batch, s·s]` per reader, `s` the finest grid side
    pub fn forward_window(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<StackState<B>>,
    ) -> (Vec<Tensor<B, 2>>, StackState<B>) {
        let memory = self
            .writer
            .forward_window(&[self.encode(observation)], steps, state);
        let logits = self.read(queries, &memory.outputs, steps);
        (logits, memory.state)
    }

    /// The same as [`Self::forward_window`], with the writer run one time step at a time (the
    /// streaming path); the readers still read all rows at once.
    pub fn forward_steps(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<StackState<B>>,
    ) -> (Vec<Tensor<B, 2>>, StackState<B>) {
        let [rows, _, _, _] = observation.dims();
        assert!(
            steps > 0 && rows % steps == 0,
            "MappingModel: {rows} rows do not split into {steps} steps"
        );
        let observation = self.encode(observation);
        let mut state = state;
        let mut per_step = Vec::with_capacity(steps);
        for x in split_steps(observation, steps) {
            let out = self.writer.forward_step(&[x], state);
            state = Some(out.state);
            per_step.push(out.outputs);
        }
        let memory: Vec<Vec<Tensor<B, 4>>> = (0..per_step[0].len())
            .map(|k| {
                (0..per_step[0][k].len())
                    .map(|l| Tensor::cat(per_step.iter().map(|s| s[k][l].clone()).collect(), 0))
                    .collect()
            })
            .collect();
        let logits = self.read(queries, &memory, steps);
        (logits, state.expect("at least one step"))
    }

    /// Writes one time step's observation into memory (the streaming path).
    ///
    /// # Shapes
    /// - `observation`: `[batch, 4, m, m]`
    /// - returns the writer's outputs per layer and level, `[batch, C, h, w]`, and its state
    pub fn write_step(
        &self,
        observation: Tensor<B, 4>,
        state: Option<StackState<B>>,
    ) -> mg_layers::StackOutput<B> {
        self.writer.forward_step(&[self.encode(observation)], state)
    }

    /// Runs every reader on the writer's outputs; one flattened logit map per reader.
    ///
    /// # Shapes
    /// - `queries[r]`: `[steps·batch, 4, k_r, k_r]`
    /// - `memory[k][l]`: writer layer `k`'s output at level `l`, `[steps·batch, C_k, h, w]`
    /// - returns logits `[steps·batch, s·s]` per reader
    pub fn read(
        &self,
        queries: &[Tensor<B, 4>],
        memory: &[Vec<Tensor<B, 4>>],
        steps: usize,
    ) -> Vec<Tensor<B, 2>> {
        assert_eq!(
            queries.len(),
            self.readers.len(),
            "MappingModel: {} queries for {} readers",
            queries.len(),
            self.readers.len()
        );
        self.readers
            .iter()
            .zip(queries)
            .map(|(reader, query)| {
                let out = reader.forward_window(&[self.encode(query.clone())], memory, steps);
                let map = out.into_iter().next_back().expect("one output level");
                let [n, _, h, w] = map.dims();
                map.reshape([n, h * w])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn reference_widths_give_the_reference_model() {
        let config = MappingModelConfig::reference();
        assert_eq!(config.writer, MemoryMeshConfig::mapping_reference());
        assert_eq!(config.readers[0], MgReaderConfig::mapping_reference(4));
        assert_eq!(config.num_params(), 650_225);
        assert_eq!(config.memory_cells(), 76_968);
        let model = config.init::<TestBackend>(&Default::default());
        assert_eq!(model.num_params(), 650_225);
    }

    /// The baselines' counts: Table 1 gives Ablated MG 1.40M / 265.54K, ConvLSTM-deep
    /// 0.38M / 626.69K and ConvLSTM-thick 1.40M / 626.69K.
    #[test]
    fn baseline_widths_match_table_1() {
        let count = |w: &MappingWidths| {
            assert_eq!(w.validate(), Ok(()));
            let config = MappingModelConfig::from_widths(w, 3, &[3]);
            (config.num_params(), config.memory_cells(), w.output_size())
        };
        assert_eq!(count(&MappingWidths::ablated()), (1_400_753, 265_536, 48));
        assert_eq!(
            count(&MappingWidths::convlstm_thick()),
            (1_400_753, 626_688, 48)
        );
        assert_eq!(
            count(&MappingWidths::convlstm_deep()),
            (376_181, 626_688, 48)
        );
        assert_eq!(MappingWidths::ablated().input_level(), 0);
        assert_eq!(MappingWidths::convlstm_thick().input_level(), 3);
        assert_eq!(
            MappingWidths::ablated().finest_tail_widths(),
            [64, 64, 48, 48, 32, 32]
        );
    }

    /// A finest-only model upsamples its 3×3 inputs to the level below its first layer and
    /// runs on one grid; the built model has the configured parameter count.
    #[test]
    fn finest_only_models_run() {
        let device = Default::default();
        let widths = MappingWidths::new(vec![3, 3, 3], vec![2, 2, 3], 2).with_finest_only(true);
        assert_eq!(widths.validate(), Ok(()));
        let config = MappingModelConfig::from_widths(&widths, 3, &[3]);
        assert_eq!(config.input_level, 1);
        assert_eq!(config.memory_cells(), 7 * 144);
        let model = config.init::<TestBackend>(&device);
        assert_eq!(model.num_params(), config.num_params());
        let obs = Tensor::<TestBackend, 4>::ones([4, 4, 3, 3], &device);
        let (logits, state) =
            model.forward_window(obs, &[Tensor::ones([4, 4, 3, 3], &device)], 2, None);
        assert_eq!(logits[0].dims(), [4, 144]);
        assert_eq!(state.layers()[2].levels()[0].hidden.dims(), [2, 3, 12, 12]);
    }

    #[test]
    fn small_widths_build_and_run() {
        let device = Default::default();
        let widths = MappingWidths::new(vec![2, 2, 3, 3], vec![2, 2, 4, 4], 4);
        assert_eq!(widths.validate(), Ok(()));
        assert_eq!(widths.output_size(), 12);
        let model =
            MappingModelConfig::from_widths(&widths, 9, &[3, 9]).init::<TestBackend>(&device);
        let obs = Tensor::<TestBackend, 4>::ones([6, 4, 9, 9], &device);
        let queries = [
            Tensor::ones([6, 4, 3, 3], &device),
            Tensor::ones([6, 4, 9, 9], &device),
        ];
        let (logits, state) = model.forward_window(obs, &queries, 2, None);
        assert_eq!(logits[0].dims(), [6, 144]);
        assert_eq!(logits[1].dims(), [6, 144]);
        assert_eq!(state.len(), 4);
    }

    #[test]
    fn step_path_equals_window_path() {
        let device = Default::default();
        let widths = MappingWidths::new(vec![2, 2, 3], vec![2, 3, 3], 3);
        let model = MappingModelConfig::from_widths(&widths, 3, &[3]).init::<TestBackend>(&device);
        let random =
            || Tensor::<TestBackend, 4>::random([8, 4, 3, 3], Distribution::Default, &device);
        let (obs, query) = (random(), [random()]);
        let (a, sa) = model.forward_window(obs.clone(), &query, 4, None);
        let (b, sb) = model.forward_steps(obs, &query, 4, None);
        let tol = Tolerance::<f32>::absolute(1e-5);
        a[0].to_data().assert_approx_eq::<f32>(&b[0].to_data(), tol);
        sa.layers()[2].levels()[2]
            .hidden
            .to_data()
            .assert_approx_eq::<f32>(&sb.layers()[2].levels()[2].hidden.to_data(), tol);
    }

    #[test]
    fn widths_are_validated() {
        let bad = MappingWidths::new(vec![2, 4], vec![2, 2], 4);
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field(), Some("levels"));
        assert!(
            err.to_string().contains("layer 2 has 4 levels after 2"),
            "{err}"
        );
        let bad = MappingWidths::new(vec![2, 2], vec![2, 2], 4).with_tail_widths(vec![4]);
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field(), Some("tail_widths"));
        assert!(err.to_string().contains("finest_only"), "{err}");
        let bad = MappingWidths::new(vec![2], vec![2, 2], 4);
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains("`levels` has 1"), "{err}");
    }

    /// A 6×6 patch folds to a 3×3 grid whose cell (a, b) holds the 2×2 block at rows 2a..2a+2
    /// and columns 2b..2b+2; channel `2i + j` holds the block's pixel (i, j). Pixel values are
    /// their row-major index.
    #[test]
    fn fold_patch_moves_sub_pixels_to_channels() {
        let device = Default::default();
        let values: Vec<f32> = (0..36).map(|v| v as f32).collect();
        let x = Tensor::<TestBackend, 4>::from_data(TensorData::new(values, [1, 1, 6, 6]), &device);
        let y = fold_patch(x);
        assert_eq!(y.dims(), [1, 4, 3, 3]);
        let v: Vec<f32> = y.into_data().to_vec().unwrap();
        // Channel 0 holds pixels (2r, 2c); channel 1 holds (2r, 2c + 1).
        assert_eq!(&v[..9], &[0., 2., 4., 12., 14., 16., 24., 26., 28.]);
        assert_eq!(&v[9..18], &[1., 3., 5., 13., 15., 17., 25., 27., 29.]);
    }
}
