//! The one error type of the crate.

use thiserror::Error;

/// A model configuration that cannot be built, or a saved state that does not fit a model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A configuration field has a value the model cannot be built with.
    #[error("`{field}` {problem}")]
    Invalid {
        /// The field, as the config struct names it.
        field: String,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// A saved recurrent state does not fit the model.
    #[error("saved state: {0}")]
    State(String),
    /// A model was given the state another kind of model carries.
    #[error("a {model} model was given a {state} model's state")]
    WrongKind {
        /// The model's kind.
        model: &'static str,
        /// The state's kind.
        state: &'static str,
    },
}

impl ModelError {
    /// An [`ModelError::Invalid`] error.
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The field an [`ModelError::Invalid`] error names.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::State(_) | Self::WrongKind { .. } => None,
        }
    }
}
