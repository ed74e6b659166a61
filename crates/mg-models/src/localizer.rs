//! Any model the mapping & localization harness trains: a multigrid writer with readers (or
//! one of its ablations), or a DNC fed the flattened observation and queries.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;

use mg_layers::StackState;

use crate::net::{Forward, Kind, KindConfig, Net, NetConfig};
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
pub type LocalizerConfig = NetConfig<MappingModelConfig, DncLocalizerConfig>;

/// A model of the mapping harness: a multigrid writer and readers (reference, small, Ablated
/// MG, ConvLSTM-deep/thick) or a [`DncLocalizer`].
pub type Localizer<B> = Net<MappingModel<B>, DncLocalizer<B>>;

/// A window of the mapping task, as a [`Localizer`] reads it.
///
/// # Shapes
/// - `observation`: `[steps·batch, 4, m, m]`; `queries[r]`: `[steps·batch, 4, k_r, k_r]`
#[derive(Debug, Clone)]
pub struct Glimpses<'a, B: Backend> {
    /// The observed patch of every step.
    pub observation: Tensor<B, 4>,
    /// Every reader's query patch of every step.
    pub queries: &'a [Tensor<B, 4>],
    /// Time steps.
    pub steps: usize,
    /// Step the multigrid writer one time step at a time (a DNC always is).
    pub step_path: bool,
}

impl KindConfig for MappingModelConfig {
    type Model<B: MgBackend> = MappingModel<B>;

    fn num_params(&self) -> usize {
        MappingModelConfig::num_params(self)
    }

    fn memory_cells(&self) -> usize {
        MappingModelConfig::memory_cells(self)
    }

    fn init<B: MgBackend>(&self, device: &B::Device) -> MappingModel<B> {
        MappingModelConfig::init(self, device)
    }
}

impl KindConfig for DncLocalizerConfig {
    type Model<B: MgBackend> = DncLocalizer<B>;

    fn num_params(&self) -> usize {
        self.dnc.num_params()
    }

    fn memory_cells(&self) -> usize {
        self.dnc.memory_size()
    }

    fn init<B: MgBackend>(&self, device: &B::Device) -> DncLocalizer<B> {
        DncLocalizerConfig::init(self, device)
    }
}

impl<B: MgBackend> Kind<B> for MappingModel<B> {
    type State = StackState<B>;

    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> Result<StackState<B>, ModelError> {
        self.writer.state_from_tensors(tensors)
    }
}

impl<B: MgBackend> Forward<B, Glimpses<'_, B>> for MappingModel<B> {
    type Output = Vec<Tensor<B, 2>>;

    fn forward(
        &self,
        x: Glimpses<'_, B>,
        state: Option<StackState<B>>,
    ) -> (Vec<Tensor<B, 2>>, StackState<B>) {
        if x.step_path {
            self.forward_steps(x.observation, x.queries, x.steps, state)
        } else {
            self.forward_window(x.observation, x.queries, x.steps, state)
        }
    }
}

impl<B: MgBackend> Kind<B> for DncLocalizer<B> {
    type State = DncState<B>;

    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> Result<DncState<B>, ModelError> {
        DncState::from_tensors(tensors)
    }
}

impl<B: MgBackend> Forward<B, Glimpses<'_, B>> for DncLocalizer<B> {
    type Output = Vec<Tensor<B, 2>>;

    fn forward(
        &self,
        x: Glimpses<'_, B>,
        state: Option<DncState<B>>,
    ) -> (Vec<Tensor<B, 2>>, DncState<B>) {
        self.forward_window(x.observation, x.queries, x.steps, state)
    }
}

impl<B: MgBackend> Localizer<B> {
    /// Runs `steps` time steps; the multigrid writer uses its window path.
    ///
    /// # Shapes
    /// - `observation`: `[steps·batch, 4, m, m]`; `queries[r]`: `[steps·batch, 4, k_r, k_r]`
    /// - returns logits `[steps·batch, s·s]` per query
    ///
    /// # Errors
    /// If `state` belongs to the other kind of model.
    pub fn forward_window(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MemoryState<B>>,
    ) -> Result<(Vec<Tensor<B, 2>>, MemoryState<B>), ModelError> {
        let x = Glimpses {
            observation,
            queries,
            steps,
            step_path: false,
        };
        self.forward(x, state)
    }

    /// As [`Self::forward_window`], with the multigrid writer stepped one time step at a time
    /// (a DNC always is).
    pub fn forward_steps(
        &self,
        observation: Tensor<B, 4>,
        queries: &[Tensor<B, 4>],
        steps: usize,
        state: Option<MemoryState<B>>,
    ) -> Result<(Vec<Tensor<B, 2>>, MemoryState<B>), ModelError> {
        let x = Glimpses {
            observation,
            queries,
            steps,
            step_path: true,
        };
        self.forward(x, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MappingWidths, RecurrentState, TestBackend};
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
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
        for config in [multigrid_config(), dnc_config()] {
            let model = config.init::<TestBackend>(&Default::default());
            assert_eq!(model.num_params(), config.num_params());
            let (obs, query) = inputs(6);
            let (_, state) = model.forward_window(obs.clone(), &query, 3, None).unwrap();
            let rebuilt = model
                .state_from_tensors(state.clone().into_tensors())
                .unwrap();
            let (a, _) = model
                .forward_window(obs.clone(), &query, 3, Some(state))
                .unwrap();
            let (b, _) = model.forward_window(obs, &query, 3, Some(rebuilt)).unwrap();
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
        let (window, _) = model.forward_window(obs.clone(), &query, 4, None).unwrap();
        assert_eq!(window[0].dims(), [8, 36]);
        let mut state = None;
        let mut rows = Vec::new();
        for t in 0..4 {
            let q = [query[0].clone().narrow(0, 2 * t, 2)];
            let (y, next) = model
                .forward_steps(obs.clone().narrow(0, 2 * t, 2), &q, 1, state)
                .unwrap();
            rows.push(y[0].clone());
            state = Some(next);
        }
        window[0]
            .to_data()
            .assert_approx_eq::<f32>(&Tensor::cat(rows, 0).to_data(), Tolerance::absolute(1e-5));
    }

    fn multigrid_config() -> LocalizerConfig {
        let widths = MappingWidths::new(vec![1, 2], vec![2, 2], 2);
        LocalizerConfig::Multigrid(MappingModelConfig::from_widths(&widths, 3, &[3]))
    }

    /// A state of the other kind is an error that names both kinds, not a panic.
    #[test]
    fn a_state_of_the_other_kind_is_refused() {
        let device = Default::default();
        let multigrid = multigrid_config().init::<TestBackend>(&device);
        let dnc = dnc_config().init::<TestBackend>(&device);
        let (obs, query) = inputs(2);
        let (_, dnc_state) = dnc.forward_window(obs.clone(), &query, 1, None).unwrap();
        let (_, mg_state) = multigrid
            .forward_window(obs.clone(), &query, 1, None)
            .unwrap();
        let e = multigrid
            .forward_window(obs.clone(), &query, 1, Some(dnc_state))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("a multigrid model was given a dnc model's state"),
            "{e}"
        );
        let e = dnc
            .forward_steps(obs, &query, 1, Some(mg_state))
            .unwrap_err();
        assert!(
            e.to_string().contains("a dnc model was given a multigrid"),
            "{e}"
        );
    }

    /// burn's derive of the same two-variant enum, as `Localizer` was before it became a
    /// [`Net`]: checkpoints written from it load into a `Localizer`.
    #[derive(Module, Debug)]
    #[allow(clippy::large_enum_variant)]
    enum DerivedLocalizer<B: Backend> {
        Multigrid(MappingModel<B>),
        Dnc(DncLocalizer<B>),
    }

    /// A `Net`'s record is burn's derived enum record, byte for byte, both ways.
    #[test]
    fn records_are_those_of_a_derived_enum() {
        let device = Default::default();
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        for config in [multigrid_config(), dnc_config()] {
            let net = config.init::<TestBackend>(&device);
            let (obs, query) = inputs(2);
            let (expected, _) = net.forward_window(obs.clone(), &query, 1, None).unwrap();
            let derived = match net.clone() {
                Net::Multigrid(m) => DerivedLocalizer::Multigrid(m),
                Net::Dnc(d) => DerivedLocalizer::Dnc(d),
            };
            let old = recorder.record(derived.into_record(), ()).unwrap();
            let new = recorder.record(net.into_record(), ()).unwrap();
            assert_eq!(old, new, "the two records differ");
            // A fresh model (other weights) takes the saved ones.
            let fresh = config.init::<TestBackend>(&device);
            let record = Recorder::<TestBackend>::load(&recorder, old, &device).unwrap();
            let loaded = fresh.load_record(record);
            let (got, _) = loaded.forward_window(obs, &query, 1, None).unwrap();
            got[0]
                .to_data()
                .assert_approx_eq::<f32>(&expected[0].to_data(), Tolerance::absolute(0.0));
        }
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
