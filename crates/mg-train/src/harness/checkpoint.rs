//! Run directories, their lock, and atomic, verified checkpoints.
//!
//! ```text
//! RUN/config.toml               the resolved experiment (every field)
//! RUN/metrics.jsonl             one JSON line per log interval
//! RUN/learning_curve.png        loss against time steps
//! RUN/writer.txt                the process writing to the run (the lock is `flock` on RUN itself)
//! RUN/checkpoints/latest        the name of the newest complete checkpoint
//! RUN/checkpoints/step-N/       model.bin, optim.bin, carry.bin (recurrent state),
//!                               progress.json, manifest.json (shapes, sizes, CRC-32s)
//! ```
//! A checkpoint is written into a temporary folder, renamed into place, and only then named in
//! `latest` (itself replaced by a rename), so a crash at any point leaves the previous
//! checkpoint intact. Its manifest lets a reader tell a truncated or corrupt file, or one
//! written by another model, before burn parses it.

use std::fs;
use std::io::{Read, Write};
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

/// Every file and folder a run writes into its root, whoever writes it: `train` and `resume`
/// (config, metrics, learning curves, checkpoints, validation log), `eval` (`eval.json`), `viz`
/// (`viz/`) and `export` (`model.safetensors`). A folder holding any of them is an earlier run,
/// and `train --force` moves every one of them aside. The writers take their paths from
/// [`RunDir`]'s methods, which a test checks against this list.
pub const RUN_FILES: [&str; 9] = [
    "config.toml",
    "metrics.jsonl",
    "learning_curve.png",
    "learning_curve.svg",
    "checkpoints",
    "eval.json",
    "validation.jsonl",
    "viz",
    "model.safetensors",
];

/// Run files named by a pattern: a prefix and the extensions that may follow it (a task
/// metric's learning curve, `learning_curve_NAME.png` and `.svg`).
pub const RUN_FILE_PATTERNS: [(&str, [&str; 2]); 1] = [("learning_curve_", [".png", ".svg"])];

/// Whether `name`, a file or folder directly in a run's root, is one a run writes.
pub fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name)
        || RUN_FILE_PATTERNS.iter().any(|(prefix, extensions)| {
            name.strip_prefix(prefix).is_some_and(|rest| {
                extensions
                    .iter()
                    .any(|e| rest.strip_suffix(e).is_some_and(|stem| !stem.is_empty()))
            })
        })
}

impl RunDir {
    /// A run folder (not checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// An existing run folder with a config, or an error naming what is missing.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        match fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!(
                "{} is not a directory; expected a run directory written by `mg-train train`",
                root.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("run directory {} does not exist", root.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
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

    /// The learning-curve picture (its SVG goes beside it, [`RunDir::curve_svg`]).
    pub fn curve(&self) -> PathBuf {
        self.root.join("learning_curve.png")
    }

    /// The learning curve as SVG.
    pub fn curve_svg(&self) -> PathBuf {
        self.curve().with_extension("svg")
    }

    /// The learning curve of task metric `name` (its SVG goes beside it).
    pub fn task_curve(&self, name: &str) -> PathBuf {
        self.root.join(format!("learning_curve_{name}.png"))
    }

    /// The last evaluation's report.
    pub fn eval_report(&self) -> PathBuf {
        self.root.join("eval.json")
    }

    /// Where `viz` draws by default.
    pub fn viz(&self) -> PathBuf {
        self.root.join("viz")
    }

    /// Where `export` writes the weights by default.
    pub fn exported_weights(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }

    fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The run files already in the folder ([`is_run_file`]; a new run needs none), sorted.
    pub fn existing_files(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| is_run_file(name))
            .collect();
        names.sort();
        names
    }

    /// Moves every run file into `RUN/previous-N/` (never deletes); returns that folder.
    pub fn move_aside(&self) -> anyhow::Result<PathBuf> {
        let aside = (1..)
            .map(|n| self.root.join(format!("previous-{n}")))
            .find(|p| !p.exists())
            .expect("a free name");
        fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
        for f in self.existing_files() {
            let (from, to) = (self.root.join(&f), aside.join(&f));
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        Ok(aside)
    }

    /// Removes every run file of the folder ([`RunDir::existing_files`]), for a run that failed
    /// before its first checkpoint; other files are left alone.
    pub fn remove_files(&self) -> anyhow::Result<()> {
        for f in self.existing_files() {
            let path = self.root.join(&f);
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// The newest complete checkpoint's folder, if any. `latest` must name a `step-N` folder
    /// inside `checkpoints/`.
    pub fn latest(&self) -> anyhow::Result<Option<PathBuf>> {
        let Some(dir) = self.latest_named()? else {
            return Ok(None);
        };
        if !dir.is_dir() {
            bail!(
                "{} names {}, which does not exist",
                self.checkpoints().join("latest").display(),
                dir.display()
            );
        }
        Ok(Some(dir))
    }

    /// The folder `latest` names (checked to be a `step-N` beside it, not to exist).
    fn latest_named(&self) -> anyhow::Result<Option<PathBuf>> {
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
        Ok(Some(self.checkpoints().join(name)))
    }

    /// The progress of the newest intact checkpoint `latest` names; `None` when there is none
    /// or it is damaged (for messages, never for training).
    pub fn latest_progress(&self) -> Option<Progress> {
        let dir = self.latest().ok().flatten()?;
        verify(&dir).ok()?;
        Self::progress(&dir).ok()
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
        let mut damaged = Vec::new();
        if let Some(latest) = self.latest_named()? {
            candidates.retain(|p| p != &latest);
            if latest.is_dir() {
                candidates.insert(0, latest);
            } else {
                damaged.push(anyhow::anyhow!(
                    "{} names {}, which does not exist",
                    self.checkpoints().join("latest").display(),
                    latest.display()
                ));
            }
        }
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

    /// Removes leftovers of interrupted writes and every checkpoint older than the newest
    /// intact one before `newest`: what is kept is the newest checkpoint and one intact one to
    /// fall back to (damaged ones in between stay until they are older than that).
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
        if let Some(kept) = older.iter().position(|p| verify(p).is_ok()) {
            for path in &older[kept + 1..] {
                fs::remove_dir_all(path).ok();
            }
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
    RunDir::progress(dir)?;
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

/// The note beside a run's lock naming the process that holds it, removed when that process
/// lets go of the lock.
pub const LOCK_NOTE: &str = "writer.txt";

/// An exclusive lock on a run directory, held until dropped (or the process ends: the
/// operating system releases it even after `kill -9`).
///
/// The lock is on the run folder itself (`flock` on the open folder), which no file operation
/// inside it removes: deleting or editing the note [`LOCK_NOTE`], which names the holder for the
/// messages of a refused writer, lets no second writer in.
#[derive(Debug)]
pub struct RunLock {
    folder: fs::File,
    note: PathBuf,
}

impl RunLock {
    /// Takes the lock of `root` (created if needed) for `command`, or explains who holds it.
    pub fn acquire(root: &Path, command: &str) -> anyhow::Result<Self> {
        fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let folder = fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
        let note = root.join(LOCK_NOTE);
        match folder.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = read_small(&note, 4096).unwrap_or_default();
                let holder = holder.lines().next().unwrap_or_default().trim();
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
                return Err(e).with_context(|| format!("locking {}", root.display()));
            }
        }
        let text = format!(
            "pid {}: mg-train {command}\n\
             This note names the process writing to this run. The run folder itself is locked \
             while that process runs, and the note is removed when it ends; a note left behind \
             is from a process that was killed, and is harmless: a new writer replaces it.\n",
            std::process::id()
        );
        write_atomic(&note, text.as_bytes())?;
        Ok(Self { folder, note })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while the lock is still held, so that it never names the next holder.
        fs::remove_file(&self.note).ok();
        self.folder.unlock().ok();
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

    /// Every path a writer takes from [`RunDir`] is in the one list `--force` and the
    /// new-run check use.
    #[test]
    fn every_file_a_run_writes_is_a_run_file() {
        let run = RunDir::new("/r");
        let svg = |p: PathBuf| p.with_extension("svg");
        for path in [
            run.config(),
            run.metrics(),
            run.curve(),
            run.curve_svg(),
            run.task_curve("reward"),
            svg(run.task_curve("wall_hits")),
            run.checkpoints(),
            run.eval_report(),
            run.validation(),
            run.viz(),
            run.exported_weights(),
        ] {
            assert_eq!(path.parent(), Some(Path::new("/r")), "{}", path.display());
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(is_run_file(name), "{name} is not in RUN_FILES");
        }
        for name in [
            "notes.txt",
            "learning_curve_.png",
            "previous-1",
            LOCK_NOTE,
            "lock",
        ] {
            assert!(!is_run_file(name), "{name}");
        }
    }

    /// Pruning keeps an intact checkpoint to fall back to when a newer one is damaged.
    #[test]
    fn pruning_keeps_an_intact_checkpoint() {
        let root = std::env::temp_dir().join(format!("mg-prune-{}", std::process::id()));
        fs::remove_dir_all(&root).ok();
        let run = RunDir::new(&root);
        let save = |step| {
            run.save_checkpoint(&at(step), manifest(), |dir| {
                Ok(fs::write(dir.join("model.bin"), b"x")?)
            })
            .unwrap()
        };
        save(10);
        save(20);
        fs::write(root.join("checkpoints/step-20/progress.json"), "").unwrap();
        save(30);
        let kept: Vec<PathBuf> = run.all_checkpoints().unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        fs::remove_dir_all(root.join("checkpoints/step-30")).unwrap();
        let picked = run.pick_checkpoint(None).unwrap().unwrap();
        assert!(picked.ends_with("step-10"), "{}", picked.display());
        save(40);
        save(50);
        let names: Vec<String> = run
            .all_checkpoints()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["step-50", "step-40"]);
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
        // The note is for people: removing it lets no second writer in.
        fs::remove_file(root.join(LOCK_NOTE)).unwrap();
        let err = format!("{:#}", RunLock::acquire(&root, "train b.toml").unwrap_err());
        assert!(err.contains("holder unknown"), "{err}");
        drop(first);
        assert!(
            !root.join(LOCK_NOTE).exists(),
            "the note goes with the lock"
        );
        let second = RunLock::acquire(&root, "resume").unwrap();
        let note = fs::read_to_string(root.join(LOCK_NOTE)).unwrap();
        assert!(note.starts_with(&format!("pid {}: mg-train resume", std::process::id())));
        assert!(note.contains("harmless"), "{note}");
        drop(second);
        fs::remove_dir_all(&root).ok();
    }
}
