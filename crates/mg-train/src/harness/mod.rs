//! What every task shares, written once: the config's `[train]` and `[eval]` tables, the
//! training loop (truncated BPTT with carried, detached state), optimizers, clipping and the
//! learning-rate schedule, divergence checks, verified atomic checkpoints and exact resume,
//! the run-directory lock, progress, metrics and learning curves, and benchmarks.
//!
//! A task ([`Task`]) owns the rest. This module never imports a task module (a test in
//! `tasks` checks it).

pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod experiment;
pub mod machine;
pub mod metrics;
pub mod nodes;
pub mod optim;
pub mod progress;
pub mod stop;
pub mod task;
#[cfg(test)]
pub mod testing;
pub mod train;

pub use checkpoint::{Progress, RunDir, RunLock};
pub use experiment::{
    EvalConfig, Experiment, LossReduction, OptimizerKind, PathChoice, TEST_SEED, TrainConfig,
};
pub use task::{
    CarriedState, EpochSize, EvalRequest, ForeignNames, ForwardPath, ModelInfo, Report,
    RestoreState, Task, WindowLoss, shard_ranges,
};
pub use train::{ExperimentOf, TrainOptions};
