//! The experiment families, one module each, and the registry that maps a config's
//! `[task] kind` to its [`crate::harness::Task`] type.

pub mod algorithmic;
pub mod babi;
pub mod copy;
pub mod explore;
pub mod losses;
pub mod mapping;
pub mod rows;
pub mod scoring;

pub use algorithmic::{Recall, Sort};
pub use babi::Babi;
pub use copy::Copy;
pub use explore::Explore;
pub use mapping::Mapping;

use burn::tensor::Tensor;
use mg_layers::MgBackend;
use mg_models::{Dnc, DncState, Kind, Net, NetState, RecurrentState, StateOf};

use crate::harness::{CarriedState, RestoreState, Task};

/// Work generic over the task, run by [`visit`] for the task a config names.
pub trait TaskVisitor {
    /// What the work returns.
    type Output;
    /// Runs the work with task `T`.
    fn visit<T: Task>(self) -> Self::Output;
}

/// The registry: [`KINDS`] and [`visit`] from one list of task types.
macro_rules! registry {
    ($($task:ident),+ $(,)?) => {
        /// Every `[task] kind` there is.
        pub const KINDS: &[&str] = &[$($task::KIND),+];

        /// Runs `visitor` with the task of `kind`, or explains which kinds exist.
        pub fn visit<V: TaskVisitor>(kind: &str, visitor: V) -> anyhow::Result<V::Output> {
            $(
                if kind == $task::KIND {
                    return Ok(visitor.visit::<$task>());
                }
            )+
            anyhow::bail!(
                "task.kind: `{kind}` is not a task; expected one of {}",
                KINDS.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
            )
        }
    };
}

registry!(Mapping, Copy, Sort, Recall, Babi, Explore);

impl<B: MgBackend, S: RecurrentState<B>, T: RecurrentState<B>> CarriedState<B> for NetState<S, T> {
    fn detach(self) -> Self {
        RecurrentState::detach(self)
    }

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        RecurrentState::into_tensors(self)
    }
}

impl<B: MgBackend> CarriedState<B> for DncState<B> {
    fn detach(self) -> Self {
        DncState::detach(self)
    }

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        DncState::into_tensors(self)
    }
}

impl<B: MgBackend, M: Kind<B>, D: Kind<B>> RestoreState<B, StateOf<B, M, D>> for Net<M, D> {
    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> anyhow::Result<StateOf<B, M, D>> {
        Ok(Net::state_from_tensors(self, tensors)?)
    }
}

impl<B: MgBackend> RestoreState<B, DncState<B>> for Dnc<B> {
    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> anyhow::Result<DncState<B>> {
        Ok(Kind::state_from_tensors(self, tensors)?)
    }
}

#[cfg(test)]
mod tests {
    /// The harness is written once for every task: none of its files names a task module.
    #[test]
    fn the_harness_imports_no_task() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/harness");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for word in [
                "tasks::",
                "mg_data::",
                "mg_models::",
                "Localizer",
                "Mapping",
            ] {
                assert!(
                    !text.contains(word),
                    "{} mentions `{word}`; the harness must not depend on a task",
                    path.display()
                );
            }
            files += 1;
        }
        assert!(files >= 8, "only {files} harness files");
    }
}
