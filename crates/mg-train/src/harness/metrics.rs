//! `metrics.jsonl`: one JSON line per log interval, and the learning curve drawn from it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::checkpoint::{RunDir, write_atomic};
use crate::plot::plot_curve;

/// One line of `metrics.jsonl`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetricsLine {
    /// Time steps trained.
    pub time_step: u64,
    /// Optimizer updates.
    pub updates: u64,
    /// Mean loss per window since the previous line.
    pub loss: f64,
    /// The same per scored unit (pixel, bit, answer word) of the window.
    #[serde(alias = "loss_per_pixel")]
    pub loss_per_unit: f64,
    /// Mean global gradient norm (before clipping).
    pub grad_norm: f64,
    /// Learning rate of the last update.
    pub lr: f64,
    /// Training throughput since the previous line, time steps per second.
    pub steps_per_s: f64,
    /// Wall time spent training, over every process of the run (resumes included), seconds.
    pub elapsed_s: f64,
    /// The task's own figures (e.g. exploration reward per step), averaged over the interval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task: BTreeMap<String, f64>,
}

/// Reads `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<MetricsLine>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad metrics line", path.display(), i + 1))
        })
        .collect()
}

/// Drops metrics lines past `time_step` (written after the checkpoint a run resumes from).
pub fn truncate_metrics(path: &Path, time_step: u64) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let kept: Vec<String> = BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|line| {
            serde_json::from_str::<MetricsLine>(line).is_ok_and(|m| m.time_step <= time_step)
        })
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// The learning curve's smoothing weight for `n` points: none below 50 points (a moving
/// average lags a short curve), then `1 − 25/n` up to 0.95, an average over about `n/25`
/// points.
fn curve_smoothing(n: usize) -> Option<f64> {
    (n >= 50).then(|| (1.0 - 25.0 / n as f64).min(0.95))
}

/// Redraws the learning curve (PNG and SVG) from the metrics log, and one curve per task
/// metric (`learning_curve_NAME.png`).
pub fn plot_metrics(run: &RunDir, unit: &str) -> anyhow::Result<()> {
    let lines = read_metrics(&run.metrics())?;
    let points: Vec<(f64, f64)> = lines
        .iter()
        .map(|m| (m.time_step as f64, m.loss_per_unit))
        .collect();
    let smooth = curve_smoothing(points.len());
    plot_curve(
        &[("Training loss", points)],
        ["Time step", &format!("Training loss per {unit} (nats)")],
        &run.curve(),
        smooth,
    )?;
    let names: std::collections::BTreeSet<&String> =
        lines.iter().flat_map(|m| m.task.keys()).collect();
    for name in names {
        let points: Vec<(f64, f64)> = lines
            .iter()
            .filter_map(|m| m.task.get(name).map(|&v| (m.time_step as f64, v)))
            .collect();
        let smooth = curve_smoothing(points.len());
        let path = run.task_curve(name);
        plot_curve(
            &[(name.as_str(), points)],
            ["Time step", &name.replace('_', " ")],
            &path,
            smooth,
        )?;
    }
    Ok(())
}
