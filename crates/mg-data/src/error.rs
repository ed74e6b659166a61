//! The error type of `mg-data`.

use std::path::PathBuf;

/// Errors from loading, parsing or configuring a dataset. Every message names the file (and line, for bAbI)
/// or the setting at fault and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data directory does not exist.
    #[error("{path}: directory not found (expected {expected})")]
    MissingDir {
        /// The directory.
        path: PathBuf,
        /// What should be there.
        expected: String,
    },
    /// A data file does not exist.
    #[error("{path}: file not found (expected {expected})")]
    MissingFile {
        /// The file (or the first name tried).
        path: PathBuf,
        /// What should be there.
        expected: String,
    },
    /// Reading a file failed.
    #[error("{path}: read error")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip stream is truncated or corrupt.
    #[error("{path}: corrupt or truncated gzip data (expected a complete gzip stream): {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },
    /// An IDX file has the wrong magic number.
    #[error("{path}: bad IDX magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic number read.
        found: u32,
        /// The magic number expected.
        expected: u32,
    },
    /// An IDX file has the wrong size, dimensions or contents.
    #[error("{path}: {what}: found {found}, expected {expected}")]
    BadIdx {
        /// The file.
        path: PathBuf,
        /// Which field is wrong.
        what: &'static str,
        /// The value found.
        found: u64,
        /// The value expected.
        expected: String,
    },
    /// An images file and its labels file disagree on the number of items.
    #[error(
        "{images} has {n_images} images but {labels} has {n_labels} labels (expected equal counts)"
    )]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Its count.
        n_images: u64,
        /// The labels file.
        labels: PathBuf,
        /// Its count.
        n_labels: u64,
    },
    /// A malformed bAbI line.
    #[error("{path}:{line}: {message}")]
    BabiLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A bAbI task file with no story in it.
    #[error("{path}: empty bAbI task file (expected stories of `ID text` lines)")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// An unknown bAbI task name.
    #[error(
        "unknown bAbI task `{name}` (expected 1..=20, qa1..qa20 or a file stem such as qa1_single-supporting-fact)"
    )]
    UnknownTask {
        /// The name given.
        name: String,
    },
    /// A word the vocabulary does not hold.
    #[error(
        "`{}` is not in the bAbI vocabulary ({size} words, from the training and test files)",
        crate::babi::quote_word(.word)
    )]
    UnknownWord {
        /// The word.
        word: String,
        /// Words the vocabulary holds.
        size: usize,
    },
    /// A word of a bAbI file outside a fixed vocabulary (bAbI v1.2's, which models are
    /// built for).
    #[error(
        "{path}:{line}: the word `{}` is not in bAbI v1.2's vocabulary of {size} words",
        crate::babi::quote_word(.word)
    )]
    WordOutsideVocabulary {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The word.
        word: String,
        /// Words the vocabulary holds.
        size: usize,
    },
    /// An invalid configuration.
    #[error("invalid {what}: {message}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// `Result` with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn config_err(what: &'static str, message: impl Into<String>) -> DataError {
    DataError::Config {
        what,
        message: message.into(),
    }
}
