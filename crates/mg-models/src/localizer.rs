//! Any model the mapping & localization harness trains: a multigrid writer with readers (or
//! one of its ablations), or a DNC fed the flattened observation and queries.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;

use crate::{
    D_ENCODING, Dnc, DncConfig, DncState, MappingModel, MappingModelConfig, MemoryState, ModelError,
};

/// Configuration of a [`DncLocalizer`].
#[derive(Config, Debug, PartialEq)]
pub struct DncLocalizerConfig {
    /// The DNC; its input and output sizes must be [`Self::input_size`] and
    /// [`Self::output_size`].
    pub dnc: DncConfig,
    /// Side of the observation patch.
    pub obs_size: usize,
    /// Side of each query patch; the DNC answers every query at each step.
    pub query_sizes: Vec<usize>,
    /// Side of the localization map.
    pub mask_size: usize,
}

impl DncLocalizerConfig {
    /// The DNC input: the flattened observation, then every flattened query.
    pub fn input_size(obs_size: usize, query_sizes: &[usize]) -> usize {
        D_ENCODING * (obs_size * obs_size + query_sizes.iter().map(|q| q * q).sum::<usize>())
    }

    /// The DNC output: one flattened logit map per query.
    pub fn output_size(query_count: usize, mask_size: usize) -> usize {
        query_count * mask_size * mask_size
    }

    /// Checks the DNC and its input and output widths, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.dnc.validate()?;
        let x = Self::input_size(self.obs_size, &self.query_sizes);
        let y = Self::output_size(self.query_sizes.len(), self.mask_size);
        if self.dnc.input_size != x {
            return Err(ModelError::invalid(
                "dnc.input_size",
                format!(
                    "is {}; the observation and queries need {x}",
                    self.dnc.input_size
                ),
            ));
        }
        if self.dnc.output_size != y {
            return Err(ModelError::invalid(
                "dnc.output_size",
                format!(
                    "is {}; {} query maps of {}×{} need {y}",
                    self.dnc.output_size,
                    self.query_sizes.len(),
                    self.mask_size,
                    self.mask_size
                ),
            ));
        }
        Ok(())
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If [`Self::validate`] fails.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> DncLocalizer<B> {
        if let Err(e) = self.validate() {
            panic!("DncLocalizer: {e}");
        }
        DncLocalizer {
            dnc: self.dnc.init(device),
            queries: self.query_sizes.len(),
            pixels: self.mask_size * self.mask_size,
        }
    }
}

/// A DNC localizer: at each step it reads the flattened observation and queries and emits
/// one logit map per query (paper §4.1's DNC baseline).
#[derive(Module, Debug)]
pub struct DncLocalizer<B: Backend> {
    /// The DNC.
    pub dnc: Dnc<B>,
    queries: usize,
    pixels: usize,
}

impl<B: MgBackend> DncLocalizer<B> {
    /// Runs `steps` time steps (time-major rows).
    ///
    /// # Shapes
    /// - `observation`: `[steps·batch, 4, m, m]`; `queries[r]`: `[steps·batch, 4, k_r, k_r]`
    /// - returns logits `[steps·batch, s·s]` per query
    pub fn forward_window(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<DncState<B>>,
    ) -> (Vec<Tensor<B, 2>>, DncState<B>) {
        assert_eq!(
            queries.len(),
            self.queries,
            "DncLocalizer: {} queries for {} query maps",
            queries.len(),
            self.queries
        );
        let x = Tensor::cat(
            std::iter::once(observation)
                .chain(queries.iter().cloned())
                .map(|t| t.flatten::<2>(1, 3))
                .collect(),
            1,
        );
        let (y, state) = self.dnc.forward_window(x, steps, state);
        let maps = (0..self.queries)
            .map(|r| y.clone().narrow(1, r * self.pixels, self.pixels))
            .collect();
        (maps, state)
    }
}

/// Configuration of a [`Localizer`].
#[derive(Debug, Clone, PartialEq)]
pub enum LocalizerConfig {
    /// A multigrid writer and readers (reference, small, Ablated MG, ConvLSTM-deep/thick).
    Multigrid(MappingModelConfig),
    /// A DNC.
    Dnc(DncLocalizerConfig),
}

impl LocalizerConfig {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Multigrid(c) => c.num_params(),
            Self::Dnc(c) => c.dnc.num_params(),
        }
    }

    /// Memory cells: LSTM cells of the writer, or the DNC's N×W memory.
    pub fn memory_cells(&self) -> usize {
        match self {
            Self::Multigrid(c) => c.memory_cells(),
            Self::Dnc(c) => c.dnc.memory_size(),
        }
    }

    /// Builds the model.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> Localizer<B> {
        match self {
            Self::Multigrid(c) => Localizer::Multigrid(c.init(device)),
            Self::Dnc(c) => Localizer::Dnc(c.init(device)),
        }
    }
}

/// A model of the mapping harness.
// Built once per run and moved rarely, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Localizer<B: Backend> {
    /// A multigrid writer and readers.
    Multigrid(MappingModel<B>),
    /// A DNC.
    Dnc(DncLocalizer<B>),
}

impl<B: MgBackend> Localizer<B> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        mg_layers::num_trainable_params(self)
    }

    /// Runs `steps` time steps; the multigrid writer uses its window path.
    ///
    /// # Shapes
    /// - `observation`: `[steps·batch, 4, m, m]`; `queries[r]`: `[steps·batch, 4, k_r, k_r]`
    /// - returns logits `[steps·batch, s·s]` per query
    ///
    /// # Panics
    /// If `state` belongs to the other kind of model.
    pub fn forward_window(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MemoryState<B>>,
    ) -> (Vec<Tensor<B, 2>>, MemoryState<B>) {
        self.forward(observation, queries, steps, state, false)
    }

    /// As [`Self::forward_window`], with the multigrid writer stepped one time step at a time
    /// (a DNC always is).
    pub fn forward_steps(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MemoryState<B>>,
    ) -> (Vec<Tensor<B, 2>>, MemoryState<B>) {
        self.forward(observation, queries, steps, state, true)
    }

    fn forward(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MemoryState<B>>,
        step_path: bool,
    ) -> (Vec<Tensor<B, 2>>, MemoryState<B>) {
        match self {
            Self::Multigrid(m) => {
                let state = state.map(|s| match s {
                    MemoryState::Multigrid(s) => s,
                    MemoryState::Dnc(_) => {
                        panic!("Localizer: a DNC state for a multigrid model")
                    }
                });
                let (logits, state) = if step_path {
                    m.forward_steps(observation, queries, steps, state)
                } else {
                    m.forward_window(observation, queries, steps, state)
                };
                (logits, MemoryState::Multigrid(state))
            }
            Self::Dnc(m) => {
                let state = state.map(|s| match s {
                    MemoryState::Dnc(s) => s,
                    MemoryState::Multigrid(_) => {
                        panic!("Localizer: a multigrid state for a DNC model")
                    }
                });
                let (logits, state) = m.forward_window(observation, queries, steps, state);
                (logits, MemoryState::Dnc(state))
            }
        }
    }

    /// Rebuilds a state from [`MemoryState::into_tensors`]'s list.
    pub fn state_from_tensors(
        &self,
        flat: Vec<Tensor<B, 4>>,
    ) -> Result<MemoryState<B>, ModelError> {
        match self {
            Self::Multigrid(m) => MemoryState::from_tensors(flat, Some(&m.writer)),
            Self::Dnc(_) => MemoryState::from_tensors(flat, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MappingWidths, TestBackend};
    use burn::tensor::{Distribution, Tolerance};

    fn inputs(rows: usize) -> (Tensor<TestBackend, 4>, [Tensor<TestBackend, 4>; 1]) {
        let device = Default::default();
        let random =
            || Tensor::<TestBackend, 4>::random([rows, 4, 3, 3], Distribution::Default, &device);
        (random(), [random()])
    }

    fn dnc_config() -> LocalizerConfig {
        let (x, y) = (
            DncLocalizerConfig::input_size(3, &[3]),
            DncLocalizerConfig::output_size(1, 6),
        );
        let dnc = DncConfig::new(x, y, 8, 5, 4).with_read_heads(2);
        LocalizerConfig::Dnc(DncLocalizerConfig::new(dnc, 3, vec![3], 6))
    }

    /// A state saved as tensors and rebuilt continues the sequence as the original does, for
    /// both kinds of model.
    #[test]
    fn states_round_trip_through_tensors() {
        let widths = MappingWidths::new(vec![1, 2], vec![2, 2], 2);
        let multigrid =
            LocalizerConfig::Multigrid(MappingModelConfig::from_widths(&widths, 3, &[3]));
        for config in [multigrid, dnc_config()] {
            let model = config.init::<TestBackend>(&Default::default());
            assert_eq!(model.num_params(), config.num_params());
            let (obs, query) = inputs(6);
            let (_, state) = model.forward_window(obs.clone(), &query, 3, None);
            let rebuilt = model
                .state_from_tensors(state.clone().into_tensors())
                .unwrap();
            let (a, _) = model.forward_window(obs.clone(), &query, 3, Some(state));
            let (b, _) = model.forward_window(obs, &query, 3, Some(rebuilt));
            a[0].to_data()
                .assert_approx_eq::<f32>(&b[0].to_data(), Tolerance::absolute(1e-6));
            let too_few = model.state_from_tensors(Vec::new()).unwrap_err();
            assert!(too_few.to_string().contains("holds 0 tensors"), "{too_few}");
        }
    }

    /// The DNC answers one map per query from the flattened observation and queries, and the
    /// window path equals running one step at a time.
    #[test]
    fn dnc_localizer_steps_equal_the_window() {
        let config = dnc_config();
        let model = config.init::<TestBackend>(&Default::default());
        let (obs, query) = inputs(8);
        let (window, _) = model.forward_window(obs.clone(), &query, 4, None);
        assert_eq!(window[0].dims(), [8, 36]);
        let mut state = None;
        let mut rows = Vec::new();
        for t in 0..4 {
            let q = [query[0].clone().narrow(0, 2 * t, 2)];
            let (y, next) = model.forward_steps(obs.clone().narrow(0, 2 * t, 2), &q, 1, state);
            rows.push(y[0].clone());
            state = Some(next);
        }
        window[0]
            .to_data()
            .assert_approx_eq::<f32>(&Tensor::cat(rows, 0).to_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn dnc_widths_are_checked() {
        let LocalizerConfig::Dnc(mut config) = dnc_config() else {
            unreachable!()
        };
        assert_eq!(config.validate(), Ok(()));
        config.query_sizes = vec![3, 9];
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), Some("dnc.input_size"), "{err}");
        assert!(err.to_string().contains("is 72"), "{err}");
    }
}
