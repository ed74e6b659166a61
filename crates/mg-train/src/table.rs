//! `mg-train table`: the `eval.json` of several runs (seeds) as mean ± σ per experiment, the
//! form of the paper's tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::harness::checkpoint::write_atomic;
use crate::harness::experiment::read_config_text;
use crate::harness::{ExperimentOf, RunDir, Task};
use crate::tasks::TaskVisitor;

/// Arguments of `mg-train table`.
#[derive(Args, Debug)]
pub struct TableArgs {
    /// Evaluated run directories; runs whose `[task]` and `[model]` tables are equal form one
    /// row (they differ in seed).
    #[arg(required = true)]
    pub run_dirs: Vec<PathBuf>,
    /// The JSON file to write.
    #[arg(long, default_value = "table.json")]
    pub out: PathBuf,
}

/// Fields of a report that describe the evaluation, not its result.
const NOT_RESULTS: [&str; 10] = [
    "time_step",
    "sequences",
    "seed",
    "seconds",
    "chance_error",
    "questions",
    "mazes",
    "map_size",
    "curve_every",
    "steps",
];

/// Mean and sample standard deviation of one metric over a row's runs.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1; 0 for one run).
    pub std: f64,
    /// Every run's value, in the order given.
    pub values: Vec<f64>,
}

impl Stat {
    /// The statistics of `values` (at least one).
    pub fn of(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            std: var.sqrt(),
            values,
        }
    }
}

/// One experiment's row.
#[derive(Serialize, Debug, Clone)]
pub struct Row {
    /// Name: the runs' common name prefix.
    pub label: String,
    /// The run directories.
    pub runs: Vec<PathBuf>,
    /// Per metric of `eval.json`.
    pub metrics: BTreeMap<String, Stat>,
}

/// An `eval.json` object.
type Report = serde_json::Map<String, serde_json::Value>;

/// The `[task]` and `[model]` tables of a run's config, and its eval report.
fn read_run(
    dir: &Path,
) -> anyhow::Result<(toml::Value, serde_json::Map<String, serde_json::Value>)> {
    let run = RunDir::open(dir)?;
    let text = read_config_text(&run.config())?;
    let place = || format!("in {}", run.config().display());
    let kind = crate::commands::config_kind(&text).with_context(place)?;
    let config = crate::tasks::visit(&kind, Resolved(&text))
        .with_context(place)?
        .with_context(place)?;
    let identity = toml::Value::Array(vec![
        config
            .get("task")
            .cloned()
            .unwrap_or(toml::Value::Boolean(false)),
        config
            .get("model")
            .cloned()
            .unwrap_or(toml::Value::Boolean(false)),
    ]);
    let eval = dir.join("eval.json");
    let text = std::fs::read_to_string(&eval).with_context(|| {
        format!(
            "reading {}; evaluate the run first with `mg-train eval {}`",
            eval.display(),
            dir.display()
        )
    })?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", eval.display()))?;
    let serde_json::Value::Object(report) = report else {
        bail!("{}: expected a JSON object", eval.display());
    };
    Ok((identity, report))
}

/// A config as the task reads it, every field written out (defaults included), so that configs
/// that say the same in other words (a default omitted or spelt out) compare equal.
struct Resolved<'a>(&'a str);

impl TaskVisitor for Resolved<'_> {
    type Output = anyhow::Result<toml::Value>;

    fn visit<T: Task>(self) -> anyhow::Result<toml::Value> {
        let config = ExperimentOf::<T>::parse(self.0)?;
        Ok(toml::Value::try_from(&config)?)
    }
}

/// The common prefix of the runs' folder names, up to a separator (`-`, `_`, `.`, space).
fn label(runs: &[PathBuf]) -> String {
    let names: Vec<String> = runs
        .iter()
        .map(|r| {
            r.file_name().map_or_else(
                || r.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let first = &names[0];
    let mut end = first.len();
    for name in &names[1..] {
        end = end.min(
            first
                .bytes()
                .zip(name.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    // A partial word (`sort-s` of `sort-s1`, `sort-s2`) is cut back to its separator.
    let separators = ['-', '_', '.', ' '];
    let mut prefix = &first[..end];
    let mid_word = names.iter().any(|n| {
        n[end..]
            .chars()
            .next()
            .is_some_and(|c| !separators.contains(&c))
    });
    if mid_word {
        prefix = prefix.rfind(separators).map_or("", |i| &prefix[..i]);
    }
    let prefix = prefix.trim_end_matches(separators);
    if prefix.is_empty() {
        first.clone()
    } else {
        prefix.to_string()
    }
}

/// Groups runs into rows, in the order their first run is given.
pub fn rows(dirs: &[PathBuf]) -> anyhow::Result<Vec<Row>> {
    let mut groups: Vec<(toml::Value, Vec<PathBuf>, Vec<Report>)> = Vec::new();
    for dir in dirs {
        let (identity, report) = read_run(dir)?;
        match groups.iter_mut().find(|g| g.0 == identity) {
            Some(g) => {
                g.1.push(dir.clone());
                g.2.push(report);
            }
            None => groups.push((identity, vec![dir.clone()], vec![report])),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(_, runs, reports)| {
            let flat: Vec<BTreeMap<String, f64>> = reports.iter().map(flatten).collect();
            let mut metrics = BTreeMap::new();
            for key in flat[0].keys() {
                let values: Option<Vec<f64>> = flat.iter().map(|r| r.get(key).copied()).collect();
                if let Some(values) = values {
                    metrics.insert(key.clone(), Stat::of(values));
                }
            }
            Row {
                label: label(&runs),
                runs,
                metrics,
            }
        })
        .collect())
}

/// The numeric results of a report, nested fields named by their path: `readers.0.f1`, or
/// `tasks.qa3.error` for an array of objects that carry a `task` number (bAbI's per-task
/// errors), `motions.policy.coverage` for objects that carry a `motion` name (exploration);
/// curves (`*_curve` arrays) are left out. Fields that describe the evaluation ([`NOT_RESULTS`]) are left out.
fn flatten(report: &Report) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
        let leaf = prefix.rsplit('.').next().unwrap_or(prefix);
        match value {
            serde_json::Value::Number(n) if !NOT_RESULTS.contains(&leaf) => {
                if let Some(v) = n.as_f64() {
                    out.insert(prefix.to_string(), v);
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(&join(prefix, k), v, out);
                }
            }
            serde_json::Value::Array(_) if leaf.ends_with("_curve") => {}
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let name = match (
                        item.get("task").and_then(|t| t.as_u64()),
                        item.get("motion").and_then(|m| m.as_str()),
                    ) {
                        (Some(t), _) => format!("qa{t}"),
                        (None, Some(m)) => m.to_string(),
                        (None, None) => i.to_string(),
                    };
                    walk(&join(prefix, &name), item, out);
                }
            }
            _ => {}
        }
    }
    fn join(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in report {
        walk(k, v, &mut out);
    }
    out.retain(|k, _| !k.ends_with(".task"));
    out
}

/// Runs `mg-train table`.
pub fn run_table(args: &TableArgs) -> anyhow::Result<()> {
    let rows = rows(&unique_runs(&args.run_dirs))?;
    for row in &rows {
        println!(
            "{} ({} run{})",
            row.label,
            row.runs.len(),
            if row.runs.len() == 1 { "" } else { "s" }
        );
        for (name, s) in &row.metrics {
            println!("  {name:<16} {:.4} ± {:.4}", s.mean, s.std);
        }
    }
    let text = serde_json::to_string_pretty(&rows)?;
    write_atomic(&args.out, format!("{text}\n").as_bytes())?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// The run folders with every one listed more than once (under any spelling of its path)
/// kept at its first place only, with a warning: a run is one seed, however often it is named.
fn unique_runs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut unique = Vec::new();
    for dir in dirs {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if seen.insert(key) {
            unique.push(dir.clone());
        } else {
            eprintln!(
                "warning: {} is listed more than once; it counts once",
                dir.display()
            );
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_listed_twice_counts_once() {
        let root = std::env::temp_dir().join(format!("mg-table-twice-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        let dirs = [
            root.join("a"),
            root.join("b"),
            root.join("b/../a"),
            root.join("a/"),
            root.join("b"),
        ];
        assert_eq!(unique_runs(&dirs), [root.join("a"), root.join("b")]);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn mean_and_sample_deviation() {
        let s = Stat::of(vec![0.1, 0.3]);
        assert!((s.mean - 0.2).abs() < 1e-12);
        assert!((s.std - 0.02f64.sqrt()).abs() < 1e-12, "{}", s.std);
        assert_eq!(Stat::of(vec![0.5]).std, 0.0);
    }

    /// Nested results get dotted names; per-task arrays are keyed by task.
    #[test]
    fn nested_results_are_flattened() {
        let report: Report = serde_json::from_str(
            r#"{"error": 0.2, "seed": 7, "tasks": [{"task": 3, "name": "x", "error": 0.5, "questions": 10}],
                "readers": [{"f1": 0.9}]}"#,
        )
        .unwrap();
        let flat = flatten(&report);
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(keys, ["error", "readers.0.f1", "tasks.qa3.error"]);
        assert_eq!(flat["tasks.qa3.error"], 0.5);
        let report: Report = serde_json::from_str(
            r#"{"mazes": 3, "motions": [{"motion": "spiral", "steps": 48, "coverage": 1.0,
                "coverage_curve": [0.1, 1.0]}]}"#,
        )
        .unwrap();
        let keys: Vec<String> = flatten(&report).into_keys().collect();
        assert_eq!(keys, ["motions.spiral.coverage"]);
    }

    #[test]
    fn labels_are_common_prefixes() {
        let runs = |names: &[&str]| names.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(label(&runs(&["runs/sort-s1", "runs/sort-s2"])), "sort");
        assert_eq!(label(&runs(&["a", "b"])), "a");
        assert_eq!(label(&runs(&["runs/recall"])), "recall");
        assert_eq!(
            label(&runs(&["x/recall-quick-1", "y/recall-quick-2"])),
            "recall-quick"
        );
    }
}
