//! [`Net`]: a task's model of either kind (a multigrid memory with the task's reader, or a DNC
//! with the task's adapter), with its configuration [`NetConfig`] and the state it carries,
//! [`NetState`]. They are written once for every task: [`crate::Localizer`], [`crate::AlgoNet`]
//! and [`crate::QaNet`] are `Net`s of their task's two models.
//!
//! A new kind of model is a variant of these three enums (and of their `match`es here) plus,
//! for each task it serves, a model that implements [`KindConfig`], [`Kind`] and [`Forward`].

use std::fmt::Debug;

use burn::module::{
    AutodiffModule, Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper,
    ModuleVisitor,
};
use burn::record::Record;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use mg_layers::MgBackend;

use crate::ModelError;

/// The configuration of one kind of a task's model.
pub trait KindConfig {
    /// The model it builds.
    type Model<B: MgBackend>: Module<B>;

    /// Trainable parameters.
    fn num_params(&self) -> usize;

    /// Memory cells: conv-LSTM cells of a multigrid memory, N·W of a DNC.
    fn memory_cells(&self) -> usize;

    /// Builds the model.
    fn init<B: MgBackend>(&self, device: &B::Device) -> Self::Model<B>;
}

/// The state a recurrent model carries from one window to the next.
pub trait RecurrentState<B: Backend>: Clone + Send + Debug + Sized {
    /// The state cut from the autodiff graph (truncated backpropagation through time).
    fn detach(self) -> Self;

    /// Every tensor of the state as a 4-D tensor (trailing axes of size 1), in a fixed order,
    /// for checkpoints.
    fn into_tensors(self) -> Vec<Tensor<B, 4>>;
}

/// One kind of a task's model, as far as the state it carries between windows goes.
pub trait Kind<B: Backend>: Module<B> {
    /// The state carried from one window to the next.
    type State: RecurrentState<B>;

    /// Rebuilds a state from [`RecurrentState::into_tensors`]'s list; the error says what the
    /// list holds and what the model needs.
    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> Result<Self::State, ModelError>;
}

/// What a kind of model computes from a window's input `I`, continuing from a carried state.
pub trait Forward<B: Backend, I>: Kind<B> {
    /// What it computes (logits).
    type Output;

    /// Runs the window; `None` starts from the initial state.
    fn forward(&self, input: I, state: Option<Self::State>) -> (Self::Output, Self::State);
}

/// A sequence as time-major rows (`row = t·batch + b`), the input of models that read one
/// vector per step (a DNC, the bAbI model).
///
/// # Shapes
/// - `x`: `[steps·batch, width]`
#[derive(Debug, Clone)]
pub struct Rows<B: Backend> {
    /// The rows.
    pub x: Tensor<B, 2>,
    /// Time steps.
    pub steps: usize,
    /// Step a multigrid memory one time step at a time (a DNC always is).
    pub step_path: bool,
}

/// The configuration of a [`Net`]: of one of its kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum NetConfig<M, D> {
    /// A multigrid memory and the task's reader.
    Multigrid(M),
    /// A DNC and the task's adapter.
    Dnc(D),
}

impl<M: KindConfig, D: KindConfig> NetConfig<M, D> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Multigrid(c) => c.num_params(),
            Self::Dnc(c) => c.num_params(),
        }
    }

    /// Memory cells: the writer's conv-LSTM cells, or the DNC's N·W.
    pub fn memory_cells(&self) -> usize {
        match self {
            Self::Multigrid(c) => c.memory_cells(),
            Self::Dnc(c) => c.memory_cells(),
        }
    }

    /// Builds the model.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> Net<M::Model<B>, D::Model<B>> {
        match self {
            Self::Multigrid(c) => Net::Multigrid(c.init(device)),
            Self::Dnc(c) => Net::Dnc(c.init(device)),
        }
    }
}

/// A task's model of either kind. A burn [`Module`] (its record is the variant's record under
/// the variant's name, as burn's derive writes an enum's).
#[derive(Debug, Clone)]
pub enum Net<M, D> {
    /// A multigrid memory and the task's reader.
    Multigrid(M),
    /// A DNC and the task's adapter.
    Dnc(D),
}

/// The state a [`Net`] carries from one window to the next: its kind's.
#[derive(Debug, Clone)]
pub enum NetState<S, T> {
    /// A multigrid model's state.
    Multigrid(S),
    /// A DNC's state.
    Dnc(T),
}

/// The [`NetState`] of a `Net<M, D>` on backend `B`.
pub type StateOf<B, M, D> = NetState<<M as Kind<B>>::State, <D as Kind<B>>::State>;

impl<S, T> NetState<S, T> {
    /// The kind's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Multigrid(_) => "multigrid",
            Self::Dnc(_) => "dnc",
        }
    }
}

impl<B: Backend, S: RecurrentState<B>, T: RecurrentState<B>> RecurrentState<B> for NetState<S, T> {
    fn detach(self) -> Self {
        match self {
            Self::Multigrid(s) => Self::Multigrid(s.detach()),
            Self::Dnc(s) => Self::Dnc(s.detach()),
        }
    }

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        match self {
            Self::Multigrid(s) => s.into_tensors(),
            Self::Dnc(s) => s.into_tensors(),
        }
    }
}

impl<M, D> Net<M, D> {
    /// The kind's name, as `[model] kind` spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Multigrid(_) => "multigrid",
            Self::Dnc(_) => "dnc",
        }
    }

    /// Trainable parameters (batch-norm running statistics left out, as
    /// [`mg_layers::num_trainable_params`] counts).
    pub fn num_params<B: Backend>(&self) -> usize
    where
        Self: Module<B>,
    {
        mg_layers::num_trainable_params::<B, _>(self)
    }

    /// The variant's name, as the module tree and the record name it.
    fn variant(&self) -> &'static str {
        match self {
            Self::Multigrid(_) => "Multigrid",
            Self::Dnc(_) => "Dnc",
        }
    }

    /// Runs a window of `input` with the model's own kind of state.
    ///
    /// # Errors
    /// [`ModelError::WrongKind`] when `state` belongs to the other kind of model.
    pub fn forward<B, I, O>(
        &self,
        input: I,
        state: Option<StateOf<B, M, D>>,
    ) -> Result<(O, StateOf<B, M, D>), ModelError>
    where
        B: Backend,
        M: Forward<B, I, Output = O>,
        D: Forward<B, I, Output = O>,
    {
        match (self, state) {
            (Self::Multigrid(m), None) => Ok(wrap(m.forward(input, None), NetState::Multigrid)),
            (Self::Multigrid(m), Some(NetState::Multigrid(s))) => {
                Ok(wrap(m.forward(input, Some(s)), NetState::Multigrid))
            }
            (Self::Dnc(d), None) => Ok(wrap(d.forward(input, None), NetState::Dnc)),
            (Self::Dnc(d), Some(NetState::Dnc(s))) => {
                Ok(wrap(d.forward(input, Some(s)), NetState::Dnc))
            }
            (model, Some(state)) => Err(ModelError::WrongKind {
                model: model.kind(),
                state: state.kind(),
            }),
        }
    }

    /// Rebuilds a state of this model's kind from [`RecurrentState::into_tensors`]'s list.
    pub fn state_from_tensors<B: Backend>(
        &self,
        tensors: Vec<Tensor<B, 4>>,
    ) -> Result<StateOf<B, M, D>, ModelError>
    where
        M: Kind<B>,
        D: Kind<B>,
    {
        match self {
            Self::Multigrid(m) => m.state_from_tensors(tensors).map(NetState::Multigrid),
            Self::Dnc(d) => d.state_from_tensors(tensors).map(NetState::Dnc),
        }
    }
}

fn wrap<O, S, W>((output, state): (O, S), kind: impl FnOnce(S) -> W) -> (O, W) {
    (output, kind(state))
}

/// The record of a [`Net`]: its variant's record.
#[derive(Record)]
pub enum NetRecord<B: Backend, M: Module<B>, D: Module<B>> {
    /// A multigrid model's record.
    Multigrid(M::Record),
    /// A DNC's record.
    Dnc(D::Record),
}

/// The container type visitors and mappers see (burn's derive named each enum, e.g.
/// `Enum:Localizer`); nothing in the workspace reads it, and module paths, tensor names and
/// records do not contain it.
const CONTAINER: &str = "Enum:Net";

impl<B: Backend, M: Module<B>, D: Module<B>> Module<B> for Net<M, D> {
    type Record = NetRecord<B, M, D>;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        match self {
            Self::Multigrid(m) => m.collect_devices(devices),
            Self::Dnc(d) => d.collect_devices(devices),
        }
    }

    fn fork(self, device: &B::Device) -> Self {
        match self {
            Self::Multigrid(m) => Self::Multigrid(m.fork(device)),
            Self::Dnc(d) => Self::Dnc(d.fork(device)),
        }
    }

    fn to_device(self, device: &B::Device) -> Self {
        match self {
            Self::Multigrid(m) => Self::Multigrid(m.to_device(device)),
            Self::Dnc(d) => Self::Dnc(d.to_device(device)),
        }
    }

    fn num_params(&self) -> usize {
        match self {
            Self::Multigrid(m) => m.num_params(),
            Self::Dnc(d) => d.num_params(),
        }
    }

    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        visitor.enter_module(self.variant(), CONTAINER);
        match self {
            Self::Multigrid(m) => m.visit(visitor),
            Self::Dnc(d) => d.visit(visitor),
        }
        visitor.exit_module(self.variant(), CONTAINER);
    }

    fn map<Mapper: ModuleMapper<B>>(self, mapper: &mut Mapper) -> Self {
        let name = self.variant();
        mapper.enter_module(name, CONTAINER);
        let mapped = match self {
            Self::Multigrid(m) => Self::Multigrid(m.map(mapper)),
            Self::Dnc(d) => Self::Dnc(d.map(mapper)),
        };
        mapper.exit_module(name, CONTAINER);
        mapped
    }

    /// # Panics
    /// If the record is of the other kind (as burn's derived enums do): a run's checkpoint and
    /// its model come from one config.
    fn load_record(self, record: Self::Record) -> Self {
        match (self, record) {
            (Self::Multigrid(m), NetRecord::Multigrid(r)) => Self::Multigrid(m.load_record(r)),
            (Self::Dnc(d), NetRecord::Dnc(r)) => Self::Dnc(d.load_record(r)),
            (model, _) => panic!(
                "a {} model cannot load the other kind's record",
                model.kind()
            ),
        }
    }

    fn into_record(self) -> Self::Record {
        match self {
            Self::Multigrid(m) => NetRecord::Multigrid(m.into_record()),
            Self::Dnc(d) => NetRecord::Dnc(d.into_record()),
        }
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>, D: AutodiffModule<B>> AutodiffModule<B>
    for Net<M, D>
{
    type InnerModule = Net<M::InnerModule, D::InnerModule>;

    fn valid(&self) -> Self::InnerModule {
        match self {
            Self::Multigrid(m) => Net::Multigrid(m.valid()),
            Self::Dnc(d) => Net::Dnc(d.valid()),
        }
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        match module {
            Net::Multigrid(m) => Self::Multigrid(M::from_inner(m)),
            Net::Dnc(d) => Self::Dnc(D::from_inner(d)),
        }
    }
}

impl<M: ModuleDisplay, D: ModuleDisplay> ModuleDisplayDefault for Net<M, D> {
    fn content(&self, content: Content) -> Option<Content> {
        let content = content.set_top_level_type(self.variant());
        match self {
            Self::Multigrid(m) => content.add("_0", m),
            Self::Dnc(d) => content.add("_0", d),
        }
        .optional()
    }

    fn num_params(&self) -> usize {
        match self {
            Self::Multigrid(m) => ModuleDisplayDefault::num_params(m),
            Self::Dnc(d) => ModuleDisplayDefault::num_params(d),
        }
    }
}

impl<M: ModuleDisplay, D: ModuleDisplay> ModuleDisplay for Net<M, D> {}
