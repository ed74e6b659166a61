//! Property tests of the command line's parsers: configs (every task's), checkpoint progress and
//! manifests. Arbitrary bytes and mutations of valid files never panic; they give an error or
//! a valid value.

use std::path::Path;

use proptest::prelude::*;

use crate::harness::Task;
use crate::harness::checkpoint::{self, RunDir};
use crate::harness::experiment::task_kind;

/// Parses `text` as the commands do: the kind, then the task's tables and checks.
fn parse_any(text: &str) -> anyhow::Result<()> {
    struct Parse<'a>(&'a str);
    impl crate::tasks::TaskVisitor for Parse<'_> {
        type Output = anyhow::Result<()>;
        fn visit<T: Task>(self) -> anyhow::Result<()> {
            crate::harness::experiment::load_config::<T>(Path::new("prop.toml"), self.0).map(|_| ())
        }
    }
    let kind = task_kind(text)?;
    crate::tasks::visit(&kind, Parse(text))?
}

fn shipped() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    [
        "mapping/quick.toml",
        "mapping/dnc-spiral-15.toml",
        "copy/quick.toml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).unwrap())
    .collect()
}

/// A mutation of a byte string: truncation, a flipped byte, an inserted or removed byte.
fn mutate(bytes: &[u8], kind: u8, at: usize, value: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![value];
    }
    let i = at % out.len();
    match kind % 4 {
        0 => out.truncate(i),
        1 => out[i] ^= value | 1,
        2 => out.insert(i, value),
        _ => {
            out.remove(i);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_any(&text);
    }

    #[test]
    fn mutated_configs_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = shipped()[which].clone().into_bytes();
        for (kind, at, value) in edits {
            bytes = mutate(&bytes, kind, at, value);
        }
        let _ = parse_any(&String::from_utf8_lossy(&bytes));
    }

    /// Numbers in a valid config replaced by arbitrary ones: an error or a valid task.
    #[test]
    fn arbitrary_numbers_never_panic(which in 0usize..3, field in 0usize..40, value in any::<i64>()) {
        let text = shipped()[which].clone();
        let mut count = 0;
        let replaced: Vec<String> = text
            .lines()
            .map(|line| {
                let is_number = line
                    .split_once('=')
                    .is_some_and(|(_, v)| v.trim().split('#').next().unwrap_or("").trim().parse::<f64>().is_ok());
                if is_number {
                    count += 1;
                    if count == field {
                        let key = line.split_once('=').unwrap().0;
                        return format!("{key}= {value}");
                    }
                }
                line.to_string()
            })
            .collect();
        let _ = parse_any(&replaced.join("\n"));
    }

    #[test]
    fn checkpoint_metadata_never_panics(
        progress in proptest::collection::vec(any::<u8>(), 0..200),
        manifest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = std::env::temp_dir().join(format!(
            "mg-prop-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("progress.json"), &progress).unwrap();
        std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
        let _ = RunDir::progress(&dir);
        let _ = RunDir::manifest(&dir);
        let _ = checkpoint::verify(&dir);
        std::fs::remove_dir_all(&dir).ok();
    }
}
