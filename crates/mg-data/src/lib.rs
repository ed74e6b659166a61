//! Datasets of the multigrid-memory experiments: mapping worlds, sort, recall, MNIST, bAbI, and
//! the DNC's repeat-copy task.
//!
//! Synthetic samples are pure functions of `(seed, index)` ([`rng::Rng::keyed`]): reproducible, streamable,
//! nothing stored. MNIST and bAbI are read from a local directory ([`locate`] finds it); nothing is
//! downloaded. Samples are plain vectors; the mapping world's windows become tensors in [`batch`],
//! for any burn backend, the other tasks' in `mg-train`, laid out for each model kind.

pub mod babi;
pub mod batch;
pub mod copy;
pub mod error;
pub mod locate;
pub mod mapping;
pub mod mnist;
pub mod recall;
pub mod rng;
pub mod sort;

pub use copy::{RepeatCopyBatch, RepeatCopyConfig, RepeatCopySample};
pub use error::{DataError, Result};
