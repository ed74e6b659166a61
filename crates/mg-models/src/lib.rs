//! Models built from multigrid memory layers: the memory mesh (writer), multigrid readers, the exploration policy ([`PolicyNet`]), the
//! algorithmic tasks' memory + reader and encoder–decoder ([`AlgoModel`]), and
//! their reference configurations; the paper's baselines (the [`dnc`] module, Ablated MG and
//! ConvLSTM-deep/thick as [`MappingWidths`] presets); and [`Net`], a task's model of either
//! kind (multigrid or DNC) with the state it carries: [`Localizer`] (mapping), [`AlgoNet`]
//! (sort and recall) and [`QaNet`] (bAbI) are `Net`s.
//!
//! ```
//! use burn::backend::Flex;
//! use mg_models::MemoryMeshConfig;
//!
//! let config = MemoryMeshConfig::mapping_reference();
//! assert_eq!(config.memory_cells(), 76_968);
//! let mesh = config.init::<Flex>(&Default::default());
//! assert_eq!(mesh.num_layers(), 7);
//! ```

mod algorithmic;
pub mod dnc;
mod error;
pub mod interop;
mod localizer;
mod mapping;
mod mesh;
mod net;
mod policy;
mod qa;
mod reader;
mod state;

pub use algorithmic::{AlgoModel, AlgoModelConfig, AlgoNet, AlgoNetConfig, AlgoWidths, Answer};
pub use dnc::{Dnc, DncConfig, DncState, ReadModeOrder, StrengthOp};
pub use error::ModelError;
pub use localizer::{DncLocalizer, DncLocalizerConfig, Glimpses, Localizer, LocalizerConfig};
pub use mapping::{
    BASE_SIZE, D_ENCODING, MappingModel, MappingModelConfig, MappingWidths, fold_patch,
    folded_channels,
};
pub use mesh::{MemoryMesh, MemoryMeshConfig};
pub use net::{
    Forward, Kind, KindConfig, Net, NetConfig, NetRecord, NetState, RecurrentState, Rows, StateOf,
};
pub use policy::{ExploreNet, PolicyNet, PolicyNetConfig};
pub use qa::{QaModel, QaModelConfig, QaNet, QaNetConfig, QaWidths};
pub use reader::{MgReader, MgReaderConfig};
pub use state::MemoryState;

#[cfg(all(test, not(any(feature = "test-wgpu", feature = "test-cuda"))))]
pub(crate) type TestBackend = burn::backend::Flex;
#[cfg(all(test, feature = "test-wgpu"))]
pub(crate) type TestBackend = mg_layers::backend::PlainWgpu;
#[cfg(all(test, feature = "test-cuda", not(feature = "test-wgpu")))]
pub(crate) type TestBackend = burn::backend::Cuda;
