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
fn cargo_command(args: &[&str]) -> Command {
    eprintln!("$ cargo {}", args.join(" "));
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(root());
    cmd
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
            "wgpu" | "cuda" => {
                let features = format!("mg-layers/test-{backend},mg-models/test-{backend}");
                cargo(
                    &[
                        "test",
                        "-p",
                        "mg-layers",
                        "-p",
                        "mg-models",
                        "--features",
                        &features,
                    ],
                    &[],
                )?;
                program_check(backend)
            }
            other => bail!("unknown backend `{other}`; expected flex, wgpu or cuda"),
        },
        _ => bail!("{USAGE}"),
    }
}

/// Largest relative difference allowed between the CPU's and a GPU backend's benchmark losses.
/// Measured on lavapipe (wgpu, with fusion): at most 7.2e-7 over the training windows and the
/// inference steps; allowed about 14× for other drivers' summation orders. A wrong kernel is
/// off by far more.
const PROGRAM_LOSS_TOL: f64 = 1e-5;

/// Runs `cargo <args>` and returns its standard output (standard error passes through).
fn cargo_stdout(args: &[&str]) -> anyhow::Result<String> {
    let output = cargo_command(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    ensure!(
        output.status.success(),
        "`cargo {}` failed ({})",
        args.join(" "),
        output.status
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `(bench, batch) → loss` of `mg-train bench --json` lines.
fn bench_losses(jsonl: &str) -> anyhow::Result<Vec<(String, u64, f64)>> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("bench output: {line}"))?;
            let name = v["bench"].as_str().context("a record without `bench`")?;
            let batch = v["batch"].as_u64().context("a record without `batch`")?;
            let loss = v["loss"].as_f64().context("a record without `loss`")?;
            Ok((name.to_string(), batch, loss))
        })
        .collect()
}

/// The whole program on a GPU backend: `mg-train bench` of `configs/mapping/quick.toml` (two
/// training windows on each forward path, inference steps at batch 2 and 1) on the CPU, then
/// on `backend` from the weights the CPU run started from; every record's loss must agree.
fn program_check(backend: &str) -> anyhow::Result<()> {
    let dir = root().join("target").join("backend-check");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let weights = dir.join("quick.safetensors");
    let weights = weights.to_str().context("a UTF-8 target path")?;
    let run = |device: &str, weights_flag: &str| {
        cargo_stdout(&[
            "run",
            "-p",
            "mg-train",
            "--features",
            backend,
            "--",
            "bench",
            "configs/mapping/quick.toml",
            "--device",
            device,
            "--steps",
            "4",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--json",
            weights_flag,
            weights,
        ])
    };
    let cpu = bench_losses(&run("cpu", "--save-weights")?)?;
    let gpu = bench_losses(&run(backend, "--weights")?)?;
    ensure!(
        cpu.len() == gpu.len() && !cpu.is_empty(),
        "the CPU gave {} benchmark records, {backend} {}",
        cpu.len(),
        gpu.len()
    );
    let mut worst: f64 = 0.0;
    for ((name, batch, a), (gname, gbatch, b)) in cpu.iter().zip(&gpu) {
        ensure!(
            name == gname && batch == gbatch,
            "records differ: {name} vs {gname}"
        );
        let rel = (a - b).abs() / a.abs().max(1e-12);
        eprintln!(
            "  {name:<28} batch {batch:>2}: cpu {a:.6} {backend} {b:.6} (relative {rel:.1e})"
        );
        ensure!(
            rel <= PROGRAM_LOSS_TOL,
            "{name} at batch {batch}: the losses differ by {rel:.1e} relative (allowed {PROGRAM_LOSS_TOL:.0e})"
        );
        worst = worst.max(rel);
    }
    eprintln!(
        "  the whole program agrees on {backend}: worst relative loss difference {worst:.1e}"
    );
    Ok(())
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
