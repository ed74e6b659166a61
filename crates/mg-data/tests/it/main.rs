//! Integration tests of `mg-data`, one binary (every extra test binary links burn again):
//! the committed fixtures, property tests of the readers, and the full data sets when present.

mod fixtures;
mod props;
mod real_data;

use std::path::{Path, PathBuf};

/// The workspace root (where `../shared/data` is looked up).
pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The fixtures: a small data root with `mnist/` and `babi/tasks_1-20_v1-2/` (built by
/// `scripts/make-fixtures.py`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
