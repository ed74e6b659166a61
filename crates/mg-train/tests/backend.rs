//! The whole program on a GPU backend against the CPU, built with `--features wgpu` (or
//! `cuda`): `mg-train bench` of `configs/mapping/quick.toml` (two training windows on each
//! forward path, inference steps at batch 2 and 1) on the CPU, then on the GPU backend from
//! the weights the CPU run started from; every record's loss must agree. Run by
//! `cargo xtask test --backend wgpu|cuda` (wgpu on lavapipe in CI); without a GPU feature this
//! file compiles to nothing.
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod common;

use std::path::Path;

use common::{ok, run, temp_dir};

/// The GPU backend under test: wgpu when compiled in, else CUDA.
const BACKEND: &str = if cfg!(feature = "wgpu") {
    "wgpu"
} else {
    "cuda"
};

/// Largest relative difference allowed between the CPU's and the GPU backend's losses.
/// Measured on lavapipe (wgpu, with fusion): at most 7.2e-7 over the training windows and the
/// inference steps; allowed about 14× for other drivers' summation orders. A wrong kernel is
/// off by far more.
const TOLERANCE: f64 = 1e-5;

/// `(bench, batch, loss)` of each `mg-train bench --json` line.
fn losses(jsonl: &str) -> Vec<(String, u64, f64)> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bench output `{line}`: {e}"));
            let field = |name: &str| {
                v.get(name)
                    .unwrap_or_else(|| panic!("no `{name}` in {line}"))
            };
            (
                field("bench")
                    .as_str()
                    .expect("bench: a string")
                    .to_string(),
                field("batch").as_u64().expect("batch: an integer"),
                field("loss").as_f64().expect("loss: a number"),
            )
        })
        .collect()
}

#[test]
fn the_whole_program_agrees_with_the_cpu() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mapping/quick.toml");
    let config = config.to_str().expect("a UTF-8 path");
    let dir = temp_dir("backend");
    let weights = dir.join("quick.safetensors");
    let weights = weights.to_str().expect("a UTF-8 path");
    let bench = |device: &str, weights_flag: &str| {
        losses(&ok(&[
            "bench",
            config,
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
        ]))
    };
    let cpu = bench("cpu", "--save-weights");
    let gpu = bench(BACKEND, "--weights");
    assert!(
        cpu.len() == gpu.len() && !cpu.is_empty(),
        "the CPU gave {} benchmark records, {BACKEND} {}",
        cpu.len(),
        gpu.len()
    );
    let mut worst: f64 = 0.0;
    for ((name, batch, a), (gpu_name, gpu_batch, b)) in cpu.iter().zip(&gpu) {
        assert!(
            name == gpu_name && batch == gpu_batch,
            "records differ: {name} vs {gpu_name}"
        );
        let rel = (a - b).abs() / a.abs().max(1e-12);
        eprintln!(
            "  {name:<28} batch {batch:>2}: cpu {a:.6} {BACKEND} {b:.6} (relative {rel:.1e})"
        );
        assert!(
            rel <= TOLERANCE,
            "{name} at batch {batch}: the losses differ by {rel:.1e} relative (allowed {TOLERANCE:.0e})"
        );
        worst = worst.max(rel);
    }
    eprintln!(
        "  the whole program agrees on {BACKEND}: worst relative loss difference {worst:.1e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `--devices` names GPUs of the backend; one that is not there is an error naming it, before
/// any training (not the runtime's panic). Run where fewer than eight GPUs of the kind exist
/// (wgpu's discrete GPUs; lavapipe has none).
#[test]
fn devices_that_are_not_there_are_named() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mapping/quick.toml");
    let dir = temp_dir("absent-devices");
    let run_dir = dir.join("run");
    let out = run(&[
        "train",
        config.to_str().expect("a UTF-8 path"),
        "--device",
        BACKEND,
        "--devices",
        "7,8",
        "--steps",
        "1",
        "--run-dir",
        run_dir.to_str().expect("a UTF-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "trained on devices 7 and 8: {stderr}"
    );
    assert!(
        stderr.contains("cannot be opened") && !stderr.contains("panicked"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
