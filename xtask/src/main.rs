//! Workspace automation: `cargo xtask <command>`.
//!
//! * `ci`: format check, clippy (deny warnings), tests, docs, and the GPU backends' compile
//!   checks, cheapest first.
//! * `test [--backend flex|wgpu|cuda]`: the test suite on one backend (on a GPU, the
//!   mg-layers and mg-models tests that take a backend, f64 checks staying on Flex; then the
//!   whole program: `mg-train bench` of the quick mapping model on the GPU backend and on the
//!   CPU from the same weights, whose losses must agree).
//! * `bench [--device cpu|ndarray|wgpu|cuda]... [--config FILE]... [-- <mg-train bench args>]`:
//!   release benchmarks of the reference model and `configs/mapping/quick.toml` (or the given
//!   configs) as JSON lines, also written to `target/bench/`; with `--scaling`, the
//!   memory-scaling run (`mg-train bench --scaling`: multigrid vs DNC training-window time and
//!   peak memory against memory size, JSON lines and log-log PNGs in `docs/figures/`).
//! * `program-check --backend wgpu|cuda`: the whole-program check of `test --backend` alone.
//! * `publish-check [--allow-dirty]`: `cargo publish -p mg-layers --dry-run`.
//! * `repro [GROUP...] [--seeds N] [--smoke] [--tables-only] [--force]`: the
//!   quick CPU experiments of docs/REPRODUCTION.md (listed in `xtask/repro.toml`) trained for
//!   fixed step counts, evaluated, recorded in `docs/results/GROUP/NAME-sK/`, and the
//!   document's marked tables regenerated; `--smoke` checks it end to end in one window each.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};

mod repro;

const USAGE: &str = "usage: cargo xtask <ci [--no-gpu-checks] | test [--backend flex|wgpu|cuda] | \
bench [--device cpu|ndarray|wgpu|cuda]... [--config FILE]... [--scaling] [-- ARGS] | \
program-check --backend wgpu|cuda | publish-check [--allow-dirty] | \
repro [GROUP...] [--seeds N] [--smoke] [--tables-only] [--force]>";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    match command.as_str() {
        "ci" => ci(rest),
        "test" => test(rest),
        "bench" => bench(rest),
        "program-check" => match rest {
            [flag, backend] if flag == "--backend" && (backend == "wgpu" || backend == "cuda") => {
                program_check(backend)
            }
            _ => bail!("usage: cargo xtask program-check --backend wgpu|cuda"),
        },
        "publish-check" => publish_check(rest),
        "repro" => repro::repro(rest),
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

/// `cargo <args>` in the workspace root (the cargo that runs xtask), echoed to stderr.
///
/// Without the variables `cargo run` sets for xtask itself (`CARGO_PKG_NAME=xtask`,
/// `CARGO_MANIFEST_DIR`, …): build scripts that watch them (ring's does) would otherwise run
/// again, and everything above them would be rebuilt, although `cargo test` had just built it.
fn cargo_command(args: &[&str]) -> Command {
    eprintln!("$ cargo {}", args.join(" "));
    let mut cmd = cargo_program();
    cmd.args(args).current_dir(root());
    cmd
}

/// The cargo that runs xtask, without the variables `cargo run` set for xtask.
fn cargo_program() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_for_xtask) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether `cargo run` sets the environment variable `key` for the program it runs (xtask).
fn set_for_xtask(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
        )
}

/// Runs `cargo <args>` in the workspace root, with extra environment variables.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut cmd = cargo_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    ensure!(
        status.success(),
        "`cargo {}` failed ({status})",
        args.join(" ")
    );
    eprintln!("  ok in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn ci(rest: &[String]) -> anyhow::Result<()> {
    let gpu_checks = match rest {
        [] => true,
        [flag] if flag == "--no-gpu-checks" => false,
        _ => bail!("{USAGE}"),
    };
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    if gpu_checks {
        // One invocation: what both GPU backends share is compiled once.
        cargo(&["check", "-p", "mg-train", "--features", "wgpu,cuda"], &[])?;
    }
    Ok(())
}

fn test(rest: &[String]) -> anyhow::Result<()> {
    match rest {
        [] => cargo(&["test", "--workspace"], &[]),
        [flag, backend] if flag == "--backend" => match backend.as_str() {
            "flex" => cargo(&["test", "--workspace"], &[]),
            "wgpu" | "cuda" => gpu_tests(backend),
            other => bail!("unknown backend `{other}`; expected flex, wgpu or cuda"),
        },
        _ => bail!("{USAGE}"),
    }
}

/// The mg-layers and mg-models suites on a GPU backend and the whole-program check
/// (`crates/mg-train/tests/backend.rs`), in one cargo invocation: one feature resolution, so
/// that mg-train's build shares every dependency with the suites' (two invocations resolve
/// some shared crates' features differently and build the whole stack twice).
fn gpu_tests(backend: &str) -> anyhow::Result<()> {
    let features = format!("mg-layers/test-{backend},mg-models/test-{backend},mg-train/{backend}");
    let mut args = vec![
        "test".to_string(),
        "-p".into(),
        "mg-layers".into(),
        "-p".into(),
        "mg-models".into(),
        "-p".into(),
        "mg-train".into(),
        "--features".into(),
        features,
        "--lib".into(),
    ];
    for krate in ["mg-layers", "mg-models"] {
        for target in test_targets(krate)? {
            args.extend(["--test".into(), target]);
        }
    }
    args.extend(["--test".into(), "backend".into()]);
    cargo(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// The integration test targets of a workspace crate, as cargo discovers them: each
/// `tests/NAME.rs` and each `tests/NAME/main.rs`.
fn test_targets(krate: &str) -> anyhow::Result<Vec<String>> {
    let dir = root().join("crates").join(krate).join("tests");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .map(str::to_string);
        let is_test = if path.is_dir() {
            path.join("main.rs").is_file()
        } else {
            path.extension().is_some_and(|e| e == "rs")
        };
        if let (true, Some(name)) = (is_test, name) {
            names.push(name);
        }
    }
    names.sort();
    ensure!(
        !names.is_empty(),
        "no integration tests in {}",
        dir.display()
    );
    Ok(names)
}

/// The whole program on a GPU backend against the CPU alone (`tests/backend.rs` of mg-train).
fn program_check(backend: &str) -> anyhow::Result<()> {
    cargo(
        &[
            "test",
            "-p",
            "mg-train",
            "--features",
            backend,
            "--test",
            "backend",
        ],
        &[],
    )
}

fn bench(rest: &[String]) -> anyhow::Result<()> {
    let (ours, passthrough) = match rest.iter().position(|a| a == "--") {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut devices = Vec::new();
    let mut configs = Vec::new();
    let mut scaling = false;
    let mut it = ours.iter();
    while let Some(flag) = it.next() {
        if flag == "--scaling" {
            scaling = true;
            continue;
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--device" => devices.push(value),
            "--config" => configs.push(Some(value)),
            _ => bail!("unknown bench flag `{flag}`\n{USAGE}"),
        }
    }
    if devices.is_empty() {
        devices.push("cpu".into());
    }
    if scaling {
        ensure!(
            configs.is_empty(),
            "--scaling times its own models; drop --config"
        );
        configs.push(None);
    } else if configs.is_empty() {
        // The reference model (no config) and the quick CPU model.
        configs = vec![None, Some("configs/mapping/quick.toml".into())];
    }
    let features: Vec<&str> = devices
        .iter()
        .map(|d| match d.as_str() {
            "cpu" => Ok("flex"),
            "ndarray" => Ok("ndarray"),
            "wgpu" => Ok("wgpu"),
            "cuda" => Ok("cuda"),
            other => bail!("unknown device `{other}`; expected cpu, ndarray, wgpu or cuda"),
        })
        .collect::<anyhow::Result<_>>()?;
    let features = features.join(",");
    cargo(
        &[
            "build",
            "--release",
            "-p",
            "mg-train",
            "--features",
            &features,
        ],
        &[],
    )?;
    let binary = root().join("target/release/mg-train");
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let out_path = out_dir.join(format!("bench-{stamp}.jsonl"));
    let mut lines = String::new();
    for device in &devices {
        for config in &configs {
            let output = Command::new(&binary)
                .current_dir(root())
                .args(["bench", "--json", "--device", device])
                .args(config.iter())
                .args(scaling.then_some("--scaling"))
                .args(passthrough)
                .output()
                .with_context(|| format!("running {}", binary.display()))?;
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
            ensure!(
                output.status.success(),
                "mg-train bench --device {device} {config:?} failed"
            );
            let text = String::from_utf8(output.stdout).context("bench output is not UTF-8")?;
            print!("{text}");
            lines.push_str(&text);
        }
    }
    std::fs::write(&out_path, lines).with_context(|| format!("writing {}", out_path.display()))?;
    eprintln!("results written to {}", out_path.display());
    Ok(())
}

fn publish_check(rest: &[String]) -> anyhow::Result<()> {
    match rest {
        [] => cargo(&["publish", "-p", "mg-layers", "--dry-run"], &[]),
        [flag] if flag == "--allow-dirty" => cargo(
            &["publish", "-p", "mg-layers", "--dry-run", "--allow-dirty"],
            &[],
        ),
        _ => bail!("{USAGE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables `cargo run` sets for xtask are dropped; the user's cargo settings stay.
    #[test]
    fn only_the_variables_cargo_run_sets_are_dropped() {
        for key in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_CRATE_NAME",
        ] {
            assert!(set_for_xtask(key), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_INCREMENTAL",
            "RUSTFLAGS",
        ] {
            assert!(!set_for_xtask(key), "{key}");
        }
    }

    /// The GPU suites find every integration test of the two crates, folders included.
    #[test]
    fn integration_tests_are_found_as_cargo_finds_them() {
        assert_eq!(test_targets("mg-layers").unwrap(), ["it"]);
        let models = test_targets("mg-models").unwrap();
        for name in ["dnc_f64", "dnc_torch_golden", "torch_golden"] {
            assert!(models.iter().any(|n| n == name), "{name} in {models:?}");
        }
        assert!(!models.iter().any(|n| n == "fixtures"), "{models:?}");
    }
}
