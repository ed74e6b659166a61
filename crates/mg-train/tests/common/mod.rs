//! What the command-line tests share: the binary, a tiny mapping experiment, temporary
//! folders and runners that check success or a clean failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_mg-train");

/// A 5×5 maze (9 spiral steps), 6×6 localization map, a two-layer model.
pub const TINY: &str = r#"
[task]
kind = "mapping"
map_size = 5
mask_size = 6
mask_origin = 2
location = "normalized"
query_per = "sample"

[model]
levels = [1, 2]
channels = [2, 2]
tail_channels = 2

[train]
batch = 2
window = 4
time_steps = 26
checkpoint_every = 4
log_every = 4

[eval]
sequences = 4
batch = 2
"#;

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-train-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "mg-train {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "mg-train {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.contains("panicked"),
        "mg-train {args:?} panicked:\n{stderr}"
    );
    stderr
}

/// Parses a JSON document.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}
