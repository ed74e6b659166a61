//! `cargo xtask repro`: the quick CPU experiments of docs/REPRODUCTION.md, trained for fixed
//! step counts, evaluated, copied into `docs/results/GROUP/NAME-sK/` with their provenance, and
//! the document's marked tables rewritten from those folders. The experiments are listed in
//! `xtask/repro.toml`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use crate::{cargo, cargo_program, root};

pub const USAGE: &str = "usage: cargo xtask repro [GROUP...] [--seeds N] [--smoke] \
[--tables-only] [--force]";

/// `xtask/repro.toml`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Manifest {
    run: Vec<RunSpec>,
    table: Vec<TableSpec>,
}

/// One experiment of the manifest.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct RunSpec {
    group: String,
    name: String,
    config: String,
    steps: Option<u64>,
    #[serde(default = "one")]
    seeds: u32,
    #[serde(default)]
    eval: Vec<String>,
    #[serde(default)]
    set: Vec<String>,
}

fn one() -> u32 {
    1
}

/// One marked table of docs/REPRODUCTION.md.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TableSpec {
    block: String,
    runs: Vec<String>,
    /// `[metric, heading]`, or `[metric, heading, "count"]` for a whole number.
    columns: Vec<Vec<String>>,
}

impl RunSpec {
    fn id(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }
}

/// Where a repro writes, and how long it trains.
struct Layout {
    /// The tree the binary is built from and the configs are read from: for a full repro a
    /// checkout of HEAD (`target/repro/src`), so that edits made while it runs change nothing.
    source: PathBuf,
    /// The mg-train binary (a copy, so that rebuilds during a long repro do not swap it).
    binary: PathBuf,
    /// Run folders (checkpoints): `RUNS/GROUP-NAME-sK`.
    runs: PathBuf,
    /// Results folders: `RESULTS/GROUP/NAME-sK`.
    results: PathBuf,
    /// The document whose marked tables are rewritten.
    doc: PathBuf,
    /// `--smoke`: one window of training and a few test sequences per run.
    smoke: bool,
}

struct Options {
    groups: Vec<String>,
    seeds: Option<u32>,
    smoke: bool,
    tables_only: bool,
    force: bool,
}

fn parse_options(rest: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        groups: Vec::new(),
        seeds: None,
        smoke: false,
        tables_only: false,
        force: false,
    };
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seeds" => {
                let n = it.next().context("--seeds needs a number")?;
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .with_context(|| format!("--seeds {n}: expected a number ≥ 1"))?;
                options.seeds = Some(n);
            }
            "--smoke" => options.smoke = true,
            "--tables-only" => options.tables_only = true,
            "--force" => options.force = true,
            flag if flag.starts_with('-') => bail!("unknown repro flag `{flag}`\n{USAGE}"),
            group => options.groups.push(group.to_string()),
        }
    }
    Ok(options)
}

fn read_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: Manifest =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    for run in &manifest.run {
        ensure!(
            seen.insert(run.id()),
            "{}: run {} is listed twice",
            path.display(),
            run.id()
        );
        ensure!(
            run.seeds >= 1,
            "{}: run {} has seeds = 0",
            path.display(),
            run.id()
        );
    }
    for table in &manifest.table {
        for column in &table.columns {
            ensure!(
                matches!(column.len(), 2 | 3) && column.get(2).is_none_or(|k| k == "count"),
                "{}: table {}: column {column:?} is not [metric, heading] or [metric, heading, \"count\"]",
                path.display(),
                table.block
            );
        }
        for id in &table.runs {
            ensure!(
                seen.contains(id),
                "{}: table {} names run {id}, which no [[run]] defines",
                path.display(),
                table.block
            );
        }
    }
    Ok(manifest)
}

pub fn repro(rest: &[String]) -> anyhow::Result<()> {
    let options = parse_options(rest)?;
    let root = root();
    let manifest = read_manifest(&root.join("xtask/repro.toml"))?;
    let groups: Vec<&str> = {
        let mut all: Vec<&str> = manifest.run.iter().map(|r| r.group.as_str()).collect();
        all.dedup();
        all
    };
    for g in &options.groups {
        ensure!(
            groups.contains(&g.as_str()),
            "unknown group `{g}`; xtask/repro.toml has {}",
            groups.join(", ")
        );
    }
    let selected =
        |group: &str| options.groups.is_empty() || options.groups.iter().any(|g| g == group);

    let commit = git(&["rev-parse", "HEAD"])?;
    let layout = if options.smoke {
        let dir = root.join("target/repro-smoke");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let doc = dir.join("REPRODUCTION.md");
        std::fs::copy(root.join("docs/REPRODUCTION.md"), &doc)
            .context("copying docs/REPRODUCTION.md")?;
        Layout {
            source: root.clone(),
            binary: dir.join("mg-train"),
            runs: dir.join("runs"),
            results: dir.join("results"),
            doc,
            smoke: true,
        }
    } else {
        Layout {
            source: root.join("target/repro/src"),
            binary: root.join("target/repro/mg-train"),
            runs: root.join("runs/repro"),
            results: root.join("docs/results"),
            doc: root.join("docs/REPRODUCTION.md"),
            smoke: false,
        }
    };

    if !options.tables_only {
        // A full repro builds and reads its configs from a checkout of HEAD; a smoke run uses
        // the working tree as it is, and says so when it differs from HEAD.
        let _checkout = if layout.smoke {
            None
        } else {
            Some(Checkout::new(&layout.source)?)
        };
        let dirty =
            layout.smoke && !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
        let manifest = read_manifest(&layout.source.join("xtask/repro.toml"))?;
        build_binary(&layout)?;
        let runs: Vec<&RunSpec> = manifest.run.iter().filter(|r| selected(&r.group)).collect();
        let total: u32 = runs
            .iter()
            .map(|r| {
                if layout.smoke {
                    1
                } else {
                    options.seeds.unwrap_or(r.seeds)
                }
            })
            .sum();
        let mut done = 0;
        let mut failed = Vec::new();
        let context = Provenance::new(&commit, dirty)?;
        for run in &runs {
            let seeds = if layout.smoke {
                1
            } else {
                options.seeds.unwrap_or(run.seeds)
            };
            for seed in 1..=seeds {
                done += 1;
                eprintln!("\n=== [{done}/{total}] {} seed {seed}", run.id());
                if let Err(e) = reproduce(&layout, &context, run, seed, options.force) {
                    eprintln!("error: {} seed {seed}: {e:#}", run.id());
                    failed.push(format!("{} seed {seed}", run.id()));
                }
            }
        }
        write_tables(&layout, &manifest, &|id: &str| {
            runs.iter().any(|r| r.id() == id)
        })?;
        ensure!(
            failed.is_empty(),
            "{} of {total} runs failed: {}",
            failed.len(),
            failed.join(", ")
        );
    } else {
        write_tables(&layout, &manifest, &|id: &str| {
            selected(id.split('/').next().unwrap_or_default())
        })?;
    }
    Ok(())
}

/// Builds mg-train (release; for `--smoke` the debug binary `cargo test` builds) and copies it.
fn build_binary(layout: &Layout) -> anyhow::Result<()> {
    let built = if layout.smoke {
        // The binary the test suite uses: after `cargo test --workspace` nothing is rebuilt.
        cargo(&["test", "--workspace", "--no-run"], &[])?;
        root().join("target/debug/mg-train")
    } else {
        let target = root().join("target");
        eprintln!(
            "$ cargo build --release -p mg-train   (in {})",
            layout.source.display()
        );
        let status = cargo_program()
            .args(["build", "--release", "--locked", "-p", "mg-train"])
            .current_dir(&layout.source)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .context("running cargo build")?;
        ensure!(
            status.success(),
            "building mg-train at HEAD failed ({status})"
        );
        target.join("release/mg-train")
    };
    let dir = layout.binary.parent().expect("the binary lies in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(&built, &layout.binary)
        .with_context(|| format!("copying {} to {}", built.display(), layout.binary.display()))?;
    Ok(())
}

/// A detached checkout of HEAD (`git worktree`), removed when dropped.
struct Checkout(PathBuf);

impl Checkout {
    fn new(path: &Path) -> anyhow::Result<Self> {
        let path_arg = path.to_string_lossy().into_owned();
        if path.exists() {
            git(&["worktree", "remove", "--force", &path_arg]).ok();
            if path.exists() {
                std::fs::remove_dir_all(path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            git(&["worktree", "prune"])?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        git(&["worktree", "add", "--detach", &path_arg, "HEAD"])?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let path = self.0.to_string_lossy().into_owned();
        if git(&["worktree", "remove", "--force", &path]).is_err() {
            eprintln!("warning: could not remove the checkout {path}; `git worktree prune` later");
        }
    }
}

/// What every run.json records of the machine and the code.
struct Provenance {
    commit: String,
    dirty: bool,
    cpu: String,
    cores: usize,
    isa: Vec<&'static str>,
}

impl Provenance {
    fn new(commit: &str, dirty: bool) -> anyhow::Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let cpu = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let flags = field("flags").unwrap_or_default();
        let flags: Vec<&str> = flags.split_whitespace().collect();
        let isa = ["avx2", "fma", "avx512f"]
            .into_iter()
            .filter(|f| flags.contains(f))
            .collect();
        Ok(Self {
            commit: commit.to_string(),
            dirty,
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa,
        })
    }
}

fn run_folder(layout: &Layout, run: &RunSpec, seed: u32) -> PathBuf {
    layout
        .runs
        .join(format!("{}-{}-s{seed}", run.group, run.name))
}

fn results_folder(layout: &Layout, run: &RunSpec, seed: u32) -> PathBuf {
    layout
        .results
        .join(&run.group)
        .join(format!("{}-s{seed}", run.name))
}

/// Trains (or resumes), evaluates and records one seed of one run.
fn reproduce(
    layout: &Layout,
    context: &Provenance,
    run: &RunSpec,
    seed: u32,
    force: bool,
) -> anyhow::Result<()> {
    let results = results_folder(layout, run, seed);
    let record = results.join("run.json");
    if !force
        && let Ok(text) = std::fs::read_to_string(&record)
        && let Ok(old) = serde_json::from_str::<serde_json::Value>(&text)
        && old["commit"] == context.commit.as_str()
        && old["dirty"] == false
        && !context.dirty
    {
        eprintln!(
            "{} holds this commit's results; skipped (--force reruns it)",
            results.display()
        );
        return Ok(());
    }
    let folder = run_folder(layout, run, seed);
    // The commit a run folder was started at, beside it: a folder of another commit is not
    // resumed but started anew.
    let stamp = layout.runs.join(format!(
        "{}.commit",
        folder
            .file_name()
            .expect("a named folder")
            .to_string_lossy()
    ));
    let config_path = layout.source.join(&run.config);
    let config_text =
        std::fs::read_to_string(&config_path).with_context(|| format!("reading {}", run.config))?;
    let config: toml::Table =
        toml::from_str(&config_text).with_context(|| format!("parsing {}", run.config))?;
    let base_seed = config
        .get("train")
        .and_then(|t| t.get("seed"))
        .and_then(toml::Value::as_integer)
        .unwrap_or(1) as u64;
    let steps = if layout.smoke {
        1
    } else {
        run.steps
            .or_else(|| {
                config
                    .get("train")
                    .and_then(|t| t.get("time_steps"))
                    .and_then(toml::Value::as_integer)
                    .map(|s| s as u64)
            })
            .with_context(|| format!("{}: no train.time_steps and no steps", run.config))?
    };
    let binary = layout.binary.to_string_lossy().into_owned();
    let folder_arg = rel(&folder);
    let mut commands = Vec::new();
    let load_before = load_average();
    let start = Instant::now();
    let resumable = !force
        && folder.join("config.toml").is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|c| c.trim() == context.commit);
    if resumable {
        let args = vec![
            "resume".to_string(),
            folder_arg.clone(),
            "--steps".into(),
            steps.to_string(),
        ];
        mg_train(&binary, &args)?;
        commands.push(args);
    } else {
        if folder.exists() {
            std::fs::remove_dir_all(&folder)
                .with_context(|| format!("removing the stale run folder {}", folder.display()))?;
        }
        std::fs::create_dir_all(&layout.runs)
            .with_context(|| format!("creating {}", layout.runs.display()))?;
        std::fs::write(&stamp, &context.commit)
            .with_context(|| format!("writing {}", stamp.display()))?;
        let mut args = vec![
            "train".to_string(),
            rel(&config_path),
            "--run-dir".into(),
            folder_arg.clone(),
            "--steps".into(),
            steps.to_string(),
        ];
        if seed > 1 {
            args.extend([
                "--seed".into(),
                (base_seed + u64::from(seed) - 1).to_string(),
            ]);
        }
        for item in &run.set {
            let item = substitute_runs(item, |name| {
                rel(&layout.runs.join(format!("{}-{name}-s{seed}", run.group)))
            });
            args.extend(["--set".into(), item]);
        }
        mg_train(&binary, &args)?;
        commands.push(args);
    }
    let train_wall = start.elapsed().as_secs_f64();
    let load_after = load_average();
    let mut eval_args = vec!["eval".to_string(), folder_arg.clone()];
    eval_args.extend(run.eval.iter().cloned());
    if layout.smoke {
        eval_args.extend(["--sequences".into(), "4".into()]);
    }
    mg_train(&binary, &eval_args)?;
    commands.push(eval_args);
    let info = mg_train_stdout(
        &binary,
        &[
            "info".into(),
            rel(&folder.join("config.toml")),
            "--json".into(),
        ],
    )?;
    let info: serde_json::Value =
        serde_json::from_str(&info).context("parsing `mg-train info --json`")?;

    let eval: serde_json::Value = read_json(&folder.join("eval.json"))?;
    let run_config: toml::Table = toml::from_str(
        &std::fs::read_to_string(folder.join("config.toml")).context("reading the run's config")?,
    )
    .context("parsing the run's config.toml")?;
    let train_table = run_config.get("train");
    let progress_seconds = newest_progress_seconds(&folder);
    if results.exists() {
        std::fs::remove_dir_all(&results)
            .with_context(|| format!("removing {}", results.display()))?;
    }
    std::fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    for file in [
        "config.toml",
        "eval.json",
        "metrics.jsonl",
        "validation.jsonl",
    ] {
        let from = folder.join(file);
        if from.is_file() {
            std::fs::copy(&from, results.join(file))
                .with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let record_value = serde_json::json!({
        "run": run.id(),
        "seed_index": seed,
        "config": run.config,
        "train_seed": train_table.and_then(|t| t.get("seed")).and_then(toml::Value::as_integer),
        "threads": train_table.and_then(|t| t.get("threads")).and_then(toml::Value::as_integer).unwrap_or(1),
        "time_step": eval["time_step"],
        "params": info["params"],
        "memory_cells": info["memory_cells"],
        "train_seconds": progress_seconds.unwrap_or(train_wall),
        "eval_seconds": eval["seconds"],
        // The machine's 1-minute load average before and after training: above the run's
        // threads, other work shared the machine and the minutes are not the run's alone.
        "load_average": [load_before, load_after],
        "commit": context.commit,
        "dirty": context.dirty,
        "cpu": context.cpu,
        "cores": context.cores,
        "isa": context.isa,
        "date": utc_now(),
        "commands": commands.iter().map(|a| format!("mg-train {}", a.join(" "))).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&record_value)?;
    std::fs::write(&record, format!("{text}\n"))
        .with_context(|| format!("writing {}", record.display()))?;
    eprintln!("results in {}", results.display());
    Ok(())
}

/// `{run:NAME}` in `item` replaced by `folder(NAME)`.
fn substitute_runs(item: &str, folder: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = item;
    while let Some(start) = rest.find("{run:") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&folder(&rest[start + 5..start + len]));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The cumulative training seconds the run's newest checkpoint records.
fn newest_progress_seconds(folder: &Path) -> Option<f64> {
    let checkpoints = folder.join("checkpoints");
    let latest = std::fs::read_to_string(checkpoints.join("latest")).ok()?;
    let progress: serde_json::Value =
        read_json(&checkpoints.join(latest.trim()).join("progress.json")).ok()?;
    progress["elapsed_s"].as_f64()
}

/// `path` relative to the workspace root where it lies inside it.
fn rel(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn mg_train(binary: &str, args: &[String]) -> anyhow::Result<()> {
    eprintln!("$ mg-train {}", args.join(" "));
    let status = Command::new(binary)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {binary}"))?;
    ensure!(
        status.success(),
        "`mg-train {}` failed ({status})",
        args.join(" ")
    );
    Ok(())
}

fn mg_train_stdout(binary: &str, args: &[String]) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(args)
        .current_dir(root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {binary}"))?;
    ensure!(
        output.status.success(),
        "`mg-train {}` failed ({})",
        args.join(" "),
        output.status
    );
    String::from_utf8(output.stdout).context("mg-train printed something not UTF-8")
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root())
        .output()
        .context("running git")?;
    ensure!(
        output.status.success(),
        "`git {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The 1-minute load average (Linux), if known.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The seeds' results folders of run `group/name`, in seed order.
fn seed_folders(layout: &Layout, id: &str) -> anyhow::Result<Vec<PathBuf>> {
    let (group, name) = id.split_once('/').context("a run id is GROUP/NAME")?;
    let dir = layout.results.join(group);
    let mut seeds: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(k) = file
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix("-s"))
                .and_then(|k| k.parse::<u32>().ok())
                && entry.path().join("run.json").is_file()
            {
                seeds.push((k, entry.path()));
            }
        }
    }
    seeds.sort();
    Ok(seeds.into_iter().map(|(_, p)| p).collect())
}

/// Rewrites the marked block of every table that shows one of the runs `touched`.
fn write_tables(
    layout: &Layout,
    manifest: &Manifest,
    touched: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let mut doc = std::fs::read_to_string(&layout.doc)
        .with_context(|| format!("reading {}", layout.doc.display()))?;
    let tables_dir = layout.results.join("tables");
    for table in &manifest.table {
        if !table.runs.iter().any(|id| touched(id)) {
            continue;
        }
        let mut rows = Vec::new();
        for id in &table.runs {
            let folders = seed_folders(layout, id)?;
            if folders.is_empty() {
                rows.push((id.clone(), Vec::new(), serde_json::Value::Null));
                continue;
            }
            let mut records = folders
                .iter()
                .map(|f| read_json(&f.join("run.json")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (record, folder) in records.iter_mut().zip(&folders) {
                record["trained_steps"] = trained_steps(folder).into();
            }
            // `mg-train table` aggregates the seeds of one run into one row.
            std::fs::create_dir_all(&tables_dir)?;
            let out = tables_dir.join(format!("{}.json", id.replace('/', "-")));
            let mut args = vec!["table".to_string()];
            args.extend(folders.iter().map(|f| rel(f)));
            args.extend(["--out".into(), rel(&out)]);
            mg_train_stdout(&layout.binary.to_string_lossy(), &args)?;
            let aggregated = read_json(&out)?;
            let row = aggregated
                .as_array()
                .filter(|rows| rows.len() == 1)
                .and_then(|rows| rows.first().cloned())
                .with_context(|| {
                    format!(
                        "`mg-train table` of {id}'s seeds gave other than one row: their configs \
                         differ in [task] or [model]"
                    )
                })?;
            rows.push((id.clone(), records, row));
        }
        let markdown = render_table(table, &rows);
        doc = replace_block(&doc, &table.block, &markdown)
            .with_context(|| format!("in {}", layout.doc.display()))?;
    }
    std::fs::write(&layout.doc, doc)
        .with_context(|| format!("writing {}", layout.doc.display()))?;
    eprintln!("tables rewritten in {}", layout.doc.display());
    Ok(())
}

/// The last time step a results folder's logs reach (`metrics.jsonl`, `validation.jsonl`).
fn trained_steps(folder: &Path) -> Option<u64> {
    ["metrics.jsonl", "validation.jsonl"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(folder.join(f)).ok())
        .filter_map(|text| {
            let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
            serde_json::from_str::<serde_json::Value>(last).ok()?["time_step"].as_u64()
        })
        .max()
}

/// The time steps of a row: those of the evaluated checkpoint (a range where seeds end at
/// different steps, as whole sequences of varying length do), and the run's total where an
/// evaluation took an earlier checkpoint (`--from best`).
fn steps_cell(records: &[serde_json::Value]) -> String {
    let evaluated: Vec<u64> = records
        .iter()
        .filter_map(|r| r["time_step"].as_u64())
        .collect();
    let (Some(&lo), Some(&hi)) = (evaluated.iter().min(), evaluated.iter().max()) else {
        return "—".into();
    };
    let trained = records
        .iter()
        .filter_map(|r| r["trained_steps"].as_u64())
        .max()
        .unwrap_or(hi);
    let best = records.iter().any(|r| {
        let step = r["time_step"].as_u64();
        r["trained_steps"].as_u64().is_some_and(|t| Some(t) > step)
    });
    match (lo == hi, best) {
        (true, false) => thousands(lo),
        (true, true) => format!("{} (best of {})", thousands(lo), thousands(trained)),
        (false, false) => format!("{}–{}", thousands(lo), thousands(hi)),
        (false, true) => format!("best of {}", thousands(trained)),
    }
}

/// A metric's value: four decimals, or a whole number for a count; `mean ± σ` over seeds.
fn format_stat(stat: &serde_json::Value, count: bool) -> String {
    let seeds = stat["values"].as_array().map_or(0, Vec::len);
    let (Some(mean), Some(std)) = (stat["mean"].as_f64(), stat["std"].as_f64()) else {
        return "—".into();
    };
    match (seeds, count) {
        (1, true) => format!("{mean:.0}"),
        (1, false) => format!("{mean:.4}"),
        (_, true) => format!("{mean:.2} ± {std:.2}"),
        (_, false) => format!("{mean:.4} ± {std:.4}"),
    }
}

/// Groups digits by thousands: 40004 → 40,004.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render_table(
    table: &TableSpec,
    rows: &[(String, Vec<serde_json::Value>, serde_json::Value)],
) -> String {
    let mut out = String::new();
    let mut header = "| run | seeds | params | memory | time steps | minutes |".to_string();
    let mut rule = "|---|---:|---:|---:|---:|---:|".to_string();
    for column in &table.columns {
        write!(header, " {} |", column[1]).unwrap();
        rule.push_str("---:|");
    }
    header.push_str(" commit |");
    rule.push_str("---|");
    writeln!(out, "{header}\n{rule}").unwrap();
    let mut machines = BTreeMap::new();
    for (id, records, row) in rows {
        if records.is_empty() {
            let blanks = " — |".repeat(table.columns.len() + 5);
            writeln!(out, "| `{id}` (not run) |{blanks} — |").unwrap();
            continue;
        }
        let first = &records[0];
        let uniq = |key: &str| {
            let mut seen: Vec<String> = Vec::new();
            for r in records {
                let v = r[key].as_str().unwrap_or_default().to_string();
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
            seen
        };
        for r in records {
            let cores = r["cores"].as_u64().unwrap_or(0);
            let machine = format!(
                "{}, {cores} core{} available to the run",
                r["cpu"].as_str().unwrap_or("?"),
                if cores == 1 { "" } else { "s" }
            );
            *machines.entry(machine).or_insert(0) += 1;
        }
        let minutes: f64 = records
            .iter()
            .filter_map(|r| r["train_seconds"].as_f64())
            .sum::<f64>()
            / records.len() as f64
            / 60.0;
        let commits: Vec<String> = uniq("commit")
            .into_iter()
            .map(|c| format!("`{}`", &c[..c.len().min(7)]))
            .collect();
        let dirty = records.iter().any(|r| r["dirty"] == true);
        write!(
            out,
            "| `{id}` (`{}`) | {} | {} | {} | {} | {minutes:.1} |",
            first["config"].as_str().unwrap_or_default(),
            records.len(),
            first["params"].as_u64().map_or("—".into(), thousands),
            first["memory_cells"].as_u64().map_or("—".into(), thousands),
            steps_cell(records),
        )
        .unwrap();
        for column in &table.columns {
            let stat = &row["metrics"][&column[0]];
            write!(out, " {} |", format_stat(stat, column.len() == 3)).unwrap();
        }
        writeln!(
            out,
            " {}{} |",
            commits.join(", "),
            if dirty { " (modified)" } else { "" }
        )
        .unwrap();
    }
    let machines: Vec<String> = machines.into_keys().collect();
    writeln!(
        out,
        "\nGenerated by `cargo xtask repro` from `docs/results/GROUP/NAME-sK/` (the runs' config, \
         eval.json, metrics.jsonl and run.json); CPU: {}. Several seeds: mean ± sample σ; \
         minutes: training wall time, mean over seeds.",
        if machines.is_empty() {
            "—".into()
        } else {
            machines.join("; ")
        }
    )
    .unwrap();
    out
}

/// `doc` with the text between `<!-- repro:BLOCK -->` and `<!-- /repro:BLOCK -->` replaced.
fn replace_block(doc: &str, block: &str, body: &str) -> anyhow::Result<String> {
    let open = format!("<!-- repro:{block} -->");
    let close = format!("<!-- /repro:{block} -->");
    let (Some(start), Some(end)) = (doc.find(&open), doc.find(&close)) else {
        bail!(
            "no marked block `{open}` … `{close}` for table `{block}`; add the two lines where \
             the table belongs"
        );
    };
    ensure!(start < end, "`{close}` comes before `{open}`");
    Ok(format!("{}{open}\n{body}{}", &doc[..start], &doc[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_parses_and_names_only_its_runs() {
        let manifest = read_manifest(&root().join("xtask/repro.toml")).unwrap();
        assert!(manifest.run.iter().any(|r| r.id() == "mapping/quick-9x9"));
        for run in &manifest.run {
            assert!(
                root().join(&run.config).is_file(),
                "{}: {} does not exist",
                run.id(),
                run.config
            );
        }
        let doc = std::fs::read_to_string(root().join("docs/REPRODUCTION.md")).unwrap();
        for table in &manifest.table {
            let replaced = replace_block(&doc, &table.block, "x\n").unwrap();
            assert!(replaced.contains(&format!("<!-- repro:{} -->\nx\n<!-- /repro:", table.block)));
        }
    }

    #[test]
    fn blocks_are_replaced_between_their_markers_only() {
        let doc = "a\n<!-- repro:t -->\nold\n<!-- /repro:t -->\nb\n";
        assert_eq!(
            replace_block(doc, "t", "new\n").unwrap(),
            "a\n<!-- repro:t -->\nnew\n<!-- /repro:t -->\nb\n"
        );
        assert!(replace_block(doc, "u", "x").is_err());
        assert!(replace_block("<!-- /repro:t -->\n<!-- repro:t -->", "t", "x").is_err());
    }

    #[test]
    fn run_placeholders_and_numbers_are_formatted() {
        assert_eq!(
            substitute_runs("task.mapping_run={run:mapping}", |n| format!(
                "runs/x-{n}-s2"
            )),
            "task.mapping_run=runs/x-mapping-s2"
        );
        assert_eq!(substitute_runs("a={run:b", |_| "x".into()), "a={run:b");
        assert_eq!(thousands(40004), "40,004");
        let rec = |eval: u64, trained: u64| serde_json::json!({"time_step": eval, "trained_steps": trained});
        assert_eq!(steps_cell(&[rec(12001, 12001)]), "12,001");
        assert_eq!(steps_cell(&[rec(75115, 90519)]), "75,115 (best of 90,519)");
        assert_eq!(
            steps_cell(&[rec(75115, 90519), rec(90519, 90519)]),
            "best of 90,519"
        );
        assert_eq!(
            steps_cell(&[rec(12001, 12001), rec(12007, 12007), rec(12005, 12005)]),
            "12,001–12,007"
        );
        assert_eq!(thousands(999), "999");
        let stat = serde_json::json!({"mean": 0.065, "std": 0.0077, "values": [0.07, 0.06]});
        assert_eq!(format_stat(&stat, false), "0.0650 ± 0.0077");
        let stat = serde_json::json!({"mean": 4.0, "std": 0.0, "values": [4.0]});
        assert_eq!(format_stat(&stat, true), "4");
        assert_eq!(format_stat(&stat, false), "4.0000");
        assert_eq!(format_stat(&serde_json::Value::Null, false), "—");
    }

    #[test]
    fn flags_are_checked() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_options(&args(&["recall", "--seeds", "3", "--smoke"])).unwrap();
        assert_eq!(
            (o.groups, o.seeds, o.smoke),
            (vec!["recall".into()], Some(3), true)
        );
        assert!(parse_options(&args(&["--seeds", "0"])).is_err());
        assert!(parse_options(&args(&["--seeds"])).is_err());
        assert!(parse_options(&args(&["--what"])).is_err());
    }
}
