//! Where the real MNIST and bAbI files are: one lookup for `mg-train data` and the tests.
//!
//! A *data root* holds `mnist/` (the four IDX files) and `babi/tasks_1-20_v1-2/` (with `en/` and
//! `en-10k/`). [`data_root`] takes the first of:
//! 1. the `MG_DATA_DIR` environment variable, when set and not empty;
//! 2. `../shared/data` relative to a base folder (the workspace root in tests, the current folder
//!    for `mg-train`), when it is a directory;
//! 3. `data/` in the base folder.
//!
//! `mg-train data --data-dir DIR` comes before all three; [`dataset_dir`] accepts a data root
//! there as well as the dataset's own folder.
//!
//! Tests on the full data sets ask [`real_data`]: the data is used when present; its absence is a
//! failure when it was asked for (`MG_DATA_DIR` set, a `../shared/data` folder present, or `CI=true`),
//! and a skip with a note otherwise, so that a bare clone of the repository passes its tests.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the data root.
pub const DATA_DIR_ENV: &str = "MG_DATA_DIR";
/// The data root used beside a checkout, relative to its base folder.
pub const SHARED_DIR: &str = "../shared/data";
/// The data root inside the base folder, the last resort (and where `mg-train data download` writes).
pub const LOCAL_DIR: &str = "data";
/// The MNIST folder inside a data root.
pub const MNIST_DIR: &str = "mnist";
/// The bAbI folder (the one holding `en/` and `en-10k/`) inside a data root.
pub const BABI_DIR: &str = "babi/tasks_1-20_v1-2";

/// Which rule of the lookup found a data root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `MG_DATA_DIR`.
    Env,
    /// `../shared/data` beside the base folder.
    Shared,
    /// `data/` in the base folder.
    Local,
}

/// A data root and the rule that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRoot {
    /// The folder holding `mnist/` and `babi/`.
    pub path: PathBuf,
    /// Which rule chose it.
    pub origin: Origin,
}

impl DataRoot {
    /// A dataset folder inside the root, e.g. [`MNIST_DIR`].
    pub fn join(&self, dataset: &str) -> PathBuf {
        self.path.join(dataset)
    }
}

/// The data root for `base`, reading `MG_DATA_DIR` (see the [module docs](self)).
pub fn data_root(base: &Path) -> DataRoot {
    data_root_with(base, std::env::var_os(DATA_DIR_ENV))
}

/// [`data_root`] with the value of `MG_DATA_DIR` given.
pub fn data_root_with(base: &Path, env: Option<OsString>) -> DataRoot {
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return DataRoot {
            path: PathBuf::from(dir),
            origin: Origin::Env,
        };
    }
    let shared = base.join(SHARED_DIR);
    if shared.is_dir() {
        DataRoot {
            path: shared,
            origin: Origin::Shared,
        }
    } else {
        DataRoot {
            path: base.join(LOCAL_DIR),
            origin: Origin::Local,
        }
    }
}

/// The folder of `dataset` ([`MNIST_DIR`] or [`BABI_DIR`]) for a folder given by the user: `dir` itself
/// may be a data root (`dir/mnist`), for bAbI the folder above `tasks_1-20_v1-2`, or the dataset folder.
pub fn dataset_dir(dir: &Path, dataset: &str) -> PathBuf {
    let inner = dir.join(dataset);
    if inner.is_dir() {
        return inner;
    }
    if let Some(last) = Path::new(dataset).file_name() {
        let inner = dir.join(last);
        if inner.is_dir() {
            return inner;
        }
    }
    dir.to_path_buf()
}

/// Whether a test on the full data sets should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RealData {
    /// The dataset folder; run the test.
    Present(PathBuf),
    /// Not asked for and not there: skip the test and print the note.
    Skip(String),
    /// Asked for and not there: fail the test with the message.
    Missing(String),
}

impl RealData {
    /// The folder to test on, or `None` after printing the skip note; panics with the message when
    /// the data is [`RealData::Missing`]. For tests.
    #[track_caller]
    pub fn dir_or_skip(self, test: &str) -> Option<PathBuf> {
        match self {
            RealData::Present(dir) => Some(dir),
            RealData::Skip(note) => {
                eprintln!("note: skipping {test}: {note}");
                None
            }
            RealData::Missing(message) => panic!("{test}: {message}"),
        }
    }
}

/// Whether `dataset` ([`MNIST_DIR`] or [`BABI_DIR`]) is there for tests run from `base` (the workspace
/// root), reading `MG_DATA_DIR` and `CI`.
pub fn real_data(base: &Path, dataset: &str) -> RealData {
    let ci = std::env::var("CI")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
        .unwrap_or(false);
    real_data_with(&data_root(base), dataset, ci)
}

/// [`real_data`] for a given root and CI setting.
pub fn real_data_with(root: &DataRoot, dataset: &str, ci: bool) -> RealData {
    let dir = root.join(dataset);
    if dir.is_dir() {
        return RealData::Present(dir);
    }
    let shown = dir.display();
    match root.origin {
        Origin::Env => RealData::Missing(format!(
            "{DATA_DIR_ENV}={} is set but {shown} does not exist (expected the real data there)",
            root.path.display()
        )),
        Origin::Shared => RealData::Missing(format!(
            "{} exists but {shown} does not (expected the real data there)",
            root.path.display()
        )),
        Origin::Local if ci => RealData::Missing(format!(
            "CI is set and no real data was found (tried {DATA_DIR_ENV}, {SHARED_DIR} and {shown}); \
             set {DATA_DIR_ENV} to the folder holding mnist/ and babi/"
        )),
        Origin::Local => RealData::Skip(format!(
            "no real data ({DATA_DIR_ENV} unset, no {SHARED_DIR}, no {shown}); \
             set {DATA_DIR_ENV} to the folder holding mnist/ and babi/ to run it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mg-data-locate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lookup_order_is_env_then_shared_then_local() {
        let d = temp_dir("order");
        let base = d.join("checkout");
        std::fs::create_dir_all(&base).unwrap();
        let local = data_root_with(&base, None);
        assert_eq!(
            (local.path.clone(), local.origin),
            (base.join("data"), Origin::Local)
        );
        assert_eq!(data_root_with(&base, Some("".into())), local);
        std::fs::create_dir_all(d.join("shared/data")).unwrap();
        let shared = data_root_with(&base, None);
        assert_eq!(shared.origin, Origin::Shared);
        assert!(shared.path.ends_with("../shared/data"));
        let env = data_root_with(&base, Some("/elsewhere".into()));
        assert_eq!(
            (env.path, env.origin),
            (PathBuf::from("/elsewhere"), Origin::Env)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn real_data_runs_fails_or_skips() {
        let d = temp_dir("policy");
        std::fs::create_dir_all(d.join("mnist")).unwrap();
        let root = |origin| DataRoot {
            path: d.clone(),
            origin,
        };
        for origin in [Origin::Env, Origin::Shared, Origin::Local] {
            assert_eq!(
                real_data_with(&root(origin), MNIST_DIR, false),
                RealData::Present(d.join("mnist"))
            );
        }
        let missing = |origin, ci| real_data_with(&root(origin), BABI_DIR, ci);
        assert!(
            matches!(missing(Origin::Env, false), RealData::Missing(m) if m.contains("MG_DATA_DIR="))
        );
        assert!(matches!(
            missing(Origin::Shared, false),
            RealData::Missing(_)
        ));
        assert!(matches!(missing(Origin::Local, true), RealData::Missing(m) if m.contains("CI")));
        assert!(matches!(missing(Origin::Local, false), RealData::Skip(_)));
        assert_eq!(missing(Origin::Local, false).dir_or_skip("t"), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn dataset_dir_accepts_a_root_or_the_dataset_folder() {
        let d = temp_dir("dataset");
        std::fs::create_dir_all(d.join("mnist")).unwrap();
        std::fs::create_dir_all(d.join("babi/tasks_1-20_v1-2/en")).unwrap();
        assert_eq!(dataset_dir(&d, MNIST_DIR), d.join("mnist"));
        assert_eq!(dataset_dir(&d.join("mnist"), MNIST_DIR), d.join("mnist"));
        let babi = d.join("babi/tasks_1-20_v1-2");
        assert_eq!(dataset_dir(&d, BABI_DIR), babi);
        assert_eq!(dataset_dir(&d.join("babi"), BABI_DIR), babi);
        assert_eq!(dataset_dir(&babi, BABI_DIR), babi);
        assert_eq!(
            dataset_dir(Path::new("/nonexistent"), MNIST_DIR),
            PathBuf::from("/nonexistent")
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
