//! `mg-train data download mnist|babi`: fetch a data set from its public location into a data root,
//! verified against embedded checksums. Nothing else in the project downloads anything.
//!
//! * **Where.** MNIST's four IDX `.gz` files go to `DIR/mnist/`; bAbI's `tasks_1-20_v1-2.tar.gz` is
//!   unpacked into `DIR/babi/tasks_1-20_v1-2/` (only the files of the checksum table: `en/`, `en-10k/`,
//!   `LICENSE.txt`, `README.txt`). `DIR` is `--data-dir`, else `MG_DATA_DIR`, else `./data`.
//! * **Sources.** MNIST from `https://ossci-datasets.s3.amazonaws.com/mnist/` (the copy torchvision
//!   uses), then `http://yann.lecun.com/exdb/mnist/`; bAbI from Jason Weston's page, then the copy Keras
//!   uses. `--mirror URL` (or `MG_DATA_MIRROR`) replaces them by `URL/<file name>`.
//! * **Checksums** ([`Manifest::embedded`], `src/download/checksums.txt`). MNIST is checked on the
//!   unpacked bytes, so any gzip packing of the original files passes. bAbI is checked file by file after
//!   unpacking (no checksum of the archive itself is published).
//! * **Resumable and atomic.** A transfer goes to `DIR/.partial/NAME.part` and continues with an HTTP
//!   `Range` request when run again (from the start if the server ignores ranges). A file gets its final
//!   name only after its checksum passes; a mismatch is an error naming the file and both digests, and
//!   leaves nothing under the final name. Files already present and verified are not fetched again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use mg_data::locate::{BABI_DIR, DATA_DIR_ENV, LOCAL_DIR, MNIST_DIR};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Environment variable replacing the public sources by one base URL (like `--mirror`).
pub const MIRROR_ENV: &str = "MG_DATA_MIRROR";
/// Environment variable naming a checksum table to use instead of the embedded one (like `--manifest`).
pub const MANIFEST_ENV: &str = "MG_DATA_MANIFEST";

/// The MNIST files, by the names of their unpacked contents.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
/// Base URLs of the MNIST `.gz` files, tried in order.
pub const MNIST_SOURCES: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "http://yann.lecun.com/exdb/mnist",
];
/// The bAbI archive's file name (under `--mirror`).
pub const BABI_ARCHIVE: &str = "tasks_1-20_v1-2.tar.gz";
/// URLs of the bAbI archive, tried in order.
pub const BABI_SOURCES: [&str; 2] = [
    "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz",
    "https://s3.amazonaws.com/text-datasets/babi_tasks_1-20_v1-2.tar.gz",
];
/// The folder of the bAbI release inside its archive.
const BABI_TOP: &str = "tasks_1-20_v1-2";
/// Partial downloads, inside the data root.
const PARTIAL_DIR: &str = ".partial";

/// The data sets `mg-train data download` fetches.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    /// The four MNIST IDX files (about 11 MB).
    Mnist,
    /// bAbI QA v1.2, en and en-10k (an archive of about 12 MB).
    Babi,
}

/// Arguments of `mg-train data download`.
#[derive(Args, Debug, Clone)]
pub struct DownloadArgs {
    /// Which data set to download.
    #[arg(value_enum)]
    pub dataset: Dataset,
    /// Data root to download into (it gets mnist/ or babi/tasks_1-20_v1-2/). Default: $MG_DATA_DIR if
    /// set, else ./data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fetch each file from URL/NAME (NAME: its usual file name) instead of the public sources (also:
    /// $MG_DATA_MIRROR).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Checksum table to verify against instead of the embedded one (also: $MG_DATA_MANIFEST).
    #[arg(long, value_name = "FILE", hide = true)]
    pub manifest: Option<PathBuf>,
}

/// A file's expected or computed digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256 of the contents.
    Sha256([u8; 32]),
    /// git's blob id: SHA-1 of `blob <length>\0` followed by the contents.
    GitBlob([u8; 20]),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Digest {
    /// Parses `<64 hex digits>` (SHA-256) or `git-blob:<40 hex digits>`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix("git-blob:") {
            Some(h) => unhex(h).map(Digest::GitBlob),
            None => unhex(&s).map(Digest::Sha256),
        }
    }

    /// The digest of the same kind as `self` of `bytes`.
    pub fn of_same_kind(&self, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(self, bytes.len() as u64);
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(d) => write!(f, "sha256 {}", hex(d)),
            Digest::GitBlob(d) => write!(f, "git-blob {}", hex(d)),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An incremental [`Digest`] computation; a git blob id needs the length up front.
enum Hasher {
    Sha256(Sha256),
    GitBlob(Sha1),
}

impl Hasher {
    fn new(kind: &Digest, len: u64) -> Self {
        match kind {
            Digest::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Digest::GitBlob(_) => {
                let mut h = Sha1::new();
                h.update(format!("blob {len}\0").as_bytes());
                Hasher::GitBlob(h)
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitBlob(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::Sha256(h.finalize().into()),
            Hasher::GitBlob(h) => Digest::GitBlob(h.finalize().into()),
        }
    }
}

/// The digest of the same kind as `kind` of everything `open` reads (called twice for a git blob,
/// whose length comes first).
fn digest_of<R: Read>(
    kind: &Digest,
    mut open: impl FnMut() -> io::Result<R>,
) -> io::Result<Digest> {
    let len = match kind {
        Digest::GitBlob(_) => io::copy(&mut open()?, &mut io::sink())?,
        Digest::Sha256(_) => 0,
    };
    let mut h = Hasher::new(kind, len);
    let mut r = open()?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(h.finish()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A checksum table: data-root-relative path → digest. Lines are `<digest>  <path>`; `#` starts a
/// comment line. For MNIST the path names the unpacked file (`mnist/train-images-idx3-ubyte`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: BTreeMap<String, Digest>,
}

impl Manifest {
    /// The table of the real data sets, built into the binary.
    pub fn embedded() -> Self {
        Self::parse(
            include_str!("download/checksums.txt"),
            "the embedded checksum table",
        )
        .expect("the embedded checksum table parses")
    }

    /// Parses a table; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed = line
                .split_once(char::is_whitespace)
                .map(|(d, p)| (d, p.trim().trim_start_matches('*')))
                .and_then(|(d, p)| Some((Digest::parse(d)?, p)))
                .filter(|(_, p)| !p.is_empty());
            let Some((digest, path)) = parsed else {
                bail!(
                    "{origin}:{}: expected `<sha256 or git-blob:sha1>  <path>`, found {line:?}",
                    i + 1
                );
            };
            entries.insert(path.to_string(), digest);
        }
        Ok(Self { entries })
    }

    /// Reads a table from a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the checksum table {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The digest of a data-root-relative path.
    pub fn get(&self, path: &str) -> Option<&Digest> {
        self.entries.get(path)
    }

    /// The entries under `folder/` (data-root-relative), with paths relative to it.
    pub fn under<'a>(&'a self, folder: &str) -> Vec<(&'a str, &'a Digest)> {
        let prefix = format!("{folder}/");
        self.entries
            .iter()
            .filter_map(|(p, d)| p.strip_prefix(&prefix).map(|rel| (rel, d)))
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The path of an archive entry relative to the bAbI release folder (`tasks_1-20_v1-2/en/x.txt` →
/// `en/x.txt`); `None` for entries outside it. An absolute path or one with `..` is an error.
pub fn release_relative_path(entry: &Path) -> anyhow::Result<Option<String>> {
    let mut parts = Vec::new();
    for c in entry.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                "archive entry {:?} points outside the folder it is unpacked into; refusing the archive",
                entry.display().to_string()
            ),
        }
    }
    Ok(parts
        .iter()
        .position(|p| p == BABI_TOP)
        .map(|at| parts[at + 1..].join("/"))
        .filter(|rel| !rel.is_empty()))
}

/// Runs `mg-train data download`.
pub fn run(args: &DownloadArgs) -> anyhow::Result<()> {
    let root = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::var_os(DATA_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(LOCAL_DIR)),
    };
    let manifest = match args
        .manifest
        .clone()
        .or_else(|| std::env::var_os(MANIFEST_ENV).map(PathBuf::from))
    {
        Some(path) => Manifest::load(&path)?,
        None => Manifest::embedded(),
    };
    let mirror = args
        .mirror
        .clone()
        .or_else(|| std::env::var(MIRROR_ENV).ok())
        .filter(|m| !m.is_empty());
    let fetcher = Fetcher::new();
    let result = match args.dataset {
        Dataset::Mnist => download_mnist(&root, &manifest, mirror.as_deref(), &fetcher),
        Dataset::Babi => download_babi(&root, &manifest, mirror.as_deref(), &fetcher),
    };
    // Kept only while it holds an interrupted transfer.
    let _ = std::fs::remove_dir(root.join(PARTIAL_DIR));
    println!("{}", result?);
    Ok(())
}

/// The URLs of one file: the mirror's, or the public ones.
fn urls(mirror: Option<&str>, file: &str, public: &[String]) -> Vec<String> {
    match mirror {
        Some(m) => vec![format!("{}/{file}", m.trim_end_matches('/'))],
        None => public.to_vec(),
    }
}

fn mismatch(file: &Path, expected: &Digest, actual: &Digest) -> String {
    format!(
        "checksum mismatch for {}: expected {expected}, got {actual}",
        file.display()
    )
}

/// Whether `path` exists and has digest `expected` (unpacked first when `gzip`); a present file with
/// another digest gets a warning and is fetched again.
fn verified(path: &Path, expected: &Digest, gzip: bool) -> bool {
    if !path.is_file() {
        return false;
    }
    let actual = if gzip {
        digest_of(expected, || File::open(path).map(GzDecoder::new))
    } else {
        digest_of(expected, || File::open(path))
    };
    match actual {
        Ok(d) if d == *expected => true,
        Ok(d) => {
            eprintln!(
                "warning: {}; fetching it again",
                mismatch(path, expected, &d)
            );
            false
        }
        Err(e) => {
            eprintln!(
                "warning: {} is unreadable ({e}); fetching it again",
                path.display()
            );
            false
        }
    }
}

fn download_mnist(
    root: &Path,
    manifest: &Manifest,
    mirror: Option<&str>,
    fetcher: &Fetcher,
) -> anyhow::Result<String> {
    let dir = root.join(MNIST_DIR);
    let (mut fetched, mut present) = (0, 0);
    for name in MNIST_FILES {
        let key = format!("{MNIST_DIR}/{name}");
        let expected = manifest
            .get(&key)
            .with_context(|| format!("the checksum table has no entry for {key}"))?;
        let file = format!("{name}.gz");
        let target = dir.join(&file);
        if verified(&target, expected, true) || verified(&dir.join(name), expected, false) {
            present += 1;
            continue;
        }
        let public: Vec<String> = MNIST_SOURCES
            .iter()
            .map(|b| format!("{b}/{file}"))
            .collect();
        let part = root.join(PARTIAL_DIR).join(format!("{file}.part"));
        fetcher.fetch(&urls(mirror, &file, &public), &part, &file)?;
        let actual = digest_of(expected, || File::open(&part).map(GzDecoder::new));
        let actual = match actual {
            Ok(d) => d,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                bail!(
                    "{file}: the download is not a valid gzip file ({e}); it was removed, run the command again"
                );
            }
        };
        if actual != *expected {
            let _ = std::fs::remove_file(&part);
            bail!(
                "{} (unpacked contents); the download was removed",
                mismatch(&target, expected, &actual)
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::rename(&part, &target)
            .with_context(|| format!("moving {} to {}", part.display(), target.display()))?;
        eprintln!("verified {}", target.display());
        fetched += 1;
    }
    Ok(format!(
        "mnist: {} files in {} ({fetched} downloaded, {present} already present and verified)",
        MNIST_FILES.len(),
        dir.display()
    ))
}

fn download_babi(
    root: &Path,
    manifest: &Manifest,
    mirror: Option<&str>,
    fetcher: &Fetcher,
) -> anyhow::Result<String> {
    let dir = root.join(BABI_DIR);
    let entries = manifest.under(BABI_DIR);
    if entries.is_empty() {
        bail!("the checksum table has no entry under {BABI_DIR}/");
    }
    let known: BTreeMap<&str, &Digest> = entries.iter().copied().collect();
    let mut wanted: BTreeSet<&str> = entries
        .iter()
        .filter(|(rel, d)| !verified(&dir.join(rel), d, false))
        .map(|(rel, _)| *rel)
        .collect();
    let present = entries.len() - wanted.len();
    let summary = |installed: usize| {
        format!(
            "babi: {} files in {} ({installed} unpacked, {present} already present and verified)",
            entries.len(),
            dir.display()
        )
    };
    if wanted.is_empty() {
        return Ok(summary(0));
    }
    let partial = root.join(PARTIAL_DIR);
    let part = partial.join(format!("{BABI_ARCHIVE}.part"));
    let public: Vec<String> = BABI_SOURCES.iter().map(|u| u.to_string()).collect();
    fetcher.fetch(&urls(mirror, BABI_ARCHIVE, &public), &part, BABI_ARCHIVE)?;

    let unpacked = unpack_babi(&part, &dir, &partial.join("babi"), &known, &mut wanted);
    let _ = std::fs::remove_dir_all(partial.join("babi"));
    // The archive has served its purpose, or is bad: either way the next run fetches it afresh.
    let _ = std::fs::remove_file(&part);
    let (installed, other) = unpacked?;
    if !wanted.is_empty() {
        let names: Vec<String> = wanted
            .iter()
            .map(|k| dir.join(k).display().to_string())
            .collect();
        bail!(
            "the archive lacks {} of the expected files: {}",
            names.len(),
            names.join(", ")
        );
    }
    if other > 0 {
        eprintln!(
            "skipped {other} archive entries without a checksum (the release's other languages and forms)"
        );
    }
    Ok(summary(installed))
}

/// Unpacks the `wanted` files of a bAbI archive (removing each from the set) into `dir`, each verified
/// against `known` in `scratch` first. Returns the number installed and the number of files skipped for
/// having no checksum.
fn unpack_babi(
    archive: &Path,
    dir: &Path,
    scratch: &Path,
    known: &BTreeMap<&str, &Digest>,
    wanted: &mut BTreeSet<&str>,
) -> anyhow::Result<(usize, usize)> {
    let corrupt = || {
        format!(
            "reading the bAbI archive {} (corrupt or truncated; it was removed, run the command again)",
            archive.display()
        )
    };
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    let (mut installed, mut other) = (0, 0);
    let mut failures = Vec::new();
    for entry in tar.entries().with_context(corrupt)? {
        let mut entry = entry.with_context(corrupt)?;
        let path = entry.path().with_context(corrupt)?.into_owned();
        let rel = release_relative_path(&path)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(rel) = rel.filter(|r| known.contains_key(r.as_str())) else {
            other += 1;
            continue;
        };
        if !wanted.contains(rel.as_str()) {
            continue;
        }
        let digest = *known[rel.as_str()];
        let tmp = scratch.join(format!("{rel}.part"));
        let target = dir.join(&rel);
        for d in [tmp.parent(), target.parent()].into_iter().flatten() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut hasher = Hasher::new(&digest, entry.size());
        let mut out = BufWriter::new(
            File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buf).with_context(corrupt)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", tmp.display()))?;
        }
        out.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(out);
        let actual = hasher.finish();
        wanted.remove(rel.as_str());
        if actual != digest {
            let _ = std::fs::remove_file(&tmp);
            failures.push(mismatch(&target, &digest, &actual));
            continue;
        }
        std::fs::rename(&tmp, &target)
            .with_context(|| format!("moving {} to {}", tmp.display(), target.display()))?;
        installed += 1;
    }
    if !failures.is_empty() {
        bail!(
            "{} (not installed; {} other files were)",
            failures.join("; "),
            installed
        );
    }
    Ok((installed, other))
}

/// Why a transfer from one URL failed.
enum FetchError {
    /// No connection (name lookup, refused, timed out): the machine may be offline.
    Unreachable(String),
    /// The server answered with an error status, or not in HTTP; or the URL is bad.
    Failed(String),
    /// The transfer broke off; what arrived is kept for the next run.
    Interrupted { received: u64, error: io::Error },
    /// Writing the partial file failed.
    Local(anyhow::Error),
}

/// HTTP downloads with resume and progress.
struct Fetcher {
    agent: ureq::Agent,
    terminal: bool,
}

impl Fetcher {
    fn new() -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("mg-train/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent,
            terminal: io::stderr().is_terminal(),
        }
    }

    /// Downloads `label` into `part` from the first of `urls` that works, resuming what `part` holds.
    fn fetch(&self, urls: &[String], part: &Path, label: &str) -> anyhow::Result<()> {
        let mut unreachable = Vec::new();
        let mut failed = Vec::new();
        for url in urls {
            match self.fetch_one(url, part, label) {
                Ok(()) => return Ok(()),
                Err(FetchError::Unreachable(e)) => unreachable.push(format!("{url} ({e})")),
                Err(FetchError::Failed(e)) => failed.push(format!("{url} ({e})")),
                Err(FetchError::Interrupted { received, error }) => bail!(
                    "downloading {url}: the transfer broke off after {received} bytes ({error}); \
                     they are kept in {}, run the command again to resume",
                    part.display()
                ),
                Err(FetchError::Local(e)) => return Err(e),
            }
        }
        if failed.is_empty() {
            bail!(
                "could not reach {}. The machine looks offline. \
                 If you have a copy of the data, point --data-dir (or {DATA_DIR_ENV}) at it",
                unreachable.join(", nor ")
            );
        }
        failed.extend(unreachable);
        bail!("downloading {label} failed: {}", failed.join("; "))
    }

    fn fetch_one(&self, url: &str, part: &Path, label: &str) -> Result<(), FetchError> {
        let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let mut request = self.agent.get(url).set("Accept-Encoding", "identity");
        if have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            // The range starts at or past the end: the partial file is of no use.
            Err(ureq::Error::Status(416, _)) if have > 0 => {
                std::fs::remove_file(part).map_err(|e| local(e, part))?;
                return self.fetch_one(url, part, label);
            }
            Err(ureq::Error::Status(code, _)) => {
                return Err(FetchError::Failed(format!("HTTP {code}")));
            }
            Err(ureq::Error::Transport(t)) => {
                let what = transport(&t);
                return Err(match t.kind() {
                    ureq::ErrorKind::Dns
                    | ureq::ErrorKind::ConnectionFailed
                    | ureq::ErrorKind::Io => FetchError::Unreachable(what),
                    _ => FetchError::Failed(what),
                });
            }
        };
        let length = response
            .header("Content-Length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let resumed = response.status() == 206
            && response
                .header("Content-Range")
                .and_then(content_range_start)
                == Some(have);
        if response.status() == 206 && !resumed {
            // A range other than the one asked for: start over.
            std::fs::remove_file(part).map_err(|e| local(e, part))?;
            return self.fetch_one(url, part, label);
        }
        let start = if resumed { have } else { 0 };
        if let Some(d) = part.parent() {
            std::fs::create_dir_all(d).map_err(|e| local(e, d))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(part)
            .map_err(|e| local(e, part))?;
        let total = length.map(|n| n + start);
        let bar = self.progress(url, label, start, total);
        let mut out = BufWriter::new(file);
        let mut body = response.into_reader();
        let mut received = start;
        let mut buf = vec![0u8; 1 << 16];
        let result = loop {
            match body.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = out.write_all(&buf[..n]) {
                        break Err(local(e, part));
                    }
                    received += n as u64;
                    if let Some(b) = &bar {
                        b.set_position(received);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Err(FetchError::Interrupted { received, error }),
            }
        };
        let flushed = out.flush().map_err(|e| local(e, part));
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        result?;
        flushed?;
        if let Some(total) = total
            && received != total
        {
            return Err(FetchError::Interrupted {
                received,
                error: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("expected {total} bytes"),
                ),
            });
        }
        if !self.terminal {
            let how = if resumed {
                format!(", resumed at byte {start}")
            } else {
                String::new()
            };
            eprintln!("downloaded {label}: {received} bytes from {url}{how}");
        }
        Ok(())
    }

    /// A progress bar on a terminal; a plain line otherwise.
    fn progress(
        &self,
        url: &str,
        label: &str,
        start: u64,
        total: Option<u64>,
    ) -> Option<ProgressBar> {
        if !self.terminal {
            let size = total.map(|t| format!(" ({t} bytes)")).unwrap_or_default();
            let from = if start > 0 {
                format!(", resuming at byte {start}")
            } else {
                String::new()
            };
            eprintln!("downloading {url}{size}{from}");
            return None;
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar.set_position(start);
        Some(bar)
    }
}

/// A transport error without the URL (the caller names it): its kind, message and cause.
fn transport(t: &ureq::Transport) -> String {
    let mut s = t.kind().to_string();
    if let Some(m) = t.message() {
        s = format!("{s}: {m}");
    }
    if let Some(cause) = std::error::Error::source(t) {
        s = format!("{s}: {cause}");
    }
    s
}

fn local(e: io::Error, path: &Path) -> FetchError {
    FetchError::Local(anyhow::Error::new(e).context(format!("writing {}", path.display())))
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(v: &str) -> Option<u64> {
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}
