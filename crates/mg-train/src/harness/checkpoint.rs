//! Run directories, their lock, and atomic, verified checkpoints.
//!
//! ```text
//! RUN/config.toml               the resolved experiment (every field)
//! RUN/metrics.jsonl             one JSON line per log interval
//! RUN/learning_curve.png        loss against time steps
//! RUN/lock                      held by the process writing to the run; names it
//! RUN/checkpoints/latest        the name of the newest complete checkpoint
//! RUN/checkpoints/step-N/       model.bin, optim.bin, carry.bin (recurrent state),
//!                               progress.json, manifest.json (shapes, sizes, CRC-32s)
//! ```
//! A checkpoint is written into a temporary folder, renamed into place, and only then named in
//! `latest` (itself replaced by a rename), so a crash at any point leaves the previous
//! checkpoint intact. Its manifest lets a reader tell a truncated or corrupt file, or one
//! written by another model, before burn parses it.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Where training stands; enough to continue exactly.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Time steps trained (windows × their lengths).
    pub time_step: u64,
    /// Optimizer updates.
    pub updates: u64,
    /// Index of the current training batch of sequences.
    pub batch_index: u64,
    /// Next step inside the current sequences (0: a new batch starts).
    pub episode_t: usize,
    /// Wall time spent training, over every process of the run, seconds.
    #[serde(default)]
    pub elapsed_s: f64,
}

impl Progress {
    /// Equal but for the wall time.
    pub fn same_position(&self, other: &Self) -> bool {
        (
            self.time_step,
            self.updates,
            self.batch_index,
            self.episode_t,
        ) == (
            other.time_step,
            other.updates,
            other.batch_index,
            other.episode_t,
        )
    }
}

/// What a checkpoint holds, written last into its folder.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The task kind that wrote it.
    pub task: String,
    /// The model's description (kind and widths), for error messages.
    pub model: String,
    /// Shapes of the model's float parameters, in visiting order.
    pub shapes: Vec<Vec<usize>>,
    /// Every other file of the checkpoint: name, size in bytes, CRC-32.
    pub files: Vec<(String, u64, u32)>,
}

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The run's root folder.
    pub root: PathBuf,
}

/// Files whose presence makes a folder a run.
const RUN_FILES: [&str; 7] = [
    "config.toml",
    "metrics.jsonl",
    "learning_curve.png",
    "checkpoints",
    "eval.json",
    "validation.jsonl",
    "viz",
];

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

    /// The run files already in the folder (a new run needs none).
    pub fn existing_files(&self) -> Vec<&'static str> {
        RUN_FILES
            .into_iter()
            .filter(|f| self.root.join(f).exists())
            .collect()
    }

    /// Moves every run file into `RUN/previous-N/` (never deletes); returns that folder.
    pub fn move_aside(&self) -> anyhow::Result<PathBuf> {
        let aside = (1..)
            .map(|n| self.root.join(format!("previous-{n}")))
            .find(|p| !p.exists())
            .expect("a free name");
        fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
        for f in self.existing_files() {
            let (from, to) = (self.root.join(f), aside.join(f));
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        Ok(aside)
    }

    /// The newest complete checkpoint's folder, if any. `latest` must name a `step-N` folder
    /// inside `checkpoints/`.
    pub fn latest(&self) -> anyhow::Result<Option<PathBuf>> {
        let pointer = self.checkpoints().join("latest");
        if !pointer.exists() {
            return Ok(None);
        }
        let name = read_small(&pointer, 64)?;
        let name = name.trim();
        if !is_step_name(name) {
            bail!(
                "{} names `{name}`; expected a checkpoint folder `step-N` beside it",
                pointer.display()
            );
        }
        let dir = self.checkpoints().join(name);
        if !dir.is_dir() {
            bail!(
                "{} names {}, which does not exist",
                pointer.display(),
                dir.display()
            );
        }
        Ok(Some(dir))
    }

    /// Every `step-N` checkpoint folder, newest first.
    pub fn all_checkpoints(&self) -> anyhow::Result<Vec<PathBuf>> {
        let dir = self.checkpoints();
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut steps: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
                steps.push((step, entry.path()));
            }
        }
        steps.sort();
        Ok(steps.into_iter().rev().map(|(_, p)| p).collect())
    }

    /// The validation log: one `{"time_step", "error", "best"}` line per checkpoint.
    pub fn validation(&self) -> PathBuf {
        self.root.join("validation.jsonl")
    }

    /// Logs checkpoint `dir`'s validation error and, when it is the lowest so far, copies the
    /// checkpoint to `checkpoints/best` (replaced atomically; pruning never removes it).
    pub fn record_validation(&self, dir: &Path, time_step: u64, error: f64) -> anyhow::Result<()> {
        let best_dir = self.checkpoints().join(BEST);
        let previous = if best_dir.is_dir() && verify(&best_dir).is_ok() {
            let text = read_small(&best_dir.join("validation.json"), 4096).ok();
            // The exact bits: a decimal float read back may differ in its last place.
            text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v.get("error_bits")?.as_u64())
                .map(f64::from_bits)
        } else {
            None
        };
        let improved = error.is_finite() && previous.is_none_or(|p| error < p);
        if improved {
            let tmp = self.checkpoints().join(".tmp-best");
            if tmp.exists() {
                fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
            }
            let copy = (|| -> anyhow::Result<()> {
                fs::create_dir_all(&tmp)?;
                for entry in fs::read_dir(dir)? {
                    let entry = entry?;
                    fs::copy(entry.path(), tmp.join(entry.file_name()))?;
                }
                let record = serde_json::json!({
                    "time_step": time_step,
                    "error": error,
                    "error_bits": error.to_bits(),
                });
                write_atomic(&tmp.join("validation.json"), record.to_string().as_bytes())?;
                if best_dir.exists() {
                    fs::remove_dir_all(&best_dir)?;
                }
                fs::rename(&tmp, &best_dir)?;
                Ok(())
            })();
            if let Err(e) = copy {
                fs::remove_dir_all(&tmp).ok();
                return Err(e.context(format!(
                    "copying {} to {}",
                    dir.display(),
                    best_dir.display()
                )));
            }
        }
        let line = serde_json::json!({ "time_step": time_step, "error": error, "best": improved });
        let path = self.validation();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        use std::io::Write;
        writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The checkpoint named `step-N` or `best` (`--from`), or the newest intact one (with a warning for
    /// each newer one that is damaged). An error names every damaged file.
    pub fn pick_checkpoint(&self, from: Option<&str>) -> anyhow::Result<Option<PathBuf>> {
        if let Some(name) = from {
            if !is_step_name(name) && name != BEST {
                bail!("--from {name}: expected a checkpoint name such as step-2000, or best");
            }
            let dir = self.checkpoints().join(name);
            if !dir.is_dir() {
                let have: Vec<String> = self
                    .all_checkpoints()?
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                bail!(
                    "{} does not exist; the run has {}",
                    dir.display(),
                    if have.is_empty() {
                        "no checkpoint".into()
                    } else {
                        have.join(", ")
                    }
                );
            }
            verify(&dir)?;
            return Ok(Some(dir));
        }
        let mut candidates = self.all_checkpoints()?;
        if let Some(latest) = self.latest()? {
            candidates.retain(|p| p != &latest);
            candidates.insert(0, latest);
        }
        let mut damaged = Vec::new();
        for dir in candidates {
            match verify(&dir) {
                Ok(()) => {
                    for why in &damaged {
                        eprintln!("warning: skipping a damaged checkpoint: {why:#}");
                    }
                    if !damaged.is_empty() {
                        eprintln!("warning: using {}", dir.display());
                    }
                    return Ok(Some(dir));
                }
                Err(e) => damaged.push(e),
            }
        }
        match damaged.len() {
            0 => Ok(None),
            _ => {
                let list: Vec<String> = damaged.iter().map(|e| format!("{e:#}")).collect();
                bail!("no intact checkpoint: {}", list.join("; "))
            }
        }
    }

    /// Writes a checkpoint atomically: `write` fills a temporary folder, the manifest is added,
    /// the folder becomes `step-N` and the newest checkpoint. Older checkpoints beyond the
    /// newest two are removed. On failure the temporary folder is removed and the error names
    /// the path.
    pub fn save_checkpoint(
        &self,
        progress: &Progress,
        manifest: Manifest,
        write: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<PathBuf> {
        let checkpoints = self.checkpoints();
        fs::create_dir_all(&checkpoints)
            .with_context(|| format!("creating {}", checkpoints.display()))?;
        let name = format!("step-{}", progress.time_step);
        let tmp = checkpoints.join(format!(".tmp-{name}"));
        let result = (|| -> anyhow::Result<PathBuf> {
            if tmp.exists() {
                fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
            }
            fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            write(&tmp)
                .with_context(|| format!("writing the checkpoint into {}", tmp.display()))?;
            write_atomic(
                &tmp.join("progress.json"),
                &serde_json::to_vec_pretty(progress)?,
            )?;
            let mut manifest = manifest;
            manifest.files = file_sums(&tmp)?;
            write_atomic(
                &tmp.join("manifest.json"),
                &serde_json::to_vec_pretty(&manifest)?,
            )?;
            let dir = checkpoints.join(&name);
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            fs::rename(&tmp, &dir)
                .with_context(|| format!("moving {} into place", dir.display()))?;
            write_atomic(&checkpoints.join("latest"), name.as_bytes())?;
            Ok(dir)
        })();
        if result.is_err() {
            fs::remove_dir_all(&tmp).ok();
        }
        let dir = result?;
        self.prune(&name)?;
        Ok(dir)
    }

    /// Removes all but the two newest checkpoints and leftovers of interrupted writes.
    fn prune(&self, newest: &str) -> anyhow::Result<()> {
        for entry in fs::read_dir(self.checkpoints())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                fs::remove_dir_all(entry.path()).ok();
            }
        }
        let older: Vec<PathBuf> = self
            .all_checkpoints()?
            .into_iter()
            .filter(|p| !p.ends_with(newest))
            .collect();
        for path in older.iter().skip(1) {
            fs::remove_dir_all(path).ok();
        }
        Ok(())
    }

    /// Reads a checkpoint's progress.
    pub fn progress(dir: &Path) -> anyhow::Result<Progress> {
        let path = dir.join("progress.json");
        let text = read_small(&path, 4096)?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Reads a checkpoint's manifest.
    pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join("manifest.json");
        if !path.exists() {
            bail!(
                "{} is missing: the checkpoint is incomplete or was written by an older \
                 version of mg-train",
                path.display()
            );
        }
        let text = read_small(&path, 16 << 20)?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The folder of the checkpoint with the lowest validation error.
pub const BEST: &str = "best";

fn is_step_name(name: &str) -> bool {
    name.strip_prefix("step-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads a small text file, refusing one larger than `limit` bytes.
fn read_small(path: &Path, limit: u64) -> anyhow::Result<String> {
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(text)
}

fn crc32(path: &Path) -> anyhow::Result<(u64, u32)> {
    let mut file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize()))
}

/// Size and CRC-32 of every file in a checkpoint folder, by name.
fn file_sums(dir: &Path) -> anyhow::Result<Vec<(String, u64, u32)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "manifest.json" || name.ends_with(".tmp") {
            continue;
        }
        let (len, crc) = crc32(&entry.path())?;
        files.push((name, len, crc));
    }
    files.sort();
    Ok(files)
}

/// Checks a checkpoint against its manifest: every file present, of its size and CRC-32.
pub fn verify(dir: &Path) -> anyhow::Result<()> {
    let manifest = RunDir::manifest(dir)?;
    for (name, len, crc) in &manifest.files {
        let path = dir.join(name);
        if !path.is_file() {
            bail!("{} is missing", path.display());
        }
        let (found_len, found_crc) = crc32(&path)?;
        if found_len < *len {
            bail!(
                "{} is truncated: {found_len} bytes of {len}",
                path.display()
            );
        }
        if found_len != *len || found_crc != *crc {
            bail!(
                "{} is corrupt: its contents differ from what was written",
                path.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file and a rename, synced to disk; on
/// failure the temporary file is removed and the error names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = (|| -> anyhow::Result<()> {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    })();
    if result.is_err() {
        fs::remove_file(&tmp).ok();
    }
    result
}

/// An exclusive lock on a run directory, held until dropped (or the process ends: the
/// operating system releases it even after `kill -9`).
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Takes the lock of `root` (created if needed) for `command`, or explains who holds it.
    pub fn acquire(root: &Path, command: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let path = root.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                bail!(
                    "{} is in use by another mg-train process ({}); wait for it to finish or \
                     stop it first",
                    root.display(),
                    if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder.to_string()
                    }
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "pid {}: mg-train {command}", std::process::id())
            .and_then(|()| file.flush())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            task: "test".into(),
            model: "none".into(),
            shapes: vec![vec![1]],
            files: Vec::new(),
        }
    }

    /// The best checkpoint is the one with the lowest validation error; a tie keeps the
    /// earlier one, and `--from best` picks it.
    #[test]
    fn the_lowest_validation_error_is_kept() {
        let root = std::env::temp_dir().join(format!("mg-best-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        // 0.195 − ε: a value whose decimal form does not read back exactly everywhere.
        let tie = 0.19499999999999998;
        for (step, error) in [(10, 0.5), (20, tie), (30, tie), (40, 0.75)] {
            let dir = run
                .save_checkpoint(&at(step), manifest(), |d| {
                    fs::write(d.join("model.bin"), step.to_string())?;
                    Ok(())
                })
                .unwrap();
            run.record_validation(&dir, step, error).unwrap();
        }
        let best = run.pick_checkpoint(Some(BEST)).unwrap().unwrap();
        assert_eq!(RunDir::progress(&best).unwrap().time_step, 20);
        let log = fs::read_to_string(run.validation()).unwrap();
        let flags: Vec<bool> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["best"] == true)
            .collect();
        assert_eq!(flags, [true, true, false, false]);
        assert_eq!(
            run.all_checkpoints().unwrap().len(),
            2,
            "pruning keeps best aside"
        );
        fs::remove_dir_all(&root).ok();
    }

    fn at(step: u64) -> Progress {
        Progress {
            time_step: step,
            ..Progress::default()
        }
    }

    #[test]
    fn checkpoints_are_replaced_atomically_and_pruned() {
        let root = std::env::temp_dir().join(format!("mg-ckpt-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        assert!(run.latest().unwrap().is_none());
        for step in [10, 20, 30] {
            run.save_checkpoint(&at(step), manifest(), |dir| {
                Ok(fs::write(dir.join("model.bin"), b"x")?)
            })
            .unwrap();
        }
        let latest = run.latest().unwrap().unwrap();
        assert!(latest.ends_with("step-30"));
        assert_eq!(RunDir::progress(&latest).unwrap().time_step, 30);
        assert!(!root.join("checkpoints/step-10").exists());
        assert!(root.join("checkpoints/step-20").exists());
        // A failed write keeps the previous checkpoint and leaves no temporary folder.
        let failed = run.save_checkpoint(&at(40), manifest(), |_| bail!("disk full"));
        assert!(format!("{:#}", failed.unwrap_err()).contains(".tmp-step-40"));
        assert!(!root.join("checkpoints/.tmp-step-40").exists());
        assert!(run.latest().unwrap().unwrap().ends_with("step-30"));
        fs::remove_dir_all(&root).ok();
    }

    /// A full disk (writes through `/dev/full` fail with ENOSPC) gives an error naming the
    /// file, leaves no temporary folder and keeps the previous checkpoint.
    #[test]
    fn a_full_disk_is_reported_and_cleaned_up() {
        let root = std::env::temp_dir().join(format!("mg-full-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        run.save_checkpoint(&at(10), manifest(), |dir| {
            Ok(fs::write(dir.join("model.bin"), b"x")?)
        })
        .unwrap();
        let failed = run.save_checkpoint(&at(20), manifest(), |dir| {
            let path = dir.join("model.bin");
            std::os::unix::fs::symlink("/dev/full", &path)?;
            let mut file = fs::OpenOptions::new().write(true).open(&path)?;
            file.write_all(&[0u8; 4096])
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))
        });
        let err = format!("{:#}", failed.unwrap_err());
        assert!(
            err.contains("model.bin") && err.contains("No space left"),
            "{err}"
        );
        assert!(!root.join("checkpoints/.tmp-step-20").exists());
        assert!(run.latest().unwrap().unwrap().ends_with("step-10"));
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn damaged_checkpoints_are_named_and_skipped() {
        let root = std::env::temp_dir().join(format!("mg-damaged-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        for step in [10, 20] {
            run.save_checkpoint(&at(step), manifest(), |dir| {
                Ok(fs::write(dir.join("model.bin"), b"weights")?)
            })
            .unwrap();
        }
        let newest = root.join("checkpoints/step-20/model.bin");
        fs::write(&newest, b"wei").unwrap();
        let err = format!("{:#}", verify(newest.parent().unwrap()).unwrap_err());
        assert!(err.contains("truncated: 3 bytes of 7"), "{err}");
        fs::write(&newest, b"WEIGHTS").unwrap();
        let err = format!("{:#}", verify(newest.parent().unwrap()).unwrap_err());
        assert!(err.contains("is corrupt"), "{err}");
        // The intact older one is used.
        let picked = run.pick_checkpoint(None).unwrap().unwrap();
        assert!(picked.ends_with("step-10"), "{}", picked.display());
        assert!(run.pick_checkpoint(Some("step-20")).is_err());
        assert!(run.pick_checkpoint(Some("../x")).is_err());
        // `latest` may only name a checkpoint beside it.
        fs::write(root.join("checkpoints/latest"), "../../other").unwrap();
        let err = format!("{:#}", run.latest().unwrap_err());
        assert!(err.contains("expected a checkpoint folder"), "{err}");
        fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let root = std::env::temp_dir().join(format!("mg-lock-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let first = RunLock::acquire(&root, "train a.toml").unwrap();
        let err = format!("{:#}", RunLock::acquire(&root, "train b.toml").unwrap_err());
        assert!(err.contains("in use by another mg-train process"), "{err}");
        assert!(
            err.contains(&format!(
                "pid {}: mg-train train a.toml",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        RunLock::acquire(&root, "resume").unwrap();
        fs::remove_dir_all(&root).ok();
    }
}
