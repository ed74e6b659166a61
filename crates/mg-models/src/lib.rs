//! Models built from multigrid memory layers: the memory mesh (writer) and its reference
//! configurations.
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

mod mesh;

pub use mesh::{MemoryMesh, MemoryMeshConfig};

#[cfg(test)]
pub(crate) type TestBackend = burn::backend::Flex;
