//! Run directories and atomic checkpoints.
//!
//! ```text
//! RUN/config.toml               the resolved experiment (every field)
//! RUN/metrics.jsonl             one JSON line per log interval
//! RUN/learning_curve.png        loss against time steps
//! RUN/checkpoints/latest        the name of the newest complete checkpoint
//! RUN/checkpoints/step-N/       model.bin, optim.bin, carry.bin (LSTM state), progress.json
//! ```
//! A checkpoint is written into a temporary folder, renamed into place, and only then named in
//! `latest` (itself replaced by a rename), so a crash at any point leaves the previous
//! checkpoint intact.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Where training stands; enough to continue exactly.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Time steps trained (windows × their lengths).
    pub time_step: u64,
    /// Optimizer updates.
    pub updates: u64,
    /// Index of the current training batch of episodes.
    pub batch_index: u64,
    /// Next step inside the current episodes (0: a new batch starts).
    pub episode_t: usize,
}

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run's root folder.
    pub root: PathBuf,
}

impl RunDir {
    /// A run folder (not checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// An existing run folder with a config, or an error naming what is missing.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        if !root.is_dir() {
            bail!("run directory {} does not exist", root.display());
        }
        let run = Self::new(root);
        if !run.config().is_file() {
            bail!(
                "{} is not a run directory: {} is missing",
                root.display(),
                run.config().display()
            );
        }
        Ok(run)
    }

    /// The resolved experiment config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The metrics log.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// The learning-curve picture.
    pub fn curve(&self) -> PathBuf {
        self.root.join("learning_curve.png")
    }

    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The newest complete checkpoint's folder, if any.
    pub fn latest(&self) -> anyhow::Result<Option<PathBuf>> {
        let pointer = self.checkpoints().join("latest");
        if !pointer.exists() {
            return Ok(None);
        }
        let name = fs::read_to_string(&pointer)
            .with_context(|| format!("reading {}", pointer.display()))?;
        let dir = self.checkpoints().join(name.trim());
        if !dir.is_dir() {
            bail!(
                "{} names {}, which does not exist",
                pointer.display(),
                dir.display()
            );
        }
        Ok(Some(dir))
    }

    /// Writes a checkpoint atomically: `write` fills a temporary folder, which then becomes
    /// `step-N` and the newest checkpoint. Older checkpoints beyond the last two are removed.
    pub fn save_checkpoint(
        &self,
        progress: &Progress,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        let checkpoints = self.checkpoints();
        fs::create_dir_all(&checkpoints)
            .with_context(|| format!("creating {}", checkpoints.display()))?;
        let name = format!("step-{}", progress.time_step);
        let tmp = checkpoints.join(format!(".tmp-{name}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(&tmp)?;
        write_atomic(
            &tmp.join("progress.json"),
            &serde_json::to_vec_pretty(progress)?,
        )?;
        let dir = checkpoints.join(&name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::rename(&tmp, &dir).with_context(|| format!("moving {} into place", dir.display()))?;
        write_atomic(&checkpoints.join("latest"), name.as_bytes())?;
        self.prune(&name)?;
        Ok(dir)
    }

    /// Removes all but the two newest checkpoints and leftovers of interrupted writes.
    fn prune(&self, newest: &str) -> anyhow::Result<()> {
        let mut steps: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(self.checkpoints())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                fs::remove_dir_all(entry.path()).ok();
            } else if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok())
                && name != newest
            {
                steps.push((step, entry.path()));
            }
        }
        steps.sort();
        let keep_from = steps.len().saturating_sub(1);
        for (_, path) in &steps[..keep_from] {
            fs::remove_dir_all(path).ok();
        }
        Ok(())
    }

    /// Reads a checkpoint's progress.
    pub fn progress(dir: &Path) -> anyhow::Result<Progress> {
        let path = dir.join("progress.json");
        let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced to disk.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_replaced_atomically_and_pruned() {
        let root = std::env::temp_dir().join(format!("mg-ckpt-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        assert!(run.latest().unwrap().is_none());
        for step in [10, 20, 30] {
            let progress = Progress {
                time_step: step,
                ..Progress::default()
            };
            run.save_checkpoint(&progress, |dir| Ok(fs::write(dir.join("model.bin"), b"x")?))
                .unwrap();
        }
        let latest = run.latest().unwrap().unwrap();
        assert!(latest.ends_with("step-30"));
        assert_eq!(RunDir::progress(&latest).unwrap().time_step, 30);
        assert!(!root.join("checkpoints/step-10").exists());
        assert!(root.join("checkpoints/step-20").exists());
        // A failed write keeps the previous checkpoint.
        let failed = run.save_checkpoint(
            &Progress {
                time_step: 40,
                ..Progress::default()
            },
            |_| bail!("disk full"),
        );
        assert!(failed.is_err());
        assert!(run.latest().unwrap().unwrap().ends_with("step-30"));
        fs::remove_dir_all(&root).ok();
    }
}
