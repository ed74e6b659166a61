//! The experiment families, one module each, and the registry that maps a config's
//! `[task] kind` to its [`crate::harness::Task`] type.

pub mod algorithmic;
pub mod babi;
pub mod copy;
pub mod explore;
pub mod losses;
pub mod mapping;

pub use algorithmic::{Recall, Sort};
pub use babi::Babi;
pub use copy::Copy;
pub use explore::Explore;
pub use mapping::Mapping;

use crate::harness::Task;

/// Every `[task] kind` there is.
pub const KINDS: [&str; 6] = [
    Mapping::KIND,
    Copy::KIND,
    Sort::KIND,
    Recall::KIND,
    Babi::KIND,
    Explore::KIND,
];

/// Work generic over the task, run by [`visit`] for the task a config names.
pub trait TaskVisitor {
    /// What the work returns.
    type Output;
    /// Runs the work with task `T`.
    fn visit<T: Task>(self) -> Self::Output;
}

/// Runs `visitor` with the task of `kind`, or explains which kinds exist.
pub fn visit<V: TaskVisitor>(kind: &str, visitor: V) -> anyhow::Result<V::Output> {
    match kind {
        Mapping::KIND => Ok(visitor.visit::<Mapping>()),
        Copy::KIND => Ok(visitor.visit::<Copy>()),
        Sort::KIND => Ok(visitor.visit::<Sort>()),
        Recall::KIND => Ok(visitor.visit::<Recall>()),
        Babi::KIND => Ok(visitor.visit::<Babi>()),
        Explore::KIND => Ok(visitor.visit::<Explore>()),
        other => anyhow::bail!(
            "task.kind: `{other}` is not a task; expected one of {}",
            KINDS.map(|k| format!("\"{k}\"")).join(", ")
        ),
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
