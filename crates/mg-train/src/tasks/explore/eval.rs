//! Evaluation on fixed test mazes: coverage, steps to 90% coverage and wall hits of the
//! learned policy, a random walk and the reference spiral, and the frozen reader's
//! localization P / R / F on each one's trajectories (Table 1's last row); and the pictures.

use mg_layers::MgBackend;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mg_data::mapping::{Episode, MappingConfig, Motion};
use mg_models::ExploreNet;
use serde::Serialize;

use super::{Choice, Explore, Worlds};
use crate::harness::EvalRequest;
use crate::harness::progress::Progress;
use crate::tasks::mapping::{Scores, render_episodes, score_episodes};

/// How one motion did on the test mazes.
#[derive(Serialize, Debug, Clone)]
pub struct MotionReport {
    /// `policy`, `policy-greedy`, `random-walk` or `spiral`.
    pub motion: String,
    /// Moves per test trajectory.
    pub steps: usize,
    /// Mean fraction of a maze's free cells visited after `steps` moves.
    pub coverage: f64,
    /// Mazes where 90% of the free cells were visited within `steps` moves.
    pub reached_90: usize,
    /// Mean moves to visit 90% of the free cells, over the mazes that did.
    pub steps_to_90: Option<f64>,
    /// Mean moves per trajectory that a wall blocked (the spiral: moves onto wall cells, which
    /// it passes through).
    pub wall_hits: f64,
    /// The frozen reader's localization scores on these trajectories.
    pub localization: Scores,
    /// Mean coverage after every `curve_every` moves (from move 0).
    pub coverage_curve: Vec<f64>,
}

/// The result of an evaluation, as written to `eval.json`.
#[derive(Serialize, Debug, Clone)]
pub struct ExploreReport {
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Test mazes.
    pub mazes: usize,
    /// Seed of the test mazes.
    pub seed: u64,
    /// Side of the mazes.
    pub map_size: usize,
    /// Moves between the points of each coverage curve.
    pub curve_every: usize,
    /// One entry per motion.
    pub motions: Vec<MotionReport>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Distinct free cells visited after each move (entry 0: the start) and the moves onto or
/// into walls, from an episode's positions.
fn coverage_counts(episode: &Episode) -> (Vec<usize>, usize) {
    let map = episode.map();
    let n = map.size();
    let mut seen = vec![false; n * n];
    let mut counts = Vec::with_capacity(episode.len());
    let (mut covered, mut hits) = (0, 0);
    let mut previous = None;
    for &(r, c) in episode.positions() {
        let wall = map.is_wall(r as i64, c as i64);
        if previous == Some((r, c)) || wall {
            hits += previous.is_some() as usize;
        }
        if !wall && !seen[r * n + c] {
            seen[r * n + c] = true;
            covered += 1;
        }
        counts.push(covered);
        previous = Some((r, c));
    }
    (counts, hits)
}

/// Free interior cells of an episode's map.
fn free_cells(episode: &Episode) -> usize {
    let map = episode.map();
    let n = map.size() as i64;
    (1..n - 1)
        .flat_map(|r| (1..n - 1).map(move |c| (r, c)))
        .filter(|&(r, c)| !map.is_wall(r, c))
        .count()
}

/// Coverage figures of `episodes`, each cut to `steps` moves.
fn coverage(
    motion: &str,
    episodes: &[Episode],
    steps: usize,
    curve_every: usize,
    localization: Scores,
) -> MotionReport {
    let points = steps / curve_every + 1;
    let mut curve = vec![0.0; points];
    let (mut total, mut reached, mut to_90, mut hits) = (0.0, 0, 0.0, 0.0);
    for e in episodes {
        let (counts, wall_hits) = coverage_counts(e);
        let free = free_cells(e).max(1) as f64;
        let at = |t: usize| counts[t.min(counts.len() - 1)] as f64 / free;
        total += at(steps);
        for (i, point) in curve.iter_mut().enumerate() {
            *point += at(i * curve_every);
        }
        if let Some(t) = (0..=steps.min(counts.len() - 1)).find(|&t| at(t) >= 0.9) {
            reached += 1;
            to_90 += t as f64;
        }
        hits += wall_hits as f64;
    }
    let n = episodes.len().max(1) as f64;
    MotionReport {
        motion: motion.into(),
        steps,
        coverage: total / n,
        reached_90: reached,
        steps_to_90: (reached > 0).then(|| to_90 / reached as f64),
        wall_hits: hits / n,
        localization,
        coverage_curve: curve.into_iter().map(|c| c / n).collect(),
    }
}

/// The policy's trajectories on test mazes `range`, `steps` moves each.
pub fn policy_episodes<B: MgBackend>(
    task: &Explore,
    model: &ExploreNet<B>,
    range: std::ops::Range<usize>,
    steps: usize,
    choice: Choice,
    device: &B::Device,
) -> anyhow::Result<Vec<Episode>> {
    let seed = task.config().eval.seed;
    let worlds = Worlds::new(task.world(), seed, range.start as u64, range.len())?;
    task.rollout(model, &worlds, 0..steps, None, choice, false, false, device);
    let worlds = worlds
        .worlds
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    Ok(worlds.into_iter().map(|w| w.episode).collect())
}

/// Test maze `index` of `seed` under a pre-defined motion.
fn motion_episode(
    world: &MappingConfig,
    motion: Motion,
    seed: u64,
    index: usize,
) -> anyhow::Result<Episode> {
    let config = MappingConfig {
        motion,
        ..world.clone()
    };
    Ok(Episode::generate(&config, seed, index as u64)?)
}

/// Evaluates the policy (sampled and greedy), a random walk and the spiral on the test mazes.
pub fn report<B: MgBackend>(
    task: &Explore,
    model: &ExploreNet<B>,
    request: &EvalRequest,
    device: &B::Device,
) -> anyhow::Result<ExploreReport> {
    let start = Instant::now();
    let config = task.config();
    let (mazes, steps, seed) = (request.sequences, config.task.eval_steps, config.eval.seed);
    if mazes == 0 {
        anyhow::bail!("eval.sequences: 0; expected at least one test maze");
    }
    let batch = config.eval.batch.max(1);
    let world = task.world();
    let curve_every = (steps / 50).max(1);
    let n = world.map_size;
    let mut motions = Vec::new();
    let mut bar = Progress::new(4 * mazes as u64, "trajectories", request.show_progress);
    let mut done = 0;
    for (name, choice) in [
        ("policy", Choice::Sample),
        ("policy-greedy", Choice::Greedy),
    ] {
        let mut episodes = Vec::with_capacity(mazes);
        for first in (0..mazes).step_by(batch) {
            let end = (first + batch).min(mazes);
            episodes.extend(policy_episodes(
                task,
                model,
                first..end,
                steps,
                choice,
                device,
            )?);
            done += (end - first) as u64;
            bar.set_position(done);
        }
        let scores = score(task, model, &episodes, batch, device)?;
        motions.push(coverage(name, &episodes, steps, curve_every, scores));
    }
    for (name, motion) in [
        ("random-walk", Motion::RandomWalk { len: steps + 1 }),
        ("spiral", Motion::Spiral),
    ] {
        let episodes = (0..mazes)
            .map(|i| motion_episode(world, motion, seed, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let scores = score(task, model, &episodes, batch, device)?;
        let moves = if motion == Motion::Spiral {
            steps.min((n - 2) * (n - 2) - 1)
        } else {
            steps
        };
        motions.push(coverage(name, &episodes, moves, curve_every, scores));
        done += mazes as u64;
        bar.set_position(done);
    }
    bar.clear();
    Ok(ExploreReport {
        time_step: request.time_step,
        mazes,
        seed,
        map_size: n,
        curve_every,
        motions,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The frozen reader's scores on `episodes` (all of one length).
fn score<B: MgBackend>(
    task: &Explore,
    model: &ExploreNet<B>,
    episodes: &[Episode],
    batch: usize,
    device: &B::Device,
) -> anyhow::Result<Scores> {
    let query = [task.world().query_size];
    let scores = score_episodes(
        &model.localizer,
        &query,
        episodes.len(),
        batch,
        task.config().train.threads,
        |range| Ok(vec![episodes[range].to_vec()]),
        device,
        false,
    )?;
    Ok(scores[0])
}

/// The report for a terminal: one line per motion.
pub fn lines(report: &ExploreReport) -> Vec<String> {
    let mut lines = vec![format!(
        "checkpoint at time step {}, {} test mazes of {2}×{2} (seed {3:#x}), {4:.1} s",
        report.time_step, report.mazes, report.map_size, report.seed, report.seconds
    )];
    lines.push(format!(
        "  {:<14} {:>6} {:>9} {:>14} {:>10} {:>8} {:>8} {:>8}",
        "motion", "moves", "coverage", "90% (moves)", "wall hits", "P", "R", "F"
    ));
    for m in &report.motions {
        let to_90 = match m.steps_to_90 {
            Some(s) => format!("{}/{} ({s:.0})", m.reached_90, report.mazes),
            None => format!("0/{}", report.mazes),
        };
        lines.push(format!(
            "  {:<14} {:>6} {:>8.1}% {:>14} {:>10.1} {:>8.4} {:>8.4} {:>8.4}",
            m.motion,
            m.steps,
            100.0 * m.coverage,
            to_90,
            m.wall_hits,
            m.localization.precision,
            m.localization.recall,
            m.localization.f
        ));
    }
    lines
}

/// The agent exploring test maze `index` (frames and `episode.gif`, as the mapping task
/// draws them, for the policy's trajectory), and the coverage curves of the three motions on
/// that maze (`coverage.png`).
pub fn draw<B: MgBackend>(
    task: &Explore,
    model: &ExploreNet<B>,
    index: usize,
    out: &Path,
    device: &B::Device,
) -> anyhow::Result<Vec<PathBuf>> {
    let steps = task.config().task.eval_steps;
    let seed = task.config().eval.seed;
    let episode =
        policy_episodes(task, model, index..index + 1, steps, Choice::Sample, device)?.remove(0);
    let world = task.world();
    let random = motion_episode(world, Motion::RandomWalk { len: steps + 1 }, seed, index)?;
    let spiral = motion_episode(world, Motion::Spiral, seed, index)?;
    let frames = render_episodes(
        task.mapping(),
        &model.localizer,
        vec![vec![episode.clone()]],
        out,
        device,
    )?;
    eprintln!("{frames} frames written to {}", out.display());
    let free = free_cells(&episode).max(1) as f64;
    let curve = |e: &Episode| -> Vec<(f64, f64)> {
        coverage_counts(e)
            .0
            .iter()
            .enumerate()
            .take(steps + 1)
            .map(|(t, &c)| (t as f64, 100.0 * c as f64 / free))
            .collect()
    };
    let path = out.join("coverage.png");
    crate::plot::plot(
        &[
            ("Learned policy", curve(&episode)),
            ("Random walk", curve(&random)),
            ("Spiral (through walls)", curve(&spiral)),
        ],
        ["Moves", "Free cells visited (%)"],
        &path,
        crate::plot::PlotStyle {
            log_log: false,
            smooth: None,
            linear_y: true,
        },
    )?;
    Ok(vec![out.join("episode.gif"), path])
}
